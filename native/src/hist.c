/* fh/hist.h: ITCH messages as columns for the history writer. */
#include "fh/hist.h"

#include <string.h>

#include "fh/itch.h"

static inline int side_code(uint8_t c)
{
    return c == 'B' || c == 'S' ? c : 0;
}

/* Map a reference: 1 mapped (in range), 0 beyond the limit (counted), -1 beyond the map: grow first. */
static inline int ref_room(fh_hist_state_t *st, uint64_t ref)
{
    if (ref > st->ref_limit)
        return 0;
    if (ref >= st->sides_cap) {
        st->need = ref;
        return -1;
    }
    return 1;
}

static inline uint8_t side_of(const fh_hist_state_t *st, uint64_t ref)
{
    return ref < st->sides_cap ? st->sides[ref] : 0;
}

static inline void name_if_unnamed(fh_hist_state_t *st, uint16_t loc, const uint8_t *stock)
{
    uint8_t *s = st->symbols + (size_t)loc * 8;
    static const uint8_t zero[8];
    if (!memcmp(s, zero, 8))
        memcpy(s, stock, 8);
}

uint64_t fh_hist_decode(fh_hist_state_t *st, uint8_t *buf, const uint32_t *off, uint64_t n, uint64_t start,
                        uint64_t ordinal, fh_hist_cols_t *c)
{
    uint64_t r = c->o_rows;
    uint64_t i;
    for (i = start; i < n; i++) {
        uint8_t *m = buf + off[i];
        size_t len = ((size_t)m[-2] << 8) | m[-1];
        uint8_t t = len ? m[0] : 0;
        c->type[i] = t;
        if (len < FH_ITCH_HDR_LEN) {
            c->ts[i] = 0;
            c->locate[i] = 0;
            continue;
        }
        uint16_t loc = fh_be16(m + 1);
        size_t want = fh_itch_len[t];
        int full = want && len >= want;
        /* the side map first: a stop here leaves message i untouched, to be done again */
        uint64_t ref = 0, nref = 0;
        if (full && (t == 'A' || t == 'F' || t == 'U')) {
            ref = fh_be64(m + FH_ITCH_OFF_REF);
            if (t == 'U') {
                nref = fh_be64(m + FH_ITCH_OFF_U_NEWREF);
                int k = ref_room(st, nref);
                if (k < 0)
                    break;
                if (k == 0)
                    st->out_of_range++;
                else if (!st->sides[nref])
                    st->sides[nref] = side_of(st, ref);
            } else {
                int k = ref_room(st, ref);
                if (k < 0)
                    break;
                if (k == 0)
                    st->out_of_range++;
                else if (!st->sides[ref])
                    st->sides[ref] = (uint8_t)side_code(m[FH_ITCH_OFF_A_SIDE]);
            }
        }
        uint64_t ts = fh_be48(m + 5);
        c->ts[i] = ts;
        c->locate[i] = loc;
        uint64_t v = ordinal + i;
        for (int b = 0; b < 6; b++)
            m[5 + b] = (uint8_t)(v >> (8 * (5 - b)));
        if (!full)
            continue;
        switch (t) {
        case 'R':
            memcpy(st->symbols + (size_t)loc * 8, m + FH_ITCH_OFF_R_STOCK, 8);
            continue;
        case 'P':
            name_if_unnamed(st, loc, m + FH_ITCH_OFF_A_STOCK);
            continue;
        case 'H':
            name_if_unnamed(st, loc, m + FH_ITCH_OFF_H_STOCK);
            continue;
        case 'A': case 'F': case 'E': case 'C': case 'X': case 'D': case 'U':
            break;
        default:
            continue;
        }
        if (t != 'U')
            ref = fh_be64(m + FH_ITCH_OFF_REF);
        int64_t shares = 0, price = 0, match = 0;
        uint8_t side, printable = 0;
        uint8_t *mpid = c->o_mpid + r * 4;
        memset(mpid, 0, 4);
        switch (t) {
        case 'F':
            memcpy(mpid, m + 36, 4);
            /* fall through */
        case 'A':
            name_if_unnamed(st, loc, m + FH_ITCH_OFF_A_STOCK);
            shares = fh_be32(m + FH_ITCH_OFF_A_SHARES);
            price = fh_be32(m + FH_ITCH_OFF_A_PRICE);
            side = (uint8_t)side_code(m[FH_ITCH_OFF_A_SIDE]);
            break;
        case 'C':
            price = fh_be32(m + FH_ITCH_OFF_C_PRICE);
            printable = m[FH_ITCH_OFF_C_PRINTABLE];
            /* fall through */
        case 'E':
            shares = fh_be32(m + FH_ITCH_OFF_E_SHARES);
            match = (int64_t)fh_be64(m + FH_ITCH_OFF_E_MATCH);
            side = side_of(st, ref);
            break;
        case 'X':
            shares = fh_be32(m + FH_ITCH_OFF_X_SHARES);
            side = side_of(st, ref);
            break;
        case 'D':
            side = side_of(st, ref);
            break;
        default: /* U */
            shares = fh_be32(m + FH_ITCH_OFF_U_SHARES);
            price = fh_be32(m + FH_ITCH_OFF_U_PRICE);
            side = side_of(st, nref);
            break;
        }
        c->o_idx[r] = (uint32_t)i;
        c->o_ref[r] = (int64_t)ref;
        c->o_new_ref[r] = (int64_t)nref;
        c->o_shares[r] = shares;
        c->o_price[r] = price;
        c->o_match[r] = match;
        c->o_side[r] = side;
        c->o_printable[r] = printable;
        if (c->o_ts) {
            c->o_ts[r] = ts;
            c->o_locate[r] = loc;
            c->o_type[r] = t;
        }
        r++;
    }
    c->o_rows = r;
    return i;
}

int fh_hist_events(const fh_hist_state_t *st, const fh_shm_event_t *ring, uint64_t mask, uint64_t from, uint64_t to,
                   uint64_t first, uint64_t n, const uint64_t *seq, const uint64_t *ts, const int64_t *recv,
                   const uint8_t *typ, const uint8_t *buf, const uint32_t *off, fh_hist_ev_cols_t *c)
{
    uint64_t t = 0, b = 0;
    for (uint64_t q = from; q <= to; q++) {
        const fh_shm_event_t *e = &ring[q & mask];
        if (e->type != FH_EV_TRADE && e->type != FH_EV_BBO)
            continue;
        uint64_t i = e->itch_ts - first;
        if (e->itch_ts < first || i >= n)
            return -1;
        if (e->type == FH_EV_TRADE) {
            const uint8_t *m = buf + off[i];
            uint8_t rest;
            if (typ[i] == 'P')
                rest = m[19];
            else {
                uint64_t ref = fh_be64(m + 11);
                rest = ref < st->sides_cap ? st->sides[ref] : 0;
            }
            c->t_seq[t] = seq[i];
            c->t_ts[t] = ts[i];
            if (recv)
                c->t_recv[t] = recv[i];
            c->t_locate[t] = e->locate;
            c->t_price[t] = e->c;
            c->t_shares[t] = (int64_t)e->a;
            c->t_match[t] = (int64_t)e->b;
            c->t_type[t] = typ[i];
            c->t_aggressor[t] = rest == 'B' ? 'S' : rest == 'S' ? 'B' : 0;
            t++;
        } else {
            c->b_seq[b] = seq[i];
            c->b_ts[b] = ts[i];
            if (recv)
                c->b_recv[b] = recv[i];
            c->b_locate[b] = e->locate;
            c->b_bid_price[b] = e->c;
            c->b_bid_shares[b] = (int64_t)e->a;
            c->b_ask_price[b] = e->d;
            c->b_ask_shares[b] = (int64_t)e->b;
            b++;
        }
    }
    c->t_rows = t;
    c->b_rows = b;
    return 0;
}

void fh_hist_sort_dest(const uint16_t *key, const uint16_t *loc, uint64_t n, uint64_t *count, int64_t *dest)
{
    memset(count, 0, 65536 * sizeof *count);
    for (uint64_t i = 0; i < n; i++)
        count[key[loc[i]]]++;
    uint64_t at = 0;
    for (uint32_t k = 0; k < 65536; k++) {
        uint64_t c = count[k];
        count[k] = at;
        at += c;
    }
    for (uint64_t i = 0; i < n; i++)
        dest[i] = (int64_t)count[key[loc[i]]]++;
}

int fh_hist_codes(const uint8_t *v, uint64_t n, const uint8_t *isnull, uint8_t *dict, int32_t *idx, uint8_t *valid,
                  uint64_t *nulls)
{
    uint8_t seen[256] = { 0 };
    for (uint64_t i = 0; i < n; i++)
        seen[v[i]] = 1;
    int32_t map[256];
    int k = 0;
    for (int c = 0; c < 256; c++) {
        map[c] = 0;
        if (seen[c] && !isnull[c]) {
            map[c] = k;
            dict[k++] = (uint8_t)c;
        }
    }
    uint64_t bad = 0;
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint8_t bits = 0;
        for (int b = 0; b < 8; b++) {
            uint8_t c = v[i + b];
            idx[i + b] = map[c];
            bits |= (uint8_t)(!isnull[c] << b);
        }
        valid[i / 8] = bits;
        bad += 8 - (uint64_t)__builtin_popcount(bits);
    }
    if (i < n) {
        uint8_t bits = 0;
        for (int b = 0; i + b < n; b++) {
            uint8_t c = v[i + b];
            idx[i + b] = map[c];
            bits |= (uint8_t)(!isnull[c] << b);
            bad += isnull[c] != 0;
        }
        valid[i / 8] = bits;
    }
    *nulls = bad;
    return k;
}

uint64_t fh_hist_valid(const uint8_t *typ, uint64_t n, const uint8_t *has, uint8_t *valid)
{
    uint64_t ok = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint8_t bits = 0;
        for (int b = 0; b < 8; b++)
            bits |= (uint8_t)((has[typ[i + b]] != 0) << b);
        valid[i / 8] = bits;
        ok += (uint64_t)__builtin_popcount(bits);
    }
    if (i < n) {
        uint8_t bits = 0;
        for (int b = 0; i + b < n; b++)
            bits |= (uint8_t)((has[typ[i + b]] != 0) << b);
        valid[i / 8] = bits;
        ok += (uint64_t)__builtin_popcount(bits);
    }
    return n - ok;
}
