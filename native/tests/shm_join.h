/* shm_join.h: what the project's own C readers of a segment share (tests/shm_torture_reader.c, bench/bench_wake.c,
 * bench/bench_shm_read.c). It includes fh/shm.h and nothing else of fh, so a reader built on it stays held to
 * the readers' contract. */
#ifndef FH_TESTS_SHM_JOIN_H
#define FH_TESTS_SHM_JOIN_H

#include <fh/shm.h>

#include <stdio.h>

/* xorshift64: a reproducible pseudo-random sequence from *state (never 0). */
static inline uint64_t shm_xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* fh_shm_join(r, path); on failure one line on stderr, "PROG: PATH: " and the cause with what to do: no segment,
 * not ready yet, permission, a segment of another layout version (the version found and FH_SHM_LAYOUT_VERSION,
 * the one this program reads), not an fh segment. Returns fh_shm_join's result. */
static inline int shm_join(fh_shm_reader_t *r, const char *prog, const char *path)
{
    int rc = fh_shm_join(r, path);
    if (rc == 0)
        return 0;
    if (rc == -ENOENT) {
        fprintf(stderr, "%s: %s: no such segment (is the writer running?)\n", prog, path);
    } else if (rc == -EAGAIN) {
        fprintf(stderr, "%s: %s: the segment is not ready (its writer is starting); try again\n", prog, path);
    } else if (rc == -EACCES) {
        fprintf(stderr, "%s: %s: permission denied: join the segment's group, or run as its owner\n", prog, path);
    } else if (rc == -EPROTO) {
        fh_shm_hdr_t h;
        memset(&h, 0, sizeof h);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, &h, sizeof h) : -1;
        if (fd >= 0)
            close(fd);
        if (n == (ssize_t)sizeof h && h.magic == FH_SHM_MAGIC && h.layout_version != FH_SHM_LAYOUT_VERSION)
            fprintf(stderr, "%s: %s: segment layout version %u, this program reads version %u: rebuild it with the "
                            "fh/shm.h of the running fh\n", prog, path, h.layout_version, FH_SHM_LAYOUT_VERSION);
        else
            fprintf(stderr, "%s: %s: not an fh segment (layout version %u)\n", prog, path, FH_SHM_LAYOUT_VERSION);
    } else {
        fprintf(stderr, "%s: %s: cannot join: %s\n", prog, path, strerror(-rc));
    }
    return rc;
}

#endif
