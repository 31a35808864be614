/* native/tests/net_ref.h: the reference parser for fh/net.h, the contract one check at a time, nothing
 * clever. fh_net_parse (the fast path) must agree with it on every frame: test_net.c checks that on a
 * million generated frames, native/fuzz/fuzz_net.c on whatever libFuzzer finds. */
#ifndef FH_TEST_NET_REF_H
#define FH_TEST_NET_REF_H

#include "fh/net.h"

typedef struct ref_line {
    uint32_t dst;
    uint16_t port;
    uint32_t src;
} ref_line_t;

static inline int ref_parse(const ref_line_t *lines, int nlines, const uint8_t *f, size_t len, int *cause,
                     fh_net_pkt_t *out)
{
    size_t off = 12;
    if (len < 14) {
        *cause = FH_NET_truncated_frame;
        return -1;
    }
    unsigned type = (unsigned)f[12] << 8 | f[13];
    int tags = 0;
    while (type == 0x8100 || type == 0x88a8 || type == 0x9100) {
        if (len < off + 6) {
            *cause = FH_NET_truncated_frame;
            return -1;
        }
        if (tags++ == 0)
            out->vlan = (uint16_t)(((unsigned)f[off + 2] << 8 | f[off + 3]) & 0xfff);
        off += 4;
        type = (unsigned)f[off] << 8 | f[off + 1];
    }
    if (!tags)
        out->vlan = 0;
    off += 2;
    if (type != 0x0800) {
        *cause = FH_NET_not_ipv4;
        return -1;
    }
    if (len < off + 20) {
        *cause = FH_NET_truncated_frame;
        return -1;
    }
    const uint8_t *ip = f + off;
    unsigned version = ip[0] >> 4, ihl = (ip[0] & 15u) * 4, total = (unsigned)ip[2] << 8 | ip[3];
    if (version != 4 || ihl < 20 || total < ihl) {
        *cause = FH_NET_bad_ip_header;
        return -1;
    }
    if (len < off + total) {
        *cause = FH_NET_truncated_frame;
        return -1;
    }
    int more_fragments = (ip[6] & 0x20) != 0, offset = ((ip[6] & 0x1f) << 8 | ip[7]) != 0;
    if (more_fragments || offset) {
        *cause = FH_NET_ip_fragment;
        return -1;
    }
    if (ip[9] != 17) {
        *cause = FH_NET_not_udp;
        return -1;
    }
    if (total - ihl < 8) {
        *cause = FH_NET_bad_udp_length;
        return -1;
    }
    const uint8_t *udp = ip + ihl;
    unsigned ulen = (unsigned)udp[4] << 8 | udp[5];
    if (ulen < 8 || ulen > total - ihl) {
        *cause = FH_NET_bad_udp_length;
        return -1;
    }
    uint32_t src = (uint32_t)ip[12] << 24 | (uint32_t)ip[13] << 16 | (uint32_t)ip[14] << 8 | ip[15];
    uint32_t dst = (uint32_t)ip[16] << 24 | (uint32_t)ip[17] << 16 | (uint32_t)ip[18] << 8 | ip[19];
    unsigned dport = (unsigned)udp[2] << 8 | udp[3];
    for (int i = 0; i < nlines; i++) {
        if (lines[i].dst == dst && lines[i].port == dport && (lines[i].src == 0 || lines[i].src == src)) {
            out->payload = udp + 8;
            out->len = ulen - 8;
            out->line = i;
            out->src_ip = src;
            return i;
        }
    }
    *cause = FH_NET_other_group;
    return -1;
}

#endif
