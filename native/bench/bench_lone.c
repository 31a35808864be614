/* fh-bench-lone FILE [--per K] [--gap-us G] [--warm-us W] [--datagrams N] [--mode publish|engine] [--segment PATH]
 *              [--samples OUT] [--staged]
 *
 * A lone datagram's apply, in process: a day's messages cut into datagrams of K messages, each applied by
 * fh_engine_apply_datagram + fh_engine_batch_end (what fh-dataplane runs for a burst of one frame) G µs after the
 * last one ended, the core spinning in between with idle warming paced as the data plane paces it (--warm-us, its
 * default 1000; 0: none). Each apply is timed with the TSC; the output is one JSON line of percentiles. This is the
 * engine's part of `fh bench latency`'s "arrived alone" figure (bench/latency.md), without the NIC, the kernel, the
 * sender or the MoldUDP64 layer: what fh adds to a lone datagram, apart from what the network path and the VM add.
 * --samples OUT writes each datagram's ns and message types ("ns TYPES" a line), for attribution. --staged applies
 * through the staged consumer (fh_engine_consumer_staged, as fh-dataplane does: walked when handed over, applied at
 * batch_end) rather than whole (fh_engine_consumer).
 * Pin it (taskset -c 1): it spins one core for about N x G µs. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh/book.h"
#include "fh/consumer.h"
#include "fh/seg.h"
#include "bench_util.h"

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t tsc(void) { return __rdtsc(); }
#else
static inline uint64_t tsc(void) { return now_ns(); }
#endif

/* TSC ticks a second, against CLOCK_MONOTONIC over 200 ms. */
static double tsc_hz(void)
{
    uint64_t n0 = now_ns(), t0 = tsc(), n1;
    while ((n1 = now_ns()) - n0 < 200000000ull)
        ;
    return (double)(tsc() - t0) * 1e9 / (double)(n1 - n0);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s FILE [--per K] [--gap-us G] [--warm-us W] [--datagrams N] [--mode publish|engine]\n"
            "       [--segment PATH] [--samples OUT] [--staged]\n",
            prog);
}

int main(int argc, char **argv)
{
    const char *prog = argv[0], *mode = "publish", *samples = NULL;
    const char *segpath = getenv("FH_BENCH_SEGMENT");
    double gap_us = 4, warm_us = 1000;
    long per = 4, ndg = 500000;
    bool staged = false;
    static const struct option opts[] = { { "per", 1, 0, 'k' },     { "gap-us", 1, 0, 'g' },
                                          { "warm-us", 1, 0, 'w' }, { "datagrams", 1, 0, 'n' },
                                          { "mode", 1, 0, 'm' },    { "segment", 1, 0, 's' },
                                          { "samples", 1, 0, 'o' }, { "staged", 0, 0, 'S' },
                                          { 0, 0, 0, 0 } };
    for (int c, i = 0; (c = getopt_long(argc, argv, "", opts, &i)) != -1; i = 0) {
        char *end = NULL;
        switch (c) {
        case 'k': per = strtol(optarg, &end, 10); break;
        case 'g': gap_us = strtod(optarg, &end); break;
        case 'w': warm_us = strtod(optarg, &end); break;
        case 'n': ndg = strtol(optarg, &end, 10); break;
        case 'm': mode = optarg; break;
        case 's': segpath = optarg; break;
        case 'o': samples = optarg; break;
        case 'S': staged = true; break;
        default: usage(prog); return 2;
        }
        if (end && *end) {
            fprintf(stderr, "%s: --%s wants a number, not '%s'\n", prog, opts[i].name, optarg);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(prog);
        return 2;
    }
    /* an MTU of 1500 carries at most 105 ITCH messages; a 10 ms gap is an idle line, not a paced one */
    if (per < 1 || per > 105 || !(gap_us >= 0 && gap_us <= 10000) || !(warm_us >= 0 && warm_us <= 10000000) ||
        ndg < 1 || ndg > 100000000 || (strcmp(mode, "publish") && strcmp(mode, "engine"))) {
        fprintf(stderr,
                "%s: --per 1..105, --gap-us 0..10000, --warm-us 0..10000000, --datagrams 1..100000000, "
                "--mode publish or engine\n",
                prog);
        return 2;
    }
    bool publish = strcmp(mode, "publish") == 0;
    size_t len;
    const uint8_t *data = bench_map_file(prog, argv[optind], &len);
    if (!data)
        return 2;
    fh_engine_cfg_t cfg = { 65535, 8u << 20, 4u << 20 }; /* as fh-bench-engine */
    fh_seg_cfg_t sc = { segpath && *segpath ? segpath : "/dev/shm/fh-bench-lone", "bench", cfg.max_levels, 1u << 16,
                        10, -1, FH_SEG_LADDER_BOOKS, 0 };
    fh_seg_t *seg = fh_seg_create(&sc);
    if (!seg) {
        fprintf(stderr, "%s: %s\n", prog, fh_errmsg());
        return 2;
    }
    fh_engine_t *e = fh_engine_create_on(&cfg, seg);
    if (!e) {
        fprintf(stderr, "%s: %s\n", prog, fh_errmsg());
        fh_seg_close(seg, 1);
        return 2;
    }
    fh_engine_set_publish(e, publish);
    fh_feed_consumer_t con; /* as fh-dataplane applies a datagram: staged (--staged), else whole */
    if (staged)
        fh_engine_consumer_staged(e, &con);
    else
        fh_engine_consumer(e, &con);
    uint32_t *ns = malloc((size_t)ndg * sizeof *ns);
    char *types = samples ? malloc((size_t)ndg * 106) : NULL;
    if (!ns || (samples && !types)) {
        fprintf(stderr, "%s: out of memory for %ld samples\n", prog, ndg);
        return 2;
    }
    double hz = tsc_hz();
    uint64_t gap = (uint64_t)(gap_us * hz / 1e6), warm_cycle = (uint64_t)(warm_us * hz / 1e6), warm_next = 0;
    uint64_t *stamp = fh_engine_stamps(e), msgs = 0, misframed = 0;
    const uint8_t *p = data, *end = data + len;
    long d = 0;
    for (uint64_t next = tsc() + gap; d < ndg; d++) {
        const uint8_t *q = p;
        long c = 0;
        for (; c < per && end - q >= 2; c++) {
            size_t n = (size_t)q[0] << 8 | q[1];
            if ((size_t)(end - q - 2) < n)
                break;
            if (types)
                types[d * 106 + c] = n ? (char)q[2] : '0';
            q += 2 + n;
        }
        if (!c)
            break;
        if (types)
            types[d * 106 + c] = 0;
        uint64_t t;
        while ((t = tsc()) < next) /* idle: the data plane's empty polls, warming one book every warm_cycle / books */
            if (warm_cycle && t >= warm_next) {
                uint32_t books = fh_engine_warm(e, 1);
                warm_next = t + warm_cycle / (books ? books : 1);
            }
        uint64_t t0 = tsc();
        stamp[0] = stamp[1] = t0;
        misframed += con.apply_datagram(con.ctx, NULL, 0, (uint32_t)c, p, (size_t)(q - p)) != 0;
        fh_engine_batch_end(e);
        uint64_t t1 = tsc();
        double v = (double)(t1 - t0) * 1e9 / hz;
        ns[d] = v < 4e9 ? (uint32_t)v : UINT32_MAX;
        msgs += (uint64_t)c;
        p = q;
        next = t1 + gap;
    }
    if (samples) {
        FILE *f = fopen(samples, "w");
        if (!f) {
            fprintf(stderr, "%s: cannot write %s\n", prog, samples);
            return 2;
        }
        for (long i = 0; i < d; i++)
            fprintf(f, "%u %s\n", ns[i], types + i * 106);
        if (fclose(f)) {
            fprintf(stderr, "%s: cannot write %s\n", prog, samples);
            return 2;
        }
    }
    if (!d) {
        fprintf(stderr, "%s: %s holds no whole message\n", prog, argv[optind]);
        return 2;
    }
    qsort(ns, (size_t)d, sizeof *ns, cmp_u32);
#define PCT(x) ns[(size_t)((double)(d - 1) * (x))]
    printf("{\"mode\": \"%s\", \"per\": %ld, \"gap_us\": %g, \"warm_us\": %g, \"datagrams\": %ld, \"messages\": %llu, "
           "\"misframed\": %llu, \"books\": %u, \"ns\": {\"p50\": %u, \"p90\": %u, \"p99\": %u, \"p99.9\": %u, "
           "\"max\": %u}}\n",
           mode, per, gap_us, warm_us, d, (unsigned long long)msgs, (unsigned long long)misframed,
           fh_engine_warm(e, 0), PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), ns[d - 1]);
    fh_engine_destroy(e);
    fh_seg_close(seg, 1);
    bench_unmap_file(data, len);
    free(ns);
    free(types);
    return 0;
}
