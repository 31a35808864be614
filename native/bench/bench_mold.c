/* fh-bench-mold FILE [a|ab] [--mtu N] [--consumer none|checking|engine|engine-blocks|engine-staged] [--burst N]:
 * MoldUDP64 sequencing alone, or with the book engine, for callgrind (bench/sequencing.md).
 *
 * FILE, a daily ITCH file, is cut into MoldUDP64 datagrams filled to the MTU (blocks up to MTU - 48 bytes, as
 * fh pcap synth fills them: IPv4 + UDP 28, MoldUDP64 header 20) in memory. run_day() then hands every
 * datagram to fh_mold_feed_apply on line 0 (A) and, with "ab" (the default), at once its copy on line 1 (B),
 * with the data plane's configuration (fh_mold_cfg_defaults, a hold-back buffer, fh_itch_len framing) and a
 * consumer that does nothing, so that
 *
 *   valgrind --tool=callgrind --toggle-collect=fh_mold_feed_apply fh-bench-mold DAY a    (in order, A only)
 *   valgrind --tool=callgrind --toggle-collect=fh_mold_feed_apply fh-bench-mold DAY ab   (+ the B duplicates)
 *
 * count the sequencing's own instructions (the consumer's empty calls included: a call and a return each).
 * --consumer: "none" (the default) does nothing and trusts its blocks (fh/consumer.h's framing NULL: the feed
 * checks the framing before the call, framed_fast); "checking" does nothing but declares ITCH framing, so the
 * feed's fast path leaves the check to it (the sequencing's own part when the engine checks); "engine" is the
 * book engine's consumer (fh_engine_consumer: fh_engine_apply_datagram checks the framing in its walk; a private
 * segment, publishing off), "engine-blocks" the same consumer without its apply_datagram: the feed checks, then
 * fh_engine_apply_blocks walks (the division of labour before the engine checked); "engine-staged" is the data
 * plane's consumer (fh_engine_consumer_staged: each datagram checked and walked onto the engine's staged run, applied
 * 32 messages behind the walk across datagrams, the rest at fh_engine_batch_end). With an engine, fh_engine_batch_end ends every
 * burst of --burst frames (32, the data plane's; an A and its B copy are two), as the data plane's loop does.
 * With an engine the count is sequencing and engine together, in the same run (with engine-staged, also toggle
 * fh_engine_batch_end: a burst's last run is applied there).
 * bench/sequencing.sh runs both and prints instructions a message (A) and a B datagram. Prints one JSON line:
 * messages, datagrams, applied and duplicate counters (checked: every message applied once, every B message a
 * duplicate), and ns a message (min of the repeats; indicative only on a shared machine). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "bench_dgrams.h"
#include "bench_util.h"
#include "fh/book.h"
#include "fh/itch.h"
#include "fh/mold.h"

static uint8_t *dgrams;
static bench_dg_t *dg;
static size_t ndg;

static uint64_t sink; /* the consumer's only effect: the compiler cannot drop its calls */
static __attribute__((noinline)) void c_blocks(void *c, const char *s, uint64_t q, uint32_t n, const uint8_t *p,
                                               size_t l)
{
    (void)c, (void)s, (void)q, (void)p, (void)l;
    __asm__ volatile("" ::"r"(n));
}
static __attribute__((noinline)) int c_datagram(void *c, const char *s, uint64_t q, uint32_t n, const uint8_t *p,
                                                size_t l)
{
    (void)c, (void)s, (void)q, (void)p, (void)l;
    __asm__ volatile("" ::"r"(n));
    return 0;
}
static __attribute__((noinline)) void c_apply(void *c, const char *s, uint64_t q, const uint8_t *m, size_t l)
{
    (void)c, (void)s, (void)q, (void)m, (void)l;
    sink++;
}
static void c_lost(void *c, const char *s, uint64_t a, uint64_t b) { (void)c, (void)s, (void)a, (void)b; }
static void c_begin(void *c, const char *s) { (void)c, (void)s; }
static void c_end(void *c, const char *s, uint64_t q) { (void)c, (void)s, (void)q; }

static fh_mold_feed_t feed;
static fh_engine_t *eng;
static unsigned burst = 32; /* frames a burst: the engine's batch ends after each, as the data plane's loop ends it */

__attribute__((noinline)) void run_day(int ab)
{
    unsigned frames = 0;
    for (size_t k = 0; k < ndg; k++) {
        fh_mold_feed_apply(&feed, dgrams + dg[k].off, dg[k].len, 0, (ab ? 2 * k : k) + 1);
        if (ab)
            fh_mold_feed_apply(&feed, dgrams + dg[k].off, dg[k].len, 1, 2 * k + 2);
        if (eng && (frames += 1u + (unsigned)ab) >= burst) {
            fh_engine_batch_end(eng);
            frames = 0;
        }
    }
    if (eng)
        fh_engine_batch_end(eng);
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int ab = 1, repeats = 1;
    const char *consumer = "none";
    unsigned mtu = 340;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "a") || !strcmp(argv[i], "ab"))
            ab = argv[i][1] == 'b';
        else if (!strcmp(argv[i], "--mtu") && i + 1 < argc)
            mtu = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--consumer") && i + 1 < argc)
            consumer = argv[++i];
        else if (!strcmp(argv[i], "--burst") && i + 1 < argc)
            burst = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (!file && argv[i][0] != '-')
            file = argv[i];
        else
            file = NULL, i = argc;
    }
    int kind = !strcmp(consumer, "none") ? 0 : !strcmp(consumer, "checking") ? 1 : !strcmp(consumer, "engine") ? 2
             : !strcmp(consumer, "engine-blocks") ? 3 : !strcmp(consumer, "engine-staged") ? 4 : -1;
    if (!file || mtu < 120 || mtu > 9000 || repeats < 1 || repeats > 100 || kind < 0) {
        fprintf(stderr, "usage: %s FILE [a|ab] [--mtu 120..9000] [--repeats 1..100] "
                "[--consumer none|checking|engine|engine-blocks|engine-staged] [--burst FRAMES]\n", argv[0]);
        return 2;
    }
    size_t len;
    const uint8_t *data = bench_map_file("fh-bench-mold", file, &len);
    if (!data)
        return 2;
    uint64_t msgs = bench_packetize("fh-bench-mold", data, len, mtu - 48, &dgrams, &dg, &ndg);
    bench_unmap_file(data, len); /* packetize copied the day into datagrams */
    fh_mold_cfg_t mc;
    fh_mold_cfg_defaults(&mc, 1000000); /* ticks: 1 a ns-ish; nothing here waits */
    mc.msg_len = fh_itch_len;
    fh_feed_consumer_t none = { NULL, c_blocks, c_apply, c_lost, c_begin, c_end, kind == 1 ? c_datagram : NULL,
                                kind == 1 ? fh_itch_len : NULL };
    if (kind >= 2) {
        fh_engine_cfg_t ec = { 65535, 8u << 20, 4u << 20 };
        if (!(eng = fh_engine_create(&ec))) {
            fprintf(stderr, "fh-bench-mold: %s\n", fh_errmsg());
            return 2;
        }
        if (kind == 4)
            fh_engine_consumer_staged(eng, &none);
        else
            fh_engine_consumer(eng, &none);
        if (kind == 3) /* apply_blocks only (fh_engine_apply_blocks): the feed checks the framing first */
            none.apply_datagram = NULL, none.framing = NULL;
    }
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < repeats; r++) {
        fh_mold_feed_free(&feed);
        if (fh_mold_feed_init(&feed, &mc)) {
            fprintf(stderr, "fh-bench-mold: %s\n", fh_errmsg());
            return 2;
        }
        fh_mold_feed_set_consumer(&feed, &none);
        if (eng)
            fh_engine_reset(eng);
        uint64_t t0 = now_ns();
        run_day(ab);
        uint64_t t = now_ns() - t0;
        best = t < best ? t : best;
    }
    uint64_t applied = feed.counters[FH_M_applied], dups = feed.counters[FH_M_duplicates];
    int ok = applied == msgs && dups == (ab ? msgs : 0) && !feed.gap_open && feed.next_seq == msgs + 1;
    if (eng) { /* every message reached the engine, none refused */
        uint64_t c[FH_C_COUNT];
        fh_engine_counters(eng, c);
        ok = ok && c[FH_C_messages] == msgs && feed.counters[FH_M_malformed] == 0;
    }
    printf("{\"mode\": \"%s\", \"consumer\": \"%s\", \"mtu\": %u, \"messages\": %llu, \"datagrams\": %zu, \"applied\": %llu, "
           "\"duplicates\": %llu, \"ok\": %s, \"ns_per_msg_min\": %.2f}\n",
           ab ? "ab" : "a", consumer, mtu, (unsigned long long)msgs, ndg, (unsigned long long)applied,
           (unsigned long long)dups, ok ? "true" : "false", (double)best / (double)msgs);
    if (eng)
        fh_engine_destroy(eng);
    fh_mold_feed_free(&feed);
    return ok ? 0 : 1;
}
