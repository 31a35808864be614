/* The standby host's data plane: follow the standby's journal, hold the own lines back, take them over at
 * promotion. The contract is in standby.h; docs/replication.md tells the whole failover. */
#define _GNU_SOURCE
#include "standby.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fh/journal_writer.h"
#include "fh/shm.h"

typedef struct slot {
    uint32_t len;
    uint16_t line;
    uint16_t pad;
    uint64_t at; /* TSC of its arrival: how long the journal has left it uncovered (fh_standby_currency) */
    uint8_t d[FH_STANDBY_SLOT - 16];
} slot_t;
_Static_assert(sizeof(slot_t) == FH_STANDBY_SLOT, "a held datagram's slot");

struct fh_standby {
    char path[4096];
    fh_journal_reader_t jr;
    int joined;
    uint64_t pos, next_join, tsc_hz;
    /* the journal recreated (its fh-replicate restarted, fh run supervising it): followed again from its oldest,
     * its records already applied skipped (a record across the point: its tail) */
    uint64_t ino, next_check, rejoins, skipped, snapshots;
    int rejoined;
    fh_engine_t *e;
    fh_journal_tee_t *tee;
    /* what the journal has given: the session and the sequence after its last message */
    char session[FH_MOLD_SESSION_LEN], prev_session[FH_MOLD_SESSION_LEN];
    int have_session, have_prev;
    uint64_t next_seq;
    /* the hold-back ring: [head, tail) */
    slot_t *ring;
    uint64_t head, tail;
    uint32_t cap, mask;
    /* counters */
    uint64_t records, messages, holes, overruns, corrupt, other;
    uint64_t held[FH_MOLD_MAX_LINES], released[FH_MOLD_MAX_LINES], overwritten[FH_MOLD_MAX_LINES];
    uint64_t too_big[FH_MOLD_MAX_LINES];
    uint64_t replayed, replay_applied;
    int promote_req, mark_seen, promoted; /* promote_req: SIGUSR1; mark_seen: FH_JR_PROMOTED read */
    uint64_t epoch, promoted_ns, first_own_ns, resumed_seq;
    uint64_t slack_tsc; /* FH_SHM_STANDBY_SLACK_NS in TSC ticks */
    fh_journal_rec_t rec;
    uint8_t body[FH_JOURNAL_MAX_BODY];
};

static uint64_t realtime_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

size_t fh_standby_ring_bytes(uint32_t hold) { return (size_t)hold * sizeof(slot_t); }

fh_standby_t *fh_standby_open(const char *journal, uint32_t hold, void *ring_mem, fh_engine_t *e,
                              fh_journal_tee_t *tee, uint64_t tsc_hz)
{
    if (!hold || (hold & (hold - 1))) {
        fprintf(stderr, "fh-dataplane: --standby-hold %u: a power of two (datagrams held back while standby)\n", hold);
        return NULL;
    }
    if (!ring_mem) {
        fprintf(stderr, "fh-dataplane: --standby: no hold-back ring given\n");
        return NULL;
    }
    if (strlen(journal) >= sizeof(((fh_standby_t *)0)->path)) {
        fprintf(stderr, "fh-dataplane: --standby %s: path too long\n", journal);
        return NULL;
    }
    fh_standby_t *s = calloc(1, sizeof *s); /* the follower's state (a record buffer of 64 KiB): not shared */
    if (!s) {
        fprintf(stderr, "fh-dataplane: --standby: out of memory\n");
        return NULL;
    }
    s->ring = ring_mem;
    strcpy(s->path, journal);
    s->cap = hold, s->mask = hold - 1;
    s->e = e, s->tee = tee, s->tsc_hz = tsc_hz;
    s->slack_tsc = (uint64_t)((double)tsc_hz * (double)FH_SHM_STANDBY_SLACK_NS / 1e9);
    return s;
}

void fh_standby_close(fh_standby_t *s)
{
    if (!s)
        return;
    if (s->joined)
        fh_journal_leave(&s->jr);
    free(s);
}

void fh_standby_promote(fh_standby_t *s) { s->promote_req = 1; }

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Has the journal covered every message of this datagram? (its session's sequence after it is not beyond
 * the journal's; a datagram of the session before the journal's last change is covered as a whole) Or is
 * there nothing in it the feed could take at promotion: not a MoldUDP64 header, or the heartbeat or end of a
 * session other than the journal's? Such a datagram is never covered otherwise, and the release stops at the
 * first one that is not: it would keep every datagram after it held until the ring is full (each then
 * counted overwritten, as if lost) and have the whole ring replayed at promotion. */
static int covered(const fh_standby_t *s, const slot_t *sl)
{
    if (sl->len < FH_MOLD_HDR_LEN)
        return 1;
    uint32_t count = (uint32_t)sl->d[18] << 8 | sl->d[19];
    if (!s->have_session)
        return 0;
    if (s->have_prev && !memcmp(sl->d, s->prev_session, FH_MOLD_SESSION_LEN))
        return 1;
    if (memcmp(sl->d, s->session, FH_MOLD_SESSION_LEN))
        return count == 0 || count == 0xFFFF;
    uint64_t seq = be64(sl->d + 10);
    if (count == 0xFFFF) /* end of session */
        count = 0;
    return seq + count <= s->next_seq;
}

static void release_covered(fh_standby_t *s)
{
    while (s->head < s->tail) {
        const slot_t *sl = &s->ring[s->head & s->mask];
        if (!covered(s, sl))
            break;
        s->released[sl->line]++;
        s->head++;
    }
}

void fh_standby_hold(fh_standby_t *s, const uint8_t *d, size_t len, int line, uint64_t now)
{
    unsigned l = (unsigned)line < FH_MOLD_MAX_LINES ? (unsigned)line : 0;
    if (FH_UNLIKELY(len > sizeof s->ring[0].d)) {
        s->too_big[l]++;
        return;
    }
    if (FH_UNLIKELY(s->tail - s->head == s->cap)) {
        release_covered(s);
        if (s->tail - s->head == s->cap) { /* the oldest goes: its messages are a gap at promotion, if uncovered */
            s->overwritten[s->ring[s->head & s->mask].line]++;
            s->head++;
        }
    }
    slot_t *sl = &s->ring[s->tail & s->mask];
    sl->len = (uint32_t)len;
    sl->line = (uint16_t)l;
    sl->at = now;
    memcpy(sl->d, d, len);
    s->tail++;
    s->held[l]++;
}

/* As fh-replicate's standby does, and as the primary's feed did when it gave messages up (mold.c): every book
 * stale, and the books created from now on, with the same events. */
static void stale_all(fh_standby_t *s)
{
    s->holes++;
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++)
        fh_engine_set_status(s->e, (uint16_t)loc, FH_BOOK_STALE, NULL);
    fh_engine_set_new_book_status(s->e, FH_BOOK_STALE);
}

static void set_session(fh_standby_t *s, const char *session, uint64_t next)
{
    if (s->have_session && memcmp(s->session, session, FH_MOLD_SESSION_LEN)) {
        memcpy(s->prev_session, s->session, FH_MOLD_SESSION_LEN);
        s->have_prev = 1;
    }
    memcpy(s->session, session, FH_MOLD_SESSION_LEN);
    s->have_session = 1;
    s->next_seq = next;
    if (s->tee) { /* the own journal goes on from here at promotion */
        memcpy(s->tee->session, session, FH_MOLD_SESSION_LEN);
        s->tee->have_session = 1;
        s->tee->next_seq = next;
    }
}

static int same_session(const fh_standby_t *s, const char *session)
{
    return s->have_session && !memcmp(s->session, session, FH_MOLD_SESSION_LEN);
}

/* FH_JR_SNAPSHOT: JOURNAL.snapshot into the engine; the records after it go on from its sequence (what the
 * journal holds before it is skipped, as after a recreated journal). A snapshot that does not load: every book
 * stale, said once. */
static void load_snapshot(fh_standby_t *s, const fh_journal_rec_t *r)
{
    char path[sizeof s->path + 16];
    snprintf(path, sizeof path, "%s.snapshot", s->path);
    fh_snapshot_meta_t meta;
    if (fh_engine_snapshot_load(s->e, path, &meta)) {
        fprintf(stderr, "fh-dataplane: standby: the primary's snapshot %s: %s: books stale\n", path, fh_errmsg());
        stale_all(s);
        return;
    }
    unlink(path);
    s->snapshots++;
    s->rejoined = 1; /* skip what the snapshot holds */
    set_session(s, meta.session, meta.next_seq);
    fprintf(stderr, "fh-dataplane: standby: loaded the primary's snapshot %s (%" PRIu64 " orders, %u books, complete "
                    "to sequence %" PRIu64 ")\n", path, meta.orders, meta.books, r->seq - 1);
}

static void apply_record(fh_standby_t *s, const fh_journal_rec_t *r, const uint8_t *body)
{
    s->records++;
    if (s->rejoined && r->kind == FH_JR_MSGS && r->seq && same_session(s, r->session) && r->seq < s->next_seq) {
        if (r->seq + r->count <= s->next_seq) { /* applied before the journal was recreated */
            s->skipped += r->count;
            return;
        }
        const uint8_t *m[1024]; /* across the point: the messages after it */
        uint16_t ml[1024];
        uint32_t nb = fh_journal_blocks(r, body, m, ml, 1024), k = (uint32_t)(s->next_seq - r->seq);
        if (nb == r->count && k < nb) {
            const uint8_t *from = m[k] - 2;
            size_t blen = (size_t)(body + r->arg - from);
            if (s->tee)
                fh_journal_append_msgs(s->tee->j, r->session, s->next_seq, (uint16_t)(nb - k), from, blen);
            fh_engine_apply_blocks(s->e, from, blen);
            s->messages += nb - k, s->skipped += k;
            set_session(s, r->session, r->seq + r->count);
        }
        return;
    }
    switch (r->kind) {
    case FH_JR_MSGS:
        if (r->seq && same_session(s, r->session) && r->seq > s->next_seq) /* a jump: the shipper was overrun */
            stale_all(s);
        if (s->tee)
            fh_journal_append_msgs(s->tee->j, r->session, r->seq, r->count, body, r->arg);
        fh_engine_apply_blocks(s->e, body, r->arg);
        s->messages += r->count;
        if (r->seq)
            set_session(s, r->session, r->seq + r->count);
        return;
    case FH_JR_LOST:
    case FH_JR_MISSED:
        stale_all(s);
        if (s->tee)
            fh_journal_append_mark(s->tee->j, r->kind, r->session, r->seq, r->arg);
        {
            uint64_t after = r->seq + (r->kind == FH_JR_LOST ? r->arg : 1);
            if (!same_session(s, r->session) || after > s->next_seq)
                set_session(s, r->session, after);
        }
        return;
    case FH_JR_HEARTBEAT:
        if (s->tee)
            fh_journal_append_mark(s->tee->j, r->kind, r->session, r->seq, r->arg);
        if (!same_session(s, r->session) || r->seq > s->next_seq)
            set_session(s, r->session, r->seq);
        return;
    case FH_JR_END:
        if (s->tee)
            fh_journal_append_mark(s->tee->j, r->kind, r->session, r->seq, r->arg);
        return;
    case FH_JR_PROMOTED:
        s->epoch = r->arg;
        s->mark_seen = 1;
        return;
    case FH_JR_SNAPSHOT: /* a late join: the primary's snapshot in place of everything before (cold, once) */
        load_snapshot(s, r);
        return;
    default:
        s->other++;
        return;
    }
}

static void promote(fh_standby_t *s, fh_mold_feed_t *feed, uint64_t now, fh_standby_apply_fn apply, void *ctx)
{
    s->promoted_ns = realtime_ns();
    if (s->have_session) {
        fh_mold_feed_resume(feed, s->session, s->next_seq);
        s->resumed_seq = s->next_seq;
    }
    uint64_t n = s->tail - s->head;
    fh_engine_batch_begin_at(s->e, now, now);
    for (; s->head < s->tail; s->head++) {
        const slot_t *sl = &s->ring[s->head & s->mask];
        int a = apply(ctx, sl->d, sl->len, sl->line, now);
        if (a > 0)
            s->replay_applied += (uint64_t)a;
        s->replayed++;
        if (!s->first_own_ns && a > 0)
            s->first_own_ns = realtime_ns();
    }
    fh_engine_batch_end(s->e);
    s->promoted = 1;
    char sess[FH_MOLD_SESSION_LEN + 1] = { 0 };
    memcpy(sess, s->session, FH_MOLD_SESSION_LEN);
    for (int i = 0; i < FH_MOLD_SESSION_LEN; i++)
        if ((unsigned char)sess[i] < 0x20 || (unsigned char)sess[i] > 0x7e)
            sess[i] = '?';
    fprintf(stderr, "fh-dataplane: promoted (epoch %" PRIu64 "): the journal ended %s%s sequence %" PRIu64 " (%" PRIu64
                    " records, %" PRIu64 " messages followed); %" PRIu64 " held datagrams handed to the feed, %" PRIu64
                    " messages applied from them; taking the lines\n",
            s->epoch, s->have_session ? "at session " : "with no session", s->have_session ? sess : "",
            s->next_seq, s->records, s->messages, n, s->replay_applied);
}

int fh_standby_poll(fh_standby_t *s, fh_mold_feed_t *feed, uint64_t now, uint32_t max_records,
                    fh_standby_apply_fn apply, void *ctx)
{
    if (s->promoted)
        return 1;
    if (!s->joined && now >= s->next_join) {
        int rc = fh_journal_join(&s->jr, s->path);
        if (!rc) {
            struct stat st;
            s->joined = 1;
            s->ino = stat(s->path, &st) ? 0 : (uint64_t)st.st_ino;
            s->pos = fh_journal_oldest(&s->jr);
            if (s->pos && !s->rejoined) { /* it has lapped already: what came before is not here */
                s->overruns++;
                stale_all(s);
            }
            fprintf(stderr, "fh-dataplane: standby: following %s from position %" PRIu64 "\n", s->path, s->pos);
        } else {
            if (rc != -ENOENT && rc != -EAGAIN && !s->next_join)
                fprintf(stderr, "fh-dataplane: --standby %s: %s\n", s->path,
                        rc == -EPROTO ? "not an fh journal of this layout version" : strerror(-rc));
            s->next_join = now + s->tsc_hz / 10;
        }
    }
    if (s->joined) {
        for (uint32_t i = 0; i < max_records && !s->mark_seen; i++) {
            uint64_t at = s->pos;
            int r = fh_journal_next(&s->jr, &s->pos, &s->rec, s->body);
            if (r == FH_JOURNAL_NONE) {
                /* idle: every 100 ms, has the journal been recreated (the standby's fh-replicate restarted)? */
                struct stat st;
                if (now >= s->next_check) {
                    s->next_check = now + s->tsc_hz / 10;
                    if (!stat(s->path, &st) && (uint64_t)st.st_ino != s->ino &&
                        fh_journal_writer_alive(s->path) == 1) {
                        fprintf(stderr, "fh-dataplane: standby: %s was recreated (its fh-replicate restarted): "
                                        "following the new one, what was applied skipped\n", s->path);
                        fh_journal_leave(&s->jr);
                        s->joined = 0, s->next_join = 0, s->rejoined = 1, s->rejoins++;
                    }
                }
                break;
            }
            if (r == FH_JOURNAL_OVERRUN) {
                s->overruns++;
                stale_all(s);
                continue;
            }
            if (r == FH_JOURNAL_CORRUPT) { /* a position no record has: go on from the oldest, the books stale */
                if (!s->corrupt++)
                    fprintf(stderr, "fh-dataplane: --standby %s: position %" PRIu64 " is not on a record (was the "
                                    "journal recreated?): going on from its oldest, books stale\n", s->path, at);
                s->pos = fh_journal_oldest(&s->jr);
                stale_all(s);
                break;
            }
            apply_record(s, &s->rec, s->body);
        }
        release_covered(s);
    }
    /* the mark: every record before it is applied; SIGUSR1: once the journal is read to its head */
    if (s->mark_seen || (s->promote_req && (!s->joined || fh_journal_head(&s->jr) == s->pos))) {
        promote(s, feed, now, apply, ctx);
        return 1;
    }
    return 0;
}

uint32_t fh_standby_currency(const fh_standby_t *s, uint64_t now, uint64_t *behind)
{
    *behind = 0;
    if (s->promoted)
        return FH_SHM_STANDBY_NO;
    if (s->head == s->tail) /* every datagram held was covered (released), or none came (tail: every one held) */
        return s->tail ? FH_SHM_STANDBY_CURRENT : FH_SHM_STANDBY_NO_LINES;
    /* the oldest held datagram is the oldest the journal has not covered (release_covered stops at it); a journal
     * that has given nothing yet is behind whatever the lines delivered, however recently */
    if (s->have_session && now - s->ring[s->head & s->mask].at <= s->slack_tsc)
        return FH_SHM_STANDBY_CURRENT;
    /* the messages the lines have delivered past the journal's end, by the newest held datagram: of the
     * journal's session, its end less the journal's; of another session (the journal not there yet), all of it */
    const slot_t *sl = &s->ring[(s->tail - 1) & s->mask];
    if (sl->len >= FH_MOLD_HDR_LEN) {
        uint32_t count = (uint32_t)sl->d[18] << 8 | sl->d[19];
        uint64_t end = be64(sl->d + 10) + (count == 0xFFFF ? 0 : count);
        uint64_t from = s->have_session && !memcmp(sl->d, s->session, FH_MOLD_SESSION_LEN) ? s->next_seq : 1;
        *behind = end > from ? end - from : 0;
    }
    return FH_SHM_STANDBY_BEHIND;
}

void fh_standby_json(const fh_standby_t *s, FILE *out)
{
    uint64_t held = 0, released = 0, overwritten = 0, too_big = 0;
    for (int i = 0; i < FH_MOLD_MAX_LINES; i++)
        held += s->held[i], released += s->released[i], overwritten += s->overwritten[i], too_big += s->too_big[i];
    fprintf(out, "\"standby\": {\"journal\": \"%s\", \"promoted\": %s, \"epoch\": %" PRIu64 ", \"records\": %" PRIu64
                 ", \"messages\": %" PRIu64 ", \"holes\": %" PRIu64 ", \"overruns\": %" PRIu64 ", \"held\": %" PRIu64
                 ", \"released\": %" PRIu64 ", \"overwritten\": %" PRIu64 ", \"too_big\": %" PRIu64
                 ", \"replayed\": %" PRIu64 ", \"replay_applied\": %" PRIu64 ", \"resumed_seq\": %" PRIu64
                 ", \"promoted_ns\": %" PRIu64 ", \"first_own_ns\": %" PRIu64 ", \"rejoins\": %" PRIu64
                 ", \"skipped\": %" PRIu64 ", \"snapshots\": %" PRIu64 ", \"lines\": [",
            s->path, s->promoted ? "true" : "false", s->epoch, s->records, s->messages, s->holes, s->overruns, held,
            released, overwritten, too_big, s->replayed, s->replay_applied, s->resumed_seq, s->promoted_ns,
            s->first_own_ns, s->rejoins, s->skipped, s->snapshots);
    int last = 0;
    for (int i = 0; i < FH_MOLD_MAX_LINES; i++)
        if (s->held[i] || s->too_big[i])
            last = i + 1;
    for (int i = 0; i < last; i++)
        fprintf(out, "%s{\"held\": %" PRIu64 ", \"released\": %" PRIu64 ", \"overwritten\": %" PRIu64
                     ", \"too_big\": %" PRIu64 "}", i ? ", " : "", s->held[i], s->released[i], s->overwritten[i],
                s->too_big[i]);
    fprintf(out, "]}");
}
