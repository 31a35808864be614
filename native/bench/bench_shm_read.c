/* fh-bench-shm-read SEGMENT [--snapshots N] [--depth D] [--books K] [--cpu C]: the cost of a reader's
 * snapshot (fh_shm_snapshot, fh/shm.h only) of one book, in ns: median, p99, p99.9 and max over N timed
 * calls (default 1,000,000), at depth D (default 10).
 *
 * Two access patterns, each timed call by call with the TSC (the segment's tsc_hz converts; the cost of
 * the timing itself, measured the same way with nothing between, is reported and subtracted):
 *   hot     the K (default 10) books with the most updates, in turn: the reader's usual case, a few books
 *           it follows, and the ones a busy writer changes most (the most seqlock retries)
 *   random  a uniformly random book among all that have one: mostly cache misses
 * and, for each, the mean over the whole run timed as one block (no timer in the loop).
 *
 * Run it against a held segment (`fh publish --hold`: idle) and during writes (`fh publish --loop N`, the
 * reader pinned to the other core). Snapshots of a book the writer has just reset (no instrument) are
 * counted as "empty" and left out of the figures. Output: one JSON line per pattern. */
#define _GNU_SOURCE
#include <fh/shm.h>

#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include "bench_util.h"
#include "../tests/shm_join.h"

static const char *prog = "fh-bench-shm-read";

static inline uint64_t tsc_begin(void)
{
    __builtin_ia32_lfence();
    uint64_t t = __builtin_ia32_rdtsc();
    __builtin_ia32_lfence();
    return t;
}

static inline uint64_t tsc_end(void)
{
    unsigned aux;
    uint64_t t = __builtin_ia32_rdtscp(&aux);
    __builtin_ia32_lfence();
    return t;
}


static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct book_rank {
    uint32_t updates;
    uint16_t locate;
} book_rank_t;

static int cmp_rank(const void *a, const void *b)
{
    const book_rank_t *x = a, *y = b;
    if (x->updates != y->updates)
        return x->updates < y->updates ? 1 : -1; /* most updates first */
    return (x->locate > y->locate) - (x->locate < y->locate);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    uint64_t n = 1000000;
    uint32_t depth = 10, k = 10;
    int cpu = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--snapshots") == 0 && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--depth") == 0 && i + 1 < argc)
            depth = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--books") == 0 && i + 1 < argc)
            k = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--cpu") == 0 && i + 1 < argc)
            cpu = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else
            path = NULL, i = argc;
    }
    if (!path || n < 100 || n > 100000000 || depth < 1 || depth > 64 || k < 1) {
        fprintf(stderr, "usage: %s SEGMENT [--snapshots N (100..1e8)] [--depth 1..64] [--books K] [--cpu C]\n", prog);
        return 2;
    }
    if (bench_pin(prog, cpu))
        return 2;
    fh_shm_reader_t r;
    if (shm_join(&r, prog, path))
        return 2;
    if (!r.hdr->tsc_hz) {
        fprintf(stderr, "%s: %s records no TSC rate; cannot convert\n", prog, path);
        return 2;
    }
    double ns_per_tick = 1e9 / (double)r.hdr->tsc_hz;

    /* the books, ranked by updates (read unguarded: a ranking, not a snapshot) */
    static book_rank_t rank[FH_SHM_BOOKS];
    static uint16_t all[FH_SHM_BOOKS];
    uint32_t nb = 0;
    for (uint32_t loc = 0; loc < FH_SHM_BOOKS; loc++)
        if (r.books[loc].status != FH_BOOK_EMPTY) {
            rank[nb] = (book_rank_t){ r.books[loc].updates, (uint16_t)loc };
            all[nb++] = (uint16_t)loc;
        }
    if (!nb) {
        fprintf(stderr, "%s: %s has no books yet\n", prog, path);
        return 2;
    }
    qsort(rank, nb, sizeof rank[0], cmp_rank);
    if (k > nb)
        k = nb;
    uint16_t hot[64 * 1024];
    for (uint32_t i = 0; i < k; i++)
        hot[i] = rank[i].locate;

    uint64_t *t = malloc(n * sizeof *t);
    if (!t) {
        fprintf(stderr, "%s: out of memory for %" PRIu64 " samples\n", prog, n);
        return 2;
    }
    /* the timer's own cost */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = tsc_begin();
        t[i] = tsc_end() - a;
    }
    qsort(t, n, sizeof *t, cmp_u64);
    uint64_t overhead = t[n / 2];

    static fh_shm_snapshot_t s;
    uint64_t sink = 0;
    for (int pattern = 0; pattern < 2; pattern++) {
        const char *name = pattern ? "random" : "hot";
        uint64_t retries = 0, empty = 0, m = 0;
        /* warm up, then the timed calls */
        for (uint64_t i = 0; i < 10000; i++)
            sink += (uint64_t)fh_shm_snapshot(&r, pattern ? all[rng() % nb] : hot[i % k], depth, &s);
        uint64_t w0 = mono_ns();
        for (uint64_t i = 0; i < n; i++) {
            uint16_t loc = pattern ? all[rng() % nb] : hot[i % k];
            uint64_t a = tsc_begin();
            int x = fh_shm_snapshot(&r, loc, depth, &s);
            uint64_t b = tsc_end();
            if (x < 0) {
                empty++;
                continue;
            }
            retries += (uint64_t)x;
            sink += s.nbids + s.nasks;
            t[m++] = b - a > overhead ? b - a - overhead : 0;
        }
        uint64_t w1 = mono_ns();
        /* the same calls as one block: the mean, with no timer in the loop (the locate choice is in it) */
        uint64_t b0 = mono_ns();
        for (uint64_t i = 0; i < n; i++)
            sink += (uint64_t)fh_shm_snapshot(&r, pattern ? all[rng() % nb] : hot[i % k], depth, &s) + s.nbids;
        uint64_t b1 = mono_ns();
        if (!m) {
            printf("{\"pattern\": \"%s\", \"snapshots\": 0, \"empty\": %" PRIu64 "}\n", name, empty);
            continue;
        }
        qsort(t, m, sizeof *t, cmp_u64);
        printf("{\"pattern\": \"%s\", \"books\": %u, \"depth\": %u, \"snapshots\": %" PRIu64 ", \"empty\": %" PRIu64
               ", \"retries\": %" PRIu64 ", \"median_ns\": %.1f, \"p99_ns\": %.1f, \"p999_ns\": %.1f, \"max_ns\": %.0f"
               ", \"block_mean_ns\": %.1f, \"timer_overhead_ns\": %.1f, \"head\": %" PRIu64 ", \"wall_s\": %.2f}\n",
               name, pattern ? nb : k, depth, m, empty, retries, (double)t[m / 2] * ns_per_tick,
               (double)t[m * 99 / 100] * ns_per_tick, (double)t[m * 999 / 1000] * ns_per_tick,
               (double)t[m - 1] * ns_per_tick, (double)(b1 - b0) / (double)n, (double)overhead * ns_per_tick,
               fh_shm_head(&r), (double)(w1 - w0 + b1 - b0) / 1e9);
    }
    free(t);
    fh_shm_leave(&r);
    return sink == 42 ? 3 : 0; /* keep the copies alive */
}
