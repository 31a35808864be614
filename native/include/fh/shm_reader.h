/* fh/shm_reader.h: the readers of fh/shm.h as exported functions, for callers that cannot use
 * `static inline` (cffi and other FFIs; liburing keeps such a separate symbol map). C readers should use
 * fh/shm.h directly. Implemented in native/src/shm_reader.c. */
#ifndef FH_SHM_READER_H
#define FH_SHM_READER_H

#include "fh/shm.h"

/* fh_shm_reader_snapshot: a book left mid-change for FH_SHM_READER_BUSY_NS (its writer died inside an
 * update, or is stopped). */
#define FH_SHM_READER_BUSY -2

int fh_shm_reader_join(fh_shm_reader_t *r, const char *path);
void fh_shm_reader_leave(fh_shm_reader_t *r);
int fh_shm_reader_writer_alive(const char *path);
int fh_shm_reader_snapshot(const fh_shm_reader_t *r, uint32_t locate, uint32_t depth, fh_shm_snapshot_t *out);
uint64_t fh_shm_reader_head(const fh_shm_reader_t *r);
int fh_shm_reader_event_next(const fh_shm_reader_t *r, uint64_t *next, fh_shm_event_t *out);
uint32_t fh_shm_reader_events(const fh_shm_reader_t *r, uint64_t *next, fh_shm_event_t *out, uint32_t cap, int *rc);
uint64_t fh_shm_reader_wait(const fh_shm_reader_t *r, uint64_t seen, uint64_t timeout_ns);
int fh_shm_reader_stats(const fh_shm_reader_t *r, uint64_t *counters, uint32_t cap, uint64_t *type_counts);
uint64_t fh_shm_reader_heartbeat_ns(const fh_shm_reader_t *r);
uint32_t fh_shm_reader_writer_state(const fh_shm_reader_t *r);
uint32_t fh_shm_reader_standby(const fh_shm_reader_t *r, uint64_t *behind); /* fh_shm_standby_state */

#endif
