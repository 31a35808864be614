/* Unit tests of the book engine: every message type's effect and every anomaly counter
 * (docs/book-semantics.md). Exit 0 on success, 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fh/book.h"
#include "fh/itch.h"
#include "fh/mold.h"
#include "fh/seg.h"
#include "msg.h"

static fh_engine_t *e;
static uint8_t b[64];
/* One MoldUDP64 datagram, unsequenced, into the engine: the MoldUDP64 layer delivers to the engine's consumer
 * and counts a malformed datagram in the engine's mold_malformed. */
static int apply_mold(fh_engine_t *eng, const uint8_t *d, size_t len)
{
    fh_feed_consumer_t books;
    fh_engine_consumer(eng, &books);
    fh_engine_batch_begin(eng, 0);
    int r = fh_mold_apply_unsequenced(d, len, &books, fh_engine_counter_slot(eng, FH_C_mold_malformed));
    fh_engine_batch_end(eng);
    return r;
}

static uint64_t ctr(fh_counter_t c)
{
    uint64_t all[FH_C_COUNT];
    fh_engine_counters(e, all);
    return all[c];
}
#define APPLY(builder) fh_engine_apply(e, b, builder)

/* Level k (best first) of side s of locate loc. */
static fh_level_t lvl(uint16_t loc, int s, uint32_t k)
{
    fh_level_t out[256] = { 0 };
    uint32_t n = fh_engine_levels(e, loc, s, out, 256);
    return k < n ? out[k] : (fh_level_t){ 0 };
}

static uint32_t nlevels(uint16_t loc, int s)
{
    fh_book_info_t bi;
    return fh_engine_book_info(e, loc, &bi) ? 0 : bi.levels[s];
}

static void fresh(uint32_t instruments, uint32_t orders, uint32_t levels)
{
    fh_engine_destroy(e);
    e = fh_engine_create(&(fh_engine_cfg_t){ instruments, orders, levels });
    if (!e) {
        fprintf(stderr, "engine: %s\n", fh_errmsg());
        exit(1);
    }
}

static void test_add_levels(void)
{
    fresh(16, 1000, 1024);
    APPLY(m_R(b, 1, "AAPL"));
    APPLY(m_A(b, 1, 1, 'B', 100, "AAPL", 1000000));
    APPLY(m_A(b, 1, 2, 'B', 200, "AAPL", 1000000));
    APPLY(m_A(b, 1, 3, 'B', 50, "AAPL", 1010000));
    APPLY(m_A(b, 1, 4, 'B', 70, "AAPL", 990000));
    APPLY(m_A(b, 1, 5, 'S', 10, "AAPL", 1020000));
    APPLY(m_F(b, 1, 6, 'S', 20, "AAPL", 1030000, "GSCO"));
    APPLY(m_A(b, 1, 7, 'S', 30, "AAPL", 1020000));
    CHECK_EQ(nlevels(1, FH_SIDE_BID), 3);
    CHECK_EQ(lvl(1, FH_SIDE_BID, 0).price, 1010000);
    CHECK_EQ(lvl(1, FH_SIDE_BID, 1).price, 1000000);
    CHECK_EQ(lvl(1, FH_SIDE_BID, 1).shares, 300);
    CHECK_EQ(lvl(1, FH_SIDE_BID, 1).orders, 2);
    CHECK_EQ(lvl(1, FH_SIDE_BID, 2).price, 990000);
    CHECK_EQ(nlevels(1, FH_SIDE_ASK), 2);
    CHECK_EQ(lvl(1, FH_SIDE_ASK, 0).price, 1020000);
    CHECK_EQ(lvl(1, FH_SIDE_ASK, 0).shares, 40);
    CHECK_EQ(lvl(1, FH_SIDE_ASK, 1).price, 1030000);
    CHECK_EQ(fh_engine_live_orders(e), 7);
    CHECK_EQ(ctr(FH_C_unknown_locate), 0);
    CHECK_EQ(fh_engine_type_counts(e)['A'], 6);
    CHECK_EQ(fh_engine_type_counts(e)['F'], 1);
    fh_book_info_t bi;
    CHECK(fh_engine_book_info(e, 1, &bi) == 0);
    CHECK(strcmp(bi.symbol, "AAPL") == 0);
    CHECK_EQ(bi.trading_state, 'T');
}

static void test_execute_cancel_delete(void)
{
    fresh(16, 1000, 1024);
    APPLY(m_R(b, 2, "MSFT"));
    APPLY(m_A(b, 2, 10, 'B', 100, "MSFT", 500));
    APPLY(m_A(b, 2, 11, 'B', 100, "MSFT", 500));
    APPLY(m_E(b, 2, 10, 40, 1)); /* partial */
    CHECK_EQ(lvl(2, FH_SIDE_BID, 0).shares, 160);
    CHECK_EQ(lvl(2, FH_SIDE_BID, 0).orders, 2);
    fh_book_info_t bi;
    fh_engine_book_info(e, 2, &bi);
    CHECK_EQ(bi.last_price, 500);
    CHECK_EQ(bi.last_shares, 40);
    APPLY(m_E(b, 2, 10, 60, 2)); /* full */
    CHECK_EQ(lvl(2, FH_SIDE_BID, 0).shares, 100);
    CHECK_EQ(lvl(2, FH_SIDE_BID, 0).orders, 1);
    APPLY(m_E(b, 2, 10, 1, 3)); /* gone */
    CHECK_EQ(ctr(FH_C_unknown_ref), 1);
    APPLY(m_C(b, 2, 11, 10, 4, 'N', 600)); /* non-printable: reduces, no last trade */
    fh_engine_book_info(e, 2, &bi);
    CHECK_EQ(bi.last_price, 500);
    CHECK_EQ(lvl(2, FH_SIDE_BID, 0).shares, 90);
    APPLY(m_C(b, 2, 11, 10, 5, 'Y', 610));
    fh_engine_book_info(e, 2, &bi);
    CHECK_EQ(bi.last_price, 610);
    CHECK_EQ(bi.last_shares, 10);
    APPLY(m_X(b, 2, 11, 30));
    CHECK_EQ(lvl(2, FH_SIDE_BID, 0).shares, 50);
    APPLY(m_X(b, 2, 11, 51)); /* overcancel removes */
    CHECK_EQ(ctr(FH_C_overcancel), 1);
    CHECK_EQ(nlevels(2, FH_SIDE_BID), 0);
    APPLY(m_A(b, 2, 12, 'S', 100, "MSFT", 700));
    APPLY(m_E(b, 2, 12, 101, 6)); /* overexecution removes */
    CHECK_EQ(ctr(FH_C_overexecution), 1);
    CHECK_EQ(nlevels(2, FH_SIDE_ASK), 0);
    APPLY(m_A(b, 2, 13, 'S', 100, "MSFT", 700));
    APPLY(m_D(b, 2, 13));
    CHECK_EQ(nlevels(2, FH_SIDE_ASK), 0);
    APPLY(m_D(b, 2, 13));
    CHECK_EQ(ctr(FH_C_unknown_ref), 2);
    APPLY(m_X(b, 2, 99, 1));
    APPLY(m_C(b, 2, 99, 1, 7, 'Y', 1));
    APPLY(m_U(b, 2, 99, 100, 1, 1));
    CHECK_EQ(ctr(FH_C_unknown_ref), 5);
    CHECK_EQ(fh_engine_live_orders(e), 0);
}

static void test_replace(void)
{
    fresh(16, 1000, 1024);
    APPLY(m_R(b, 3, "IBM"));
    APPLY(m_A(b, 3, 1, 'S', 100, "IBM", 1500));
    APPLY(m_A(b, 3, 2, 'S', 100, "IBM", 1500));
    APPLY(m_U(b, 3, 1, 3, 70, 1400)); /* new ref, price, shares; same side */
    CHECK_EQ(nlevels(3, FH_SIDE_ASK), 2);
    CHECK_EQ(lvl(3, FH_SIDE_ASK, 0).price, 1400);
    CHECK_EQ(lvl(3, FH_SIDE_ASK, 0).shares, 70);
    CHECK_EQ(lvl(3, FH_SIDE_ASK, 1).orders, 1);
    APPLY(m_D(b, 3, 1));
    CHECK_EQ(ctr(FH_C_unknown_ref), 1); /* the original is gone */
    APPLY(m_U(b, 3, 3, 2, 10, 1300));   /* new ref already live: original removed, new not added */
    CHECK_EQ(ctr(FH_C_duplicate_ref), 1);
    CHECK_EQ(nlevels(3, FH_SIDE_ASK), 1);
    CHECK_EQ(lvl(3, FH_SIDE_ASK, 0).price, 1500);
    APPLY(m_U(b, 3, 2, 4, 0, 1300)); /* zero shares: original removed */
    CHECK_EQ(ctr(FH_C_zero_shares), 1);
    CHECK_EQ(nlevels(3, FH_SIDE_ASK), 0);
    CHECK_EQ(fh_engine_live_orders(e), 0);
}

static void test_anomalies(void)
{
    fresh(2, 3, 1024);
    APPLY(m_A(b, 5, 1, 'B', 100, "ZZZ", 100)); /* no R: book created, counted */
    CHECK_EQ(ctr(FH_C_unknown_locate), 1);
    fh_book_info_t bi;
    CHECK(fh_engine_book_info(e, 5, &bi) == 0);
    CHECK(strcmp(bi.symbol, "ZZZ") == 0);
    APPLY(m_A(b, 5, 1, 'B', 100, "ZZZ", 100));
    CHECK_EQ(ctr(FH_C_duplicate_ref), 1);
    APPLY(m_A(b, 5, 2, 'Q', 100, "ZZZ", 100));
    CHECK_EQ(ctr(FH_C_bad_side), 1);
    APPLY(m_A(b, 5, 2, 'B', 0, "ZZZ", 100));
    CHECK_EQ(ctr(FH_C_zero_shares), 1);
    APPLY(m_R(b, 6, "YYY"));
    APPLY(m_R(b, 7, "XXX")); /* third instrument: capacity 2 */
    CHECK_EQ(ctr(FH_C_instrument_capacity), 1);
    APPLY(m_A(b, 8, 3, 'B', 1, "WWW", 1));
    CHECK_EQ(ctr(FH_C_instrument_capacity), 2);
    CHECK_EQ(ctr(FH_C_unknown_locate), 1); /* one cause per skipped message */
    APPLY(m_A(b, 6, 3, 'B', 1, "YYY", 1));
    APPLY(m_A(b, 6, 4, 'B', 1, "YYY", 2));
    APPLY(m_A(b, 6, 5, 'B', 1, "YYY", 3)); /* fourth live order: capacity 3 */
    CHECK_EQ(ctr(FH_C_order_capacity), 1);
    CHECK_EQ(fh_engine_live_orders(e), 3);
    APPLY(m_D(b, 5, 3)); /* order of locate 6 deleted through locate 5 */
    CHECK_EQ(ctr(FH_C_locate_mismatch), 1);
    CHECK_EQ(nlevels(6, FH_SIDE_BID), 1);
    /* framing anomalies */
    uint8_t junk[8] = { 'Z', 0, 1 };
    fh_engine_apply(e, junk, 8);
    CHECK_EQ(ctr(FH_C_unknown_type), 1);
    fh_engine_apply(e, b, 0);
    size_t n = m_D(b, 6, 4);
    fh_engine_apply(e, b, n - 1);
    CHECK_EQ(ctr(FH_C_short_message), 2);
    CHECK_EQ(nlevels(6, FH_SIDE_BID), 1); /* the short delete was not applied */
    b[n] = 0xAA;
    fh_engine_apply(e, b, n + 1);
    CHECK_EQ(ctr(FH_C_long_message), 1);
    CHECK_EQ(nlevels(6, FH_SIDE_BID), 0); /* the long one was */
    APPLY(m_H(b, 6, "YYY", 'H'));
    CHECK(fh_engine_book_info(e, 6, &bi) == 0);
    CHECK_EQ(bi.trading_state, 'H');
    APPLY(m_P(b, 6, "YYY", 300, 4242));
    fh_engine_book_info(e, 6, &bi);
    CHECK_EQ(bi.last_price, 4242);
    CHECK_EQ(bi.last_shares, 300);
    CHECK_EQ(ctr(FH_C_messages), 17);
}

static void test_level_capacity(void)
{
    fresh(4, 100000, 64);
    APPLY(m_R(b, 1, "A"));
    uint64_t placed = 0;
    for (uint32_t i = 0; i < 200; i++) {
        APPLY(m_A(b, 1, i + 1, 'B', 10, "A", 100 + i));
        placed = fh_engine_live_orders(e);
    }
    CHECK(ctr(FH_C_level_capacity) > 0);
    CHECK_EQ(placed + ctr(FH_C_level_capacity), 200);
    CHECK_EQ(nlevels(1, FH_SIDE_BID), placed);
}

/* A book the engine had no room for a message of (its level memory or order table full) lacks it: flagged
 * incomplete and stale, with one stale event while publishing; a recovery of the lines (set_all_status LIVE,
 * set_status LIVE) revives the other books but not it; clearing the books (a snapshot's rebuild) makes it whole.
 * Before, such a book went on being called live. */
static void test_capacity_marks_the_book_incomplete(void)
{
    fh_seg_t *seg = fh_seg_create(&(fh_seg_cfg_t){ NULL, "test", 64, 1 << 10, 10, -1, 64, 0 });
    CHECK(seg != NULL);
    fh_engine_destroy(e);
    e = fh_engine_create_on(&(fh_engine_cfg_t){ 4, 1000, 64 }, seg);
    CHECK(e != NULL);
    fh_engine_set_publish(e, true); /* (a private segment's engine publishes only when told) */
    APPLY(m_R(b, 1, "FULL"));
    APPLY(m_R(b, 2, "OK"));
    APPLY(m_A(b, 2, 5000, 'B', 10, "OK", 100));
    uint64_t h0 = __atomic_load_n(&seg->hdr->head, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < 200; i++) /* each far from the others: a level of the arena each (deep) */
        APPLY(m_A(b, 1, i + 1, 'B', 10, "FULL", 1000000 + i * 70001));
    uint64_t h1 = __atomic_load_n(&seg->hdr->head, __ATOMIC_ACQUIRE);
    CHECK(ctr(FH_C_level_capacity) > 0);
    fh_book_info_t bi;
    CHECK(fh_engine_book_info(e, 1, &bi) == 0 && bi.status == FH_BOOK_STALE);
    CHECK(fh_engine_book_info(e, 2, &bi) == 0 && bi.status == FH_BOOK_LIVE);
    CHECK(seg->books[1].flags & FH_BOOK_F_INCOMPLETE);
    int stale_events = 0;
    for (uint64_t h = h0 + 1; h <= h1; h++) {
        const fh_shm_event_t *ev = &seg->events[h & (seg->hdr->event_capacity - 1)];
        stale_events += ev->type == FH_EV_STALE;
        if (ev->type == FH_EV_STALE)
            CHECK(ev->locate == 1 && ev->status == FH_BOOK_STALE);
    }
    CHECK_EQ(stale_events, 1); /* once, however many adds it lost */
    CHECK_EQ(fh_engine_set_all_status(e, FH_BOOK_STALE), 1); /* a gap: book 2 too */
    CHECK_EQ(fh_engine_set_all_status(e, FH_BOOK_LIVE), 1);  /* recovered: book 2 only */
    CHECK(fh_engine_book_info(e, 1, &bi) == 0 && bi.status == FH_BOOK_STALE);
    CHECK(fh_engine_book_info(e, 2, &bi) == 0 && bi.status == FH_BOOK_LIVE);
    CHECK_EQ(fh_engine_set_status(e, 1, FH_BOOK_LIVE, NULL), 0);
    CHECK(fh_engine_book_info(e, 1, &bi) == 0 && bi.status == FH_BOOK_STALE);
    fh_engine_clear_books(e); /* a snapshot's rebuild: whole again */
    APPLY(m_R(b, 1, "FULL"));
    CHECK(fh_engine_book_info(e, 1, &bi) == 0 && bi.status == FH_BOOK_LIVE && !(seg->books[1].flags & FH_BOOK_F_INCOMPLETE));
    fh_engine_destroy(e);
    e = NULL;
    fh_seg_close(seg, 1);
    /* the order table full (private books): the book that lost the add is stale, the others not; a duplicate
     * reference (the feed's error, not a capacity) leaves it live */
    fresh(4, 3, 1024);
    APPLY(m_R(b, 1, "ORD"));
    APPLY(m_R(b, 2, "DUP"));
    APPLY(m_A(b, 2, 100, 'S', 10, "DUP", 500));
    APPLY(m_A(b, 2, 100, 'S', 10, "DUP", 500));
    CHECK_EQ(ctr(FH_C_duplicate_ref), 1);
    for (uint32_t i = 0; i < 4; i++)
        APPLY(m_A(b, 1, i + 1, 'B', 10, "ORD", 100 + i));
    CHECK_EQ(ctr(FH_C_order_capacity), 2);
    CHECK(fh_engine_book_info(e, 1, &bi) == 0 && bi.status == FH_BOOK_STALE);
    CHECK(fh_engine_book_info(e, 2, &bi) == 0 && bi.status == FH_BOOK_LIVE);
}

/* Orders that outlive 2^k later references (k: the order table's size): the newer order takes the home
 * slot and the older one moves to the spill table, where it stays findable; duplicates are caught in both
 * places; a reference too big for a home slot's tag lives in the spill table. 100 orders: 1024 slots. */
/* An add whose reference is too big for a home slot (a spill slot taken) on an instrument the full table cannot
 * create gives its spill slot back: the spill table still holds its whole half (512 of 1,024 slots). Before, each
 * such add kept its slot for good, and the table refused spills that many early. */
static void test_spill_slot_given_back_when_the_book_cannot_be_made(void)
{
    fresh(1, 1000, 1024); /* one instrument; 1,000 orders: 1,024 spill slots, half of them usable */
    APPLY(m_R(b, 1, "OLD"));
    const uint64_t huge = 1ull << 42;
    for (uint64_t r = 0; r < 10; r++) /* locate 2: no room for its book */
        APPLY(m_A(b, 2, huge + 10000 + r, 'B', 100, "NEW", 1000));
    CHECK_EQ(ctr(FH_C_instrument_capacity), 10);
    CHECK_EQ(fh_engine_live_orders(e), 0);
    for (uint64_t r = 0; r < 600; r++)
        APPLY(m_A(b, 1, huge + r, 'B', 1, "OLD", 1000 + (uint32_t)r));
    CHECK_EQ(fh_engine_live_orders(e), 512);
    CHECK_EQ(ctr(FH_C_order_capacity), 88);
}

static void test_spill(void)
{
    fresh(2, 100, 1024);
    APPLY(m_R(b, 1, "OLD"));
    /* 1,024 slots (k = 10): references 4 x 1,024 apart share a home slot (order_home: bits 0 .. 11 alike), and
     * so do 5 and 4 + 1,024 (bits 2 .. 9 alike, bits 10-11 xor bits 0-1 both 1); 5 and 5 + 1,024 do not */
    const uint64_t old = 5, newer = 5 + 4096, newest = 5 + 8192, huge = (1ull << 42) + 5;
    APPLY(m_A(b, 1, old, 'B', 100, "OLD", 1000));
    APPLY(m_A(b, 1, 5 + 1024, 'B', 1, "OLD", 1000)); /* another slot */
    CHECK_EQ(fh_engine_spilled(e), 0);
    APPLY(m_A(b, 1, 4 + 1024, 'B', 1, "OLD", 1000)); /* old's slot: old moves to the spill table */
    CHECK_EQ(fh_engine_spilled(e), 1);
    APPLY(m_D(b, 1, old)); /* found there, and gone */
    APPLY(m_D(b, 1, 5 + 1024));
    APPLY(m_D(b, 1, 4 + 1024));
    CHECK_EQ(fh_engine_spilled(e), 0);
    CHECK_EQ(ctr(FH_C_unknown_ref), 0);
    APPLY(m_A(b, 1, old, 'B', 100, "OLD", 1000));
    APPLY(m_A(b, 1, newer, 'B', 200, "OLD", 1000)); /* same slot: old moves to the spill table */
    CHECK_EQ(fh_engine_live_orders(e), 2);
    CHECK_EQ(fh_engine_spilled(e), 1);
    CHECK_EQ(lvl(1, FH_SIDE_BID, 0).orders, 2);
    APPLY(m_X(b, 1, old, 30)); /* found in the spill table */
    APPLY(m_X(b, 1, newer, 50)); /* found at home */
    CHECK_EQ(lvl(1, FH_SIDE_BID, 0).shares, 220);
    APPLY(m_A(b, 1, old, 'S', 1, "OLD", 2000)); /* live in the spill table */
    APPLY(m_A(b, 1, newer, 'S', 1, "OLD", 2000)); /* live at home */
    CHECK_EQ(ctr(FH_C_duplicate_ref), 2);
    APPLY(m_D(b, 1, newer)); /* home empty, old still spilled */
    APPLY(m_A(b, 1, old, 'S', 1, "OLD", 2000));
    CHECK_EQ(ctr(FH_C_duplicate_ref), 3);
    APPLY(m_A(b, 1, newest, 'B', 7, "OLD", 900)); /* takes the empty home slot */
    APPLY(m_A(b, 1, huge, 'S', 9, "OLD", 3000)); /* tag beyond 32 bits: spilled */
    APPLY(m_A(b, 1, huge, 'S', 9, "OLD", 3000));
    CHECK_EQ(ctr(FH_C_duplicate_ref), 4);
    CHECK_EQ(fh_engine_live_orders(e), 3);
    APPLY(m_D(b, 1, old));
    APPLY(m_D(b, 1, huge));
    APPLY(m_D(b, 1, old)); /* gone: the spill table is empty again */
    APPLY(m_D(b, 1, newer));
    CHECK_EQ(ctr(FH_C_unknown_ref), 2);
    CHECK_EQ(fh_engine_live_orders(e), 1);
    CHECK_EQ(nlevels(1, FH_SIDE_ASK), 0);
    CHECK_EQ(lvl(1, FH_SIDE_BID, 0).price, 900);
    CHECK_EQ(nlevels(1, FH_SIDE_BID), 1);
    /* many old orders lapped by newer ones, all found again */
    for (uint64_t r = 1; r <= 40; r++)
        APPLY(m_A(b, 1, r + 100, 'B', (uint32_t)r, "OLD", 500));
    for (uint64_t r = 1; r <= 40; r++)
        APPLY(m_A(b, 1, r + 100 + 3 * 4096, 'S', (uint32_t)r, "OLD", 5000));
    CHECK_EQ(fh_engine_spilled(e), 40);
    for (uint64_t r = 1; r <= 40; r++) {
        APPLY(m_D(b, 1, r + 100));
        APPLY(m_D(b, 1, r + 100 + 3 * 4096));
    }
    CHECK_EQ(fh_engine_spilled(e), 0);
    CHECK_EQ(ctr(FH_C_unknown_ref), 2);
    CHECK_EQ(fh_engine_live_orders(e), 1);
    CHECK_EQ(ctr(FH_C_order_capacity), 0);
}

/* Every reference finds its order again after a snapshot round trip: the save gives a home slot's reference back
 * from its slot and tag (home_ref, order_home's inverse), for references of every residue mod 4 and every width up
 * to 2^42 - 1, some of them lapped into the spill table and some beyond it (kept there whole). */
static void test_snapshot_refs_round_trip(void)
{
    enum { N = 3000 };
    static uint64_t refs[N];
    fresh(2, 4000, 1 << 14); /* 8,192 slots: k = 13 */
    APPLY(m_R(b, 1, "RTR"));
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t width = 1 + (uint32_t)(x % 43); /* 1 .. 43 bits: a few above 2^42 - 1 */
        refs[i] = i < 100 ? (uint64_t)i * 8192 * 4 + 7 : (x >> 20) & ((1ull << width) - 1); /* the first 100 lap */
        if (!refs[i])
            refs[i] = 1;
        APPLY(m_A(b, 1, refs[i], (i & 1) ? 'S' : 'B', 1 + (uint32_t)i % 7, "RTR", 10000 + (uint32_t)(x % 500) * 100));
    }
    uint64_t live = fh_engine_live_orders(e), spilled = fh_engine_spilled(e), dup = ctr(FH_C_duplicate_ref);
    CHECK(spilled >= 99);
    CHECK_EQ(live, (uint64_t)N - dup);
    char path[128];
    snprintf(path, sizeof path, "/tmp/fh-test-book-refs-%d.snap", (int)getpid());
    fh_snapshot_meta_t m = { .session = "SESSION001", .next_seq = 1, .day = 20261207 };
    CHECK(fh_engine_snapshot_save(e, &m, path) == 0);
    fresh(2, 4000, 1 << 14);
    CHECK(fh_engine_snapshot_load(e, path, &m) == 0);
    unlink(path);
    CHECK_EQ(fh_engine_live_orders(e), live);
    for (int i = 0; i < N; i++)
        APPLY(m_D(b, 1, refs[i]));
    CHECK_EQ(ctr(FH_C_unknown_ref), dup); /* each duplicate's second delete only */
    CHECK_EQ(fh_engine_live_orders(e), 0);
    CHECK_EQ(fh_engine_spilled(e), 0);
}

/* Many levels and orders in random order against a brute-force model of one book. */
static void test_random_against_model(void)
{
    enum { N = 20000, P = 300 };
    fresh(4, N, 1 << 16);
    APPLY(m_R(b, 1, "RND"));
    static uint32_t mshares[N + 1], mprice[N + 1];
    static char mside[N + 1];
    uint64_t x = 88172645463325252ull;
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t ref = 1 + (uint32_t)(x % N), r = (uint32_t)(x >> 32);
        if (!mshares[ref]) {
            mside[ref] = (r & 1) ? 'S' : 'B';
            mprice[ref] = 10000 + (r >> 8) % P * 100 + ((r >> 1) & 1) * 1000000;
            mshares[ref] = 1 + (r >> 20) % 500;
            APPLY(m_A(b, 1, ref, mside[ref], mshares[ref], "RND", mprice[ref]));
        } else if (r % 3 == 0) {
            uint32_t s = 1 + (r >> 4) % mshares[ref];
            APPLY(m_X(b, 1, ref, s));
            mshares[ref] -= s;
        } else {
            APPLY(m_D(b, 1, ref));
            mshares[ref] = 0;
        }
    }
    /* aggregate the model and compare */
    for (int s = 0; s < 2; s++) {
        static fh_level_t got[1 << 16];
        uint32_t n = fh_engine_levels(e, 1, s, got, 1 << 16);
        uint32_t k = 0;
        uint32_t prev = s ? 0 : 0xFFFFFFFFu;
        for (uint32_t i = 0; i < n; i++) {
            CHECK(s ? got[i].price > prev : got[i].price < prev);
            prev = got[i].price;
            uint64_t sh = 0;
            uint32_t cnt = 0;
            for (uint32_t ref = 1; ref <= N; ref++)
                if (mshares[ref] && mside[ref] == (s ? 'S' : 'B') && mprice[ref] == got[i].price) {
                    sh += mshares[ref];
                    cnt++;
                }
            CHECK_EQ(got[i].shares, sh);
            CHECK_EQ(got[i].orders, cnt);
            k += cnt;
        }
        uint32_t live = 0;
        for (uint32_t ref = 1; ref <= N; ref++)
            live += mshares[ref] && mside[ref] == (s ? 'S' : 'B');
        CHECK_EQ(k, live);
    }
    CHECK_EQ(ctr(FH_C_unknown_ref), 0);
}

/* Blocks, truncation and MoldUDP64 datagrams. */
static void test_framing(void)
{
    fresh(16, 1000, 1024);
    uint8_t buf[512];
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = m_A(buf + off + 2, 1, 100 + (uint64_t)i, 'B', 10, "BLK", 500);
        fh_put_be16(buf + off, (uint16_t)n);
        off += 2 + n;
    }
    CHECK_EQ(fh_engine_apply_blocks(e, buf, off), off);
    CHECK_EQ(fh_engine_live_orders(e), 3);
    CHECK_EQ(fh_engine_apply_blocks(e, buf, off - 5), off - 38);
    CHECK_EQ(ctr(FH_C_truncated), 1);
    CHECK_EQ(ctr(FH_C_duplicate_ref), 2);
    /* empty blocks, one of them the buffer's last bytes (exactly sized: under ASan a read of its message
     * byte would be caught): each counted short, the blocks around them applied */
    uint64_t short0 = ctr(FH_C_short_message);
    size_t en = m_D(buf + 4, 1, 102);
    fh_put_be16(buf, 0);
    fh_put_be16(buf + 2, (uint16_t)en);
    fh_put_be16(buf + 4 + en, 0);
    uint8_t *exact = malloc(6 + en);
    memcpy(exact, buf, 6 + en);
    CHECK_EQ(fh_engine_apply_blocks(e, exact, 6 + en), 6 + en);
    free(exact);
    CHECK_EQ(ctr(FH_C_short_message), short0 + 2);
    CHECK_EQ(fh_engine_live_orders(e), 2);

    uint8_t d[256];
    memcpy(d, "SESSION001", 10);
    fh_put_be64(d + 10, 1);
    fh_put_be16(d + 18, 2);
    size_t p = 20;
    size_t n = m_D(d + p + 2, 1, 100);
    fh_put_be16(d + p, (uint16_t)n);
    p += 2 + n;
    n = m_D(d + p + 2, 1, 101);
    fh_put_be16(d + p, (uint16_t)n);
    p += 2 + n;
    CHECK_EQ(apply_mold(e, d, p), 2);
    CHECK_EQ(fh_engine_live_orders(e), 0);
    fh_put_be16(d + 18, 0);
    CHECK_EQ(apply_mold(e, d, 20), 0);
    fh_put_be16(d + 18, 0xFFFF);
    CHECK_EQ(apply_mold(e, d, 20), 0xFFFF);
    CHECK(apply_mold(e, d, 19) == -1);
    fh_put_be16(d + 18, 3); /* claims 3, holds 2 */
    fh_put_be16(d + 20, 19);
    CHECK(apply_mold(e, d, p) == -1);
    CHECK_EQ(ctr(FH_C_mold_malformed), 2);
    CHECK(fh_engine_counter_slot(e, FH_C_messages) == NULL && fh_engine_counter_slot(e, FH_C_COUNT) == NULL);
    CHECK(fh_engine_counter_slot(e, -1) == NULL);
    CHECK(fh_mold_apply_unsequenced(d, 19, NULL, NULL) == -1); /* no counter: nothing counted, no consumer call */
    CHECK_EQ(ctr(FH_C_mold_malformed), 2);
}

static void test_bad_cfg(void)
{
    CHECK(fh_engine_create(&(fh_engine_cfg_t){ 0, 10, 10 }) == NULL);
    CHECK(strstr(fh_errmsg(), "max_instruments") != NULL);
    CHECK(fh_engine_footprint(&(fh_engine_cfg_t){ 10, 0, 10 }) == 0);
    CHECK(fh_engine_footprint(&(fh_engine_cfg_t){ 10, 10, 1 }) == 0);
}

/* A publishing engine of `instruments` books (4,000 orders, 65,536 levels) on a private segment of its own, as e. */
static fh_seg_t *fresh_on_segment(uint32_t instruments)
{
    fh_seg_t *seg = fh_seg_create(&(fh_seg_cfg_t){ NULL, "test", 1 << 16, 1 << 10, 10, -1, 64, 0 });
    if (!seg) {
        fprintf(stderr, "segment: %s\n", fh_errmsg());
        exit(1);
    }
    fh_engine_destroy(e);
    e = fh_engine_create_on(&(fh_engine_cfg_t){ instruments, 4000, 1 << 16 }, seg);
    CHECK(e != NULL);
    return seg;
}

/* Publishing: a BBO event exactly when a side's best level (price or shares) changes, carrying both sides'
 * best as the book has it. The prices cross the ladder's paths: on the tick near the touch (the window),
 * off the tick and far away (the deep arrays), jumps that re-centre the window and empty sides. Publishing is
 * turned on after a first part applied without it. */
static void test_bbo_events(void)
{
    fh_seg_t *seg = fresh_on_segment(4);
    fh_engine_set_publish(e, false); /* the first 30,000 messages unpublished: the cached bests come when it is on */
    enum { N = 600 };
    static uint32_t live[N + 1], sh[N + 1];
    APPLY(m_R(b, 1, "BBO"));
    uint64_t x = 0x9E3779B97F4A7C15ull, events = 0, head = __atomic_load_n(&seg->hdr->head, __ATOMIC_ACQUIRE);
    fh_level_t prev[2] = { { 0 } };
    for (int step = 0; step < 100000; step++) {
        if (step == 30000)
            fh_engine_set_publish(e, true);
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t ref = 1 + (uint32_t)(x % N), r = (uint32_t)(x >> 32);
        if (!live[ref]) {
            uint32_t base = (step / 20000) % 2 ? 2000000 : 1000000; /* the touch moves twice: re-centring */
            uint32_t kind = (r >> 24) % 16, price;
            if (kind == 0)
                price = base + 7 + (r >> 4) % 2000 * 100; /* off the tick */
            else if (kind == 1)
                price = base + 40000 + (r >> 4) % 300 * 100; /* beyond the window: deep */
            else
                price = base + (r >> 4) % 30 * 100;
            sh[ref] = 1 + (r >> 12) % 400;
            live[ref] = price;
            APPLY(m_A(b, 1, ref, (r & 1) ? 'S' : 'B', sh[ref], "BBO", price));
        } else if (r % 3 == 0 && sh[ref] > 1) {
            uint32_t s = 1 + (r >> 4) % (sh[ref] - 1);
            APPLY(m_X(b, 1, ref, s));
            sh[ref] -= s;
        } else {
            APPLY(m_D(b, 1, ref));
            live[ref] = 0;
        }
        fh_level_t top[2];
        for (int s = 0; s < 2; s++)
            if (fh_engine_levels(e, 1, s, &top[s], 1) == 0)
                top[s] = (fh_level_t){ 0 };
        uint64_t h = __atomic_load_n(&seg->hdr->head, __ATOMIC_ACQUIRE);
        bool changed = memcmp(top, prev, sizeof top) != 0;
        if (step < 30000) {
            CHECK_EQ(h, head);
        } else if (h == head) {
            CHECK(!changed);
        } else {
            CHECK_EQ(h, head + 1);
            const fh_shm_event_t *ev = &seg->events[h & (seg->hdr->event_capacity - 1)];
            CHECK_EQ(ev->type, FH_EV_BBO);
            CHECK_EQ(ev->a, top[0].shares);
            CHECK_EQ(ev->b, top[1].shares);
            CHECK_EQ((uint64_t)ev->c, (uint64_t)top[0].price);
            CHECK_EQ((uint64_t)ev->d, (uint64_t)top[1].price);
            events++;
        }
        head = h;
        memcpy(prev, top, sizeof top);
    }
    if (events <= 1000)
        fprintf(stderr, "bbo events: %llu\n", (unsigned long long)events);
    CHECK(events > 1000);
    /* Unpublished, a new best in the window above an off-tick deep level; once published, a change at that
     * best is an event with it. */
    fh_engine_set_publish(e, false);
    APPLY(m_R(b, 2, "ONB"));
    APPLY(m_A(b, 2, N + 1, 'B', 100, "ONB", 1000000));
    APPLY(m_A(b, 2, N + 2, 'B', 100, "ONB", 1000007));
    APPLY(m_A(b, 2, N + 3, 'B', 100, "ONB", 1000100));
    fh_engine_set_publish(e, true);
    head = __atomic_load_n(&seg->hdr->head, __ATOMIC_ACQUIRE);
    APPLY(m_A(b, 2, N + 4, 'B', 50, "ONB", 1000100));
    CHECK_EQ(__atomic_load_n(&seg->hdr->head, __ATOMIC_ACQUIRE), head + 1);
    const fh_shm_event_t *ev = &seg->events[(head + 1) & (seg->hdr->event_capacity - 1)];
    CHECK_EQ(ev->a, 150);
    CHECK_EQ(ev->c, 1000100);
    fh_engine_destroy(e);
    e = NULL;
    fh_seg_close(seg, 0);
}

/* fh_engine_warm: prefetches only. With 0, 1, 3, 20 and 40 books (fewer and more than its look-ahead of 16), any
 * number of books a call, and after the books are cleared, the segment's every byte, the counters and the books'
 * levels are as before, and the books that come after a clear are warmed from the new ones. */
static void test_warm_changes_nothing(void)
{
    fh_seg_t *seg = fresh_on_segment(64);
    uint8_t *before = malloc(seg->size);
    CHECK(before != NULL);
    uint64_t c0[FH_C_COUNT], c1[FH_C_COUNT];
    uint32_t ref = 1, made = 0;
    const uint32_t stages[] = { 0, 1, 3, 20, 40 };
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof stages / sizeof *stages; k++) {
            for (; made < stages[k]; made++) { /* a book a locate, with a level on each side */
                char sym[16];
                snprintf(sym, sizeof sym, "W%u", made);
                APPLY(m_R(b, (uint16_t)(made + 1), sym));
                APPLY(m_A(b, (uint16_t)(made + 1), ref++, 'B', 100, sym, 100000 + made * 100));
                APPLY(m_A(b, (uint16_t)(made + 1), ref++, 'S', 200, sym, 110000 + made * 100));
            }
            fh_engine_batch_end(e);
            memcpy(before, seg->hdr, seg->size);
            fh_engine_counters(e, c0);
            for (uint32_t calls = 0; calls < 200; calls++)
                CHECK_EQ(fh_engine_warm(e, 1 + calls % 64), made); /* the books, for the caller's pacing */
            fh_engine_counters(e, c1);
            CHECK(memcmp(before, seg->hdr, seg->size) == 0);
            CHECK(memcmp(c0, c1, sizeof c0) == 0);
            for (uint32_t i = 0; i < made; i++) {
                CHECK_EQ(lvl((uint16_t)(i + 1), 0, 0).shares, 100);
                CHECK_EQ(lvl((uint16_t)(i + 1), 1, 0).shares, 200);
            }
        }
        fh_engine_clear_books(e); /* the second round warms the books made after it */
        made = 0;
    }
    CHECK_EQ(fh_engine_warm(e, 64), 0); /* no book: nothing to warm */
    free(before);
    fh_engine_destroy(e);
    e = NULL;
    fh_seg_close(seg, 0);
}

int main(void)
{
    test_add_levels();
    test_execute_cancel_delete();
    test_replace();
    test_anomalies();
    test_level_capacity();
    test_capacity_marks_the_book_incomplete();
    test_spill();
    test_spill_slot_given_back_when_the_book_cannot_be_made();
    test_snapshot_refs_round_trip();
    test_random_against_model();
    test_bbo_events();
    test_warm_changes_nothing();
    test_framing();
    test_bad_cfg();
    fh_engine_destroy(e);
    if (test_failures) {
        fprintf(stderr, "test_book: %d failures\n", test_failures);
        return 1;
    }
    printf("test_book: ok\n");
    return 0;
}
