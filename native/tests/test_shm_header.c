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

static void test_wide_segment(void)
{
    size_t books_off = up(sizeof(fh_shm_hdr_t)), lkey_off = up(books_off + NBOOKS * sizeof(fh_shm_book_t));
    size_t lagg_off = up(lkey_off + LEVELS * 8), events_off = up(lagg_off + LEVELS * sizeof(fh_shm_agg_t));
    size_t stats_off = up(events_off + EVENTS * sizeof(fh_shm_event_t)), size = up(stats_off + sizeof(fh_shm_stats_t));
    uint8_t *m = (uint8_t *)calloc(1, size);
    CHECK(m != NULL);
    if (!m)
        return;
    fh_shm_hdr_t *h = (fh_shm_hdr_t *)m;
    h->magic = FH_SHM_MAGIC;
    h->layout_version = FH_SHM_LAYOUT_VERSION;
    h->hdr_size = sizeof *h;
    h->size = size;
    h->books_off = books_off;
    h->lkey_off = lkey_off;
    h->lagg_off = lagg_off;
    h->events_off = events_off;
    h->stats_off = stats_off;
    h->max_levels = LEVELS;
    h->event_capacity = EVENTS;
    h->depth = 10;
    h->nbooks = NBOOKS;
    h->key_bits = 64;
    h->price_exp = -8;
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
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        free(m);
        return;
    }
    CHECK(write(fd, m, size) == (ssize_t)size);
    close(fd);
    free(m);

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

int main(void)
{
    test_keys();
    test_latency_buckets();
    test_wide_segment();
#ifdef __cplusplus
    printf("test_shm_header (C++ %ld): %s\n", (long)__cplusplus, failures ? "FAIL" : "ok");
#else
    printf("test_shm_header (C %ld): %s\n", (long)__STDC_VERSION__, failures ? "FAIL" : "ok");
#endif
    return failures ? 1 : 0;
}
