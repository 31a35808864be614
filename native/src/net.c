/* Ethernet / VLAN / IPv4 / UDP to feed line (fh/net.h). */
#include "fh/net.h"

static const char *const drop_names[FH_NET_DROP_COUNT] = {
#define FH_X(n) #n,
    FH_NET_DROPS(FH_X)
#undef FH_X
};

const char *fh_net_drop_name(int cause) { return cause >= 0 && cause < FH_NET_DROP_COUNT ? drop_names[cause] : NULL; }

int fh_net_add_line(fh_net_t *n, uint32_t dst_ip, uint16_t dst_port, uint32_t src_ip)
{
    if (n->nlines >= FH_NET_MAX_LINES)
        return FH_ERR("at most %d feed lines", FH_NET_MAX_LINES);
    n->line[n->nlines] = (fh_net_line_t){ dst_ip, dst_port, src_ip };
    return (int)n->nlines++;
}

static inline int drop(fh_net_t *n, fh_net_drop_t cause)
{
    n->drops[cause]++;
    return -1;
}

int fh_net_parse(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out)
{
    n->frames++;
    if (FH_UNLIKELY(len < 14))
        return drop(n, FH_NET_truncated_frame);
    size_t off = 12;
    uint16_t type = fh_be16(f + off);
    out->vlan = 0;
    while (type == 0x8100 || type == 0x88a8 || type == 0x9100) {
        if (len < off + 6)
            return drop(n, FH_NET_truncated_frame);
        if (!out->vlan)
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
