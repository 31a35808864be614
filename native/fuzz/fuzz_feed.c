/* Fuzz target: a feed's sequencing and recovery (fh/mold.h) with the book engine as its consumer. Input: a
 * configuration byte string, then a program of operations:
 *
 *   0-2  a raw datagram (length, bytes) on line 0 (A), 1 (B) or 2 (the retransmission server's replies when
 *        the configuration says so)
 *   3-5  a well-formed datagram on line 0-2: one of two sessions, a sequence near the start (or any 64-bit
 *        one, or with bit 3 of the operation byte the next expected or just below it), a count, and
 *        messages from a table of valid ITCH messages (directory, adds, executions,
 *        cancels, deletes, replaces over a few order references), or a heartbeat / end of session
 *   6    the timers: time moves on, fh_mold_feed_poll runs; each request asked for must be in the current
 *        session, for 1..request_max messages, inside the range known to be missing
 *   7    a snapshot answer when one was asked for (begin, a few messages, end at some sequence)
 *
 * Every call goes to a twin feed too, whose datagrams all take the full path (fh_mold_feed_t.fast closed): the
 * two must agree on what they deliver, return and count (the fast path decides as the full path would). With
 * ITCH lengths, the fuzzed feed's fast path leaves a datagram's framing to the engine's walk
 * (fh_engine_apply_datagram), the twin checks it itself (framed()): the same answers, or the two disagree. With
 * bit 6 of the configuration clear, the feed checks ITCH lengths (cfg.msg_len), as the data plane's does. With bit
 * 7 set, the engine's consumer is the data plane's (fh_engine_consumer_staged): a datagram it takes is applied
 * later, behind the walk or by fh_engine_batch_end, which ends a "burst" after each timer operation (6) and at the
 * end; the datagrams' bytes are freed only then (under ASan a run applied after its bytes were freed is caught).
 * After each operation: the hold-back buffer holds at most its size, the requests in flight at most
 * max_outstanding, the sequence to apply never goes back within a session; at the end the books keep
 * their invariants (fuzz.h). Time only moves forward, as the data plane's TSC does. */
#include "fh/itch.h"
#include "fh/mold.h"
#include "fuzz.h"

#define LEVELS 2048
static fh_engine_t *eng;
static void done(void) { fh_engine_destroy(eng); } /* so that LeakSanitizer sees the engine freed */
static uint8_t tab[40][FH_ITCH_MAX_LEN];
static size_t tab_len[40];
static int ntab;

static size_t put_hdr(uint8_t *b, char t, uint16_t loc)
{
    memset(b, 0, FH_ITCH_MAX_LEN);
    b[0] = (uint8_t)t;
    fh_put_be16(b + 1, loc);
    fh_put_be48(b + 5, 34200000000000ull + (uint64_t)ntab);
    return (size_t)fh_itch_len[(uint8_t)t];
}

static void table(void)
{
    static const char *sym[] = { "AAA     ", "BBB     ", "CCC     " };
    for (int i = 0; i < 3; i++) { /* directory */
        size_t n = put_hdr(tab[ntab], 'R', (uint16_t)(i + 1));
        memcpy(tab[ntab] + 11, sym[i], 8);
        tab_len[ntab++] = n;
    }
    for (int r = 1; r <= 12; r++) { /* adds: refs 1..12 over locates 1..3, both sides */
        uint8_t *b = tab[ntab];
        size_t n = put_hdr(b, r % 4 ? 'A' : 'F', (uint16_t)(1 + r % 3));
        fh_put_be64(b + FH_ITCH_OFF_REF, (uint64_t)r);
        b[FH_ITCH_OFF_A_SIDE] = r % 2 ? 'B' : 'S';
        fh_put_be32(b + FH_ITCH_OFF_A_SHARES, (uint32_t)(100 * r));
        memcpy(b + FH_ITCH_OFF_A_STOCK, sym[r % 3], 8);
        fh_put_be32(b + FH_ITCH_OFF_A_PRICE, (uint32_t)(1000000 + (r % 2 ? -1 : 1) * 100 * (r % 5)));
        tab_len[ntab++] = n;
    }
    for (int r = 1; r <= 12; r += 2) { /* executions, cancels, deletes, replaces */
        uint8_t *b = tab[ntab];
        size_t n = put_hdr(b, 'E', (uint16_t)(1 + r % 3));
        fh_put_be64(b + FH_ITCH_OFF_REF, (uint64_t)r);
        fh_put_be32(b + FH_ITCH_OFF_E_SHARES, 50);
        fh_put_be64(b + FH_ITCH_OFF_E_MATCH, (uint64_t)r);
        tab_len[ntab++] = n;
        b = tab[ntab];
        n = put_hdr(b, 'X', (uint16_t)(1 + (r + 1) % 3));
        fh_put_be64(b + FH_ITCH_OFF_REF, (uint64_t)(r + 1));
        fh_put_be32(b + FH_ITCH_OFF_X_SHARES, 30);
        tab_len[ntab++] = n;
        b = tab[ntab];
        n = put_hdr(b, 'D', (uint16_t)(1 + r % 3));
        fh_put_be64(b + FH_ITCH_OFF_REF, (uint64_t)r);
        tab_len[ntab++] = n;
        b = tab[ntab];
        n = put_hdr(b, 'U', (uint16_t)(1 + (r + 1) % 3));
        fh_put_be64(b + FH_ITCH_OFF_REF, (uint64_t)(r + 1));
        fh_put_be64(b + FH_ITCH_OFF_U_NEWREF, (uint64_t)(r + 100));
        fh_put_be32(b + FH_ITCH_OFF_U_SHARES, 70);
        fh_put_be32(b + FH_ITCH_OFF_U_PRICE, 1000100);
        tab_len[ntab++] = n;
    }
}

/* What a feed delivered, as a running hash of every consumer call (kind, sequence, count, bytes). The fuzzed
 * feed delivers to the engine through it; its twin (below) to the hash only. */
typedef struct tap {
    uint64_t h;
    fh_feed_consumer_t next;
} tap_t;
static void mix(tap_t *t, uint64_t v) { t->h = (t->h ^ v) * 0x100000001b3ull; }
static void mix_bytes(tap_t *t, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mix(t, p[i]);
}
static void tap_blocks(void *c, const char *s, uint64_t q, uint32_t n, const uint8_t *p, size_t l)
{
    tap_t *t = c;
    mix(t, 1), mix(t, q), mix(t, n), mix_bytes(t, (const uint8_t *)s, 10), mix_bytes(t, p, l);
    if (t->next.apply_blocks)
        t->next.apply_blocks(t->next.ctx, s, q, n, p, l);
}
/* the same delivery, its framing checked by the engine first (what the fuzzed feed's fast path hands over
 * unchecked): a datagram it refuses was not delivered */
static int tap_datagram(void *c, const char *s, uint64_t q, uint32_t n, const uint8_t *p, size_t l)
{
    tap_t *t = c;
    if (t->next.apply_datagram(t->next.ctx, s, q, n, p, l) < 0)
        return -1;
    mix(t, 1), mix(t, q), mix(t, n), mix_bytes(t, (const uint8_t *)s, 10), mix_bytes(t, p, l);
    return 0;
}
static void tap_apply(void *c, const char *s, uint64_t q, const uint8_t *m, size_t l)
{
    tap_t *t = c;
    mix(t, 2), mix(t, q), mix_bytes(t, (const uint8_t *)s, 10), mix_bytes(t, m, l);
    if (t->next.apply)
        t->next.apply(t->next.ctx, s, q, m, l);
}
static void tap_lost(void *c, const char *s, uint64_t a, uint64_t b)
{
    tap_t *t = c;
    mix(t, 3), mix(t, a), mix(t, b);
    if (t->next.lost)
        t->next.lost(t->next.ctx, s, a, b);
}
static void tap_begin(void *c, const char *s)
{
    tap_t *t = c;
    mix(t, 4);
    if (t->next.snapshot_begin)
        t->next.snapshot_begin(t->next.ctx, s);
}
static void tap_end(void *c, const char *s, uint64_t q)
{
    tap_t *t = c;
    mix(t, 5), mix(t, q);
    if (t->next.snapshot_end)
        t->next.snapshot_end(t->next.ctx, s, q);
}
static void tap_consumer(tap_t *t, fh_feed_consumer_t *out)
{
    /* the fuzzed feed's: the engine's framing (its fast path leaves the check to the engine); the twin's: none */
    *out = (fh_feed_consumer_t){ t, tap_blocks, tap_apply, tap_lost, tap_begin, tap_end,
                                 t->next.apply_datagram ? tap_datagram : NULL, t->next.framing };
}

/* The twin: the same feed, every datagram on the full path (fh_mold_feed_t.fast closed before each), which
 * must decide everything exactly as the fuzzed feed does with its fast path. */
static fh_mold_feed_t twin;
static tap_t tap_f, tap_t2;

/* The two feeds agree on everything observable. */
static void same(const fh_mold_feed_t *f)
{
    FZ_ASSERT(tap_f.h == tap_t2.h);
    FZ_ASSERT(memcmp(f->counters, twin.counters, sizeof f->counters) == 0);
    FZ_ASSERT(memcmp(f->line, twin.line, sizeof f->line) == 0);
    FZ_ASSERT(f->next_seq == twin.next_seq && f->known_hi == twin.known_hi && f->state == twin.state);
    FZ_ASSERT(f->gap_open == twin.gap_open && f->held_now == twin.held_now && f->stale == twin.stale);
    FZ_ASSERT(f->now == twin.now && f->have_session == twin.have_session && f->ended == twin.ended);
    FZ_ASSERT(memcmp(f->session, twin.session, 10) == 0 && f->snap_pending == twin.snap_pending);
}

/* Every call into the feed, in one place (the engine is the feed's consumer: fh_mold_feed_set_consumer), and
 * the same into the twin. */
static int feed_apply(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line, uint64_t now)
{
    twin.fast = 0;
    int r2 = fh_mold_feed_apply(&twin, d, len, line, now);
    int r = fh_mold_feed_apply(f, d, len, line, now);
    FZ_ASSERT(r == r2);
    same(f);
    return r;
}
static int feed_poll(fh_mold_feed_t *f, uint64_t now, fh_mold_request_t *out, int cap)
{
    fh_mold_request_t out2[FH_MOLD_MAX_OUTSTANDING];
    int k2 = fh_mold_feed_poll(&twin, now, out2, cap < FH_MOLD_MAX_OUTSTANDING ? cap : FH_MOLD_MAX_OUTSTANDING);
    int k = fh_mold_feed_poll(f, now, out, cap);
    FZ_ASSERT(k == k2);
    for (int i = 0; i < k; i++)
        FZ_ASSERT(out[i].seq == out2[i].seq && out[i].count == out2[i].count);
    same(f);
    return k;
}
static void snap_begin(fh_mold_feed_t *f) { fh_mold_snapshot_begin(&twin), fh_mold_snapshot_begin(f); }
static void snap_apply(fh_mold_feed_t *f, const uint8_t *m, size_t len)
{
    fh_mold_snapshot_apply(&twin, m, len), fh_mold_snapshot_apply(f, m, len);
}
static void snap_end(fh_mold_feed_t *f, uint64_t seq)
{
    fh_mold_snapshot_end(&twin, seq), fh_mold_snapshot_end(f, seq);
    same(f);
}

/* The snapshot source: says yes or no as configured; the program answers with operation 7. */
static int snap_ok;
static int snap_request(void *ctx, const char session[FH_MOLD_SESSION_LEN], uint64_t after_seq)
{
    (void)ctx, (void)session, (void)after_seq;
    return snap_ok ? 0 : -1;
}
static const fh_snapshot_source_t snap_src = { snap_request, NULL };

/* Operations an input runs at most; so also the datagrams a staged burst can hold. */
#define MAX_OPS 4096

/* A staged burst's datagrams (bit 7): the engine's run may point into them until fh_engine_batch_end. */
static uint8_t *burst[MAX_OPS];
static size_t nburst;

/* A datagram the feed has been given: freed now, or (staged) kept until its burst ends. */
static void keep_or_free(bool staged, uint8_t *d)
{
    if (staged)
        burst[nburst++] = d;
    else
        free(d);
}

/* The burst ends: the engine applies what it staged, then its datagrams are freed (under ASan a run applied
 * after its bytes were freed is caught). */
static void end_burst(fh_engine_t *eng)
{
    fh_engine_batch_end(eng);
    while (nburst)
        free(burst[--nburst]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!eng) {
        table();
        if (!(eng = fh_engine_create(&(fh_engine_cfg_t){ 64, 1024, LEVELS }))) {
            fprintf(stderr, "fuzz_feed: %s\n", fh_errmsg());
            abort();
        }
        atexit(done);
    }
    fh_engine_reset(eng);
    fz_t in = { data, size };

    uint8_t b = fz_u8(&in);
    static const uint32_t holds[4] = { 0, 2, 16, 256 };
    fh_mold_cfg_t cfg;
    fh_mold_cfg_defaults(&cfg, 1);
    cfg.hold = holds[b & 3];
    cfg.can_request = cfg.hold && (b & 4);
    cfg.policy = b & 8 ? FH_MOLD_SNAPSHOT : FH_MOLD_RESUME;
    cfg.recovery_lines = b & 16 ? 1u << 2 : 0;
    snap_ok = !(b & 32);
    cfg.gap_wait = fz_u8(&in);
    cfg.request_timeout = 1 + fz_u8(&in);
    cfg.retries = fz_u8(&in) % 4;
    cfg.request_max = 1 + fz_u8(&in) % 64;
    cfg.max_outstanding = 1 + fz_u8(&in) % FH_MOLD_MAX_OUTSTANDING;
    cfg.line_stale = fz_u8(&in);
    cfg.line_down = cfg.line_stale * 2;
    cfg.msg_len = b & 64 ? NULL : fh_itch_len; /* with it, the data plane's fast path is open */
    fh_mold_feed_t f;
    FZ_ASSERT(fh_mold_feed_init(&f, &cfg) == 0);
    FZ_ASSERT(fh_mold_feed_init(&twin, &cfg) == 0);
    fh_feed_consumer_t c;
    tap_f = (tap_t){ 0 }, tap_t2 = (tap_t){ 0 };
    const bool staged = b & 128;
    if (staged)
        fh_engine_consumer_staged(eng, &tap_f.next);
    else
        fh_engine_consumer(eng, &tap_f.next);
    tap_consumer(&tap_f, &c);
    fh_mold_feed_set_consumer(&f, &c);
    tap_consumer(&tap_t2, &c);
    fh_mold_feed_set_consumer(&twin, &c);
    fh_mold_feed_set_snapshot_source(&f, &snap_src);
    fh_mold_feed_set_snapshot_source(&twin, &snap_src);

    static const char sess[2][11] = { "SESSION001", "SESSION002" };
    uint8_t dg[1500];
    uint64_t now = 1;
    for (int ops = 0; in.n && ops < MAX_OPS; ops++) {
        uint8_t opb = fz_u8(&in), op = opb & 7;
        uint64_t next_before = f.next_seq, changes_before = f.counters[FH_M_session_changes];
        if (op <= 2) {
            size_t len;
            uint8_t *d = fz_take(&in, fz_u16(&in) % 1500, &len);
            now += fz_u8(&in);
            FZ_ASSERT(feed_apply(&f, d, len, op, now) >= 0);
            keep_or_free(staged, d);
        } else if (op <= 5) {
            uint8_t c = fz_u8(&in);
            memcpy(dg, sess[c & 1], 10);
            uint64_t seq = opb & 8 ? f.next_seq - (opb >> 4) % 4u /* in order, or a copy */
                         : c & 2   ? fz_u64(&in)
                                   : 1u + fz_u16(&in) % 1024u;
            fh_put_be64(dg + 10, seq);
            uint16_t count = (c >> 2) == 62 ? FH_MOLD_HEARTBEAT : (c >> 2) == 63 ? FH_MOLD_END_OF_SESSION : (c >> 2) % 12;
            fh_put_be16(dg + 18, count);
            size_t len = 20;
            for (unsigned i = 0; count != FH_MOLD_END_OF_SESSION && i < count; i++) {
                int t = fz_u8(&in) % ntab;
                fh_put_be16(dg + len, (uint16_t)tab_len[t]);
                memcpy(dg + len + 2, tab[t], tab_len[t]);
                len += 2 + tab_len[t];
            }
            uint8_t *d = malloc(len);
            memcpy(d, dg, len);
            now += fz_u8(&in);
            FZ_ASSERT(feed_apply(&f, d, len, op - 3, now) >= 0);
            keep_or_free(staged, d);
        } else if (op == 6) {
            end_burst(eng);
            now += fz_u16(&in);
            fh_mold_request_t rq[FH_MOLD_MAX_OUTSTANDING];
            int k = feed_poll(&f, now, rq, FH_MOLD_MAX_OUTSTANDING);
            FZ_ASSERT(k >= 0 && k <= FH_MOLD_MAX_OUTSTANDING);
            FZ_ASSERT(k == 0 || cfg.can_request);
            for (int i = 0; i < k; i++) {
                FZ_ASSERT(memcmp(rq[i].session, f.session, 10) == 0);
                FZ_ASSERT(rq[i].count >= 1 && rq[i].count <= cfg.request_max);
                FZ_ASSERT(rq[i].seq >= f.next_seq && rq[i].seq + rq[i].count <= f.known_hi);
            }
        } else if (f.snap_pending) {
            snap_begin(&f);
            for (int i = fz_u8(&in) % 8; i > 0; i--) {
                int t = fz_u8(&in) % ntab;
                snap_apply(&f, tab[t], tab_len[t]);
            }
            uint8_t c = fz_u8(&in);
            uint64_t seq = c & 1 ? fz_u64(&in) : f.next_seq + fz_u8(&in) - 16u;
            snap_end(&f, seq);
        }
        FZ_ASSERT(f.held_now <= cfg.hold);
        FZ_ASSERT(!cfg.can_request || f.outstanding <= cfg.max_outstanding);
        FZ_ASSERT(f.next_seq >= next_before || f.counters[FH_M_session_changes] != changes_before || op == 7);
    }
    end_burst(eng);
    fz_check_engine(eng, LEVELS);
    fh_mold_feed_free(&f);
    fh_mold_feed_free(&twin);
    return 0;
}
