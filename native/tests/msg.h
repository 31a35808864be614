/* Builders of ITCH 5.0 messages for the C tests. Each writes one message into buf and returns its length. */
#ifndef FH_TEST_MSG_H
#define FH_TEST_MSG_H

#include <stdio.h>
#include <stdlib.h>

#include "fh/common.h"

static int test_failures;
#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            test_failures++;                                                       \
        }                                                                          \
    } while (0)
#define CHECK_EQ(a, b)                                                                                 \
    do {                                                                                               \
        __typeof__(a) a_ = (a);                                                                        \
        __typeof__(a) b_ = (__typeof__(a))(b);                                                         \
        if (a_ != b_) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n", __FILE__, __LINE__, #a,   \
                    (long long)a_, #b, (long long)b_);                                                 \
            test_failures++;                                                                           \
        }                                                                                              \
    } while (0)

static inline size_t m_hdr(uint8_t *b, char type, uint16_t locate, uint64_t ts)
{
    b[0] = (uint8_t)type;
    fh_put_be16(b + 1, locate);
    fh_put_be16(b + 3, 0);
    fh_put_be48(b + 5, ts);
    return 11;
}

static inline void m_alpha(uint8_t *p, const char *s, size_t w)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < w; i++)
        p[i] = i < n ? (uint8_t)s[i] : ' ';
}

static inline size_t m_R(uint8_t *b, uint16_t loc, const char *sym)
{
    memset(b, ' ', 39);
    m_hdr(b, 'R', loc, 1);
    m_alpha(b + 11, sym, 8);
    fh_put_be32(b + 21, 100);
    fh_put_be32(b + 34, 0);
    return 39;
}

static inline size_t m_A(uint8_t *b, uint16_t loc, uint64_t ref, char side, uint32_t shares, const char *sym,
                         uint32_t price)
{
    m_hdr(b, 'A', loc, 2);
    fh_put_be64(b + 11, ref);
    b[19] = (uint8_t)side;
    fh_put_be32(b + 20, shares);
    m_alpha(b + 24, sym, 8);
    fh_put_be32(b + 32, price);
    return 36;
}

static inline size_t m_F(uint8_t *b, uint16_t loc, uint64_t ref, char side, uint32_t shares, const char *sym,
                         uint32_t price, const char *mpid)
{
    m_A(b, loc, ref, side, shares, sym, price);
    b[0] = 'F';
    m_alpha(b + 36, mpid, 4);
    return 40;
}

static inline size_t m_E(uint8_t *b, uint16_t loc, uint64_t ref, uint32_t shares, uint64_t match)
{
    m_hdr(b, 'E', loc, 3);
    fh_put_be64(b + 11, ref);
    fh_put_be32(b + 19, shares);
    fh_put_be64(b + 23, match);
    return 31;
}

static inline size_t m_C(uint8_t *b, uint16_t loc, uint64_t ref, uint32_t shares, uint64_t match, char printable,
                         uint32_t price)
{
    m_E(b, loc, ref, shares, match);
    b[0] = 'C';
    b[31] = (uint8_t)printable;
    fh_put_be32(b + 32, price);
    return 36;
}

static inline size_t m_X(uint8_t *b, uint16_t loc, uint64_t ref, uint32_t shares)
{
    m_hdr(b, 'X', loc, 4);
    fh_put_be64(b + 11, ref);
    fh_put_be32(b + 19, shares);
    return 23;
}

static inline size_t m_D(uint8_t *b, uint16_t loc, uint64_t ref)
{
    m_hdr(b, 'D', loc, 5);
    fh_put_be64(b + 11, ref);
    return 19;
}

static inline size_t m_U(uint8_t *b, uint16_t loc, uint64_t ref, uint64_t newref, uint32_t shares, uint32_t price)
{
    m_hdr(b, 'U', loc, 6);
    fh_put_be64(b + 11, ref);
    fh_put_be64(b + 19, newref);
    fh_put_be32(b + 27, shares);
    fh_put_be32(b + 31, price);
    return 35;
}

static inline size_t m_H(uint8_t *b, uint16_t loc, const char *sym, char state)
{
    memset(b, ' ', 25);
    m_hdr(b, 'H', loc, 7);
    m_alpha(b + 11, sym, 8);
    b[19] = (uint8_t)state;
    return 25;
}

static inline size_t m_P(uint8_t *b, uint16_t loc, const char *sym, uint32_t shares, uint32_t price)
{
    m_hdr(b, 'P', loc, 8);
    fh_put_be64(b + 11, 0);
    b[19] = 'B';
    fh_put_be32(b + 20, shares);
    m_alpha(b + 24, sym, 8);
    fh_put_be32(b + 32, price);
    fh_put_be64(b + 36, 77);
    return 44;
}

#endif
