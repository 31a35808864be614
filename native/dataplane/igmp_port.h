/* igmp_port.h: the data plane's IGMP membership on a DPDK port (reports at start, answers to queries), built
 * on the DPDK-free frames of igmp.h. */
#ifndef FH_DP_IGMP_PORT_H
#define FH_DP_IGMP_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_mempool.h>

#include "fh/net.h"
#include "igmp.h"

typedef struct igmp {
    int version;                          /* 0: off, 2 or 3 */
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
} igmp_t;

/* Set up for the distinct multicast groups among net's lines; version 0 (off), 2 or 3. -1 with a message
 * on stderr if the port's MAC cannot be read. */
int igmp_init(igmp_t *g, int version, uint32_t src_ip, const fh_net_t *net, uint16_t port, struct rte_mempool *pool,
              uint64_t now);
/* A frame fh_net_parse refused as not UDP: if it is IGMP it is no drop (net's not_udp is given back). Cold. */
void igmp_rx(igmp_t *g, fh_net_t *net, const uint8_t *f, size_t len, uint64_t now);
/* Send the pending reports if they are due (never blocks; refused frames are retried 1 ms later). */
void igmp_flush(igmp_t *g, uint64_t now);
/* The counters as a JSON member "igmp": {...} on stdout. */
void igmp_json(const igmp_t *g);

#endif
