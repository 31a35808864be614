/* ports.c: the DPDK ports fh-dataplane uses (one per distinct line device, and the retransmission server's):
 * their mempools on the port's NUMA node, one rx and one tx queue each, start and stop; and what goes out on
 * them besides IGMP (igmp_port.c): retransmission requests and answers to ARP. The frames themselves are
 * built without DPDK (frames.h); here they are only allocated, copied and transmitted.
 *
 * Every start-up call is checked and fails with a message naming the port and the error (after DPDK's
 * examples/skeleton); what was set up is recorded in the dp_t so that dp_close_ports undoes exactly that. */
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "dataplane.h"
#include "frames.h"

/* The DPDK port of a device name ("" or NULL: --port, else the first port). -1 with a message if none. */
static int port_of(const char *dev, int dflt, const char *what)
{
    if (!dev || !dev[0])
        return dflt;
    uint16_t id;
    if (rte_eth_dev_get_port_by_name(dev, &id)) {
        char names[512] = "";
        uint16_t p;
        RTE_ETH_FOREACH_DEV(p)
        {
            char n[RTE_ETH_NAME_MAX_LEN];
            if (!rte_eth_dev_get_name_by_port(p, n))
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", n);
        }
        fprintf(stderr, "fh-dataplane: %s: no DPDK device '%s' (the ports are: %s); allow it with -a ADDR or "
                        "--vdev\n", what, dev, names[0] ? names : "none");
        return -1;
    }
    return id;
}

/* Configure one rx and one tx queue, start the port, accept multicast. 0, or -1 with a message. */
static int port_init(uint16_t port, struct rte_mempool *pool)
{
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc) {
        fprintf(stderr, "fh-dataplane: port %u: cannot read device info: %s\n", port, rte_strerror(-rc));
        return -1;
    }
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE;
    if ((rc = rte_eth_dev_configure(port, 1, 1, &conf))) {
        fprintf(stderr, "fh-dataplane: port %u (%s): configure 1 rx + 1 tx queue: %s\n", port, info.driver_name,
                rte_strerror(-rc));
        return -1;
    }
    uint16_t nrx = RX_RING, ntx = TX_RING;
    if ((rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx))) {
        fprintf(stderr, "fh-dataplane: port %u: ring sizes: %s\n", port, rte_strerror(-rc));
        return -1;
    }
    int socket = rte_eth_dev_socket_id(port);
    if ((rc = rte_eth_rx_queue_setup(port, 0, nrx, socket < 0 ? (unsigned)SOCKET_ID_ANY : (unsigned)socket, NULL,
                                     pool))) {
        fprintf(stderr, "fh-dataplane: port %u: rx queue: %s\n", port, rte_strerror(-rc));
        return -1;
    }
    if ((rc = rte_eth_tx_queue_setup(port, 0, ntx, socket < 0 ? (unsigned)SOCKET_ID_ANY : (unsigned)socket, NULL))) {
        fprintf(stderr, "fh-dataplane: port %u: tx queue: %s\n", port, rte_strerror(-rc));
        return -1;
    }
    if ((rc = rte_eth_dev_start(port))) {
        fprintf(stderr, "fh-dataplane: port %u (%s): start: %s\n", port, info.driver_name, rte_strerror(-rc));
        return -1;
    }
    /* Multicast groups: accept them all here (the filter picks ours; a switch still needs the IGMP joins).
     * Not promiscuous: unicast feeds are addressed to this port. Undone at stop. */
    rte_eth_allmulticast_enable(port);
    return 0;
}

/* The retransmission requests' port, addresses and tx pool. 0, or -1 with a message. */
static int retrans_open(dp_t *dp)
{
    const opts_t *o = &dp->o;
    retrans_t *rt = &dp->rt;
    memset(rt, 0, sizeof *rt);
    if (!o->retrans_ip || o->rx_only)
        return 0;
    rt->on = true;
    rt->port = (uint16_t)dp->line_port[o->nfeed];
    for (unsigned k = 0; k < dp->nports; k++)
        if (dp->ports[k] == rt->port)
            rt->pool = dp->tx_pool[k];
    struct rte_ether_addr mac;
    int rc = rte_eth_macaddr_get(rt->port, &mac);
    if (rc) {
        fprintf(stderr, "fh-dataplane: port %u: cannot read its MAC address for retransmission requests: %s\n",
                rt->port, rte_strerror(-rc));
        return -1;
    }
    memcpy(rt->mac, mac.addr_bytes, 6);
    memcpy(rt->dst_mac, o->retrans_mac, 6);
    rt->src_ip = o->src_ip;
    rt->dst_ip = o->retrans_ip;
    rt->src_port = o->src_port;
    rt->dst_port = o->retrans_port;
    return 0;
}

int dp_open_ports(dp_t *dp)
{
    const opts_t *o = &dp->o;
    uint16_t nports_avail = rte_eth_dev_count_avail();
    if (nports_avail == 0) {
        fprintf(stderr, "fh-dataplane: no DPDK port: bind a NIC to vfio-pci (dpdk-devbind.py) or pass a vdev, e.g. "
                        "--vdev net_pcap0,rx_pcap=FILE\n");
        return -1;
    }
    uint16_t port = 0;
    if (o->port >= 0) {
        if (!rte_eth_dev_is_valid_port((uint16_t)o->port)) {
            fprintf(stderr, "fh-dataplane: --port %d: no such port (%u available)\n", o->port, nports_avail);
            return -1;
        }
        port = (uint16_t)o->port;
    } else {
        RTE_ETH_FOREACH_DEV(port) break;
    }
    dp->port = port;
    /* The ports in use: each line's, and the retransmission server's. */
    unsigned nports = 0;
    for (uint32_t i = 0; i < o->net.nlines; i++) {
        char what[48];
        snprintf(what, sizeof what, "--line %u", i + 1);
        int p = i < o->nfeed ? port_of(o->line_dev[i], port, what)
                             : port_of(o->retrans_dev[0] ? o->retrans_dev : o->line_dev[0], port, "--retrans-dev");
        if (p < 0)
            return -1;
        dp->line_port[i] = p;
        unsigned k = 0;
        while (k < nports && dp->ports[k] != p)
            k++;
        if (k == nports)
            dp->ports[nports++] = (uint16_t)p;
    }
    if (o->rx_only) {
        dp->ports[0] = port;
        nports = 1;
    }
    bool need_tx = !o->rx_only && (o->igmp || o->retrans_ip || o->src_ip);
    for (unsigned k = 0; k < nports; k++) {
        uint16_t pid = dp->ports[k];
        int socket = rte_eth_dev_socket_id(pid);
        if (socket >= 0 && (unsigned)socket != rte_socket_id())
            fprintf(stderr, "fh-dataplane: warning: port %u is on NUMA node %d but the poll lcore %u is on node %u: "
                            "pick an lcore on node %d (fh plan) for lower latency\n",
                    pid, socket, rte_lcore_id(), rte_socket_id(), socket);
        int pool_socket = socket < 0 ? (int)rte_socket_id() : socket;
        char name[32];
        snprintf(name, sizeof name, "fh_rx%u", pid);
        dp->nports = k + 1; /* from here on dp_close_ports closes it and frees its pools */
        dp->pool[k] = dp->tx_pool[k] = NULL;
        if (!(dp->pool[k] = rte_pktmbuf_pool_create(name, NB_MBUF, MBUF_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                    pool_socket))) {
            fprintf(stderr, "fh-dataplane: port %u: mbuf pool of %d on socket %d: %s\n", pid, NB_MBUF, socket,
                    rte_strerror(rte_errno));
            return -1;
        }
        snprintf(name, sizeof name, "fh_tx%u", pid);
        if (need_tx && !(dp->tx_pool[k] = rte_pktmbuf_pool_create(name, NB_TX_MBUF, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                                  pool_socket))) {
            fprintf(stderr, "fh-dataplane: port %u: tx mbuf pool of %d on socket %d: %s\n", pid, NB_TX_MBUF, socket,
                    rte_strerror(rte_errno));
            return -1;
        }
        if (port_init(pid, dp->pool[k]))
            return -1;
        dp->nstarted = k + 1;
    }
    return retrans_open(dp);
}

int dp_open_igmp(dp_t *dp, uint64_t now)
{
    const opts_t *o = &dp->o;
    for (unsigned k = 0; k < dp->nports; k++) {
        fh_net_t mine;
        memset(&mine, 0, sizeof mine);
        for (uint32_t i = 0; i < o->nfeed; i++)
            if (dp->line_port[i] == dp->ports[k])
                mine.line[mine.nlines++] = o->net.line[i];
        if (igmp_init(&dp->ig[k], o->igmp, o->src_ip, &mine, dp->ports[k], dp->tx_pool[k], now))
            return -1;
    }
    return 0;
}

void dp_close_ports(dp_t *dp)
{
    for (unsigned k = dp->nports; k-- > 0;) {
        if (k < dp->nstarted) {
            rte_eth_allmulticast_disable(dp->ports[k]);
            rte_eth_dev_stop(dp->ports[k]);
        }
        rte_eth_dev_close(dp->ports[k]);
        rte_mempool_free(dp->tx_pool[k]); /* NULL: nothing */
        rte_mempool_free(dp->pool[k]);
        dp->pool[k] = dp->tx_pool[k] = NULL;
    }
    dp->nports = dp->nstarted = 0;
}

/* Send the feed's requests (cold: only while a gap is open). A request the tx queue refuses is counted; the
 * feed resends it after its timeout. */
__attribute__((noinline, cold)) void dp_retrans_send(retrans_t *r, const fh_mold_request_t *rq, int n)
{
    for (int i = 0; i < n; i++) {
        if (!r->on)
            return;
        struct rte_mbuf *mb = rte_pktmbuf_alloc(r->pool);
        if (!mb) {
            r->no_mbuf++;
            continue;
        }
        uint8_t *p = (uint8_t *)rte_pktmbuf_append(mb, 62);
        uint8_t payload[20];
        fh_mold_request_encode(payload, &rq[i]);
        fh_udp_frame(p, r->dst_mac, r->mac, r->src_ip, r->dst_ip, r->src_port, r->dst_port, payload, 20, ++r->ip_id);
        if (rte_eth_tx_burst(r->port, 0, &mb, 1) == 1) {
            r->sent++;
        } else {
            rte_pktmbuf_free(mb);
            r->tx_failed++;
        }
    }
}

/* A frame fh_net_parse refused as not IPv4: if it is ARP it is no drop; a request for our address (the
 * retransmission server's router asks before it sends the replies back) is answered. Cold. */
__attribute__((noinline, cold)) void dp_arp_rx(arp_t *a, fh_net_t *net, uint16_t port, struct rte_mempool *pool,
                                               uint32_t our_ip, const uint8_t *f, size_t len)
{
    struct rte_ether_addr mac;
    int have_mac = rte_eth_macaddr_get(port, &mac) == 0;
    if (!have_mac)
        memset(&mac, 0, sizeof mac);
    uint8_t reply[FH_ARP_REPLY_MAX];
    size_t n = 0;
    fh_arp_kind_t kind = fh_arp_answer(f, len, mac.addr_bytes, our_ip, reply, &n); /* frames.h, no DPDK */
    if (kind == FH_ARP_NOT)
        return;
    net->drops[FH_NET_not_ipv4]--;
    a->frames++;
    if (kind != FH_ARP_FOR_US || !pool)
        return;
    a->requests_for_us++;
    if (!have_mac)
        return;
    struct rte_mbuf *mb = rte_pktmbuf_alloc(pool);
    if (!mb) {
        a->tx_failed++;
        return;
    }
    memcpy(rte_pktmbuf_append(mb, (uint16_t)n), reply, n);
    if (rte_eth_tx_burst(port, 0, &mb, 1) == 1) {
        a->replies_sent++;
    } else {
        rte_pktmbuf_free(mb);
        a->tx_failed++;
    }
}
