/* fh/hist.h: a run of ITCH messages as columns, for the history writer (handler/history/columns.py).
 *
 * One pass over messages already indexed by fh_blocks_index: each message's header fields into per-message
 * arrays, its ordinal stamped into its timestamp field (the engine stamps the events it publishes with that
 * field, which ties each event back to its message), the symbol directory and the order-reference -> side
 * map kept up to date, and the fields of every well-formed order message (A F E C X D U) into per-row arrays.
 * Not a hot path of the data plane: a follower's, off the isolated cores. Nothing is allocated. */
#ifndef FH_HIST_H
#define FH_HIST_H

#include <stdint.h>

/* Kept across calls, owned by the caller. */
typedef struct fh_hist_state {
    uint8_t *symbols;       /* 65536 * 8 bytes: locate -> stock (space-padded); all zero = not named yet */
    uint8_t *sides;         /* order reference -> 0 unknown, 'B' or 'S' (the first side given wins) */
    uint64_t sides_cap;     /* bytes at sides */
    uint64_t ref_limit;     /* references above this are not mapped (counted in out_of_range) */
    uint64_t out_of_range;  /* references that could not be mapped */
    uint64_t need;          /* set by fh_hist_decode when it stopped at a reference >= sides_cap */
} fh_hist_state_t;

/* The output columns, each with room for n rows (the caller's arrays). */
typedef struct fh_hist_cols {
    /* per message */
    uint64_t *ts;           /* the exchange timestamp (0 when the message is shorter than its header) */
    uint16_t *locate;
    uint8_t *type;          /* 0 for an empty block */
    /* per order message (A F E C X D U, at least as long as its type) */
    uint32_t *o_idx;        /* index of the message in the run */
    int64_t *o_ref, *o_new_ref, *o_shares, *o_price, *o_match;
    uint8_t *o_side;        /* A F: the message's own ('B', 'S' or 0); E C X D: the resting order's; U: the new order's */
    uint8_t *o_printable;   /* C: its printable flag; others 0 */
    uint8_t *o_mpid;        /* 4 bytes a row; F: its attribution; others zero */
    uint64_t o_rows;        /* rows written so far (the caller sets 0 before the first call of a run) */
} fh_hist_cols_t;

/* Decode messages start .. n - 1 of the run in buf (off[i]: the offset of message i, after its 2-byte
 * length), writing message i's ordinal (ordinal + i) over its timestamp field in buf. Returns the index it
 * stopped at: n when done; less when a message names an order reference >= st->sides_cap (and <=
 * st->ref_limit), whose value is then in st->need: grow the map to more than it and call again from there. */
uint64_t fh_hist_decode(fh_hist_state_t *st, uint8_t *buf, const uint32_t *off, uint64_t n, uint64_t start,
                        uint64_t ordinal, fh_hist_cols_t *c);

#endif
