/* fh-bench-engine FILE [REPEATS] [MODE]: apply a daily ITCH file to the C book engine, REPEATS times,
 * and print ns/message (min and median). MODE "engine" (default): private books, no publishing;
 * "publish": books in a shared segment (/dev/shm/fh-bench-engine, or $FH_BENCH_SEGMENT: runs side by side each
 * need their own), seqlocks and events on; "scan": the parse-only pass. Used by
 * bench/callgrind.sh (valgrind --tool=callgrind --toggle-collect=fh_engine_apply_blocks), where the
 * instruction count per message is the repeatable figure; `fh bench engine` is the wall-clock benchmark. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fh/book.h"
#include "fh/instrument.h" /* CALLGRIND_START_INSTRUMENTATION around the measured call */
#include "fh/itch.h"
#include "fh/seg.h"
#include "bench_util.h"



int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [REPEATS] [engine|publish|scan]\n", argv[0]);
        return 2;
    }
    int repeats = argc > 2 ? atoi(argv[2]) : 3;
    int scan = argc > 3 && strcmp(argv[3], "scan") == 0;
    int publish = argc > 3 && strcmp(argv[3], "publish") == 0;
    if (repeats < 1 || repeats > 1000) {
        fprintf(stderr, "%s: REPEATS must be 1..1000\n", argv[0]);
        return 2;
    }
    size_t len;
    const uint8_t *data = bench_map_file(argv[0], argv[1], &len);
    if (!data)
        return 2;
    fh_engine_cfg_t cfg = { 65535, 8u << 20, 4u << 20 };
    fh_seg_t *seg = NULL;
    if (publish) {
        const char *path = getenv("FH_BENCH_SEGMENT");
        fh_seg_cfg_t sc = { path && *path ? path : "/dev/shm/fh-bench-engine", "bench", cfg.max_levels, 1u << 16, 10,
                             -1, FH_SEG_LADDER_BOOKS, 0 };
        if (!(seg = fh_seg_create(&sc))) {
            fprintf(stderr, "%s: %s\n", argv[0], fh_errmsg());
            return 2;
        }
    }
    fh_engine_t *e = seg ? fh_engine_create_on(&cfg, seg) : fh_engine_create(&cfg);
    if (!e) {
        fprintf(stderr, "%s: %s\n", argv[0], fh_errmsg());
        if (seg)
            fh_seg_close(seg, 1); /* its file and wake page */
        return 2;
    }
    uint64_t t[1000], msgs = 0, sum = 0;
    for (int r = 0; r < repeats; r++) {
        if (r) /* a new engine is as a reset one: its tables are fresh, zero pages */
            fh_engine_reset(e);
        uint64_t t0 = now_ns();
        CALLGRIND_START_INSTRUMENTATION; /* the measured pass; --toggle-collect counts only the function named */
        if (scan) {
            msgs = fh_itch_scan(data, len, &sum);
        } else {
            fh_engine_apply_blocks(e, data, len);
            uint64_t c[FH_C_COUNT];
            fh_engine_counters(e, c);
            msgs = c[FH_C_messages];
        }
        CALLGRIND_STOP_INSTRUMENTATION;
        t[r] = now_ns() - t0;
    }
    qsort(t, (size_t)repeats, sizeof t[0], cmp_u64);
    printf("{\"mode\": \"%s\", \"messages\": %llu, \"min_ns_per_msg\": %.2f, \"median_ns_per_msg\": %.2f, "
           "\"live_orders\": %llu, \"checksum\": %llu}\n",
           scan ? "scan" : publish ? "publish" : "engine", (unsigned long long)msgs, (double)t[0] / (double)msgs,
           (double)t[repeats / 2] / (double)msgs, (unsigned long long)fh_engine_live_orders(e),
           (unsigned long long)sum);
    fh_engine_destroy(e);
    if (seg)
        fh_seg_close(seg, 1);
    bench_unmap_file(data, len);
    return 0;
}
