/* fh-hiccups: what the machine takes from a spinning core, for `fh bench latency` (bench/latency.md).
 *
 *   fh-hiccups --cpu C [--seconds S] [--threshold-ns T]
 *
 * Pinned to CPU C, it first times the TSC read itself: 1,000,000 back-to-back reads (rdtsc, as DPDK's
 * rte_rdtsc on x86), their deltas in cycles (min, median, mean), and clock_gettime(CLOCK_MONOTONIC) in ns.
 * Then, for S seconds (default 1), it does nothing but read the TSC, as sysjitter and hiccups do: any two
 * reads further apart than T ns (default 1,000) mean the core was taken away (a timer tick, an interrupt,
 * another task, the hypervisor running something else: steal). Each such gap goes into fh/shm.h's log-linear
 * histogram (the one the data plane's latency uses), with its count, the time lost, the largest, and the
 * median interval between two gaps (a scheduler tick shows as 1 / HZ).
 *
 * The TSC rate is measured over the scan against CLOCK_MONOTONIC. One JSON line on stdout; errors: one line
 * on stderr, exit 2. It allocates nothing while it scans. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fh/shm.h" /* fh_shm_lat_index, fh_shm_lat_upper */
#include "bench_util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t ticks(void) { return __rdtsc(); }
#define TICK_NAME "rdtsc"
#elif defined(__aarch64__)
static inline uint64_t ticks(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}
#define TICK_NAME "cntvct_el0"
#else
static inline uint64_t ticks(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
#define TICK_NAME "clock_gettime"
#endif

#define COST_READS 1000000u
#define COST_MAX 1024u /* deltas of the cost loop kept exactly below this many cycles */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t gaps[FH_SHM_LAT_BUCKETS], intervals[FH_SHM_LAT_BUCKETS], cost[COST_MAX + 1];

static uint64_t pct(const uint64_t *h, unsigned n, uint64_t total, double p, int exact)
{
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total + 0.5), seen = 0;
    if (!want)
        want = 1;
    for (unsigned i = 0; i < n; i++)
        if ((seen += h[i]) >= want)
            return exact ? i : fh_shm_lat_upper(i);
    return exact ? n - 1 : fh_shm_lat_upper(n - 1);
}

int main(int argc, char **argv)
{
    int cpu = -1;
    double seconds = 1.0;
    uint64_t threshold_ns = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpu") && i + 1 < argc)
            cpu = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threshold-ns") && i + 1 < argc)
            threshold_ns = strtoull(argv[++i], NULL, 10);
        else {
            fputs("usage: fh-hiccups --cpu C [--seconds S] [--threshold-ns T]\n", stderr);
            return 2;
        }
    }
    if (!(seconds > 0 && seconds <= 600) || threshold_ns < 10) {
        fprintf(stderr, "fh-hiccups: --seconds %g must be in (0, 600] and --threshold-ns %" PRIu64 " at least 10\n",
                seconds, threshold_ns);
        return 2;
    }
    if (bench_pin("fh-hiccups", cpu))
        return 2;

    /* The TSC read's own cost, back to back. */
    uint64_t prev = ticks(), sum = 0, big = 0, cmin = UINT64_MAX;
    for (unsigned i = 0; i < COST_READS; i++) {
        uint64_t t = ticks(), d = t - prev;
        prev = t;
        cost[d < COST_MAX ? d : COST_MAX]++;
        if (d < COST_MAX)
            sum += d;
        else
            big++;
        if (d < cmin)
            cmin = d;
    }
    uint64_t g0 = mono_ns();
    for (unsigned i = 0; i < COST_READS / 10; i++)
        (void)mono_ns();
    double cg_ns = (double)(mono_ns() - g0) / (COST_READS / 10);

    /* The scan. The threshold in ticks needs the rate: a first estimate over 20 ms, the final one over the scan. */
    uint64_t c0 = ticks(), n0 = mono_ns();
    while (mono_ns() - n0 < 20000000)
        ;
    double hz0 = (double)(ticks() - c0) * 1e9 / (double)(mono_ns() - n0);
    const uint64_t thr = (uint64_t)((double)threshold_ns * hz0 / 1e9);
    const uint64_t span = (uint64_t)(seconds * hz0);
    uint64_t loops = 0, ngaps = 0, lost = 0, gmax = 0, last_gap = 0, nint = 0;
    const uint64_t s_ns = mono_ns(), start = ticks(), stop = start + span;
    prev = start;
    for (;;) {
        uint64_t t = ticks(), d = t - prev;
        loops++;
        if (__builtin_expect(d > thr, 0)) {
            gaps[fh_shm_lat_index(d)]++; /* in ticks here, converted below */
            ngaps++, lost += d;
            if (d > gmax)
                gmax = d;
            if (last_gap) {
                intervals[fh_shm_lat_index(prev - last_gap)]++;
                nint++;
            }
            last_gap = prev;
        }
        prev = t;
        if (t >= stop)
            break;
    }
    const uint64_t end = prev, e_ns = mono_ns();
    const double hz = (double)(end - start) * 1e9 / (double)(e_ns - s_ns), ns_per_tick = 1e9 / hz;
    const double scan_s = (double)(e_ns - s_ns) / 1e9;

    /* Re-bucket the tick histograms in ns (each bucket by its upper bound, as fh-dataplane re-buckets its own). */
    static uint64_t gns[FH_SHM_LAT_BUCKETS], ins[FH_SHM_LAT_BUCKETS];
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++) {
        if (gaps[i])
            gns[fh_shm_lat_index((uint64_t)((double)fh_shm_lat_upper(i) * ns_per_tick))] += gaps[i];
        if (intervals[i])
            ins[fh_shm_lat_index((uint64_t)((double)fh_shm_lat_upper(i) * ns_per_tick))] += intervals[i];
    }
    uint64_t c50 = pct(cost, COST_MAX + 1, COST_READS, 0.5, 1);
    double cmean = (double)sum / (double)(COST_READS - big);
    printf("{\"cpu\": %d, \"tick\": \"%s\", \"tsc_hz\": %.0f, \"threshold_ns\": %" PRIu64 ", \"seconds\": %.6f, "
           "\"tsc_read\": {\"reads\": %u, \"cycles_min\": %" PRIu64 ", \"cycles_p50\": %" PRIu64 ", \"cycles_mean\": %.2f, "
           "\"ns_mean\": %.2f}, \"clock_gettime_ns\": %.2f, \"loops\": %" PRIu64 ", \"loop_ns\": %.2f, \"gaps\": {"
           "\"count\": %" PRIu64 ", \"per_s\": %.1f, \"lost_ns\": %.0f, \"lost_share\": %.6f, \"p50\": %" PRIu64
           ", \"p99\": %" PRIu64 ", \"max\": %.0f, \"interval_p50_ns\": %" PRIu64 ", \"buckets\": [",
           cpu, TICK_NAME, hz, threshold_ns, scan_s, COST_READS, cmin, c50, cmean, cmean * ns_per_tick, cg_ns, loops,
           scan_s * 1e9 / (double)loops, ngaps, (double)ngaps / scan_s, (double)lost * ns_per_tick,
           (double)lost * ns_per_tick / (scan_s * 1e9), pct(gns, FH_SHM_LAT_BUCKETS, ngaps, 0.5, 0),
           pct(gns, FH_SHM_LAT_BUCKETS, ngaps, 0.99, 0), (double)gmax * ns_per_tick,
           pct(ins, FH_SHM_LAT_BUCKETS, nint, 0.5, 0));
    for (unsigned i = 0, first = 1; i < FH_SHM_LAT_BUCKETS; i++)
        if (gns[i]) {
            printf("%s[%" PRIu64 ", %" PRIu64 "]", first ? "" : ", ", fh_shm_lat_upper(i), gns[i]);
            first = 0;
        }
    printf("]}}\n");
    return 0;
}
