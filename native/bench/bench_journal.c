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
 * private memory: a journal of a known day for followers' tests (fh record).
 *
 * The primary's cost with a standby (bench/replication_cost.sh):
 *   fh-bench-journal FILE --rounds N [--core W] [--follower-core F]: N rounds, each running the day three ways
 *     in a rotating order: the journal off, on, and on with a follower, a thread on core F that reads the ring
 *     as fh-replicate --role primary does (fh_journal_next into its own buffer, busy-polling the head, started
 *     at the head before the run and parked after it); the writer on core W. Prints the medians (ns a
 *     message) of each way and the ratio of the medians, followed / on.
 *   fh-bench-journal --follow PATH [--core F]: the follower alone, as a process, on the journal a writer
 *     (under callgrind, say) is about to create at PATH: it waits for it, follows it until its writer has
 *     stopped and every record is read (napping 20 µs when it has read all there is: the writer under
 *     callgrind is slow, and the machine shared), and prints what it read (records, messages, overruns). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
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

/* ---- the follower: what fh-replicate's primary does with the journal, without the fabric ---------------- */

static fh_journal_reader_t fjr;
static _Alignas(64) _Atomic int fstate; /* 0 parked, 1 following, 2 quit (written by main) */
static _Alignas(64) _Atomic int fparked = 1; /* written by the follower */
static _Alignas(64) uint64_t fstart, frecords, fmsgs, foverruns;
static _Alignas(64) _Atomic uint64_t fpos; /* where the follower stands (its own line) */

/* Follow from pos while *run == until (or, run NULL, until the writer has stopped and every record is read):
 * every record copied out, as the primary copies it into its frame. */
static uint64_t follow(uint64_t pos, _Atomic int *run, int until)
{
    static _Atomic int always = 1;
    if (!run)
        run = &always, until = 1;
    static fh_journal_rec_t rec;
    static uint8_t body[FH_JOURNAL_MAX_BODY];
    while (atomic_load_explicit(run, memory_order_relaxed) == until) {
        int r = fh_journal_next(&fjr, &pos, &rec, body);
        atomic_store_explicit(&fpos, pos, memory_order_relaxed);
        if (r == FH_JOURNAL_OK) {
            frecords++;
            if (rec.kind == FH_JR_MSGS)
                fmsgs += rec.count;
        } else if (r == FH_JOURNAL_OVERRUN) {
            foverruns++;
        } else if (r == FH_JOURNAL_CORRUPT) {
            fprintf(stderr, "fh-bench-journal: follower: position %llu is not on a record\n", (unsigned long long)pos);
            exit(3);
        } else if (run == &always &&
                   atomic_load_explicit(&fjr.hdr->writer_state, memory_order_acquire) == 2 &&
                   pos >= fh_journal_head(&fjr)) {
            return pos;
        } else if (run == &always) { /* the process: naps 20 µs when idle, as fh-replicate --idle backoff */
            nanosleep(&(struct timespec){ 0, 20000 }, NULL);
        } else {
            __builtin_ia32_pause();
        }
    }
    return pos;
}

static long follower_core = -1;

static void *follower_thread(void *arg)
{
    (void)arg;
    if (bench_pin("fh-bench-journal", follower_core))
        exit(2);
    for (;;) {
        int st = atomic_load_explicit(&fstate, memory_order_acquire);
        if (st == 2)
            return NULL;
        if (st == 0) {
            __builtin_ia32_pause();
            continue;
        }
        atomic_store_explicit(&fparked, 0, memory_order_release);
        follow(fstart, &fstate, 1);
        atomic_store_explicit(&fparked, 1, memory_order_release);
    }
}

/* --follow PATH: a follower process on a writer's journal, until the writer has stopped and all is read. */
static int follow_process(const char *path, long core)
{
    if (bench_pin("fh-bench-journal", core))
        return 2;
    int rc = -ENOENT;
    for (int i = 0; i < 60000 && (rc = fh_journal_join(&fjr, path)) && (rc == -ENOENT || rc == -EAGAIN || rc == -EPROTO);
         i++)
        usleep(1000);
    if (rc) {
        fprintf(stderr, "fh-bench-journal: --follow %s: no journal there within 60 s\n", path);
        return 2;
    }
    uint64_t pos = follow(0, NULL, 0);
    printf("{\"follower\": \"%s\", \"position\": %llu, \"records\": %llu, \"messages\": %llu, \"overruns\": %llu}\n",
           path, (unsigned long long)pos, (unsigned long long)frecords, (unsigned long long)fmsgs,
           (unsigned long long)foverruns);
    fh_journal_leave(&fjr);
    return 0;
}

/* The engine reset and the feed set up for a run (not timed). */
static void day_setup(fh_engine_t *e, int on)
{
    fh_engine_reset(e);
    memset(&feed, 0, sizeof feed); /* hold 0: in order, nothing is held */
    fh_feed_consumer_t books;
    fh_engine_consumer(e, &books);
    fh_mold_feed_set_consumer(&feed, &books);
    if (on) {
        fh_journal_t *jj = jt->j;
        fh_journal_tee_init(jt, jj);
        fh_journal_tee_attach(jt, &feed);
    }
}

static double median_ns(uint64_t *v, int n, uint64_t msgs)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return (double)(n & 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) / (double)msgs;
}

/* --rounds: off, on, on with the follower thread, in a rotating order each round; medians and their ratio. */
static int run_rounds(fh_engine_t *e, fh_journal_t *j, uint64_t msgs, int rounds, long core)
{
    fjr = (fh_journal_reader_t){ .base = (const uint8_t *)j->hdr, .hdr = j->hdr, .data = j->data,
                                 .capacity = j->capacity, .mask = j->mask }; /* the writer's own mapping */
    if (bench_pin("fh-bench-journal", core))
        return 2;
    pthread_t th;
    if (pthread_create(&th, NULL, follower_thread, NULL)) {
        fprintf(stderr, "fh-bench-journal: cannot start the follower thread\n");
        return 2;
    }
    uint64_t *ns[3];
    for (int k = 0; k < 3; k++)
        if (!(ns[k] = calloc((size_t)rounds, sizeof *ns[k])))
            return 2;
    int late = 0; /* followed runs after which the follower had not reached the head within 1 s */
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 3; k++) {
            int v = (r + k) % 3; /* 0 off, 1 on, 2 on and followed */
            if (v == 2) {
                fstart = j->pos;
                atomic_store_explicit(&fstate, 1, memory_order_release);
                while (atomic_load_explicit(&fparked, memory_order_acquire))
                    __builtin_ia32_pause();
            }
            day_setup(e, v > 0);
            uint64_t t0 = now_ns();
            run_day(v > 0);
            ns[v][r] = now_ns() - t0;
            if (v == 2) { /* it reads to the head, then parks: it touches no line of the journal in the other runs */
                uint64_t t1 = now_ns();
                while (atomic_load_explicit(&fpos, memory_order_relaxed) < j->pos && now_ns() - t1 < 1000000000ull)
                    __builtin_ia32_pause();
                late += atomic_load_explicit(&fpos, memory_order_relaxed) < j->pos;
                atomic_store_explicit(&fstate, 0, memory_order_release);
                while (!atomic_load_explicit(&fparked, memory_order_acquire))
                    __builtin_ia32_pause();
            }
        }
    }
    atomic_store_explicit(&fstate, 2, memory_order_release);
    pthread_join(th, NULL);
    double off = median_ns(ns[0], rounds, msgs), on = median_ns(ns[1], rounds, msgs),
           fol = median_ns(ns[2], rounds, msgs);
    printf("{\"rounds\": %d, \"messages\": %llu, \"datagrams\": %zu, \"writer_core\": %ld, \"follower_core\": %ld, "
           "\"ns_per_msg_off\": %.3f, \"ns_per_msg_on\": %.3f, \"ns_per_msg_followed\": %.3f, "
           "\"journal_ns_per_msg\": %.3f, \"follower_ns_per_msg\": %.3f, \"followed_over_on\": %.4f, "
           "\"follower_records\": %llu, \"follower_messages\": %llu, \"follower_overruns\": %llu, \"follower_late\": %d}\n",
           rounds, (unsigned long long)msgs, ndg, core, follower_core, off, on, fol, on - off, fol - on, fol / on,
           (unsigned long long)frecords, (unsigned long long)fmsgs, (unsigned long long)foverruns, late);
    for (int k = 0; k < 3; k++)
        free(ns[k]);
    fh_journal_close(j, 0);
    fh_engine_destroy(e);
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = NULL, *jpath = NULL, *follow_path = NULL;
    int on = 1, repeats = 1, rounds = 0;
    long core = -1;
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
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--core") && i + 1 < argc)
            core = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--follower-core") && i + 1 < argc)
            follower_core = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--follow") && i + 1 < argc)
            follow_path = argv[++i];
        else if (!file && argv[i][0] != '-')
            file = argv[i];
        else {
            fprintf(stderr, "usage: %s FILE [on|off] [--journal PATH] [--mb N] [--repeats N]\n"
                            "       %s FILE --rounds N [--core W] [--follower-core F] [--mb N]\n"
                            "       %s --follow PATH [--core F]\n", argv[0], argv[0], argv[0]);
            return 2;
        }
    }
    if (follow_path)
        return follow_process(follow_path, core);
    if (rounds < 0 || rounds > 1000) {
        fprintf(stderr, "fh-bench-journal: --rounds 1..1000\n");
        return 2;
    }
    if (rounds)
        on = 1, repeats = 1;
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
    if (rounds)
        return run_rounds(e, j, msgs, rounds, core);
    uint64_t ns[100];
    for (int r = 0; r < repeats; r++) {
        day_setup(e, jt != NULL);
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
