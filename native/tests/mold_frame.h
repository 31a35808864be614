/* A MoldUDP64 datagram built from a test's table of messages (test_mold.c, stream.h). */
#ifndef FH_TEST_MOLD_FRAME_H
#define FH_TEST_MOLD_FRAME_H

#include <stdint.h>
#include <string.h>

#include "fh/common.h"
#include "fh/mold.h"

/* The datagram of session sess at out: sequence seq and count messages, those of rows first, first + 1, ...
 * of a table whose row s is the `stride` bytes at msgs + s * stride, lens[s] long (none for a heartbeat or the
 * end of session). Returns its length. */
static inline size_t mold_frame(uint8_t *out, const char *sess, uint64_t seq, uint16_t count, const uint8_t *msgs,
                                size_t stride, const size_t *lens, uint64_t first)
{
    memcpy(out, sess, 10);
    fh_put_be64(out + 10, seq);
    fh_put_be16(out + 18, count);
    size_t n = 20;
    if (count == FH_MOLD_HEARTBEAT || count == FH_MOLD_END_OF_SESSION)
        return n;
    for (uint64_t s = first; s < first + count; s++) {
        fh_put_be16(out + n, (uint16_t)lens[s]);
        memcpy(out + n + 2, msgs + s * stride, lens[s]);
        n += 2 + lens[s];
    }
    return n;
}

#endif
