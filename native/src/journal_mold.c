/* The tee from a MoldUDP64 feed to the journal: a consumer in front of the engine (fh/journal_mold.h). */
#include "fh/journal_mold.h"

void fh_journal_tee_init(fh_journal_tee_t *t, fh_journal_t *j)
{
    memset(t, 0, offsetof(fh_journal_tee_t, one));
    t->j = j;
}

static inline void same_session(fh_journal_tee_t *t, const char *session)
{
    if (FH_UNLIKELY(!t->have_session || memcmp(t->session, session, FH_MOLD_SESSION_LEN))) {
        if (t->have_session && t->end_pending) /* the old session's end, after its last messages */
            fh_journal_append_mark(t->j, FH_JR_END, t->session, t->end_seq, 0);
        memcpy(t->session, session, FH_MOLD_SESSION_LEN);
        t->have_session = 1;
        t->end_pending = 0;
        t->next_seq = 0;
    }
}

static inline void advanced(fh_journal_tee_t *t, uint64_t next)
{
    t->next_seq = next;
    if (FH_UNLIKELY(t->end_pending) && next >= t->end_seq) {
        fh_journal_append_mark(t->j, FH_JR_END, t->session, t->end_seq, 0);
        t->end_pending = 0;
    }
}

static inline void tee_journal_blocks(fh_journal_tee_t *t, const char *session, uint64_t first_seq, uint32_t count,
                                      const uint8_t *p, size_t len)
{
    same_session(t, session);
    t->in_snapshot &= !first_seq;
    fh_journal_append_msgs(t->j, session, first_seq, (uint16_t)count, p, len);
    if (first_seq)
        advanced(t, first_seq + count);
}

static void tee_apply_blocks(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                             size_t len)
{
    fh_journal_tee_t *t = ctx;
    tee_journal_blocks(t, session, first_seq, count, p, len);
    t->next.apply_blocks(t->next.ctx, session, first_seq, count, p, len);
}

/* A datagram whose framing the next consumer (the engine) checks: passed on first; refused, it was not
 * delivered and is not journaled. */
static int tee_apply_datagram(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                              size_t len)
{
    fh_journal_tee_t *t = ctx;
    if (FH_UNLIKELY(t->next.apply_datagram(t->next.ctx, session, first_seq, count, p, len) < 0))
        return -1;
    tee_journal_blocks(t, session, first_seq, count, p, len);
    return 0;
}

static void tee_apply(void *ctx, const char *session, uint64_t seq, const uint8_t *m, size_t len)
{
    fh_journal_tee_t *t = ctx;
    same_session(t, session);
    if (FH_UNLIKELY(t->in_snapshot)) {
        if (!seq) { /* a snapshot's message: passed on only (its end journals what it stands for as lost) */
            t->snapshot_messages++;
            t->next.apply(t->next.ctx, session, seq, m, len);
            return;
        }
        t->in_snapshot = 0; /* sequenced messages again: no snapshot under way (it failed) */
    }
    if (len <= 65535) {
        fh_put_be16(t->one, (uint16_t)len);
        memcpy(t->one + 2, m, len);
        fh_journal_append_msgs(t->j, session, seq, 1, t->one, len + 2);
    } else {
        t->missed++; /* cannot be a MoldUDP64 block */
    }
    if (seq)
        advanced(t, seq + 1);
    t->next.apply(t->next.ctx, session, seq, m, len);
}

static void tee_lost(void *ctx, const char *session, uint64_t from, uint64_t to)
{
    fh_journal_tee_t *t = ctx;
    same_session(t, session);
    if (to > from) {
        fh_journal_append_mark(t->j, FH_JR_LOST, session, from, to - from);
        t->lost += to - from;
        advanced(t, to);
    }
    t->next.lost(t->next.ctx, session, from, to);
}

static void tee_snapshot_begin(void *ctx, const char *session)
{
    fh_journal_tee_t *t = ctx;
    t->in_snapshot = 1;
    t->next.snapshot_begin(t->next.ctx, session);
}

static void tee_snapshot_end(void *ctx, const char *session, uint64_t seq)
{
    fh_journal_tee_t *t = ctx;
    same_session(t, session);
    t->in_snapshot = 0;
    uint64_t from = t->next_seq ? t->next_seq : 1;
    if (seq + 1 > from) { /* what the snapshot stands for is not in the journal: a hole for the followers */
        fh_journal_append_mark(t->j, FH_JR_LOST, session, from, seq + 1 - from);
        t->lost += seq + 1 - from;
    }
    advanced(t, seq + 1);
    t->next.snapshot_end(t->next.ctx, session, seq);
}

void fh_journal_tee_consumer(fh_journal_tee_t *t, fh_feed_consumer_t *out)
{
    /* the next one's framing check is the tee's */
    *out = (fh_feed_consumer_t){ t, tee_apply_blocks, tee_apply, tee_lost, tee_snapshot_begin, tee_snapshot_end,
                                 t->next.apply_datagram ? tee_apply_datagram : NULL, t->next.framing };
}

void fh_journal_tee_attach(fh_journal_tee_t *t, fh_mold_feed_t *f)
{
    t->next = f->out;
    fh_feed_consumer_t c;
    fh_journal_tee_consumer(t, &c);
    fh_mold_feed_set_consumer(f, &c);
}

void fh_journal_tee_mark(fh_journal_tee_t *t, const uint8_t *d, size_t len)
{
    fh_mold_hdr_t h;
    if (fh_mold_parse_hdr(d, len, &h) || !t->have_session || memcmp(h.session, t->session, FH_MOLD_SESSION_LEN) ||
        !h.sequence)
        return; /* a session the feed has not delivered (a stray, or one not believed yet): nothing to mark */
    if (h.count == FH_MOLD_HEARTBEAT) {
        if (h.sequence == t->next_seq) /* complete up to it */
            fh_journal_append_mark(t->j, FH_JR_HEARTBEAT, t->session, h.sequence, 0);
    } else if (h.count == FH_MOLD_END_OF_SESSION && !t->end_pending) {
        t->end_pending = 1;
        t->end_seq = h.sequence;
        advanced(t, t->next_seq);
    }
}
