/* The tee from a MoldUDP64 feed to the journal: the cold path (fh/journal_mold.h). */
#include "fh/journal_mold.h"

void fh_journal_tee_init(fh_journal_tee_t *t, fh_journal_t *j)
{
    memset(t, 0, sizeof *t);
    t->j = j;
}

typedef struct run {
    fh_journal_tee_t *t;
    uint64_t first;  /* sequence of the run's first message */
    uint32_t count;
    size_t bytes;
    uint64_t lost_first, lost_n; /* a run of lost sequences */
} run_t;

static void flush(run_t *r)
{
    if (r->count) {
        fh_journal_append_msgs(r->t->j, r->t->session, r->first, (uint16_t)r->count, r->t->scratch, r->bytes);
        r->count = 0;
        r->bytes = 0;
    }
    if (r->lost_n) {
        fh_journal_append_mark(r->t->j, FH_JR_LOST, r->t->session, r->lost_first, r->lost_n);
        r->lost_n = 0;
    }
}

static void add_msg(run_t *r, uint64_t seq, const uint8_t *m, size_t n)
{
    if (r->lost_n || (r->count && (r->count == 0xFFFE || r->bytes + 2 + n > sizeof r->t->scratch ||
                                   r->first + r->count != seq)))
        flush(r);
    if (!r->count)
        r->first = seq;
    fh_put_be16(r->t->scratch + r->bytes, (uint16_t)n);
    memcpy(r->t->scratch + r->bytes + 2, m, n);
    r->bytes += 2 + n;
    r->count++;
}

static void add_lost(run_t *r, uint64_t seq)
{
    if (r->count || (r->lost_n && r->lost_first + r->lost_n != seq))
        flush(r);
    if (!r->lost_n)
        r->lost_first = seq;
    r->lost_n++;
}

/* The hold-back slot of s if it was drained since the last call (the feed clears seq when it applies a held
 * message and keeps its bytes; the tee clears len once it has taken them). */
static fh_mold_slot_t *drained(fh_mold_feed_t *f, uint64_t s)
{
    fh_mold_slot_t *sl = f->hold ? &f->hold[s & f->hold_mask] : NULL;
    return sl && sl->seq == 0 && sl->len ? sl : NULL;
}

/* The slot of s holds a later message of the same index (s + k * hold, still held): s was lost, or drained
 * and its slot taken again within the same call of the feed (a datagram beyond the hold-back buffer). */
static int taken(const fh_mold_feed_t *f, uint64_t s)
{
    const fh_mold_slot_t *sl = f->hold ? &f->hold[s & f->hold_mask] : NULL;
    return sl && sl->seq > s && !((sl->seq - s) & f->hold_mask);
}

/* Journal [t->next, f->next_seq) of the current session: from the datagram d (its blocks, sequence dseq,
 * `whole` of them) or from drained hold-back slots; what is neither was lost, as the feed counted (`lost`
 * of them). Where the sequences that are neither outnumber the feed's lost, the ones whose slot was taken
 * again cannot be told apart: they are journaled FH_JR_MISSED. */
static void rebuild(fh_journal_tee_t *t, fh_mold_feed_t *f, const uint8_t *d, uint64_t dseq, const uint8_t *const *dm,
                    const uint16_t *dn, unsigned whole, uint64_t lost)
{
    uint64_t neither = 0;
    for (uint64_t s = t->next; s < f->next_seq; s++)
        if (!(d && dseq && s >= dseq && s - dseq < whole) && !drained(f, s))
            neither++;
    int ambiguous = neither > lost;
    run_t r = { .t = t };
    for (uint64_t s = t->next; s < f->next_seq; s++) {
        fh_mold_slot_t *sl = drained(f, s);
        if (d && dseq && s >= dseq && s - dseq < whole) { /* held and drained in this call, or applied directly */
            add_msg(&r, s, dm[s - dseq], dn[s - dseq]);
            if (sl)
                sl->len = 0;
        } else if (sl) {
            add_msg(&r, s, sl->data, sl->len);
            sl->len = 0;
        } else if (ambiguous && taken(f, s)) {
            flush(&r);
            fh_journal_append_mark(t->j, FH_JR_MISSED, t->session, s, 1);
            t->missed++;
        } else {
            add_lost(&r, s);
        }
    }
    flush(&r);
    t->next = f->next_seq;
}

/* A session change: the feed gave up the old session's gap (draining what it held, losing the rest) before
 * it forgot it. Journal that from t->next on: drained slots and `lost` lost sequences, in order. */
static void finish_old_session(fh_journal_tee_t *t, fh_mold_feed_t *f, uint64_t lost)
{
    run_t r = { .t = t };
    uint64_t s = t->next;
    for (;; s++) {
        fh_mold_slot_t *sl = drained(f, s);
        if (sl) {
            add_msg(&r, s, sl->data, sl->len);
            sl->len = 0;
        } else if (lost) {
            add_lost(&r, s);
            lost--;
        } else {
            break;
        }
    }
    flush(&r);
}

void fh_journal_tee_slow(fh_journal_tee_t *t, fh_mold_feed_t *f, const uint8_t *d, size_t len)
{
    static const uint8_t *dm[FH_JOURNAL_MAX_BODY / 2];
    static uint16_t dn[FH_JOURNAL_MAX_BODY / 2];
    fh_mold_hdr_t h = { .sequence = 0, .count = 0 };
    unsigned whole = 0;
    if (d && fh_mold_parse_hdr(d, len, &h))
        d = NULL; /* malformed: the feed applied nothing of it */
    if (d && h.count != FH_MOLD_HEARTBEAT && h.count != FH_MOLD_END_OF_SESSION) {
        fh_blocks_t w = { d + FH_MOLD_HDR_LEN, d + len };
        const uint8_t *m;
        size_t n;
        while (whole < h.count && fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK) {
            dm[whole] = m;
            dn[whole] = (uint16_t)n;
            whole++;
        }
    }
    if (d && h.sequence == 0) { /* unsequenced: applied as it came, outside the sequence */
        if (whole) {
            size_t end = (size_t)(dm[whole - 1] + dn[whole - 1] - (d + FH_MOLD_HDR_LEN));
            fh_journal_append_msgs(t->j, (const char *)d, 0, (uint16_t)whole, d + FH_MOLD_HDR_LEN, end);
        }
        return;
    }
    if (f->have_session && (!t->have_session || memcmp(f->session, t->session, FH_MOLD_SESSION_LEN))) {
        /* A new session (the first, or a change): the new one starts at the datagram that opened it. */
        if (t->have_session) {
            finish_old_session(t, f, f->counters[FH_M_lost] - t->lost);
            if (t->end_pending) /* the old session's end, after its last messages */
                fh_journal_append_mark(t->j, FH_JR_END, t->session, t->end_seq, 0);
            t->end_pending = 0;
        }
        memcpy(t->session, f->session, FH_MOLD_SESSION_LEN);
        t->have_session = 1;
        t->next = d && h.sequence && !memcmp(d, f->session, FH_MOLD_SESSION_LEN) && h.sequence <= f->next_seq
                      ? h.sequence
                      : f->next_seq;
        t->lost = f->counters[FH_M_lost];
        rebuild(t, f, d, h.sequence, dm, dn, whole, 0);
        if (f->hold) /* slots the feed forgot with the old session keep their len: none may look drained */
            for (uint64_t s = 0; s <= f->hold_mask; s++)
                if (f->hold[s].seq == 0)
                    f->hold[s].len = 0;
    } else if (t->have_session) {
        rebuild(t, f, d, h.sequence, dm, dn, whole, f->counters[FH_M_lost] - t->lost);
    }
    t->lost = f->counters[FH_M_lost];
    t->held = f->counters[FH_M_held];
    if (d && t->have_session && h.sequence && !memcmp(d, t->session, FH_MOLD_SESSION_LEN)) {
        if (h.count == FH_MOLD_HEARTBEAT && h.sequence == t->next)
            fh_journal_append_mark(t->j, FH_JR_HEARTBEAT, t->session, h.sequence, 0);
        else if (h.count == FH_MOLD_END_OF_SESSION && !t->end_pending) {
            t->end_pending = 1;
            t->end_seq = h.sequence;
        }
    }
    if (t->end_pending && t->next >= t->end_seq) {
        fh_journal_append_mark(t->j, FH_JR_END, t->session, t->end_seq, 0);
        t->end_pending = 0;
    }
}
