/* fh/blocks.h: the 2-byte-length block framing that MoldUDP64 datagrams share with NASDAQ's daily ITCH
 * files: each block a u16 big-endian length and that many bytes. A walker over [p, end), no allocation, no
 * knowledge of what the blocks hold. */
#ifndef FH_BLOCKS_H
#define FH_BLOCKS_H

#include "fh/common.h"

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

/* 1 when [p, p+len) is exactly `count` blocks, each non-empty and, where msg_len (256 entries, or NULL) gives its
 * type's (first byte's) length, of that length; else 0. The reference check of a MoldUDP64 datagram's framing
 * (fh/mold.h, fh/consumer.h's `framing`). msg_len NULL: lengths only (empty blocks allowed). */
static inline int fh_blocks_framed(const uint8_t *p, size_t len, unsigned count, const uint8_t *msg_len)
{
    const uint8_t *end = p + len;
    for (; count; count--) {
        size_t left = (size_t)(end - p), n;
        if (FH_UNLIKELY(left < 2))
            return 0;
        n = fh_be16(p);
        if (FH_UNLIKELY(n > left - 2))
            return 0;
        if (msg_len && (n == 0 || (msg_len[p[2]] && msg_len[p[2]] != n)))
            return 0;
        p += 2 + n;
    }
    return p == end;
}

#endif
