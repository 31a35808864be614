/* The deterministic day of the journal and standby tests (test_journal.c, test_standby.c): NMSG messages
 * (define NMSG before including), msg[s] of length mlen[s] for sequence s = 1..NMSG: five directory messages
 * (locates 1-5), then adds on locates 1-5 around a price of 100.0000 on both sides, and from s = 24 every fourth
 * message deletes the order added ten before it (same locate). Also the MoldUDP64 datagrams that carry it and the
 * engine the tests apply it to. */
#ifndef FH_TEST_STREAM_H
#define FH_TEST_STREAM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh/book.h"
#include "fh/common.h"
#include "fh/mold.h"
#include "mold_frame.h"

static uint8_t msg[NMSG + 1][40];
static size_t mlen[NMSG + 1];

static void build_stream(void)
{
    for (int s = 1; s <= NMSG; s++) {
        uint8_t *b = msg[s];
        uint16_t loc = (uint16_t)(1 + s % 5);
        if (s <= 5) { /* directory */
            memset(b, ' ', 39);
            b[0] = 'R';
            fh_put_be16(b + 1, (uint16_t)s);
            fh_put_be16(b + 3, 0);
            fh_put_be48(b + 5, 1);
            memcpy(b + 11, "SYM", 3);
            b[13] = (uint8_t)('A' + s);
            fh_put_be32(b + 21, 100);
            fh_put_be32(b + 34, 0);
            mlen[s] = 39;
        } else if (s % 4 == 0 && s > 20) { /* delete the order added 10 earlier (same locate) */
            memset(b, 0, 19);
            b[0] = 'D';
            fh_put_be16(b + 1, loc);
            fh_put_be48(b + 5, (uint64_t)s);
            fh_put_be64(b + 11, (uint64_t)(s - 10));
            mlen[s] = 19;
        } else {
            memset(b, 0, 36);
            b[0] = 'A';
            fh_put_be16(b + 1, loc);
            fh_put_be48(b + 5, (uint64_t)s);
            fh_put_be64(b + 11, (uint64_t)s);
            b[19] = s % 2 ? 'B' : 'S';
            fh_put_be32(b + 20, (uint32_t)(100 + s % 50));
            memcpy(b + 24, "SYM     ", 8);
            b[26] = (uint8_t)('A' + loc);
            fh_put_be32(b + 32, (uint32_t)(1000000 + (s % 2 ? -1 : 1) * (int)(s % 40) * 100));
            mlen[s] = 36;
        }
    }
}

/* A MoldUDP64 datagram of session sess at out: sequence seq and count messages, those of the stream from
 * msg_base (none for a heartbeat or the end of session). Returns its length. */
static size_t stream_dgram(uint8_t *out, const char *sess, uint64_t seq, uint16_t count, uint64_t msg_base)
{
    return mold_frame(out, sess, seq, count, msg[0], sizeof msg[0], mlen, msg_base);
}

/* An engine for the stream: 16 books, room for cap orders and cap levels; exits 1 with the reason when it
 * cannot be made. */
static fh_engine_t *stream_engine(uint32_t cap)
{
    fh_engine_t *x = fh_engine_create(&(fh_engine_cfg_t){ 16, cap, cap });
    if (!x) {
        fprintf(stderr, "engine: %s\n", fh_errmsg());
        exit(1);
    }
    return x;
}

#endif
