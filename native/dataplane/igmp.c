/* IGMPv1 / IGMPv2 / IGMPv3 membership reports and leaves out, membership queries in, and the host
 * compatibility mode (igmp.h). */
#include "igmp.h"

#include <string.h>

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

uint16_t fh_igmp_csum(const uint8_t *p, size_t len)
{
    uint32_t s = 0;
    for (; len > 1; p += 2, len -= 2)
        s += be16(p);
    if (len)
        s += (uint32_t)p[0] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* Ethernet to the group's MAC (01:00:5e + the low 23 bits of the group), then IPv4 with the Router Alert
 * option; returns the IP header's offset. igmp_len: bytes of IGMP after the 24-byte IP header. */
static size_t eth_ip(uint8_t *b, const uint8_t src_mac[6], uint32_t src_ip, uint32_t dst_ip, size_t igmp_len,
                     uint16_t ip_id)
{
    b[0] = 0x01, b[1] = 0x00, b[2] = 0x5e;
    b[3] = (uint8_t)((dst_ip >> 16) & 0x7f), b[4] = (uint8_t)(dst_ip >> 8), b[5] = (uint8_t)dst_ip;
    memcpy(b + 6, src_mac, 6);
    put16(b + 12, 0x0800);
    uint8_t *ip = b + 14;
    ip[0] = 0x46;                            /* version 4, 6 words: 20 + the 4-byte option */
    ip[1] = 0xc0;                            /* precedence: internetwork control */
    put16(ip + 2, (uint16_t)(24 + igmp_len));
    put16(ip + 4, ip_id);
    put16(ip + 6, 0x4000);                   /* DF */
    ip[8] = 1;                               /* TTL 1: never routed */
    ip[9] = 2;                               /* IGMP */
    put16(ip + 10, 0);
    put32(ip + 12, src_ip);
    put32(ip + 16, dst_ip);
    ip[20] = 0x94, ip[21] = 0x04, ip[22] = 0, ip[23] = 0; /* Router Alert (RFC 2113): examine this packet */
    put16(ip + 10, fh_igmp_csum(ip, 24));
    return 14;
}

static size_t pad(uint8_t *b, size_t len)
{
    if (len < FH_IGMP_FRAME_MIN) {
        memset(b + len, 0, FH_IGMP_FRAME_MIN - len);
        len = FH_IGMP_FRAME_MIN;
    }
    return len;
}

/* An 8-byte IGMPv1 / IGMPv2 message of type about group, sent to dst. */
static size_t v12(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, uint32_t dst, uint8_t type,
                  uint32_t group, uint16_t ip_id)
{
    uint8_t *g = buf + eth_ip(buf, src_mac, src_ip, dst, 8, ip_id) + 24;
    g[0] = type;
    g[1] = 0; /* max response time: 0 in a report or a leave (v1: unused) */
    put16(g + 2, 0);
    put32(g + 4, group);
    put16(g + 2, fh_igmp_csum(g, 8));
    return pad(buf, 14 + 24 + 8);
}

size_t fh_igmp_v2_report(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, uint32_t group, uint16_t ip_id)
{
    return v12(buf, src_mac, src_ip, group, FH_IGMP_V2_REPORT, group, ip_id);
}

size_t fh_igmp_v1_report(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, uint32_t group, uint16_t ip_id)
{
    return v12(buf, src_mac, src_ip, group, FH_IGMP_V1_REPORT, group, ip_id);
}

size_t fh_igmp_v2_leave(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, uint32_t group, uint16_t ip_id)
{
    return v12(buf, src_mac, src_ip, FH_IGMP_ALL_ROUTERS, FH_IGMP_V2_LEAVE, group, ip_id);
}

size_t fh_igmp_v3_report(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, const uint32_t *groups, unsigned n,
                         uint8_t record_type, uint16_t ip_id)
{
    size_t glen = 8 + 8 * (size_t)n;
    uint8_t *g = buf + eth_ip(buf, src_mac, src_ip, FH_IGMP_V3_ALL_ROUTERS, glen, ip_id) + 24;
    g[0] = FH_IGMP_V3_REPORT;
    g[1] = 0;
    put16(g + 2, 0);
    put16(g + 4, 0);
    put16(g + 6, (uint16_t)n);
    for (unsigned i = 0; i < n; i++) {
        uint8_t *r = g + 8 + 8 * i;
        r[0] = record_type;
        r[1] = 0;          /* aux data length */
        put16(r + 2, 0);   /* number of sources: none (exclude nothing = receive from every source) */
        put32(r + 4, groups[i]);
    }
    put16(g + 2, fh_igmp_csum(g, glen));
    return pad(buf, 14 + 24 + glen);
}

/* RFC 3376 4.1.1 and 4.1.7: a code below 128 is the value itself; above, a float (mantissa 4 bits, exponent
 * 3). Max Resp Code counts tenths of a second, QQIC seconds. */
static uint32_t v3_float(uint8_t code)
{
    return code < 128 ? code : ((uint32_t)(code & 0x0f) | 0x10) << (((code >> 4) & 7) + 3);
}

static uint32_t max_resp_ms(uint8_t code, int v3) { return (v3 ? v3_float(code) : code) * 100u; }

fh_igmp_kind_t fh_igmp_parse(const uint8_t *f, size_t len, fh_igmp_msg_t *out)
{
    /* The same checks, in the same order, as fh_net_parse up to its protocol test. */
    if (len < 14)
        return FH_IGMP_NOT;
    size_t off = 12;
    uint16_t type = be16(f + off);
    while (type == 0x8100 || type == 0x88a8 || type == 0x9100) {
        if (len < off + 6)
            return FH_IGMP_NOT;
        off += 4;
        type = be16(f + off);
    }
    off += 2;
    if (type != 0x0800 || len < off + 20)
        return FH_IGMP_NOT;
    const uint8_t *ip = f + off;
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
    size_t total = be16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl || len < off + total)
        return FH_IGMP_NOT;
    if (be16(ip + 6) & 0x3fff)
        return FH_IGMP_NOT;
    if (ip[9] != 2)
        return FH_IGMP_NOT;
    const uint8_t *g = ip + ihl;
    size_t glen = total - ihl;
    out->src_ip = be32(ip + 12);
    out->dst_ip = be32(ip + 16);
    out->qrv = 0;
    out->qqi_s = 0;
    if (glen < 8 || fh_igmp_csum(g, glen) != 0)
        return FH_IGMP_BAD;
    out->type = g[0];
    out->group = be32(g + 4);
    if (g[0] != FH_IGMP_QUERY)
        return FH_IGMP_OTHER;
    if (glen == 8) {
        out->version = g[1] ? 2 : 1;
        out->max_resp_ms = g[1] ? max_resp_ms(g[1], 0) : 10000;
    } else if (glen >= 12) {
        out->version = 3;
        out->max_resp_ms = max_resp_ms(g[1], 1);
        out->qrv = g[8] & 7;
        out->qqi_s = v3_float(g[9]);
    } else {
        return FH_IGMP_BAD; /* 9..11 bytes: no version of IGMP sends this (RFC 3376 7.1) */
    }
    return FH_IGMP_Q;
}

void fh_igmp_compat_init(fh_igmp_compat_t *c, int max_version, uint64_t hz)
{
    memset(c, 0, sizeof *c);
    c->max_version = max_version;
    c->hz = hz;
    c->qrv = FH_IGMP_ROBUSTNESS;
    c->qi_s = FH_IGMP_QUERY_INTERVAL_S;
}

int fh_igmp_compat_mode(const fh_igmp_compat_t *c, uint64_t now)
{
    if (c->max_version < 2)
        return c->max_version;
    if (now < c->v1_until)
        return 1;
    if (c->max_version >= 3 && now < c->v2_until)
        return 2;
    return c->max_version;
}

uint64_t fh_igmp_compat_timeout(const fh_igmp_compat_t *c, const fh_igmp_msg_t *q)
{
    if (c->max_version == 2)
        return FH_IGMP_V1_ROUTER_PRESENT_S * c->hz;
    return (uint64_t)c->qrv * c->qi_s * c->hz + (uint64_t)q->max_resp_ms * c->hz / 1000;
}

int fh_igmp_compat_query(fh_igmp_compat_t *c, const fh_igmp_msg_t *q, uint64_t now)
{
    int before = fh_igmp_compat_mode(c, now);
    if (c->max_version < 2)
        return before;
    if (q->version == 3) {
        /* RFC 3376 4.1.6 / 4.1.7: 0 means the querier did not say (QRV above 7 does not fit) */
        c->qrv = q->qrv ? q->qrv : FH_IGMP_ROBUSTNESS;
        c->qi_s = q->qqi_s ? q->qqi_s : FH_IGMP_QUERY_INTERVAL_S;
    } else if (q->version == 1) {
        c->v1_until = now + fh_igmp_compat_timeout(c, q);
    } else if (q->version == 2 && q->group == 0 && c->max_version >= 3) {
        c->v2_until = now + fh_igmp_compat_timeout(c, q);
    }
    int after = fh_igmp_compat_mode(c, now);
    if (after < before)
        c->fallbacks++;
    return after;
}
