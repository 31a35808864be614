/* fh/journal.h: the applied-message journal of an fh instance, and the whole contract of its readers.
 *
 * Header-only: a follower (fh record, replication, history, a gateway) includes this file and nothing else
 * of fh. The journal is a shared-memory byte ring, /dev/shm/fh-NAME.journal (mode 0640), written by one
 * process (the data plane) and read by any number of followers, each at its own pace. The writer never
 * waits for a reader and does not know how many there are; a reader that falls a whole ring behind finds
 * out that it was overrun and where it may go on from.
 *
 *   header    magic, layout version, sizes, writer pid, start time, name (written once, before magic);
 *             on its own cache line the writer's two positions, `reserve` and `head`; on another its cold
 *             fields (records, heartbeat, writer state, the session and sequence journaled so far).
 *   data      `capacity` bytes (a power of two), records laid end to end, each 8-byte aligned.
 *
 * Positions are byte offsets from the journal's start, counting every lap: the record at position p lies
 * at data[p & (capacity - 1)]. A record never straddles the end of the ring: when the next one does not
 * fit, the writer fills the rest with a FH_JR_PAD record (or, when fewer than sizeof(fh_journal_rec_t)
 * bytes are left, with nothing: a reader skips such a tail), so every lap starts with a record.
 *
 * A record: fh_journal_rec_t (48 bytes), then, for FH_JR_MSGS, `count` MoldUDP64 message blocks (a u16
 * big-endian length and that many bytes, exactly as in a MoldUDP64 datagram), padded to 8 bytes.
 *
 *   FH_JR_MSGS       messages seq .. seq + count - 1 of `session`, applied in this order
 *   FH_JR_LOST       messages seq .. seq + arg - 1 of `session` were given up (never applied): a hole
 *   FH_JR_HEARTBEAT  the feed's heartbeat: the next message of `session` is seq (the journal is complete to
 *                    seq - 1: heartbeats naming a later sequence while a gap is open are not journaled)
 *   FH_JR_END        end of session: `session` ends before seq; every message before it is journaled
 *   FH_JR_MISSED     message seq of `session` may have been applied but its bytes are not in the journal
 *                    (see fh/journal_mold.h): a hole for a follower, as FH_JR_LOST
 *   FH_JR_PROMOTED   (a standby's journal, written by fh-replicate --role standby) the standby was promoted to
 *                    epoch arg: every record its primary shipped lies before this one; a data plane following
 *                    the journal with --standby takes its own feed lines from here (docs/replication.md)
 *   FH_JR_SNAPSHOT   (a standby's journal without its own engine) the primary's late-join snapshot, complete to
 *                    seq - 1 of `session` (arg: its orders), is in the file JOURNAL.snapshot: a follower loads it
 *                    in place of everything before; the records after this one follow it
 *   FH_JR_PAD        nothing: skip to the next lap
 * Sequence 0 is MoldUDP64's "unsequenced" (anonymised captures have it): such MSGS records carry seq 0.
 *
 * Protocol. The writer, for a record of n bytes at position p: stores reserve = p + n (then a release
 * fence: the reservation is visible before any byte of the ring changes), writes the record, then stores
 * head = p + n with release. A reader at position p: loads head (acquire); p == head: nothing new. Else it
 * copies the record at p, then (acquire fence) loads reserve: if reserve - p > capacity, the writer may
 * have written over the copy while it was taken: the reader was overrun. Otherwise the copy is whole. A
 * reader that was overrun goes on from the start of the lap that holds the head (every lap starts with a
 * record), having lost what lay before it; what it lost is visible to it from the sequences.
 *
 * Like the segment, the writer holds an exclusive flock on the file for its lifetime (fh_journal_writer_alive
 * tells a follower whether it is still there), and a second writer is refused. */
#ifndef FH_JOURNAL_H
#define FH_JOURNAL_H

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FH_JOURNAL_MAGIC 0x31304c4e524a4646ull /* "FFJRNL01" */
#define FH_JOURNAL_LAYOUT_VERSION 1u
#define FH_JOURNAL_MIN_CAPACITY (1ull << 18) /* 256 KiB: four datagrams of the largest size at least */
#define FH_JOURNAL_MAX_CAPACITY (1ull << 40)
#define FH_JOURNAL_MAX_BODY 65536u /* a record's bytes after its header: a UDP datagram's blocks fit */
#define FH_JOURNAL_SESSION_LEN 10

/* fh_journal_rec_t.kind */
#define FH_JR_PAD 0
#define FH_JR_MSGS 1
#define FH_JR_LOST 2
#define FH_JR_HEARTBEAT 3
#define FH_JR_END 4
#define FH_JR_MISSED 5
#define FH_JR_PROMOTED 6
#define FH_JR_SNAPSHOT 7

typedef struct fh_journal_rec {
    uint64_t pos;          /* the record's own position: a reader checks that it stands on a record */
    uint32_t size;         /* bytes of the record, header and padding included; a multiple of 8 */
    uint8_t kind;          /* FH_JR_* */
    uint8_t pad0;
    uint16_t count;        /* FH_JR_MSGS: messages in the body */
    uint64_t seq;          /* see the kinds above */
    uint64_t arg;          /* FH_JR_LOST: messages lost; FH_JR_MSGS: body bytes (blocks, without padding) */
    char session[FH_JOURNAL_SESSION_LEN]; /* the MoldUDP64 session, as on the wire (space-padded) */
    uint8_t pad1[6];
} fh_journal_rec_t;
_Static_assert(sizeof(fh_journal_rec_t) == 48, "journal record header is 48 bytes");

typedef struct fh_journal_hdr {
    /* identity and layout: written once, before magic */
    uint64_t magic;
    uint32_t layout_version;
    uint32_t hdr_size;
    uint64_t size;          /* of the whole file */
    uint64_t data_off;      /* the ring */
    uint64_t capacity;      /* bytes of the ring, a power of two */
    uint32_t writer_pid;
    uint32_t pad0;
    uint64_t start_ns;      /* CLOCK_REALTIME when the writer started */
    char name[32];          /* instance name */
    /* the writer's positions: hot, written by the writer only */
    _Alignas(64) _Atomic uint64_t reserve; /* the writer may be writing below this position */
    _Atomic uint64_t head;                 /* every record below this position is whole */
    /* cold, written by the writer only (followers' status) */
    _Alignas(64) _Atomic uint64_t heartbeat_ns; /* CLOCK_REALTIME of the writer's last sign of life */
    _Atomic uint32_t writer_state;               /* 1 running, 2 stopped cleanly */
    uint32_t pad1;
    _Atomic uint64_t records;                    /* records written (pads excluded) */
} fh_journal_hdr_t;

/* Offsets a reader in another language (handler/journal.py) relies on. */
_Static_assert(offsetof(fh_journal_hdr_t, reserve) == 128 && offsetof(fh_journal_hdr_t, head) == 136 &&
                   offsetof(fh_journal_hdr_t, heartbeat_ns) == 192 && offsetof(fh_journal_hdr_t, writer_state) == 200 &&
                   offsetof(fh_journal_hdr_t, records) == 208 && sizeof(fh_journal_hdr_t) == 256,
               "journal header layout");

/* ---- reader ------------------------------------------------------------------------------------------ */

typedef struct fh_journal_reader {
    const uint8_t *base;
    size_t size;
    const fh_journal_hdr_t *hdr;
    const uint8_t *data;
    uint64_t capacity, mask;
} fh_journal_reader_t;

/* Join the journal at path read-only. 0, or -errno: -ENOENT (no journal: is the data plane running with
 * --journal?), -EAGAIN (its writer is still creating it), -EPROTO (not an fh journal, or another layout
 * version), or mmap's error. */
static inline int fh_journal_join(fh_journal_reader_t *r, const char *path)
{
    memset(r, 0, sizeof *r);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st)) {
        int err = errno;
        close(fd);
        return -err;
    }
    if ((size_t)st.st_size < sizeof(fh_journal_hdr_t)) {
        /* a writer creates the file, locks it, then sizes it: empty or locked, it is still being created */
        int creating = !st.st_size || (flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK);
        close(fd);
        return creating ? -EAGAIN : -EPROTO;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED)
        return -err;
    const fh_journal_hdr_t *h = (const fh_journal_hdr_t *)p;
    uint64_t magic = atomic_load_explicit((const _Atomic uint64_t *)&h->magic, memory_order_acquire);
    if (magic == 0) {
        munmap(p, (size_t)st.st_size);
        return -EAGAIN;
    }
    if (magic != FH_JOURNAL_MAGIC || h->layout_version != FH_JOURNAL_LAYOUT_VERSION ||
        h->hdr_size != sizeof *h || h->size > (uint64_t)st.st_size || h->capacity < FH_JOURNAL_MIN_CAPACITY ||
        (h->capacity & (h->capacity - 1)) || h->data_off < sizeof *h || h->data_off > h->size || h->capacity > h->size - h->data_off) { /* no wrap */
        munmap(p, (size_t)st.st_size);
        return -EPROTO;
    }
    r->base = (const uint8_t *)p;
    r->size = (size_t)st.st_size;
    r->hdr = h;
    r->data = r->base + h->data_off;
    r->capacity = h->capacity;
    r->mask = h->capacity - 1;
    return 0;
}

static inline void fh_journal_leave(fh_journal_reader_t *r)
{
    if (r->base)
        munmap((void *)r->base, r->size);
    memset(r, 0, sizeof *r);
}

/* 1 if the writer still holds the journal, 0 if it is gone, -errno on error. */
static inline int fh_journal_writer_alive(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int alive = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return alive;
}

static inline uint64_t fh_journal_head(const fh_journal_reader_t *r)
{
    return atomic_load_explicit(&r->hdr->head, memory_order_acquire);
}

/* The oldest position a new reader can start from: the start of the lap that holds the last record (every
 * lap starts with a record). Older laps are partly overwritten already; the records from here on may still
 * be overrun while they are read, which fh_journal_next reports. */
static inline uint64_t fh_journal_oldest(const fh_journal_reader_t *r)
{
    uint64_t head = fh_journal_head(r);
    return head ? (head - 1) & ~r->mask : 0;
}

#define FH_JOURNAL_NONE 0    /* nothing new at *pos */
#define FH_JOURNAL_OK 1      /* *rec and body hold the record that was at *pos; *pos advanced past it */
#define FH_JOURNAL_OVERRUN 2 /* the record at *pos was overwritten before it could be read: records were lost.
                                *pos is set to the start of the head's lap, where reading may go on */
#define FH_JOURNAL_CORRUPT 3 /* *pos is not on a record of the ring (a position no record has): the caller's
                                position is wrong. Nothing was changed */

/* Read the record at *pos into *rec and its body (rec->size - 48 bytes, at most FH_JOURNAL_MAX_BODY) into
 * body. Pads and tails are skipped. Never blocks; never writes to the journal. */
static inline int fh_journal_next(const fh_journal_reader_t *r, uint64_t *pos, fh_journal_rec_t *rec, uint8_t *body)
{
    const fh_journal_hdr_t *h = r->hdr;
    uint64_t p = *pos;
    for (;;) {
        uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
        if (p >= head)
            return FH_JOURNAL_NONE;
        uint64_t off = p & r->mask;
        if (r->capacity - off < sizeof *rec) { /* a tail too short for a record: the lap ends here */
            p += r->capacity - off;
            *pos = p;
            continue;
        }
        memcpy(rec, r->data + off, sizeof *rec);
        uint32_t size = rec->size;
        int sane = rec->pos == p && size >= sizeof *rec && !(size & 7) && size <= r->capacity - off &&
                   size - sizeof *rec <= FH_JOURNAL_MAX_BODY;
        if (sane && rec->kind != FH_JR_PAD)
            memcpy(body, r->data + off + sizeof *rec, size - sizeof *rec);
        atomic_thread_fence(memory_order_acquire);
        uint64_t reserve = atomic_load_explicit(&h->reserve, memory_order_relaxed);
        if (reserve - p > r->capacity) {
            uint64_t lap = atomic_load_explicit(&h->head, memory_order_acquire) & ~r->mask;
            *pos = lap > p ? lap : (p & ~r->mask) + r->capacity; /* a lap start: never backwards */
            return FH_JOURNAL_OVERRUN;
        }
        if (!sane)
            return FH_JOURNAL_CORRUPT;
        p += size;
        *pos = p;
        if (rec->kind == FH_JR_PAD)
            continue;
        return FH_JOURNAL_OK;
    }
}

/* Walk the message blocks of a FH_JR_MSGS body: fills up to cap (pointer, length) pairs; returns the
 * number of whole blocks (rec->count when the record is sound). */
static inline uint32_t fh_journal_blocks(const fh_journal_rec_t *rec, const uint8_t *body, const uint8_t **msg,
                                         uint16_t *len, uint32_t cap)
{
    uint64_t room = rec->size >= sizeof *rec ? rec->size - sizeof *rec : 0; /* the body copied: never past it */
    uint64_t n = rec->arg < room ? rec->arg : room, o = 0;
    uint32_t i = 0;
    while (i < rec->count && o + 2 <= n) {
        uint16_t l = (uint16_t)((body[o] << 8) | body[o + 1]);
        if (o + 2 + l > n)
            break;
        if (i < cap) {
            msg[i] = body + o + 2;
            len[i] = l;
        }
        o += 2u + l;
        i++;
    }
    return i;
}

#endif
