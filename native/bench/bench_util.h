/* Helpers shared by the benchmark programs: a monotonic clock, a sort order for samples, a day file mapped
 * into memory, and (in programs built with _GNU_SOURCE) pinning to a CPU. */
#ifndef FH_BENCH_UTIL_H
#define FH_BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* For qsort of uint64_t samples. */
static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The whole of PATH mapped read-only and faulted in (MAP_POPULATE), so the timed passes read memory, not the
 * disk; its size in *len. On failure: one line on stderr naming PROG and PATH ("cannot read PATH (missing or
 * empty)", or the mmap error), and NULL. The descriptor is closed at once; bench_unmap_file releases the map. */
static inline const uint8_t *bench_map_file(const char *prog, const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || st.st_size == 0) {
        fprintf(stderr, "%s: cannot read %s (missing or empty)\n", prog, path);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    int err = errno;
    close(fd);
    if (data == MAP_FAILED) {
        fprintf(stderr, "%s: mmap %s: %s\n", prog, path, strerror(err));
        return NULL;
    }
    *len = (size_t)st.st_size;
    return data;
}

static inline void bench_unmap_file(const uint8_t *data, size_t len)
{
    if (data)
        munmap((void *)data, len);
}

#ifdef _GNU_SOURCE
#include <sched.h>

/* Pin the calling thread to CPU cpu (negative: leave it where it is): 0, or -1 after one line on stderr naming
 * PROG, the CPU, the cause and the CPUs this host has. */
static inline int bench_pin(const char *prog, long cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < CPU_SETSIZE) {
        CPU_SET((int)cpu, &set);
        if (!sched_setaffinity(0, sizeof set, &set))
            return 0;
    } else {
        errno = EINVAL;
    }
    fprintf(stderr, "%s: cannot pin to CPU %ld: %s (this host has CPUs 0..%ld; is it one this process may use?)\n",
            prog, cpu, strerror(errno), sysconf(_SC_NPROCESSORS_CONF) - 1);
    return -1;
}
#endif

#endif
