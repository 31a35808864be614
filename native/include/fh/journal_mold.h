/* fh/journal_mold.h: journal what a MoldUDP64 feed (fh/mold.h) applies, as a consumer in front of the engine.
 *
 * The tee stands between the feed and its consumer (fh/consumer.h): fh_journal_tee_attach takes the feed's
 * consumer (the engine) as its own next one and installs itself, so every run of messages the feed delivers
 * is journaled (FH_JR_MSGS: the datagram's own blocks, one record, in the common case, journaled once the
 * next consumer has taken them when it checks their framing, apply_datagram in fh/consumer.h; one message at a
 * time from the hold-back buffer), every range it gives up is journaled (FH_JR_LOST), and then passed on. The
 * journal is the feed's delivery, exactly, by construction: nothing is inferred from the feed's state.
 *
 * Marks: after each fh_mold_feed_apply the caller hands the datagram to fh_journal_tee, which journals a
 * heartbeat of the session being journaled when it names the next sequence to journal (so a follower knows
 * the journal is complete up to it), and an end of session once every message before it is journaled
 * (FH_JR_END; pending until then). Unsequenced messages (sequence 0) are journaled with sequence 0.
 *
 * A snapshot (fh/glimpse.h) is not journaled: its messages are passed on only, and at its end the sequences it
 * stands for that were not journaled (from the next to journal up to the snapshot's) are journaled FH_JR_LOST:
 * a follower (the recorder's shadow engine, a standby) cannot rebuild the snapshot's books from the journal,
 * so it marks its books stale there rather than apply the snapshot's adds on top of its own state.
 *
 * Cost on the hot path: one indirect call and fh_journal_append_msgs (a reservation, a 48-byte header and a
 * copy of the datagram's blocks) per datagram. */
#ifndef FH_JOURNAL_MOLD_H
#define FH_JOURNAL_MOLD_H

#include "fh/consumer.h"
#include "fh/journal_writer.h"
#include "fh/mold.h"

typedef struct fh_journal_tee {
    fh_journal_t *j;
    fh_feed_consumer_t next;             /* the consumer after the journal (the engine) */
    uint64_t next_seq;                   /* the sequence after the last one journaled (given up ones included) */
    uint64_t lost;                       /* sequences journaled FH_JR_LOST */
    uint64_t missed;                     /* sequences applied but not journaled: always 0 (the tee sees every run) */
    char session[FH_MOLD_SESSION_LEN];   /* the session journaled */
    int have_session;
    uint64_t end_seq;                    /* an end of session named while messages before it were missing: */
    int end_pending;                     /* journaled once they are (applied or lost), so that marks stay in order */
    int in_snapshot;                     /* between a snapshot's begin and its end (or the next sequenced message) */
    uint64_t snapshot_messages;          /* a snapshot's messages passed on without being journaled */
    uint8_t one[2 + 65535];              /* one message as a block (apply) */
} fh_journal_tee_t;

void fh_journal_tee_init(fh_journal_tee_t *t, fh_journal_t *j);
/* Put the tee between the feed and its current consumer (set the engine first: fh_mold_feed_set_consumer). */
void fh_journal_tee_attach(fh_journal_tee_t *t, fh_mold_feed_t *f);
/* The consumer that journals, then passes on to t->next (apply_datagram: passed on first, journaled once taken;
 * present, with its `framing`, when t->next has one: set t->next first). */
void fh_journal_tee_consumer(fh_journal_tee_t *t, fh_feed_consumer_t *out);
/* The marks (cold): after fh_mold_feed_apply(f, d, len, ...) of a heartbeat or an end of session. */
void fh_journal_tee_mark(fh_journal_tee_t *t, const uint8_t *d, size_t len);

/* After fh_mold_feed_apply (with its datagram) or fh_mold_feed_poll (d NULL): the marks a datagram carries. The
 * messages themselves were journaled as the feed delivered them. */
static inline void fh_journal_tee(fh_journal_tee_t *t, fh_mold_feed_t *f, const uint8_t *d, size_t len)
{
    (void)f;
    if (FH_UNLIKELY(d && len == FH_MOLD_HDR_LEN))
        fh_journal_tee_mark(t, d, len);
}

#endif
