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
#include "fh/itch.h"

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
/* A small day into e: 8 directory messages (SYM1..SYM8), 240 adds on both sides with an execution every fifth
 * (10 shares, or with full_every > 0 the whole order every full_every-th add), then a halt of SYM3. Order r's
 * reference is r * ref_mult (a multiplier that makes the order table's slots collide exercises its spill). */
static inline void fz_small_day(fh_engine_t *e, uint64_t ref_mult, int full_every)
{
    uint8_t m[FH_ITCH_MAX_LEN];
    for (int loc = 1; loc <= 8; loc++) {
        memset(m, 0, sizeof m);
        m[0] = 'R';
        fh_put_be16(m + 1, (uint16_t)loc);
        memcpy(m + 11, "SYM     ", 8);
        m[14] = (uint8_t)('0' + loc);
        fh_engine_apply(e, m, fh_itch_len['R']);
    }
    for (int r = 1; r <= 240; r++) {
        memset(m, 0, sizeof m);
        m[0] = 'A';
        fh_put_be16(m + 1, (uint16_t)(1 + r % 8));
        fh_put_be48(m + 5, 34200000000000ull + (uint64_t)r);
        fh_put_be64(m + FH_ITCH_OFF_REF, (uint64_t)r * ref_mult);
        m[FH_ITCH_OFF_A_SIDE] = r % 2 ? 'B' : 'S';
        fh_put_be32(m + FH_ITCH_OFF_A_SHARES, (uint32_t)(100 + r));
        fh_put_be32(m + FH_ITCH_OFF_A_PRICE, (uint32_t)(1000000 + (r % 2 ? -1 : 1) * 100 * (1 + r % 7)));
        fh_engine_apply(e, m, fh_itch_len['A']);
        if (r % 5 == 0) {
            memset(m, 0, sizeof m);
            m[0] = 'E';
            fh_put_be16(m + 1, (uint16_t)(1 + r % 8));
            fh_put_be64(m + FH_ITCH_OFF_REF, (uint64_t)r * ref_mult);
            fh_put_be32(m + FH_ITCH_OFF_E_SHARES, full_every && r % full_every == 0 ? (uint32_t)(100 + r) : 10);
            fh_engine_apply(e, m, fh_itch_len['E']);
        }
    }
    memset(m, 0, sizeof m);
    m[0] = 'H';
    fh_put_be16(m + 1, 3);
    memcpy(m + FH_ITCH_OFF_H_STOCK, "SYM3    ", 8);
    m[FH_ITCH_OFF_H_STATE] = 'H';
    fh_engine_apply(e, m, fh_itch_len['H']);
}

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
