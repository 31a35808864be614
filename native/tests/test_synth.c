/* test_synth: the synthetic ITCH day generator (fh/synth.h). Exit 0 pass, 1 fail.
 *
 * Every generated day is read back block by block and replayed through a small model of
 * docs/book-semantics.md kept here (orders by reference, per-instrument order counts by price), so the
 * checks are made against what the engine will do, not against the generator's own bookkeeping. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fh/synth.h"

#include "check.h"

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }
static uint64_t be48(const uint8_t *p) { return (uint64_t)be16(p) << 32 | be32(p + 2); }

/* ITCH 5.0 lengths (docs/decode-format.md). */
static const uint8_t SPEC[256] = {
    ['S'] = 12, ['R'] = 39, ['H'] = 25, ['Y'] = 20, ['L'] = 26, ['V'] = 35, ['W'] = 12, ['K'] = 28,
    ['J'] = 35, ['h'] = 21, ['A'] = 36, ['F'] = 40, ['E'] = 31, ['C'] = 36, ['X'] = 23, ['D'] = 19,
    ['U'] = 35, ['P'] = 44, ['Q'] = 40, ['B'] = 19, ['I'] = 50, ['N'] = 20, ['O'] = 48,
};

#define NS 1000000000ull

/* ---- the model ------------------------------------------------------------------------------------ */

typedef struct ord { uint32_t price, shares; uint16_t loc; uint8_t side, live; } ord_t;

typedef struct side_book {       /* orders per price tick, over [base, base + size) */
    uint32_t *cnt;
    int64_t base, size;
    int64_t best;                /* tick of the best price, -1 if empty */
    uint64_t orders;
} side_book_t;

typedef struct counters {
    uint64_t unknown_type, short_message, long_message, truncated, bad_side, zero_shares, duplicate_ref,
        unknown_ref, overexecution, overcancel, locate_mismatch;
} counters_t;

typedef struct model {
    uint32_t n_inst;
    int clean, real;             /* real: FH_SYNTH_SHAPE_REAL or _REAL_LATE (references unique, not consecutive) */
    ord_t *ord;                  /* every reference ever added, by open addressing on key */
    uint64_t *key;               /* reference + 1; 0: empty */
    uint64_t mask;
    uint64_t n_ord;              /* uniform: refs < n_ord are expected */
    uint64_t refs;               /* distinct references added */
    uint64_t ref_min, ref_max;
    side_book_t *sb;             /* [(n_inst + 1) * 2] */
    char (*sym)[8];              /* by locate, from R */
    uint8_t *state;              /* trading state by locate */
    uint64_t live, live_peak;
    uint64_t last_ref, last_match;
    counters_t c;
    uint64_t crossed, adds_checked, adds_near;
} model_t;

static void sb_grow(side_book_t *b, int64_t t)
{
    if (!b->cnt) {
        b->size = 256;
        b->base = t - 128 > 0 ? t - 128 : 0;
        b->cnt = calloc((size_t)b->size, sizeof *b->cnt);
        if (t < b->base + b->size)
            return;
    }
    int64_t lo = t < b->base ? t : b->base, hi = t + 1 > b->base + b->size ? t + 1 : b->base + b->size;
    int64_t margin = (hi - lo) / 2 + 64;
    lo = lo - margin > 0 ? lo - margin : 0;
    hi += margin;
    uint32_t *c = calloc((size_t)(hi - lo), sizeof *c);
    memcpy(c + (b->base - lo), b->cnt, (size_t)b->size * sizeof *c);
    free(b->cnt);
    b->cnt = c;
    b->base = lo;
    b->size = hi - lo;
}

static void sb_add(side_book_t *b, uint32_t price, int ask)
{
    int64_t t = price / 100;
    if (!b->cnt || t < b->base || t >= b->base + b->size)
        sb_grow(b, t);
    b->cnt[t - b->base]++;
    b->orders++;
    if (b->best < 0 || (ask ? t < b->best : t > b->best))
        b->best = t;
}

static void sb_del(side_book_t *b, uint32_t price, int ask)
{
    int64_t t = price / 100;
    b->cnt[t - b->base]--;
    b->orders--;
    if (t != b->best || b->cnt[t - b->base])
        return;
    if (!b->orders) {
        b->best = -1;
        return;
    }
    if (ask) {
        while (!b->cnt[t - b->base])
            t++;
    } else {
        while (!b->cnt[t - b->base])
            t--;
    }
    b->best = t;
}

static side_book_t *book(model_t *m, uint16_t loc, uint8_t side) { return &m->sb[loc * 2 + (side == 'S')]; }

/* The entry of ref, or the empty one where it would go. */
static uint64_t m_slot(const model_t *m, uint64_t ref)
{
    uint64_t i = (ref * 0x9E3779B97F4A7C15ull) >> 20 & m->mask;
    while (m->key[i] && m->key[i] != ref + 1)
        i = (i + 1) & m->mask;
    return i;
}

static void m_insert(model_t *m, uint64_t ref, uint16_t loc, uint8_t side, uint32_t shares, uint32_t price)
{
    uint64_t i = m_slot(m, ref);
    if (!m->key[i]) {
        if (m->refs >= m->mask / 2) {
            fprintf(stderr, "test_synth: more references than expected\n");
            exit(1);
        }
        m->key[i] = ref + 1;
        m->refs++;
    }
    ord_t *o = &m->ord[i];
    o->live = 1;
    o->loc = loc;
    o->side = side;
    o->shares = shares;
    o->price = price;
    sb_add(book(m, loc, side), price, side == 'S');
    if (++m->live > m->live_peak)
        m->live_peak = m->live;
    side_book_t *bid = book(m, loc, 'B'), *ask = book(m, loc, 'S');
    if (bid->best >= 0 && ask->best >= 0 && bid->best >= ask->best)
        m->crossed++;
    /* realism: the distance of a new quote from the opposite best */
    side_book_t *opp = side == 'S' ? bid : ask;
    if (opp->best >= 0) {
        int64_t d = (int64_t)price / 100 - opp->best;
        if (d < 0)
            d = -d;
        m->adds_checked++;
        m->adds_near += d <= 10;
    }
}

static void m_remove(model_t *m, uint64_t ref)
{
    ord_t *o = &m->ord[m_slot(m, ref)];
    o->live = 0;
    sb_del(book(m, o->loc, o->side), o->price, o->side == 'S');
    m->live--;
}

static ord_t *m_find(model_t *m, uint64_t ref)
{
    uint64_t i = m_slot(m, ref);
    return m->key[i] && m->ord[i].live ? &m->ord[i] : NULL;
}

/* An add per the A checks; returns 1 if the order went live. */
static int m_add(model_t *m, uint64_t ref, uint16_t loc, uint8_t side, uint32_t shares, uint32_t price)
{
    if (side != 'B' && side != 'S') {
        m->c.bad_side++;
        return 0;
    }
    if (!shares) {
        m->c.zero_shares++;
        return 0;
    }
    if (m_find(m, ref)) {
        m->c.duplicate_ref++;
        return 0;
    }
    if (!m->real && ref >= m->n_ord) {
        fail_at(__FILE__, __LINE__, "reference %llu beyond the expected range", (unsigned long long)ref);
        return 0;
    }
    if (m->clean) {
        if (m->real)
            CHECK(ref > 0 && !m->key[m_slot(m, ref)], "new reference %llu used before", (unsigned long long)ref);
        else
            CHECK(ref == m->last_ref + 1, "new reference %llu after %llu", (unsigned long long)ref,
                  (unsigned long long)m->last_ref);
        CHECK(price > 0 && price % 100 == 0, "price %u not a positive whole cent", price);
    }
    if (ref > m->last_ref)
        m->last_ref = ref;
    if (!m->ref_min || ref < m->ref_min)
        m->ref_min = ref;
    m_insert(m, ref, loc, side, shares, price);
    return 1;
}

static void m_match(model_t *m, uint64_t match)
{
    if (m->clean)
        CHECK(match == m->last_match + 1, "match %llu after %llu", (unsigned long long)match,
              (unsigned long long)m->last_match);
    if (match > m->last_match)
        m->last_match = match;
}

/* Apply one block. */
static void m_apply(model_t *m, const uint8_t *b, uint32_t len)
{
    if (!len) {
        m->c.short_message++;
        return;
    }
    uint8_t t = b[0];
    if (!SPEC[t]) {
        m->c.unknown_type++;
        return;
    }
    if (len < SPEC[t]) {
        m->c.short_message++;
        return;
    }
    if (len > SPEC[t])
        m->c.long_message++;
    uint16_t loc = be16(b + 1);
    if (t != 'S' && t != 'V' && t != 'W')
        CHECK(loc >= 1 && loc <= m->n_inst, "type %c with locate %u", t, loc);
    if (loc > m->n_inst)
        return;
    switch (t) {
    case 'R':
        memcpy(m->sym[loc], b + 11, 8);
        break;
    case 'H':
        m->state[loc] = b[19];
        break;
    case 'A':
    case 'F':
        if (m->clean)
            CHECK(!memcmp(b + 24, m->sym[loc], 8), "%c stock %.8s for locate %u (%.8s)", t, b + 24, loc, m->sym[loc]);
        m_add(m, be64(b + 11), loc, b[19], be32(b + 20), be32(b + 32));
        break;
    case 'E':
    case 'C': {
        uint64_t ref = be64(b + 11);
        uint32_t x = be32(b + 19);
        m_match(m, be64(b + 23));
        ord_t *o = m_find(m, ref);
        if (!o) {
            m->c.unknown_ref++;
            break;
        }
        if (o->loc != loc)
            m->c.locate_mismatch++;
        if (m->clean) {
            CHECK(x > 0, "execution of 0 shares");
            CHECK(m->state[o->loc] == 'T', "execution in %.8s while in state %c", m->sym[o->loc], m->state[o->loc]);
            if (t == 'C')
                CHECK(b[31] == 'Y' || b[31] == 'N', "C printable %c", b[31]);
        }
        if (x > o->shares) {
            m->c.overexecution++;
            m_remove(m, ref);
        } else if ((o->shares -= x) == 0) {
            m_remove(m, ref);
        }
        break;
    }
    case 'X': {
        uint64_t ref = be64(b + 11);
        uint32_t x = be32(b + 19);
        ord_t *o = m_find(m, ref);
        if (!o) {
            m->c.unknown_ref++;
            break;
        }
        if (o->loc != loc)
            m->c.locate_mismatch++;
        if (m->clean)
            CHECK(x > 0 && x < o->shares, "X of %u shares of %u", x, o->shares);
        if (x > o->shares) {
            m->c.overcancel++;
            m_remove(m, ref);
        } else if ((o->shares -= x) == 0) {
            m_remove(m, ref);
        }
        break;
    }
    case 'D': {
        uint64_t ref = be64(b + 11);
        ord_t *o = m_find(m, ref);
        if (!o) {
            m->c.unknown_ref++;
            break;
        }
        if (o->loc != loc)
            m->c.locate_mismatch++;
        m_remove(m, ref);
        break;
    }
    case 'U': {
        uint64_t ref = be64(b + 11), nref = be64(b + 19);
        ord_t *o = m_find(m, ref);
        if (!o) {
            m->c.unknown_ref++;
            break;
        }
        if (o->loc != loc)
            m->c.locate_mismatch++;
        uint16_t oloc = o->loc;
        uint8_t side = o->side;
        m_remove(m, ref);
        m_add(m, nref, oloc, side, be32(b + 27), be32(b + 31));
        break;
    }
    case 'P':
    case 'Q':
        m_match(m, be64(b + (t == 'P' ? 36 : 31)));
        if (m->clean)
            CHECK(m->state[loc] == 'T', "%c in %.8s while in state %c", t, m->sym[loc], m->state[loc]);
        break;
    case 'B':
        if (m->clean)
            CHECK(be64(b + 11) >= 1 && be64(b + 11) <= m->last_match, "B of match %llu (last %llu)",
                  (unsigned long long)be64(b + 11), (unsigned long long)m->last_match);
        break;
    default:
        break;
    }
}

static void model_init(model_t *m, uint32_t n_inst, uint64_t messages, int clean, int real)
{
    memset(m, 0, sizeof *m);
    m->n_inst = n_inst;
    m->clean = clean;
    m->real = real;
    m->n_ord = messages + 16;
    uint64_t cap = 1024;
    while (cap < 2 * m->n_ord)
        cap <<= 1;
    m->mask = cap - 1;
    m->ord = calloc(cap, sizeof *m->ord);
    m->key = calloc(cap, sizeof *m->key);
    m->sb = calloc((n_inst + 1) * 2u, sizeof *m->sb);
    for (uint32_t i = 0; i < (n_inst + 1) * 2u; i++)
        m->sb[i].best = -1;
    m->sym = calloc(n_inst + 1, sizeof *m->sym);
    m->state = calloc(n_inst + 1, 1);
    if (!m->ord || !m->key || !m->sb || !m->sym || !m->state) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

static void model_free(model_t *m)
{
    for (uint32_t i = 0; i < (m->n_inst + 1) * 2u; i++)
        free(m->sb[i].cnt);
    free(m->sb);
    free(m->ord);
    free(m->key);
    free(m->sym);
    free(m->state);
}

/* ---- checking one day ------------------------------------------------------------------------------ */

typedef struct day {
    uint64_t blocks;
    uint64_t body_type[256];     /* between S 'Q' and S 'M' */
    uint64_t body;
    uint64_t bad_len;            /* blocks with a wrong length or type (anomalies) */
    uint64_t adds, round_lot_adds;
    uint64_t *adds_by_loc;
} day_t;

static int is_symbol(const char *s)
{
    int n = 0;
    while (n < 8 && s[n] >= 'A' && s[n] <= 'Z')
        n++;
    if (n == 0)
        return 0;
    for (int i = n; i < 8; i++)
        if (s[i] != ' ')
            return 0;
    return 1;
}


static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 0.0; }

/* Check a whole day; returns the model's counters through m (caller frees). */
static void check_day(const char *name, const fh_synth_cfg_t *cfg, const uint8_t *buf, size_t len,
                      const fh_synth_stats_t *st, model_t *m, day_t *d)
{
    uint32_t n = cfg->instruments;
    int clean = cfg->anomaly_ppm == 0;
    model_init(m, n, cfg->messages, clean, cfg->shape != FH_SYNTH_SHAPE_UNIFORM);
    memset(d, 0, sizeof *d);
    d->adds_by_loc = calloc(n + 1, sizeof *d->adds_by_loc);
    uint64_t last_ts = 0, first_ts = 0;
    int phase = 0; /* 0 prelude, 1 body, 2 after S 'M' */
    size_t off = 0;
    uint64_t k = 0;
    uint64_t releases = 0, halted0 = 0, prelude_T = 0;
    while (off < len) {
        if (len - off < 2) {
            fail_at(__FILE__, __LINE__, "%s: dangling byte at %zu", name, off);
            break;
        }
        uint32_t bl = be16(buf + off);
        if (bl > len - off - 2) {
            fail_at(__FILE__, __LINE__, "%s: block at %zu runs past the end", name, off);
            break;
        }
        const uint8_t *b = buf + off + 2;
        off += 2 + bl;
        uint8_t t = bl ? b[0] : 0;
        int ok_len = bl && SPEC[t] && bl == SPEC[t];
        if (!ok_len) {
            d->bad_len++;
            CHECK(!clean, "%s: message %llu: type 0x%02x length %u", name, (unsigned long long)k, t, bl);
        }
        if (bl >= 11) {
            uint64_t ts = be48(b + 5);
            if (k == 0)
                first_ts = ts;
            CHECK(ts >= last_ts, "%s: message %llu: timestamp %llu after %llu", name, (unsigned long long)k,
                  (unsigned long long)ts, (unsigned long long)last_ts);
            last_ts = ts;
            if (phase == 1 && ok_len && t != 'S')
                CHECK(ts > 34200 * NS && ts < 57600 * NS, "%s: body message at %llu ns", name, (unsigned long long)ts);
        }
        /* prelude structure */
        if (k == 0)
            CHECK(t == 'S' && b[11] == 'O', "%s: first message not S 'O'", name);
        else if (k <= n) {
            CHECK(t == 'R' && be16(b + 1) == k, "%s: message %llu should be R for locate %llu", name,
                  (unsigned long long)k, (unsigned long long)k);
            if (t == 'R') {
                CHECK(is_symbol((const char *)b + 11), "%s: symbol '%.8s'", name, b + 11);
                CHECK(be32(b + 21) == 100, "%s: round lot %u", name, be32(b + 21));
                CHECK(b[29] == 'P', "%s: authenticity %c", name, b[29]);
            }
        } else if (k == n + 1)
            CHECK(t == 'S' && b[11] == 'S', "%s: S 'S' expected after the directory", name);
        else if (k <= 2ull * n + 1) {
            CHECK(t == 'H' && be16(b + 1) == k - n - 1 && (b[19] == 'T' || b[19] == 'H'),
                  "%s: message %llu should be H for locate %llu", name, (unsigned long long)k,
                  (unsigned long long)(k - n - 1));
            if (t == 'H') {
                halted0 += b[19] == 'H';
                prelude_T += b[19] == 'T';
            }
        } else if (k == 2ull * n + 2) {
            CHECK(t == 'S' && b[11] == 'Q', "%s: S 'Q' expected after the trading states", name);
            phase = 1;
        } else if (k == cfg->messages - 3) {
            CHECK(t == 'S' && b[11] == 'M', "%s: S 'M' expected third from last", name);
            phase = 2;
        } else if (k == cfg->messages - 2) {
            CHECK(t == 'S' && b[11] == 'E', "%s: S 'E' expected second from last", name);
        } else if (k == cfg->messages - 1) {
            CHECK(t == 'S' && b[11] == 'C', "%s: S 'C' expected last", name);
        } else if (ok_len) {
            d->body++;
            d->body_type[t]++;
            CHECK(t != 'S' && t != 'R', "%s: %c in the body", name, t);
            if (t == 'A' || t == 'F') {
                d->adds++;
                d->round_lot_adds += be32(b + 20) % 100 == 0;
                d->adds_by_loc[be16(b + 1) <= n ? be16(b + 1) : 0]++;
            }
            if (t == 'H' && clean) {
                uint16_t loc = be16(b + 1);
                if (b[19] == 'T') {
                    CHECK(m->state[loc] == 'H' || m->state[loc] == 'P', "%s: resume of %.8s in state %c", name,
                          m->sym[loc], m->state[loc]);
                    releases += !memcmp(b + 21, "    ", 4) && m->state[loc] == 'H';
                } else {
                    CHECK(m->state[loc] == 'T', "%s: halt of %.8s in state %c", name, m->sym[loc], m->state[loc]);
                }
            }
        } else {
            d->body++;
        }
        m_apply(m, b, bl);
        k++;
    }
    d->blocks = k;
    CHECK(off == len, "%s: framing ends at %zu of %zu", name, off, len);
    CHECK(k == cfg->messages, "%s: %llu messages, expected %llu", name, (unsigned long long)k,
          (unsigned long long)cfg->messages);
    CHECK(first_ts >= 3 * 3600 * NS && first_ts <= 4 * 3600 * NS, "%s: first timestamp %llu", name,
          (unsigned long long)first_ts);
    CHECK(last_ts >= 20 * 3600 * NS && last_ts <= 21 * 3600 * NS, "%s: last timestamp %llu", name,
          (unsigned long long)last_ts);
    CHECK(halted0 + prelude_T == n, "%s: %llu trading states for %u instruments", name,
          (unsigned long long)(halted0 + prelude_T), n);
    CHECK(m->crossed == 0, "%s: %llu adds crossed or locked the book", name, (unsigned long long)m->crossed);
    if (clean) {
        counters_t z = { 0 };
        CHECK(!memcmp(&m->c, &z, sizeof z),
              "%s: clean stream raised counters: unknown_ref %llu overexec %llu overcancel %llu dup %llu "
              "bad_side %llu zero %llu mismatch %llu",
              name, (unsigned long long)m->c.unknown_ref, (unsigned long long)m->c.overexecution,
              (unsigned long long)m->c.overcancel, (unsigned long long)m->c.duplicate_ref,
              (unsigned long long)m->c.bad_side, (unsigned long long)m->c.zero_shares,
              (unsigned long long)m->c.locate_mismatch);
        CHECK(releases >= halted0, "%s: %llu instruments started halted, %llu released", name,
              (unsigned long long)halted0, (unsigned long long)releases);
        for (uint32_t loc = 1; loc <= n; loc++)
            CHECK(m->state[loc] == 'T' || m->state[loc] == 'P' || m->state[loc] == 'H', "%s: state %c", name, m->state[loc]);
    }
    /* distinct symbols, in alphabetical order of locate */
    for (uint32_t loc = 2; loc <= n; loc++)
        CHECK(memcmp(m->sym[loc - 1], m->sym[loc], 8) < 0, "%s: symbols of locates %u, %u: %.8s, %.8s", name,
              loc - 1, loc, m->sym[loc - 1], m->sym[loc]);
    if (st) {
        CHECK(st->messages == cfg->messages, "%s: stats.messages %llu", name, (unsigned long long)st->messages);
        CHECK(st->bytes == len, "%s: stats.bytes %llu, buffer %zu", name, (unsigned long long)st->bytes, len);
        CHECK(st->live_orders_peak == m->live_peak, "%s: peak live orders: generator %llu, model %llu", name,
              (unsigned long long)st->live_orders_peak, (unsigned long long)m->live_peak);
        CHECK(st->live_orders_end == m->live, "%s: live orders at the end: generator %llu, model %llu", name,
              (unsigned long long)st->live_orders_end, (unsigned long long)m->live);
        const uint64_t *a = st->anomalies;
        CHECK(m->c.unknown_ref == a[FH_SYNTH_AN_UNKNOWN_REF_D] + a[FH_SYNTH_AN_UNKNOWN_REF_E] +
                                      a[FH_SYNTH_AN_UNKNOWN_REF_X] + a[FH_SYNTH_AN_UNKNOWN_REF_U],
              "%s: unknown_ref %llu", name, (unsigned long long)m->c.unknown_ref);
        CHECK(m->c.duplicate_ref == a[FH_SYNTH_AN_DUPLICATE_ADD] + a[FH_SYNTH_AN_REPLACE_ONTO_LIVE],
              "%s: duplicate_ref %llu", name, (unsigned long long)m->c.duplicate_ref);
        CHECK(m->c.overexecution == a[FH_SYNTH_AN_OVEREXECUTION], "%s: overexecution %llu vs %llu", name,
              (unsigned long long)m->c.overexecution, (unsigned long long)a[FH_SYNTH_AN_OVEREXECUTION]);
        CHECK(m->c.overcancel == a[FH_SYNTH_AN_OVERCANCEL], "%s: overcancel %llu", name,
              (unsigned long long)m->c.overcancel);
        CHECK(m->c.bad_side == a[FH_SYNTH_AN_BAD_SIDE], "%s: bad_side %llu", name, (unsigned long long)m->c.bad_side);
        CHECK(m->c.zero_shares == a[FH_SYNTH_AN_ZERO_SHARES], "%s: zero_shares %llu", name,
              (unsigned long long)m->c.zero_shares);
        CHECK(m->c.unknown_type == a[FH_SYNTH_AN_UNKNOWN_TYPE], "%s: unknown_type %llu", name,
              (unsigned long long)m->c.unknown_type);
        CHECK(m->c.short_message == a[FH_SYNTH_AN_SHORT_MESSAGE], "%s: short_message %llu", name,
              (unsigned long long)m->c.short_message);
        CHECK(m->c.long_message == 0 && m->c.locate_mismatch == 0, "%s: long %llu, locate mismatch %llu", name,
              (unsigned long long)m->c.long_message, (unsigned long long)m->c.locate_mismatch);
        CHECK(d->bad_len == a[FH_SYNTH_AN_UNKNOWN_TYPE] + a[FH_SYNTH_AN_SHORT_MESSAGE], "%s: %llu malformed blocks",
              name, (unsigned long long)d->bad_len);
        uint64_t sum = 0;
        for (int i = 0; i < FH_SYNTH_AN_COUNT; i++)
            sum += a[i];
        CHECK(sum == st->anomalies_total, "%s: anomaly totals", name);
        CHECK(st->last_match == m->last_match, "%s: last match %llu vs %llu", name, (unsigned long long)st->last_match,
              (unsigned long long)m->last_match);
        if (clean)
            CHECK(st->last_ref == m->last_ref, "%s: last reference %llu vs %llu", name,
                  (unsigned long long)st->last_ref, (unsigned long long)m->last_ref);
        if (cfg->shape == FH_SYNTH_SHAPE_UNIFORM)
            CHECK(st->resting_orders == 0, "%s: resting orders on a uniform day", name);
    }
}

/* The mix of a clean day: shares of the body within a few points of the brief. */
static void check_mix(const char *name, const day_t *d)
{
    const uint64_t *c = d->body_type;
    uint64_t adds = c['A'] + c['F'], ex = c['E'] + c['C'];
    uint64_t known = adds + c['D'] + c['U'] + c['X'] + ex;
    uint64_t other = d->body - known;
    double pa = pct(adds, d->body), pd = pct(c['D'], d->body), pu = pct(c['U'], d->body), px = pct(c['X'], d->body),
           pe = pct(ex, d->body), po = pct(other, d->body), pf = pct(c['F'], adds), pc = pct(c['C'], ex);
    printf("  %s mix: A+F %.2f%% (F %.1f%% of adds), D %.2f%%, U %.2f%%, X %.2f%%, E+C %.2f%% (C %.1f%%), other %.2f%%\n",
           name, pa, pf, pd, pu, px, pe, pc, po);
    CHECK(pa > 41 && pa < 49, "%s: adds %.2f%%", name, pa);
    CHECK(pd > 36 && pd < 44, "%s: deletes %.2f%%", name, pd);
    CHECK(pu > 7 && pu < 9, "%s: replaces %.2f%%", name, pu);
    CHECK(px > 2 && px < 4, "%s: cancels %.2f%%", name, px);
    CHECK(pe > 1.5 && pe < 2.5, "%s: executions %.2f%%", name, pe);
    CHECK(po > 1 && po < 3, "%s: other types %.2f%%", name, po);
    CHECK(pf > 3 && pf < 7, "%s: F share of adds %.2f%%", name, pf);
    CHECK(pc > 5 && pc < 15, "%s: C share of executions %.2f%%", name, pc);
    CHECK(pct(d->round_lot_adds, d->adds) > 70, "%s: round lots %.1f%% of adds", name, pct(d->round_lot_adds, d->adds));
    static const char OTHER[] = "PQBILYNJKhVWH";
    for (const char *o = OTHER; *o; o++)
        CHECK(c[(uint8_t)*o] > 0 || d->body < 1000000, "%s: no %c in the body", name, *o);
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x > y ? -1 : x < y;
}

/* A few instruments carry most of the activity. */
static void check_skew(const char *name, const day_t *d, uint32_t n)
{
    uint64_t *v = malloc(sizeof *v * n), tot = 0;
    for (uint32_t i = 0; i < n; i++)
        tot += v[i] = d->adds_by_loc[i + 1];
    qsort(v, n, sizeof *v, cmp_desc);
    uint32_t top = n / 10 ? n / 10 : 1;
    uint64_t s = 0;
    for (uint32_t i = 0; i < top; i++)
        s += v[i];
    double share = pct(s, tot);
    printf("  %s skew: busiest 10%% of instruments have %.1f%% of adds; busiest %llu, median %llu\n", name, share,
           (unsigned long long)v[0], (unsigned long long)v[n / 2]);
    if (n >= 20)
        CHECK(share > 30 && v[0] > 5 * v[n / 2], "%s: activity not skewed (%.1f%%)", name, share);
    free(v);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void gen(const fh_synth_cfg_t *cfg, uint8_t **buf, size_t *len, fh_synth_stats_t *st)
{
    int rc = fh_synth_buffer_ex(cfg, buf, len, st);
    if (rc) {
        fprintf(stderr, "fh_synth_buffer_ex(%llu, %u, %llu, %u) = %d\n", (unsigned long long)cfg->messages,
                cfg->instruments, (unsigned long long)cfg->seed, cfg->anomaly_ppm, rc);
        exit(1);
    }
}

/* Generate, check, report. */
static void day_test(const char *name, fh_synth_cfg_t cfg, int mix)
{
    uint8_t *buf;
    size_t len;
    fh_synth_stats_t st;
    double t0 = now();
    gen(&cfg, &buf, &len, &st);
    double t1 = now();
    model_t m;
    day_t d;
    check_day(name, &cfg, buf, len, &st, &m, &d);
    printf("%s: %llu messages, %u instruments, seed %llu, ppm %u: %zu bytes in %.3f s; live orders peak %llu, "
           "end %llu; mid steps %llu, clearing messages %llu, halts %llu, anomalies %llu\n",
           name, (unsigned long long)cfg.messages, cfg.instruments, (unsigned long long)cfg.seed, cfg.anomaly_ppm,
           len, t1 - t0, (unsigned long long)st.live_orders_peak, (unsigned long long)st.live_orders_end,
           (unsigned long long)st.mid_moves, (unsigned long long)st.clearing_messages, (unsigned long long)st.halts,
           (unsigned long long)st.anomalies_total);
    if (mix) {
        check_mix(name, &d);
        check_skew(name, &d, cfg.instruments);
        double near = pct(m.adds_near, m.adds_checked);
        printf("  %s: %.1f%% of new quotes within 10 ticks of the opposite best\n", name, near);
        CHECK(near > 80, "%s: only %.1f%% of quotes near the inside", name, near);
        CHECK(st.live_orders_peak <= 120ull * cfg.instruments, "%s: %llu live orders for %u instruments", name,
              (unsigned long long)st.live_orders_peak, cfg.instruments);
        CHECK(st.live_orders_peak >= cfg.instruments, "%s: only %llu live orders at the peak", name,
              (unsigned long long)st.live_orders_peak);
    }
    if (cfg.anomaly_ppm) {
        double body = (double)(cfg.messages - 2ull * cfg.instruments - 6);
        double expect = body * (cfg.anomaly_ppm < 1000000 ? cfg.anomaly_ppm : 1000000) / 1e6;
        printf("  %s: %llu anomalies, expected about %.0f:", name, (unsigned long long)st.anomalies_total, expect);
        for (int i = 0; i < FH_SYNTH_AN_COUNT; i++)
            printf(" %llu", (unsigned long long)st.anomalies[i]);
        printf("\n");
        double dev = (double)st.anomalies_total - expect;   /* binomial: within 5 sigma */
        CHECK(dev * dev < 25 * expect + 100, "%s: %llu anomalies, expected about %.0f", name,
              (unsigned long long)st.anomalies_total, expect);
        if (expect > 500 && cfg.anomaly_ppm <= 100000)   /* some kinds need live orders */
            for (int i = 0; i < FH_SYNTH_AN_COUNT; i++)
                CHECK(st.anomalies[i] > 0, "%s: no anomaly of kind %d", name, i);
    }
    model_free(&m);
    free(d.adds_by_loc);
    fh_synth_free(buf);
}

static void test_args(void)
{
    uint8_t *buf = (uint8_t *)1;
    size_t len = 1;
    fh_synth_cfg_t cfg = { .messages = 1000, .instruments = 10, .seed = 1 };
    CHECK(fh_synth_min_messages(0) == 0 && fh_synth_min_messages(65536) == 0, "min_messages of bad counts");
    CHECK(fh_synth_min_messages(1) == 8, "min_messages(1) = %llu", (unsigned long long)fh_synth_min_messages(1));
    CHECK(fh_synth_buffer(NULL, &buf, &len) == -EINVAL, "NULL cfg");
    CHECK(fh_synth_buffer(&cfg, NULL, &len) == -EINVAL, "NULL out");
    CHECK(fh_synth_buffer(&cfg, &buf, NULL) == -EINVAL, "NULL out_len");
    cfg.instruments = 0;
    CHECK(fh_synth_buffer(&cfg, &buf, &len) == -EINVAL && buf == NULL && len == 0, "0 instruments");
    cfg.instruments = 65536;
    CHECK(fh_synth_buffer(&cfg, &buf, &len) == -EINVAL, "65536 instruments");
    cfg.instruments = 10;
    cfg.messages = fh_synth_min_messages(10) - 1;
    CHECK(fh_synth_buffer(&cfg, &buf, &len) == -EINVAL, "too few messages");
    CHECK(fh_synth_file(&cfg, "/tmp/never") == -EINVAL, "file: too few messages");
    cfg.messages = 1000;
    CHECK(fh_synth_file(&cfg, NULL) == -EINVAL, "file: NULL path");
    CHECK(fh_synth_file(&cfg, "/nonexistent-dir/x.itch") == -ENOENT, "file: bad directory");
    /* a write that fails removes a partial day only from a regular file: a device given as the output stays (it
     * once unlinked /dev/full) */
    struct stat st;
    if (stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode)) {
        CHECK(fh_synth_file(&cfg, "/dev/full") == -ENOSPC, "file: /dev/full is full");
        CHECK(stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode), "file: /dev/full unlinked after a failed write");
    }
    fh_synth_free(NULL);
}

static void test_determinism(void)
{
    fh_synth_cfg_t cfg = { .messages = 200000, .instruments = 100, .seed = 42, .anomaly_ppm = 0 };
    uint8_t *a, *b, *c;
    size_t la, lb, lc;
    gen(&cfg, &a, &la, NULL);
    gen(&cfg, &b, &lb, NULL);
    CHECK(la == lb && !memcmp(a, b, la), "same cfg, different output");
    cfg.seed = 43;
    gen(&cfg, &c, &lc, NULL);
    CHECK(la != lc || memcmp(a, c, la), "different seeds, same output");
    /* the file is the buffer */
    cfg.seed = 42;
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_synth_%d.itch", (int)getpid());
    CHECK(fh_synth_file(&cfg, path) == 0, "fh_synth_file");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    if (f) {
        uint8_t *fb = malloc(la + 1);
        size_t got = fread(fb, 1, la + 1, f);
        fclose(f);
        CHECK(got == la && !memcmp(fb, a, la), "file (%zu bytes) differs from buffer (%zu)", got, la);
        free(fb);
    }
    unlink(path);
    /* anomalies are deterministic too, and the clean part of the prelude does not depend on them */
    cfg.anomaly_ppm = 5000;
    fh_synth_free(b);
    gen(&cfg, &b, &lb, NULL);
    fh_synth_free(c);
    gen(&cfg, &c, &lc, NULL);
    CHECK(lb == lc && !memcmp(b, c, lb), "same cfg with anomalies, different output");
    CHECK(lb != la || memcmp(a, b, la), "anomalies changed nothing");
    fh_synth_free(a);
    fh_synth_free(b);
    fh_synth_free(c);
    printf("determinism: ok\n");
}

/* The smallest days: the prelude and the releases only, for one and for many instruments. */
static void test_edges(void)
{
    static const uint32_t insts[] = { 1, 9, 10, 11, 1000, 65535 };
    for (size_t i = 0; i < sizeof insts / sizeof insts[0]; i++) {
        for (uint64_t extra = 0; extra < 3; extra++) {
            fh_synth_cfg_t cfg = { .messages = fh_synth_min_messages(insts[i]) + extra * 37, .instruments = insts[i],
                                   .seed = 7 + extra, .anomaly_ppm = extra == 2 ? 100000 : 0 };
            uint8_t *buf;
            size_t len;
            fh_synth_stats_t st;
            gen(&cfg, &buf, &len, &st);
            model_t m;
            day_t d;
            char name[64];
            snprintf(name, sizeof name, "edge %u+%llu", insts[i], (unsigned long long)(extra * 37));
            check_day(name, &cfg, buf, len, &st, &m, &d);
            model_free(&m);
            free(d.adds_by_loc);
            fh_synth_free(buf);
        }
    }
    printf("edges: ok\n");
}

/* The next block at or after *off that introduces a reference (A, F, a U's new one): 1 with its reference and stock
 * locate, 0 at the end of buf. */
static int next_new_ref(const uint8_t *buf, size_t len, size_t *off, uint64_t *ref, uint16_t *loc)
{
    while (*off + 2 <= len) {
        uint32_t bl = be16(buf + *off);
        const uint8_t *b = buf + *off + 2;
        *off += 2 + bl;
        if (bl && (b[0] == 'A' || b[0] == 'F' || b[0] == 'U')) {
            *ref = be64(b + (b[0] == 'U' ? 19 : 11));
            *loc = be16(b + 1);
            return 1;
        }
    }
    return 0;
}

/* FH_SYNTH_SHAPE_REAL and _REAL_LATE (fh/synth.h): the reference range and its interleaving, orders resting from
 * the open to the close, the mix, determinism; for REAL_LATE also the slice's steps, residues and the window. */
static void test_real_shape(uint64_t messages, uint32_t instruments, uint64_t seed, uint32_t shape)
{
    fh_synth_cfg_t cfg = { .messages = messages, .instruments = instruments, .seed = seed, .shape = shape };
    int late = shape == FH_SYNTH_SHAPE_REAL_LATE;
    char name[64];
    snprintf(name, sizeof name, "%s %llu/%u", late ? "real-late" : "real", (unsigned long long)messages, instruments);
    uint8_t *buf, *again;
    size_t len, len2;
    fh_synth_stats_t st;
    gen(&cfg, &buf, &len, &st);
    model_t m;
    day_t d;
    check_day(name, &cfg, buf, len, &st, &m, &d); /* consistency, unique references, never crossed */
    check_mix(name, &d);
    check_skew(name, &d, instruments);

    /* the range: a real day's, whatever the message count */
    CHECK(st.last_ref >= 150000000ull && st.last_ref <= 220000000ull, "%s: last reference %llu, not ~184 M", name,
          (unsigned long long)st.last_ref);
    CHECK(m.ref_min < 10000000ull, "%s: first references from %llu, not below the 10 M of 09:30", name,
          (unsigned long long)m.ref_min);
    /* interleaved counters: not increasing overall, increasing per instrument (one counter each) */
    uint64_t *last = calloc(instruments + 1u, sizeof *last), prev = 0, down = 0, adds = 0, inst_down = 0;
    /* REAL_LATE: each counter's steps (one counter per residue, serving locate % 4), the open's references
     * below 10 M and the body's from 20 M on */
    uint64_t cnt_last[4] = { 0 }, steps = 0, in_slice = 0, step4 = 0, wrong_residue = 0, open_refs = 0, mid_refs = 0;
    uint64_t ref;
    uint16_t loc;
    for (size_t off = 0; next_new_ref(buf, len, &off, &ref, &loc);) {
        if (late) {
            wrong_residue += ref % 4 != loc % 4u;
            if (adds < st.resting_orders)
                open_refs += ref < 10000000ull;
            else
                mid_refs += ref < 20000000ull;
            uint64_t *cl = &cnt_last[loc % 4u];
            if (*cl && adds != st.resting_orders) { /* not the jump from the open to the window */
                uint64_t dstep = ref - *cl;
                steps++;
                in_slice += ref > *cl && dstep <= 56 && dstep % 4 == 0 && dstep != 44 && dstep != 48 && dstep != 52;
                step4 += dstep == 4;
            }
            *cl = ref;
        }
        adds++;
        down += ref < prev;
        inst_down += ref <= last[loc];
        prev = ref;
        last[loc] = ref;
    }
    free(last);
    if (late) {
        printf("  %s: %.2f%% of %llu steps the slice's, %.1f%% of 4; %llu of %llu resting orders below 10 M\n", name,
               pct(in_slice, steps), (unsigned long long)steps, pct(step4, steps), (unsigned long long)open_refs,
               (unsigned long long)st.resting_orders);
        CHECK(wrong_residue == 0, "%s: %llu new references not at their locate's residue mod 4", name,
              (unsigned long long)wrong_residue);
        /* the others: a used-up block's successor taken at the frontier, a few in a day */
        CHECK(steps > adds / 2 && steps - in_slice <= 16, "%s: %llu of %llu steps not the slice's", name,
              (unsigned long long)(steps - in_slice), (unsigned long long)steps);
        CHECK(pct(step4, steps) > 40 && pct(step4, steps) < 48, "%s: %.1f%% of steps 4, not ~44%%", name,
              pct(step4, steps));
        CHECK(open_refs == st.resting_orders && mid_refs == 0, "%s: %llu of %llu open references below 10 M, %llu of "
              "the body's below 20 M", name, (unsigned long long)open_refs, (unsigned long long)st.resting_orders,
              (unsigned long long)mid_refs);
    }
    printf("  %s: references %llu..%llu, %.1f%% of new ones below the one before, %llu below their instrument's "
           "previous\n", name, (unsigned long long)m.ref_min, (unsigned long long)st.last_ref, pct(down, adds),
           (unsigned long long)inst_down);
    CHECK(pct(down, adds) > 20, "%s: references nearly increasing (%.1f%% down)", name, pct(down, adds));
    CHECK(inst_down == 0, "%s: %llu references below their instrument's previous one", name,
          (unsigned long long)inst_down);

    /* lifetimes: orders that outlive 2^24 later references, the resting ones among them */
    uint64_t long_lived = 0, live_old = 0;
    for (uint64_t i = 0; i <= m.mask; i++)
        if (m.key[i] && m.ord[i].live) {
            uint64_t ref = m.key[i] - 1;
            long_lived += m.last_ref - ref > (1ull << 24);
            live_old += ref < 30000000ull;
        }
    printf("  %s: %llu resting orders; at the close %llu live orders, %llu of them older than 2^24 references, "
           "%llu from before reference 30 M\n", name, (unsigned long long)st.resting_orders,
           (unsigned long long)m.live, (unsigned long long)long_lived, (unsigned long long)live_old);
    CHECK(st.resting_orders >= instruments, "%s: %llu resting orders for %u instruments", name,
          (unsigned long long)st.resting_orders, instruments);
    CHECK(live_old >= st.resting_orders && long_lived >= st.resting_orders,
          "%s: %llu resting orders, but only %llu live from the open (%llu long-lived) at the close", name,
          (unsigned long long)st.resting_orders, (unsigned long long)live_old, (unsigned long long)long_lived);
    model_free(&m);
    free(d.adds_by_loc);

    /* determinism, and a different day from the uniform shape */
    gen(&cfg, &again, &len2, NULL);
    CHECK(len == len2 && !memcmp(buf, again, len), "%s: same cfg, different output", name);
    fh_synth_free(again);
    cfg.shape = FH_SYNTH_SHAPE_UNIFORM;
    gen(&cfg, &again, &len2, NULL);
    CHECK(len != len2 || memcmp(buf, again, len), "%s: same output as the uniform shape", name);
    fh_synth_free(again);
    cfg.shape = late ? FH_SYNTH_SHAPE_REAL : FH_SYNTH_SHAPE_REAL_LATE;
    gen(&cfg, &again, &len2, NULL);
    CHECK(len != len2 || memcmp(buf, again, len), "%s: same output as the other real shape", name);
    fh_synth_free(again);
    cfg.shape = 3;
    CHECK(fh_synth_buffer(&cfg, &again, &len2) == -EINVAL, "%s: shape 3 accepted", name);
    fh_synth_free(buf);
}

/* REAL_LATE on a day too short for the open's book (its resting orders would be more than an eighth of the body):
 * no resting orders, the window from the first new order on. */
static void test_late_no_open(void)
{
    fh_synth_cfg_t cfg = { .messages = 3000, .instruments = 400, .seed = 12, .shape = FH_SYNTH_SHAPE_REAL_LATE };
    uint8_t *buf;
    size_t len;
    fh_synth_stats_t st;
    gen(&cfg, &buf, &len, &st);
    model_t m;
    day_t d;
    check_day("real-late, no open book", &cfg, buf, len, &st, &m, &d);
    uint64_t adds = 0, low = 0, wrong_residue = 0, ref;
    uint16_t loc;
    for (size_t off = 0; next_new_ref(buf, len, &off, &ref, &loc);) {
        adds++;
        low += ref < 20000000ull;
        wrong_residue += ref % 4 != loc % 4u;
    }
    CHECK(st.resting_orders == 0 && adds > 100 && low == 0 && wrong_residue == 0 && st.last_ref > 150000000ull,
          "real-late, no open book: %llu resting orders, %llu of %llu new references below 20 M, %llu at another "
          "residue, last %llu", (unsigned long long)st.resting_orders, (unsigned long long)low,
          (unsigned long long)adds, (unsigned long long)wrong_residue, (unsigned long long)st.last_ref);
    printf("  real-late, no open book: %llu new references from %llu to %llu\n", (unsigned long long)adds,
           (unsigned long long)m.ref_min, (unsigned long long)st.last_ref);
    model_free(&m);
    free(d.adds_by_loc);
    fh_synth_free(buf);
}

int main(int argc, char **argv)
{
    test_args();
    test_edges();
    test_determinism();
    day_test("small", (fh_synth_cfg_t){ .messages = 20000, .instruments = 10, .seed = 1 }, 1);
    day_test("mid", (fh_synth_cfg_t){ .messages = 100000, .instruments = 50, .seed = 2 }, 1);
    day_test("mid-b", (fh_synth_cfg_t){ .messages = 1000000, .instruments = 500, .seed = 3 }, 1);
    day_test("anomalies", (fh_synth_cfg_t){ .messages = 200000, .instruments = 50, .seed = 4, .anomaly_ppm = 2000 }, 0);
    day_test("anomalies-dense", (fh_synth_cfg_t){ .messages = 300000, .instruments = 200, .seed = 5, .anomaly_ppm = 50000 }, 0);
    day_test("anomalies-only", (fh_synth_cfg_t){ .messages = 50000, .instruments = 20, .seed = 6, .anomaly_ppm = 4000000 }, 0);
    day_test("many-instruments", (fh_synth_cfg_t){ .messages = 400000, .instruments = 65535, .seed = 8 }, 0);
    test_real_shape(1000000, 2000, 9, FH_SYNTH_SHAPE_REAL);
    test_real_shape(100000, 50, 10, FH_SYNTH_SHAPE_REAL);
    test_real_shape(1000000, 2000, 9, FH_SYNTH_SHAPE_REAL_LATE);
    test_real_shape(100000, 50, 10, FH_SYNTH_SHAPE_REAL_LATE);
    test_late_no_open();
    day_test("real-anomalies", (fh_synth_cfg_t){ .messages = 200000, .instruments = 100, .seed = 11,
                                                 .anomaly_ppm = 5000, .shape = FH_SYNTH_SHAPE_REAL }, 0);
    day_test("real-late-anomalies", (fh_synth_cfg_t){ .messages = 200000, .instruments = 100, .seed = 11,
                                                      .anomaly_ppm = 5000, .shape = FH_SYNTH_SHAPE_REAL_LATE }, 0);
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        fh_synth_cfg_t cfg = { .messages = 20000000, .instruments = 8000, .seed = 1 };
        day_test("bench", cfg, 1);
    }
    if (failures) {
        fprintf(stderr, "test_synth: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_synth: ok\n");
    return 0;
}
