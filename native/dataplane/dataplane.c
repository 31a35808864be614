/* fh-dataplane: the poll-mode core. EAL arguments, then `--`, then ours:
 *
 *   fh-dataplane [EAL args] -- --segment PATH --line GROUP:PORT [--line GROUP:PORT ...]
 *                [--name NAME] [--port N] [--max-orders N] [--max-levels N] [--events N] [--depth N]
 *                [--idle spin|backoff] [--exit-idle-ms MS] [--keep-segment] [--group GID]
 *                [--igmp v2|v3|off] [--src-ip A.B.C.D] [--mode full|rx-only]
 *
 * One rx queue of one port carries every line of the feed (told apart by destination group and port);
 * the loop runs on the main lcore, which EAL pins (-l). Frames go net -> MoldUDP64 sequencing -> book
 * engine -> the shared segment. Every dropped frame is counted by cause; TSC stamps at rx and after the
 * datagram is applied feed a log-linear latency histogram. SIGINT/SIGTERM stop it cleanly, as does, with
 * --exit-idle-ms, a port that stays silent that long after traffic (a net_pcap capture that has run
 * out). On exit it prints one JSON line of final statistics on stdout.
 *
 * IGMP (igmp.h): for every multicast group among the lines, a membership report goes out on tx queue 0
 * right after the port starts and again when a membership query arrives (a general query: every group; a
 * group-specific one: that group), so that a snooping switch keeps forwarding the groups. Queries are
 * found among the frames fh_net_parse refuses as not UDP, so they cost the hot path nothing and are
 * counted as IGMP rather than as drops. Reports never block the loop: a frame the tx queue refuses is
 * counted and retried a millisecond later until the query's response time runs out.
 *
 * --mode rx-only receives and frees, nothing else: the PMD's own cost, to subtract from a full run's
 * (both report busy_cycles, the TSC cycles spent in non-empty bursts; fh bench dataplane).
 *
 * Every start-up call is checked and fails with a message naming the port and the error; nothing exits
 * once the loop runs (after DPDK's examples/skeleton). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "fh/book.h"
#include "fh/mold.h"
#include "fh/net.h"
#include "fh/seg.h"
#include "igmp_port.h"

#define BURST 32
#define RX_RING 1024
#define TX_RING 256
#define NB_MBUF 8191
#define MBUF_CACHE 256
#define NB_TX_MBUF 63 /* IGMP reports only; a pool of their own so that rx can never starve them */

static volatile sig_atomic_t quit;
static void on_signal(int sig) { (void)sig; quit = 1; }

/* Log-linear latency histogram (HdrHistogram-style) in TSC ticks, converted to ns only when reported: exact
 * below 64 ticks, then 16 sub-buckets per power of two (6% wide), up to 2^40 ticks. */
#define HIST_SUB 16
#define HIST_BUCKETS (64 + (40 - 6) * HIST_SUB)
static uint64_t hist[HIST_BUCKETS];

static inline unsigned hist_index(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    if (e >= 40)
        return HIST_BUCKETS - 1;
    return 64 + (e - 6) * HIST_SUB + (unsigned)((v >> (e - 4)) & (HIST_SUB - 1));
}

static uint64_t hist_value(unsigned i) /* upper bound of bucket i */
{
    if (i < 64)
        return i;
    unsigned e = (i - 64) / HIST_SUB + 6, sub = (i - 64) % HIST_SUB;
    return ((uint64_t)(HIST_SUB + sub + 1) << (e - 4)) - 1;
}

static uint64_t hist_pct(double p, uint64_t total)
{
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total + 0.5), seen = 0;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if ((seen += hist[i]) >= want)
            return hist_value(i);
    return hist_value(HIST_BUCKETS - 1);
}

typedef struct opts {
    const char *segment, *name;
    int port;
    uint32_t max_orders, max_levels, events, depth;
    bool spin;
    uint32_t exit_idle_ms;
    bool keep;
    int gid; /* group of the segment files, -1: ours */
    bool rx_only;
    int igmp;        /* 0 (off), 2 or 3 */
    uint32_t src_ip; /* host byte order: the source of IGMP reports */
    fh_net_t net;
} opts_t;

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [EAL args] -- --segment PATH --line GROUP:PORT [--line ...] [--name NAME] [--port N]\n"
            "       [--max-orders N] [--max-levels N] [--events N] [--depth N] [--idle spin|backoff]\n"
            "       [--exit-idle-ms MS] [--keep-segment] [--group GID] [--igmp v2|v3|off] [--src-ip A.B.C.D]\n"
            "       [--mode full|rx-only]\n",
            prog);
}

static int parse_u32(const char *s, uint32_t *out, const char *what)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > UINT32_MAX) {
        fprintf(stderr, "fh-dataplane: %s: expected a number, got '%s'\n", what, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        { "segment", required_argument, 0, 's' },   { "line", required_argument, 0, 'L' },
        { "name", required_argument, 0, 'n' },      { "port", required_argument, 0, 'p' },
        { "max-orders", required_argument, 0, 'o' }, { "max-levels", required_argument, 0, 'v' },
        { "events", required_argument, 0, 'e' },    { "depth", required_argument, 0, 'd' },
        { "idle", required_argument, 0, 'i' },      { "exit-idle-ms", required_argument, 0, 'x' },
        { "keep-segment", no_argument, 0, 'k' },    { "group", required_argument, 0, 'G' },    { "igmp", required_argument, 0, 'g' },
        { "src-ip", required_argument, 0, 'S' },    { "mode", required_argument, 0, 'm' },
        { 0, 0, 0, 0 },
    };
    *o = (opts_t){ .name = "fh", .port = -1, .gid = -1, .max_orders = 8u << 20, .max_levels = 4u << 20, .events = 1u << 16,
                   .depth = 10, .spin = true, .igmp = 2 };
    int c;
    uint32_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 's': o->segment = optarg; break;
        case 'n': o->name = optarg; break;
        case 'k': o->keep = true; break;
        case 'G':
            if (parse_u32(optarg, &v, "--group"))
                return -1;
            o->gid = (int)v;
            break;
        case 'p':
            if (parse_u32(optarg, &v, "--port"))
                return -1;
            o->port = (int)v;
            break;
        case 'o': if (parse_u32(optarg, &o->max_orders, "--max-orders")) return -1; break;
        case 'v': if (parse_u32(optarg, &o->max_levels, "--max-levels")) return -1; break;
        case 'e': if (parse_u32(optarg, &o->events, "--events")) return -1; break;
        case 'd': if (parse_u32(optarg, &o->depth, "--depth")) return -1; break;
        case 'x': if (parse_u32(optarg, &o->exit_idle_ms, "--exit-idle-ms")) return -1; break;
        case 'i':
            if (strcmp(optarg, "spin") && strcmp(optarg, "backoff")) {
                fprintf(stderr, "fh-dataplane: --idle must be spin or backoff, not '%s'\n", optarg);
                return -1;
            }
            o->spin = !strcmp(optarg, "spin");
            break;
        case 'g':
            if (!strcmp(optarg, "v2") || !strcmp(optarg, "v3") || !strcmp(optarg, "off")) {
                o->igmp = optarg[0] == 'v' ? optarg[1] - '0' : 0;
            } else {
                fprintf(stderr, "fh-dataplane: --igmp must be v2, v3 or off, not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'S': {
            struct in_addr a;
            if (inet_pton(AF_INET, optarg, &a) != 1) {
                fprintf(stderr, "fh-dataplane: --src-ip '%s': expected an IPv4 address, e.g. 10.0.0.2\n", optarg);
                return -1;
            }
            o->src_ip = ntohl(a.s_addr);
            break;
        }
        case 'm':
            if (strcmp(optarg, "full") && strcmp(optarg, "rx-only")) {
                fprintf(stderr, "fh-dataplane: --mode must be full or rx-only, not '%s'\n", optarg);
                return -1;
            }
            o->rx_only = !strcmp(optarg, "rx-only");
            break;
        case 'L': {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            char *colon = strrchr(buf, ':');
            struct in_addr a;
            if (!colon || (*colon = 0, inet_pton(AF_INET, buf, &a) != 1) || parse_u32(colon + 1, &v, "--line port") ||
                v > 65535) {
                fprintf(stderr, "fh-dataplane: --line '%s': expected IPV4:PORT, e.g. 233.54.12.111:26477\n", optarg);
                return -1;
            }
            if (fh_net_add_line(&o->net, ntohl(a.s_addr), (uint16_t)v, 0) < 0) {
                fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
                return -1;
            }
            break;
        }
        default:
            usage(argv[0]);
            return -1;
        }
    }
    if (!o->rx_only && (!o->segment || !o->net.nlines)) {
        fprintf(stderr, "fh-dataplane: --segment and at least one --line are required\n");
        usage(argv[0]);
        return -1;
    }
    return 0;
}

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

/* ---- the poll loops -------------------------------------------------------------------------------------- */

typedef struct loop_stats {
    uint64_t packets, bytes;
    uint64_t busy_cycles, busy_bursts; /* TSC cycles from before rx_burst to the end of non-empty bursts */
    uint64_t first_tsc, last_tsc;      /* start of the first non-empty burst, end of the last */
} loop_stats_t;

/* What the data plane publishes besides the engine's counters (fh_shm_dp_stats_t). */
typedef struct dp_pub {
    fh_seg_t *seg;
    const fh_net_t *net;
    const fh_mold_feed_t *feed;
    const loop_stats_t *ls;
    double ns_per_tsc;
} dp_pub_t;

static fh_shm_dp_stats_t dp_out; /* 5.6 KiB: static, not on the stack */

/* Fill the data plane's section of the stats region and publish it (fh_seg_publish_dataplane). Cold: from
 * idle() every 100 ms and at exit. The tick histogram is re-bucketed into the ns scheme of fh/shm.h, each
 * tick bucket by its upper bound (as hist_pct reports it). */
static __attribute__((noinline, cold)) void dp_publish(const dp_pub_t *p)
{
    fh_shm_dp_stats_t *d = &dp_out;
    memset(d, 0, sizeof *d);
    d->packets = p->ls->packets;
    d->bytes = p->ls->bytes;
    d->next_seq = p->feed->next_seq;
    d->ndrops = FH_NET_DROP_COUNT < FH_SHM_DP_MAX_DROPS ? FH_NET_DROP_COUNT : FH_SHM_DP_MAX_DROPS;
    for (uint32_t i = 0; i < d->ndrops; i++) {
        d->drops[i] = p->net->drops[i];
        snprintf(d->drop_name[i], FH_SHM_DP_NAME, "%s", fh_net_drop_name((int)i));
    }
    d->nmold = FH_M_COUNT < FH_SHM_DP_MAX_MOLD ? FH_M_COUNT : FH_SHM_DP_MAX_MOLD;
    for (uint32_t i = 0; i < d->nmold; i++) {
        d->mold[i] = p->feed->counters[i];
        snprintf(d->mold_name[i], FH_SHM_DP_NAME, "%s", fh_mold_counter_name((int)i));
    }
    d->nlines = p->net->nlines < FH_SHM_DP_MAX_LINES ? p->net->nlines : FH_SHM_DP_MAX_LINES;
    for (uint32_t i = 0; i < d->nlines && i < FH_MOLD_MAX_LINES; i++) {
        d->line[i].datagrams = p->feed->line_datagrams[i];
        d->line[i].won = p->feed->line_won[i];
    }
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!hist[i])
            continue;
        d->lat_bucket[fh_shm_lat_index((uint64_t)((double)hist_value(i) * p->ns_per_tsc))] += hist[i];
        total += hist[i];
    }
    d->lat_count = total;
    fh_seg_publish_dataplane(p->seg, d);
}

/* Idle: publish stats now and then; stop after exit_idle cycles of silence following traffic; pause or nap.
 * Returns false to stop. */
static inline bool idle(const opts_t *o, fh_engine_t *e, const dp_pub_t *pub, uint64_t now, uint64_t *last_stats,
                        uint64_t stats_every, uint64_t last_rx, uint64_t exit_idle, const loop_stats_t *ls,
                        unsigned *empty)
{
    if (e && now - *last_stats > stats_every) {
        fh_engine_publish_stats(e);
        if (pub)
            dp_publish(pub);
        *last_stats = now;
    }
    if (exit_idle && ls->packets && now - last_rx > exit_idle)
        return false;
    if (o->spin || ++*empty < 1000) {
        rte_pause();
    } else {
        struct timespec nap = { 0, *empty < 100000 ? 1000 : 50000 };
        nanosleep(&nap, NULL);
    }
    return true;
}

/* --mode rx-only: receive and free, counting packets and bytes. */
static void rx_only_loop(const opts_t *o, uint16_t port, loop_stats_t *ls)
{
    const uint64_t hz = rte_get_tsc_hz();
    uint64_t last_rx = rte_rdtsc(), last_stats = last_rx, exit_idle = (uint64_t)o->exit_idle_ms * hz / 1000;
    unsigned empty = 0;
    struct rte_mbuf *bufs[BURST];
    while (!quit) {
        uint64_t t0 = rte_rdtsc();
        uint16_t n = rte_eth_rx_burst(port, 0, bufs, BURST);
        if (n == 0) {
            if (!idle(o, NULL, NULL, t0, &last_stats, hz, last_rx, exit_idle, ls, &empty))
                break;
            continue;
        }
        empty = 0;
        for (uint16_t i = 0; i < n; i++)
            ls->bytes += bufs[i]->pkt_len;
        ls->packets += n;
        rte_pktmbuf_free_bulk(bufs, n);
        uint64_t t1 = rte_rdtsc();
        if (!ls->first_tsc)
            ls->first_tsc = t0;
        ls->busy_cycles += t1 - t0;
        ls->busy_bursts++;
        ls->last_tsc = last_rx = t1;
    }
}

int main(int argc, char **argv)
{
    int eal = rte_eal_init(argc, argv);
    if (eal < 0) {
        fprintf(stderr, "fh-dataplane: EAL init failed: %s (no hugepages? add --no-huge -m 512, or reserve "
                        "some: echo 512 > /proc/sys/vm/nr_hugepages)\n", rte_strerror(rte_errno));
        return 2;
    }
    argc -= eal;
    argv += eal;
    argv[0] = "fh-dataplane";
    opts_t o;
    if (parse_opts(argc, argv, &o))
        return 2;

    uint16_t nports = rte_eth_dev_count_avail();
    if (nports == 0) {
        fprintf(stderr, "fh-dataplane: no DPDK port: bind a NIC to vfio-pci (dpdk-devbind.py) or pass a vdev, e.g. "
                        "--vdev net_pcap0,rx_pcap=FILE\n");
        return 2;
    }
    uint16_t port = 0;
    if (o.port >= 0) {
        if (!rte_eth_dev_is_valid_port((uint16_t)o.port)) {
            fprintf(stderr, "fh-dataplane: --port %d: no such port (%u available)\n", o.port, nports);
            return 2;
        }
        port = (uint16_t)o.port;
    } else {
        RTE_ETH_FOREACH_DEV(port) break;
    }
    int socket = rte_eth_dev_socket_id(port);
    if (socket >= 0 && (unsigned)socket != rte_socket_id())
        fprintf(stderr, "fh-dataplane: warning: port %u is on NUMA node %d but the poll lcore %u is on node %u: "
                        "pick an lcore on node %d (fh plan) for lower latency\n",
                port, socket, rte_lcore_id(), rte_socket_id(), socket);
    int pool_socket = socket < 0 ? (int)rte_socket_id() : socket;
    struct rte_mempool *pool = rte_pktmbuf_pool_create("fh_rx", NB_MBUF, MBUF_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                       pool_socket);
    if (!pool) {
        fprintf(stderr, "fh-dataplane: port %u: mbuf pool of %d on socket %d: %s\n", port, NB_MBUF, socket,
                rte_strerror(rte_errno));
        return 2;
    }
    struct rte_mempool *tx_pool = NULL;
    if (!o.rx_only && o.igmp &&
        !(tx_pool = rte_pktmbuf_pool_create("fh_tx", NB_TX_MBUF, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, pool_socket))) {
        fprintf(stderr, "fh-dataplane: port %u: tx mbuf pool of %d on socket %d: %s\n", port, NB_TX_MBUF, socket,
                rte_strerror(rte_errno));
        return 2;
    }
    if (port_init(port, pool))
        return 2;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const uint64_t hz = rte_get_tsc_hz();
    const double ns_per_tsc = 1e9 / (double)hz;
    loop_stats_t ls;
    memset(&ls, 0, sizeof ls);
    struct rte_eth_stats st;

    if (o.rx_only) {
        fprintf(stderr, "fh-dataplane: port %u, lcore %u: running rx-only\n", port, rte_lcore_id());
        rx_only_loop(&o, port, &ls);
        memset(&st, 0, sizeof st);
        rte_eth_stats_get(port, &st);
        printf("{\"mode\": \"rx-only\", \"packets\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"nic\": {\"ipackets\": %" PRIu64
               ", \"imissed\": %" PRIu64 ", \"ierrors\": %" PRIu64 ", \"rx_nombuf\": %" PRIu64 "}, \"busy_cycles\": %" PRIu64
               ", \"busy_bursts\": %" PRIu64 ", \"tsc_hz\": %" PRIu64 ", \"active_ns\": %" PRIu64 "}\n",
               ls.packets, ls.bytes, st.ipackets, st.imissed, st.ierrors, st.rx_nombuf, ls.busy_cycles, ls.busy_bursts,
               hz, (uint64_t)((double)(ls.last_tsc - ls.first_tsc) * ns_per_tsc));
        fflush(stdout);
        rte_eth_dev_stop(port);
        rte_eth_dev_close(port);
        rte_eal_cleanup();
        return 0;
    }

    fh_seg_cfg_t sc = { .path = o.segment, .name = o.name, .max_levels = o.max_levels, .event_capacity = o.events,
                        .depth = o.depth, .gid = o.gid };
    fh_seg_t *seg = fh_seg_create(&sc);
    if (!seg) {
        fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
        return 2;
    }
    fh_engine_cfg_t ec = { FH_MAX_LOCATE, o.max_orders, o.max_levels };
    fh_engine_t *e = fh_engine_create_on(&ec, seg);
    if (!e) {
        fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
        fh_seg_close(seg, 1);
        return 2;
    }

    fh_mold_feed_t feed;
    memset(&feed, 0, sizeof feed);
    uint64_t msgs_total = 0, last_rx = rte_rdtsc(), last_stats = last_rx;
    uint64_t exit_idle = (uint64_t)o.exit_idle_ms * hz / 1000, stats_every = hz / 10;
    unsigned empty = 0;
    struct rte_mbuf *bufs[BURST];
    igmp_t ig;
    if (igmp_init(&ig, o.igmp, o.src_ip, &o.net, port, tx_pool, last_rx)) {
        fh_engine_destroy(e);
        fh_seg_close(seg, 1);
        return 2;
    }
    uint64_t seen_not_udp = 0; /* o.net.drops[FH_NET_not_udp] as of the last refused frame */
    dp_pub_t pub = { .seg = seg, .net = &o.net, .feed = &feed, .ls = &ls, .ns_per_tsc = ns_per_tsc };

    fprintf(stderr, "fh-dataplane: port %u, %u line(s), lcore %u, segment %s, igmp %s (%u group(s)): running\n",
            port, o.net.nlines, rte_lcore_id(), o.segment, o.igmp ? (o.igmp == 2 ? "v2" : "v3") : "off",
            ig.ngroups);
    if (ig.join)
        igmp_flush(&ig, rte_rdtsc()); /* the joins, right after the port started */
    /* On SIGINT/SIGTERM the loop drains what the rx queue already holds (up to 4,096 bursts) so that every
     * frame that reached the port is applied or counted, then stops. */
    for (uint32_t drained = 0;;) {
        uint64_t t0 = rte_rdtsc();
        uint16_t n = rte_eth_rx_burst(port, 0, bufs, BURST);
        if (n == 0) {
            if (quit)
                break;
            if (FH_UNLIKELY(ig.join | ig.answer))
                igmp_flush(&ig, t0);
            if (!idle(&o, e, &pub, t0, &last_stats, stats_every, last_rx, exit_idle, &ls, &empty))
                break;
            continue;
        }
        empty = 0;
        uint64_t rx = rte_rdtsc();
        for (uint16_t i = 0; i < n; i++) {
            if (i + 1 < n)
                rte_prefetch0(rte_pktmbuf_mtod(bufs[i + 1], void *));
            struct rte_mbuf *mb = bufs[i];
            fh_net_pkt_t pkt;
            ls.bytes += mb->pkt_len;
            if (FH_UNLIKELY(mb->nb_segs != 1)) {
                o.net.drops[FH_NET_multi_segment]++;
                continue;
            }
            if (fh_net_parse(&o.net, rte_pktmbuf_mtod(mb, const uint8_t *), mb->data_len, &pkt) < 0) {
                if (FH_UNLIKELY(o.net.drops[FH_NET_not_udp] != seen_not_udp)) {
                    igmp_rx(&ig, &o.net, rte_pktmbuf_mtod(mb, const uint8_t *), mb->data_len, rx);
                    seen_not_udp = o.net.drops[FH_NET_not_udp];
                }
                continue;
            }
            fh_engine_batch_begin(e, rx); /* stamps the events of this datagram */
            int applied = fh_mold_feed_apply(&feed, e, pkt.payload, pkt.len, pkt.line);
            if (applied > 0) {
                hist[hist_index(rte_rdtsc() - rx)] += (uint64_t)applied;
                msgs_total += (uint64_t)applied;
            }
        }
        fh_engine_batch_end(e); /* wake blocked readers once a burst: a fence per burst, not per datagram */
        ls.packets += n;
        rte_pktmbuf_free_bulk(bufs, n);
        if (FH_UNLIKELY(ig.join | ig.answer))
            igmp_flush(&ig, rx);
        uint64_t t1 = rte_rdtsc();
        if (FH_UNLIKELY(!ls.first_tsc))
            ls.first_tsc = t0;
        ls.busy_cycles += t1 - t0;
        ls.busy_bursts++;
        ls.last_tsc = last_rx = t1;
        if (FH_UNLIKELY(t1 - last_stats > stats_every)) { /* every 100 ms under continuous traffic as well */
            fh_engine_publish_stats(e);
            dp_publish(&pub);
            last_stats = t1;
        }
        if (FH_UNLIKELY(quit) && ++drained > 4096)
            break;
    }

    fh_engine_publish_stats(e);
    dp_publish(&pub);
    memset(&st, 0, sizeof st);
    rte_eth_stats_get(port, &st);
    uint64_t c[FH_C_COUNT];
    fh_engine_counters(e, c);
    printf("{\"mode\": \"full\", \"packets\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"messages_applied\": %" PRIu64
           ", \"nic\": {\"ipackets\": %" PRIu64 ", \"imissed\": %" PRIu64 ", \"ierrors\": %" PRIu64
           ", \"rx_nombuf\": %" PRIu64 ", \"opackets\": %" PRIu64 ", \"oerrors\": %" PRIu64 "}, \"drops\": {",
           ls.packets, ls.bytes, msgs_total, st.ipackets, st.imissed, st.ierrors, st.rx_nombuf, st.opackets,
           st.oerrors);
    for (int i = 0; i < FH_NET_DROP_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_net_drop_name(i), o.net.drops[i]);
    printf("}, ");
    igmp_json(&ig);
    printf(", \"mold\": {");
    for (int i = 0; i < FH_M_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_mold_counter_name(i), feed.counters[i]);
    printf("}, \"lines\": [");
    for (uint32_t i = 0; i < o.net.nlines; i++)
        printf("%s{\"datagrams\": %" PRIu64 ", \"won\": %" PRIu64 "}", i ? ", " : "", feed.line_datagrams[i],
               feed.line_won[i]);
    printf("], \"engine\": {");
    for (int i = 0; i < FH_C_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_counter_name(i), c[i]);
    printf("}, \"latency_ns\": {\"count\": %" PRIu64 ", \"p50\": %" PRIu64 ", \"p99\": %" PRIu64
           ", \"p99.9\": %" PRIu64 ", \"max\": %" PRIu64 "}, \"busy_cycles\": %" PRIu64 ", \"busy_bursts\": %" PRIu64
           ", \"tsc_hz\": %" PRIu64 ", \"active_ns\": %" PRIu64 "}\n",
           msgs_total, (uint64_t)((double)hist_pct(0.5, msgs_total) * ns_per_tsc),
           (uint64_t)((double)hist_pct(0.99, msgs_total) * ns_per_tsc),
           (uint64_t)((double)hist_pct(0.999, msgs_total) * ns_per_tsc),
           (uint64_t)((double)hist_pct(1.0, msgs_total) * ns_per_tsc), ls.busy_cycles, ls.busy_bursts, hz,
           (uint64_t)((double)(ls.last_tsc - ls.first_tsc) * ns_per_tsc));
    fflush(stdout);
    fh_engine_destroy(e);
    fh_seg_close(seg, !o.keep);
    rte_eth_allmulticast_disable(port);
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
    rte_eal_cleanup();
    return 0;
}
