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

/* ---- a feed's sequencing (first copy wins across its lines) ------------------------------------------ */

typedef struct fh_engine fh_engine_t;

#define FH_MOLD_COUNTERS(X) \
    X(datagrams) X(heartbeats) X(end_of_session) X(malformed) X(unsequenced) X(applied) X(duplicates) \
    X(gaps) X(gap_messages) X(session_changes)
typedef enum fh_mold_counter {
#define FH_X(n) FH_M_##n,
    FH_MOLD_COUNTERS(FH_X)
#undef FH_X
    FH_M_COUNT
} fh_mold_counter_t;

#define FH_MOLD_MAX_LINES 16

typedef struct fh_mold_feed {
    char session[FH_MOLD_SESSION_LEN];
    int have_session;
    uint64_t next_seq;                  /* sequence of the next message to apply */
    uint64_t counters[FH_M_COUNT];
    uint64_t line_datagrams[FH_MOLD_MAX_LINES];
    uint64_t line_won[FH_MOLD_MAX_LINES]; /* messages first seen on this line */
} fh_mold_feed_t;

/* Apply one datagram that arrived on `line`: each message whose sequence is the next expected one (or
 * later: the skipped ones are counted as a gap) is applied, a message seen before (on any line) is
 * counted as a duplicate and skipped. Sequence 0 (not a valid MoldUDP64 sequence; anonymised captures
 * have it) is applied unsequenced. A new session restarts the sequence at its first datagram. A datagram
 * whose blocks do not all fit is counted malformed, and the whole blocks before the fault are used.
 * Returns the number of messages applied. */
int fh_mold_feed_apply(fh_mold_feed_t *f, fh_engine_t *e, const uint8_t *d, size_t len, int line);
const char *fh_mold_counter_name(int c);

#endif
