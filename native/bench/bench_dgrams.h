/* A day cut into MoldUDP64 datagrams in memory, for the benchmarks that feed fh_mold_feed_apply
 * (fh-bench-journal, fh-bench-mold). Not timed: the programs cut the day once, before their measured loop. */
#ifndef FH_BENCH_DGRAMS_H
#define FH_BENCH_DGRAMS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh/common.h"

typedef struct bench_dg {
    uint32_t off, len; /* a datagram's place in the buffer */
} bench_dg_t;

/* The day's blocks (2-byte big-endian length, then the message: a NASDAQ daily file) as datagrams of session
 * BENCH00001, sequences from 1: a header and blocks of at most `room` bytes in all (a block larger than `room`
 * alone), at most 0xFFFE messages. The datagrams lie back to back in *dgrams, *ndg of them, each one's place in
 * (*dg)[k]; a truncated last block is left out. Returns the message count. Out of memory: one line naming PROG,
 * and exit 2. */
static inline uint64_t bench_packetize(const char *prog, const uint8_t *p, size_t len, size_t room,
                                       uint8_t **dgrams, bench_dg_t **dg, size_t *ndg)
{
    /* Two datagrams in a row hold more than r bytes of blocks (the first was closed because the second's first
     * block did not fit, or full at 0xFFFE blocks of at least 2 bytes), so there are fewer than 2 * len / r + 2;
     * one more header is written where a truncated block ends the day. */
    size_t r = room < 2 * 0xFFFE ? room : 2 * 0xFFFE;
    size_t maxdg = 2 * len / (r ? r : 1) + 3;
    *dgrams = malloc(len + maxdg * 20);
    *dg = malloc(maxdg * sizeof **dg);
    if (!*dgrams || !*dg) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(2);
    }
    uint8_t *out = *dgrams;
    uint64_t seq = 1;
    size_t i = 0, w = 0, n_dg = 0;
    while (i + 2 <= len) {
        size_t start = w, used = 0;
        uint16_t count = 0;
        memcpy(out + w, "BENCH00001", 10);
        fh_put_be64(out + w + 10, seq);
        w += 20;
        while (i + 2 <= len) {
            size_t n = fh_be16(p + i);
            if (i + 2 + n > len || (count && used + 2 + n > room) || count == 0xFFFE)
                break;
            memcpy(out + w, p + i, 2 + n);
            w += 2 + n, used += 2 + n, i += 2 + n;
            count++;
        }
        if (!count)
            break;
        fh_put_be16(out + start + 18, count);
        (*dg)[n_dg++] = (bench_dg_t){ (uint32_t)start, (uint32_t)(w - start) };
        seq += count;
    }
    *ndg = n_dg;
    return seq - 1;
}

#endif
