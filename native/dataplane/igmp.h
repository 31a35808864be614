/* igmp.h: the IGMP a multicast receiver needs, with no DPDK dependency (the data plane hands frames in and
 * gets frames out).
 *
 * A switch that snoops IGMP forwards a group to a port only while a host behind it reports membership:
 * once when it joins, then in answer to the querier's membership queries (general: every group; group-
 * specific: that group). Reports are IGMPv2 (RFC 2236: type 0x16 sent to the group) or IGMPv3 (RFC 3376:
 * type 0x22 sent to 224.0.0.22 with one group record per group, no sources). Both go out with TTL 1, the
 * IP Router Alert option (RFC 2113), TOS 0xc0 and DF, on Ethernet to the group's 01:00:5e MAC (RFC 1112),
 * padded to the 60-byte Ethernet minimum.
 *
 * Parsing accepts only what fh_net_parse (fh/net.h) passes up to its UDP check: Ethernet II with any
 * number of 802.1Q / 802.1ad tags, IPv4 with a sane header that fits in the frame, not a fragment, IP
 * protocol 2. Everything else is "not IGMP" and stays whatever drop fh_net counted. */
#ifndef FH_DP_IGMP_H
#define FH_DP_IGMP_H

#include <stddef.h>
#include <stdint.h>

#define FH_IGMP_QUERY 0x11
#define FH_IGMP_V1_REPORT 0x12
#define FH_IGMP_V2_REPORT 0x16
#define FH_IGMP_V2_LEAVE 0x17
#define FH_IGMP_V3_REPORT 0x22

#define FH_IGMP_V3_ALL_ROUTERS 0xe0000016u /* 224.0.0.22 */
#define FH_IGMP_MODE_IS_EXCLUDE 2         /* v3 record: current state (answer to a query) */
#define FH_IGMP_CHANGE_TO_EXCLUDE 4       /* v3 record: a join (unsolicited) */

#define FH_IGMP_FRAME_MIN 60              /* Ethernet minimum without FCS */
#define FH_IGMP_V2_FRAME_LEN 60           /* 14 + 24 (IP with router alert) + 8, padded */
#define FH_IGMP_V3_FRAME_LEN(n) (14 + 24 + 8 + 8 * (size_t)(n) < FH_IGMP_FRAME_MIN ? (size_t)FH_IGMP_FRAME_MIN \
                                 : 14 + 24 + 8 + 8 * (size_t)(n))

static inline int fh_igmp_is_multicast(uint32_t ip) { return (ip >> 28) == 0xe; } /* 224.0.0.0/4 */

/* The Internet checksum (RFC 1071) of len bytes: 0 over a block that carries a correct checksum. */
uint16_t fh_igmp_csum(const uint8_t *p, size_t len);

/* Write an IGMPv2 membership report for group (host byte order) from src_mac / src_ip into buf (at least
 * FH_IGMP_V2_FRAME_LEN bytes). Returns the frame length. */
size_t fh_igmp_v2_report(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, uint32_t group, uint16_t ip_id);

/* Write an IGMPv3 membership report with one record of record_type per group (no sources) into buf (at least
 * FH_IGMP_V3_FRAME_LEN(n) bytes). Returns the frame length. */
size_t fh_igmp_v3_report(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, const uint32_t *groups, unsigned n,
                         uint8_t record_type, uint16_t ip_id);

typedef enum fh_igmp_kind {
    FH_IGMP_NOT = 0,     /* not an IGMP frame */
    FH_IGMP_BAD,         /* IGMP, but shorter than 8 bytes or with a bad checksum: ignored */
    FH_IGMP_Q,           /* a membership query */
    FH_IGMP_OTHER,       /* a report or leave of another host, or a type we do not act on */
} fh_igmp_kind_t;

typedef struct fh_igmp_msg {
    uint8_t type;
    uint8_t version;     /* of a query: 1, 2 or 3 (RFC 3376 section 7.1) */
    uint32_t group;      /* host byte order; 0 for a general query */
    uint32_t max_resp_ms; /* of a query: the time allowed to answer (a v1 query's 0 means 10 s) */
    uint32_t src_ip, dst_ip;
} fh_igmp_msg_t;

/* Classify frame f of len bytes. */
fh_igmp_kind_t fh_igmp_parse(const uint8_t *f, size_t len, fh_igmp_msg_t *out);

#endif
