/* frames.h: the frames the data plane sends besides IGMP (igmp.h), with no DPDK dependency: a retransmission
 * request as Ethernet + IPv4 + UDP, and the answer to an ARP request for our address. The data plane hands
 * frames in and gets bytes out; its DPDK glue only allocates, copies and transmits (ports.c). */
#ifndef FH_DP_FRAMES_H
#define FH_DP_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#define FH_FRAME_MIN 60             /* Ethernet minimum without FCS */
#define FH_UDP_FRAME_HDR 42         /* Ethernet 14 + IPv4 20 + UDP 8 */
#define FH_ARP_REPLY_MAX (14 + 8 * 4 + 28 + 2) /* room for a reply under up to 8 VLAN tags */

/* An Ethernet + IPv4 + UDP frame of payload into out (room for 42 + len, and at least 60): IPv4 with DF,
 * TTL 64, its header checksum computed, the UDP checksum 0 (none: allowed over IPv4); padded to 60 bytes.
 * Addresses and ports in host byte order. Returns its length. */
size_t fh_udp_frame(uint8_t *out, const uint8_t dst_mac[6], const uint8_t src_mac[6], uint32_t src_ip,
                    uint32_t dst_ip, uint16_t sport, uint16_t dport, const uint8_t *payload, size_t len,
                    uint16_t ip_id);

/* What an incoming frame (len bytes: Ethernet II, any number of 802.1Q / 802.1ad tags) is to ARP. */
typedef enum fh_arp_kind {
    FH_ARP_NOT = 0,     /* not ARP */
    FH_ARP_OTHER = 1,   /* ARP, but not a well-formed IPv4-over-Ethernet request for our_ip */
    FH_ARP_FOR_US = 2   /* a request for our_ip: *reply_len bytes of reply were written to out */
} fh_arp_kind_t;

/* Classify frame f; for a request for our_ip (host byte order, nonzero) write the reply into out (room for
 * FH_ARP_REPLY_MAX bytes): to the asker, from our_mac, with the request's VLAN tags, padded to 60 bytes. */
fh_arp_kind_t fh_arp_answer(const uint8_t *f, size_t len, const uint8_t our_mac[6], uint32_t our_ip, uint8_t *out,
                            size_t *reply_len);

#endif
