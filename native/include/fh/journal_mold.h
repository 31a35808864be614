/* fh/journal_mold.h: journal what a MoldUDP64 feed (fh/mold.h) applied, from outside the feed.
 *
 * A tee between the feed and the journal for the data plane until the feed hands its messages to a
 * consumer interface: after each fh_mold_feed_apply (with its datagram) and each fh_mold_feed_poll (d =
 * NULL), fh_journal_tee journals the messages the feed applied since the last call, in order, as FH_JR_MSGS
 * runs; the sequences it skipped as FH_JR_LOST; sequenced heartbeats and end of session as marks.
 *
 * The common case (the next datagram in order, applied whole) is one record made of the datagram's own
 * blocks and costs a few compares beyond fh_journal_append_msgs. Otherwise (a gap filled, messages drained
 * from the hold-back buffer, a loss, a session change) a cold path rebuilds the run: a message is in the
 * datagram, or in the feed's hold-back slot that it was drained from (the tee marks each slot it took with
 * len 0), or it was lost. Unsequenced messages (sequence 0) are journaled with sequence 0. Marks keep the
 * journal's order: a heartbeat is journaled only when it names the next sequence to journal, an end of
 * session once every message before it is journaled.
 *
 * One case is beyond it: a datagram more than the hold-back buffer ahead makes the feed give up the oldest
 * holes, drain what it held after them and hold the new messages, all in one call, possibly in the slots it
 * has just drained. A message whose slot was taken again so cannot be journaled: the tee writes FH_JR_MISSED
 * for it (a follower treats it as lost) and counts it in `missed`. The feed's consumer interface (the feed
 * handing each run to the journal as it applies it) removes the case. */
#ifndef FH_JOURNAL_MOLD_H
#define FH_JOURNAL_MOLD_H

#include "fh/journal_writer.h"
#include "fh/mold.h"

typedef struct fh_journal_tee {
    fh_journal_t *j;
    uint64_t next;                       /* the sequence after the last one journaled (given up ones included) */
    uint64_t lost;                       /* the feed's `lost` counter as of the last call */
    uint64_t held;                       /* its `held` counter as of the last cold call: while it stays, and
                                          * nothing is held, no message can have come from the hold-back */
    char session[FH_MOLD_SESSION_LEN];   /* the session journaled */
    int have_session;
    uint64_t missed;                     /* sequences journaled FH_JR_MISSED (see fh_journal_tee_slow) */
    uint64_t end_seq;                    /* an end of session named while messages before it were missing: */
    int end_pending;                     /* journaled once they are (applied or lost), so that marks stay in order */
    uint8_t scratch[FH_JOURNAL_MAX_BODY]; /* the cold path's run */
} fh_journal_tee_t;

void fh_journal_tee_init(fh_journal_tee_t *t, fh_journal_t *j);
/* The cold path (out of line). */
void fh_journal_tee_slow(fh_journal_tee_t *t, fh_mold_feed_t *f, const uint8_t *d, size_t len);

/* After fh_mold_feed_apply(f, e, d, len, ...) or fh_mold_feed_poll (d NULL, len 0). f is written to: the
 * hold-back slots the tee took messages from get len 0. */
static inline void fh_journal_tee(fh_journal_tee_t *t, fh_mold_feed_t *f, const uint8_t *d, size_t len)
{
    if (FH_LIKELY(d && len >= FH_MOLD_HDR_LEN && t->have_session)) {
        uint64_t seq = fh_be64(d + 10);
        uint16_t count = fh_be16(d + 18);
        if (FH_LIKELY(seq == t->next && f->next_seq == seq + count && count != FH_MOLD_END_OF_SESSION &&
                      f->counters[FH_M_lost] == t->lost && f->counters[FH_M_held] == t->held && !f->held_now &&
                      !memcmp(d, t->session, FH_MOLD_SESSION_LEN))) {
            if (FH_UNLIKELY(count == 0)) { /* a heartbeat, nothing new */
                fh_journal_append_mark(t->j, FH_JR_HEARTBEAT, t->session, seq, 0);
                return;
            }
            fh_journal_append_msgs(t->j, t->session, seq, count, d + FH_MOLD_HDR_LEN, len - FH_MOLD_HDR_LEN);
            t->next = seq + count;
            return;
        }
        if (f->next_seq == t->next && f->counters[FH_M_lost] == t->lost && seq && count &&
            count != FH_MOLD_END_OF_SESSION && !memcmp(d, t->session, FH_MOLD_SESSION_LEN))
            return; /* nothing applied: a copy (the B line), or held */
    }
    fh_journal_tee_slow(t, f, d, len);
}

#endif
