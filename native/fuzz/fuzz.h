/* native/fuzz/fuzz.h: what the fuzz targets share. Each target defines LLVMFuzzerTestOneInput (and may
 * define LLVMFuzzerInitialize); it is linked either with libFuzzer (-fsanitize=fuzzer, scripts/fuzz.sh) or
 * with replay.c, which runs the files of native/fuzz/regress/TARGET under the plain test suite.
 *
 * A target checks the properties its module promises (a reference parser's verdict, a book's invariants,
 * the counters' arithmetic) and abort()s with a message naming the one that failed: libFuzzer records the
 * input as a crash, the replay driver fails its test. */
#ifndef FH_FUZZ_H
#define FH_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh/book.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_ASSERT(c)                                                                    \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);  \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* A cursor over the fuzzer's bytes: reads past the end give zeros, so every input is a valid program. */
typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz_t;

static inline uint8_t fz_u8(fz_t *f)
{
    if (!f->n)
        return 0;
    f->n--;
    return *f->p++;
}
static inline uint16_t fz_u16(fz_t *f) { uint16_t hi = fz_u8(f); return (uint16_t)(hi << 8 | fz_u8(f)); }
static inline uint32_t fz_u32(fz_t *f) { uint32_t hi = fz_u16(f); return hi << 16 | fz_u16(f); }
static inline uint64_t fz_u64(fz_t *f) { uint64_t hi = fz_u32(f); return hi << 32 | fz_u32(f); }

/* Up to want bytes, copied into a heap buffer of exactly that many (so that AddressSanitizer sees a read one
 * byte past the end). *got receives the number; the caller frees. */
static inline uint8_t *fz_take(fz_t *f, size_t want, size_t *got)
{
    size_t n = want < f->n ? want : f->n;
    uint8_t *b = calloc(n ? n : 1, 1);
    if (!b)
        abort();
    memcpy(b, f->p, n);
    f->p += n;
    f->n -= n;
    *got = n;
    return b;
}

/* The book engine's invariants, through its public readers only (docs/book-semantics.md): every book's levels
 * strictly ordered best first (bids descending, asks ascending), each with at least one order and one share,
 * as many as the book's info says; and the orders on all levels add up to the live orders of the table
 * (an order always has a book: an add that cannot find or create one is skipped). */
static inline void fz_check_engine(const fh_engine_t *e, uint32_t max_levels)
{
    static uint16_t locs[65536];
    static fh_level_t lv[1u << 16];
    uint32_t cap = max_levels < (1u << 16) ? max_levels : (1u << 16);
    uint32_t n = fh_engine_locates(e, locs, 65536);
    FZ_ASSERT(n <= 65536);
    uint64_t orders = 0;
    for (uint32_t i = 0; i < n; i++) {
        fh_book_info_t bi;
        FZ_ASSERT(i == 0 || locs[i] > locs[i - 1]);
        FZ_ASSERT(fh_engine_book_info(e, locs[i], &bi) == 0);
        FZ_ASSERT(bi.locate == locs[i]);
        for (int s = 0; s < 2; s++) {
            uint32_t k = fh_engine_levels(e, locs[i], s, lv, cap);
            FZ_ASSERT(k == bi.levels[s] || (k == cap && bi.levels[s] > cap));
            for (uint32_t j = 0; j < k; j++) {
                FZ_ASSERT(lv[j].orders > 0 && lv[j].shares > 0);
                FZ_ASSERT(lv[j].shares >= lv[j].orders); /* every order has a share at least */
                if (j)
                    FZ_ASSERT(s == FH_SIDE_BID ? lv[j].price < lv[j - 1].price : lv[j].price > lv[j - 1].price);
                orders += lv[j].orders;
            }
        }
    }
    FZ_ASSERT(orders == fh_engine_live_orders(e));
}

#endif
