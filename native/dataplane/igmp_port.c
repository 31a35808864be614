/* The data plane's IGMP membership on a DPDK port (igmp_port.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "igmp_port.h"


int igmp_init(igmp_t *g, int version, uint32_t src_ip, const fh_net_t *net, uint16_t port, struct rte_mempool *pool,
              uint64_t now)
{
    memset(g, 0, sizeof *g);
    g->version = version;
    g->port = port;
    g->pool = pool;
    g->src_ip = src_ip;
    g->hz = rte_get_tsc_hz();
    struct rte_ether_addr mac;
    memset(&mac, 0, sizeof mac);
    int rc = rte_eth_macaddr_get(port, &mac);
    if (rc && g->version) {
        fprintf(stderr, "fh-dataplane: port %u: cannot read its MAC address for IGMP reports: %s (or --igmp off)\n",
                port, rte_strerror(-rc));
        return -1;
    }
    memcpy(g->mac, mac.addr_bytes, 6);
    for (uint32_t i = 0; i < net->nlines; i++) {
        uint32_t ip = net->line[i].dst_ip;
        unsigned k = 0;
        while (k < g->ngroups && g->group[k] != ip)
            k++;
        if (fh_igmp_is_multicast(ip) && k == g->ngroups)
            g->group[g->ngroups++] = ip;
    }
    if (g->version && g->ngroups) {
        g->join = (uint32_t)((1ull << g->ngroups) - 1);
        g->due = now;
        g->link_wait_until = now + 3 * g->hz;  /* a NIC's link takes a second or two to come up */
        g->deadline = g->link_wait_until + g->hz;
    }
    return 0;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Queue the answer to a query that arrived at TSC now; true if there is one to send. */
static bool igmp_query(igmp_t *g, const fh_igmp_msg_t *m, uint64_t now)
{
    g->queries++;
    uint32_t want = 0;
    if (m->group == 0) {
        g->general_queries++;
        want = (uint32_t)((1ull << g->ngroups) - 1);
    } else {
        g->group_queries++;
        for (unsigned k = 0; k < g->ngroups; k++)
            if (g->group[k] == m->group)
                want |= 1u << k;
        if (!want)
            g->unknown_group_queries++;
    }
    if (!g->version || !want)
        return false;
    if (!(g->join | g->answer))
        g->due = now;
    g->answer |= want;
    g->deadline = max_u64(g->deadline, now + (uint64_t)(m->max_resp_ms ? m->max_resp_ms : 100) * g->hz / 1000);
    return true;
}

/* A frame fh_net_parse refused as not UDP: if it is IGMP, it is no drop. Cold. */
__attribute__((noinline, cold)) void igmp_rx(igmp_t *g, fh_net_t *net, const uint8_t *f, size_t len,
                                                     uint64_t now)
{
    fh_igmp_msg_t m;
    fh_igmp_kind_t k = fh_igmp_parse(f, len, &m);
    if (k == FH_IGMP_NOT)
        return;
    net->drops[FH_NET_not_udp]--;
    g->frames++;
    if (k == FH_IGMP_BAD)
        g->bad++;
    else if (k == FH_IGMP_OTHER)
        g->other++;
    else if (igmp_query(g, &m, now))
        igmp_flush(g, now); /* answer at once, inside the burst: well within any response time (>= 100 ms) */
}

static struct rte_mbuf *igmp_frame(igmp_t *g, const uint32_t *groups, unsigned n, uint8_t record_type)
{
    struct rte_mbuf *mb = rte_pktmbuf_alloc(g->pool);
    if (!mb)
        return NULL;
    size_t len = g->version == 2 ? FH_IGMP_V2_FRAME_LEN : FH_IGMP_V3_FRAME_LEN(n);
    uint8_t *p = (uint8_t *)rte_pktmbuf_append(mb, (uint16_t)len);
    if (!p) {
        rte_pktmbuf_free(mb);
        return NULL;
    }
    g->ip_id++;
    if (g->version == 2)
        fh_igmp_v2_report(p, g->mac, g->src_ip, groups[0], g->ip_id);
    else
        fh_igmp_v3_report(p, g->mac, g->src_ip, groups, n, record_type, g->ip_id);
    return mb;
}

/* Send the pending reports if they are due: one IGMPv2 report per group, or one IGMPv3 report for the joins
 * and one for the answers. Never blocks: what the tx queue refuses stays pending for a retry 1 ms later. */
__attribute__((noinline)) void igmp_flush(igmp_t *g, uint64_t now)
{
    if (now < g->due)
        return;
    if (now > g->deadline) {
        g->expired += (uint64_t)__builtin_popcount(g->join | g->answer);
        g->join = g->answer = 0;
        return;
    }
    if (g->join && now < g->link_wait_until) {
        struct rte_eth_link link;
        if (rte_eth_link_get_nowait(g->port, &link) == 0 && link.link_status == RTE_ETH_LINK_DOWN) {
            g->due = now + g->hz / 100;
            return;
        }
        g->link_wait_until = 0;
    }
    struct rte_mbuf *tx[FH_NET_MAX_LINES];
    uint32_t clear_join[FH_NET_MAX_LINES], clear_answer[FH_NET_MAX_LINES]; /* what each frame, once sent, settles */
    unsigned nrec[FH_NET_MAX_LINES], k = 0;
    if (g->version == 2) {
        uint32_t all = g->join | g->answer;
        for (unsigned i = 0; i < g->ngroups; i++)
            if ((all >> i) & 1) {
                if (!(tx[k] = igmp_frame(g, &g->group[i], 1, 0)))
                    break;
                clear_join[k] = clear_answer[k] = 1u << i, nrec[k] = 1;
                k++;
            }
    } else {
        uint32_t recs[FH_NET_MAX_LINES];
        uint32_t ans = g->answer & ~g->join; /* a join record answers a query too */
        for (int j = 0; j < 2; j++) {
            uint32_t m = j ? ans : g->join;
            if (!m)
                continue;
            unsigned n = 0;
            for (unsigned i = 0; i < g->ngroups; i++)
                if ((m >> i) & 1)
                    recs[n++] = g->group[i];
            if (!(tx[k] = igmp_frame(g, recs, n, j ? FH_IGMP_MODE_IS_EXCLUDE : FH_IGMP_CHANGE_TO_EXCLUDE)))
                break;
            clear_join[k] = j ? 0 : m, clear_answer[k] = m, nrec[k] = n;
            k++;
        }
    }
    uint16_t ok = k ? rte_eth_tx_burst(g->port, 0, tx, (uint16_t)k) : 0;
    for (unsigned i = 0; i < k; i++) {
        if (i < ok) {
            g->reports++;
            g->records += nrec[i];
            g->join &= ~clear_join[i];
            g->answer &= ~clear_answer[i];
        } else {
            rte_pktmbuf_free(tx[i]);
            g->tx_failed++;
        }
    }
    if (g->join | g->answer)
        g->due = now + g->hz / 1000; /* refused, or no mbuf: again in a millisecond */
}

void igmp_json(const igmp_t *g)
{
    printf("\"igmp\": {\"version\": \"%s\", \"groups\": %u, \"frames\": %" PRIu64 ", \"queries\": %" PRIu64
           ", \"general_queries\": %" PRIu64 ", \"group_queries\": %" PRIu64 ", \"unknown_group_queries\": %" PRIu64
           ", \"bad\": %" PRIu64 ", \"other\": %" PRIu64 ", \"reports_sent\": %" PRIu64 ", \"records_sent\": %" PRIu64
           ", \"tx_failed\": %" PRIu64 ", \"expired\": %" PRIu64 "}",
           g->version == 2 ? "v2" : g->version == 3 ? "v3" : "off", g->ngroups, g->frames, g->queries,
           g->general_queries, g->group_queries, g->unknown_group_queries, g->bad, g->other, g->reports, g->records,
           g->tx_failed, g->expired);
}

