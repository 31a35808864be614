/* A MoldUDP64 feed's sequencing, arbitration and gap recovery across its lines (fh/mold.h). */
#include <errno.h>
#include <stdlib.h>

#include "fh/mold.h"

static const char *const names[FH_M_COUNT] = {
#define FH_X(n) #n,
    FH_MOLD_COUNTERS(FH_X)
#undef FH_X
};

const char *fh_mold_counter_name(int c) { return c >= 0 && c < FH_M_COUNT ? names[c] : NULL; }

const char *fh_line_state_name(int s)
{
    static const char *const n[] = { "down", "live", "stale" };
    return s >= 0 && s < 3 ? n[s] : NULL;
}

const char *fh_feed_state_name(int s)
{
    static const char *const n[] = { "waiting", "live", "recovering", "stale", "ended" };
    return s >= 0 && s < 5 ? n[s] : NULL;
}

void fh_mold_cfg_defaults(fh_mold_cfg_t *c, uint64_t ticks_per_ms)
{
    memset(c, 0, sizeof *c);
    c->gap_wait = 2 * ticks_per_ms;
    c->request_timeout = 100 * ticks_per_ms;
    c->retries = 4;
    c->request_max = 1000;
    c->max_outstanding = 4;
    c->hold = 1u << 20;
    c->policy = FH_MOLD_RESUME;
    c->line_stale = 3000 * ticks_per_ms;
    c->line_down = 10000 * ticks_per_ms;
    c->max_ahead = 1u << 20;
    c->confirm = 32;
    c->recover_max = 1000000;
}

/* The consumer of a feed that has none yet: everything is dropped. */
static void none_blocks(void *c, const char *s, uint64_t q, uint32_t n, const uint8_t *p, size_t l)
{
    (void)c, (void)s, (void)q, (void)n, (void)p, (void)l;
}
static void none_apply(void *c, const char *s, uint64_t q, const uint8_t *m, size_t l) { (void)c, (void)s, (void)q, (void)m, (void)l; }
static void none_lost(void *c, const char *s, uint64_t a, uint64_t b) { (void)c, (void)s, (void)a, (void)b; }
static void none_begin(void *c, const char *s) { (void)c, (void)s; }
static void none_end(void *c, const char *s, uint64_t q) { (void)c, (void)s, (void)q; }
static const fh_feed_consumer_t no_consumer = { NULL, none_blocks, none_apply, none_lost, none_begin, none_end,
                                                 NULL, NULL };

/* The consumer checks the framing of what the fast path hands it, with the feed's own table (fh/consumer.h). */
static void set_framer(fh_mold_feed_t *f)
{
    f->consumer_frames = f->out.apply_datagram && f->out.framing && f->out.framing == f->cfg.msg_len;
}

int fh_mold_feed_init(fh_mold_feed_t *f, const fh_mold_cfg_t *cfg)
{
    memset(f, 0, sizeof *f);
    f->out = no_consumer;
    if (!cfg)
        return 0;
    if (cfg->hold && (cfg->hold < 2 || (cfg->hold & (cfg->hold - 1)) || cfg->hold > (1u << 28))) {
        FH_ERR("hold-back buffer of %u messages: must be 0 or a power of two from 2 to 2^28", cfg->hold);
        return -1;
    }
    if (cfg->can_request && (cfg->request_max < 1 || cfg->request_max > 65534)) {
        FH_ERR("%u messages per retransmission request: must be 1 to 65534", cfg->request_max);
        return -1;
    }
    if (cfg->can_request && (cfg->max_outstanding < 1 || cfg->max_outstanding > FH_MOLD_MAX_OUTSTANDING)) {
        FH_ERR("%u outstanding requests: must be 1 to %d", cfg->max_outstanding, FH_MOLD_MAX_OUTSTANDING);
        return -1;
    }
    if (cfg->can_request && !cfg->request_timeout) {
        FH_ERR("a request timeout of 0: give the retransmission server some time (e.g. 100 ms)");
        return -1;
    }
    if (cfg->can_request && !cfg->hold) {
        FH_ERR("retransmission needs a hold-back buffer for what arrives after a gap (hold > 0)");
        return -1;
    }
    if (cfg->policy != FH_MOLD_RESUME && cfg->policy != FH_MOLD_SNAPSHOT) {
        FH_ERR("unknown policy %d after an unrecoverable gap: resume or snapshot", cfg->policy);
        return -1;
    }
    f->cfg = *cfg;
    for (int t = 0; t < 256; t++) { /* the fast path's framing tables (framed_fast) */
        unsigned n = cfg->msg_len ? cfg->msg_len[t] : 0;
        uint8_t be[2] = { (uint8_t)(n >> 8), (uint8_t)n };
        uint16_t raw;
        memcpy(&raw, be, 2);
        f->frame_len[t] = n && n <= 0xFD ? raw : 0x10000u;
        f->frame_adv[t] = (uint8_t)(n && n <= 0xFD ? n + 2 : 0);
        if (f->frame_adv[t] > f->frame_max)
            f->frame_max = f->frame_adv[t];
    }
    set_framer(f);
    if (cfg->hold) {
        void *mem = cfg->hold_mem;
        if (!mem) {
            if (posix_memalign(&mem, 64, (size_t)cfg->hold * sizeof(fh_mold_slot_t))) {
                FH_ERR("no memory for a hold-back buffer of %u messages (%zu MiB)", cfg->hold,
                       ((size_t)cfg->hold * sizeof(fh_mold_slot_t)) >> 20);
                return -1;
            }
            memset(mem, 0, (size_t)cfg->hold * sizeof(fh_mold_slot_t));
            f->own_hold = 1;
        }
        f->hold = mem;
        f->hold_mask = cfg->hold - 1;
    }
    return 0;
}

void fh_mold_feed_free(fh_mold_feed_t *f)
{
    if (f->own_hold)
        free(f->hold);
    f->hold = NULL;
    f->own_hold = 0;
}

void fh_mold_feed_set_consumer(fh_mold_feed_t *f, const fh_feed_consumer_t *c)
{
    f->out = c ? *c : no_consumer;
    set_framer(f);
}

int fh_mold_apply_unsequenced(const uint8_t *d, size_t len, const fh_feed_consumer_t *c, uint64_t *malformed)
{
    fh_mold_hdr_t h;
    if (fh_mold_parse_hdr(d, len, &h))
        goto bad;
    if (h.count == FH_MOLD_HEARTBEAT || h.count == FH_MOLD_END_OF_SESSION)
        return h.count; /* no blocks follow */
    fh_blocks_t w = { d + FH_MOLD_HDR_LEN, d + len };
    const uint8_t *m;
    size_t n;
    for (unsigned i = 0; i < h.count; i++) {
        if (fh_blocks_next(&w, &m, &n) != FH_BLOCK_OK)
            goto bad;
        c->apply(c->ctx, h.session, 0, m, n);
    }
    return h.count;
bad:
    if (malformed)
        ++*malformed;
    return -1;
}

void fh_mold_feed_resume(fh_mold_feed_t *f, const char session[FH_MOLD_SESSION_LEN], uint64_t next_seq)
{
    memcpy(f->session, session, FH_MOLD_SESSION_LEN);
    f->have_session = 1;
    f->provisional = 0;
    f->fresh_session = 0;
    f->next_seq = f->known_hi = next_seq;
    f->fast = 0; /* state is not current yet: the next datagram takes the full path */
}

int fh_mold_feed_caught_up(const fh_mold_feed_t *f, uint64_t from)
{
    if (f->stale)
        return -1;
    if (f->gap_open || f->snap_pending)
        return 0;
    if (f->next_seq > from || f->have_session > 1) /* applied past it, or a new session followed from its start */
        return 1;
    for (int i = 0; i < FH_MOLD_MAX_LINES; i++)
        if (!((f->cfg.recovery_lines >> i) & 1) && f->line[i].next >= from)
            return 1;
    return 0;
}

void fh_mold_feed_set_snapshot_source(fh_mold_feed_t *f, const fh_snapshot_source_t *s) { f->snap = s; }

size_t fh_mold_request_encode(uint8_t out[20], const fh_mold_request_t *r)
{
    memcpy(out, r->session, FH_MOLD_SESSION_LEN);
    for (int i = 0; i < 8; i++)
        out[10 + i] = (uint8_t)(r->seq >> (56 - 8 * i));
    out[18] = (uint8_t)(r->count >> 8);
    out[19] = (uint8_t)r->count;
    return 20;
}

static inline int state_of(const fh_mold_feed_t *f)
{
    return f->gap_open ? FH_FEED_RECOVERING
         : f->stale    ? FH_FEED_STALE
         : f->ended    ? FH_FEED_ENDED
         : f->have_session ? FH_FEED_LIVE
                           : FH_FEED_WAITING;
}

static void set_state(fh_mold_feed_t *f) { f->state = state_of(f); }

static inline int present(const fh_mold_feed_t *f, uint64_t s)
{
    return f->hold && f->hold[s & f->hold_mask].seq == s;
}

/* Apply the held messages whose turn has come. Returns how many. */
static unsigned drain(fh_mold_feed_t *f)
{
    unsigned n = 0;
    while (f->held_now) {
        fh_mold_slot_t *s = &f->hold[f->next_seq & f->hold_mask];
        if (s->seq != f->next_seq)
            break;
        f->out.apply(f->out.ctx, f->session, f->next_seq, s->data, s->len);
        s->seq = 0;
        f->held_now--;
        f->next_seq++;
        n++;
    }
    f->counters[FH_M_applied] += n;
    return n;
}

static void close_if_filled(fh_mold_feed_t *f)
{
    if (f->gap_open && f->next_seq >= f->known_hi) {
        if (!f->gap_lost) {
            uint64_t t = f->now - f->gap_since;
            f->filled++;
            f->fill_last = t;
            f->fill_total += t;
            if (t > f->fill_max)
                f->fill_max = t;
        }
        f->gap_open = 0;
        f->known_hi = f->next_seq;
        memset(f->req, 0, sizeof f->req);
        f->outstanding = 0;
    }
}

/* Sequences [from, to) will never be delivered: the consumer hears it (the engine marks every book stale:
 * MoldUDP64 does not say which instruments the lost messages touched, and books created from now on start
 * stale too). */
static __attribute__((cold)) void mark_stale(fh_mold_feed_t *f, uint64_t from, uint64_t to)
{
    f->out.lost(f->out.ctx, f->session, from, to);
    f->stale = 1;
    set_state(f);
}

/* The end of the hole at next_seq: the next message present, or known_hi. The scan is bounded by the hold-back
 * buffer's size: every held message lies within hold_mask of next_seq, so with nothing held the hole runs to
 * known_hi, however far that is. */
static uint64_t hole_end(const fh_mold_feed_t *f)
{
    uint64_t to = f->known_hi;
    if (f->held_now) {
        uint64_t lim = f->next_seq + f->hold_mask + 1 < f->known_hi ? f->next_seq + f->hold_mask + 1 : f->known_hi;
        to = f->next_seq + 1;
        while (to < lim && !present(f, to))
            to++;
    }
    return to;
}

/* Skip the hole [next_seq, to): counted lost (and, for the part of a late join's gap from 1, join_lost). */
static void skip_hole(fh_mold_feed_t *f, uint64_t to)
{
    f->counters[FH_M_lost] += to - f->next_seq;
    if (f->next_seq < f->counters[FH_M_joined_at]) /* the part of a late join's gap from 1 that never came */
        f->counters[FH_M_join_lost] += (to < f->counters[FH_M_joined_at] ? to : f->counters[FH_M_joined_at]) - f->next_seq;
    f->next_seq = to;
}

/* Give up the hole at next_seq: skip to the next message present (or to known_hi), mark the books stale,
 * apply what follows in order. may_wait: under FH_MOLD_SNAPSHOT, ask for a snapshot and wait for it
 * instead of skipping (next_seq then stays). Returns the messages applied from the hold. */
static __attribute__((cold)) unsigned lose_hole(fh_mold_feed_t *f, int may_wait)
{
    uint64_t to = hole_end(f);
    if (to <= f->next_seq)
        return 0;
    f->counters[FH_M_unrecoverable]++;
    f->gap_lost = 1;
    mark_stale(f, f->next_seq, to);
    if (may_wait && f->cfg.policy == FH_MOLD_SNAPSHOT && f->snap && !f->snap_pending &&
        f->snap->request(f->snap->ctx, f->session, f->next_seq - 1) == 0) {
        /* Hold on: the snapshot will fill the gap (fh_mold_snapshot_end); what comes meanwhile is held. */
        f->snap_pending = 1;
        return 0;
    }
    skip_hole(f, to);
    unsigned n = drain(f);
    close_if_filled(f);
    return n;
}

/* Give up every hole below `end`. */
static unsigned lose_upto(fh_mold_feed_t *f, uint64_t end)
{
    unsigned n = 0;
    while (f->gap_open && f->next_seq < end && f->next_seq < f->known_hi) {
        uint64_t before = f->next_seq;
        n += lose_hole(f, 1);
        if (f->next_seq == before) /* a snapshot was asked for instead */
            break;
    }
    return n;
}

/* Sequence hi is known to exist (held, or named by a heartbeat as the next to come): what lies between the
 * old high mark and it is missing, a new hole (one more gap). */
static inline void note_known(fh_mold_feed_t *f, uint64_t hi, uint64_t now)
{
    if (f->known_hi < f->next_seq)
        f->known_hi = f->next_seq;
    if (hi <= f->known_hi)
        return;
    if (!f->gap_open) {
        f->gap_open = 1;
        f->gap_lost = 0;
        f->gap_since = now;
    }
    f->counters[FH_M_gaps]++;
    f->counters[FH_M_gap_messages] += hi - f->known_hi;
    f->known_hi = hi;
}

/* The session at `session` is believed: a change (the old one's open gap given up) or the first. Every
 * MoldUDP64 session starts at sequence 1: a first datagram above it is a late join, a gap from 1. */
static __attribute__((cold)) void new_session(fh_mold_feed_t *f, const char *session)
{
    if (f->have_session) {
        f->counters[FH_M_session_changes]++;
        if (f->gap_open) /* the old session's missing messages can no longer be asked for */
            lose_upto(f, f->known_hi);
        if (f->held_now)
            for (uint64_t s = 0; s <= f->hold_mask; s++)
                f->hold[s].seq = 0;
        f->held_now = 0;
        f->gap_open = 0;
        f->snap_pending = 0; /* a snapshot of the old session is moot; the books stay stale until one comes */
        memset(f->req, 0, sizeof f->req);
        f->outstanding = 0;
        for (int i = 0; i < FH_MOLD_MAX_LINES; i++)
            f->line[i].next = 0;
    }
    if (f->have_session) {
        memcpy(f->prev_session, f->session, FH_MOLD_SESSION_LEN);
        f->have_session = 2;
    } else {
        f->have_session = 1;
    }
    memcpy(f->session, session, FH_MOLD_SESSION_LEN);
    f->ended = 0;
    f->next_seq = f->known_hi = 1;
    f->fresh_session = 1;
    f->provisional = 0;
    f->cand_count = f->jump_count = 0;
    f->counters[FH_M_joined_at] = f->counters[FH_M_join_lost] = 0;
}

/* The 10 session bytes at a and b equal: two loads and compares, not a call to memcmp. */
static inline int same_session(const void *a, const void *b)
{
    uint64_t x, y;
    uint16_t u, v;
    memcpy(&x, a, 8), memcpy(&y, b, 8), memcpy(&u, (const char *)a + 8, 2), memcpy(&v, (const char *)b + 8, 2);
    return x == y && u == v;
}

/* A feed line carried `count` sequenced messages from seq: its own health (skipped ahead: lost; below its
 * highest: late). */
static inline void line_carried(fh_mold_line_t *L, uint64_t seq, uint64_t count)
{
    L->messages += count;
    if (FH_UNLIKELY(seq != L->next) && L->next) {
        if (seq > L->next)
            L->lost += seq - L->next;
        else
            L->late += count < L->next - seq ? count : L->next - seq;
    }
    if (seq + count > L->next)
        L->next = seq + count;
}

static inline uint32_t line_bit(int line) { return (unsigned)line < FH_MOLD_MAX_LINES ? 1u << line : 0; }

static inline int confirmed(const fh_mold_feed_t *f, uint32_t lines, uint32_t count)
{
    return !f->cfg.confirm || __builtin_popcount(lines) >= 2 || count >= f->cfg.confirm;
}

/* 1 when the datagram's `count` blocks fill it exactly (and, with cfg.msg_len, each block is non-empty and,
 * when its type is known, of its type's length): the framing is checked whole before anything of the datagram
 * is used (fh_blocks_framed). The full path's check; the fast path leaves it to a consumer that checks framing
 * with the same table (fh/consumer.h), or uses framed_fast. */
static inline int framed(const fh_mold_feed_t *f, const uint8_t *d, size_t len, unsigned count)
{
    return fh_blocks_framed(d + FH_MOLD_HDR_LEN, len - FH_MOLD_HDR_LEN, count, f->cfg.msg_len);
}

/* framed()'s check of the block at offset o (3 bytes or more left): the offset after it, or 0 (misframed). */
static __attribute__((noinline, cold)) size_t block_slow(const uint8_t *ml, const uint8_t *d, size_t len, size_t o)
{
    size_t n = fh_be16(d + o), left = len - o;
    if (n - 1 >= left - 2) /* empty, or past the end */
        return 0;
    if (ml[d[o + 2]] != n && ml[d[o + 2]])
        return 0;
    return o + 2 + n;
}

/* framed() for the fast path (cfg.msg_len set), the same answer: a block of a known type is checked by one
 * compare of its 2 length bytes, as they lie in memory, with its type's (frame_len) and stepped over by the
 * type's length (frame_adv); anything else (an unknown type, a wrong length, an empty block) takes framed()'s
 * check for that one block. The walk runs while 3 bytes are left (offsets, never past len) and counts the
 * blocks: they must be `count` and end exactly at len. */
static inline int framed_fast(const fh_mold_feed_t *f, const uint8_t *d, size_t len, unsigned count)
{
    size_t o = FH_MOLD_HDR_LEN, lim = len - 2; /* o < lim: a length and a type byte to read */
    /* o < lim2: the block at o and, when its type is known, the one after it are readable (two blocks, one
     * bounds check) */
    size_t lim2 = len > 2 + f->frame_max ? len - 2 - f->frame_max : 0;
    unsigned k = 0;
    while (o < lim2) {
        uint16_t raw;
        memcpy(&raw, d + o, 2);
        unsigned t = d[o + 2];
        if (FH_UNLIKELY(raw != f->frame_len[t]))
            break;
        size_t o2 = o + f->frame_adv[t];
        memcpy(&raw, d + o2, 2);
        t = d[o2 + 2];
        k++;
        o = o2;
        if (FH_UNLIKELY(raw != f->frame_len[t]))
            break;
        o += f->frame_adv[t];
        k++;
    }
    while (o < lim) {
        uint16_t raw;
        memcpy(&raw, d + o, 2);
        unsigned t = d[o + 2];
        k++;
        if (FH_LIKELY(raw == f->frame_len[t]))
            o += f->frame_adv[t];
        else if (!(o = block_slow(f->cfg.msg_len, d, len, o)))
            return 0;
    }
    return k == count && o == len;
}

/* A sequenced, well-framed datagram of a session that is not the current one. Returns 1 when it is now
 * believed (the feed has switched to it), 0 when it is to be ignored (counted). */
static __attribute__((cold)) int other_session(fh_mold_feed_t *f, const uint8_t *d, int line,
                                               int recovery)
{
    if (!f->have_session) { /* the first session: nothing to take over; believed, provisionally */
        new_session(f, (const char *)d);
        f->provisional = 1;
        f->sess_lines = line_bit(line);
        f->sess_count = 0;
        return 1;
    }
    if (recovery || (f->have_session > 1 && same_session(f->prev_session, d))) {
        f->counters[FH_M_old_session]++; /* a reply never changes the session; a line behind never goes back */
        return 0;
    }
    if (f->cand_count && same_session(f->cand, d)) {
        f->cand_lines |= line_bit(line);
        f->cand_count++;
    } else {
        memcpy(f->cand, d, FH_MOLD_SESSION_LEN);
        f->cand_lines = line_bit(line);
        f->cand_count = 1;
    }
    if (f->ended || confirmed(f, f->cand_lines, f->cand_count)) {
        int was_provisional = f->provisional;
        uint64_t upto = f->next_seq;
        new_session(f, (const char *)d);
        if (was_provisional) { /* the first session was a stray's: what it applied may be wrong anywhere */
            f->counters[FH_M_unrecoverable]++;
            mark_stale(f, 1, upto);
        }
        return 1;
    }
    f->counters[FH_M_bogus_session]++;
    return 0;
}

/* Sequence seq lies more than max_ahead beyond next_seq. Returns 1 to ignore it (suspect), 0 once the jump
 * is confirmed: by two feed lines or `confirm` datagrams, each within max_ahead of the first one seen. */
static __attribute__((cold)) int suspect(fh_mold_feed_t *f, uint64_t seq, int line, int recovery)
{
    if (!recovery) {
        uint64_t dist = seq > f->jump_seq ? seq - f->jump_seq : f->jump_seq - seq;
        if (f->jump_count && dist <= FH_MOLD_JUMP_NEAR) {
            f->jump_lines |= line_bit(line);
            f->jump_count++;
        } else {
            f->jump_seq = seq;
            f->jump_lines = line_bit(line);
            f->jump_count = 1;
        }
        if (confirmed(f, f->jump_lines, f->jump_count)) {
            f->jump_count = 0;
            return 0;
        }
    }
    f->counters[FH_M_suspect]++;
    return 1;
}

static inline int too_far(const fh_mold_feed_t *f, uint64_t seq)
{
    return FH_UNLIKELY(seq > f->next_seq && f->cfg.max_ahead && seq - f->next_seq > f->cfg.max_ahead);
}

/* A datagram of the provisional first session: evidence for it (a second line, or `confirm` datagrams). */
static __attribute__((noinline, cold)) void evidence(fh_mold_feed_t *f, int line, int recovery)
{
    f->sess_lines |= recovery ? 0 : line_bit(line);
    if (confirmed(f, f->sess_lines, ++f->sess_count))
        f->provisional = 0;
}

/* The first sequence taken of a session: above 1, a late join. */
static inline void first_of_session(fh_mold_feed_t *f, uint64_t seq)
{
    if (FH_UNLIKELY(f->fresh_session)) {
        f->fresh_session = 0;
        if (seq > 1)
            f->counters[FH_M_joined_at] = seq;
    }
}

/* The full path: every datagram the fast path (fh_mold_feed_apply) does not take, and the reference for
 * what it does. */
static inline int apply_full(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line, uint64_t now)
{
    fh_mold_hdr_t h;
    f->now = now;
    f->counters[FH_M_datagrams]++;
    fh_mold_line_t *L = NULL;
    int recovery = 0;
    if ((unsigned)line < FH_MOLD_MAX_LINES) {
        L = &f->line[line];
        L->datagrams++;
        L->last_rx = now ? now : 1;
        recovery = (f->cfg.recovery_lines >> line) & 1;
    }
    /* A sequence in the top quarter of the u64 range is no feed's (a day has well under 2^40 messages): it is
     * refused, so that no sequence arithmetic below can wrap. */
    if (FH_UNLIKELY(fh_mold_parse_hdr(d, len, &h) || (h.sequence >> 62))) {
        f->counters[FH_M_malformed]++;
        return 0;
    }
    int sequenced = h.sequence != 0;
    int control = h.count == FH_MOLD_HEARTBEAT || h.count == FH_MOLD_END_OF_SESSION;
    if (FH_UNLIKELY(sequenced && (!f->have_session || !same_session(f->session, d)))) {
        /* Another session: only a well-framed datagram is evidence of one. */
        if (control ? len != FH_MOLD_HDR_LEN : !framed(f, d, len, h.count)) {
            f->counters[FH_M_malformed]++;
            return 0;
        }
        if (!other_session(f, d, line, recovery))
            return 0;
    }
    if (FH_UNLIKELY(f->provisional) && sequenced)
        evidence(f, line, recovery);
    if (FH_UNLIKELY(control)) {
        /* Both name the sequence of the next message the server will send; neither carries a block. */
        if (len != FH_MOLD_HDR_LEN) {
            f->counters[FH_M_malformed]++;
            return 0;
        }
        if (sequenced && too_far(f, h.sequence) && suspect(f, h.sequence, line, recovery))
            return 0;
        f->counters[h.count == FH_MOLD_HEARTBEAT ? FH_M_heartbeats : FH_M_end_of_session]++;
        if (sequenced) {
            first_of_session(f, h.sequence);
            if (L && !recovery) {
                if (L->next && h.sequence > L->next)
                    L->lost += h.sequence - L->next;
                if (h.sequence < L->next) /* below what this very line has carried: it went backwards */
                    f->counters[FH_M_backwards]++;
                else
                    L->next = h.sequence;
            }
            if (h.sequence > f->next_seq) {
                note_known(f, h.sequence, now);
                if (!f->hold) /* nothing can fill it: given up at once */
                    lose_upto(f, h.sequence);
            }
            if (h.count == FH_MOLD_END_OF_SESSION)
                f->ended = 1, f->provisional = 0; /* a session that ends was one */
        }
        set_state(f);
        return 0;
    }
    if (sequenced && h.sequence + h.count <= f->next_seq && !f->gap_open) {
        /* A copy of what was applied (the B line, most of the time): counted without walking its blocks. */
        f->counters[FH_M_duplicates] += h.count;
        if (L) {
            L->duplicates += h.count;
            if (!recovery)
                line_carried(L, h.sequence, h.count);
        }
        return 0;
    }
    /* The framing, whole, before anything is used: a misframed copy neither applies nor wins its sequences. */
    if (FH_UNLIKELY(!framed(f, d, len, h.count))) {
        f->counters[FH_M_malformed]++;
        return 0;
    }
    if (sequenced) {
        if (too_far(f, h.sequence) && suspect(f, h.sequence, line, recovery))
            return 0;
        first_of_session(f, h.sequence);
    }
    fh_blocks_t w;
    const uint8_t *m;
    size_t n;
    const unsigned whole = h.count;
    const uint8_t *blocks = d + FH_MOLD_HDR_LEN, *end = d + len;
    unsigned applied = 0, direct = 0;
    if (sequenced && L && !recovery)
        line_carried(L, h.sequence, whole);
    if (FH_LIKELY(sequenced && h.sequence == f->next_seq && !f->gap_open)) {
        /* The common case: the next datagram in order. Apply its blocks in one run (the engine prefetches
         * ahead across them). */
        f->out.apply_blocks(f->out.ctx, f->session, h.sequence, whole, blocks, (size_t)(end - blocks));
        applied = direct = whole;
        f->next_seq += whole;
        f->known_hi = f->next_seq;
        if (L)
            L->won += whole;
    } else {
        w = (fh_blocks_t){ blocks, end };
        for (unsigned i = 0; i < whole && fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK; i++) {
            if (!sequenced) {
                f->counters[FH_M_unsequenced]++;
                f->out.apply(f->out.ctx, f->session, 0, m, n);
                applied++;
                direct++;
                continue;
            }
            uint64_t seq = h.sequence + i;
            if (seq < f->next_seq) {
                f->counters[FH_M_duplicates]++;
                if (L)
                    L->duplicates++;
                continue;
            }
            int missing = seq < f->known_hi; /* it fills a known hole */
            if (seq > f->next_seq) {
                if (!f->hold) { /* no hold-back buffer: the gap is given up at once */
                    note_known(f, seq, now);
                    lose_upto(f, seq);
                    if (seq > f->next_seq) { /* a snapshot was asked for instead, and nothing can wait for it */
                        f->counters[FH_M_hold_full]++;
                        continue;
                    }
                } else if (seq - f->next_seq > f->hold_mask) { /* beyond the buffer: give up the oldest holes */
                    f->counters[FH_M_hold_full]++;
                    note_known(f, seq, now);
                    f->snap_pending = 0; /* the buffer cannot wait for a snapshot: resume */
                    /* Each round gives up one hole (progress guaranteed: known_hi >= seq); a hole with
                     * nothing held after it runs to known_hi at once, so the rounds are bounded by the
                     * messages held, not by the distance. */
                    while (seq - f->next_seq > f->hold_mask && f->next_seq < f->known_hi)
                        applied += lose_hole(f, 0);
                    missing = 0;
                }
            }
            if (seq > f->next_seq) { /* hold it until the gap before it is filled */
                fh_mold_slot_t *s = &f->hold[seq & f->hold_mask];
                if (s->seq == seq) {
                    f->counters[FH_M_duplicates]++;
                    if (L)
                        L->duplicates++;
                    continue;
                }
                if (missing) {
                    f->counters[recovery ? FH_M_recovered_retrans : FH_M_recovered_lines]++;
                    if (!present(f, seq - 1) && seq + 1 < f->known_hi && !present(f, seq + 1))
                        f->counters[FH_M_gaps]++; /* it lands inside a hole: two holes now */
                }
                note_known(f, seq, now); /* what lies before it is missing; it is not */
                if (f->known_hi < seq + 1)
                    f->known_hi = seq + 1;
                if (FH_UNLIKELY(n > FH_MOLD_HOLD_MSG)) { /* left missing: asked for again */
                    f->counters[FH_M_hold_oversize]++;
                    continue;
                }
                s->seq = seq;
                s->len = (uint16_t)n;
                memcpy(s->data, m, n);
                f->held_now++;
                f->counters[FH_M_held]++;
                if (L)
                    L->won++;
                continue;
            }
            /* seq == next_seq */
            if (missing && f->gap_open)
                f->counters[recovery ? FH_M_recovered_retrans : FH_M_recovered_lines]++;
            f->out.apply(f->out.ctx, f->session, seq, m, n);
            f->next_seq++;
            applied++;
            direct++;
            if (L)
                L->won++;
            if (f->held_now)
                applied += drain(f);
            if (f->next_seq > f->known_hi)
                f->known_hi = f->next_seq;
            close_if_filled(f);
        }
    }
    f->counters[FH_M_applied] += direct;
    if (FH_UNLIKELY(f->state != FH_FEED_LIVE || f->gap_open))
        set_state(f);
    return (int)applied;
}

/* The full path, then whether the next datagram may take the fast path (fh_mold_feed_t.fast). */
static __attribute__((noinline)) int apply_slow(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line,
                                                uint64_t now)
{
    int r = apply_full(f, d, len, line, now);
    int open = f->cfg.msg_len && f->have_session && !f->provisional && !f->fresh_session && !f->gap_open &&
               !f->snap_pending && f->state == state_of(f);
    f->fast = open ? ~f->cfg.recovery_lines & ((1u << FH_MOLD_MAX_LINES) - 1) : 0; /* the feed lines */
    return r;
}

/* The next datagram in order, on the fast path, once handed over: the feed's position and the line's accounting. */
static inline __attribute__((always_inline)) int took_next(fh_mold_feed_t *f, fh_mold_line_t *L, uint64_t seq,
                                                           unsigned count)
{
    uint64_t next = seq + count;
    if (FH_LIKELY(L->next == seq)) { /* line_carried, the line in order */
        L->messages += count;
        L->next = next;
    } else {
        line_carried(L, seq, count);
    }
    f->next_seq = f->known_hi = next;
    f->counters[FH_M_applied] += count;
    L->won += count;
    return (int)count;
}

/* The next datagram in order, on the fast path, the consumer checking its framing as it walks the blocks
 * (consumer_frames): handed over whole, then counted; refused (misframed, nothing applied), it is counted as
 * apply_full counts it, and the feed's state is what apply_full leaves. Only f, L and count live across the
 * call. */
static __attribute__((noinline)) int apply_next(fh_mold_feed_t *f, const uint8_t *d, size_t len,
                                                fh_mold_line_t *L, uint64_t now, unsigned count)
{
    f->now = now;
    f->counters[FH_M_datagrams]++;
    L->datagrams++;
    L->last_rx = now ? now : 1;
    /* the books' work (a consumer reads nothing of the feed; next_seq is the datagram's sequence) */
    if (FH_UNLIKELY(f->out.apply_datagram(f->out.ctx, f->session, f->next_seq, count, d + FH_MOLD_HDR_LEN,
                                          len - FH_MOLD_HDR_LEN) < 0)) {
        f->counters[FH_M_malformed]++;
        return 0;
    }
    return took_next(f, L, f->next_seq, count);
}

/* The same for a consumer that trusts its blocks: framed here first (framed_fast), the full path when misframed. */
static __attribute__((noinline)) int apply_next_framed(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line,
                                                       uint64_t now)
{
    const uint64_t seq = f->next_seq; /* the datagram's, as fh_mold_feed_apply found */
    const unsigned count = fh_be16(d + 18);
    fh_mold_line_t *L = &f->line[line];
    if (FH_UNLIKELY(!framed_fast(f, d, len, count)))
        return apply_slow(f, d, len, line, now);
    f->now = now;
    f->counters[FH_M_datagrams]++;
    L->datagrams++;
    L->last_rx = now ? now : 1;
    took_next(f, L, seq, count);
    /* the books' work last (a consumer reads nothing of the feed) */
    f->out.apply_blocks(f->out.ctx, f->session, seq, count, d + FH_MOLD_HDR_LEN, len - FH_MOLD_HDR_LEN);
    return (int)count;
}

int fh_mold_feed_apply(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line, uint64_t now)
{
    /* The common cases first, each decided by the datagram's own header against the feed's position: the next
     * datagram in order (applied whole), and a copy of applied ones (the other line's: counted). Nothing else
     * of the feed's state needs a look while `fast` holds (see fh_mold_feed_t); anything else, or a datagram
     * whose framing is wrong, takes the full path, which decides as if the fast path did not exist. */
    if (FH_LIKELY((unsigned)line < FH_MOLD_MAX_LINES) && FH_LIKELY((f->fast >> line) & 1) &&
        FH_LIKELY(len >= FH_MOLD_HDR_LEN)) {
        uint64_t seq = fh_be64(d + 10), next = f->next_seq;
        unsigned count = fh_be16(d + 18);
        if (FH_LIKELY(count - 1u < 0xFFFEu && !(seq >> 62) && same_session(f->session, d))) {
            fh_mold_line_t *L = &f->line[line];
            if (FH_LIKELY(seq == next))
                return FH_LIKELY(f->consumer_frames) ? apply_next(f, d, len, L, now, count)
                                                     : apply_next_framed(f, d, len, line, now);
            if (seq - 1 < next - 1 && count <= next - seq) {
                /* A copy of what was applied (the B line, most of the time): counted without walking its
                 * blocks. */
                f->now = now;
                f->counters[FH_M_datagrams]++;
                L->datagrams++;
                L->last_rx = now ? now : 1;
                f->counters[FH_M_duplicates] += count;
                L->duplicates += count;
                line_carried(L, seq, count);
                return 0;
            }
        }
    }
    return apply_slow(f, d, len, line, now);
}

int fh_mold_feed_poll(fh_mold_feed_t *f, uint64_t now, fh_mold_request_t *out, int cap)
{
    f->now = now;
    for (int i = 0; i < FH_MOLD_MAX_LINES; i++) {
        fh_mold_line_t *L = &f->line[i];
        if ((f->cfg.recovery_lines >> i) & 1)
            continue;
        uint64_t quiet = now - L->last_rx;
        L->state = !L->last_rx                                   ? FH_LINE_DOWN
                 : f->cfg.line_down && quiet >= f->cfg.line_down ? FH_LINE_DOWN
                 : f->cfg.line_stale && quiet >= f->cfg.line_stale ? FH_LINE_STALE
                                                                    : FH_LINE_LIVE;
    }
    int nout = 0;
    if (!f->gap_open || f->snap_pending) {
        set_state(f);
        return 0;
    }
    const fh_mold_cfg_t *c = &f->cfg;
    /* Requests that are answered (or whose range was given up) free their place. */
    for (int i = 0; i < FH_MOLD_MAX_OUTSTANDING; i++) {
        fh_mold_req_state_t *r = &f->req[i];
        if (r->count && r->seq + r->count <= f->next_seq) {
            r->count = 0;
            f->outstanding--;
        }
    }
    /* Timeouts: resend with a doubled timeout, or give the range up. */
    for (int i = 0; i < FH_MOLD_MAX_OUTSTANDING && f->gap_open; i++) {
        fh_mold_req_state_t *r = &f->req[i];
        if (!r->count || now < r->due)
            continue;
        if (r->seq + r->count <= f->next_seq) { /* given up by an earlier request of this loop */
            r->count = 0;
            f->outstanding--;
            continue;
        }
        if (r->tries > c->retries) {
            uint64_t end = r->seq + r->count;
            f->counters[FH_M_request_timeouts]++;
            r->count = 0;
            f->outstanding--;
            lose_upto(f, end);
            continue;
        }
        uint64_t from = r->seq > f->next_seq ? r->seq : f->next_seq;
        if (nout < cap) {
            out[nout] = (fh_mold_request_t){ .seq = from, .count = (uint16_t)(r->seq + r->count - from) };
            memcpy(out[nout].session, f->session, FH_MOLD_SESSION_LEN);
            nout++;
            r->tries++;
            r->timeout *= 2;
            r->due = now + r->timeout;
            f->counters[FH_M_request_retries]++;
            f->counters[FH_M_requests]++;
            f->counters[FH_M_request_messages] += r->seq + r->count - from;
        }
    }
    if (f->gap_open && now - f->gap_since >= c->gap_wait) {
        uint64_t missing = f->known_hi - f->next_seq - f->held_now;
        if (!c->can_request || (c->recover_max && missing > c->recover_max)) {
            lose_upto(f, f->known_hi); /* nothing to ask, or too much: a snapshot or stale books */
        } else {
            /* New requests for the holes no request covers, in order, a bounded scan. */
            uint64_t s = f->next_seq, budget = 1u << 16;
            while (s < f->known_hi && f->outstanding < c->max_outstanding && nout < cap && budget--) {
                if (present(f, s)) {
                    s++;
                    continue;
                }
                int covered = -1;
                for (int i = 0; i < FH_MOLD_MAX_OUTSTANDING; i++)
                    if (f->req[i].count && f->req[i].seq <= s && s < f->req[i].seq + f->req[i].count)
                        covered = i;
                if (covered >= 0) {
                    s = f->req[covered].seq + f->req[covered].count;
                    continue;
                }
                uint64_t h = s;
                while (s < f->known_hi && !present(f, s) && s - h < c->request_max)
                    s++;
                int slot = 0;
                while (f->req[slot].count)
                    slot++;
                f->req[slot] = (fh_mold_req_state_t){ .seq = h, .count = (uint32_t)(s - h), .tries = 1,
                                                      .timeout = c->request_timeout, .due = now + c->request_timeout };
                f->outstanding++;
                out[nout] = (fh_mold_request_t){ .seq = h, .count = (uint16_t)(s - h) };
                memcpy(out[nout].session, f->session, FH_MOLD_SESSION_LEN);
                nout++;
                f->counters[FH_M_requests]++;
                f->counters[FH_M_request_messages] += s - h;
            }
        }
    }
    /* A range given up later in this same poll (another request's retries ran out, recover_max) is not asked
     * for: such requests are trimmed or dropped, and not counted as sent (found by fuzz_feed). */
    int kept = 0;
    for (int i = 0; i < nout; i++) {
        uint64_t end = out[i].seq + out[i].count;
        if (end <= f->next_seq) {
            f->counters[FH_M_requests]--;
            f->counters[FH_M_request_messages] -= out[i].count;
            continue;
        }
        if (out[i].seq < f->next_seq) {
            f->counters[FH_M_request_messages] -= f->next_seq - out[i].seq;
            out[i].count = (uint16_t)(end - f->next_seq);
            out[i].seq = f->next_seq;
        }
        out[kept++] = out[i];
    }
    set_state(f);
    return kept;
}

/* ---- snapshots ---------------------------------------------------------------------------------------- */

void fh_mold_snapshot_begin(fh_mold_feed_t *f)
{
    f->out.snapshot_begin(f->out.ctx, f->session); /* the engine: books cleared, stale until the end */
}

void fh_mold_snapshot_apply(fh_mold_feed_t *f, const uint8_t *msg, size_t len)
{
    f->out.apply(f->out.ctx, f->session, 0, msg, len);
}

void fh_mold_snapshot_end(fh_mold_feed_t *f, uint64_t seq)
{
    /* The snapshot holds every message up to seq: skip those (held ones included), apply what follows. */
    uint64_t too_old = seq + 1 < f->next_seq ? f->next_seq - seq - 1 : 0;
    if (seq + 1 > f->next_seq) {
        if (f->held_now && seq + 1 - f->next_seq > f->hold_mask) { /* the whole buffer: one pass over it */
            for (uint64_t s = 0; s <= f->hold_mask; s++)
                if (f->hold[s].seq && f->hold[s].seq <= seq) {
                    f->hold[s].seq = 0;
                    f->held_now--;
                }
        } else {
            for (uint64_t s = f->next_seq; s <= seq && f->held_now; s++)
                if (present(f, s)) {
                    f->hold[s & f->hold_mask].seq = 0;
                    f->held_now--;
                }
        }
        f->next_seq = seq + 1;
        if (f->known_hi < f->next_seq)
            f->known_hi = f->next_seq;
    }
    f->out.snapshot_end(f->out.ctx, f->session, seq); /* the engine: every book live again */
    f->stale = 0;
    f->snap_pending = 0;
    f->counters[FH_M_snapshots]++;
    if (too_old) { /* messages after the snapshot were applied before it cleared the books: lost */
        f->counters[FH_M_unrecoverable]++;
        f->counters[FH_M_lost] += too_old;
        mark_stale(f, seq + 1, seq + 1 + too_old);
    }
    drain(f);
    close_if_filled(f);
    set_state(f);
}

void fh_mold_snapshot_failed(fh_mold_feed_t *f)
{
    if (!f->snap_pending)
        return;
    f->snap_pending = 0;
    /* The hole was counted unrecoverable and the books marked stale when the snapshot was asked for: skip it
     * now (lost) and apply what is held after it; later holes go their usual way. */
    uint64_t to = hole_end(f);
    if (to > f->next_seq)
        skip_hole(f, to);
    drain(f);
    close_if_filled(f);
    set_state(f);
}
