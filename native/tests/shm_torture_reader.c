/* shm_torture_reader SEGMENT MODE [ARG] [--seconds S] [--until FILE] [--seed N]: a reader of an fh
 * shared-memory segment that checks everything it reads, for tests/test_shm_torture.py. It includes only
 * fh/shm.h: it is held to the readers' contract and nothing else.
 *
 *   snap        snapshot random books (among those with a book) at depth 10, over and over, and check each
 *               copy: bid prices strictly decreasing, ask prices strictly increasing, best bid < best ask,
 *               every level orders >= 1 and shares >= orders, levels copied == min(levels in use, depth),
 *               status live or stale, the locate and the seqlock (even, never going back) as expected.
 *               A snapshot that gives up (-2: the book stayed mid-change, as if its writer had died inside an
 *               update) is counted as spin_limit.
 *   events      follow the event ring from sequence 1: sequences consecutive except across a reported
 *               overrun, an overrun always moving forward, BBO events not crossed; count events by type,
 *               overruns and events lost. After the writer is done it drains the ring, so that
 *               events + lost == head.
 *   dump DEPTH  print every book with a level as the JSON line of `fh book dump --depth DEPTH`, by locate.
 *   info        print the header's liveness fields (writer pid, state, heartbeat, head, waiters).
 *
 * snap and events run until the writer's state becomes 2 (stopped), FILE exists (--until: the writer's
 * ready file), or S seconds pass (default 60); then print one JSON summary line and exit 0, or 1 if any
 * check failed (the first few failures are described on stderr). Exit 2: usage or join error. */
#include <fh/shm.h>

#include "shm_join.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *prog = "shm_torture_reader";

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) { return shm_xorshift64(&rng_state); }

/* ---- stop conditions ------------------------------------------------------------------------------ */

typedef struct stopper {
    const fh_shm_reader_t *r;
    const char *until;   /* stop once this file exists */
    uint64_t deadline;   /* CLOCK_MONOTONIC ns */
    int why;             /* 0 running, 1 writer stopped, 2 until-file, 3 time limit */
} stopper_t;

static int should_stop(stopper_t *s)
{
    if (__atomic_load_n(&s->r->hdr->writer_state, __ATOMIC_ACQUIRE) == 2)
        s->why = 1;
    else if (s->until && access(s->until, F_OK) == 0)
        s->why = 2;
    else if (mono_ns() >= s->deadline)
        s->why = 3;
    return s->why;
}

static const char *why_name[] = { "running", "writer_stopped", "until_file", "time_limit" };

static long violations;
static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    if (violations++ < 20) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "%s: violation: ", prog);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

/* ---- snap ------------------------------------------------------------------------------------------ */

static uint32_t list_books(const fh_shm_reader_t *r, uint16_t *out)
{
    uint32_t n = 0;
    for (uint32_t loc = 0; loc < r->nbooks && loc < FH_SHM_BOOKS; loc++)
        if (r->books[loc].status != FH_BOOK_EMPTY)
            out[n++] = (uint16_t)loc;
    return n;
}

static void check_side(const fh_shm_snapshot_t *s, int side, uint16_t loc, uint32_t depth)
{
    const fh_shm_level_t *lv = side ? s->asks : s->bids;
    uint32_t n = side ? s->nasks : s->nbids;
    uint32_t inuse = s->nlevels[side]; /* the window's and the deep run's (layout 5) */
    const char *name = side ? "ask" : "bid";
    if (n != (inuse < depth ? inuse : depth))
        violation("locate %u: %u %s levels copied, %u in use at depth %u", loc, n, name, inuse, depth);
    for (uint32_t j = 0; j < n; j++) {
        if (lv[j].orders < 1 || lv[j].shares < lv[j].orders)
            violation("locate %u: %s level %u: %" PRIu64 " shares in %u orders", loc, name, j, lv[j].shares,
                      lv[j].orders);
        if (lv[j].price == 0)
            violation("locate %u: %s level %u: price 0", loc, name, j);
        if (j && (side ? lv[j].price <= lv[j - 1].price : lv[j].price >= lv[j - 1].price))
            violation("locate %u: %s levels %u and %u out of order: %" PRId64 " then %" PRId64, loc, name, j - 1, j,
                      lv[j - 1].price, lv[j].price);
    }
}

static int run_snap(const fh_shm_reader_t *r, stopper_t *st)
{
    const uint32_t depth = 10;
    static uint16_t locs[FH_SHM_BOOKS];
    static uint32_t last_seq[FH_SHM_BOOKS];
    uint32_t nlocs = 0;
    uint64_t snaps = 0, retries = 0, empty = 0, max_retries = 0, rescans = 0, iter = 0, spin_limit = 0;
    fh_shm_snapshot_t s;
    uint64_t t0 = mono_ns();
    for (;; iter++) {
        if ((iter & 1023) == 0) {
            if (should_stop(st))
                break;
            if (nlocs == 0 || (iter & ((1u << 18) - 1)) == 0) { /* books appear as the day goes on */
                nlocs = list_books(r, locs);
                rescans++;
                if (nlocs == 0) {
                    struct timespec nap = { 0, 1000000 };
                    nanosleep(&nap, NULL);
                    continue;
                }
            }
        }
        if (nlocs == 0)
            continue;
        uint16_t loc = locs[rng() % nlocs];
        int rc = fh_shm_snapshot(r, loc, depth, &s);
        if (rc == -1) { /* no instrument (the writer resets its books between loops) */
            empty++;
            continue;
        }
        if (rc < 0) { /* -2: the book stayed mid-change for FH_SHM_SPIN_LIMIT tries, with a live writer */
            spin_limit++;
            continue;
        }
        snaps++;
        retries += (uint64_t)rc;
        if ((uint64_t)rc > max_retries)
            max_retries = (uint64_t)rc;
        if (s.book.seq & 1)
            violation("locate %u: snapshot with an odd seqlock %u", loc, s.book.seq);
        if (s.book.seq < last_seq[loc])
            violation("locate %u: seqlock went back from %u to %u", loc, last_seq[loc], s.book.seq);
        last_seq[loc] = s.book.seq;
        if (s.book.locate != loc)
            violation("locate %u: book says locate %u", loc, s.book.locate);
        if (s.book.status != FH_BOOK_LIVE && s.book.status != FH_BOOK_STALE)
            violation("locate %u: status %u", loc, s.book.status);
        if (s.book.symbol_len > 8)
            violation("locate %u: symbol length %u", loc, s.book.symbol_len);
        check_side(&s, 0, loc, depth);
        check_side(&s, 1, loc, depth);
        if (s.nbids && s.nasks && s.bids[0].price >= s.asks[0].price)
            violation("locate %u: crossed: best bid %" PRId64 " >= best ask %" PRId64, loc, s.bids[0].price,
                      s.asks[0].price);
    }
    double secs = (double)(mono_ns() - t0) / 1e9;
    printf("{\"mode\": \"snap\", \"snapshots\": %" PRIu64 ", \"retries\": %" PRIu64 ", \"max_retries\": %" PRIu64
           ", \"empty\": %" PRIu64 ", \"spin_limit\": %" PRIu64 ", \"books\": %u, \"rescans\": %" PRIu64
           ", \"violations\": %ld, \"seconds\": %.3f, \"stopped_by\": \"%s\"}\n",
           snaps, retries, max_retries, empty, spin_limit, nlocs, rescans, violations, secs, why_name[st->why]);
    return violations ? 1 : 0;
}

/* ---- events ---------------------------------------------------------------------------------------- */

static int run_events(const fh_shm_reader_t *r, stopper_t *st)
{
    uint64_t next = 1, seen = 0, lost = 0, overruns = 0, by_type[8] = { 0 }, waits = 0;
    uint64_t backwards = 0, drained = 0;
    int draining = 0;
    fh_shm_event_t ev;
    uint64_t t0 = mono_ns();
    for (;;) {
        uint64_t want = next;
        int rc = fh_shm_event_next(r, &next, &ev);
        if (rc == FH_SHM_EV_OK) {
            if (ev.seq != want || next != want + 1)
                violation("asked for event %" PRIu64 ", got %" PRIu64 " (next %" PRIu64 ")", want, ev.seq, next);
            seen++;
            drained += draining;
            by_type[ev.type < 8 ? ev.type : 0]++;
            if (ev.type < FH_EV_BBO || ev.type > FH_EV_RECOVERED)
                violation("event %" PRIu64 ": type %u", ev.seq, ev.type);
            if (ev.type == FH_EV_BBO) {
                if (ev.c && ev.d && ev.c >= ev.d)
                    violation("event %" PRIu64 ": BBO crossed, locate %u: bid %" PRId64 " >= ask %" PRId64, ev.seq, ev.locate,
                              ev.c, ev.d);
                if ((ev.c == 0) != (ev.a == 0) || (ev.d == 0) != (ev.b == 0))
                    violation("event %" PRIu64 ": BBO locate %u: price and size disagree (%" PRIu64 " x %" PRId64 " - %" PRId64 " x "
                              "%" PRIu64 ")", ev.seq, ev.locate, ev.a, ev.c, ev.d, ev.b);
            }
            continue;
        }
        if (rc == FH_SHM_EV_OVERRUN) {
            overruns++;
            if (next <= want) {
                /* the contract: *next is the oldest event still in the ring, so it moves forward */
                backwards++;
                violation("overrun reported at event %" PRIu64 " (head %" PRIu64 ") moved next back to %" PRIu64,
                          want, fh_shm_head(r), next);
                next = want; /* carry on from where we were, so that one bad report is counted once */
            } else {
                lost += next - want;
            }
            continue;
        }
        if (rc != FH_SHM_EV_NONE) {
            violation("fh_shm_event_next returned %d", rc);
            break;
        }
        /* nothing new */
        if (draining)
            break;
        if (should_stop(st)) {
            if (st->why == 3)
                break;
            draining = 1; /* the writer is done: read what is left, then stop */
            continue;
        }
        waits++;
        fh_shm_wait(r, next - 1, 50000000u);
    }
    uint64_t head = fh_shm_head(r);
    if (draining && seen + lost != head)
        violation("events seen %" PRIu64 " + lost %" PRIu64 " != head %" PRIu64, seen, lost, head);
    double secs = (double)(mono_ns() - t0) / 1e9;
    printf("{\"mode\": \"events\", \"events\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"overruns\": %" PRIu64
           ", \"overruns_backwards\": %" PRIu64 ", \"head\": %" PRIu64 ", \"next\": %" PRIu64
           ", \"bbo\": %" PRIu64 ", \"trade\": %" PRIu64 ", \"state\": %" PRIu64 ", \"stale\": %" PRIu64
           ", \"recovered\": %" PRIu64 ", \"drained\": %" PRIu64 ", \"waits\": %" PRIu64
           ", \"capacity\": %u, \"violations\": %ld, \"seconds\": %.3f, \"stopped_by\": \"%s\"}\n",
           seen, lost, overruns, backwards, head, next, by_type[FH_EV_BBO], by_type[FH_EV_TRADE],
           by_type[FH_EV_STATE], by_type[FH_EV_STALE], by_type[FH_EV_RECOVERED], drained, waits,
           r->hdr->event_capacity, violations, secs, why_name[st->why]);
    return violations ? 1 : 0;
}

/* ---- dump ------------------------------------------------------------------------------------------ */

/* A JSON string as Python's json.dumps writes it (ensure_ascii). */
static void json_str(const char *p, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (c) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\b': fputs("\\b", stdout); break;
        case '\f': fputs("\\f", stdout); break;
        default:
            if (c < 0x20 || c > 0x7f)
                printf("\\u%04x", c);
            else
                putchar(c);
        }
    }
    putchar('"');
}

static void json_levels(const fh_shm_level_t *lv, uint32_t n)
{
    putchar('[');
    for (uint32_t j = 0; j < n; j++)
        printf("%s[%" PRId64 ", %" PRIu64 ", %u]", j ? ", " : "", lv[j].price, lv[j].shares, lv[j].orders);
    putchar(']');
}

static int run_dump(const fh_shm_reader_t *r, uint32_t depth)
{
    fh_shm_snapshot_t s;
    for (uint32_t loc = 0; loc < r->nbooks; loc++) {
        int rc = fh_shm_snapshot(r, loc, depth, &s);
        if (rc < -1) {
            fprintf(stderr, "%s: locate %u: the book stays mid-change (writer dead inside an update?)\n", prog, loc);
            return 1;
        }
        if (rc < 0 || (s.nbids == 0 && s.nasks == 0))
            continue;
        printf("{\"locate\": %u, \"symbol\": ", loc);
        json_str(s.book.symbol, s.book.symbol_len <= 8 ? s.book.symbol_len : 8);
        fputs(", \"bids\": ", stdout);
        json_levels(s.bids, s.nbids);
        fputs(", \"asks\": ", stdout);
        json_levels(s.asks, s.nasks);
        fputs("}\n", stdout);
    }
    return fflush(stdout) ? 1 : 0;
}

/* ---- info ------------------------------------------------------------------------------------------ */

static int run_info(const fh_shm_reader_t *r, const char *path)
{
    const fh_shm_hdr_t *h = r->hdr;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    printf("{\"writer_pid\": %u, \"writer_state\": %u, \"writer_alive\": %d, \"heartbeat_ns\": %" PRIu64
           ", \"now_ns\": %" PRIu64 ", \"head\": %" PRIu64 ", \"event_capacity\": %u, \"max_levels\": %u"
           ", \"depth\": %u, \"tsc_hz\": %" PRIu64 ", \"waiters\": %d}\n",
           h->writer_pid, atomic_load(&h->writer_state), fh_shm_writer_alive(path), atomic_load(&h->heartbeat_ns),
           now, fh_shm_head(r), h->event_capacity, h->max_levels, h->depth, h->tsc_hz,
           r->wake ? (int)atomic_load(&r->wake->waiters) : -1);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: %s SEGMENT snap|events|dump DEPTH|info [--seconds S] [--until FILE] [--seed N]\n",
            prog);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    const char *path = argv[1], *mode = argv[2];
    uint32_t depth = 0;
    int i = 3;
    if (strcmp(mode, "dump") == 0) {
        if (argc < 4 || (depth = (uint32_t)atoi(argv[3])) < 1 || depth > 64) {
            fprintf(stderr, "%s: dump needs a DEPTH of 1..64\n", prog);
            return 2;
        }
        i = 4;
    } else if (strcmp(mode, "snap") && strcmp(mode, "events") && strcmp(mode, "info")) {
        return usage();
    }
    double seconds = 60;
    const char *until = NULL;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--until") == 0 && i + 1 < argc)
            until = argv[++i];
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            rng_state ^= strtoull(argv[++i], NULL, 0) * 0x9E3779B97F4A7C15ull;
        else
            return usage();
    }
    if (!rng_state)
        rng_state = 1;
    fh_shm_reader_t r;
    int rc = shm_join(&r, prog, path);
    if (rc)
        return 2;
    stopper_t st = { &r, until, mono_ns() + (uint64_t)(seconds * 1e9), 0 };
    if (strcmp(mode, "snap") == 0)
        rc = run_snap(&r, &st);
    else if (strcmp(mode, "events") == 0)
        rc = run_events(&r, &st);
    else if (strcmp(mode, "dump") == 0)
        rc = run_dump(&r, depth);
    else
        rc = run_info(&r, path);
    fflush(stdout);
    fh_shm_leave(&r);
    return rc;
}
