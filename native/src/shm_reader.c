/* Exported wrappers of the reader functions of fh/shm.h, for callers that cannot use `static inline`
 * (cffi, other FFIs): after liburing's separate symbol map for FFI. Each is a thin call into the header,
 * plus what the header leaves to each reader: the stats under their seqlock (given up, like a snapshot,
 * after FH_SHM_BUSY_NS mid-change), the liveness words. */
#define _GNU_SOURCE
#include <time.h>

#include "fh/shm_reader.h"

int fh_shm_reader_join(fh_shm_reader_t *r, const char *path)
{
    memset(r, 0, sizeof *r);
    return fh_shm_join(r, path);
}

void fh_shm_reader_leave(fh_shm_reader_t *r) { fh_shm_leave(r); }


int fh_shm_reader_writer_alive(const char *path) { return fh_shm_writer_alive(path); }

int fh_shm_reader_snapshot(const fh_shm_reader_t *r, uint32_t locate, uint32_t depth, fh_shm_snapshot_t *out)
{
    return fh_shm_snapshot(r, locate, depth, out); /* -2 (FH_SHM_READER_BUSY) after FH_SHM_BUSY_NS mid-change */
}

uint64_t fh_shm_reader_head(const fh_shm_reader_t *r) { return fh_shm_head(r); }

int fh_shm_reader_event_next(const fh_shm_reader_t *r, uint64_t *next, fh_shm_event_t *out)
{
    return fh_shm_event_next(r, next, out);
}

/* Up to cap events from *next into out; returns how many. *rc: FH_SHM_EV_OK when cap were read,
 * FH_SHM_EV_NONE when the reader caught up, FH_SHM_EV_OVERRUN when it stopped at a loss (then *next is the
 * oldest event still in the ring, and the events before the loss are in out). */
uint32_t fh_shm_reader_events(const fh_shm_reader_t *r, uint64_t *next, fh_shm_event_t *out, uint32_t cap, int *rc)
{
    uint32_t n = 0;
    *rc = FH_SHM_EV_OK;
    while (n < cap) {
        int s = fh_shm_reader_event_next(r, next, &out[n]);
        if (s != FH_SHM_EV_OK) {
            *rc = s;
            break;
        }
        n++;
    }
    return n;
}

uint64_t fh_shm_reader_wait(const fh_shm_reader_t *r, uint64_t seen, uint64_t timeout_ns)
{
    return fh_shm_wait(r, seen, timeout_ns);
}

/* The stats under their seqlock: copies min(count, cap) counters and (if type_counts) the 256 counts by
 * message type. Returns the writer's counter count, or FH_SHM_READER_BUSY as a snapshot does. */
int fh_shm_reader_stats(const fh_shm_reader_t *r, uint64_t *counters, uint32_t cap, uint64_t *type_counts)
{
    fh_shm_stats_t st; /* the whole region, under its seqlock (fh_shm_stats_copy) */
    if (fh_shm_stats_copy(r, &st))
        return FH_SHM_READER_BUSY;
    uint32_t n = st.count < FH_SHM_MAX_COUNTERS ? st.count : FH_SHM_MAX_COUNTERS;
    memcpy(counters, st.counter, (n < cap ? n : cap) * sizeof *counters);
    if (type_counts)
        memcpy(type_counts, st.type_count, sizeof st.type_count);
    return (int)n;
}

uint64_t fh_shm_reader_heartbeat_ns(const fh_shm_reader_t *r)
{
    return __atomic_load_n(&r->hdr->heartbeat_ns, __ATOMIC_ACQUIRE);
}

uint32_t fh_shm_reader_writer_state(const fh_shm_reader_t *r)
{
    return __atomic_load_n(&r->hdr->writer_state, __ATOMIC_ACQUIRE);
}

uint32_t fh_shm_reader_standby(const fh_shm_reader_t *r, uint64_t *behind) { return fh_shm_standby_state(r, behind); }
