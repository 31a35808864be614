/* fh-bench-journal FILE [on|off] [--journal PATH] [--mb N] [--repeats N]: the journal's cost on the hot path.
 *
 * FILE, a daily ITCH file, is cut into MoldUDP64 datagrams of up to 1,400 bytes of blocks (as fh pcap synth
 * fills a datagram to the MTU) in memory; then the datagrams go through a MoldUDP64 feed into the C book
 * engine, as the data plane applies them: with "off", fh_mold_feed_apply only; with "on" (the default),
 * each followed by the journal jt (fh/journal_mold.h) into a journal ring. Both runs go through
 * run_day(), so `valgrind --tool=callgrind --toggle-collect=run_day` counts the same work but the journal
 * (bench/journal.sh takes the difference per message). Prints ns per message (min and median of the
 * repeats; the engine is reset between them, the journal continues).
 *
 * --journal PATH writes the ring to that file (kept after the run, its writer marked stopped) instead of
 * private memory: a journal of a known day for followers' tests (fh record). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "bench_dgrams.h"
#include "bench_util.h"
#include "fh/book.h"
#include "fh/journal_mold.h"
#include "fh/mold.h"

#define DGRAM_BLOCKS 1400

static uint8_t *dgrams;
static bench_dg_t *dg;
static size_t ndg;

static fh_mold_feed_t feed;
static fh_journal_tee_t *jt;

__attribute__((noinline)) void run_day(int on) /* the engine is the feed's consumer */
{
    if (on) {
        for (size_t k = 0; k < ndg; k++) {
            fh_mold_feed_apply(&feed, dgrams + dg[k].off, dg[k].len, 0, k + 1);
            fh_journal_tee(jt, &feed, dgrams + dg[k].off, dg[k].len);
        }
    } else {
        for (size_t k = 0; k < ndg; k++)
            fh_mold_feed_apply(&feed, dgrams + dg[k].off, dg[k].len, 0, k + 1);
    }
}

int main(int argc, char **argv)
{
    const char *file = NULL, *jpath = NULL;
    int on = 1, repeats = 1;
    uint64_t mb = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "on") || !strcmp(argv[i], "off"))
            on = argv[i][1] == 'n';
        else if (!strcmp(argv[i], "--journal") && i + 1 < argc)
            jpath = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            mb = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (!file && argv[i][0] != '-')
            file = argv[i];
        else {
            fprintf(stderr, "usage: %s FILE [on|off] [--journal PATH] [--mb N] [--repeats N]\n", argv[0]);
            return 2;
        }
    }
    if (!file || repeats < 1 || repeats > 100) {
        fprintf(stderr, "usage: %s FILE [on|off] [--journal PATH] [--mb N] [--repeats 1..100]\n", argv[0]);
        return 2;
    }
    size_t len;
    const uint8_t *data = bench_map_file("fh-bench-journal", file, &len);
    if (!data)
        return 2;
    uint64_t msgs = bench_packetize("fh-bench-journal", data, len, DGRAM_BLOCKS, &dgrams, &dg, &ndg);
    bench_unmap_file(data, len); /* packetize copied the day into datagrams */
    fh_engine_cfg_t cfg = { 65535, 8u << 20, 4u << 20 };
    fh_engine_t *e = fh_engine_create(&cfg);
    fh_journal_t *j = NULL;
    if (on) {
        j = fh_journal_create(&(fh_journal_cfg_t){ jpath, "bench", mb << 20, -1 });
        jt = malloc(sizeof *jt);
        if (!j || !jt) {
            fprintf(stderr, "fh-bench-journal: %s\n", fh_errmsg());
            return 2;
        }
        fh_journal_tee_init(jt, j);
    }
    if (!e) {
        fprintf(stderr, "fh-bench-journal: %s\n", fh_errmsg());
        return 2;
    }
    uint64_t ns[100];
    for (int r = 0; r < repeats; r++) {
        fh_engine_reset(e);
        memset(&feed, 0, sizeof feed); /* hold 0: in order, nothing is held */
        fh_feed_consumer_t books;
        fh_engine_consumer(e, &books);
        fh_mold_feed_set_consumer(&feed, &books);
        if (jt) {
            fh_journal_t *jj = jt->j;
            fh_journal_tee_init(jt, jj);
            fh_journal_tee_attach(jt, &feed);
        }
        uint64_t t0 = now_ns();
        run_day(on);
        ns[r] = now_ns() - t0;
    }
    qsort(ns, (size_t)repeats, sizeof ns[0], cmp_u64);
    printf("{\"journal\": \"%s\", \"messages\": %llu, \"datagrams\": %zu, \"ns_per_msg_min\": %.2f, "
           "\"ns_per_msg_median\": %.2f, \"journal_bytes\": %llu, \"journal_records\": %llu}\n",
           on ? "on" : "off", (unsigned long long)msgs, ndg, (double)ns[0] / (double)msgs,
           (double)ns[repeats / 2] / (double)msgs, (unsigned long long)(j ? j->pos : 0),
           (unsigned long long)(j ? j->records : 0));
    if (j)
        fh_journal_close(j, 0);
    fh_engine_destroy(e);
    return 0;
}
