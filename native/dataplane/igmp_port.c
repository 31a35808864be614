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
    fh_igmp_compat_init(&g->compat, version, g->hz);
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
    fh_igmp_compat_query(&g->compat, m, now); /* the answer goes out in the mode it leaves */
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
    if (!g->version || !want || g->left)
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

static struct rte_mbuf *igmp_alloc(igmp_t *g)
{
    struct rte_mbuf *mb = rte_pktmbuf_alloc(g->pool);
    if (!mb) {
        /* the pool is small: a PMD that frees sent mbufs lazily may hold them all in its tx ring */
        rte_eth_tx_done_cleanup(g->port, 0, 0);
        mb = rte_pktmbuf_alloc(g->pool);
    }
    return mb;
}

/* One frame in mode (1, 2 or 3): a v1 / v2 message of type about groups[0], or a v3 report with a record of
 * record_type per group. */
static struct rte_mbuf *igmp_frame(igmp_t *g, int mode, uint8_t type, const uint32_t *groups, unsigned n,
                                   uint8_t record_type)
{
    struct rte_mbuf *mb = igmp_alloc(g);
    if (!mb)
        return NULL;
    size_t len = mode < 3 ? FH_IGMP_V2_FRAME_LEN : FH_IGMP_V3_FRAME_LEN(n);
    uint8_t *p = (uint8_t *)rte_pktmbuf_append(mb, (uint16_t)len);
    if (!p) {
        rte_pktmbuf_free(mb);
        return NULL;
    }
    g->ip_id++;
    if (mode == 3)
        fh_igmp_v3_report(p, g->mac, g->src_ip, groups, n, record_type, g->ip_id);
    else if (type == FH_IGMP_V2_LEAVE)
        fh_igmp_v2_leave(p, g->mac, g->src_ip, groups[0], g->ip_id);
    else if (type == FH_IGMP_V1_REPORT)
        fh_igmp_v1_report(p, g->mac, g->src_ip, groups[0], g->ip_id);
    else
        fh_igmp_v2_report(p, g->mac, g->src_ip, groups[0], g->ip_id);
    return mb;
}

/* Send the pending reports if they are due, in the current compatibility mode: one IGMPv1 / IGMPv2 report per
 * group, or one IGMPv3 report for the joins and one for the answers. Never blocks: what the tx queue refuses
 * stays pending for a retry 1 ms later. */
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
    int mode = fh_igmp_compat_mode(&g->compat, now);
    if (mode < 3) {
        uint32_t all = g->join | g->answer;
        uint8_t type = mode == 1 ? FH_IGMP_V1_REPORT : FH_IGMP_V2_REPORT;
        for (unsigned i = 0; i < g->ngroups; i++)
            if ((all >> i) & 1) {
                if (!(tx[k] = igmp_frame(g, mode, type, &g->group[i], 1, 0)))
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
            if (!(tx[k] = igmp_frame(g, 3, FH_IGMP_V3_REPORT, recs, n,
                                     j ? FH_IGMP_MODE_IS_EXCLUDE : FH_IGMP_CHANGE_TO_EXCLUDE)))
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

void igmp_leave(igmp_t *g, uint64_t now)
{
    if (!g->version || g->left)
        return;
    g->left = true;
    g->join = g->answer = 0; /* a report now would only be taken back */
    if (!g->ngroups)
        return;
    int mode = fh_igmp_compat_mode(&g->compat, now);
    if (mode == 1) {
        g->leaves_suppressed += g->ngroups; /* an IGMPv1 querier has no leaves: the group times out there */
        return;
    }
    struct rte_mbuf *tx[FH_NET_MAX_LINES];
    unsigned n = mode == 2 ? g->ngroups : 1, nrec = mode == 2 ? 1 : g->ngroups, k = 0;
    for (; k < n; k++)
        if (!(tx[k] = igmp_frame(g, mode, FH_IGMP_V2_LEAVE, mode == 2 ? &g->group[k] : g->group, nrec,
                                 FH_IGMP_CHANGE_TO_INCLUDE)))
            break;
    g->leaves_failed += n - k; /* no mbuf */
    /* the loop has stopped: a short busy retry of what the tx queue refuses, bounded in time */
    uint64_t until = now + (uint64_t)FH_IGMP_LEAVE_WAIT_US * g->hz / 1000000;
    unsigned sent = 0;
    for (;;) {
        sent += rte_eth_tx_burst(g->port, 0, tx + sent, (uint16_t)(k - sent));
        if (sent == k || rte_rdtsc() > until)
            break;
        rte_delay_us_block(20);
    }
    g->leaves += sent;
    g->leave_records += (uint64_t)sent * nrec;
    if (sent < k) {
        rte_pktmbuf_free_bulk(tx + sent, k - sent);
        g->leaves_failed += k - sent;
        g->tx_failed += k - sent;
    }
}

static const char *vname(int v) { return v == 1 ? "v1" : v == 2 ? "v2" : v == 3 ? "v3" : "off"; }

void igmp_json(const igmp_t *g)
{
    printf("\"igmp\": {\"version\": \"%s\", \"mode\": \"%s\", \"fallbacks\": %" PRIu64 ", \"groups\": %u, \"frames\": %" PRIu64
           ", \"queries\": %" PRIu64 ", \"general_queries\": %" PRIu64 ", \"group_queries\": %" PRIu64
           ", \"unknown_group_queries\": %" PRIu64 ", \"bad\": %" PRIu64 ", \"other\": %" PRIu64 ", \"reports_sent\": %" PRIu64
           ", \"records_sent\": %" PRIu64 ", \"tx_failed\": %" PRIu64 ", \"expired\": %" PRIu64 ", \"leaves_sent\": %" PRIu64
           ", \"leave_records\": %" PRIu64 ", \"leaves_failed\": %" PRIu64 ", \"leaves_suppressed\": %" PRIu64 "}",
           vname(g->version), vname(fh_igmp_compat_mode(&g->compat, rte_rdtsc())), g->compat.fallbacks, g->ngroups,
           g->frames, g->queries, g->general_queries, g->group_queries, g->unknown_group_queries, g->bad, g->other,
           g->reports, g->records, g->tx_failed, g->expired, g->leaves, g->leave_records, g->leaves_failed,
           g->leaves_suppressed);
}
