/* igmp_port.h: the data plane's IGMP membership on a DPDK port (reports at start, answers to queries, leaves
 * at stop, in the version the querier understands), built on the DPDK-free frames and compatibility state
 * machine of igmp.h. */
#ifndef FH_DP_IGMP_PORT_H
#define FH_DP_IGMP_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_mempool.h>

#include "fh/net.h"
#include "igmp.h"

typedef struct igmp {
    int version;                          /* 0: off, 2 or 3: as configured, the most the host speaks */
    fh_igmp_compat_t compat;              /* the version it speaks now (an older querier was heard) */
    uint16_t port;
    struct rte_mempool *pool;
    uint8_t mac[6];
    uint32_t src_ip;
    uint32_t group[FH_NET_MAX_LINES];     /* the distinct multicast groups of the lines */
    unsigned ngroups;
    uint32_t join, answer;                /* groups whose report is pending: unsolicited / answer to a query */
    uint64_t due, deadline;               /* TSC: send at or after due; give up retrying after deadline */
    uint64_t link_wait_until;             /* TSC: unsolicited reports wait this long for the link to come up */
    uint64_t hz;
    uint16_t ip_id;
    /* counters */
    uint64_t frames, queries, general_queries, group_queries, unknown_group_queries, bad, other;
    uint64_t reports, records, tx_failed, expired;
    bool left;                            /* igmp_leave has run: nothing more is sent */
    uint64_t leaves, leave_records, leaves_failed, leaves_suppressed;
} igmp_t;

/* Set up for the distinct multicast groups among net's lines; version 0 (off), 2 or 3. -1 with a message
 * on stderr if the port's MAC cannot be read. */
int igmp_init(igmp_t *g, int version, uint32_t src_ip, const fh_net_t *net, uint16_t port, struct rte_mempool *pool,
              uint64_t now);
/* A frame fh_net_parse refused as not UDP: if it is IGMP it is no drop (net's not_udp is given back). Cold. */
void igmp_rx(igmp_t *g, fh_net_t *net, const uint8_t *f, size_t len, uint64_t now);
/* Send the pending reports if they are due (never blocks; refused frames are retried 1 ms later). */
void igmp_flush(igmp_t *g, uint64_t now);
/* Leave every group (on stop, before the port stops): IGMPv2 Leave Group per group, or one IGMPv3 report of
 * CHANGE_TO_INCLUDE records, or nothing in IGMPv1 mode (leaves_suppressed counts the groups). Pending reports
 * are dropped. Retries what the tx queue refuses for at most FH_IGMP_LEAVE_WAIT_US, then counts the rest as
 * leaves_failed: it never hangs. Idempotent. */
#define FH_IGMP_LEAVE_WAIT_US 5000
void igmp_leave(igmp_t *g, uint64_t now);
/* The counters as a JSON member "igmp": {...} on stdout (mode: the compatibility mode at the time of the call). */
void igmp_json(const igmp_t *g);

#endif
