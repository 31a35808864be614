/* fh/journal_writer.h: the writer's side of the applied-message journal (layout and reader contract:
 * fh/journal.h).
 *
 * One writer per journal: the process that applies the feed's messages (the data plane) appends what it
 * applied, in order, and never waits for anyone. Life, as for everything fh keeps in shared memory:
 * fh_journal_footprint (0: bad parameters), fh_journal_create (create, lock, size, map and format the file,
 * or format a caller's private memory when path is NULL), fh_journal_close.
 *
 * Hot path: fh_journal_append_msgs, one call per run of applied messages (a datagram's worth): a few
 * stores and one copy of the run's blocks, no branch that depends on readers, no syscall, no allocation.
 * It does not check its arguments: count and len come from a framed datagram (len <= FH_JOURNAL_MAX_BODY). */
#ifndef FH_JOURNAL_WRITER_H
#define FH_JOURNAL_WRITER_H

#include "fh/common.h"
#include "fh/journal.h"

typedef struct fh_journal_cfg {
    const char *path;  /* the file (/dev/shm/fh-NAME.journal); NULL: private memory (tests, benchmarks) */
    const char *name;  /* instance name recorded in the header */
    uint64_t capacity; /* bytes of the ring: a power of two, FH_JOURNAL_MIN_CAPACITY .. FH_JOURNAL_MAX_CAPACITY */
    int gid;           /* group of the file (mode 0640); -1: the writer's own */
} fh_journal_cfg_t;

typedef struct fh_journal {
    fh_journal_hdr_t *hdr;
    uint8_t *data;
    uint64_t mask, capacity;
    uint64_t pos;          /* == hdr->head: the writer's own copy */
    uint64_t records;
    size_t size;
    int fd;                /* -1: private memory */
    /* the last mark written, so that a line's repeated heartbeats are journaled once */
    uint8_t last_kind;
    uint64_t last_seq;
    char path[4096];
} fh_journal_t;

/* Bytes of the file for a ring of capacity bytes: 0 with an error message if capacity is out of range. */
size_t fh_journal_footprint(uint64_t capacity);
/* Create (a live writer's file is refused, naming its pid; a stale one is replaced), lock, map and format.
 * NULL with an error message on failure. */
fh_journal_t *fh_journal_create(const fh_journal_cfg_t *cfg);
/* Mark the writer stopped, unmap, unlock, and (if unlink_file) remove the file. */
void fh_journal_close(fh_journal_t *j, int unlink_file);
/* Cold: a FH_JR_LOST, FH_JR_HEARTBEAT or FH_JR_END record. A heartbeat equal to the last mark written
 * (same kind and sequence) is not written again, nor is a repeated end of session. */
void fh_journal_append_mark(fh_journal_t *j, int kind, const char session[FH_JOURNAL_SESSION_LEN], uint64_t seq,
                            uint64_t arg);
/* Cold: heartbeat_ns (every 100 ms from the data plane's idle loop, say). */
void fh_journal_heartbeat(fh_journal_t *j);

/* Reserve n bytes (a multiple of 8, <= capacity / 4) and return where to write them: the ring after a pad
 * when the record does not fit before the ring's end. *posp: the record's position. */
static inline uint8_t *fh_journal__reserve(fh_journal_t *j, uint64_t n, uint64_t *posp)
{
    uint64_t pos = j->pos, off = pos & j->mask;
    if (FH_UNLIKELY(off + n > j->capacity)) {
        uint64_t left = j->capacity - off;
        atomic_store_explicit(&j->hdr->reserve, pos + left + n, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        if (left >= sizeof(fh_journal_rec_t)) {
            fh_journal_rec_t *pad = (fh_journal_rec_t *)(j->data + off);
            memset(pad, 0, sizeof *pad);
            pad->pos = pos;
            pad->size = (uint32_t)left;
            pad->kind = FH_JR_PAD;
        }
        pos += left;
        off = 0;
    } else {
        atomic_store_explicit(&j->hdr->reserve, pos + n, memory_order_relaxed);
        atomic_thread_fence(memory_order_release); /* the reservation before any byte of the ring changes */
    }
    *posp = pos;
    return j->data + off;
}

static inline void fh_journal__publish(fh_journal_t *j, uint64_t end)
{
    j->pos = end;
    j->records++;
    atomic_store_explicit(&j->hdr->head, end, memory_order_release);
}

/* Hot: messages seq .. seq + count - 1 of session, applied in this order, as len bytes of MoldUDP64
 * blocks (u16 BE length + message, count of them). */
static inline void fh_journal_append_msgs(fh_journal_t *j, const char session[FH_JOURNAL_SESSION_LEN], uint64_t seq,
                                          uint16_t count, const uint8_t *blocks, size_t len)
{
    uint64_t n = (sizeof(fh_journal_rec_t) + len + 7) & ~(uint64_t)7, pos;
    uint8_t *w = fh_journal__reserve(j, n, &pos);
    fh_journal_rec_t *r = (fh_journal_rec_t *)w;
    r->pos = pos;
    r->size = (uint32_t)n;
    r->kind = FH_JR_MSGS;
    r->pad0 = 0;
    r->count = count;
    r->seq = seq;
    r->arg = len;
    memcpy(r->session, session, FH_JOURNAL_SESSION_LEN);
    memcpy(w + sizeof *r, blocks, len);
    j->last_kind = FH_JR_MSGS;
    fh_journal__publish(j, pos + n);
}

#endif
