/* fh/gwfmt.h: the gateway's PUB commands, formatted in C. */
#define _GNU_SOURCE
#include "fh/gwfmt.h"

#include <string.h>
#include <time.h>

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        *p++ = tmp[--i];
    return p;
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

static char *put_s(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT(p, lit) put_s(p, lit, sizeof(lit) - 1)

/* the longest command: "PUB " + prefix (<= stride) + "trade " + 5 digits + CRLF + body (< 400) + CRLF */
#define ROOM(stride) ((stride) + 512)

/* One BBO change or trade as its PUB command at p (room for ROOM(stride) bytes); returns the end. */
static char *format_one(char *p, const fh_shm_event_t *e, int64_t pub_ns, uint64_t gw_ns, const char *prefix,
                        size_t sl)
{
    char body[400], *b = body;
    int bbo = e->type == FH_EV_BBO;
    b = PUT(b, "{\"seq\":");
    b = put_u64(b, e->seq);
    b = PUT(b, ",\"ts\":");
    b = put_u64(b, e->itch_ts);
    if (bbo) {
        b = PUT(b, ",\"bid\":");
        b = put_i64(b, e->c);
        b = PUT(b, ",\"bid_shares\":");
        b = put_u64(b, e->a);
        b = PUT(b, ",\"ask\":");
        b = put_i64(b, e->d);
        b = PUT(b, ",\"ask_shares\":");
        b = put_u64(b, e->b);
    } else {
        b = PUT(b, ",\"price\":");
        b = put_i64(b, e->c);
        b = PUT(b, ",\"shares\":");
        b = put_u64(b, e->a);
        b = PUT(b, ",\"match\":");
        b = put_u64(b, e->b);
    }
    b = PUT(b, ",\"pub_ns\":");
    b = pub_ns ? put_i64(b, pub_ns) : PUT(b, "null");
    b = PUT(b, ",\"gw_ns\":");
    b = put_u64(b, gw_ns);
    *b++ = '}';
    p = PUT(p, "PUB ");
    p = put_s(p, prefix, sl);
    p = bbo ? PUT(p, "bbo ") : PUT(p, "trade ");
    p = put_u64(p, (uint64_t)(b - body));
    p = PUT(p, "\r\n");
    p = put_s(p, body, (size_t)(b - body));
    return PUT(p, "\r\n");
}

size_t fh_gw_format(const fh_shm_event_t *ev, size_t n, const int64_t *pub_ns, uint64_t gw_ns, const char *subj,
                    const uint8_t *subj_len, size_t stride, char *out, size_t cap, size_t *done, uint64_t *nbbo,
                    uint64_t *ntrade)
{
    char *p = out, *end = out + cap;
    size_t i;
    for (i = 0; i < n; i++) {
        const fh_shm_event_t *e = &ev[i];
        if (e->type != FH_EV_BBO && e->type != FH_EV_TRADE)
            continue;
        size_t sl = e->locate < 65536 ? subj_len[e->locate] : 0;
        if (!sl || (size_t)(end - p) < ROOM(stride))
            break;
        p = format_one(p, e, pub_ns[i], gw_ns, subj + (size_t)e->locate * stride, sl);
        if (e->type == FH_EV_BBO)
            ++*nbbo;
        else
            ++*ntrade;
    }
    *done = i;
    return (size_t)(p - out);
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

size_t fh_gw_pump(const fh_shm_reader_t *r, fh_gw_pump_t *p, char *out, size_t cap)
{
    char *o = out, *end = out + cap;
    uint64_t gw_ns = p->gw_ns ? p->gw_ns : realtime_ns();
    p->call_gw_ns = gw_ns;
    p->stop = FH_GW_CAUGHT_UP;
    for (;;) {
        if ((size_t)(end - o) < ROOM(p->stride)) {
            p->stop = FH_GW_FULL;
            break;
        }
        uint64_t want = p->next;
        fh_shm_event_t e;
        int rc = fh_shm_event_next(r, &p->next, &e);
        if (rc == FH_SHM_EV_NONE)
            break;
        if (rc == FH_SHM_EV_OVERRUN) {
            p->lost += p->next - want;
            continue;
        }
        if (e.type == FH_EV_BBO || e.type == FH_EV_TRADE) {
            size_t sl = p->subj_len[e.locate];
            if (!sl) { /* no prefix yet: give the event back, the caller makes it and calls again */
                p->next = want;
                p->stop = FH_GW_NEED_PREFIX;
                p->stop_locate = e.locate;
                break;
            }
            int64_t pub = 0;
            if (e.pub_tsc && p->ns_per_tick != 0.0)
                pub = (int64_t)((double)((int64_t)e.pub_tsc - (int64_t)p->tsc0) * p->ns_per_tick) + p->ns0;
            o = format_one(o, &e, pub, gw_ns, p->subj + (size_t)e.locate * p->stride, sl);
            if (e.type == FH_EV_BBO)
                p->nbbo++;
            else
                p->ntrade++;
        }
        p->events++;
        p->last_seq = e.seq;
        p->last_ts = e.itch_ts;
        if (e.type == FH_EV_BBO || e.type == FH_EV_TRADE || e.type == FH_EV_STATE)
            __atomic_store_n(&p->dirty[e.locate], 1, __ATOMIC_RELAXED); /* its book goes out at the next tick */
        if (e.type == FH_EV_STALE || e.type == FH_EV_RECOVERED) { /* the commands before it go first */
            p->stop = e.type == FH_EV_STALE ? FH_GW_STALE : FH_GW_RECOVERED;
            p->stop_locate = e.locate;
            break;
        }
    }
    return (size_t)(o - out);
}

uint64_t fh_gw_wait(const fh_shm_reader_t *r, uint64_t seen, uint64_t timeout_ns, fh_gw_wait_t *w)
{
    uint64_t head;
    w->waits++;
    if ((head = fh_shm_head(r)) > seen) {
        w->ready++;
        return head;
    }
    uint64_t t0 = fh_shm_mono_ns(), now = t0;
    if (w->spin_ns) {
        uint64_t until = t0 + w->spin_ns;
        for (uint32_t i = 1;; i++) {
            if ((head = fh_shm_head(r)) > seen) {
                w->spin_hits++;
                w->spun_ns += fh_shm_mono_ns() - t0;
                return head;
            }
            FH_SHM_PAUSE();
            if ((i & 15) == 0 && (now = fh_shm_mono_ns()) >= until)
                break;
        }
        w->spun_ns += now - t0;
        w->spin_ns /= 2; /* the spin caught nothing: shorter next time */
    }
    uint64_t end = timeout_ns && timeout_ns < UINT64_MAX - t0 ? t0 + timeout_ns : UINT64_MAX;
    w->sleeps++;
    if ((head = fh_shm_sleep_until(r, seen, end)) <= seen) {
        w->timeouts++; /* or the writer stopped */
        return head;
    }
    if (w->max_spin_ns) { /* a gap a spin could have caught: spin twice that long next time */
        uint64_t gap = fh_shm_mono_ns() - t0;
        if (gap < w->max_spin_ns)
            w->spin_ns = gap * 2 < w->max_spin_ns ? gap * 2 : w->max_spin_ns;
    }
    return head;
}

int64_t fh_gw_clock_pair(uint64_t *tsc, int64_t *ns)
{
#if defined(__x86_64__)
    int64_t best = -1;
    for (int i = 0; i < 16; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_REALTIME, &a);
        uint64_t t = __builtin_ia32_rdtsc();
        clock_gettime(CLOCK_REALTIME, &b);
        int64_t na = (int64_t)a.tv_sec * 1000000000 + a.tv_nsec, nb = (int64_t)b.tv_sec * 1000000000 + b.tv_nsec;
        if (nb >= na && (best < 0 || nb - na < best)) {
            best = nb - na;
            *tsc = t;
            *ns = na + (nb - na) / 2;
        }
    }
    return best;
#else
    (void)tsc;
    (void)ns;
    return -1;
#endif
}

size_t fh_gw_take_dirty(uint8_t *dirty, size_t n, uint16_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (__atomic_load_n(&dirty[i], __ATOMIC_RELAXED) && __atomic_exchange_n(&dirty[i], 0, __ATOMIC_RELAXED))
            out[k++] = (uint16_t)i;
    return k;
}

/* the longest body: its fixed part (< 160 bytes) and 55 bytes a level ("[" i64 "," u64 "," u32 "]" and a comma) */
#define BOOK_BODY_MAX (160 + 2 * 55 * 64)

static char *put_levels(char *b, const fh_shm_level_t *lv, uint32_t n)
{
    for (uint32_t j = 0; j < n; j++) {
        if (j)
            *b++ = ',';
        *b++ = '[';
        b = put_i64(b, lv[j].price);
        *b++ = ',';
        b = put_u64(b, lv[j].shares);
        *b++ = ',';
        b = put_u64(b, lv[j].orders);
        *b++ = ']';
    }
    return b;
}

size_t fh_gw_books(const fh_shm_reader_t *r, const uint16_t *locs, size_t n, uint32_t depth, uint64_t seq,
                   uint64_t gw_ns, const char *subj, const uint8_t *subj_len, size_t stride, char *out, size_t cap,
                   size_t *done, uint64_t *nbooks)
{
    char *p = out, *end = out + cap;
    char body[BOOK_BODY_MAX];
    fh_shm_snapshot_t s;
    size_t i;
    if (depth > 64)
        depth = 64;
    for (i = 0; i < n; i++) {
        uint16_t loc = locs[i];
        if (fh_shm_snapshot(r, loc, depth, &s) < 0)
            continue; /* gone, not published, or stuck mid-change */
        size_t sl = subj_len[loc];
        if (!sl || (size_t)(end - p) < FH_GW_BOOK_ROOM(stride, depth))
            break;
        char *b = body;
        b = PUT(b, "{\"seq\":");
        b = put_u64(b, seq);
        b = PUT(b, ",\"ts\":");
        b = put_u64(b, s.book.itch_ts);
        b = PUT(b, ",\"bids\":[");
        b = put_levels(b, s.bids, s.nbids);
        b = PUT(b, "],\"asks\":[");
        b = put_levels(b, s.asks, s.nasks);
        b = PUT(b, "],\"status\":\"");
        if (s.book.status == FH_BOOK_LIVE)
            b = PUT(b, "live");
        else if (s.book.status == FH_BOOK_STALE)
            b = PUT(b, "stale");
        else
            b = put_u64(b, s.book.status);
        b = PUT(b, "\",\"trading_state\":\"");
        uint8_t ts = (uint8_t)s.book.trading_state;
        if (ts < 0x80) {
            *b++ = (char)ts;
        } else { /* Latin-1 as UTF-8 */
            *b++ = (char)(0xC0 | (ts >> 6));
            *b++ = (char)(0x80 | (ts & 0x3F));
        }
        b = PUT(b, "\",\"gw_ns\":");
        b = put_u64(b, gw_ns);
        *b++ = '}';
        p = PUT(p, "PUB ");
        p = put_s(p, subj + (size_t)loc * stride, sl);
        p = PUT(p, "book ");
        p = put_u64(p, (uint64_t)(b - body));
        p = PUT(p, "\r\n");
        p = put_s(p, body, (size_t)(b - body));
        p = PUT(p, "\r\n");
        ++*nbooks;
    }
    *done = i;
    return (size_t)(p - out);
}
