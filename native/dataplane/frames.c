/* The frames of frames.h: no DPDK, unit-tested by native/tests/test_frames.c. */
#include <string.h>

#include "fh/common.h"
#include "frames.h"
#include "igmp.h"

size_t fh_udp_frame(uint8_t *p, const uint8_t dst_mac[6], const uint8_t src_mac[6], uint32_t src_ip, uint32_t dst_ip,
                    uint16_t sport, uint16_t dport, const uint8_t *payload, size_t len, uint16_t ip_id)
{
    memcpy(p, dst_mac, 6);
    memcpy(p + 6, src_mac, 6);
    p[12] = 0x08, p[13] = 0x00;
    uint8_t *ip = p + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    fh_put_be16(ip + 2, (uint16_t)(20 + 8 + len));
    fh_put_be16(ip + 4, ip_id);
    ip[6] = 0x40; /* DF */
    ip[8] = 64;
    ip[9] = 17;
    fh_put_be32(ip + 12, src_ip);
    fh_put_be32(ip + 16, dst_ip);
    fh_put_be16(ip + 10, fh_igmp_csum(ip, 20)); /* the Internet checksum (igmp.h) */
    uint8_t *udp = ip + 20;
    fh_put_be16(udp, sport);
    fh_put_be16(udp + 2, dport);
    fh_put_be16(udp + 4, (uint16_t)(8 + len));
    fh_put_be16(udp + 6, 0);
    memcpy(udp + 8, payload, len);
    size_t n = FH_UDP_FRAME_HDR + len;
    if (n < FH_FRAME_MIN) {
        memset(p + n, 0, FH_FRAME_MIN - n);
        n = FH_FRAME_MIN;
    }
    return n;
}

fh_arp_kind_t fh_arp_answer(const uint8_t *f, size_t len, const uint8_t our_mac[6], uint32_t our_ip, uint8_t *out,
                            size_t *reply_len)
{
    size_t off = 12;
    uint16_t type = len >= 14 ? fh_be16(f + 12) : 0;
    while ((type == 0x8100 || type == 0x88a8) && len >= off + 6) {
        off += 4;
        type = fh_be16(f + off);
    }
    if (type != 0x0806)
        return FH_ARP_NOT;
    const uint8_t *arp = f + off + 2;
    if (len < off + 2 + 28 || off + 2 + 28 > FH_ARP_REPLY_MAX || fh_be16(arp) != 1 || fh_be16(arp + 2) != 0x0800 ||
        arp[4] != 6 || arp[5] != 4 || fh_be16(arp + 6) != 1 || !our_ip || fh_be32(arp + 24) != our_ip)
        return FH_ARP_OTHER;
    size_t n = off + 2 + 28 < FH_FRAME_MIN ? FH_FRAME_MIN : off + 2 + 28;
    memset(out, 0, n);
    memcpy(out, f + 6, 6);                   /* to the asker */
    memcpy(out + 6, our_mac, 6);
    memcpy(out + 12, f + 12, off + 2 - 12);  /* the same tags and type */
    uint8_t *r = out + off + 2;
    memcpy(r, arp, 6);                       /* hardware and protocol types and sizes */
    fh_put_be16(r + 6, 2);                   /* reply */
    memcpy(r + 8, our_mac, 6);               /* sender: us */
    fh_put_be32(r + 14, our_ip);
    memcpy(r + 18, arp + 8, 10);             /* target: the asker's MAC and IP */
    *reply_len = n;
    return FH_ARP_FOR_US;
}
