/* Unit tests of the applied-message journal (fh/journal.h, fh/journal_writer.h, fh/journal_mold.h): records
 * read back whole across laps and pads, marks, overrun detection and resynchronisation, a writer thread
 * against a slow reader thread on a real file (torture), and the jtee from a MoldUDP64 feed under faults
 * (duplicates, reordering, gaps filled and lost, a small hold-back buffer, session changes, unsequenced
 * datagrams): replaying the journal into a second engine gives the books and counters of the engine the
 * feed applied to, and the journal's runs cover every sequence once. Exit 0 on success, 1 on failure. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fh/book.h"
#include "fh/journal_mold.h"
#include "fh/mold.h"

static uint8_t body[FH_JOURNAL_MAX_BODY];

/* A body of n bytes whose content follows from seq (n a multiple of... anything). */
static void fill(uint8_t *p, size_t n, uint64_t seq)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seq * 131 + i * 7);
}

static int filled(const uint8_t *p, size_t n, uint64_t seq)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seq * 131 + i * 7))
            return 0;
    return 1;
}

static void reader_of(fh_journal_reader_t *r, fh_journal_t *j)
{
    memset(r, 0, sizeof *r);
    r->base = (const uint8_t *)j->hdr;
    r->hdr = j->hdr;
    r->data = j->data;
    r->capacity = j->capacity;
    r->mask = j->mask;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_footprint(void)
{
    CHECK(fh_journal_footprint(1000) == 0, "a capacity that is not a power of two is refused");
    CHECK(strstr(fh_errmsg(), "power of two") != NULL, "message: %s", fh_errmsg());
    CHECK(fh_journal_footprint(1 << 16) == 0, "below the minimum is refused");
    CHECK(fh_journal_footprint(1 << 20) >= (1 << 20) + sizeof(fh_journal_hdr_t), "footprint covers the ring");
}

/* Records of every size read back whole, in order, across many laps (pads and short tails included), with
 * a reader that keeps up. */
static void test_roundtrip(void)
{
    fh_journal_t *j = fh_journal_create(&(fh_journal_cfg_t){ NULL, "t", FH_JOURNAL_MIN_CAPACITY, -1 });
    CHECK(j != NULL, "create: %s", fh_errmsg());
    if (!j)
        return;
    fh_journal_reader_t r;
    reader_of(&r, j);
    uint64_t pos = 0, next = 1, got = 0;
    fh_journal_rec_t rec;
    CHECK(fh_journal_next(&r, &pos, &rec, body) == FH_JOURNAL_NONE, "empty journal: nothing");
    uint8_t src[4096];
    for (uint64_t s = 1; s <= 20000; s++) {
        size_t n = (size_t)(rnd() % 3000);
        fill(src, n, s);
        if (s % 97 == 0)
            fh_journal_append_mark(j, FH_JR_LOST, "SESSION001", s, 3);
        else
            fh_journal_append_msgs(j, "SESSION001", s, (uint16_t)(s & 0xffff), src, n);
        for (;;) {
            int rc = fh_journal_next(&r, &pos, &rec, body);
            if (rc == FH_JOURNAL_NONE)
                break;
            CHECK(rc == FH_JOURNAL_OK, "record %llu: rc %d", (unsigned long long)next, rc);
            if (rc != FH_JOURNAL_OK)
                break;
            CHECK(rec.seq == next, "record seq %llu, expected %llu", (unsigned long long)rec.seq,
                  (unsigned long long)next);
            if (next % 97 == 0) {
                CHECK(rec.kind == FH_JR_LOST && rec.arg == 3 && rec.size == sizeof rec, "a LOST mark");
            } else {
                CHECK(rec.kind == FH_JR_MSGS && rec.count == (uint16_t)(next & 0xffff), "a MSGS record");
                CHECK(filled(body, rec.arg, next), "record %llu's body intact", (unsigned long long)next);
                CHECK(rec.size == ((sizeof rec + rec.arg + 7) & ~7ull), "its size");
            }
            CHECK(!memcmp(rec.session, "SESSION001", 10), "its session");
            next++;
            got++;
        }
    }
    CHECK(got == 20000, "every record read (%llu)", (unsigned long long)got);
    CHECK(pos == atomic_load(&j->hdr->head), "the reader ends at the head");
    CHECK(pos > 20 * FH_JOURNAL_MIN_CAPACITY, "many laps (%llu bytes)", (unsigned long long)pos);
    /* heartbeats: a repeat of the last mark is written once */
    uint64_t h0 = atomic_load(&j->hdr->head);
    fh_journal_append_mark(j, FH_JR_HEARTBEAT, "SESSION001", 50, 0);
    fh_journal_append_mark(j, FH_JR_HEARTBEAT, "SESSION001", 50, 0);
    CHECK(atomic_load(&j->hdr->head) - h0 == sizeof rec, "a repeated heartbeat is journaled once");
    fh_journal_append_mark(j, FH_JR_HEARTBEAT, "SESSION001", 51, 0);
    CHECK(atomic_load(&j->hdr->head) - h0 == 2 * sizeof rec, "a new heartbeat sequence is journaled");
    /* a position that is no record is refused */
    uint64_t bad = pos - 8;
    CHECK(fh_journal_next(&r, &bad, &rec, body) == FH_JOURNAL_CORRUPT, "a position inside a record is corrupt");
    fh_journal_close(j, 0);
}

/* A reader that falls more than a lap behind is told so, goes on from a lap start, and reads whole
 * records from there. */
static void test_overrun(void)
{
    fh_journal_t *j = fh_journal_create(&(fh_journal_cfg_t){ NULL, "t", FH_JOURNAL_MIN_CAPACITY, -1 });
    if (!j)
        return;
    fh_journal_reader_t r;
    reader_of(&r, j);
    uint8_t src[1500];
    uint64_t s = 1;
    for (; s <= 10; s++) {
        fill(src, sizeof src, s);
        fh_journal_append_msgs(j, "SESSION001", s, 30, src, sizeof src);
    }
    uint64_t pos = 0;
    fh_journal_rec_t rec;
    CHECK(fh_journal_next(&r, &pos, &rec, body) == FH_JOURNAL_OK && rec.seq == 1, "first record");
    for (; s <= 1000; s++) { /* several laps past the reader */
        fill(src, sizeof src, s);
        fh_journal_append_msgs(j, "SESSION001", s, 30, src, sizeof src);
    }
    uint64_t before = pos;
    int rc = fh_journal_next(&r, &pos, &rec, body);
    CHECK(rc == FH_JOURNAL_OVERRUN, "overrun detected (rc %d)", rc);
    CHECK(pos > before && (pos & r.mask) == 0, "resumes at a lap start (%llu)", (unsigned long long)pos);
    CHECK(pos == fh_journal_oldest(&r), "which is the oldest readable position");
    uint64_t last = 0, n = 0;
    while ((rc = fh_journal_next(&r, &pos, &rec, body)) == FH_JOURNAL_OK) {
        CHECK(filled(body, rec.arg, rec.seq), "record %llu intact after the resynchronisation",
              (unsigned long long)rec.seq);
        CHECK(!last || rec.seq == last + 1, "consecutive after the resynchronisation");
        last = rec.seq;
        n++;
    }
    CHECK(rc == FH_JOURNAL_NONE && last == 1000 && n > 100, "read to the end: %llu records up to %llu", (unsigned long long)n,
          (unsigned long long)last);
    fh_journal_close(j, 0);
}

/* ---- torture: a writer thread as fast as it goes, a reader that sometimes sleeps ---- */
static fh_journal_t *tj;
static volatile int writer_done;
#define TORTURE_RECORDS 3000000ull

static void *writer_main(void *arg)
{
    (void)arg;
    static uint8_t src[2048];
    uint64_t x = 12345;
    for (uint64_t s = 1; s <= TORTURE_RECORDS; s++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = (size_t)((x >> 33) % 1500);
        fill(src, n, s);
        fh_journal_append_msgs(tj, "TORTURE001", s, 1, src, n);
    }
    __atomic_store_n(&writer_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_torture(void)
{
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/fh-test-journal-%d.journal", (int)getpid());
    tj = fh_journal_create(&(fh_journal_cfg_t){ path, "torture", FH_JOURNAL_MIN_CAPACITY, -1 });
    CHECK(tj != NULL, "create %s: %s", path, fh_errmsg());
    if (!tj)
        return;
    fh_journal_t *second = fh_journal_create(&(fh_journal_cfg_t){ path, "torture", FH_JOURNAL_MIN_CAPACITY, -1 });
    CHECK(second == NULL && strstr(fh_errmsg(), "held by another writer"), "a second writer is refused: %s",
          fh_errmsg());
    fh_journal_reader_t r;
    int jr = fh_journal_join(&r, path);
    CHECK(jr == 0, "join: %d", jr);
    CHECK(fh_journal_writer_alive(path) == 1, "the writer is alive");
    if (jr)
        return;
    pthread_t w;
    pthread_create(&w, NULL, writer_main, NULL);
    uint64_t pos = 0, last = 0, ok = 0, overruns = 0, lost = 0, bad = 0;
    fh_journal_rec_t rec;
    static uint8_t b[FH_JOURNAL_MAX_BODY];
    for (uint64_t i = 0;; i++) {
        int rc = fh_journal_next(&r, &pos, &rec, b);
        if (rc == FH_JOURNAL_OK) {
            if (!filled(b, rec.arg, rec.seq) || rec.seq <= last || rec.kind != FH_JR_MSGS)
                bad++;
            if (rec.seq > last + 1)
                lost += rec.seq - last - 1;
            last = rec.seq;
            ok++;
            if (i % 50000 == 0) { /* fall behind now and then */
                struct timespec ts = { 0, 2000000 };
                nanosleep(&ts, NULL);
            }
        } else if (rc == FH_JOURNAL_OVERRUN) {
            overruns++;
        } else if (rc == FH_JOURNAL_CORRUPT) {
            bad++;
            break;
        } else if (__atomic_load_n(&writer_done, __ATOMIC_ACQUIRE) && pos >= fh_journal_head(&r)) {
            break;
        }
    }
    pthread_join(w, NULL);
    fprintf(stderr, "torture: %llu records read whole, %llu overruns (%llu records lost to them), %llu bad\n",
            (unsigned long long)ok, (unsigned long long)overruns, (unsigned long long)lost, (unsigned long long)bad);
    CHECK(bad == 0, "no torn or out-of-order record was returned as whole (%llu)", (unsigned long long)bad);
    CHECK(last == TORTURE_RECORDS, "the reader reached the last record");
    CHECK(ok + lost == TORTURE_RECORDS, "every record read or accounted to an overrun");
    CHECK(overruns > 0 && lost > 0, "the sleeping reader was overrun (%llu)", (unsigned long long)overruns);
    fh_journal_close(tj, 0);
    CHECK(fh_journal_writer_alive(path) == 0, "after close the writer is gone");
    CHECK(atomic_load(&r.hdr->writer_state) == 2, "stopped cleanly");
    fh_journal_leave(&r);
    unlink(path);
}

/* ---- the jtee from a MoldUDP64 feed ---- */
#define NMSG 6000
#include "stream.h"

static fh_engine_t *mk(void) { return stream_engine(1 << 15); }

typedef struct pending {
    uint8_t d[2048];
    size_t n;
    int line;
    uint64_t due;
} pending_t;

static fh_journal_tee_t jtee;
static uint64_t total_missed, exact_runs;

/* One randomised run: a stream of datagrams of 1..8 messages on lines A and B, each copy dropped, delayed
 * (reordered) or duplicated at random, some heartbeats, an unsequenced datagram, a session change at
 * `change` (0: none); the feed polled as time passes (no request server: gaps are given up after the wait
 * or when the hold-back buffer is full). Then the journal, replayed, must give the same books. */
static void tee_run(uint64_t seed, uint32_t hold, uint64_t change, unsigned drop_pct)
{
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    fh_engine_t *e = mk(), *replay = mk();
    fh_mold_cfg_t c;
    fh_mold_cfg_defaults(&c, 1000);
    c.hold = hold;
    c.can_request = false;
    fh_mold_feed_t f;
    memset(&f, 0, sizeof f);
    if (fh_mold_feed_init(&f, &c)) {
        fprintf(stderr, "feed: %s\n", fh_errmsg());
        exit(1);
    }
    fh_feed_consumer_t books;
    fh_engine_consumer(e, &books);
    fh_mold_feed_set_consumer(&f, &books);
    fh_journal_t *j = fh_journal_create(&(fh_journal_cfg_t){ NULL, "jtee", 1ull << 24, -1 });
    fh_journal_tee_init(&jtee, j);
    fh_journal_tee_attach(&jtee, &f);
    static pending_t q[64];
    int nq = 0;
    uint64_t now = 1000, s = 1;
    const char *sess = "SESSION001";
    uint64_t seq = 1; /* the sequence of message s in its session */
    int changed = 0;
    while (s <= NMSG || nq) {
        if (s <= NMSG && nq < 60) {
            uint16_t k = (uint16_t)(1 + rnd() % 8);
            if (s + k - 1 > NMSG)
                k = (uint16_t)(NMSG - s + 1);
            if (change && !changed && s + k > change) {
                k = (uint16_t)(change - s); /* the change starts a datagram */
                if (k == 0) {
                    sess = "SESSION002";
                    seq = 1;
                    changed = 1;
                    continue;
                }
            }
            for (int line = 0; line < 2; line++) {
                if (rnd() % 100 < drop_pct)
                    continue;
                pending_t *p = &q[nq++];
                p->n = stream_dgram(p->d, sess, seq, k, s);
                p->line = line;
                p->due = now + (rnd() % 10 < 2 ? rnd() % 3000 : 0);
            }
            if (rnd() % 50 == 0) { /* a heartbeat naming the next sequence */
                pending_t *p = &q[nq++];
                p->n = stream_dgram(p->d, sess, seq + k, 0, 0);
                p->line = 0;
                p->due = now;
            }
            if (rnd() % 400 == 0) { /* unsequenced */
                pending_t *p = &q[nq++];
                p->n = stream_dgram(p->d, sess, 0, 1, s);
                p->line = 1;
                p->due = now;
            }
            s += k;
            seq += k;
        }
        now += 100;
        for (int i = 0; i < nq;) {
            if (q[i].due <= now || s > NMSG) {
                fh_mold_feed_apply(&f, q[i].d, q[i].n, q[i].line, now);
                fh_journal_tee(&jtee, &f, q[i].d, q[i].n);
                q[i] = q[--nq];
            } else {
                i++;
            }
        }
        fh_mold_request_t rq[16];
        fh_mold_feed_poll(&f, now, rq, 16);
        fh_journal_tee(&jtee, &f, NULL, 0);
    }
    for (int i = 0; i < 50; i++) { /* let every gap be given up */
        now += 100000;
        fh_mold_request_t rq[16];
        fh_mold_feed_poll(&f, now, rq, 16);
        fh_journal_tee(&jtee, &f, NULL, 0);
    }
    /* replay: every MSGS record's blocks into a second engine; runs per session contiguous */
    fh_journal_reader_t r;
    reader_of(&r, j);
    uint64_t pos = 0, expect = 0, msgs = 0, lostn = 0, marks = 0, missed = 0;
    char cur[10] = { 0 };
    int rc, contiguous = 1, sessions = 0;
    fh_journal_rec_t rec;
    while ((rc = fh_journal_next(&r, &pos, &rec, body)) == FH_JOURNAL_OK) {
        if (rec.kind == FH_JR_MSGS && rec.seq == 0) { /* unsequenced */
            fh_engine_apply_blocks(replay, body, rec.arg);
            msgs += rec.count;
            continue;
        }
        if (memcmp(cur, rec.session, 10)) {
            memcpy(cur, rec.session, 10);
            expect = rec.seq;
            sessions++;
        }
        if (rec.kind == FH_JR_MSGS) {
            if (rec.seq != expect)
                contiguous = 0;
            const uint8_t *m[256];
            uint16_t l[256];
            uint32_t nb = fh_journal_blocks(&rec, body, m, l, 256);
            CHECK(nb == rec.count, "record's blocks: %u of %u", nb, rec.count);
            fh_engine_apply_blocks(replay, body, rec.arg);
            expect = rec.seq + rec.count;
            msgs += rec.count;
        } else if (rec.kind == FH_JR_LOST || rec.kind == FH_JR_MISSED) {
            if (rec.seq != expect)
                contiguous = 0;
            expect = rec.seq + rec.arg;
            if (rec.kind == FH_JR_LOST)
                lostn += rec.arg;
            else
                missed += rec.arg;
        } else {
            marks++;
        }
    }
    CHECK(rc == FH_JOURNAL_NONE, "journal read to its end (rc %d)", rc);
    CHECK(contiguous, "seed %llu: the runs of each session follow each other", (unsigned long long)seed);
    CHECK(missed == jtee.missed, "FH_JR_MISSED records %llu = the tee's count %llu", (unsigned long long)missed,
          (unsigned long long)jtee.missed);
    CHECK(!missed || (hold && f.counters[FH_M_hold_full]), "seed %llu hold %u: %llu missed without a full hold-back",
          (unsigned long long)seed, hold, (unsigned long long)missed);
    CHECK(lostn + missed == f.counters[FH_M_lost] + (f.counters[FH_M_applied] - msgs),
          "seed %llu hold %u: lost %llu + missed %llu = the feed's lost %llu + applied %llu - journaled %llu",
          (unsigned long long)seed, hold, (unsigned long long)lostn, (unsigned long long)missed,
          (unsigned long long)f.counters[FH_M_lost], (unsigned long long)f.counters[FH_M_applied],
          (unsigned long long)msgs);
    CHECK(lostn <= f.counters[FH_M_lost] && msgs <= f.counters[FH_M_applied], "never more lost or applied than the feed");
    total_missed += missed;
    CHECK(sessions == (change ? 2 : 1), "sessions seen: %d", sessions);
    if (!missed) { /* the replayed journal is the feed's day exactly */
        uint64_t ca[FH_C_COUNT], cb[FH_C_COUNT];
        fh_engine_counters(e, ca);
        fh_engine_counters(replay, cb);
        CHECK(!memcmp(ca, cb, sizeof ca), "seed %llu hold %u: counters equal (messages %llu vs %llu)",
              (unsigned long long)seed, hold, (unsigned long long)ca[FH_C_messages],
              (unsigned long long)cb[FH_C_messages]);
        int same = 1;
        for (uint16_t loc = 1; loc <= 5; loc++)
            for (int side = 0; side < 2; side++) {
                fh_level_t a[512], b[512];
                uint32_t na = fh_engine_levels(e, loc, side, a, 512), nb = fh_engine_levels(replay, loc, side, b, 512);
                if (na != nb || memcmp(a, b, na * sizeof a[0]))
                    same = 0;
            }
        CHECK(same, "seed %llu hold %u change %llu: the replayed journal gives the same books",
              (unsigned long long)seed, hold, (unsigned long long)change);
        exact_runs++;
    }
    if (seed == 1)
        fprintf(stderr, "jtee hold %u change %llu: %llu applied, %llu lost, %llu marks, %llu journal bytes\n", hold,
                (unsigned long long)change, (unsigned long long)msgs, (unsigned long long)lostn,
                (unsigned long long)marks, (unsigned long long)pos);
    fh_journal_close(j, 0);
    fh_mold_feed_free(&f);
    fh_engine_destroy(e);
    fh_engine_destroy(replay);
}

static void test_tee(void)
{
    build_stream();
    for (uint64_t seed = 1; seed <= 6; seed++) {
        tee_run(seed, 1024, 0, 0);     /* reordering and duplicates only: nothing lost */
        tee_run(seed, 1024, 0, 15);    /* both copies of some datagrams lost: gaps given up */
        tee_run(seed, 16, 0, 10);      /* a hold-back buffer too small: hold_full */
        tee_run(seed, 0, 0, 10);       /* no hold-back buffer */
        tee_run(seed, 1024, 3001, 10); /* a session change */
    }
    fprintf(stderr, "tee: %llu of 30 runs replayed exactly; %llu messages journaled as missed (full hold-back)\n",
            (unsigned long long)exact_runs, (unsigned long long)total_missed);
    CHECK(exact_runs >= 24, "every run without a full hold-back replays exactly");
}

/* ---- snapshots (fh_engine_snapshot_save/load, here for the sanitizers) ---- */
static void test_snapshot(void)
{
    build_stream();
    fh_engine_t *a = mk(), *b = mk();
    for (int s = 1; s <= 3000; s++)
        fh_engine_apply(a, msg[s], mlen[s]);
    char path[128];
    snprintf(path, sizeof path, "/tmp/fh-test-snap-%d.snap", (int)getpid());
    fh_snapshot_meta_t m = { .session = "SESSION001", .next_seq = 3001, .day = 20261203 }, got;
    CHECK(fh_engine_snapshot_save(a, &m, path) == 0, "save: %s", fh_errmsg());
    CHECK(fh_engine_snapshot_load(NULL, path, &got) == 0 && got.next_seq == 3001 && got.orders == fh_engine_live_orders(a),
          "check only: %s", fh_errmsg());
    fh_engine_apply(b, msg[1], mlen[1]);
    CHECK(fh_engine_snapshot_load(b, path, &got) == 0, "load: %s", fh_errmsg());
    for (int s = 3001; s <= NMSG; s++) {
        fh_engine_apply(a, msg[s], mlen[s]);
        fh_engine_apply(b, msg[s], mlen[s]);
    }
    uint64_t ca[FH_C_COUNT], cb[FH_C_COUNT];
    fh_engine_counters(a, ca);
    fh_engine_counters(b, cb);
    CHECK(!memcmp(ca, cb, sizeof ca), "counters after load + the rest");
    int same = fh_engine_live_orders(a) == fh_engine_live_orders(b);
    for (uint16_t loc = 1; loc <= 5; loc++)
        for (int side = 0; side < 2; side++) {
            fh_level_t x[512], y[512];
            uint32_t nx = fh_engine_levels(a, loc, side, x, 512), ny = fh_engine_levels(b, loc, side, y, 512);
            same &= nx == ny && !memcmp(x, y, nx * sizeof x[0]);
        }
    CHECK(same, "snapshot at 3000 + the rest == the whole stream");
    /* a flipped byte, a truncation: refused, the engine left as it was */
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, size / 2, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
    uint64_t live = fh_engine_live_orders(b);
    CHECK(fh_engine_snapshot_load(b, path, &got) == -1 && strstr(fh_errmsg(), "CRC"), "flipped byte: %s", fh_errmsg());
    CHECK(fh_engine_live_orders(b) == live, "a refused snapshot leaves the engine as it was");
    CHECK(truncate(path, size - 5) == 0, "truncate");
    CHECK(fh_engine_snapshot_load(b, path, &got) == -1 && strstr(fh_errmsg(), "truncated"), "truncated: %s",
          fh_errmsg());
    unlink(path);
    fh_engine_destroy(a);
    fh_engine_destroy(b);
}

/* ---- a snapshot loaded into a published segment (a restart, a standby): no reader ever sees a book live with
 * only part of its orders. A reader thread copies the book while the main thread loads it again and again;
 * before the fix the book was created with the snapshot's status (live) and filled order by order. ---- */
#include "fh/seg.h"
#include "fh/shm_reader.h"

#define LOAD_LOC 7
typedef struct load_watch {
    fh_shm_reader_t r;
    int stop, loading;      /* atomics: set by the main thread */
    uint32_t want;          /* the bid levels of the whole book */
    uint64_t during, partial, live_partial, live_during; /* reads during loads: of a book with part of its levels, live */
} load_watch_t;

static void *watch_load(void *arg)
{
    load_watch_t *w = arg;
    static fh_shm_snapshot_t s;
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        int loading = __atomic_load_n(&w->loading, __ATOMIC_ACQUIRE);
        if (fh_shm_reader_snapshot(&w->r, LOAD_LOC, 1, &s) < 0 || !loading)
            continue;
        w->during++;
        int part = s.book.status != FH_BOOK_EMPTY && s.nlevels[0] != w->want; /* window and deep (layout 5) */
        w->partial += part;
        if (s.book.status == FH_BOOK_LIVE) {
            w->live_during++;
            w->live_partial += part;
        }
    }
    return NULL;
}

static void add_msg(uint8_t *b, uint64_t ref, uint32_t shares, uint32_t price)
{
    memset(b, 0, 36);
    b[0] = 'A';
    fh_put_be16(b + 1, LOAD_LOC);
    fh_put_be48(b + 5, 1000 + ref);
    fh_put_be64(b + 11, ref);
    b[19] = 'B';
    fh_put_be32(b + 20, shares);
    memcpy(b + 24, "LOADTEST", 8);
    fh_put_be32(b + 32, price);
}

static void test_snapshot_load_published(void)
{
    fh_engine_cfg_t ec = { FH_MAX_LOCATE, 1u << 17, 1u << 16 };
    fh_engine_t *a = fh_engine_create(&ec);
    uint8_t m[36];
    const uint32_t norders = 60000, nprices = 6000;
    for (uint32_t i = 1; i <= norders; i++) {
        add_msg(m, i, 100, 100000 + (i % nprices) * 100);
        fh_engine_apply(a, m, sizeof m);
    }
    char path[128], seg_path[128];
    snprintf(path, sizeof path, "/tmp/fh-test-load-%d.snap", (int)getpid());
    snprintf(seg_path, sizeof seg_path, "/dev/shm/fh-test-load-%d", (int)getpid());
    fh_snapshot_meta_t meta = { .session = "SESSION001", .next_seq = norders + 1, .day = 20261203 }, got;
    CHECK(fh_engine_snapshot_save(a, &meta, path) == 0, "save: %s", fh_errmsg());
    fh_seg_cfg_t sc = { .path = seg_path, .name = "load-test", .max_levels = 1u << 16, .event_capacity = 1u << 16,
                        .depth = 10, .gid = -1, .ladder_books = FH_SEG_LADDER_BOOKS };
    fh_seg_t *seg = fh_seg_create(&sc);
    CHECK(seg != NULL, "segment: %s", fh_errmsg());
    if (!seg)
        return;
    fh_engine_t *e = fh_engine_create_on(&ec, seg);
    static load_watch_t w;
    w.want = nprices;
    CHECK(fh_shm_reader_join(&w.r, seg_path) == 0, "join: %s", fh_errmsg());
    pthread_t th;
    pthread_create(&th, NULL, watch_load, &w);
    for (int stale = 0; stale < 2; stale++) {
        uint64_t d0 = w.during, p0 = w.partial, lp0 = w.live_partial, ld0 = w.live_during;
        int loads = 0;
        /* until the reader has caught the book half-loaded 50 times, for at least 300 loads and at most 30 s: on
         * two CPUs shared with other work the reader thread may run beside the loader only now and then (300 loads
         * alone caught it 0 times in some runs on a loaded host: inconclusive, below) */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;; loads++) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (w.partial - p0 >= 50 || (loads >= 300 && (w.partial > p0 || t1.tv_sec - t0.tv_sec >= 30)))
                break;
            uint64_t head = fh_shm_reader_head(&w.r);
            __atomic_store_n(&w.loading, 1, __ATOMIC_RELEASE);
            int rc = stale ? fh_engine_snapshot_load_stale(e, path, &got) : fh_engine_snapshot_load(e, path, &got);
            __atomic_store_n(&w.loading, 0, __ATOMIC_RELEASE);
            CHECK(rc == 0 && got.orders == norders, "load: %s", fh_errmsg());
            fh_shm_event_t ev;
            uint64_t next = head + 1, nstale = 0, other = 0;
            while (fh_shm_reader_event_next(&w.r, &next, &ev) == 1)
                ev.type == FH_EV_STALE ? nstale++ : other++;
            CHECK(nstale == (uint64_t)stale && other == 0, "load %s: %llu stale notices, %llu other events",
                  stale ? "stale" : "plain", (unsigned long long)nstale, (unsigned long long)other);
            fh_shm_snapshot_t s;
            CHECK(fh_shm_reader_snapshot(&w.r, LOAD_LOC, 1, &s) >= 0 && s.nlevels[0] == nprices &&
                  s.book.status == (stale ? FH_BOOK_STALE : FH_BOOK_LIVE), "after the load: %u levels, status %u",
                  s.nlevels[0], s.book.status);
        }
        fprintf(stderr, "load %s into a published segment, %d loads: %llu reads during them, %llu of the book "
                        "half-loaded, %llu live (%llu of the book half-loaded)\n", stale ? "stale" : "plain", loads,
                (unsigned long long)(w.during - d0), (unsigned long long)(w.partial - p0),
                (unsigned long long)(w.live_during - ld0), (unsigned long long)(w.live_partial - lp0));
        CHECK(w.partial - p0 > 0, "the reader thread never read the book half-loaded: inconclusive");
        CHECK(w.live_partial == lp0, "a reader saw the book live with part of its orders while it loaded");
    }
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    fh_shm_reader_leave(&w.r);
    fh_engine_destroy(e);
    fh_seg_close(seg, 1);
    fh_engine_destroy(a);
    unlink(path);
}

/* A journal file shorter than a header: still being created while it is empty or its writer holds its lock
 * (fh_journal_create creates, locks, then sizes it): -EAGAIN, which a follower waits on; short and unlocked, a
 * dead writer's remains: -EPROTO. (fh-replicate started before its data plane took the file for another
 * layout's while the data plane was between the two.) */
static void test_join_while_created(void)
{
    char path[] = "/tmp/fh-test-journal-creating-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    if (fd < 0)
        return;
    fh_journal_reader_t r;
    CHECK(fh_journal_join(&r, path) == -EAGAIN, "an empty journal file is being created");
    CHECK(flock(fd, LOCK_EX | LOCK_NB) == 0, "flock: %s", strerror(errno));
    CHECK(write(fd, "FHJ", 3) == 3, "write");
    CHECK(fh_journal_join(&r, path) == -EAGAIN, "a short journal file its writer holds is being created");
    CHECK(flock(fd, LOCK_UN) == 0, "unlock");
    CHECK(fh_journal_join(&r, path) == -EPROTO, "a short journal file nobody holds is not a journal");
    close(fd);
    unlink(path);
}

int main(void)
{
    test_footprint();
    test_join_while_created();
    test_roundtrip();
    test_overrun();
    test_tee();
    test_torture();
    test_snapshot();
    test_snapshot_load_published();
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures != 0;
}
