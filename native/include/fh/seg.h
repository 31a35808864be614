/* fh/seg.h: the writer's side of the shared-memory segment (layout and reader contract: fh/shm.h).
 *
 * A segment is a file (in hugetlbfs or /dev/shm) that the writer creates, locks and maps read-write, or a
 * private anonymous mapping for offline engines that publish to no one. The book engine keeps its books
 * and levels in it (fh_engine_create_on). */
#ifndef FH_SEG_H
#define FH_SEG_H

#include "fh/common.h"
#include "fh/shm.h"

typedef struct fh_seg_cfg {
    const char *path;        /* segment file; NULL: private anonymous memory */
    const char *name;        /* instance name recorded in the header */
    uint32_t max_levels;     /* price levels over all books and sides: 8 .. 2^30 */
    uint32_t event_capacity; /* events kept in the ring: a power of two, 64 .. 2^26 */
    uint32_t depth;          /* top-N that readers show by default: 1 .. 64 */
    int gid;                 /* group of the files (mode 0640, .wake 0660); -1: the writer's own */
    uint32_t ladder_books;   /* books (the first the engine creates) with a price ladder of their own, 0 ..
                              * FH_SEG_MAX_LADDER_BOOKS; the others keep all their levels in the sorted arrays.
                              * 2 x 4160 bytes a book: FH_SEG_LADDER_BOOKS (the writers' default) is 130 MiB */
    uint32_t standby;        /* the header's standby state from the start (FH_SHM_STANDBY_*; 0: not a standby), so
                              * that no reader of a standby's new segment ever takes its empty books for current */
} fh_seg_cfg_t;

#define FH_SEG_LADDER_BOOKS 16384u
#define FH_SEG_MAX_LADDER_BOOKS 65534u

#define FH_SEG_PRICE_EXP (-4) /* ITCH prices: 1/10000 of a dollar (fh_shm_hdr_t.price_exp) */

typedef struct fh_seg {
    fh_shm_hdr_t *hdr;
    fh_shm_book_t *books;
    uint32_t *lkey;          /* the engine's 32-bit level keys (hdr->key_bits 32) */
    fh_shm_agg_t *lagg;
    fh_shm_event_t *events;
    fh_shm_stats_t *stats;
    fh_shm_lside_t *lside;   /* 2 * (hdr->ladder_books + 1) ladder side headers */
    fh_shm_agg_t *lslot;     /* their slots */
    fh_shm_wake_t *wake; /* a private segment has its own */
    size_t size;
    int fd; /* -1 for a private segment */
    uint32_t idle_wakes;   /* consecutive wakes that woke no one (fh_seg_wake) */
    uint64_t last_wake_ns;
    char path[4096];
    char wake_path[4096 + 32]; /* fh_shm_wake_path(path), named once at create: close unlinks that very page */
} fh_seg_t;

/* Bytes of a segment for cfg (0 with an error message if cfg is invalid). */
size_t fh_seg_footprint(const fh_seg_cfg_t *cfg);
/* Create, lock and map a segment. A segment file held by a live writer is refused (the error names its
 * pid); a stale one (its writer gone) is replaced. NULL with an error message on failure. */
fh_seg_t *fh_seg_create(const fh_seg_cfg_t *cfg);
/* Mark the writer stopped, unmap, unlock, and (if unlink_files) remove the files. */
void fh_seg_close(fh_seg_t *s, int unlink_files);

/* Fault in every page of [p, p + len), a fresh private anonymous mapping, writable, so that the hot path takes no
 * page fault: madvise(MADV_POPULATE_WRITE) (Linux 5.14), the kernel filling the page tables in one call, or on an
 * older kernel (EINVAL) a memset. The memory reads as zeros either way. -1 with the error set when the kernel
 * cannot populate it (ENOMEM: not enough memory; the caller unmaps it and says so, where a memset would have
 * been killed by the OOM killer). */
int fh_prefault(void *p, size_t len);

/* Writer's signs of life and wake-ups; cheap, but not per message. */
void fh_seg_heartbeat(fh_seg_t *s);
/* A standby's currency (fh_shm_hdr_t.standby, behind_msgs), each stored only when it changed: the header's line
 * is read by every reader, and a standby calls this at every poll. */
void fh_seg_set_standby(fh_seg_t *s, uint32_t state, uint64_t behind_msgs);
/* After publishing events: wake readers blocked in fh_shm_wait, if any (a full barrier, then one load;
 * a syscall only when someone waits). */
void fh_seg_wake(fh_seg_t *s);
/* Copy counters into the stats region under its seqlock. */
void fh_seg_publish_stats(fh_seg_t *s, const uint64_t *counters, uint32_t n, const uint64_t *type_counts);
/* Copy the data plane's section (fh_shm_dp_stats_t: drops, MoldUDP64, lines, latency, packets, bytes) into
 * the stats region under the same seqlock, marking it present. Cold: every 100 ms at most, never per packet. */
void fh_seg_publish_dataplane(fh_seg_t *s, const fh_shm_dp_stats_t *dp);

#endif
