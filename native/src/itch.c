/* ITCH 5.0 message lengths, field tables and the JSON decoder (docs/decode-format.md). */
#include <stdio.h>

#include "fh/itch.h"
#include "fh/blocks.h"

const uint8_t fh_itch_len[256] = {
    ['S'] = 12, ['R'] = 39, ['H'] = 25, ['Y'] = 20, ['L'] = 26, ['V'] = 35, ['W'] = 12, ['K'] = 28,
    ['J'] = 35, ['h'] = 21, ['A'] = 36, ['F'] = 40, ['E'] = 31, ['C'] = 36, ['X'] = 23, ['D'] = 19,
    ['U'] = 35, ['P'] = 44, ['Q'] = 40, ['B'] = 19, ['I'] = 50, ['N'] = 20, ['O'] = 48,
};

#define A(name, off, w) { name, FH_F_ALPHA, off, w }
#define U(name, off, w) { name, FH_F_UINT, off, w }
#define P4(name, off)   { name, FH_F_PRICE4, off, 4 }
#define P8(name, off)   { name, FH_F_PRICE8, off, 8 }
#define HDR A("type", 0, 1), U("stock_locate", 1, 2), U("tracking_number", 3, 2), U("timestamp", 5, 6)

static const fh_itch_field_t f_S[] = { HDR, A("event_code", 11, 1) };
static const fh_itch_field_t f_R[] = {
    HDR, A("stock", 11, 8), A("market_category", 19, 1), A("financial_status_indicator", 20, 1),
    U("round_lot_size", 21, 4), A("round_lots_only", 25, 1), A("issue_classification", 26, 1),
    A("issue_sub_type", 27, 2), A("authenticity", 29, 1), A("short_sale_threshold_indicator", 30, 1),
    A("ipo_flag", 31, 1), A("luld_reference_price_tier", 32, 1), A("etp_flag", 33, 1),
    U("etp_leverage_factor", 34, 4), A("inverse_indicator", 38, 1),
};
static const fh_itch_field_t f_H[] = { HDR, A("stock", 11, 8), A("trading_state", 19, 1), A("reserved", 20, 1),
                                       A("reason", 21, 4) };
static const fh_itch_field_t f_Y[] = { HDR, A("stock", 11, 8), A("reg_sho_action", 19, 1) };
static const fh_itch_field_t f_L[] = { HDR, A("mpid", 11, 4), A("stock", 15, 8), A("primary_market_maker", 23, 1),
                                       A("market_maker_mode", 24, 1), A("market_participant_state", 25, 1) };
static const fh_itch_field_t f_V[] = { HDR, P8("level_1", 11), P8("level_2", 19), P8("level_3", 27) };
static const fh_itch_field_t f_W[] = { HDR, A("breached_level", 11, 1) };
static const fh_itch_field_t f_K[] = { HDR, A("stock", 11, 8), U("ipo_quotation_release_time", 19, 4),
                                       A("ipo_quotation_release_qualifier", 23, 1), P4("ipo_price", 24) };
static const fh_itch_field_t f_J[] = { HDR, A("stock", 11, 8), P4("auction_collar_reference_price", 19),
                                       P4("upper_auction_collar_price", 23), P4("lower_auction_collar_price", 27),
                                       U("auction_collar_extension", 31, 4) };
static const fh_itch_field_t f_h[] = { HDR, A("stock", 11, 8), A("market_code", 19, 1),
                                       A("operational_halt_action", 20, 1) };
static const fh_itch_field_t f_A[] = { HDR, U("order_reference_number", 11, 8), A("buy_sell_indicator", 19, 1),
                                       U("shares", 20, 4), A("stock", 24, 8), P4("price", 32) };
static const fh_itch_field_t f_F[] = { HDR, U("order_reference_number", 11, 8), A("buy_sell_indicator", 19, 1),
                                       U("shares", 20, 4), A("stock", 24, 8), P4("price", 32),
                                       A("attribution", 36, 4) };
static const fh_itch_field_t f_E[] = { HDR, U("order_reference_number", 11, 8), U("executed_shares", 19, 4),
                                       U("match_number", 23, 8) };
static const fh_itch_field_t f_C[] = { HDR, U("order_reference_number", 11, 8), U("executed_shares", 19, 4),
                                       U("match_number", 23, 8), A("printable", 31, 1), P4("execution_price", 32) };
static const fh_itch_field_t f_X[] = { HDR, U("order_reference_number", 11, 8), U("cancelled_shares", 19, 4) };
static const fh_itch_field_t f_D[] = { HDR, U("order_reference_number", 11, 8) };
static const fh_itch_field_t f_U[] = { HDR, U("original_order_reference_number", 11, 8),
                                       U("new_order_reference_number", 19, 8), U("shares", 27, 4), P4("price", 31) };
static const fh_itch_field_t f_P[] = { HDR, U("order_reference_number", 11, 8), A("buy_sell_indicator", 19, 1),
                                       U("shares", 20, 4), A("stock", 24, 8), P4("price", 32),
                                       U("match_number", 36, 8) };
static const fh_itch_field_t f_Q[] = { HDR, U("shares", 11, 8), A("stock", 19, 8), P4("cross_price", 27),
                                       U("match_number", 31, 8), A("cross_type", 39, 1) };
static const fh_itch_field_t f_B[] = { HDR, U("match_number", 11, 8) };
static const fh_itch_field_t f_I[] = { HDR, U("paired_shares", 11, 8), U("imbalance_shares", 19, 8),
                                       A("imbalance_direction", 27, 1), A("stock", 28, 8), P4("far_price", 36),
                                       P4("near_price", 40), P4("current_reference_price", 44),
                                       A("cross_type", 48, 1), A("price_variation_indicator", 49, 1) };
static const fh_itch_field_t f_N[] = { HDR, A("stock", 11, 8), A("interest_flag", 19, 1) };
static const fh_itch_field_t f_O[] = { HDR, A("stock", 11, 8), A("open_eligibility_status", 19, 1),
                                       P4("minimum_allowable_price", 20), P4("maximum_allowable_price", 24),
                                       P4("near_execution_price", 28), U("near_execution_time", 32, 8),
                                       P4("lower_price_range_collar", 40), P4("upper_price_range_collar", 44) };

#define FH_CHR_S 'S'
#define FH_CHR_R 'R'
#define FH_CHR_H 'H'
#define FH_CHR_Y 'Y'
#define FH_CHR_L 'L'
#define FH_CHR_V 'V'
#define FH_CHR_W 'W'
#define FH_CHR_K 'K'
#define FH_CHR_J 'J'
#define FH_CHR_h 'h'
#define FH_CHR_A 'A'
#define FH_CHR_F 'F'
#define FH_CHR_E 'E'
#define FH_CHR_C 'C'
#define FH_CHR_X 'X'
#define FH_CHR_D 'D'
#define FH_CHR_U 'U'
#define FH_CHR_P 'P'
#define FH_CHR_Q 'Q'
#define FH_CHR_B 'B'
#define FH_CHR_I 'I'
#define FH_CHR_N 'N'
#define FH_CHR_O 'O'
#define ENTRY(t) [FH_CHR_##t] = { f_##t, sizeof f_##t / sizeof f_##t[0] }
static const struct { const fh_itch_field_t *f; size_t n; } fields[256] = {
    ENTRY(S), ENTRY(R), ENTRY(H), ENTRY(Y), ENTRY(L), ENTRY(V), ENTRY(W), ENTRY(K), ENTRY(J), ENTRY(h), ENTRY(A),
    ENTRY(F), ENTRY(E), ENTRY(C), ENTRY(X), ENTRY(D), ENTRY(U), ENTRY(P), ENTRY(Q), ENTRY(B), ENTRY(I), ENTRY(N),
    ENTRY(O),
};

const fh_itch_field_t *fh_itch_fields(uint8_t t, size_t *n)
{
    *n = fields[t].n;
    return fields[t].f;
}

static uint64_t load_uint(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Append s (w bytes, trailing spaces stripped) as a JSON string escaped as Python's json.dumps does. */
static char *put_alpha(char *o, const uint8_t *s, unsigned w)
{
    while (w > 0 && s[w - 1] == ' ')
        w--;
    *o++ = '"';
    for (unsigned i = 0; i < w; i++) {
        uint8_t c = s[i];
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        default:
            if (c < 0x20 || c > 0x7e)
                o += sprintf(o, "\\u%04x", c);
            else
                *o++ = (char)c;
        }
    }
    *o++ = '"';
    return o;
}

int fh_itch_to_json(const uint8_t *m, size_t len, char *out, size_t cap)
{
    fh_itch_check_t chk = fh_itch_check(m, len);
    if (chk < 0)
        return chk;
    size_t n;
    const fh_itch_field_t *f = fh_itch_fields(m[0], &n);
    /* Worst case: 18 fields of R, each a name (<= 40), separators and 8 bytes escaped as \\u00XX. */
    if (cap < FH_ITCH_JSON_MAX)
        return -3;
    char *o = out;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        o += sprintf(o, "%s\"%s\": ", i ? ", " : "", f[i].name);
        const uint8_t *p = m + f[i].offset;
        if (f[i].kind == FH_F_ALPHA)
            o = put_alpha(o, p, f[i].width);
        else
            o += sprintf(o, "%llu", (unsigned long long)load_uint(p, f[i].width));
    }
    *o++ = '}';
    *o = '\0';
    return (int)(o - out);
}

uint64_t fh_itch_scan(const uint8_t *p, size_t len, uint64_t *sum)
{
    fh_blocks_t w = { p, p + len };
    const uint8_t *m;
    size_t n;
    uint64_t count = 0, acc = 0;
    while (fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK) {
        count++;
        if (fh_itch_check(m, n) < 0)
            continue;
        acc += fh_itch_locate(m);
        switch (m[0]) {
        case 'A':
        case 'F':
            acc += fh_be64(m + FH_ITCH_OFF_REF) + m[FH_ITCH_OFF_A_SIDE] + fh_be32(m + FH_ITCH_OFF_A_SHARES) +
                   fh_be32(m + FH_ITCH_OFF_A_PRICE);
            break;
        case 'E':
        case 'C':
            acc += fh_be64(m + FH_ITCH_OFF_REF) + fh_be32(m + FH_ITCH_OFF_E_SHARES);
            break;
        case 'X':
            acc += fh_be64(m + FH_ITCH_OFF_REF) + fh_be32(m + FH_ITCH_OFF_X_SHARES);
            break;
        case 'D':
            acc += fh_be64(m + FH_ITCH_OFF_REF);
            break;
        case 'U':
            acc += fh_be64(m + FH_ITCH_OFF_REF) + fh_be64(m + FH_ITCH_OFF_U_NEWREF) +
                   fh_be32(m + FH_ITCH_OFF_U_SHARES) + fh_be32(m + FH_ITCH_OFF_U_PRICE);
            break;
        default:
            acc += m[0];
            break;
        }
    }
    *sum = acc;
    return count;
}

uint64_t fh_blocks_index(const uint8_t *p, size_t len, uint32_t *off, uint64_t cap, size_t *used)
{
    fh_blocks_t w = { p, p + len };
    const uint8_t *m;
    size_t n;
    uint64_t i = 0;
    const uint8_t *end = p;
    while (i < cap && fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK) {
        off[i++] = (uint32_t)(m - p);
        end = w.p;
    }
    if (used)
        *used = (size_t)(end - p);
    return i;
}

size_t fh_blocks_prefix(const uint8_t *p, size_t len, size_t max_bytes)
{
    fh_blocks_t w = { p, p + len };
    const uint8_t *m;
    size_t n, done = 0;
    while (fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK) {
        size_t next = (size_t)(w.p - p);
        if (next > max_bytes && done)
            break;
        done = next;
    }
    return done;
}
