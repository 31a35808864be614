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
 * On stop a host leaves its groups (RFC 2236 section 3: an IGMPv2 Leave Group, type 0x17, to 224.0.0.2 per
 * group; RFC 3376 section 5.1: one IGMPv3 report with a CHANGE_TO_INCLUDE_MODE record and no sources per
 * group, which is "receive from no source").
 *
 * Host compatibility mode (RFC 3376 section 7.2.1; RFC 2236 section 4 for a host configured for v2): a
 * querier of an older version does not understand newer reports, so on hearing one the host speaks the
 * older version until the Older Version Querier Present timer expires, then goes back to the version it
 * was configured for (its maximum). IGMPv1 mode sends v1 reports (type 0x12) and no leaves (RFC 2236
 * section 4 lets a host suppress them; a v1 querier ignores them); IGMPv2 mode sends v2 reports and v2
 * leaves. fh_igmp_compat_t is that state machine, driven by the caller's time values.
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

#define FH_IGMP_ALL_ROUTERS 0xe0000002u    /* 224.0.0.2: where IGMPv2 leaves go */
#define FH_IGMP_V3_ALL_ROUTERS 0xe0000016u /* 224.0.0.22 */
#define FH_IGMP_MODE_IS_EXCLUDE 2         /* v3 record: current state (answer to a query) */
#define FH_IGMP_CHANGE_TO_INCLUDE 3       /* v3 record, no sources: a leave */
#define FH_IGMP_CHANGE_TO_EXCLUDE 4       /* v3 record: a join (unsolicited) */

#define FH_IGMP_ROBUSTNESS 2              /* RFC 3376 8.1 default, when a v3 query's QRV is 0 or none was heard */
#define FH_IGMP_QUERY_INTERVAL_S 125      /* RFC 3376 8.2 default, when a v3 query's QQIC is 0 or none was heard */
#define FH_IGMP_V1_ROUTER_PRESENT_S 400   /* RFC 2236 8.11: a v2 host's v1 fallback */

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

/* Write an IGMPv1 membership report (RFC 1112: type 0x12, to the group) into buf (FH_IGMP_V2_FRAME_LEN bytes). */
size_t fh_igmp_v1_report(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, uint32_t group, uint16_t ip_id);

/* Write an IGMPv2 Leave Group for group (type 0x17, to 224.0.0.2) into buf (FH_IGMP_V2_FRAME_LEN bytes). An
 * IGMPv3 leave is fh_igmp_v3_report(..., FH_IGMP_CHANGE_TO_INCLUDE, ...). */
size_t fh_igmp_v2_leave(uint8_t *buf, const uint8_t src_mac[6], uint32_t src_ip, uint32_t group, uint16_t ip_id);

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
    uint8_t qrv;         /* of a v3 query: the querier's robustness (0: not given) */
    uint32_t qqi_s;      /* of a v3 query: the querier's query interval in seconds (0: not given) */
    uint32_t src_ip, dst_ip;
} fh_igmp_msg_t;

/* Classify frame f of len bytes. */
fh_igmp_kind_t fh_igmp_parse(const uint8_t *f, size_t len, fh_igmp_msg_t *out);

/* Host compatibility mode. Times are in the caller's units (TSC cycles in the data plane), hz of them a
 * second; an until of 0 is a timer that never ran. */
typedef struct fh_igmp_compat {
    int max_version;         /* configured: 0 (off), 2 or 3 */
    uint64_t hz;
    uint64_t v1_until;       /* IGMPv1 Querier (v2 host: Router) Present: running while now < v1_until */
    uint64_t v2_until;       /* IGMPv2 Querier Present (a v3 host only) */
    uint32_t qrv, qi_s;      /* Robustness and Query Interval of the last v3 query heard, else the defaults */
    uint64_t fallbacks;      /* queries that took the mode down to an older version */
} fh_igmp_compat_t;

void fh_igmp_compat_init(fh_igmp_compat_t *c, int max_version, uint64_t hz);
/* The mode at time now: 1, 2 or 3 (never above max_version; 0 when off). Pure: an expired timer needs no
 * event to end. */
int fh_igmp_compat_mode(const fh_igmp_compat_t *c, uint64_t now);
/* The Older Version Querier Present timeout that query q (of version 1 or 2) starts, in time units: for a
 * v3 host RFC 3376 8.12, Robustness x Query Interval (of the last v3 query, else 2 x 125 s) + the query's
 * own response time (a v1 query's: 10 s), 260 s with the defaults; for a v2 host 400 s (RFC 2236 8.11). */
uint64_t fh_igmp_compat_timeout(const fh_igmp_compat_t *c, const fh_igmp_msg_t *q);
/* Query q (fh_igmp_parse's FH_IGMP_Q) heard at time now: a v1 query starts the v1 timer, a v2 *general*
 * query the v2 timer (RFC 3376 7.2.1; a v2 host ignores v2 queries), a v3 query only teaches QRV and QQIC
 * and never ends a fallback early. Returns the mode to answer q in. */
int fh_igmp_compat_query(fh_igmp_compat_t *c, const fh_igmp_msg_t *q, uint64_t now);

#endif
