/* Ethernet / VLAN / IPv4 / UDP to feed line (fh/net.h).
 *
 * Three parsers with one meaning. The inline one (fh_net_parse_inline, in fh/net.h) takes the feed's common
 * frame to its first two lines. The one here takes the common shape, an option-less IPv4 header (IHL 5) behind
 * any VLAN tags, to any line, with a few wide loads and combined checks: the frame is one of ours, or from an
 * unknown group (other_group, counted here), or anything else, which it hands to the full parser (parse_full,
 * cold) to find and count the drop's cause in the documented order, or to take a datagram whose IPv4 header
 * has options. native/tests/test_net.c checks all of them against a reference parser and against each other. */
#include "fh/net.h"

static const char *const drop_names[FH_NET_DROP_COUNT] = {
#define FH_X(n) #n,
    FH_NET_DROPS(FH_X)
#undef FH_X
};

const char *fh_net_drop_name(int cause) { return cause >= 0 && cause < FH_NET_DROP_COUNT ? drop_names[cause] : NULL; }

/* Unaligned loads in wire (memory) order, compared with constants built the same way. */
static inline uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint64_t wire64(const uint8_t b[8]) { uint64_t v; memcpy(&v, b, 8); return v; }
static inline uint16_t wire16(uint16_t host) { return __builtin_bswap16(host); } /* host order -> wire */

/* A line's key: bytes 16..23 of an option-less IPv4 header (destination address, UDP source port, UDP
 * destination port), the source port's two bytes set to 0xff on both sides of the compare. A zeroed slot
 * can never match, so the lookup scans every slot without looking at nlines. */
#define KEY_ANY_SPORT(w) ((w) | FH_NET_KEY_ANY_SPORT)

/* fast_want and fast_ignore of line i (lines 0 and 1: fh_net_parse_fast's), from line[i]: the 16 bytes from an
 * option-less IPv4 header's source address on (source 4, destination 4, UDP source port 2, destination port 2,
 * length 2, checksum 2), in wire order. */
static void fast_line(fh_net_t *n, uint32_t i)
{
    if (i >= 2)
        return;
    const fh_net_line_t *l = &n->line[i];
    uint8_t *want = n->fast_want[i], *ignore = n->fast_ignore[i];
    memset(want, 0, 16);
    memset(ignore, 0xff, 16);
    fh_put_be32(want, l->src_ip);
    fh_put_be32(want + 4, l->dst_ip);
    fh_put_be16(want + 10, l->dst_port);
    memset(ignore, l->src_ip ? 0 : 0xff, 4);
    memset(ignore + 4, 0, 4);
    memset(ignore + 10, 0, 2);
}

int fh_net_add_line(fh_net_t *n, uint32_t dst_ip, uint16_t dst_port, uint32_t src_ip)
{
    if (n->nlines >= FH_NET_MAX_LINES)
        return FH_ERR("at most %d feed lines", FH_NET_MAX_LINES);
    uint32_t i = n->nlines;
    uint8_t k[8] = { 0 };
    fh_put_be32(k, dst_ip);
    fh_put_be16(k + 6, dst_port);
    n->key[i] = KEY_ANY_SPORT(wire64(k));
    n->src_key[i] = __builtin_bswap32(src_ip);
    n->src_mask[i] = src_ip ? UINT32_MAX : 0;
    n->line[i] = (fh_net_line_t){ dst_ip, dst_port, src_ip };
    fast_line(n, i);
    return (int)n->nlines++;
}

int fh_net_set_source(fh_net_t *n, uint32_t i, uint32_t src_ip)
{
    if (i >= n->nlines)
        return FH_ERR("no line %u", i);
    n->src_key[i] = __builtin_bswap32(src_ip);
    n->src_mask[i] = src_ip ? UINT32_MAX : 0;
    n->line[i].src_ip = src_ip;
    fast_line(n, i);
    return 0;
}

static inline int drop(fh_net_t *n, fh_net_drop_t cause)
{
    n->drops[cause]++;
    return FH_NET_DROPPED(cause);
}

/* Every check in order, for whatever the fast path does not take: the drop's cause is the first failed. */
__attribute__((noinline, cold)) static int parse_full(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out)
{
    if (len < 14)
        return drop(n, FH_NET_truncated_frame);
    size_t off = 12;
    uint16_t type = fh_be16(f + off);
    out->vlan = 0;
    while (type == 0x8100 || type == 0x88a8 || type == 0x9100) {
        if (len < off + 6)
            return drop(n, FH_NET_truncated_frame);
        if (off == 12) /* the outermost tag's, even when it is 0 (a priority tag) */
            out->vlan = fh_be16(f + off + 2) & 0x0fff;
        off += 4;
        type = fh_be16(f + off);
    }
    off += 2;
    if (type != 0x0800)
        return drop(n, FH_NET_not_ipv4);
    if (len < off + 20)
        return drop(n, FH_NET_truncated_frame);
    const uint8_t *ip = f + off;
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
    uint16_t total = fh_be16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl)
        return drop(n, FH_NET_bad_ip_header);
    if (len < off + total)
        return drop(n, FH_NET_truncated_frame);
    if (fh_be16(ip + 6) & 0x3fff) /* MF flag or a fragment offset */
        return drop(n, FH_NET_ip_fragment);
    if (ip[9] != 17)
        return drop(n, FH_NET_not_udp);
    if (total < ihl + 8)
        return drop(n, FH_NET_bad_udp_length);
    const uint8_t *udp = ip + ihl;
    uint16_t ulen = fh_be16(udp + 4);
    if (ulen < 8 || ulen > total - ihl)
        return drop(n, FH_NET_bad_udp_length);
    uint32_t dst = fh_be32(ip + 16), src = fh_be32(ip + 12);
    uint16_t dport = fh_be16(udp + 2);
    for (uint32_t i = 0; i < n->nlines; i++) {
        const fh_net_line_t *l = &n->line[i];
        if (l->dst_ip == dst && l->dst_port == dport && (!l->src_ip || l->src_ip == src)) {
            out->payload = udp + 8;
            out->len = ulen - 8u;
            out->line = (int)i;
            out->src_ip = src;
            return (int)i;
        }
    }
    return drop(n, FH_NET_other_group);
}

static inline int is_tag(uint16_t wire_type)
{
    return wire_type == wire16(0x8100) || wire_type == wire16(0x88a8) || wire_type == wire16(0x9100);
}

static inline int common_shape(const uint8_t *p) { return fh_net_common_shape_(p); }

/* The rest of the fast path, from an IPv4 header of the common shape with room bytes from it to the frame's
 * end (at least 28): the lengths, then the line. */
__attribute__((always_inline)) static inline int fast_tail(fh_net_t *n, const uint8_t *f, size_t len,
                                                           const uint8_t *ip, size_t room, uint16_t vlan,
                                                           fh_net_pkt_t *out)
{
    /* 28 <= total <= room; 8 <= UDP length <= total - 20. Unsigned: below the minimum wraps above any
     * maximum. */
    size_t total = fh_be16(ip + 2), ulen = fh_be16(ip + 24);
    if (FH_UNLIKELY((total - 28 > room - 28) | (ulen - 8 > total - 28)))
        return parse_full(n, f, len, out);
    uint64_t key = KEY_ANY_SPORT(ld64(ip + 16));
    uint32_t src = ld32(ip + 12);
    for (uint32_t i = 0; i < FH_NET_MAX_LINES; i++) {
        if (n->key[i] == key && (src & n->src_mask[i]) == n->src_key[i]) {
            out->payload = ip + 28;
            out->len = (uint32_t)ulen - 8;
            out->line = (int)i;
            out->src_ip = __builtin_bswap32(src);
            out->vlan = vlan;
            return (int)i;
        }
    }
    out->vlan = vlan;
    return drop(n, FH_NET_other_group);
}

/* A frame behind VLAN tags, out of line so that the untagged one needs no saved registers. */
__attribute__((noinline)) static int parse_tagged(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out)
{
    size_t off = 12; /* of the EtherType (the last one, after the tags) */
    uint16_t type = ld16(f + off);
    if (!is_tag(type))
        return parse_full(n, f, len, out);
    do {
        off += 4;
        if (len < off + 30) /* the next EtherType, IPv4 and UDP headers */
            return parse_full(n, f, len, out);
        type = ld16(f + off);
    } while (is_tag(type));
    if (!common_shape(f + off))
        return parse_full(n, f, len, out);
    return fast_tail(n, f, len, f + off + 2, len - off - 2, fh_be16(f + 14) & 0x0fff, out); /* the outermost tag's */
}

int fh_net_parse(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out)
{
    n->frames++;
    /* 42 = Ethernet 14 + IPv4 20 + UDP 8: the shortest frame of ours, and all the fast path reads of an
     * untagged one. */
    if (FH_UNLIKELY(len < 42))
        return parse_full(n, f, len, out);
    if (FH_LIKELY(common_shape(f + 12)))
        return fast_tail(n, f, len, f + 14, len - 14, 0, out);
    return parse_tagged(n, f, len, out);
}

int fh_net_parse_full(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out)
{
    n->frames++;
    return parse_full(n, f, len, out);
}
