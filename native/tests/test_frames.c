/* test_frames: the DPDK-free frames of the data plane (native/dataplane/frames.h): a retransmission request
 * as Ethernet + IPv4 + UDP, checked field by field and through the project's own parser (fh_net_parse), and
 * the answer to ARP requests (plain and VLAN-tagged; other ARP and other frames left alone). Exit 0 pass,
 * 1 fail.
 *
 * frames.c and igmp.c are compiled into this program (they live with the data plane, which is built only
 * where DPDK is). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dataplane/frames.c"
#include "../dataplane/igmp.c"
#include "fh/mold.h"
#include "fh/net.h"

#include "check.h"

static const uint8_t US[6] = { 0x02, 0, 0, 0, 0, 0x42 }, SERVER[6] = { 0x0c, 0x42, 0xa1, 0x3b, 0, 1 };
#define SRC 0x0a4d0002u /* 10.77.0.2 */
#define DST 0x0a4d0001u /* 10.77.0.1 */

static void test_udp_request(void)
{
    fh_mold_request_t rq = { .seq = 123456789, .count = 1000 };
    memcpy(rq.session, "FHSYNTH001", 10);
    uint8_t payload[20], f[128];
    fh_mold_request_encode(payload, &rq);
    size_t n = fh_udp_frame(f, SERVER, US, SRC, DST, 40000, 18000, payload, 20, 7);
    CHECK(n == 62, "length %zu, want 62 (42 + 20)", n);
    CHECK(!memcmp(f, SERVER, 6) && !memcmp(f + 6, US, 6) && fh_be16(f + 12) == 0x0800, "Ethernet header");
    const uint8_t *ip = f + 14;
    CHECK(ip[0] == 0x45 && fh_be16(ip + 2) == 48 && fh_be16(ip + 4) == 7 && ip[6] == 0x40 && ip[8] == 64 &&
              ip[9] == 17, "IPv4 header fields");
    CHECK(fh_be32(ip + 12) == SRC && fh_be32(ip + 16) == DST, "IPv4 addresses");
    CHECK(fh_igmp_csum(ip, 20) == 0, "IPv4 header checksum");
    const uint8_t *udp = ip + 20;
    CHECK(fh_be16(udp) == 40000 && fh_be16(udp + 2) == 18000 && fh_be16(udp + 4) == 28 && fh_be16(udp + 6) == 0,
          "UDP header");
    CHECK(!memcmp(udp + 8, "FHSYNTH001", 10) && fh_be64(udp + 18) == 123456789 && fh_be16(udp + 26) == 1000,
          "the MoldUDP64 request");
    /* the data plane's own parser takes it as a datagram to 10.77.0.1:18000 */
    fh_net_t net;
    memset(&net, 0, sizeof net);
    CHECK(fh_net_add_line(&net, DST, 18000, 0) == 0, "a line for the server's replies' destination");
    fh_net_pkt_t pkt;
    CHECK(fh_net_parse(&net, f, n, &pkt) == 0 && pkt.len == 20 && !memcmp(pkt.payload, payload, 20),
          "fh_net_parse reads the request back");
    /* a short payload is padded to the Ethernet minimum */
    n = fh_udp_frame(f, SERVER, US, SRC, DST, 1, 2, payload, 4, 1);
    CHECK(n == 60 && f[46] == 0 && f[59] == 0, "padded to 60, got %zu", n);
    CHECK(fh_be16(f + 14 + 2) == 32, "IP total length of the unpadded datagram");
}

/* An ARP request (who has tip? tell sip) from mac, under ntags VLAN tags. */
static size_t arp_request(uint8_t *f, const uint8_t mac[6], uint32_t sip, uint32_t tip, int ntags, uint16_t op)
{
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    size_t off = 12;
    for (int i = 0; i < ntags; i++, off += 4) {
        fh_put_be16(f + off, i ? 0x8100 : 0x88a8);
        fh_put_be16(f + off + 2, (uint16_t)(100 + i));
    }
    fh_put_be16(f + off, 0x0806);
    uint8_t *a = f + off + 2;
    fh_put_be16(a, 1), fh_put_be16(a + 2, 0x0800), a[4] = 6, a[5] = 4, fh_put_be16(a + 6, op);
    memcpy(a + 8, mac, 6), fh_put_be32(a + 14, sip);
    memset(a + 18, 0, 6), fh_put_be32(a + 24, tip);
    return off + 2 + 28;
}

static void test_arp(void)
{
    uint8_t f[128], out[FH_ARP_REPLY_MAX];
    size_t n, rn = 0;
    for (int tags = 0; tags <= 2; tags++) {
        n = arp_request(f, SERVER, DST, SRC, tags, 1);
        CHECK(fh_arp_answer(f, n, US, SRC, out, &rn) == FH_ARP_FOR_US, "%d tags: a request for us", tags);
        size_t off = 12 + 4 * (size_t)tags;
        CHECK(rn == (off + 30 < 60 ? 60 : off + 30), "%d tags: reply length %zu", tags, rn);
        CHECK(!memcmp(out, SERVER, 6) && !memcmp(out + 6, US, 6), "%d tags: to the asker, from us", tags);
        CHECK(!memcmp(out + 12, f + 12, off + 2 - 12), "%d tags: the same tags and type", tags);
        const uint8_t *r = out + off + 2;
        CHECK(fh_be16(r + 6) == 2 && !memcmp(r + 8, US, 6) && fh_be32(r + 14) == SRC, "%d tags: we are SRC", tags);
        CHECK(!memcmp(r + 18, SERVER, 6) && fh_be32(r + 24) == DST, "%d tags: to the asker's MAC and IP", tags);
    }
    n = arp_request(f, SERVER, DST, 0x0a4d0009u, 0, 1);
    CHECK(fh_arp_answer(f, n, US, SRC, out, &rn) == FH_ARP_OTHER, "a request for another address");
    n = arp_request(f, SERVER, DST, SRC, 0, 2);
    CHECK(fh_arp_answer(f, n, US, SRC, out, &rn) == FH_ARP_OTHER, "a reply is not a request");
    n = arp_request(f, SERVER, DST, SRC, 0, 1);
    CHECK(fh_arp_answer(f, n, US, 0, out, &rn) == FH_ARP_OTHER, "no address of ours: nothing answered");
    for (size_t cut = 0; cut < n; cut++) {
        fh_arp_kind_t k = fh_arp_answer(f, cut, US, SRC, out, &rn);
        CHECK(k != FH_ARP_FOR_US, "a request cut to %zu bytes is not answered", cut);
    }
    uint8_t ip4[60];
    size_t m = fh_udp_frame(ip4, SERVER, US, SRC, DST, 1, 2, f, 10, 1);
    CHECK(fh_arp_answer(ip4, m, US, SRC, out, &rn) == FH_ARP_NOT, "IPv4 is not ARP");
    /* many tags: beyond what a reply has room for */
    uint8_t big[128];
    n = arp_request(big, SERVER, DST, SRC, 9, 1);
    CHECK(fh_arp_answer(big, n, US, SRC, out, &rn) == FH_ARP_OTHER, "nine tags: not answered (no room)");
}

int main(void)
{
    test_udp_request();
    test_arp();
    if (failures) {
        fprintf(stderr, "test_frames: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_frames: ok\n");
    return 0;
}
