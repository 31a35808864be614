/* Unit test of the standby data plane's hold-back ring and promotion (native/dataplane/standby.c), as in the
 * failover lab (handler/failover_lab.py) without DPDK or a network: a "primary" MoldUDP64 feed and engine
 * journal what they apply (the journal tee) into a journal file, which the standby follows while it holds
 * the same datagrams of lines A and B back in a small ring (8 slots: it wraps hundreds of times). The primary
 * lags the lines by a few datagrams and then "dies"; a FH_JR_PROMOTED mark ends its journal; the standby
 * resumes its own feed from the held datagrams and the live ones after. Checked: the standby's books equal a
 * reference engine that applied the whole stream; the held datagrams replayed at promotion are exactly those
 * the journal had not covered; none was overwritten. Then the same with a datagram at the head of the ring
 * that the journal can never cover (a runt, a heartbeat of another session): it must not keep every
 * datagram after it held (the ring then overwrites covered datagrams, counts them as lost, and replays a
 * whole ring at promotion). Exit 0 on success, 1 on failure. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fh/book.h"
#include "fh/journal_mold.h"
#include "fh/mold.h"
#include "fh/shm.h"
#include "standby.h"

#define NMSG 3000
#define PER 4 /* messages a datagram */
#include "stream.h"

static const char *SESS = "SESSION001";

/* Datagram k (0-based): messages k*PER+1 .. k*PER+PER. */
static size_t dgram(uint8_t *out, uint64_t k) { return stream_dgram(out, SESS, k * PER + 1, PER, k * PER + 1); }

static fh_engine_t *mk(void) { return stream_engine(1 << 14); }

static void feed_on(fh_mold_feed_t *f, fh_engine_t *e)
{
    fh_mold_cfg_t c;
    fh_mold_cfg_defaults(&c, 1000);
    c.can_request = false;
    c.hold = 1024;
    memset(f, 0, sizeof *f);
    if (fh_mold_feed_init(f, &c)) {
        fprintf(stderr, "feed: %s\n", fh_errmsg());
        exit(1);
    }
    fh_feed_consumer_t books;
    fh_engine_consumer(e, &books);
    fh_mold_feed_set_consumer(f, &books);
}

static int same_books(fh_engine_t *a, fh_engine_t *b)
{
    static fh_level_t la[256], lb[256];
    for (uint16_t loc = 1; loc <= 5; loc++)
        for (int side = 0; side < 2; side++) {
            uint32_t na = fh_engine_levels(a, loc, side, la, 256), nb = fh_engine_levels(b, loc, side, lb, 256);
            if (na != nb || memcmp(la, lb, na * sizeof la[0]))
                return 0;
        }
    return fh_engine_live_orders(a) == fh_engine_live_orders(b);
}

static fh_mold_feed_t sfeed;

static int apply_own(void *ctx, const uint8_t *d, size_t len, int line, uint64_t now)
{
    (void)ctx;
    return fh_mold_feed_apply(&sfeed, d, len, line, now);
}

/* A figure of fh_standby_json. */
static uint64_t stat_of(fh_standby_t *s, const char *key)
{
    char *buf = NULL, k[64];
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    fh_standby_json(s, m);
    fclose(m);
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(buf, k);
    uint64_t v = p ? strtoull(p + strlen(k), NULL, 10) : ~0ull;
    free(buf);
    return v;
}

/* One failover: `junk` (0 none, 1 a runt, 2 a heartbeat of another session) arrives first on line A; the
 * primary applies datagram k - lag when the lines deliver datagram k; it dies after datagram kill; the standby
 * sees the mark one datagram later. A datagram every 1,000 ticks of a clock of hz ticks a second: at 1e9 (1 µs
 * apart) any lag is within FH_SHM_STANDBY_SLACK_NS (1 ms), and the standby says CURRENT; at 1e6 (1 ms apart) a
 * lag of 3 datagrams leaves the oldest uncovered one 2 ms old, and it says BEHIND by the lag's messages. */
static void failover(int junk, uint64_t lag, uint64_t kill, uint32_t hold, uint64_t hz)
{
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fh-test-standby-%d.journal", (int)getpid());
    fh_engine_t *ref = mk(), *pe = mk(), *se = mk();
    fh_mold_feed_t rfeed, pfeed;
    feed_on(&rfeed, ref);
    feed_on(&pfeed, pe);
    feed_on(&sfeed, se);
    fh_journal_t *j = fh_journal_create(&(fh_journal_cfg_t){ path, "standby-test", 1ull << 20, -1 });
    CHECK(j, "journal: %s", fh_errmsg());
    if (!j)
        return;
    static fh_journal_tee_t tee;
    fh_journal_tee_init(&tee, j);
    fh_journal_tee_attach(&tee, &pfeed);
    void *ring = aligned_alloc(64, fh_standby_ring_bytes(hold));
    CHECK(ring, "ring");
    if (!ring)
        return;
    memset(ring, 0, fh_standby_ring_bytes(hold));
    fh_standby_t *s = fh_standby_open(path, hold, ring, se, NULL, hz);
    CHECK(s, "fh_standby_open");
    if (!s)
        return;
    uint8_t d[2048];
    uint64_t now = 1000, ndg = NMSG / PER, promoted_at = 0, behind = 99, wrong = 0;
    uint32_t want_st = hz >= 1000000000ull || lag < 3 ? FH_SHM_STANDBY_CURRENT : FH_SHM_STANDBY_BEHIND;
    CHECK(fh_standby_currency(s, now, &behind) == FH_SHM_STANDBY_NO_LINES && behind == 0,
          "junk %d: nothing held yet: not NO_LINES", junk);
    if (junk) {
        memset(d, 0, sizeof d);
        memcpy(d, junk == 1 ? "RUNT" : "OTHERSESS1", junk == 1 ? 4 : 10);
        if (junk == 2)
            fh_put_be64(d + 10, 7); /* count 0: a heartbeat */
        fh_standby_hold(s, d, junk == 1 ? 4 : 20, 0, now);
    }
    for (uint64_t k = 0; k < ndg; k++, now += 1000) {
        size_t n = dgram(d, k);
        fh_mold_feed_apply(&rfeed, d, n, 0, now);
        int live = promoted_at != 0;
        for (int line = 0; line < 2; line++) {
            if (live)
                fh_mold_feed_apply(&sfeed, d, n, line, now);
            else
                fh_standby_hold(s, d, n, line, now);
        }
        if (k >= lag && k - lag <= kill) { /* the primary, lag datagrams behind, until it dies */
            size_t pn = dgram(d, k - lag);
            for (int line = 0; line < 2; line++) {
                fh_mold_feed_apply(&pfeed, d, pn, line, now);
                fh_journal_tee(&tee, &pfeed, d, pn);
            }
        }
        if (k == kill + lag + 1) /* its fh-replicate has shipped all; the standby's marks the journal */
            fh_journal_append_mark(j, FH_JR_PROMOTED, SESS, (kill + 1) * PER + 1, 2);
        if (!live && fh_standby_poll(s, &sfeed, now, 256, apply_own, NULL))
            promoted_at = k + 1;
        uint32_t st = fh_standby_currency(s, now, &behind);
        if (k > lag && k < kill && (st != want_st || behind != (want_st == FH_SHM_STANDBY_BEHIND ? lag * PER : 0)) &&
            !wrong++)
            fprintf(stderr, "junk %d lag %llu hz %llu: after datagram %llu: standby state %u, %llu behind; expected "
                            "%u\n", junk, (unsigned long long)lag, (unsigned long long)hz, (unsigned long long)k, st,
                    (unsigned long long)behind, want_st);
        if (promoted_at && st != FH_SHM_STANDBY_NO && !wrong++)
            fprintf(stderr, "junk %d: promoted, yet standby state %u\n", junk, st);
    }
    CHECK(!wrong, "junk %d lag %llu: %llu polls with the wrong standby state", junk, (unsigned long long)lag,
          (unsigned long long)wrong);
    CHECK(promoted_at == kill + lag + 2, "junk %d: promoted after datagram %llu, expected %llu", junk,
          (unsigned long long)promoted_at, (unsigned long long)(kill + lag + 2));
    /* uncovered at promotion: the datagrams after the last one journaled (kill), both lines */
    uint64_t want = 2 * (promoted_at - (kill + 1));
    CHECK(stat_of(s, "replayed") == want, "junk %d: %llu held datagrams replayed at promotion, expected %llu (the "
          "ones the journal had not covered)", junk, (unsigned long long)stat_of(s, "replayed"),
          (unsigned long long)want);
    CHECK(stat_of(s, "overwritten") == 0, "junk %d: %llu held datagrams overwritten (the ring of %u full)", junk,
          (unsigned long long)stat_of(s, "overwritten"), hold);
    CHECK(stat_of(s, "messages") == (kill + 1) * PER, "junk %d: %llu messages followed, expected %llu", junk,
          (unsigned long long)stat_of(s, "messages"), (unsigned long long)((kill + 1) * PER));
    CHECK(same_books(se, ref), "junk %d: the standby's books differ from the reference's", junk);
    CHECK(sfeed.counters[FH_M_gaps] == 0, "junk %d: the standby's feed saw %llu gaps", junk,
          (unsigned long long)sfeed.counters[FH_M_gaps]);
    fh_standby_close(s);
    free(ring);
    fh_journal_close(j, 1);
    fh_mold_feed_free(&rfeed);
    fh_mold_feed_free(&pfeed);
    fh_mold_feed_free(&sfeed);
    fh_engine_destroy(ref);
    fh_engine_destroy(pe);
    fh_engine_destroy(se);
}

int main(void)
{
    build_stream();
    failover(0, 2, 400, 8, 1000000000ull);  /* the lab: the primary 2 datagrams behind, killed at datagram 400 of 750 */
    failover(0, 0, 600, 8, 1000000000ull);  /* keeping up */
    failover(1, 2, 400, 8, 1000000000ull);  /* a runt first */
    failover(2, 2, 400, 8, 1000000000ull);  /* a heartbeat of another session first */
    failover(1, 2, 400, 2048, 1000000000ull); /* a ring that does not fill: every datagram after a stuck head would be
                                               * replayed */
    failover(0, 3, 400, 8, 1000000ull);     /* the journal 3 ms behind the lines: BEHIND by 3 datagrams' messages */
    failover(0, 2, 400, 8, 1000000ull);     /* 2 ms behind: the oldest uncovered 1 ms old, within the slack */
    if (failures)
        fprintf(stderr, "test_standby: %d failure(s)\n", failures);
    return failures != 0;
}
