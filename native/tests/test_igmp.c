/* test_igmp: the DPDK-free IGMP of the data plane (native/dataplane/igmp.h): the frames it builds, the queries
 * it parses and the host compatibility mode (RFC 3376 7.2.1, RFC 2236 4), driven here by plain time values.
 * Exit 0 pass, 1 fail.
 *
 * igmp.c is compiled into this program (it lives with the data plane, which is built only where DPDK is). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dataplane/igmp.c"

#include "check.h"

static const uint8_t MAC[6] = { 0x02, 0, 0, 0, 0, 0x42 };
#define SRC 0x0a010203u  /* 10.1.2.3 */
#define G1 0xe9360c6fu   /* 233.54.12.111 */
#define G2 0xe931c46fu   /* 233.49.196.111 */

/* What every frame we send must be: Ethernet to the destination's 01:00:5e MAC from ours, IPv4 with Router
 * Alert, TTL 1, protocol 2, both checksums good, at least 60 bytes. Returns the IGMP message. */
static const uint8_t *check_frame(const uint8_t *f, size_t len, uint32_t dst, size_t igmp_len)
{
    CHECK(len >= 60 && len == (14 + 24 + igmp_len < 60 ? 60 : 14 + 24 + igmp_len), "length %zu", len);
    const uint8_t want_mac[6] = { 1, 0, 0x5e, (uint8_t)((dst >> 16) & 0x7f), (uint8_t)(dst >> 8), (uint8_t)dst };
    CHECK(!memcmp(f, want_mac, 6), "destination MAC");
    CHECK(!memcmp(f + 6, MAC, 6), "source MAC");
    CHECK(be16(f + 12) == 0x0800, "ethertype");
    const uint8_t *ip = f + 14;
    CHECK(ip[0] == 0x46 && ip[8] == 1 && ip[9] == 2 && ip[1] == 0xc0, "IP header (RA, TTL 1, IGMP, TOS 0xc0)");
    CHECK(ip[20] == 0x94 && ip[21] == 4 && ip[22] == 0 && ip[23] == 0, "Router Alert option");
    CHECK(be16(ip + 2) == 24 + igmp_len, "IP total length %u", be16(ip + 2));
    CHECK(be32(ip + 12) == SRC && be32(ip + 16) == dst, "IP addresses");
    CHECK(fh_igmp_csum(ip, 24) == 0, "IP checksum");
    CHECK(fh_igmp_csum(ip + 24, igmp_len) == 0, "IGMP checksum");
    fh_igmp_msg_t m;
    CHECK(fh_igmp_parse(f, len, &m) == FH_IGMP_OTHER, "our own frame parses as another host's IGMP");
    return ip + 24;
}

static void test_frames(void)
{
    uint8_t b[256];
    size_t n = fh_igmp_v1_report(b, MAC, SRC, G1, 7);
    const uint8_t *g = check_frame(b, n, G1, 8);
    CHECK(g[0] == 0x12 && g[1] == 0 && be32(g + 4) == G1, "v1 report");

    n = fh_igmp_v2_report(b, MAC, SRC, G2, 8);
    g = check_frame(b, n, G2, 8);
    CHECK(g[0] == 0x16 && be32(g + 4) == G2, "v2 report");

    n = fh_igmp_v2_leave(b, MAC, SRC, G1, 9);
    g = check_frame(b, n, 0xe0000002u, 8);  /* to 224.0.0.2, all routers */
    CHECK(g[0] == 0x17 && g[1] == 0 && be32(g + 4) == G1, "v2 leave names the group it leaves");

    const uint32_t gs[2] = { G1, G2 };
    n = fh_igmp_v3_report(b, MAC, SRC, gs, 2, FH_IGMP_CHANGE_TO_INCLUDE, 10);
    g = check_frame(b, n, 0xe0000016u, 8 + 16);
    CHECK(g[0] == 0x22 && be16(g + 6) == 2, "v3 leave: one report, two records");
    for (int i = 0; i < 2; i++) {
        const uint8_t *r = g + 8 + 8 * i;
        CHECK(r[0] == 3 && r[1] == 0 && be16(r + 2) == 0 && be32(r + 4) == gs[i],
              "record %d: CHANGE_TO_INCLUDE_MODE, no sources, group", i);
    }
}

/* A query frame: version 1 (8 bytes, code 0), 2 (8 bytes) or 3 (12 bytes with QRV / QQIC). */
static size_t query(uint8_t *b, int version, uint32_t group, uint8_t code, uint8_t qrv, uint8_t qqic)
{
    memset(b, 0, 64);
    b[0] = 1, b[1] = 0, b[2] = 0x5e, b[5] = 1;
    b[6] = 2;
    put16(b + 12, 0x0800);
    uint8_t *ip = b + 14;
    size_t glen = version == 3 ? 12 : 8;
    ip[0] = 0x45, ip[8] = 1, ip[9] = 2;
    put16(ip + 2, (uint16_t)(20 + glen));
    put32(ip + 12, 0x0a0000fe);
    put32(ip + 16, 0xe0000001);
    put16(ip + 10, fh_igmp_csum(ip, 20));
    uint8_t *g = ip + 20;
    g[0] = 0x11, g[1] = version == 1 ? 0 : code;
    put32(g + 4, group);
    if (version == 3)
        g[8] = qrv & 7, g[9] = qqic;
    put16(g + 2, fh_igmp_csum(g, glen));
    return 14 + 20 + glen < 60 ? 60 : 14 + 20 + glen;
}

static fh_igmp_msg_t parsed(int version, uint32_t group, uint8_t code, uint8_t qrv, uint8_t qqic)
{
    uint8_t b[64];
    fh_igmp_msg_t m;
    memset(&m, 0, sizeof m);
    size_t n = query(b, version, group, code, qrv, qqic);
    CHECK(fh_igmp_parse(b, n, &m) == FH_IGMP_Q && m.version == version, "a v%d query", version);
    return m;
}

static void test_parse(void)
{
    fh_igmp_msg_t m = parsed(1, 0, 0, 0, 0);
    CHECK(m.max_resp_ms == 10000 && m.qrv == 0 && m.qqi_s == 0, "v1: 10 s, no QRV / QQIC");
    m = parsed(2, G1, 25, 0, 0);
    CHECK(m.max_resp_ms == 2500 && m.group == G1, "v2 group query: 2.5 s");
    m = parsed(3, 0, 100, 3, 60);
    CHECK(m.max_resp_ms == 10000 && m.qrv == 3 && m.qqi_s == 60, "v3: QRV 3, QQIC 60 s");
    m = parsed(3, 0, 0x8a, 2, 0x8a);  /* float: (0xa | 0x10) << (0 + 3) = 208 */
    CHECK(m.max_resp_ms == 20800 && m.qqi_s == 208, "v3 float codes: %u ms, %u s", m.max_resp_ms, m.qqi_s);
}

#define HZ 1000ull  /* time in milliseconds */
#define S(x) ((uint64_t)(x) * HZ)

static void test_compat_v3(void)
{
    fh_igmp_compat_t c;
    fh_igmp_compat_init(&c, 3, HZ);
    uint64_t t0 = S(1000);
    CHECK(fh_igmp_compat_mode(&c, 0) == 3 && fh_igmp_compat_mode(&c, t0) == 3, "starts in the configured v3");

    /* a v2 general query: v2 for 2 x 125 + 10 s (the query's own response time) */
    fh_igmp_msg_t v2 = parsed(2, 0, 100, 0, 0);
    CHECK(fh_igmp_compat_timeout(&c, &v2) == S(260), "260 s with the defaults");
    CHECK(fh_igmp_compat_query(&c, &v2, t0) == 2 && c.fallbacks == 1, "falls back to v2");
    /* a v3 query meanwhile does not end it early */
    fh_igmp_msg_t v3 = parsed(3, 0, 100, 0, 0);
    CHECK(fh_igmp_compat_query(&c, &v3, t0 + S(100)) == 2, "a v3 query in v2 mode is answered in v2");
    CHECK(fh_igmp_compat_mode(&c, t0 + S(260) - 1) == 2, "still v2 just before the timeout");
    CHECK(fh_igmp_compat_mode(&c, t0 + S(260)) == 3, "back to v3 at the timeout");
    CHECK(c.fallbacks == 1, "one fallback");
    /* a group-specific v2 query is no evidence of a v2 querier's general queries: no fallback */
    fh_igmp_msg_t v2g = parsed(2, G1, 10, 0, 0);
    CHECK(fh_igmp_compat_query(&c, &v2g, t0 + S(300)) == 3 && c.fallbacks == 1, "v2 group query: stays v3");
    /* a second v2 general query after the first expired is a second fallback; a refresh is not */
    CHECK(fh_igmp_compat_query(&c, &v2, t0 + S(400)) == 2 && c.fallbacks == 2, "second fallback");
    CHECK(fh_igmp_compat_query(&c, &v2, t0 + S(500)) == 2 && c.fallbacks == 2, "refresh: no new fallback");
    CHECK(fh_igmp_compat_mode(&c, t0 + S(759)) == 2 && fh_igmp_compat_mode(&c, t0 + S(760)) == 3,
          "the refresh restarted the timer");

    /* v1 wins over v2; when v1 expires with v2 still running, v2 */
    fh_igmp_compat_init(&c, 3, HZ);
    fh_igmp_msg_t v1 = parsed(1, 0, 0, 0, 0);
    CHECK(fh_igmp_compat_query(&c, &v1, t0) == 1 && c.fallbacks == 1, "v1 query: v1");
    CHECK(fh_igmp_compat_query(&c, &v2, t0 + S(100)) == 1 && c.fallbacks == 1, "v2 query under v1: still v1");
    CHECK(fh_igmp_compat_mode(&c, t0 + S(259)) == 1, "v1 for 260 s (2 x 125 + v1's 10 s)");
    CHECK(fh_igmp_compat_mode(&c, t0 + S(260)) == 2, "then v2, whose timer still runs");
    CHECK(fh_igmp_compat_mode(&c, t0 + S(360)) == 3, "then v3");

    /* the timeout comes from the last v3 query's QRV and QQIC */
    fh_igmp_compat_init(&c, 3, HZ);
    fh_igmp_msg_t v3q = parsed(3, 0, 100, 3, 20);
    CHECK(fh_igmp_compat_query(&c, &v3q, t0) == 3 && c.fallbacks == 0, "a v3 query: v3");
    fh_igmp_msg_t v2s = parsed(2, 0, 50, 0, 0);
    CHECK(fh_igmp_compat_timeout(&c, &v2s) == S(65), "3 x 20 + 5 s: %llu",
          (unsigned long long)fh_igmp_compat_timeout(&c, &v2s));
    CHECK(fh_igmp_compat_query(&c, &v2s, t0 + S(1)) == 2, "v2");
    CHECK(fh_igmp_compat_mode(&c, t0 + S(66) - 1) == 2 && fh_igmp_compat_mode(&c, t0 + S(66)) == 3, "65 s");
    /* QRV / QQIC of 0 mean the defaults again */
    fh_igmp_msg_t v3z = parsed(3, 0, 100, 0, 0);
    fh_igmp_compat_query(&c, &v3z, t0 + S(70));
    CHECK(fh_igmp_compat_timeout(&c, &v2) == S(260), "defaults after a v3 query without QRV / QQIC");
}

static void test_compat_v2_and_off(void)
{
    fh_igmp_compat_t c;
    fh_igmp_compat_init(&c, 2, HZ);
    fh_igmp_msg_t v2 = parsed(2, 0, 100, 0, 0), v3 = parsed(3, 0, 100, 0, 0), v1 = parsed(1, 0, 0, 0, 0);
    CHECK(fh_igmp_compat_query(&c, &v2, S(10)) == 2 && fh_igmp_compat_query(&c, &v3, S(11)) == 2 &&
          c.fallbacks == 0, "a v2 host stays v2 on v2 and v3 queries");
    CHECK(fh_igmp_compat_query(&c, &v1, S(20)) == 1 && c.fallbacks == 1, "v1 query: v1");
    CHECK(fh_igmp_compat_mode(&c, S(420) - 1) == 1 && fh_igmp_compat_mode(&c, S(420)) == 2,
          "v1 for the Version 1 Router Present Timeout, 400 s");

    fh_igmp_compat_init(&c, 0, HZ);
    CHECK(fh_igmp_compat_query(&c, &v1, S(20)) == 0 && c.fallbacks == 0, "off stays off");
}

int main(void)
{
    test_frames();
    test_parse();
    test_compat_v3();
    test_compat_v2_and_off();
    if (failures) {
        fprintf(stderr, "test_igmp: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_igmp: ok\n");
    return 0;
}
