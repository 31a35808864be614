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

#include "fh/shm.h"

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
    /* optional, NULL: not written. The message's header columns again per order row (what ts, locate and type
     * hold at o_idx), so that the caller need not gather them */
    uint64_t *o_ts;
    uint16_t *o_locate;
    uint8_t *o_type;
} fh_hist_cols_t;

/* Decode messages start .. n - 1 of the run in buf (off[i]: the offset of message i, after its 2-byte
 * length), writing message i's ordinal (ordinal + i) over its timestamp field in buf. Returns the index it
 * stopped at: n when done; less when a message names an order reference >= st->sides_cap (and <=
 * st->ref_limit), whose value is then in st->need: grow the map to more than it and call again from there. */
uint64_t fh_hist_decode(fh_hist_state_t *st, uint8_t *buf, const uint32_t *off, uint64_t n, uint64_t start,
                        uint64_t ordinal, fh_hist_cols_t *c);

/* The trades and BBO changes of one applied run, as columns (the caller's arrays, room for every event). */
typedef struct fh_hist_ev_cols {
    /* trades: message columns of the message that made each (seq, ts, recv), the event's fields, the message
     * type (E, C, P) and the aggressor ('B' or 'S': the side opposite the resting order's; 0 unknown) */
    uint64_t *t_seq, *t_ts;
    int64_t *t_recv;
    uint16_t *t_locate;
    int64_t *t_price, *t_shares, *t_match;
    uint8_t *t_type, *t_aggressor;
    uint64_t t_rows;
    /* BBO changes */
    uint64_t *b_seq, *b_ts;
    int64_t *b_recv;
    uint16_t *b_locate;
    int64_t *b_bid_price, *b_bid_shares, *b_ask_price, *b_ask_shares;
    uint64_t b_rows;
} fh_hist_ev_cols_t;

/* Events from .. to (ring sequences, inclusive) of the ring (mask = capacity - 1), made by applying messages
 * first .. first + n - 1 of a run, each stamped with its ordinal by fh_hist_decode (an event's itch_ts is the
 * ordinal of its message). Per message i of the run (0-based): seq[i], ts[i], recv[i] (recv may be NULL: the
 * recv columns are then not written), typ[i] its type, buf + off[i] its bytes (for the resting order of a trade:
 * P carries its side, E and C name the order, whose side st->sides holds). Sets c->t_rows and c->b_rows.
 * Returns 0, or -1 if an event names a message outside the run (not written by this run's apply). */
int fh_hist_events(const fh_hist_state_t *st, const fh_shm_event_t *ring, uint64_t mask, uint64_t from, uint64_t to,
                   uint64_t first, uint64_t n, const uint64_t *seq, const uint64_t *ts, const int64_t *recv,
                   const uint8_t *typ, const uint8_t *buf, const uint32_t *off, fh_hist_ev_cols_t *c);

/* The writer's side (handler/history/writer.py): a partition's rows put in symbol order and its columns made
 * into Arrow arrays without a Python object or a temporary array per row. Arrow's validity bitmaps: (n + 7) / 8
 * bytes, bit i (least significant first) set when row i is valid, the bits past n zero. */

/* A stable counting sort of n rows by key[loc[i]] (a 16-bit key per locate, e.g. the rank of its symbol):
 * dest[i] is row i's place in the sorted order (rows of one key keep their order). count: 65536 entries of
 * scratch. */
void fh_hist_sort_dest(const uint16_t *key, const uint16_t *loc, uint64_t n, uint64_t *count, int64_t *dest);

/* A one-byte column (codes v) as the indices of a dictionary: the distinct codes of its rows, those with
 * isnull[code] set left out, go to dict in ascending order (returns how many, at most 256); idx[i] is the index
 * of v[i] in dict (0 for a null row), valid the rows' validity bitmap (null: isnull[v[i]]); *nulls the count of
 * null rows. */
int fh_hist_codes(const uint8_t *v, uint64_t n, const uint8_t *isnull, uint8_t *dict, int32_t *idx, uint8_t *valid,
                  uint64_t *nulls);

/* The validity bitmap of rows whose type (one byte) has has[type] set; returns the count of the other (null)
 * rows. */
uint64_t fh_hist_valid(const uint8_t *typ, uint64_t n, const uint8_t *has, uint8_t *valid);

#endif
