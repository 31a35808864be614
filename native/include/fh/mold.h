/* fh/mold.h: MoldUDP64 datagrams and the 2-byte-length block framing they share with NASDAQ's daily
 * ITCH files.
 *
 * A MoldUDP64 datagram: session (10 ASCII bytes), sequence number of its first message (u64 BE),
 * message count (u16 BE; 0 = heartbeat, 0xFFFF = end of session), then `count` blocks, each a u16 BE
 * length and that many bytes. A daily file is the same blocks with no header. */
#ifndef FH_MOLD_H
#define FH_MOLD_H

#include "fh/common.h"

#define FH_MOLD_HDR_LEN 20
#define FH_MOLD_SESSION_LEN 10
#define FH_MOLD_HEARTBEAT 0
#define FH_MOLD_END_OF_SESSION 0xFFFF

typedef struct fh_mold_hdr {
    char session[FH_MOLD_SESSION_LEN];
    uint64_t sequence;
    uint16_t count;
} fh_mold_hdr_t;

/* Parse the header of a datagram of len bytes. Returns 0, or -1 if len < 20. */
static inline int fh_mold_parse_hdr(const uint8_t *p, size_t len, fh_mold_hdr_t *h)
{
    if (FH_UNLIKELY(len < FH_MOLD_HDR_LEN))
        return -1;
    memcpy(h->session, p, FH_MOLD_SESSION_LEN);
    h->sequence = fh_be64(p + 10);
    h->count = fh_be16(p + 18);
    return 0;
}

/* A walker over 2-byte-length blocks in [p, end). */
typedef struct fh_blocks {
    const uint8_t *p;
    const uint8_t *end;
} fh_blocks_t;

typedef enum fh_block_rc {
    FH_BLOCK_OK = 1,        /* *msg, *len hold the next block */
    FH_BLOCK_END = 0,       /* no bytes left */
    FH_BLOCK_TRUNCATED = -1 /* bytes left but not a whole block; the walker stays on it */
} fh_block_rc_t;

static inline fh_block_rc_t fh_blocks_next(fh_blocks_t *w, const uint8_t **msg, size_t *len)
{
    size_t left = (size_t)(w->end - w->p);
    if (left == 0)
        return FH_BLOCK_END;
    if (FH_UNLIKELY(left < 2))
        return FH_BLOCK_TRUNCATED;
    size_t n = fh_be16(w->p);
    if (FH_UNLIKELY(n > left - 2))
        return FH_BLOCK_TRUNCATED;
    *msg = w->p + 2;
    *len = n;
    w->p += 2 + n;
    return FH_BLOCK_OK;
}

#endif
