/* fh/mold.h: MoldUDP64 datagrams (their blocks: fh/blocks.h, shared with NASDAQ's daily ITCH files) and a
 * feed's sequencing, which delivers to a consumer (fh/consumer.h; the book engine is one).
 *
 * A MoldUDP64 datagram: session (10 ASCII bytes), sequence number of its first message (u64 BE),
 * message count (u16 BE; 0 = heartbeat, 0xFFFF = end of session), then `count` blocks, each a u16 BE
 * length and that many bytes. A daily file is the same blocks with no header. */
#ifndef FH_MOLD_H
#define FH_MOLD_H

#include <stdbool.h>

#include "fh/blocks.h"
#include "fh/common.h"
#include "fh/consumer.h"

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

/* One datagram without sequencing, for readers that have no feed (an offline capture read datagram by
 * datagram, tests, fuzzing; the data plane sequences with fh_mold_feed_apply): its messages, in order, each
 * through c->apply with the datagram's session and sequence 0. Returns its message count (0 heartbeat, 0xFFFF
 * end of session: no blocks), or -1 if it is malformed: shorter than its 20-byte header, or a block that does
 * not fit in it (the blocks before that one were delivered); then ++*malformed unless malformed is NULL (the
 * engine's mold_malformed, fh_engine_counter_slot, publishes it with the engine's counters). */
int fh_mold_apply_unsequenced(const uint8_t *d, size_t len, const fh_feed_consumer_t *c, uint64_t *malformed);

/* ---- a feed's sequencing and recovery --------------------------------------------------------------------
 *
 * One feed, several lines (A, B, ... and the replies of its retransmission server): the first copy of each
 * sequence number wins, from whichever line; later copies are duplicates. When the next expected sequence
 * is missing while later ones arrive (or a heartbeat names a later one), a gap opens: the later messages are
 * held (a bounded hold-back buffer indexed by sequence) and applied in order once the gap is filled, from
 * another line within `gap_wait` or by retransmission: fh_mold_feed_poll asks for MoldUDP64 requests
 * (session, sequence, count, capped per request; at most `max_outstanding` in flight) for the missing
 * ranges, resends one after `request_timeout` (doubling each time) up to `retries` times. A gap becomes
 * unrecoverable when there is no request server, when the hold-back buffer cannot hold what comes after it,
 * or when a request's retries run out; then the missing messages are skipped (counted `lost`), every book
 * is marked stale (the lost messages could have touched any of them: MoldUDP64 does not say which) with a
 * stale event, and by the policy the feed either resumes after the gap with the books stale until a snapshot
 * rebuilds them (FH_MOLD_RESUME), or asks its snapshot source for one (FH_MOLD_SNAPSHOT, below).
 *
 * Time: `now` is whatever clock the caller counts in (the data plane: TSC ticks), the same for every call
 * and for the durations in fh_mold_cfg_t. Nothing here allocates after fh_mold_feed_init, blocks or makes
 * a system call. */

#define FH_MOLD_COUNTERS(X) \
    X(datagrams) X(heartbeats) X(end_of_session) X(malformed) X(unsequenced) X(applied) X(duplicates) \
    X(gaps) X(gap_messages) X(session_changes) X(backwards) X(held) X(hold_full) X(hold_oversize) \
    X(recovered_lines) X(recovered_retrans) X(requests) X(request_messages) X(request_retries) \
    X(request_timeouts) X(unrecoverable) X(lost) X(snapshots) X(old_session) X(bogus_session) X(suspect) \
    X(joined_at) X(join_lost)
typedef enum fh_mold_counter {
#define FH_X(n) FH_M_##n,
    FH_MOLD_COUNTERS(FH_X)
#undef FH_X
    FH_M_COUNT
} fh_mold_counter_t;
/* Each counter, once (docs/line-reliability.md has the same list):
 *   datagrams          MoldUDP64 datagrams of every line (heartbeats, malformed and ignored ones included)
 *   heartbeats         heartbeats (message count 0) taken
 *   end_of_session     end-of-session markers (message count 0xFFFF) taken
 *   malformed          datagrams refused whole because their framing is wrong: shorter than the header, a
 *                      heartbeat or end of session with bytes after the header, blocks that do not fill the
 *                      datagram exactly with its message count, or (with cfg.msg_len) an empty block or
 *                      one whose length is not its message type's. Nothing of such a datagram is applied or counted as seen:
 *                      the other line's copy of its sequences wins.
 *   unsequenced        messages of sequence-0 datagrams (anonymised captures), applied in arrival order
 *   applied            messages applied to the books: on arrival, and released from the hold-back buffer
 *                      (whatever call released them: fh_mold_feed_apply, _poll or _snapshot_end)
 *   duplicates         messages already applied (or already held) when they came
 *   gaps               holes found: runs of missing sequences, each counted once when first seen (a message
 *                      landing inside a hole splits it and makes one more); every hole ends filled or
 *                      given up, so unrecoverable <= gaps
 *   gap_messages       messages that were missing when found missing (filled later or lost)
 *   session_changes    new sessions believed after the first (see bogus_session)
 *   backwards          heartbeats / end-of-session markers naming a sequence below what their own line has
 *                      already carried in the same session (rejected and counted; a line behind the other
 *                      is not backwards)
 *   held               messages put in the hold-back buffer (each applied later from it, or skipped)
 *   hold_full          times what came after a gap did not fit the hold-back buffer (its oldest holes given up)
 *   hold_oversize      messages too long for a hold-back slot (left to be asked for again)
 *   recovered_lines    missing messages that came late from a line (the other line covered the gap)
 *   recovered_retrans  missing messages that came from the retransmission server
 *   requests           requests sent (first sends and resends); request_messages: messages asked for
 *   request_retries    resends after a timeout; request_timeouts: requests given up after every retry
 *   unrecoverable      holes given up (no server, the buffer full, the retries exhausted, a gap larger than
 *                      recover_max, session change)
 *   lost               messages skipped by those holes
 *   snapshots          snapshots applied
 *   old_session        datagrams of a session the feed has left (a line still behind, a late reply), or
 *                      replies of a session not yet seen: ignored
 *   bogus_session      well-framed datagrams of another session not (yet) believed: a new session is believed
 *                      only after an end of session of the current one, on two feed lines, or after
 *                      cfg.confirm datagrams of it; until then its datagrams are ignored (a real change then
 *                      finds its first messages missing: a gap from 1, filled like any other). The very first
 *                      session is taken at once, provisionally: replaced before it had the same evidence,
 *                      it leaves every book stale (one more unrecoverable)
 *   suspect            datagrams and heartbeats naming a sequence more than cfg.max_ahead beyond the next
 *                      expected: ignored unless confirmed the same way (two lines, or cfg.confirm datagrams,
 *                      each within FH_MOLD_JUMP_NEAR of the first), then taken as a real jump
 *   joined_at          not a count: the first sequence seen of the current session when it was above 1 (a
 *                      late join: 1 .. joined_at-1 were missing and opened a gap from 1), else 0
 *   join_lost          of those, the messages given up (1 .. joined_at-1 never came): the feed is stale,
 *                      "joined late at joined_at; 1..joined_at-1 missing" */

#define FH_MOLD_MAX_LINES 16
#define FH_MOLD_MAX_OUTSTANDING 16
#define FH_MOLD_JUMP_NEAR 65536u /* a jump corroborates another within this distance (a datagram's reach) */
#define FH_MOLD_HOLD_MSG 54 /* the longest message a hold-back slot keeps (ITCH 5.0's longest is 50) */

/* Line state, from the time since the line's last datagram (heartbeats count). */
enum { FH_LINE_DOWN = 0, FH_LINE_LIVE = 1, FH_LINE_STALE = 2 };
/* Feed state. */
enum { FH_FEED_WAITING = 0, FH_FEED_LIVE = 1, FH_FEED_RECOVERING = 2, FH_FEED_STALE = 3, FH_FEED_ENDED = 4 };
/* What an unrecoverable gap leads to. */
enum { FH_MOLD_RESUME = 0, FH_MOLD_SNAPSHOT = 1 };

typedef struct fh_mold_cfg {
    uint64_t gap_wait;        /* how long a gap may be filled by another line before requests go out */
    uint64_t request_timeout; /* before the first resend of a request; doubles with each resend */
    uint32_t retries;         /* resends of a request before its gap is given up */
    uint32_t request_max;     /* messages per request, 1..65534 */
    uint32_t max_outstanding; /* requests in flight at once, 1..FH_MOLD_MAX_OUTSTANDING */
    uint32_t hold;            /* messages the hold-back buffer holds, a power of two (>= 2); 0: none (a gap is
                               * given up at once: the old first-copy-wins-and-skip behaviour) */
    bool can_request;         /* there is a request server */
    int policy;               /* FH_MOLD_RESUME or FH_MOLD_SNAPSHOT */
    uint64_t line_stale;      /* silence after which a line is stale; 0: never */
    uint64_t line_down;       /* silence after which a line is down; 0: never */
    uint32_t recovery_lines;  /* bit i: line i carries the retransmission server's replies (not a feed line) */
    void *hold_mem;           /* hold * 64 bytes, 64-aligned, zeroed (e.g. NUMA-local); NULL: allocated */
    /* Integrity (a zeroed cfg: none of it, the old trusting behaviour; fh_mold_cfg_defaults sets it). */
    uint64_t max_ahead;       /* a sequence more than this beyond the next expected is suspect; 0: no limit */
    uint32_t confirm;         /* datagrams of one line that make a new session or a suspect jump believed (two
                               * feed lines at once); 0: believed at once */
    uint64_t recover_max;     /* a gap of more missing messages than this is not asked for but given up at once
                               * (a snapshot under FH_MOLD_SNAPSHOT, stale books otherwise); 0: no limit */
    const uint8_t *msg_len;   /* optional, 256 entries: the exact length of each message type (0: any); an
                               * empty block, or one of a known type with another length, makes its datagram
                               * malformed (ITCH: fh_itch_len) */
} fh_mold_cfg_t;

/* One retransmission request (fh_mold_request_encode makes its 20-byte payload). */
typedef struct fh_mold_request {
    char session[FH_MOLD_SESSION_LEN];
    uint64_t seq;
    uint16_t count;
} fh_mold_request_t;

/* The snapshot source (FH_MOLD_SNAPSHOT). After an unrecoverable gap the feed calls request(); the source
 * answers later, from any thread-free place of the caller's loop, with fh_mold_snapshot_begin, the
 * snapshot's messages (each the ITCH state of a book as of sequence `seq`: system event, directory, trading
 * state, adds) through fh_mold_snapshot_apply, and fh_mold_snapshot_end(seq): the books are reset before it
 * and live after it, the messages up to seq are skipped, the ones held after it applied. NASDAQ GLIMPSE is
 * such a source. A source that cannot (request returns -1) leaves the feed stale as under FH_MOLD_RESUME. */
typedef struct fh_snapshot_source {
    int (*request)(void *ctx, const char session[FH_MOLD_SESSION_LEN], uint64_t after_seq);
    void *ctx;
} fh_snapshot_source_t;

typedef struct fh_mold_slot { /* 64 bytes: one held message */
    uint64_t seq;             /* the slot holds message seq when equal (0: empty) */
    uint16_t len;
    uint8_t data[FH_MOLD_HOLD_MSG];
} fh_mold_slot_t;

typedef struct fh_mold_req_state {
    uint64_t seq, due, timeout;
    uint32_t count, tries;    /* tries: sends so far; count 0: a free entry */
} fh_mold_req_state_t;

typedef struct fh_mold_line {
    uint64_t datagrams;       /* MoldUDP64 datagrams (heartbeats too) */
    uint64_t messages;        /* sequenced messages carried */
    uint64_t won;             /* of them, applied from this line (the first copy) */
    uint64_t duplicates;      /* of them, already applied when they came */
    uint64_t late;            /* of them, below the line's own highest sequence (reordered or late) */
    uint64_t lost;            /* sequences this line skipped when it jumped ahead (a reordering: here, then late) */
    uint64_t next;            /* one past the line's highest sequence */
    uint64_t last_rx;         /* `now` of its last datagram; 0: never */
    int state;                /* FH_LINE_* as of the last fh_mold_feed_poll */
} fh_mold_line_t;

typedef struct fh_mold_feed {
    char session[FH_MOLD_SESSION_LEN];
    fh_feed_consumer_t out;             /* where the messages go (fh_mold_feed_set_consumer) */
    char prev_session[FH_MOLD_SESSION_LEN]; /* the session before the last change (have_session > 1) */
    int have_session;                   /* 0: none yet, 1: one, 2: a change has happened */
    int state;                          /* FH_FEED_* */
    uint64_t next_seq;                  /* sequence of the next message to apply */
    uint64_t known_hi;                  /* one past the highest sequence known to exist (held or named) */
    uint64_t gap_since;                 /* `now` when the current gap opened (gap_open) */
    int gap_open;
    uint32_t held_now;                  /* messages in the hold-back buffer */
    uint32_t hold_mask;
    fh_mold_slot_t *hold;
    int own_hold;
    fh_mold_cfg_t cfg;
    fh_mold_req_state_t req[FH_MOLD_MAX_OUTSTANDING];
    uint32_t outstanding;
    const fh_snapshot_source_t *snap;
    int snap_pending;                   /* a snapshot was asked for and has not ended */
    int stale;                          /* books were marked stale by a loss (until a snapshot) */
    int ended;                          /* end of session seen */
    uint64_t counters[FH_M_COUNT];
    fh_mold_line_t line[FH_MOLD_MAX_LINES];
    /* gaps filled (nothing lost): how long each stayed open, from the first sign of it to the last message
     * in, in the caller's clock */
    uint64_t now;                       /* `now` of the last apply or poll */
    int gap_lost;                       /* the open gap has lost messages already */
    uint64_t filled, fill_last, fill_max, fill_total;
    /* evidence for what is not believed yet: a session (cand) and a jump ahead (jump_seq) */
    char cand[FH_MOLD_SESSION_LEN];
    uint32_t cand_lines, cand_count;
    uint64_t jump_seq;
    uint32_t jump_lines, jump_count;
    int fresh_session;                  /* no sequenced datagram of the current session taken yet */
    int provisional;                    /* the first session, taken at once, not yet seen on a second line or
                                         * in `confirm` datagrams: replaced by another, it leaves the books
                                         * stale (what it applied may have been a stray's) */
    uint32_t sess_lines, sess_count;
    /* The in-order fast path of fh_mold_feed_apply, by line: bit i set (for every feed line, not the recovery
     * lines) when nothing but a datagram's own checks stands between the next datagram in order (or a copy of
     * applied ones) and its outcome: a session believed and not provisional, its first datagram taken, no gap
     * open, no snapshot awaited, `state` current; 0 otherwise. Recomputed after every datagram that took the full
     * path; fh_mold_feed_resume closes it. */
    uint32_t fast;
    uint32_t frame_len[256];            /* cfg.msg_len as a block's 2 length bytes lie in memory (0x10000: no
                                         * known length, the full check decides) */
    uint8_t frame_adv[256];             /* 2 + that length */
    uint32_t frame_max;                 /* the largest frame_adv */
    int consumer_frames;                /* the consumer checks framing with cfg.msg_len (fh/consumer.h's
                                         * `framing`): the fast path hands it a datagram unchecked */
} fh_mold_feed_t;

/* Defaults: gap_wait etc. given in ticks_per_ms units (the data plane: TSC ticks per ms). */
void fh_mold_cfg_defaults(fh_mold_cfg_t *c, uint64_t ticks_per_ms);
/* 0, or -1 with a message (a bad cfg, or no memory for the hold-back buffer). A zeroed feed with a
 * zeroed cfg (hold 0, no server) behaves as before recovery existed: gaps are skipped at once. */
int fh_mold_feed_init(fh_mold_feed_t *f, const fh_mold_cfg_t *cfg);
void fh_mold_feed_free(fh_mold_feed_t *f);
void fh_mold_feed_set_snapshot_source(fh_mold_feed_t *f, const fh_snapshot_source_t *s);
/* Where the feed delivers (copied; the engine's: fh_engine_consumer). Until set, or with NULL, nothing is
 * delivered. Every message reaches it with its session and sequence number, in sequence order. */
void fh_mold_feed_set_consumer(fh_mold_feed_t *f, const fh_feed_consumer_t *c);
/* A restart from a snapshot (before any datagram): the session is believed (not provisional) and the feed goes
 * on at next_seq; what came before it is the snapshot's, what lies after it is asked for as any gap is. */
void fh_mold_feed_resume(fh_mold_feed_t *f, const char session[FH_MOLD_SESSION_LEN], uint64_t next_seq);
/* After fh_mold_feed_resume(f, .., from): is the restored state complete? 1 once a feed line has carried or
 * named a sequence at or past `from` (it is no longer behind the restart point) and everything before it has
 * been applied (no gap open, no snapshot awaited); 0 meanwhile; -1 once a gap was given up (the books are
 * stale for good, until a snapshot). A restart keeps its books stale until this is 1 (cold path: call it
 * after a datagram or a poll while the restart is pending). */
int fh_mold_feed_caught_up(const fh_mold_feed_t *f, uint64_t from);

/* Apply one datagram that arrived on `line` at `now`: the messages whose turn it is are applied (with the
 * held ones that follow them), later ones are held while a gap is open, copies of applied ones are
 * counted. Sequence 0 (not a valid MoldUDP64 sequence; anonymised captures have it) is applied
 * unsequenced. A datagram whose framing is wrong is refused whole (malformed) before anything of it is
 * used. A new session, once believed (bogus_session), starts at sequence 1: a first datagram above 1 is a
 * late join and opens a gap from 1 (a gap still open in the old session is given up first). A sequence
 * implausibly far ahead is ignored until confirmed (suspect). Work per call is bounded by the datagram's
 * length and the configuration, never by a sequence distance from the wire. Returns the number of messages
 * applied (held ones released by this datagram included). */
int fh_mold_feed_apply(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line, uint64_t now);

/* Timers: line states, and for an open gap the requests to send now (written to out, at most cap; the
 * caller sends each as fh_mold_request_encode's payload to the request server) or the gap given up.
 * Call it after each burst while fh_mold_feed_busy and now and then otherwise (line states). Returns the
 * number of requests written. */
int fh_mold_feed_poll(fh_mold_feed_t *f, uint64_t now, fh_mold_request_t *out, int cap);
static inline int fh_mold_feed_busy(const fh_mold_feed_t *f) { return f->gap_open; }

/* The 20-byte MoldUDP64 request payload (session, sequence, count). Returns 20. */
size_t fh_mold_request_encode(uint8_t out[20], const fh_mold_request_t *r);

/* The snapshot source's answer (see fh_snapshot_source_t). */
void fh_mold_snapshot_begin(fh_mold_feed_t *f);
void fh_mold_snapshot_apply(fh_mold_feed_t *f, const uint8_t *msg, size_t len);
void fh_mold_snapshot_end(fh_mold_feed_t *f, uint64_t seq);
/* The source could not deliver (every retry failed): the gap it was to fill is given up as under
 * FH_MOLD_RESUME (skipped and counted lost, the books stay stale) and the held messages after it applied. */
void fh_mold_snapshot_failed(fh_mold_feed_t *f);

const char *fh_mold_counter_name(int c);
const char *fh_line_state_name(int s);
const char *fh_feed_state_name(int s);

#endif
