/* test_shm_header: fh/shm.h as a reader's only include, compiled as strict C11 (-std=c11 -pedantic-errors) and,
 * through test_shm_header_cxx.cpp, as C++17 and C++20. The header's static asserts hold its layout in each
 * language; at run time this checks the parts a second venue relies on: level keys of 32 and 64 bits that sort
 * like prices (negative ones too), the latency buckets, and a reader that joins a segment of more than 65,535
 * books with 64-bit keys (written here by hand, as another venue's writer would) and reads its books and
 * events. Exit 0 pass, 1 fail (liburing style). */
#include <fh/shm.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;

#define CHECK(c)                                                                                              \
    do {                                                                                                      \
        if (!(c)) {                                                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                            \
            failures++;                                                                                       \
        }                                                                                                     \
    } while (0)

static void test_keys(void)
{
    static const int64_t p64[] = { INT64_MIN, -1000000000000LL, -1, 0, 1, 1850100, 4294967295LL, 4294967296LL,
                                   INT64_MAX };
    static const int64_t p32[] = { 0, 1, 1850100, 2000000000, 4294967295LL };
    const size_t n64 = sizeof p64 / sizeof p64[0], n32 = sizeof p32 / sizeof p32[0];
    for (int side = 0; side < 2; side++) {
        for (size_t i = 0; i < n64; i++) {
            uint64_t k = fh_shm_key(64, side, p64[i]);
            CHECK(fh_shm_key_price(64, side, k) == p64[i]);
            if (i) { /* bids: keys ascend with the price; asks: descend (the best of a side sorts last) */
                uint64_t prev = fh_shm_key(64, side, p64[i - 1]);
                CHECK(side ? prev > k : prev < k);
            }
        }
        for (size_t i = 0; i < n32; i++) {
            uint64_t k = fh_shm_key(32, side, p32[i]);
            CHECK(k <= UINT32_MAX);
            CHECK(fh_shm_key_price(32, side, k) == p32[i]);
            if (i) {
                uint64_t prev = fh_shm_key(32, side, p32[i - 1]);
                CHECK(side ? prev > k : prev < k);
            }
        }
    }
}

static void test_latency_buckets(void)
{
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++) {
        CHECK(fh_shm_lat_index(fh_shm_lat_upper(i)) == i);
        if (i)
            CHECK(fh_shm_lat_index(fh_shm_lat_upper(i - 1) + 1) == i);
    }
    CHECK(fh_shm_lat_index(UINT64_MAX) == FH_SHM_LAT_BUCKETS - 1);
}

/* A segment another venue's writer could make: 70,000 books, 64-bit keys, prices in 10^-8. */
#define NBOOKS 70000u
#define LEVELS 64u
#define EVENTS 64u

static size_t up(size_t x) { return (x + 4095) & ~(size_t)4095; }

/* A hand-built segment: its regions laid out as fh_seg_create lays them (page-aligned, in the same order) and its
 * header filled in; the caller writes books, levels and ladders at the offsets in *l. NULL if calloc fails. */
typedef struct hand_seg {
    size_t books, lkey, lagg, events, stats, ladder, lslot, size;
} hand_seg_t;

static uint8_t *hand_segment(hand_seg_t *l, uint32_t nbooks, uint32_t levels, uint32_t key_bits, int32_t price_exp,
                             uint32_t ladder_books)
{
    size_t nlad = 2 * ((size_t)ladder_books + 1);
    l->books = up(sizeof(fh_shm_hdr_t));
    l->lkey = up(l->books + nbooks * sizeof(fh_shm_book_t));
    l->lagg = up(l->lkey + (size_t)levels * key_bits / 8);
    l->events = up(l->lagg + levels * sizeof(fh_shm_agg_t));
    l->stats = up(l->events + EVENTS * sizeof(fh_shm_event_t));
    l->ladder = up(l->stats + sizeof(fh_shm_stats_t));
    l->lslot = up(l->ladder + nlad * sizeof(fh_shm_lside_t));
    l->size = up(l->lslot + nlad * FH_SHM_LADDER_W * sizeof(fh_shm_agg_t));
    uint8_t *m = (uint8_t *)calloc(1, l->size);
    CHECK(m != NULL);
    if (!m)
        return NULL;
    fh_shm_hdr_t *h = (fh_shm_hdr_t *)m;
    h->magic = FH_SHM_MAGIC;
    h->layout_version = FH_SHM_LAYOUT_VERSION;
    h->hdr_size = sizeof *h;
    h->size = l->size;
    h->books_off = l->books;
    h->lkey_off = l->lkey;
    h->lagg_off = l->lagg;
    h->events_off = l->events;
    h->stats_off = l->stats;
    h->ladder_off = l->ladder;
    h->lslot_off = l->lslot;
    h->ladder_bits = FH_SHM_LADDER_BITS;
    h->ladder_books = ladder_books;
    h->max_levels = levels;
    h->event_capacity = EVENTS;
    h->depth = 10;
    h->nbooks = nbooks;
    h->key_bits = key_bits;
    h->price_exp = price_exp;
    return m;
}

/* A hand-built segment written to a new temporary file (path: a mkstemp template, filled in): the file's
 * descriptor, or -1 (checked and said). */
static int segment_file(char *path, const uint8_t *m, size_t size)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0)
        CHECK(write(fd, m, size) == (ssize_t)size);
    return fd;
}

static void test_wide_segment(void)
{
    hand_seg_t l; /* no ladder books (64-bit keys: every level deep), only the shared pair */
    uint8_t *m = hand_segment(&l, NBOOKS, LEVELS, 64, -8, 0);
    if (!m)
        return;
    fh_shm_hdr_t *h = (fh_shm_hdr_t *)m;
    const size_t books_off = l.books, lkey_off = l.lkey, lagg_off = l.lagg, events_off = l.events, size = l.size;
    /* book 69,999: two bid levels at negative prices (a spread instrument), one ask */
    const uint32_t loc = NBOOKS - 1;
    fh_shm_book_t *b = (fh_shm_book_t *)(m + books_off) + loc;
    uint64_t *keys = (uint64_t *)(m + lkey_off);
    fh_shm_agg_t *aggs = (fh_shm_agg_t *)(m + lagg_off);
    b->locate = loc;
    b->status = FH_BOOK_LIVE;
    b->trading_state = 'T';
    memcpy(b->symbol, "SPREAD1", 7);
    b->symbol_len = 7;
    b->side[0].off = 0; /* bids ascending: -250, then the best, -125 */
    b->side[0].n = 2;
    keys[0] = fh_shm_key(64, 0, -25000000000LL);
    keys[1] = fh_shm_key(64, 0, -12500000000LL);
    aggs[0].shares = 7;
    aggs[0].orders = 1;
    aggs[1].shares = 5;
    aggs[1].orders = 2;
    b->side[1].off = 8;
    b->side[1].n = 1;
    keys[8] = fh_shm_key(64, 1, 300000000000LL); /* 3000.00000000 */
    aggs[8].shares = 1;
    aggs[8].orders = 1;
    b->last_price = -12500000000LL;
    b->last_shares = 3;
    fh_shm_event_t *ev = (fh_shm_event_t *)(m + events_off) + 1;
    ev->type = FH_EV_BBO;
    ev->locate = loc;
    ev->a = 5;
    ev->b = 1;
    ev->c = -12500000000LL;
    ev->d = 300000000000LL;
    ev->seq = 1;
    __atomic_store_n(&h->head, 1, __ATOMIC_RELEASE);

    char path[] = "/tmp/fh-test-shm-header-XXXXXX";
    int fd = segment_file(path, m, size);
    free(m);
    if (fd < 0)
        return;
    close(fd);

    fh_shm_reader_t r;
    CHECK(fh_shm_join(&r, path) == 0);
    if (r.base) {
        CHECK(r.nbooks == NBOOKS && r.key_bits == 64 && r.hdr->price_exp == -8);
        fh_shm_snapshot_t s;
        CHECK(fh_shm_snapshot(&r, loc, 10, &s) == 0);
        CHECK(s.nbids == 2 && s.nasks == 1 && s.book.locate == loc);
        CHECK(s.bids[0].price == -12500000000LL && s.bids[0].shares == 5 && s.bids[0].orders == 2);
        CHECK(s.bids[1].price == -25000000000LL && s.bids[1].shares == 7);
        CHECK(s.asks[0].price == 300000000000LL);
        CHECK(s.book.last_price == -12500000000LL);
        CHECK(fh_shm_snapshot(&r, NBOOKS, 10, &s) == -1); /* past the last book */
        CHECK(fh_shm_snapshot(&r, 3, 10, &s) == -1);      /* no instrument there */
        uint64_t next = 1;
        fh_shm_event_t got;
        CHECK(fh_shm_event_next(&r, &next, &got) == FH_SHM_EV_OK);
        CHECK(got.locate == loc && got.c == -12500000000LL && got.d == 300000000000LL && next == 2);
        CHECK(fh_shm_event_next(&r, &next, &got) == FH_SHM_EV_NONE);
        fh_shm_leave(&r);
    }
    unlink(path);
    CHECK(fh_shm_join(&r, path) == -ENOENT);
}

/* Layout 5: an ITCH-like segment (32-bit keys) whose book 5 has levels in its ladders and in its deep runs, the
 * bids' window wrapping round its ring, read back merged best first; a torn side header read within bounds;
 * a version-4 reader's segment refused. */
static void test_ladder_segment(void)
{
    const uint32_t nb = 8, lb = 1, lv = 16;
    hand_seg_t l;
    uint8_t *m = hand_segment(&l, nb, lv, 32, -4, lb);
    if (!m)
        return;
    fh_shm_hdr_t *h = (fh_shm_hdr_t *)m;
    const size_t books_off = l.books, lkey_off = l.lkey, lagg_off = l.lagg, ladder_off = l.ladder, lslot_off = l.lslot,
                 size = l.size;
    fh_shm_book_t *b = (fh_shm_book_t *)(m + books_off) + 5;
    uint32_t *keys = (uint32_t *)(m + lkey_off);
    fh_shm_agg_t *aggs = (fh_shm_agg_t *)(m + lagg_off);
    fh_shm_lside_t *L = (fh_shm_lside_t *)(m + ladder_off);
    fh_shm_agg_t *slot = (fh_shm_agg_t *)(m + lslot_off);
    b->locate = 5;
    b->status = FH_BOOK_LIVE;
    b->ladder = 0;
    /* bids: tick 100, window [1000, 1256) from slot 232, levels at tick indexes 1000, 1010 and 1030 (slot 6:
     * past the ring's end); deep: 50 and 100007 (off the tick), 200000 (tick index 2000, above the window) */
    L[0].lo = 1000;
    L[0].tick = 100;
    const uint32_t bkx[3] = { 1000, 1010, 1030 };
    for (int i = 0; i < 3; i++) {
        uint32_t sl = bkx[i] % FH_SHM_LADDER_W;
        L[0].occ[sl / 64] |= 1ull << (sl % 64);
        slot[sl].shares = 100u + (uint32_t)i;
        slot[sl].orders = 1;
    }
    L[0].nl = 3;
    L[0].best = 1030;
    b->side[0].off = 0;
    b->side[0].n = 3;
    const uint32_t dbid[3] = { 50, 100007, 200000 };
    for (int i = 0; i < 3; i++) {
        keys[i] = dbid[i];
        aggs[i].shares = 10u + (uint32_t)i;
        aggs[i].orders = 2;
    }
    /* asks: tick indexes are complements; levels 110000 and 110100 in the window, 110050 (off the tick) and 120000
     * (tick index ~1200, below the window) deep */
    fh_shm_agg_t *aslot = slot + FH_SHM_LADDER_W;
    L[1].lo = ~1101u - 10;
    L[1].tick = 100;
    const uint32_t akx[2] = { ~1100u, ~1101u };
    for (int i = 0; i < 2; i++) {
        uint32_t sl = akx[i] % FH_SHM_LADDER_W;
        L[1].occ[sl / 64] |= 1ull << (sl % 64);
        aslot[sl].shares = 200u + (uint32_t)i;
        aslot[sl].orders = 3;
    }
    L[1].nl = 2;
    L[1].best = ~1100u;
    b->side[1].off = 8;
    b->side[1].n = 2;
    keys[8] = ~120000u; /* ascending keys: the worst ask first */
    keys[9] = ~110050u;
    aggs[8].shares = aggs[9].shares = 7;
    aggs[8].orders = aggs[9].orders = 1;

    char path[] = "/tmp/fh-test-shm-ladder-XXXXXX";
    int fd = segment_file(path, m, size);
    if (fd < 0) {
        free(m);
        return;
    }
    fh_shm_reader_t r;
    CHECK(fh_shm_join(&r, path) == 0);
    if (r.base) {
        CHECK(r.ladder_books == lb);
        fh_shm_snapshot_t s;
        CHECK(fh_shm_snapshot(&r, 5, 64, &s) == 0);
        const int64_t wb[6] = { 200000, 103000, 101000, 100007, 100000, 50 };
        const uint64_t wbs[6] = { 12, 102, 101, 11, 100, 10 };
        CHECK(s.nbids == 6 && s.nlevels[0] == 6 && s.book.side[0].n == 3);
        for (uint32_t i = 0; i < 6 && i < s.nbids; i++)
            CHECK(s.bids[i].price == wb[i] && s.bids[i].shares == wbs[i]);
        const int64_t wa[4] = { 110000, 110050, 110100, 120000 };
        CHECK(s.nasks == 4 && s.nlevels[1] == 4);
        for (uint32_t i = 0; i < 4 && i < s.nasks; i++)
            CHECK(s.asks[i].price == wa[i]);
        CHECK(s.asks[0].shares == 200 && s.asks[0].orders == 3 && s.asks[1].shares == 7);
        CHECK(fh_shm_snapshot(&r, 5, 3, &s) == 0 && s.nbids == 3 && s.bids[2].price == 101000 && s.nlevels[0] == 6);
        fh_shm_leave(&r);
    }
    /* a torn side header (its count past its bits, its best outside its window): bounded, no hang */
    L[0].nl = 200;
    CHECK(pwrite(fd, L, sizeof *L, (off_t)ladder_off) == (ssize_t)sizeof *L);
    if (fh_shm_join(&r, path) == 0) {
        fh_shm_snapshot_t s;
        CHECK(fh_shm_snapshot(&r, 5, 64, &s) == 0 && s.nbids <= 64);
        L[0].nl = 3;
        L[0].best = 5000;
        CHECK(pwrite(fd, L, sizeof *L, (off_t)ladder_off) == (ssize_t)sizeof *L);
        CHECK(fh_shm_snapshot(&r, 5, 64, &s) == 0 && s.nbids == 3); /* the window ignored */
        fh_shm_leave(&r);
    }
    /* the segment of another layout version: refused, as by a version-4 reader of this one */
    h->layout_version = 4;
    CHECK(pwrite(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h);
    CHECK(fh_shm_join(&r, path) == -EPROTO);
    close(fd);
    free(m);
    unlink(path);
}

/* A segment file shorter than a header: still being created while it is empty or its writer holds its lock
 * (a writer creates, locks, then sizes it): -EAGAIN; short and unlocked, a dead writer's remains: -EPROTO. */
static void test_join_while_created(void)
{
    char path[] = "/tmp/fh-test-shm-creating-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    fh_shm_reader_t r;
    CHECK(fh_shm_join(&r, path) == -EAGAIN);
    CHECK(flock(fd, LOCK_EX | LOCK_NB) == 0);
    CHECK(write(fd, "FFHSHM", 6) == 6);
    CHECK(fh_shm_join(&r, path) == -EAGAIN);
    CHECK(flock(fd, LOCK_UN) == 0);
    CHECK(fh_shm_join(&r, path) == -EPROTO);
    close(fd);
    unlink(path);
}

int main(void)
{
    test_keys();
    test_latency_buckets();
    test_wide_segment();
    test_ladder_segment();
    test_join_while_created();
#ifdef __cplusplus
    printf("test_shm_header (C++ %ld): %s\n", (long)__cplusplus, failures ? "FAIL" : "ok");
#else
    printf("test_shm_header (C %ld): %s\n", (long)__STDC_VERSION__, failures ? "FAIL" : "ok");
#endif
    return failures ? 1 : 0;
}
