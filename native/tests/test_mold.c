/* Unit tests of a MoldUDP64 feed's sequencing and recovery (fh/mold.h): arbitration, holding, requests,
 * timeouts, unrecoverable gaps and stale books, heartbeats, session changes, line states, snapshots. Each
 * scenario feeds datagrams built from one message stream and compares the books with an engine that got
 * the stream in order. Exit 0 on success, 1 on failure. */
#include "fh/book.h"
#include "fh/itch.h"
#include "fh/mold.h"
#include "fh/shm.h"
#include "mold_frame.h"
#include "msg.h"

#define NMSG 5000
static uint8_t msg[NMSG + 1][64]; /* message of sequence s (1-based) */
static size_t mlen[NMSG + 1];
static fh_engine_t *e, *ref;
static fh_mold_feed_t f;
static const char SESSION[] = "SESSION001", OTHER[] = "SESSION002";

/* Sequences 1..3: directory messages of locates 1..3; then adds, executions and deletes over them. */
static void build_stream(void)
{
    const char *sym[] = { "AAA", "BBB", "CCC" };
    for (int s = 1; s <= NMSG; s++) {
        uint8_t *b = msg[s];
        uint16_t loc = (uint16_t)(1 + s % 3);
        if (s <= 3)
            mlen[s] = m_R(b, (uint16_t)s, sym[s - 1]);
        else if (s % 7 == 0 && s > 20)
            mlen[s] = m_D(b, loc, (uint64_t)(s - 9)); /* an order added 9 earlier (same locate: 9 % 3 == 0) */
        else
            mlen[s] = m_A(b, loc, (uint64_t)s, s % 2 ? 'B' : 'S', (uint32_t)(100 + s % 50), sym[loc - 1],
                          (uint32_t)(1000000 + (s % 2 ? -1 : 1) * (int)(s % 40) * 100));
    }
}

/* A datagram of messages [seq, seq+count) of session sess into out. */
static size_t dgram(uint8_t *out, const char *sess, uint64_t seq, uint16_t count)
{
    return mold_frame(out, sess, seq, count, msg[0], sizeof msg[0], mlen, seq);
}

static uint8_t buf[65536];
static int send_(int line, uint64_t seq, uint16_t count, uint64_t now)
{
    size_t n = dgram(buf, SESSION, seq, count);
    return fh_mold_feed_apply(&f, buf, n, line, now);
}

/* A datagram claiming sequence seq (anywhere, e.g. 10^12 ahead) that carries messages 10..10+count-1. */
static int send_far(int line, uint64_t seq, uint16_t count, uint64_t now)
{
    size_t n = dgram(buf, SESSION, 10, count);
    if (count == FH_MOLD_HEARTBEAT || count == FH_MOLD_END_OF_SESSION)
        n = dgram(buf, SESSION, 0, count);
    fh_put_be64(buf + 10, seq);
    return fh_mold_feed_apply(&f, buf, n, line, now);
}

static fh_engine_t *mk(void)
{
    fh_engine_t *x = fh_engine_create(&(fh_engine_cfg_t){ 16, 1 << 14, 1 << 14 });
    if (!x) {
        fprintf(stderr, "engine: %s\n", fh_errmsg());
        exit(1);
    }
    return x;
}

/* The engine's consumer in fresh(): fh_engine_consumer, or (staged) fh_engine_consumer_staged, whose datagrams are
 * applied behind the walk or by the next fh_engine_batch_end: its caller keeps them until then. */
static bool staged;

/* A fresh feed (cfg may be NULL) and engines; the reference gets messages 1..upto in order. */
static void fresh(const fh_mold_cfg_t *cfg, uint64_t upto)
{
    fh_mold_feed_free(&f);
    if (e)
        fh_engine_destroy(e);
    if (ref)
        fh_engine_destroy(ref);
    e = mk();
    ref = mk();
    if (fh_mold_feed_init(&f, cfg)) {
        fprintf(stderr, "feed: %s\n", fh_errmsg());
        exit(1);
    }
    fh_feed_consumer_t c;
    if (staged)
        fh_engine_consumer_staged(e, &c);
    else
        fh_engine_consumer(e, &c);
    fh_mold_feed_set_consumer(&f, &c);
    for (uint64_t s = 1; s <= upto; s++)
        fh_engine_apply(ref, msg[s], mlen[s]);
}

static int books_equal(void)
{
    for (uint16_t loc = 1; loc <= 3; loc++)
        for (int side = 0; side < 2; side++) {
            fh_level_t a[256], b[256];
            uint32_t na = fh_engine_levels(e, loc, side, a, 256), nb = fh_engine_levels(ref, loc, side, b, 256);
            if (na != nb || memcmp(a, b, na * sizeof a[0])) {
                fprintf(stderr, "  locate %u side %d: %u levels vs %u in the reference\n", loc, side, na, nb);
                return 0;
            }
        }
    return 1;
}

static int status(uint16_t loc)
{
    fh_book_info_t bi;
    return fh_engine_book_info(e, loc, &bi) ? -1 : bi.status;
}

static uint64_t C(fh_mold_counter_t c) { return f.counters[c]; }

static fh_mold_cfg_t cfg_server(void)
{
    fh_mold_cfg_t c;
    fh_mold_cfg_defaults(&c, 1000); /* 1,000 ticks per ms */
    c.can_request = true;
    c.hold = 1024;
    c.recovery_lines = 1u << 2; /* line 2: the server's replies */
    return c;
}

static void test_in_order_and_duplicates(void)
{
    fresh(NULL, 100);
    for (uint64_t s = 1; s <= 100; s += 10) {
        CHECK_EQ(send_(0, s, 10, 0), 10);
        CHECK_EQ(send_(1, s, 10, 0), 0); /* B: every copy a duplicate */
    }
    CHECK(books_equal());
    CHECK_EQ(C(FH_M_applied), 100);
    CHECK_EQ(C(FH_M_duplicates), 100);
    CHECK_EQ(f.line[0].won, 100);
    CHECK_EQ(f.line[1].won, 0);
    CHECK_EQ(f.line[1].duplicates, 100);
    CHECK_EQ(f.line[0].messages, 100);
    CHECK_EQ(f.next_seq, 101);
    CHECK_EQ(f.state, FH_FEED_LIVE);
}

/* A drops 31..40, B has them a little later: held, then filled from B; no request, nothing stale. */
static void test_gap_filled_by_other_line(void)
{
    fh_mold_cfg_t c = cfg_server();
    fresh(&c, 100);
    fh_mold_request_t rq[8];
    for (uint64_t s = 1; s <= 100; s += 10)
        if (s != 31)
            send_(0, s, 10, 10);
    CHECK_EQ(f.next_seq, 31);
    CHECK_EQ(f.held_now, 60);
    CHECK_EQ(f.state, FH_FEED_RECOVERING);
    CHECK_EQ(fh_mold_feed_poll(&f, 10 + 1999, rq, 8), 0); /* within the 2 ms wait: no request */
    for (uint64_t s = 1; s <= 100; s += 10)
        send_(1, s, 10, 20);
    CHECK(books_equal());
    CHECK_EQ(f.next_seq, 101);
    CHECK_EQ(f.held_now, 0);
    CHECK_EQ(C(FH_M_gaps), 1);
    CHECK_EQ(C(FH_M_gap_messages), 10);
    CHECK_EQ(C(FH_M_recovered_lines), 10);
    CHECK_EQ(C(FH_M_held), 60);
    CHECK_EQ(C(FH_M_applied), 100);
    CHECK_EQ(C(FH_M_requests), 0);
    CHECK_EQ(C(FH_M_lost), 0);
    CHECK_EQ(f.line[0].lost, 10);
    CHECK_EQ(f.line[1].won, 10);
    CHECK_EQ(f.state, FH_FEED_LIVE);
    CHECK_EQ(status(1), FH_BOOK_LIVE);
    CHECK_EQ(fh_mold_feed_poll(&f, 10000, rq, 8), 0);
}

/* Both lines lose 41..2540 (2,500 messages): after the wait, requests of at most 1,000 messages, at most 4 in
 * flight; the replies fill the gap and the held messages follow in order. */
static void test_gap_filled_by_retransmission(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.hold = 8192;
    fresh(&c, 3000);
    fh_mold_request_t rq[8];
    for (uint64_t s = 1; s <= 3000; s += 10)
        if (s < 41 || s > 2540) {
            send_(0, s, 10, 100);
            send_(1, s, 10, 100);
        }
    CHECK_EQ(f.next_seq, 41);
    CHECK_EQ(fh_mold_feed_poll(&f, 1000, rq, 8), 0);
    int n = fh_mold_feed_poll(&f, 2100, rq, 8);
    CHECK_EQ(n, 3);
    CHECK_EQ(rq[0].seq, 41);
    CHECK_EQ(rq[0].count, 1000);
    CHECK_EQ(rq[1].seq, 1041);
    CHECK_EQ(rq[2].seq, 2041);
    CHECK_EQ(rq[2].count, 500);
    CHECK(!memcmp(rq[0].session, SESSION, 10));
    uint8_t p[20];
    CHECK_EQ(fh_mold_request_encode(p, &rq[2]), 20);
    CHECK(!memcmp(p, SESSION, 10) && fh_be64(p + 10) == 2041 && fh_be16(p + 18) == 500);
    CHECK_EQ(fh_mold_feed_poll(&f, 2200, rq, 8), 0); /* covered: nothing new */
    /* The replies (on the recovery line), the last one first. */
    for (uint64_t s = 2041; s <= 2540; s += 50)
        send_(2, s, 50, 2300);
    for (uint64_t s = 41; s <= 2040; s += 50)
        send_(2, s, 50, 2400);
    CHECK(books_equal());
    CHECK_EQ(f.next_seq, 3001);
    CHECK_EQ(C(FH_M_recovered_retrans), 2500);
    CHECK_EQ(C(FH_M_requests), 3);
    CHECK_EQ(C(FH_M_request_messages), 2500);
    CHECK_EQ(C(FH_M_lost), 0);
    CHECK_EQ(C(FH_M_applied), 3000);
    CHECK_EQ(f.line[2].won, 2500);
    CHECK_EQ(f.filled, 1);
    CHECK_EQ(f.fill_last, 2400 - 100); /* from the first sign of the gap to the last reply */
    CHECK_EQ(f.state, FH_FEED_LIVE);
    CHECK_EQ(f.outstanding, 0);
    CHECK_EQ(status(2), FH_BOOK_LIVE);
}

/* No answer: resent after 100, 200, 400, 800 ms (4 retries), then given up: the gap is skipped, every book
 * marked stale, and the books are the reference's without the lost messages. */
static void test_retries_exhausted(void)
{
    fh_mold_cfg_t c = cfg_server();
    fresh(&c, 0);
    for (uint64_t s = 1; s <= 40; s++)
        fh_engine_apply(ref, msg[s], mlen[s]);
    for (uint64_t s = 51; s <= 100; s++)
        fh_engine_apply(ref, msg[s], mlen[s]);
    fh_mold_request_t rq[8];
    for (uint64_t s = 1; s <= 100; s += 10)
        if (s != 41)
            send_(0, s, 10, 0);
    uint64_t t = 2000, sends = 0, last = 0;
    sends += (uint64_t)fh_mold_feed_poll(&f, t, rq, 8);
    CHECK_EQ(sends, 1);
    for (t = 2000; t < 2000 + 4000000 && f.gap_open; t += 1000) {
        int k = fh_mold_feed_poll(&f, t, rq, 8);
        if (k) {
            CHECK_EQ(rq[0].seq, 41);
            CHECK_EQ(rq[0].count, 10);
            last = t;
        }
        sends += (uint64_t)k;
    }
    CHECK_EQ(sends, 5);                  /* the first send and 4 retries */
    CHECK_EQ(last, 2000 + (100 + 200 + 400 + 800) * 1000);
    CHECK_EQ(C(FH_M_request_retries), 4);
    CHECK_EQ(C(FH_M_request_timeouts), 1);
    CHECK_EQ(f.filled, 0);
    CHECK_EQ(C(FH_M_unrecoverable), 1);
    CHECK_EQ(C(FH_M_lost), 10);
    CHECK_EQ(f.next_seq, 101);
    CHECK(books_equal());
    for (uint16_t loc = 1; loc <= 3; loc++)
        CHECK_EQ(status(loc), FH_BOOK_STALE);
    CHECK_EQ(f.state, FH_FEED_STALE);
    /* A book first seen after the loss is stale too (its messages may have been lost). */
    uint8_t b[64];
    size_t n = m_R(b, 9, "NEW");
    fh_engine_apply(e, b, n);
    CHECK_EQ(status(9), FH_BOOK_STALE);
}

/* No request server: after the wait the gap is given up at once. A zeroed config gives it up on sight. */
static void test_no_server(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.can_request = false;
    fresh(&c, 0);
    fh_mold_request_t rq[8];
    send_(0, 1, 10, 0);
    send_(0, 21, 10, 0);
    CHECK_EQ(f.next_seq, 11);
    CHECK_EQ(fh_mold_feed_poll(&f, 1999, rq, 8), 0);
    CHECK_EQ(f.next_seq, 11);
    CHECK_EQ(fh_mold_feed_poll(&f, 2000, rq, 8), 0);
    CHECK_EQ(f.next_seq, 31);
    CHECK_EQ(C(FH_M_lost), 10);
    CHECK_EQ(status(1), FH_BOOK_STALE);

    fresh(NULL, 0);
    send_(0, 1, 10, 0);
    CHECK_EQ(send_(0, 21, 10, 0), 10);
    CHECK_EQ(C(FH_M_lost), 10);
    CHECK_EQ(C(FH_M_gap_messages), 10);
    CHECK_EQ(f.next_seq, 31);
    CHECK_EQ(status(2), FH_BOOK_STALE);
}

/* A restart (fh_mold_feed_resume at 1001): the line still sending its past is no proof of completeness
 * (0); a datagram beyond the restart point opens a gap (0 while it is filled); filled, the state is complete
 * (1). A heartbeat naming the restart point proves it at once; a gap given up makes it -1 for good. */
static void test_resume_caught_up(void)
{
    fh_mold_cfg_t c = cfg_server();
    fresh(&c, 0);
    fh_mold_feed_resume(&f, SESSION, 1001);
    CHECK_EQ(fh_mold_feed_caught_up(&f, 1001), 0);
    send_(0, 981, 10, 100); /* the past: duplicates */
    CHECK_EQ(C(FH_M_duplicates), 10);
    CHECK_EQ(fh_mold_feed_caught_up(&f, 1001), 0);
    send_(0, 1101, 10, 100); /* the live feed is ahead: 1001..1100 missing */
    CHECK_EQ(f.gap_open, 1);
    CHECK_EQ(fh_mold_feed_caught_up(&f, 1001), 0);
    send_(2, 1001, 100, 200); /* the retransmission server's reply (a recovery line: not proof by itself) */
    CHECK_EQ(f.next_seq, 1111);
    CHECK_EQ(fh_mold_feed_caught_up(&f, 1001), 1);

    fresh(&c, 0);
    fh_mold_feed_resume(&f, SESSION, 1001);
    send_(2, 991, 10, 100); /* a reply ending at the restart point: a recovery line proves nothing */
    CHECK_EQ(fh_mold_feed_caught_up(&f, 1001), 0);
    send_(1, 1001, FH_MOLD_HEARTBEAT, 100); /* line B: the next message is 1001 */
    CHECK_EQ(fh_mold_feed_caught_up(&f, 1001), 1);

    fresh(&c, 0);
    fh_mold_feed_resume(&f, SESSION, 1001);
    send_(0, 1101, 10, 100);
    fh_mold_request_t rq[8];
    for (uint64_t t = 2000; t < 4000000 && f.gap_open; t += 1000)
        fh_mold_feed_poll(&f, t, rq, 8);
    CHECK_EQ(C(FH_M_lost), 100);
    CHECK_EQ(fh_mold_feed_caught_up(&f, 1001), -1);
}

/* A hold-back buffer of 16: what comes 16 or more after the gap forces the gap to be given up. */
static void test_hold_full(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.hold = 16;
    fresh(&c, 0);
    send_(0, 1, 10, 0);
    send_(0, 13, 10, 0); /* 11, 12 missing; 13..22 held */
    CHECK_EQ(f.held_now, 10);
    send_(0, 23, 10, 0); /* 27.. do not fit: the gap goes */
    CHECK_EQ(C(FH_M_hold_full), 1);
    CHECK_EQ(C(FH_M_lost), 2);
    CHECK_EQ(f.next_seq, 33);
    CHECK_EQ(f.held_now, 0);
    CHECK_EQ(C(FH_M_applied), 30);
    CHECK_EQ(status(1), FH_BOOK_STALE);
    CHECK(!f.gap_open);
}

/* Heartbeats name the next sequence: a later one opens a gap, an earlier one is counted backwards. */
static void test_heartbeats(void)
{
    fh_mold_cfg_t c = cfg_server();
    fresh(&c, 30);
    fh_mold_request_t rq[8];
    send_(0, 1, 20, 0);
    send_(0, 15, FH_MOLD_HEARTBEAT, 0);
    CHECK_EQ(C(FH_M_backwards), 1);
    send_(1, 31, FH_MOLD_HEARTBEAT, 0);
    CHECK_EQ(f.state, FH_FEED_RECOVERING);
    CHECK_EQ(fh_mold_feed_poll(&f, 5000, rq, 8), 1);
    CHECK_EQ(rq[0].seq, 21);
    CHECK_EQ(rq[0].count, 10);
    send_(2, 21, 10, 6000);
    CHECK(books_equal());
    CHECK_EQ(f.state, FH_FEED_LIVE);
    send_(0, 31, FH_MOLD_END_OF_SESSION, 7000);
    CHECK_EQ(f.state, FH_FEED_ENDED);
}

/* A new session while a gap is open, believed once a second line carries it: the old gap is given up, the
 * held messages applied, the new session starts at 1. A reply of another session is ignored. */
static void test_session_change(void)
{
    fh_mold_cfg_t c = cfg_server();
    fresh(&c, 0);
    send_(0, 1, 10, 0);
    send_(0, 21, 10, 0);
    size_t n = dgram(buf, OTHER, 1, 10);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 10), 0); /* one line, once: not believed yet */
    CHECK_EQ(C(FH_M_bogus_session), 1);
    CHECK_EQ(C(FH_M_session_changes), 0);
    CHECK(!memcmp(f.session, SESSION, 10));
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 1, 10), 10); /* the other line too: believed */
    CHECK_EQ(C(FH_M_session_changes), 1);
    CHECK_EQ(C(FH_M_lost), 10);
    CHECK_EQ(C(FH_M_applied), 30);
    CHECK_EQ(f.next_seq, 11);
    CHECK_EQ(C(FH_M_joined_at), 0);
    CHECK(!memcmp(f.session, OTHER, 10));
    n = dgram(buf, SESSION, 11, 10);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 2, 20), 0);
    CHECK_EQ(C(FH_M_old_session), 1);
    n = dgram(buf, SESSION, 41, 10); /* a line still on the old session */
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 1, 30), 0);
    CHECK_EQ(C(FH_M_old_session), 2);
    CHECK(!memcmp(f.session, OTHER, 10));
    CHECK_EQ(C(FH_M_session_changes), 1);
}

/* Strays: one well-framed datagram of another session, a random payload, a heartbeat of another session,
 * in the middle of the day on one line: each counted and ignored, the books those of the stream. */
static void test_stray_datagrams(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.msg_len = fh_itch_len;
    fresh(&c, 100);
    uint64_t seed = 12345;
    for (uint64_t s = 1; s <= 100; s += 10) {
        send_(0, s, 10, 0);
        if (s == 51) {
            size_t n = dgram(buf, OTHER, 500, 5);
            CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 0);
            for (int k = 0; k < 200; k++) { /* random payloads of every length up to 200 */
                uint8_t r[200];
                for (int i = 0; i < k; i++)
                    r[i] = (uint8_t)((seed = seed * 6364136223846793005ull + 1442695040888963407ull) >> 56);
                CHECK_EQ(fh_mold_feed_apply(&f, r, (size_t)k, 1, 0), 0);
            }
            n = dgram(buf, "STRAYSESS3", 7, FH_MOLD_HEARTBEAT); /* a third session, on the other line */
            CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 1, 0), 0);
        }
    }
    CHECK(books_equal());
    CHECK(!memcmp(f.session, SESSION, 10));
    CHECK_EQ(C(FH_M_session_changes), 0);
    CHECK(C(FH_M_bogus_session) >= 2);
    CHECK_EQ(C(FH_M_bogus_session) + C(FH_M_malformed) + C(FH_M_suspect) + C(FH_M_duplicates) > 0, 1);
    CHECK_EQ(f.next_seq, 101);
    CHECK_EQ(f.state, FH_FEED_LIVE);
    CHECK_EQ(status(1), FH_BOOK_LIVE);
}

/* A stray as the very first datagram is taken, provisionally; the real session, on both lines, replaces it,
 * and since the stray's messages reached the books every book is stale. A first session that a second line
 * confirms stays, and strays after it change nothing. */
static void test_stray_first(void)
{
    fh_mold_cfg_t c = cfg_server();
    fresh(&c, 0);
    size_t n = dgram(buf, OTHER, 1, 10);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 10);
    CHECK_EQ(f.provisional, 1);
    CHECK_EQ(send_(0, 1, 10, 0), 0); /* the real one: a candidate */
    CHECK_EQ(C(FH_M_bogus_session), 1);
    CHECK_EQ(send_(1, 1, 10, 0), 10); /* on the second line: believed, the stray's session replaced */
    CHECK_EQ(C(FH_M_session_changes), 1);
    CHECK(!memcmp(f.session, SESSION, 10));
    CHECK_EQ(status(1), FH_BOOK_STALE);
    CHECK_EQ(f.state, FH_FEED_STALE);

    fresh(&c, 20);
    send_(0, 1, 10, 0);
    send_(1, 1, 10, 0); /* the B copy: the first session confirmed */
    CHECK_EQ(f.provisional, 0);
    n = dgram(buf, OTHER, 11, 10);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 0);
    send_(0, 11, 10, 0);
    CHECK(books_equal());
    CHECK_EQ(status(1), FH_BOOK_LIVE);
    CHECK_EQ(C(FH_M_session_changes), 0);
}

/* On one line alone a new session is believed after `confirm` datagrams, or at once after an end of
 * session; the datagrams it took to believe it are a gap from 1, filled by retransmission. */
static void test_session_confirm(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.confirm = 4;
    fresh(&c, 0);
    send_(0, 1, 10, 0);
    for (uint64_t s = 1; s <= 31; s += 10) {
        size_t n = dgram(buf, OTHER, s, 10);
        fh_mold_feed_apply(&f, buf, n, 0, 0);
    }
    CHECK_EQ(C(FH_M_bogus_session), 3);
    CHECK_EQ(C(FH_M_session_changes), 1);
    CHECK(!memcmp(f.session, OTHER, 10));
    CHECK_EQ(f.next_seq, 1); /* 1..30 were ignored before it was believed: a gap from 1 */
    CHECK_EQ(C(FH_M_joined_at), 31);
    fh_mold_request_t rq[8];
    CHECK_EQ(fh_mold_feed_poll(&f, 3000, rq, 8), 1);
    CHECK_EQ(rq[0].seq, 1);
    CHECK_EQ(rq[0].count, 30);
    CHECK(!memcmp(rq[0].session, OTHER, 10));

    fresh(&c, 0);
    send_(0, 1, 10, 0);
    send_(0, 11, FH_MOLD_END_OF_SESSION, 0);
    CHECK_EQ(f.state, FH_FEED_ENDED);
    size_t n = dgram(buf, OTHER, 1, 10);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 10); /* after the end of session: believed at once */
    CHECK_EQ(C(FH_M_bogus_session), 0);
    CHECK_EQ(C(FH_M_session_changes), 1);
    CHECK_EQ(f.state, FH_FEED_LIVE);
}

/* A datagram or heartbeat 10^12 (or 10^8) ahead: suspect, ignored, nothing held, and quickly; the feed goes
 * on live. The same jump on both lines is believed: a real (huge) loss, the books stale. */
static void test_far_jumps(void)
{
    fh_mold_cfg_t c = cfg_server();
    fresh(&c, 100);
    fh_mold_request_t rq[8];
    for (uint64_t s = 1; s <= 100; s += 10) {
        send_(0, s, 10, 0);
        if (s == 41) {
            CHECK_EQ(send_far(1, 1000000000000ull, 10, 0), 0);
            CHECK_EQ(send_far(1, 1000000000000ull, FH_MOLD_HEARTBEAT, 0), 0);
            CHECK_EQ(send_far(0, 100000000ull, 10, 0), 0);
            CHECK_EQ(send_far(0, 100000000ull, FH_MOLD_HEARTBEAT, 0), 0);
            CHECK_EQ(fh_mold_feed_poll(&f, 10000000, rq, 8), 0);
        }
    }
    CHECK(books_equal());
    CHECK_EQ(C(FH_M_suspect), 4);
    CHECK_EQ(C(FH_M_gaps), 0);
    CHECK_EQ(f.held_now, 0);
    CHECK_EQ(f.state, FH_FEED_LIVE);
    CHECK_EQ(status(2), FH_BOOK_LIVE);
    /* confirmed by the second line: taken, beyond the buffer, the books stale */
    CHECK_EQ(send_far(1, 5000000000ull, 10, 0), 0);
    CHECK_EQ(C(FH_M_suspect), 5);
    send_far(0, 5000000000ull, 10, 0);
    CHECK_EQ(f.next_seq, 5000000010ull);
    CHECK_EQ(C(FH_M_lost), 5000000000ull - 101);
    CHECK_EQ(C(FH_M_unrecoverable), 1);
    CHECK_EQ(status(1), FH_BOOK_STALE);
    CHECK(C(FH_M_gaps) >= C(FH_M_unrecoverable));
}

/* Joining late: the first datagram of the session at 101 opens a gap from 1, asked for in chunks (and
 * filled); without a server it is given up: stale, "joined late at 101; 1..100 missing"; beyond
 * recover_max it is not asked for. */
static void test_late_join(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.request_max = 40;
    fresh(&c, 200);
    fh_mold_request_t rq[8];
    for (uint64_t s = 101; s <= 200; s += 10)
        send_(0, s, 10, 0);
    CHECK_EQ(C(FH_M_joined_at), 101);
    CHECK_EQ(f.next_seq, 1);
    CHECK_EQ(f.held_now, 100);
    CHECK_EQ(C(FH_M_gaps), 1);
    CHECK_EQ(C(FH_M_gap_messages), 100);
    CHECK_EQ(f.state, FH_FEED_RECOVERING);
    CHECK_EQ(fh_mold_feed_poll(&f, 3000, rq, 8), 3);
    CHECK_EQ(rq[0].seq, 1);
    CHECK_EQ(rq[0].count, 40);
    CHECK_EQ(rq[2].seq, 81);
    CHECK_EQ(rq[2].count, 20);
    for (uint64_t s = 1; s <= 100; s += 20)
        send_(2, s, 20, 4000);
    CHECK(books_equal());
    CHECK_EQ(f.state, FH_FEED_LIVE);
    CHECK_EQ(C(FH_M_applied), 200);
    CHECK_EQ(C(FH_M_join_lost), 0);

    c.can_request = false;
    fresh(&c, 0);
    for (uint64_t s = 101; s <= 200; s++)
        fh_engine_apply(ref, msg[s], mlen[s]);
    for (uint64_t s = 101; s <= 200; s += 10)
        send_(0, s, 10, 0);
    CHECK_EQ(fh_mold_feed_poll(&f, 3000, rq, 8), 0);
    CHECK(books_equal());
    CHECK_EQ(C(FH_M_joined_at), 101);
    CHECK_EQ(C(FH_M_join_lost), 100);
    CHECK_EQ(C(FH_M_lost), 100);
    CHECK_EQ(C(FH_M_applied), 100);
    CHECK_EQ(f.state, FH_FEED_STALE);
    CHECK_EQ(status(2), FH_BOOK_STALE);

    c = cfg_server();
    c.recover_max = 50;
    fresh(&c, 0);
    for (uint64_t s = 101; s <= 200; s += 10)
        send_(0, s, 10, 0);
    CHECK_EQ(fh_mold_feed_poll(&f, 3000, rq, 8), 0); /* 100 missing > 50: not asked for */
    CHECK_EQ(C(FH_M_requests), 0);
    CHECK_EQ(C(FH_M_join_lost), 100);
    CHECK_EQ(f.state, FH_FEED_STALE);

    /* A late join named by a heartbeat */
    c = cfg_server();
    fresh(&c, 0);
    CHECK_EQ(send_(0, 51, FH_MOLD_HEARTBEAT, 0), 0);
    CHECK_EQ(C(FH_M_joined_at), 51);
    CHECK_EQ(f.state, FH_FEED_RECOVERING);
}

/* Framing: a copy whose block lengths are corrupted (A only) is refused whole and B's copy wins; truncated
 * datagrams, counts that overrun the blocks, bytes after the last block, a heartbeat with a body. */
static void test_misframed(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.msg_len = fh_itch_len;
    fresh(&c, 100);
    for (uint64_t s = 1; s <= 100; s += 10) {
        size_t n = dgram(buf, SESSION, s, 10);
        uint8_t bad[2048];
        /* the first block one byte longer, the second one shorter: the datagram still adds up, the messages
         * do not (only the type lengths tell) */
        size_t l0 = mlen[s], l1 = mlen[s + 1], k = 20;
        memcpy(bad, buf, 20);
        fh_put_be16(bad + k, (uint16_t)(l0 + 1));
        memcpy(bad + k + 2, msg[s], l0);
        bad[k + 2 + l0] = 0;
        k += 3 + l0;
        fh_put_be16(bad + k, (uint16_t)(l1 - 1));
        memcpy(bad + k + 2, msg[s + 1], l1 - 1);
        k += 1 + l1;
        memcpy(bad + k, buf + k, n - k);
        CHECK_EQ(fh_mold_feed_apply(&f, bad, n, 0, 0), 0);
        bad[20] = 0xFF; /* a length past the end */
        CHECK_EQ(fh_mold_feed_apply(&f, bad, n, 0, 0), 0);
        CHECK_EQ(fh_mold_feed_apply(&f, buf, n - 1, 0, 0), 0);  /* truncated */
        buf[n] = 0;
        CHECK_EQ(fh_mold_feed_apply(&f, buf, n + 1, 0, 0), 0);  /* a byte after the last block */
        fh_put_be16(buf + 18, 11);
        CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 0);      /* a count that overruns */
        fh_put_be16(buf + 18, 10);
        CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 1, 0), 10);     /* B's good copy */
    }
    size_t n = dgram(buf, SESSION, 101, FH_MOLD_HEARTBEAT);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n + 5, 0, 0), 0);
    CHECK(books_equal());
    CHECK_EQ(C(FH_M_malformed), 51);
    CHECK_EQ(C(FH_M_applied), 100);
    CHECK_EQ(C(FH_M_heartbeats), 0);
    CHECK_EQ(f.line[1].won, 100);
    CHECK_EQ(f.line[0].won, 0);
    CHECK_EQ(f.state, FH_FEED_LIVE);
}

/* The fast path with the engine checking the framing (fh/consumer.h's `framing`, fh_engine_apply_datagram, or the
 * staged consumer's walk): an in-order datagram is handed over unchecked, and a misframed one is refused by the
 * engine's walk before any of its messages is applied (or staged), counted malformed as the full path counts it; the
 * fast path stays open. Each burst is ended at once: buf is written again by the next datagram. */
static void test_engine_frames(bool st)
{
    fh_mold_cfg_t c = cfg_server();
    c.msg_len = fh_itch_len;
    staged = st;
    fresh(&c, 40);
    CHECK(f.consumer_frames);
    CHECK_EQ(send_(0, 1, 10, 0), 10);
    fh_engine_batch_end(e);
    CHECK_EQ(send_(1, 1, 10, 0), 0); /* the session seen on two lines: believed, the fast path opens */
    CHECK(f.fast);
    uint64_t cnt[FH_C_COUNT];
    fh_engine_counters(e, cnt);
    const uint64_t before = cnt[FH_C_messages];
    size_t n = dgram(buf, SESSION, 11, 10);
    buf[n] = 0;
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n + 1, 0, 0), 0); /* a byte after the last block */
    fh_put_be16(buf + 18, 9);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 0); /* a block more than the count */
    fh_put_be16(buf + 18, 11);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 0); /* a count that overruns */
    buf[n] = 0, buf[n + 1] = 0;
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n + 2, 0, 0), 0); /* the eleventh block empty */
    size_t n200 = dgram(buf, SESSION, 11, 200);
    fh_put_be16(buf + 18, 1);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n200, 0, 0), 0); /* a count of 1 on 200 blocks: the walk stops at the count */
    CHECK_EQ(dgram(buf, SESSION, 11, 10), n);
    fh_put_be16(buf + 18, 10);
    uint8_t t = buf[22];
    buf[22] = t == 'D' ? 'A' : 'D'; /* the first block's length no longer its type's */
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 0);
    buf[22] = t;
    fh_engine_counters(e, cnt);
    CHECK_EQ(cnt[FH_C_messages], before); /* nothing of them applied */
    CHECK_EQ(C(FH_M_malformed), 6);
    CHECK(f.fast);
    CHECK_EQ(fh_mold_feed_apply(&f, buf, n, 0, 0), 10);
    fh_engine_batch_end(e);
    for (uint64_t s = 21; s <= 40; s += 10) {
        CHECK_EQ(send_(0, s, 10, 0), 10);
        fh_engine_batch_end(e);
    }
    CHECK(books_equal());
    CHECK_EQ(C(FH_M_applied), 40);
    CHECK_EQ(f.line[0].won, 40);
    CHECK_EQ(f.line[0].messages, 40);
    staged = false;
}

/* The staged consumer (the data plane's) over the whole stream in order, in datagrams of 1 to 150 messages and one
 * of 1,100 (more than the engine stages: applied alone), a misframed copy before some (refused whole, nothing
 * staged), the bursts ended only now and then: the run is applied behind the walk across datagrams and moved to the
 * start of its buffer when full. Every datagram's bytes live until the end. The books and every counter must be
 * those of the stream applied message by message. */
static void test_staged_long_run(void)
{
    static uint8_t all[1 << 19];
    uint8_t bad[65536];
    fh_mold_cfg_t c = cfg_server();
    c.msg_len = fh_itch_len;
    staged = true;
    fresh(&c, NMSG);
    uint64_t seq = 1, now = 0, r = 12345;
    size_t off = 0;
    int misframed = 0, ended = 0, big = 0;
    while (seq <= NMSG) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t x = (uint32_t)(r >> 33);
        uint64_t count = !big && seq >= 2000 ? 1100 : 1 + x % 150;
        if (count > NMSG + 1 - seq)
            count = NMSG + 1 - seq;
        size_t n = dgram(all + off, SESSION, seq, (uint16_t)count);
        if (seq > 1 && x % 13 == 0) { /* a copy with its count one more: misframed */
            memcpy(bad, all + off, n);
            fh_put_be16(bad + 18, (uint16_t)(count + 1));
            CHECK_EQ(fh_mold_feed_apply(&f, bad, n, 1, ++now), 0);
            misframed++;
        }
        CHECK_EQ(fh_mold_feed_apply(&f, all + off, n, 0, ++now), (int)count);
        if (seq == 1) /* its copy on B: the session believed, the fast path (apply_datagram) open */
            CHECK_EQ(fh_mold_feed_apply(&f, all + off, n, 1, ++now), 0);
        big += count > 1024;
        off += n;
        seq += count;
        if (x % 61 == 0)
            fh_engine_batch_end(e), ended++;
    }
    CHECK(off <= sizeof all && f.fast);
    fh_engine_batch_end(e);
    CHECK(books_equal());
    uint64_t got[FH_C_COUNT], want[FH_C_COUNT];
    fh_engine_counters(e, got);
    fh_engine_counters(ref, want);
    CHECK(!memcmp(got, want, sizeof got));
    CHECK_EQ(got[FH_C_messages], NMSG);
    CHECK_EQ(C(FH_M_applied), NMSG);
    CHECK_EQ(C(FH_M_malformed), (uint64_t)misframed);
    CHECK(misframed > 0 && ended > 0 && big == 1);
    staged = false;
}

/* Holes: a message inside a hole splits it; every hole ends filled or given up (unrecoverable <= gaps). */
static void test_gap_counting(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.can_request = false;
    fresh(&c, 0);
    fh_mold_request_t rq[8];
    send_(0, 1, 10, 0);
    send_(0, 31, 10, 0);  /* hole 11..30 */
    CHECK_EQ(C(FH_M_gaps), 1);
    send_(1, 20, 1, 0);   /* splits it: 11..19 and 21..30 */
    CHECK_EQ(C(FH_M_gaps), 2);
    send_(1, 30, 1, 0);   /* shrinks 21..30 from the right: no new hole */
    CHECK_EQ(C(FH_M_gaps), 2);
    send_(0, 51, 10, 0);  /* 41..50 */
    CHECK_EQ(C(FH_M_gaps), 3);
    fh_mold_feed_poll(&f, 5000, rq, 8);
    CHECK_EQ(C(FH_M_unrecoverable), 3);
    CHECK_EQ(C(FH_M_lost), 9 + 9 + 10);
    CHECK_EQ(C(FH_M_applied), 60 - 28);
    CHECK_EQ(C(FH_M_gap_messages), C(FH_M_lost) + C(FH_M_recovered_lines));
}

/* Property: random interleavings of real and corrupt datagrams on two lines (drops, reorderings, strays of
 * other sessions, far jumps, truncations, misframed blocks, random bytes), then every gap given up: the books
 * equal the reference's for the messages applied when nothing was lost, and every book is stale otherwise;
 * the counters add up. */
static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

static void corrupt(uint8_t *p, size_t *n)
{
    switch (rnd(7)) {
    case 0: /* random bytes */
        *n = rnd(120);
        for (size_t i = 0; i < *n; i++)
            p[i] = (uint8_t)rnd(256);
        break;
    case 1: /* another session, well framed */
        memcpy(p, "STRAY", 5);
        for (int i = 5; i < 10; i++)
            p[i] = (uint8_t)('0' + rnd(10));
        break;
    case 2: /* far ahead */
        fh_put_be64(p + 10, fh_be64(p + 10) + 1000000000ull + rnd(1000000000));
        break;
    case 3: /* a heartbeat from the future */
        fh_put_be64(p + 10, fh_be64(p + 10) + 1000000000ull + rnd(1000000000));
        fh_put_be16(p + 18, 0);
        *n = 20;
        break;
    case 4: /* truncated */
        *n -= 1 + rnd(10);
        break;
    case 5: /* a count that overruns */
        fh_put_be16(p + 18, (uint16_t)(fh_be16(p + 18) + 1 + rnd(3)));
        break;
    default: /* a block length off by one, the datagram still adding up */
        fh_put_be16(p + 20, (uint16_t)(fh_be16(p + 20) - 1));
        break;
    }
}

/* Random interleavings of two lines' datagrams (lost, corrupted, reordered, strays) against the reference. With
 * staged_mode, through the staged consumer (fh_engine_consumer_staged), as the data plane: each queue of datagrams a
 * burst, ended by fh_engine_batch_end (and at random points within it), the datagrams' bytes kept until then; the
 * outcome must be the same (main compares the rounds with messages lost and begun by a stray, returned as
 * stale_rounds * 100 + strays_first). */
static int test_random_property(bool staged_mode)
{
    static uint8_t d[64][1024];
    uint64_t burst_rng = 1;
    staged = staged_mode;
    int strays_first = 0, stale_rounds = 0;
    for (int round = 0; round < 60; round++) {
        rng_state = 0x9e3779b97f4a7c15ull * (uint64_t)(round + 1);
        int failed_before = test_failures;
        fh_mold_cfg_t c = cfg_server();
        c.can_request = false;
        c.msg_len = fh_itch_len;
        fresh(&c, 0);
        uint8_t have[NMSG + 1];
        memset(have, 0, sizeof have);
        uint64_t now = 0;
        size_t q = 0, qlen[64];
        int qline[64];
        for (uint64_t s = 1; s <= 2000; s += 10) {
            for (int line = 0; line < 2; line++) {
                uint32_t r = rnd(100);
                if (r < 4)
                    continue; /* lost on this line */
                size_t n = dgram(d[q], SESSION, s, 10);
                if (r < 9)
                    corrupt(d[q], &n);
                else
                    for (uint64_t k = s; k < s + 10; k++)
                        have[k] = 1;
                qlen[q] = n, qline[q] = line, q++;
            }
            if (rnd(100) < 3) { /* a stray of its own */
                size_t n = dgram(d[q], SESSION, s, 10);
                corrupt(d[q], &n);
                qlen[q] = n, qline[q] = (int)rnd(2), q++;
            }
            if (q >= 48 || s + 10 > 2000) { /* flush with local reorderings */
                for (size_t i = 0; i + 1 < q; i++)
                    if (rnd(100) < 5) {
                        uint8_t t[1024];
                        size_t tl = qlen[i];
                        int tline = qline[i];
                        memcpy(t, d[i], 1024), memcpy(d[i], d[i + 1], 1024), memcpy(d[i + 1], t, 1024);
                        qlen[i] = qlen[i + 1], qline[i] = qline[i + 1], qlen[i + 1] = tl, qline[i + 1] = tline;
                    }
                for (size_t i = 0; i < q; i++) {
                    fh_mold_feed_apply(&f, d[i], qlen[i], qline[i], ++now);
                    burst_rng = burst_rng * 6364136223846793005ull + 1442695040888963407ull;
                    if (staged && (burst_rng >> 33) % 10 == 0)
                        fh_engine_batch_end(e); /* a burst that ends here (its own generator: the scenario is the
                                                 * same in both modes) */
                }
                if (staged)
                    fh_engine_batch_end(e); /* the burst's end: its datagrams' bytes are reused below */
                q = 0;
            }
        }
        fh_mold_request_t rq[8];
        fh_mold_feed_poll(&f, now + 100000, rq, 8); /* every gap given up */
        uint64_t missing = 0, last = 0;
        for (uint64_t s = 1; s <= 2000; s++)
            if (have[s])
                fh_engine_apply(ref, msg[s], mlen[s]), last = s;
            else
                missing++;
        /* the messages after the last delivered one, lost on both lines: no later datagram tells of them, so they
         * are no gap (not lost, the books not stale); the feed waits for them at next_seq */
        uint64_t tail = 2000 - last;
        CHECK(f.next_seq == last + 1 || C(FH_M_session_changes));
        missing -= tail;
        CHECK(!f.gap_open && f.held_now == 0);
        CHECK(!memcmp(f.session, SESSION, 10));
        CHECK_EQ(C(FH_M_gap_messages), C(FH_M_lost) + C(FH_M_recovered_lines) + C(FH_M_recovered_retrans));
        CHECK(C(FH_M_unrecoverable) <= C(FH_M_gaps) + C(FH_M_session_changes));
        if (C(FH_M_session_changes)) { /* a stray came first and was replaced: every book stale */
            CHECK_EQ(C(FH_M_session_changes), 1);
            for (uint16_t loc = 1; loc <= 3; loc++)
                CHECK_EQ(status(loc), FH_BOOK_STALE);
            strays_first++;
            continue;
        }
        CHECK_EQ(C(FH_M_lost), missing);
        CHECK_EQ(C(FH_M_applied), 2000 - missing - tail);
        CHECK(C(FH_M_unrecoverable) <= C(FH_M_gaps));
        CHECK(books_equal());
        stale_rounds += missing != 0;
        for (uint16_t loc = 1; loc <= 3; loc++)
            CHECK_EQ(status(loc), missing ? FH_BOOK_STALE : FH_BOOK_LIVE);
        if (test_failures != failed_before)
            fprintf(stderr, "  (random round %d: %llu messages missing; session %.10s, suspect %llu, bogus %llu)\n",
                    round, (unsigned long long)missing, f.session, (unsigned long long)C(FH_M_suspect),
                    (unsigned long long)C(FH_M_bogus_session));
    }
    printf("test_mold: random interleavings%s: 60 rounds, %d with messages lost on both lines (stale), %d begun by a "
           "stray (stale)\n", staged ? ", staged consumer" : "", stale_rounds, strays_first);
    staged = false;
    CHECK(stale_rounds > 0 && stale_rounds < 60); /* both outcomes were exercised */
    return stale_rounds * 100 + strays_first;
}

/* Line states from the time since each line's last datagram. */
static void test_line_states(void)
{
    fh_mold_cfg_t c = cfg_server(); /* stale after 3,000 ms, down after 10,000 (1,000 ticks per ms) */
    fresh(&c, 0);
    fh_mold_request_t rq[8];
    send_(0, 1, 10, 1000);
    fh_mold_feed_poll(&f, 2000, rq, 8);
    CHECK_EQ(f.line[0].state, FH_LINE_LIVE);
    CHECK_EQ(f.line[1].state, FH_LINE_DOWN); /* never heard */
    fh_mold_feed_poll(&f, 1000 + 3000000, rq, 8);
    CHECK_EQ(f.line[0].state, FH_LINE_STALE);
    fh_mold_feed_poll(&f, 1000 + 10000000, rq, 8);
    CHECK_EQ(f.line[0].state, FH_LINE_DOWN);
    send_(0, 11, FH_MOLD_HEARTBEAT, 1000 + 10000001);
    fh_mold_feed_poll(&f, 1000 + 10000002, rq, 8);
    CHECK_EQ(f.line[0].state, FH_LINE_LIVE);
}

/* Policy snapshot: an unrecoverable gap asks the source; what comes meanwhile is held; the snapshot as of
 * sequence 60 rebuilds the books and the held messages after it follow. */
static int snap_asked;
static uint64_t snap_after;
static int snap_request(void *ctx, const char session[10], uint64_t after)
{
    (void)ctx;
    (void)session;
    snap_asked++;
    snap_after = after;
    return 0;
}

static const fh_snapshot_source_t snap_source = { snap_request, NULL };

/* Policy snapshot, no retransmission: messages 1..100 on line A but the datagram of 41..50; polled past the
 * gap's timeout, the feed has asked the source once for a snapshot after 40 and holds what came after. */
static void snapshot_gap(void)
{
    fh_mold_cfg_t c = cfg_server();
    c.can_request = false;
    c.policy = FH_MOLD_SNAPSHOT;
    fresh(&c, 100);
    fh_mold_feed_set_snapshot_source(&f, &snap_source);
    snap_asked = 0;
    fh_mold_request_t rq[8];
    for (uint64_t s = 1; s <= 100; s += 10)
        if (s != 41)
            send_(0, s, 10, 0);
    fh_mold_feed_poll(&f, 3000, rq, 8);
    CHECK_EQ(snap_asked, 1);
    CHECK_EQ(snap_after, 40);
    CHECK_EQ(f.next_seq, 41); /* waiting for the snapshot, not skipping */
}

static void test_snapshot(void)
{
    snapshot_gap();
    CHECK_EQ(status(1), FH_BOOK_STALE);
    /* The snapshot: the reference's state at 60, as the messages that build it (here: the stream 1..60). */
    fh_mold_snapshot_begin(&f);
    for (uint64_t s = 1; s <= 60; s++)
        fh_mold_snapshot_apply(&f, msg[s], mlen[s]);
    fh_mold_snapshot_end(&f, 60);
    CHECK(books_equal());
    CHECK_EQ(f.next_seq, 101);
    CHECK_EQ(status(1), FH_BOOK_LIVE);
    CHECK_EQ(status(3), FH_BOOK_LIVE);
    CHECK_EQ(f.state, FH_FEED_LIVE);
    CHECK_EQ(C(FH_M_snapshots), 1);
    CHECK_EQ(C(FH_M_lost), 0);
}

/* The source cannot deliver (fh_mold_snapshot_failed): the gap is given up as under resume (lost, the books
 * stale) and the held messages after it applied; the feed goes on. */
static void test_snapshot_failed(void)
{
    snapshot_gap();
    CHECK_EQ(C(FH_M_applied), 40);
    fh_mold_snapshot_failed(&f);
    CHECK_EQ(f.next_seq, 101);
    CHECK_EQ(C(FH_M_lost), 10);
    CHECK_EQ(C(FH_M_unrecoverable), 1);
    CHECK_EQ(C(FH_M_applied), 90);
    CHECK_EQ(C(FH_M_snapshots), 0);
    CHECK_EQ(status(1), FH_BOOK_STALE);
    CHECK(!fh_mold_feed_busy(&f));
    fh_mold_snapshot_failed(&f); /* nothing pending: nothing happens */
    CHECK_EQ(C(FH_M_lost), 10);
    fh_mold_request_t rq[8];
    fh_mold_feed_poll(&f, 6000, rq, 8);
    CHECK_EQ(snap_asked, 1); /* not asked again for the same gap */
}

static void test_bad_cfg(void)
{
    fh_mold_feed_free(&f);
    fh_mold_cfg_t c = cfg_server();
    c.hold = 1000;
    CHECK(fh_mold_feed_init(&f, &c) < 0);
    c = cfg_server();
    c.request_max = 70000;
    CHECK(fh_mold_feed_init(&f, &c) < 0);
    c = cfg_server();
    c.hold = 0;
    CHECK(fh_mold_feed_init(&f, &c) < 0);
    c = cfg_server();
    c.max_outstanding = 99;
    CHECK(fh_mold_feed_init(&f, &c) < 0);
    memset(&f, 0, sizeof f);
}

/* A consumer that records what it is given (fh/consumer.h): the unsequenced path needs no engine. */
typedef struct rec {
    int calls;
    char session[10];
    uint64_t seq[8];
    size_t len[8];
    const uint8_t *msg[8];
} rec_t;

static void rec_apply(void *ctx, const char *session, uint64_t seq, const uint8_t *m, size_t len)
{
    rec_t *r = ctx;
    memcpy(r->session, session, 10);
    if (r->calls < 8) {
        r->seq[r->calls] = seq;
        r->len[r->calls] = len;
        r->msg[r->calls] = m;
    }
    r->calls++;
}

/* fh_mold_apply_unsequenced: every block to apply, in order, with the datagram's session and sequence 0;
 * heartbeats and ends of session deliver nothing; a short header or a block that does not fit is counted
 * once, after the blocks before it were delivered. */
static void test_unsequenced(void)
{
    rec_t r;
    memset(&r, 0, sizeof r);
    fh_feed_consumer_t c = { .ctx = &r, .apply = rec_apply };
    uint8_t d[256];
    memcpy(d, OTHER, 10);
    fh_put_be64(d + 10, 77);
    fh_put_be16(d + 18, 3);
    size_t p = 20;
    for (int s = 1; s <= 3; s++) {
        fh_put_be16(d + p, (uint16_t)mlen[s]);
        memcpy(d + p + 2, msg[s], mlen[s]);
        p += 2 + mlen[s];
    }
    uint64_t bad = 0;
    CHECK_EQ(fh_mold_apply_unsequenced(d, p, &c, &bad), 3);
    CHECK(r.calls == 3 && bad == 0 && !memcmp(r.session, OTHER, 10));
    for (int i = 0; i < 3; i++)
        CHECK(r.seq[i] == 0 && r.len[i] == mlen[i + 1] && !memcmp(r.msg[i], msg[i + 1], mlen[i + 1]));
    fh_put_be16(d + 18, FH_MOLD_HEARTBEAT);
    CHECK_EQ(fh_mold_apply_unsequenced(d, p, &c, &bad), 0);
    fh_put_be16(d + 18, FH_MOLD_END_OF_SESSION);
    CHECK_EQ(fh_mold_apply_unsequenced(d, 20, &c, &bad), 0xFFFF);
    CHECK(r.calls == 3 && bad == 0);
    fh_put_be16(d + 18, 3);
    CHECK(fh_mold_apply_unsequenced(d, p - 1, &c, &bad) == -1); /* the third block cut by a byte */
    CHECK(r.calls == 5 && bad == 1);
    CHECK(fh_mold_apply_unsequenced(d, 19, &c, &bad) == -1);
    CHECK(fh_mold_apply_unsequenced(d, 19, &c, NULL) == -1);
    CHECK(r.calls == 5 && bad == 2);
}

int main(void)
{
    build_stream();
    test_unsequenced();
    test_in_order_and_duplicates();
    test_gap_filled_by_other_line();
    test_gap_filled_by_retransmission();
    test_retries_exhausted();
    test_no_server();
    test_hold_full();
    test_heartbeats();
    test_session_change();
    test_stray_datagrams();
    test_session_confirm();
    test_stray_first();
    test_far_jumps();
    test_late_join();
    test_misframed();
    test_engine_frames(false);
    test_engine_frames(true);
    test_gap_counting();
    int direct = test_random_property(false), staged_run = test_random_property(true);
    CHECK_EQ(direct, staged_run); /* the same scenarios, the same outcome */
    test_staged_long_run();
    test_line_states();
    test_snapshot();
    test_resume_caught_up();
    test_snapshot_failed();
    test_bad_cfg();
    fh_mold_feed_free(&f);
    fh_engine_destroy(e);
    fh_engine_destroy(ref);
    if (test_failures) {
        fprintf(stderr, "test_mold: %d failure(s)\n", test_failures);
        return 1;
    }
    printf("test_mold: ok\n");
    return 0;
}
