/* fh-bench-repl-feed FILE --journal PATH [--mb N] [--rate MSGS_PER_S] [--batch N] [--loops N] [--delay-ms N]
 *                    [--core N] [--trace PATH]: a journal
 * written at a paced rate, for the replication benchmark (bench/replication.sh): the day's messages (a file
 * of 2-byte-length blocks) in records of --batch messages (a datagram's worth), sequences from 1 over all
 * loops, paced to --rate messages a second (0: top speed) by sleeping while ahead of the schedule (never
 * busy-polling: the machine is shared; timer slack 1 ns). Marks the writer stopped at the end, so a follower
 * with --exit-when-done finishes. --core N: on that core. --trace PATH: each record's (first sequence, the
 * CLOCK_REALTIME ns it was published at) as two u64, written at the end: where bench/replication.sh starts
 * the lag. Prints one JSON line: messages, records, seconds, achieved rate. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "fh/journal_writer.h"

int main(int argc, char **argv)
{
    const char *file = NULL, *jpath = NULL, *trace_path = NULL;
    uint64_t mb = 64, rate = 0, batch = 32, loops = 1, delay_ms = 0;
    long core = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--journal") && i + 1 < argc)
            jpath = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            mb = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
            rate = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
            delay_ms = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--loops") && i + 1 < argc)
            loops = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--core") && i + 1 < argc)
            core = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--trace") && i + 1 < argc)
            trace_path = argv[++i];
        else if (!file && argv[i][0] != '-')
            file = argv[i];
        else
            file = NULL, i = argc;
    }
    if (!file || !jpath || !batch || batch > 1000 || !loops) {
        fprintf(stderr, "usage: %s FILE --journal PATH [--mb N] [--rate MSGS_PER_S] [--batch 1..1000] [--loops N] [--delay-ms N] "
                        "[--core N] [--trace PATH]\n",
                argv[0]);
        return 2;
    }
    size_t len;
    const uint8_t *day = bench_map_file("fh-bench-repl-feed", file, &len);
    if (!day)
        return 2;
    if (bench_pin("fh-bench-repl-feed", core))
        return 2;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* a nap ends when asked, not up to 50 µs later */
    /* the records' publishing times: as many records as the day's blocks could make, allocated before the run */
    uint64_t (*trace)[2] = NULL, ntrace = 0, trace_cap = 0;
    if (trace_path) {
        for (size_t i = 0; i + 2 <= len; i += 2 + (((size_t)day[i] << 8) | day[i + 1]))
            trace_cap++;
        trace_cap = trace_cap * loops + 1;
        if (!(trace = calloc(trace_cap, sizeof *trace))) {
            fprintf(stderr, "fh-bench-repl-feed: out of memory for --trace (%llu records)\n", (unsigned long long)trace_cap);
            return 2;
        }
    }
    fh_journal_t *j = fh_journal_create(&(fh_journal_cfg_t){ jpath, "bench", mb << 20, -1 });
    if (!j) {
        fprintf(stderr, "fh-bench-repl-feed: %s\n", fh_errmsg());
        return 2;
    }
    /* the journal exists from here: a follower joins and connects to its standby before the first record */
    if (delay_ms)
        nanosleep(&(struct timespec){ (time_t)(delay_ms / 1000), (long)(delay_ms % 1000) * 1000000L }, NULL);
    uint64_t seq = 1, records = 0, t0 = now_ns();
    for (uint64_t l = 0; l < loops; l++) {
        size_t i = 0;
        while (i + 2 <= len) {
            size_t start = i;
            uint16_t count = 0;
            while (i + 2 <= len && count < batch && i - start < 1400) {
                size_t n = ((size_t)day[i] << 8) | day[i + 1];
                if (i + 2 + n > len)
                    break;
                i += 2 + n;
                count++;
            }
            if (!count)
                break;
            if (rate) { /* the schedule: message seq is due at t0 + (seq - 1) / rate */
                uint64_t due = t0 + (uint64_t)((double)(seq - 1) * 1e9 / (double)rate);
                uint64_t now = now_ns();
                if (due > now + 20000)
                    nanosleep(&(struct timespec){ 0, (long)(due - now) }, NULL);
            }
            if (trace && ntrace < trace_cap) { /* stamped as the write begins: the copy is in the lag */
                struct timespec t;
                clock_gettime(CLOCK_REALTIME, &t); /* the frames' clock (fh-replicate's sent_ns) */
                trace[ntrace][0] = seq, trace[ntrace][1] = (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
                ntrace++;
            }
            fh_journal_append_msgs(j, "BENCH00001", seq, count, day + start, i - start);
            seq += count;
            records++;
        }
    }
    uint64_t t1 = now_ns();
    fh_journal_close(j, 0);
    if (trace) {
        FILE *tf = fopen(trace_path, "wb");
        int bad = !tf || fwrite(trace, sizeof *trace, ntrace, tf) != ntrace;
        if ((tf && fclose(tf)) || bad) {
            fprintf(stderr, "fh-bench-repl-feed: --trace %s: cannot write it\n", trace_path);
            return 2;
        }
        free(trace);
    }
    double s = (double)(t1 - t0) / 1e9;
    printf("{\"messages\": %llu, \"records\": %llu, \"seconds\": %.3f, \"rate\": %.0f}\n", (unsigned long long)(seq - 1),
           (unsigned long long)records, s, (double)(seq - 1) / s);
    bench_unmap_file(day, len);
    return 0;
}
