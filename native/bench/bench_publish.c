/* fh-bench-publish FILE [REPEATS] [--events N] [--stuck-waiter]: the writer's cost of publishing, in
 * ns/message. One book engine on one shared segment (/dev/shm/fh-bench-publish-PID) applies the daily ITCH file REPEATS times (default 5)
 * with publishing off and REPEATS times with it on (fh_engine_set_publish), interleaved (off, on, on, off,
 * off, on, ...), so both modes use the same memory, the same process and the same stretch of a noisy
 * machine. "On" is what a data plane with readers does: per change, the book's seqlock bumps, and per
 * change of a best level, trade or state change, an event in the ring (N slots, default 65,536 as in
 * fh-bench-engine and `fh publish`), a futex check every
 * 256 messages, stats and heartbeat every 65,536. No reader is attached (no futex syscalls).
 *
 * With --stuck-waiter, the segment's waiter count is raised to 1 first, as a reader killed while asleep in
 * fh_shm_wait leaves it: every wake check then makes a FUTEX_WAKE syscall.
 *
 * Prints one JSON line: min and median ns/message of each mode, the overhead (on - off) of the mins and of
 * the medians, and the events published per pass. (fh-bench-engine FILE R engine|publish measures the two
 * modes in separate processes, the "off" one on private, hugepage-backed memory.) */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fh/book.h"
#include "fh/seg.h"
#include "bench_util.h"



int main(int argc, char **argv)
{
    const char *prog = "fh-bench-publish";
    const char *file = NULL;
    int repeats = 5, stuck = 0, bad = 0, positional = 0;
    uint32_t events_cap = 1u << 16;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
            events_cap = (uint32_t)strtoul(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--stuck-waiter") == 0)
            stuck = 1;
        else if (argv[i][0] != '-' && positional == 0 && ++positional)
            file = argv[i];
        else if (argv[i][0] != '-' && positional == 1 && ++positional)
            repeats = atoi(argv[i]);
        else
            bad = 1;
    }
    if (!file || bad) {
        fprintf(stderr, "usage: %s FILE [REPEATS] [--events N] [--stuck-waiter]\n", prog);
        return 2;
    }
    if (repeats < 1 || repeats > 100) {
        fprintf(stderr, "%s: REPEATS must be 1..100\n", prog);
        return 2;
    }
    size_t len;
    const uint8_t *data = bench_map_file(prog, file, &len);
    if (!data)
        return 2;
    fh_engine_cfg_t cfg = { 65535, 8u << 20, 4u << 20 }; /* as fh-bench-engine */
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fh-bench-publish-%d", (int)getpid());
    fh_seg_cfg_t sc = { path, "bench-publish", cfg.max_levels, events_cap, 10, -1, FH_SEG_LADDER_BOOKS, 0 };
    fh_seg_t *seg = fh_seg_create(&sc);
    fh_engine_t *e = seg ? fh_engine_create_on(&cfg, seg) : NULL;
    if (!e) {
        fprintf(stderr, "%s: %s\n", prog, fh_errmsg());
        if (seg)
            fh_seg_close(seg, 1);
        return 2;
    }
    if (stuck)
        atomic_store(&seg->wake->waiters, 1);
    uint64_t t[2][100], msgs = 0, events = 0;
    for (int r = 0; r < 2 * repeats; r++) {
        int on = (r & 1) ^ ((r >> 1) & 1); /* off, on, on, off, off, on, ... */
        fh_engine_set_publish(e, on);
        fh_engine_reset(e);
        uint64_t h0 = atomic_load(&seg->hdr->head);
        uint64_t t0 = now_ns();
        fh_engine_apply_blocks(e, data, len);
        uint64_t dt = now_ns() - t0;
        uint64_t c[FH_C_COUNT];
        fh_engine_counters(e, c);
        msgs = c[FH_C_messages];
        if (on)
            events = atomic_load(&seg->hdr->head) - h0;
        t[on][r / 2] = dt;
    }
    fh_engine_destroy(e);
    fh_seg_close(seg, 1);
    bench_unmap_file(data, len);
    qsort(t[0], (size_t)repeats, sizeof t[0][0], cmp_u64);
    qsort(t[1], (size_t)repeats, sizeof t[1][0], cmp_u64);
    double m = (double)msgs;
    double off_min = (double)t[0][0] / m, on_min = (double)t[1][0] / m;
    double off_med = (double)t[0][repeats / 2] / m, on_med = (double)t[1][repeats / 2] / m;
    printf("{\"event_capacity\": %u, \"stuck_waiter\": %s, \"messages\": %" PRIu64 ", \"events_per_pass\": %" PRIu64
           ", \"repeats\": %d, \"off_min\": %.2f, \"off_median\": %.2f, \"on_min\": %.2f, \"on_median\": %.2f, "
           "\"overhead_min\": %.2f, \"overhead_median\": %.2f}\n",
           events_cap, stuck ? "true" : "false", msgs, events, repeats, off_min, off_med, on_min, on_med,
           on_min - off_min, on_med - off_med);
    return 0;
}
