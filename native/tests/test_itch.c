/* ITCH 5.0 tables and the JSON decoder. Exit 0 on success, 1 on failure. */
#include "fh/itch.h"
#include "fh/blocks.h"
#include "fh/mold.h"
#include "msg.h"

static const char types[] = "SRHYLVWKJhAFECXDUPQBINO";

/* The field table of each type covers its spec length exactly, in order, with no gap or overlap. */
static void test_field_tables(void)
{
    int known = 0;
    for (int t = 0; t < 256; t++) {
        size_t n;
        const fh_itch_field_t *f = fh_itch_fields((uint8_t)t, &n);
        if (!strchr(types, t) || t == 0) {
            CHECK(f == NULL || n == 0);
            CHECK_EQ(fh_itch_len[t], 0);
            continue;
        }
        known++;
        unsigned off = 0;
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(f[i].offset, off);
            off += f[i].width;
        }
        CHECK_EQ(off, fh_itch_len[t]);
    }
    CHECK_EQ(known, 23);
    static const struct { char t; int len; } spec[] = {
        { 'S', 12 }, { 'R', 39 }, { 'H', 25 }, { 'Y', 20 }, { 'L', 26 }, { 'V', 35 }, { 'W', 12 }, { 'K', 28 },
        { 'J', 35 }, { 'h', 21 }, { 'A', 36 }, { 'F', 40 }, { 'E', 31 }, { 'C', 36 }, { 'X', 23 }, { 'D', 19 },
        { 'U', 35 }, { 'P', 44 }, { 'Q', 40 }, { 'B', 19 }, { 'I', 50 }, { 'N', 20 }, { 'O', 48 },
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++)
        CHECK_EQ(fh_itch_len[(uint8_t)spec[i].t], spec[i].len);
}

static void test_json(void)
{
    uint8_t b[64];
    char out[FH_ITCH_JSON_MAX];
    size_t n = m_A(b, 13, 0x0102030405060708ull, 'B', 100, "AAPL", 1234500);
    fh_put_be16(b + 3, 7);
    fh_put_be48(b + 5, 34200000000123ull);
    int r = fh_itch_to_json(b, n, out, sizeof out);
    const char *want = "{\"type\": \"A\", \"stock_locate\": 13, \"tracking_number\": 7, \"timestamp\": 34200000000123, "
                       "\"order_reference_number\": 72623859790382856, \"buy_sell_indicator\": \"B\", \"shares\": 100, "
                       "\"stock\": \"AAPL\", \"price\": 1234500}";
    CHECK(r == (int)strlen(want));
    CHECK(strcmp(out, want) == 0);
    if (strcmp(out, want))
        fprintf(stderr, "got  %s\nwant %s\n", out, want);
    /* escapes as Python's json.dumps; trailing spaces stripped, a blank one-byte field becomes "" */
    n = m_F(b, 1, 1, 'S', 1, "A\"B\\C", 1, "\x01 \x7f ");
    r = fh_itch_to_json(b, n, out, sizeof out);
    CHECK(r > 0 && strstr(out, "\"stock\": \"A\\\"B\\\\C\"") != NULL);
    CHECK(strstr(out, "\"attribution\": \"\\u0001 \\u007f\"") != NULL);
    n = m_H(b, 1, "X", 'T');
    b[20] = ' ';
    r = fh_itch_to_json(b, n, out, sizeof out);
    CHECK(r > 0 && strstr(out, "\"reserved\": \"\", \"reason\": \"\"}") != NULL);
    /* Price(8) and the 8-byte shares of Q stay exact integers */
    memset(b, 0, sizeof b);
    m_hdr(b, 'V', 0, 1);
    fh_put_be64(b + 11, 0xFFFFFFFFFFFFFFFFull);
    r = fh_itch_to_json(b, 35, out, sizeof out);
    CHECK(r > 0 && strstr(out, "\"level_1\": 18446744073709551615, \"level_2\": 0") != NULL);
    /* short, unknown, long, small buffer */
    CHECK_EQ(fh_itch_to_json(b, 34, out, sizeof out), FH_ITCH_SHORT);
    b[0] = 'Z';
    CHECK_EQ(fh_itch_to_json(b, 35, out, sizeof out), FH_ITCH_UNKNOWN);
    CHECK_EQ(fh_itch_to_json(b, 0, out, sizeof out), FH_ITCH_SHORT);
    n = m_D(b, 1, 5);
    CHECK(fh_itch_to_json(b, n + 3, out, sizeof out) > 0);
    CHECK_EQ(fh_itch_check(b, n + 3), FH_ITCH_LONG);
    CHECK_EQ(fh_itch_to_json(b, n, out, 100), -3);
}

static void test_blocks(void)
{
    uint8_t buf[16] = { 0, 3, 'a', 'b', 'c', 0, 0, 0, 5, 'x' };
    fh_blocks_t w = { buf, buf + 10 };
    const uint8_t *m;
    size_t n;
    CHECK_EQ(fh_blocks_next(&w, &m, &n), FH_BLOCK_OK);
    CHECK_EQ(n, 3);
    CHECK(m == buf + 2);
    CHECK_EQ(fh_blocks_next(&w, &m, &n), FH_BLOCK_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(fh_blocks_next(&w, &m, &n), FH_BLOCK_TRUNCATED);
    CHECK_EQ(fh_blocks_next(&w, &m, &n), FH_BLOCK_TRUNCATED);
    w = (fh_blocks_t){ buf, buf + 5 };
    CHECK_EQ(fh_blocks_next(&w, &m, &n), FH_BLOCK_OK);
    CHECK_EQ(fh_blocks_next(&w, &m, &n), FH_BLOCK_END);
    fh_mold_hdr_t h;
    uint8_t d[20];
    memcpy(d, "ABCDEFGHIJ", 10);
    fh_put_be64(d + 10, 42);
    fh_put_be16(d + 18, 0xFFFF);
    CHECK(fh_mold_parse_hdr(d, 20, &h) == 0);
    CHECK_EQ(h.sequence, 42);
    CHECK_EQ(h.count, FH_MOLD_END_OF_SESSION);
    CHECK(memcmp(h.session, "ABCDEFGHIJ", 10) == 0);
    CHECK(fh_mold_parse_hdr(d, 19, &h) == -1);
}

int main(void)
{
    test_field_tables();
    test_json();
    test_blocks();
    if (test_failures) {
        fprintf(stderr, "test_itch: %d failures\n", test_failures);
        return 1;
    }
    printf("test_itch: ok\n");
    return 0;
}
