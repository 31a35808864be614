/* fh/hist.h (the history's column decoder) and fh/gwfmt.h (the gateway's PUB formatter).
 * Exit 0 on success, 1 on failure. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fh/gwfmt.h"
#include "fh/hist.h"
#include "fh/itch.h"
#include "fh/synth.h"
#include "msg.h"

/* A generated day with anomalies, decoded with a side map too small at first (the decoder stops, the map grows,
 * the decoder resumes), against a walk that reads each message's fields directly. */
static void test_decode(void)
{
    fh_synth_cfg_t cfg = { .messages = 200000, .instruments = 50, .seed = 77, .anomaly_ppm = 3000 };
    uint8_t *day;
    size_t len;
    CHECK_EQ(fh_synth_buffer(&cfg, &day, &len), 0);
    uint8_t *orig = malloc(len);
    memcpy(orig, day, len);
    uint64_t n = cfg.messages;
    uint32_t *off = malloc(n * sizeof *off);
    size_t used;
    CHECK_EQ(fh_blocks_index(day, len, off, n, &used), n);
    uint64_t *ts = malloc(n * 8);
    uint16_t *loc = malloc(n * 2);
    uint8_t *type = malloc(n);
    uint32_t *o_idx = malloc(n * 4);
    int64_t *col[5];
    for (int k = 0; k < 5; k++)
        col[k] = malloc(n * 8);
    uint8_t *o_side = malloc(n), *o_print = malloc(n), *o_mpid = malloc(n * 4);
    uint64_t *o_ts = malloc(n * 8);
    uint16_t *o_loc = malloc(n * 2);
    uint8_t *o_type = malloc(n);
    fh_hist_cols_t c = { ts, loc, type, o_idx, col[0], col[1], col[2], col[3], col[4], o_side, o_print, o_mpid, 0,
                         o_ts, o_loc, o_type };
    uint8_t *symbols = calloc(65536, 8);
    uint64_t cap = 16;
    uint8_t *sides = calloc(cap, 1);
    fh_hist_state_t st = { symbols, sides, cap, 1ull << 40, 0, 0 };
    uint64_t i = 0, stops = 0;
    while ((i = fh_hist_decode(&st, day, off, n, i, 1000, &c)) < n) {
        CHECK(st.need >= st.sides_cap);
        uint64_t ncap = st.sides_cap;
        while (ncap <= st.need)
            ncap *= 2;
        st.sides = realloc(st.sides, ncap);
        memset(st.sides + st.sides_cap, 0, ncap - st.sides_cap);
        st.sides_cap = ncap;
        stops++;
    }
    CHECK(stops > 0);
    /* the independent walk */
    uint64_t scap = st.sides_cap;
    uint8_t *side = calloc(scap, 1);
#define SIDE(ref) ((ref) < scap ? side[ref] : 0) /* an anomalous reference may lie past the map */
    uint64_t r = 0;
    for (i = 0; i < n; i++) {
        const uint8_t *m = orig + off[i], *s = day + off[i];
        size_t l = ((size_t)m[-2] << 8) | m[-1];
        CHECK_EQ(type[i], l ? m[0] : 0);
        if (l < FH_ITCH_HDR_LEN)
            continue;
        CHECK_EQ(ts[i], fh_be48(m + 5));
        CHECK_EQ(fh_be48(s + 5), 1000 + i); /* the ordinal stamped over the timestamp */
        CHECK(memcmp(m, s, 5) == 0 && memcmp(m + 11, s + 11, l - 11) == 0);
        CHECK_EQ(loc[i], fh_be16(m + 1));
        uint8_t t = m[0];
        if (!fh_itch_len[t] || l < fh_itch_len[t] || !strchr("AFECXDU", t))
            continue;
        CHECK_EQ(o_idx[r], i);
        CHECK_EQ(o_ts[r], ts[i]);
        CHECK_EQ(o_loc[r], loc[i]);
        CHECK_EQ(o_type[r], type[i]);
        uint64_t ref = fh_be64(m + 11);
        CHECK_EQ((uint64_t)col[0][r], ref);
        uint8_t want_side;
        if (t == 'A' || t == 'F') {
            want_side = (m[19] == 'B' || m[19] == 'S') ? m[19] : 0;
            if (ref < scap && !side[ref])
                side[ref] = want_side;
            CHECK_EQ(col[2][r], fh_be32(m + 20));
            CHECK_EQ(col[3][r], fh_be32(m + 32));
            CHECK(t == 'A' || memcmp(o_mpid + r * 4, m + 36, 4) == 0);
        } else if (t == 'U') {
            uint64_t nref = fh_be64(m + 19);
            if (nref < scap && !side[nref])
                side[nref] = SIDE(ref);
            want_side = SIDE(nref);
            CHECK_EQ((uint64_t)col[1][r], nref);
            CHECK_EQ(col[2][r], fh_be32(m + 27));
            CHECK_EQ(col[3][r], fh_be32(m + 31));
        } else {
            want_side = SIDE(ref);
            if (t == 'E' || t == 'C') {
                CHECK_EQ(col[2][r], fh_be32(m + 19));
                CHECK_EQ((uint64_t)col[4][r], fh_be64(m + 23));
            }
            if (t == 'C')
                CHECK_EQ(o_print[r], m[31]);
            if (t == 'X')
                CHECK_EQ(col[2][r], fh_be32(m + 19));
        }
        CHECK_EQ(o_side[r], want_side);
        r++;
    }
    CHECK_EQ(c.o_rows, r);
    CHECK(r > 150000);
    CHECK(memcmp(symbols + 8, "       ", 7) != 0); /* the directory named locate 1 */
    free(side);
    free(st.sides);
    free(symbols);
    free(o_mpid);
    free(o_print);
    free(o_side);
    for (int k = 0; k < 5; k++)
        free(col[k]);
    free(o_idx);
    free(o_type);
    free(o_loc);
    free(o_ts);
    free(type);
    free(loc);
    free(ts);
    free(off);
    free(orig);
    fh_synth_free(day);
}

/* The writer's helpers against their definitions, on random rows (a length that is not a multiple of 8, so the
 * bitmaps' last byte is a partial one). */
static void test_writer_columns(void)
{
    enum { N = 100003 };
    static uint16_t key[65536], loc[N];
    static uint64_t count[65536];
    static int64_t dest[N];
    static uint8_t v[N], typ[N], valid[(N + 7) / 8];
    static int32_t idx[N];
    uint64_t r = 88172645463325252ull;
#define NEXT() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
    for (uint32_t k = 0; k < 65536; k++)
        key[k] = (uint16_t)(NEXT() % 500); /* ties between locates too */
    for (int i = 0; i < N; i++) {
        loc[i] = (uint16_t)(NEXT() % 3000);
        v[i] = (uint8_t)"\0 ABSXY\xe9"[NEXT() % 8];
        typ[i] = (uint8_t)"AFECXDUP"[NEXT() % 8];
    }
    fh_hist_sort_dest(key, loc, N, count, dest);
    static int64_t at[N];
    static uint8_t hit[N];
    for (int i = 0; i < N; i++) {
        CHECK(dest[i] >= 0 && dest[i] < N && !hit[dest[i]]); /* a permutation */
        hit[dest[i]] = 1;
        at[dest[i]] = i;
    }
    for (int j = 1; j < N; j++) { /* sorted by key, stable */
        uint16_t a = key[loc[at[j - 1]]], b = key[loc[at[j]]];
        CHECK(a < b || (a == b && at[j - 1] < at[j]));
    }
    uint8_t isnull[256] = { 0 }, dict[256];
    isnull[0] = isnull[' '] = 1;
    uint64_t nulls = 99;
    int k = fh_hist_codes(v, N, isnull, dict, idx, valid, &nulls);
    CHECK_EQ(k, 6);
    CHECK(memcmp(dict, "ABSXY", 5) == 0 && dict[5] == 0xe9);
    uint64_t want = 0;
    for (int i = 0; i < N; i++) {
        int ok = (valid[i / 8] >> (i % 8)) & 1;
        CHECK_EQ(ok, !isnull[v[i]]);
        want += !ok;
        if (ok)
            CHECK_EQ(dict[idx[i]], v[i]);
        else
            CHECK_EQ(idx[i], 0);
    }
    CHECK_EQ(nulls, want);
    CHECK_EQ(valid[N / 8] >> (N % 8), 0);
    uint8_t has[256] = { 0 };
    has['A'] = has['F'] = has['U'] = 1;
    memset(valid, 0xff, sizeof valid);
    uint64_t bad = fh_hist_valid(typ, N, has, valid);
    want = 0;
    for (int i = 0; i < N; i++) {
        int ok = (valid[i / 8] >> (i % 8)) & 1;
        CHECK_EQ(ok, has[typ[i]]);
        want += !ok;
    }
    CHECK_EQ(bad, want);
    CHECK_EQ(valid[N / 8] >> (N % 8), 0);
    CHECK_EQ(fh_hist_codes(v, 0, isnull, dict, idx, valid, &nulls), 0);
    CHECK_EQ(nulls, 0);
#undef NEXT
}

static void test_gw_format(void)
{
    fh_shm_event_t ev[4];
    memset(ev, 0, sizeof ev);
    ev[0] = (fh_shm_event_t){ .seq = 7, .type = FH_EV_BBO, .locate = 3, .itch_ts = 34200000000001ull, .a = 100,
                              .b = 200, .c = 1850100, .d = 1850200 };
    ev[1] = (fh_shm_event_t){ .seq = 8, .type = FH_EV_STATE, .locate = 3 };
    ev[2] = (fh_shm_event_t){ .seq = 9, .type = FH_EV_TRADE, .locate = 3, .itch_ts = 5, .a = 10, .b = 99, .c = -1 };
    ev[3] = (fh_shm_event_t){ .seq = 10, .type = FH_EV_BBO, .locate = 4 };
    int64_t pub[4] = { 1700000000000000001ll, 0, 0, 0 };
    static char subj[65536 * 16];
    static uint8_t sl[65536];
    memcpy(subj + 3 * 16, "fh.x.AAPL.", 10);
    sl[3] = 10;
    char out[4096];
    size_t done;
    uint64_t nb = 0, nt = 0;
    size_t w = fh_gw_format(ev, 4, pub, 42, subj, sl, 16, out, sizeof out, &done, &nb, &nt);
    const char *want =
        "PUB fh.x.AAPL.bbo 131\r\n{\"seq\":7,\"ts\":34200000000001,\"bid\":1850100,\"bid_shares\":100,\"ask\":1850200,"
        "\"ask_shares\":200,\"pub_ns\":1700000000000000001,\"gw_ns\":42}\r\n"
        "PUB fh.x.AAPL.trade 75\r\n{\"seq\":9,\"ts\":5,\"price\":-1,\"shares\":10,\"match\":99,\"pub_ns\":null,\"gw_ns\":42}\r\n";
    CHECK_EQ(w, strlen(want));
    CHECK(w == strlen(want) && memcmp(out, want, w) == 0);
    if (w != strlen(want) || memcmp(out, want, w))
        fprintf(stderr, "got: %.*s\n", (int)w, out);
    CHECK_EQ(done, 3); /* stopped at locate 4: no prefix yet */
    CHECK_EQ(nb, 1);
    CHECK_EQ(nt, 1);
    /* no room: nothing written, nothing consumed */
    nb = nt = 0;
    CHECK_EQ(fh_gw_format(ev, 4, pub, 42, subj, sl, 16, out, 100, &done, &nb, &nt), 0);
    CHECK_EQ(done, 0);
}

int main(void)
{
    test_decode();
    test_writer_columns();
    test_gw_format();
    if (test_failures) {
        fprintf(stderr, "test_hist: %d failures\n", test_failures);
        return 1;
    }
    printf("test_hist: ok\n");
    return 0;
}
