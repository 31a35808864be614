/* fh/synth.h: a deterministic synthetic TotalView-ITCH 5.0 trading day.
 *
 * Output is in the NASDAQ daily file format: every message is preceded by its length as a 2-byte
 * big-endian integer; all message fields are big-endian; timestamps are 6-byte nanoseconds since
 * midnight (docs/decode-format.md lists the layouts).
 *
 * The day, in order:
 *   prelude  S 'O' (03:59:00); one R per instrument, locates 1..instruments, symbols in alphabetical
 *            order of locate (real tickers first, then made-up ones: 1..8 uppercase letters, all
 *            distinct, independent of the seed); S 'S' (04:00:00); one H per instrument: 'T', or 'H'
 *            with reason "IPO1" for a few quiet instruments that are released by an H 'T' in the
 *            body; S 'Q' (09:30:00).
 *   body     09:30 to 16:00, timestamps non-decreasing with a U-shaped intensity (busy open and
 *            close). Message mix by count: U 8 %, X 3 %, E 2 % (10 % of them C), other types 2 %
 *            (P, I, N, Q, L, Y, J, B, K, h, V, W, and H pauses/halts each followed by its
 *            resumption), held to within a few messages of those shares; the remaining 85 % are
 *            A (5 % of them F) and D, about 44 % and 41 %. The add/delete split is steered per
 *            instrument so that the number of live orders stays near a target (about 50 per
 *            instrument in all, weighted by the square root of activity; at most messages/32): a
 *            steady state needs adds = deletes + executions that fill an order, so adds cannot stay
 *            at 45 % with deletes at 40 %.
 *   end      S 'M' (16:00:00), S 'E' (20:00:00), S 'C' (20:05:00): the last three messages.
 *
 * Orders (clean stream, anomaly_ppm == 0):
 *   - references are 1, 2, 3, ... in the order A/F/U introduce them; D/X/E/C/U name only live
 *     orders, with the order's own stock locate; X cancels fewer shares than remain; E/C execute at
 *     most what remains; match numbers (E, C, P, Q) are 1, 2, 3, ...; B names an earlier match.
 *   - instrument activity is Zipf-like (weight 1/(rank+3)); the real tickers are the busiest.
 *   - prices are multiples of 100 (one cent in 1/10000 units), each instrument's reference price is
 *     between $1 and $500 (log-uniform); the mid walks in one-cent steps (mean-reverting, within
 *     +-5 % of the reference and at most 400 cents); bids are at mid - k cents and asks at mid + k
 *     cents, k = 1 + geometric (P(k = 1) = 35 %, mostly 1..4), 2 % of them 10..99 cents away.
 *     Every live bid is below the mid and every live ask above it, so the book is never crossed or
 *     locked: before the mid steps, the orders resting at the new mid are executed (E/C) or deleted
 *     (D) by messages that count toward the total.
 *   - executions take the oldest order of the best level within 4 cents of the mid when there is
 *     one (else a random order); halted or paused instruments get no executions and no mid moves.
 *   - sizes: mostly round lots 100..1000, ~10 % odd lots, a few mixed lots and blocks.
 *
 * Anomalies (anomaly_ppm > 0): each body message, with probability anomaly_ppm / 10^6, owes one
 * anomaly, written as the next message; its kind is drawn uniformly from fh_synth_anomaly_t (falling
 * back to an unknown type byte when the drawn instrument has too few live orders). Anomalies do not
 * count toward the mix above. The generator keeps its own book as docs/book-semantics.md says the
 * engine does, so after any anomaly the clean messages stay valid. The counter each kind raises in
 * the engine is named beside it.
 *
 * Determinism: the output is a pure function of the cfg (integer arithmetic only; no libm, no
 * rand(), no global state), byte-identical on any machine the code builds for (64-bit GCC or Clang:
 * it uses unsigned __int128; little-endian, as fh/common.h's byte-order helpers assume). Functions are thread-safe (no shared
 * mutable state); they return 0 or a negative errno and never exit. On failure they also set the
 * thread-local message of fh/common.h when error.c is linked in (a weak reference otherwise).
 *
 * Cost: O(1) per message, all memory allocated up front, no malloc per message. Tables: 24 bytes per
 * order slot (2 * target + 4 per instrument), 64 bytes per instrument, and per instrument dense level
 * arrays over the prices its orders can reach (mapped lazily); about 75 MB resident for 8000
 * instruments. On a 2-core VM 20 million messages / 8000 instruments take about 2-3 s (buffer mode
 * additionally holds the ~610 MB output). */
#ifndef FH_SYNTH_H
#define FH_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fh_synth_cfg {
    uint64_t messages;      /* total messages written, prelude included; must be >= fh_synth_min_messages(instruments) */
    uint32_t instruments;   /* 1..65535; locates 1..instruments */
    uint64_t seed;          /* same cfg => byte-identical output, on any machine */
    uint32_t anomaly_ppm;   /* 0: a clean, consistent stream. >0: about this many per million messages are anomalies (values above 10^6 act as 10^6) */
    uint32_t shape;         /* FH_SYNTH_SHAPE_UNIFORM (0, the default), _REAL or _REAL_LATE; others: -EINVAL */
} fh_synth_cfg_t;

/* Day shapes. UNIFORM is the day described above. REAL keeps all of it (mix, prices, instruments, book
 * semantics) and changes what a benchmark's memory sees to what a real NASDAQ day shows:
 *   - references: not 1, 2, 3, ... but drawn from REAL_STREAMS (4) concurrent counters, as in the real
 *     09:30 slice of 2019-12-30 (NASDAQ's 1,000-message sample, which the real-data tests read: four
 *     interleaved runs at 5.7 M, 7.5 M, 7.9 M and 9.9 M, each instrument's orders in one run (289 of 293
 *     instruments), steps within a run multiples of 4, mostly 4..16). Each instrument is served by one
 *     counter (locate % 4); a counter steps by
 *     4 * (1 + uniform), and when its block of references is used up it takes the next block at the
 *     day's frontier. Steps are scaled to the day's size, so that whatever the message count the frontier
 *     is about 10 M at 09:30 (the slice's 9.9 M) and about 184 M at 16:00 (a real day's last reference,
 *     issue 16): a day of N messages is a slice of a real day's instruments, with its reference range.
 *     New references are unique (never reused) but not increasing.
 *   - lifetimes: at the open, before any other body message, every instrument gets resting orders
 *     (1 + its live-order target / 4, alternating sides, ticks 1..200 beyond the range its mid can reach)
 *     that are never executed, cancelled, replaced or deleted: they rest from the open to the close, as
 *     the orders of a real day's open book that no one touches do. With references reaching 184 M, they
 *     outlive every direct-mapped table of fewer than 2^28 slots. Quiet instruments' ordinary orders
 *     also live for most of the day (they see few messages), so many orders span tens of millions of
 *     later references.
 *   - depth: the resting orders spread over up to 200 ticks per side, so books carry deep levels as real
 *     ones do (most activity stays within a few ticks of the inside, as in UNIFORM).
 *   - mix: the resting adds are not counted in the mix steering (they come on top of the shares above;
 *     about 1 % of a 2 M-message, 8,000-instrument day). The body mix is UNIFORM's, which is the order of
 *     a real day's (a real day at 09:30 is heavier in U and F: the slice has A 37 %, U 23 %, F 19 %,
 *     D 17 %, E 3 %; over a whole day adds and deletes dominate). */
/* REAL_LATE is REAL with the references a real day's consecutive messages show (REAL spreads a whole day's range
 * over the N messages, so its counters step ~40 times further than a real feed's on a 2 M-message day, and an
 * order table sees every add on a cache line of its own):
 *   - steps: a counter's consecutive new orders are 4 (44 %), 8 (21 %), 12 (13 %), 16 (8 %) ... 56 apart, drawn
 *     from the slice's 661 steps (mean 10.3); counter k is at residue k mod 4 (the slice's four are at four
 *     residues) and serves the instruments of locate % 4 == k. A counter's block is 2 Mi references (the slice's
 *     counters are 0.4-2 M apart); a used-up block's successor is taken at the frontier, above all four.
 *   - the window: the resting orders of the open take references below 10 M, as REAL's; the body is a window of
 *     a real day late enough that its references end near the close's 184 M (its start is 184 M less the blocks
 *     its new orders take at the mean step, with 8 blocks' margin; 20 M at the least, for days of more than about
 *     20 M messages, whose references then go past 184 M). So the open's orders are ~150 M references older than
 *     the body's on a 2 M-message day, and the range is a real day's, with a real feed's steps in between.
 *     Timestamps, mix, prices, lifetimes and depth are REAL's. */
typedef enum fh_synth_shape {
    FH_SYNTH_SHAPE_UNIFORM = 0,
    FH_SYNTH_SHAPE_REAL = 1,
    FH_SYNTH_SHAPE_REAL_LATE = 2,
} fh_synth_shape_t;

/* Anomaly kinds, and the docs/book-semantics.md counter each raises in the engine. */
typedef enum fh_synth_anomaly {
    FH_SYNTH_AN_UNKNOWN_REF_D = 0, /* D of an order that is not live (deleted earlier, or never issued): unknown_ref */
    FH_SYNTH_AN_UNKNOWN_REF_E,     /* E of an order that is not live: unknown_ref */
    FH_SYNTH_AN_UNKNOWN_REF_X,     /* X of an order that is not live: unknown_ref */
    FH_SYNTH_AN_UNKNOWN_REF_U,     /* U whose original is not live (its new reference is used up, never live): unknown_ref */
    FH_SYNTH_AN_DUPLICATE_ADD,     /* A whose reference is live: duplicate_ref (book unchanged) */
    FH_SYNTH_AN_OVEREXECUTION,     /* E of more shares than remain: overexecution (order removed) */
    FH_SYNTH_AN_OVERCANCEL,        /* X of more shares than remain: overcancel (order removed) */
    FH_SYNTH_AN_BAD_SIDE,          /* A with side not 'B'/'S' (fresh reference, never live): bad_side */
    FH_SYNTH_AN_ZERO_SHARES,       /* A with 0 shares (fresh reference, never live): zero_shares */
    FH_SYNTH_AN_REPLACE_ONTO_LIVE, /* U from live order a onto live order b's reference: duplicate_ref (a removed, b unchanged) */
    FH_SYNTH_AN_UNKNOWN_TYPE,      /* a block whose type byte is not an ITCH 5.0 type (11..40 bytes): unknown_type */
    FH_SYNTH_AN_SHORT_MESSAGE,     /* a prefix (possibly empty) of an A/D/E/X/U/S, shorter than the spec length: short_message (not applied) */
    FH_SYNTH_AN_COUNT
} fh_synth_anomaly_t;

/* What a run produced; filled by the *_ex functions when their stats argument is not NULL. */
typedef struct fh_synth_stats {
    uint64_t messages;            /* blocks written (== cfg->messages) */
    uint64_t bytes;               /* bytes written, length prefixes included */
    uint64_t type_count[256];     /* blocks by first byte (anomalies included; empty blocks not counted) */
    uint64_t anomalies[FH_SYNTH_AN_COUNT];
    uint64_t anomalies_total;
    uint64_t live_orders_peak;    /* most orders live at once, as the engine would hold them */
    uint64_t live_orders_end;     /* live at the end of the day */
    uint64_t last_ref;            /* highest order reference issued */
    uint64_t last_match;          /* highest match number issued */
    uint64_t mid_moves;           /* one-cent steps of the mids */
    uint64_t clearing_messages;   /* E/C/D sent to clear a level before its mid stepped */
    uint64_t halts;               /* H pauses/halts in the body (each is resumed later) */
    uint64_t resting_orders;      /* REAL, REAL_LATE: orders resting from the open to the close (0 in UNIFORM) */
} fh_synth_stats_t;

/* Messages the fixed parts of a day need: 2 * instruments + 6 + the number of instruments that start
 * halted (0 below 10 instruments, else min(2 + instruments / 1000, 12)). 0 if instruments is 0 or
 * above 65535. */
uint64_t fh_synth_min_messages(uint32_t instruments);

/* Generate a day into a malloc'd buffer (*out, *out_len); release it with fh_synth_free.
 * Preconditions (else -EINVAL, nothing allocated): cfg, out, out_len not NULL; cfg->instruments in
 * 1..65535; cfg->messages >= fh_synth_min_messages(cfg->instruments). -ENOMEM if memory runs out
 * (about 30 bytes per message plus the generator's tables). On failure *out is NULL, *out_len 0. */
int fh_synth_buffer(const fh_synth_cfg_t *cfg, uint8_t **out, size_t *out_len);
int fh_synth_buffer_ex(const fh_synth_cfg_t *cfg, uint8_t **out, size_t *out_len, fh_synth_stats_t *stats);

/* Free a buffer from fh_synth_buffer (NULL is fine). */
void fh_synth_free(uint8_t *p);

/* Generate a day into the file at path (created or truncated, mode 0644), streamed through a 1 MiB
 * buffer, so any number of messages fits. Same preconditions as fh_synth_buffer (path not NULL);
 * -errno from open/write/close, and the partial file is removed on failure. */
int fh_synth_file(const fh_synth_cfg_t *cfg, const char *path);
int fh_synth_file_ex(const fh_synth_cfg_t *cfg, const char *path, fh_synth_stats_t *stats);

#ifdef __cplusplus
}
#endif

#endif
