/* fh-dataplane: the poll-mode core. EAL arguments, then `--`, then ours:
 *
 *   fh-dataplane [EAL args] -- --segment PATH --line GROUP:PORT[@DEV] [--line GROUP:PORT[@DEV] ...]
 *                [--name NAME] [--port N] [--max-orders N] [--max-levels N] [--events N] [--depth N]
 *                [--idle spin|backoff] [--exit-idle-ms MS] [--keep-segment] [--group GID]
 *                [--igmp v2|v3|off] [--src-ip A.B.C.D] [--mode full|rx-only]
 *                [--retrans-server IP:PORT --retrans-mac MAC [--retrans-dev DEV] [--src-port N]]
 *                [--gap-wait-us N] [--request-timeout-ms N] [--request-retries N] [--request-max N]
 *                [--max-outstanding N] [--hold N] [--unrecoverable resume|snapshot]
 *                [--line-stale-ms N] [--line-down-ms N] [--max-ahead N] [--confirm N] [--recover-max N]
 *
 * Each line is taken on its device's port (DEV: DPDK's name for it, a PCI address or a vdev's name; without
 * @DEV the first port or --port), one rx queue per port, the ports polled in turn by the main lcore, which
 * EAL pins (-l); A and B may share a port (told apart by destination group and port) or come on two. Frames
 * go net -> MoldUDP64 sequencing and recovery (fh/mold.h, docs/line-reliability.md) -> book engine -> the
 * shared segment. Every dropped frame is counted by cause; TSC stamps at rx and after each datagram is
 * applied feed a log-linear latency histogram (messages released from the hold-back buffer by a timer count
 * from that poll's start). SIGINT/SIGTERM stop it within 100 ms whatever arrives, as does, with --exit-idle-ms,
 * a port that stays silent that long after traffic (a net_pcap capture that has run out) while no gap is
 * open. On exit it prints one JSON line of final statistics on stdout.
 *
 * Recovery: a gap that the other line does not fill within --gap-wait-us is asked for from the feed's
 * request server: MoldUDP64 requests as UDP from --src-ip:--src-port to --retrans-server, Ethernet to
 * --retrans-mac (the next hop: fh run finds it in the neighbour table), sent on the port of --retrans-dev;
 * the replies come back to --src-ip:--src-port on that port as one more line (from the server only). ARP
 * requests for --src-ip are answered, so the server's router can reach us. Requests and replies are cold
 * paths: only while a gap is open.
 *
 * IGMP (igmp_port.h): for every multicast group among a port's lines, a membership report goes out on its
 * tx queue 0 right after the port starts and again when a membership query arrives (in the querier's
 * version: RFC 3376 host compatibility mode), and a leave when the data plane stops, so that a snooping
 * switch forwards the groups only while we listen. Queries (like ARP) are found among the frames
 * fh_net_parse refuses, so they cost the hot path nothing and are counted apart rather than as drops.
 * Reports never block the loop: a frame the tx queue refuses is counted and retried a millisecond later.
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
#include <rte_malloc.h>
#include <rte_prefetch.h>

#include "fh/book.h"
#include "fh/itch.h"
#include "fh/journal_mold.h"
#include "standby.h"
#include "fh/mold.h"
#include "fh/net.h"
#include "fh/seg.h"
#include "frames.h"
#include "igmp_port.h"

#define BURST 32
#define RX_RING 1024
#define TX_RING 256
#define NB_MBUF 8191
#define MBUF_CACHE 256
#define NB_TX_MBUF 63 /* IGMP reports only; a pool of their own so that rx can never starve them */

static volatile sig_atomic_t quit, promote_sig;
static void on_signal(int sig) { (void)sig; quit = 1; }
static void on_promote(int sig) { (void)sig; promote_sig = 1; } /* --standby: take the lines (standby.h) */

/* Log-linear latency histogram (HdrHistogram-style) in TSC ticks, converted to ns only when reported: the one
 * scheme of fh/shm.h (fh_shm_lat_index, fh_shm_lat_upper), here applied to ticks. */
static uint64_t hist[FH_SHM_LAT_BUCKETS];

static uint64_t hist_pct(double p, uint64_t total)
{
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total + 0.5), seen = 0;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++)
        if ((seen += hist[i]) >= want)
            return fh_shm_lat_upper(i);
    return fh_shm_lat_upper(FH_SHM_LAT_BUCKETS - 1);
}

/* Messages a timer poll released from the hold-back buffer (a gap given up or closed by it): counted as
 * applied, their latency from the poll's start (their own arrival is not kept), so that the latency count
 * equals messages_applied. */
static inline void released(uint64_t *total, uint64_t n, uint64_t since)
{
    if (FH_UNLIKELY(n)) {
        hist[fh_shm_lat_index(rte_rdtsc() - since)] += n;
        *total += n;
    }
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
    uint32_t src_ip; /* host byte order: the source of IGMP reports and retransmission requests */
    fh_net_t net;
    uint32_t nfeed;  /* the feed's lines: net.line[0 .. nfeed); net.line[nfeed] receives retransmissions */
    char line_dev[FH_NET_MAX_LINES][64]; /* DPDK device of each line; "": the first port (or --port) */
    /* retransmission */
    uint32_t retrans_ip;   /* host byte order; 0: no request server */
    uint16_t retrans_port, src_port;
    uint8_t retrans_mac[6];
    bool have_retrans_mac;
    char retrans_dev[64];
    uint32_t gap_wait_us, request_timeout_ms, request_retries, request_max, max_outstanding, hold;
    uint32_t line_stale_ms, line_down_ms;
    uint32_t max_ahead, confirm, recover_max; /* integrity: fh/mold.h */
    int unrecoverable; /* FH_MOLD_RESUME or FH_MOLD_SNAPSHOT */
    const char *publish; /* SYM,SYM,... or @FILE: the instruments to publish; NULL: all */
    const char *journal; /* the applied-message journal (fh/journal.h); NULL: none */
    uint32_t journal_mb; /* its ring, MiB (a power of two) */
    const char *restore; /* a snapshot (fh_engine_snapshot_save) to start from; NULL: empty books */
    const char *standby; /* the standby's journal to follow until promoted (standby.h); NULL: a primary */
    uint32_t standby_hold; /* datagrams held back while standby */
} opts_t;

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [EAL args] -- --segment PATH --line GROUP:PORT [--line ...] [--name NAME] [--port N]\n"
            "       [--max-orders N] [--max-levels N] [--events N] [--depth N] [--idle spin|backoff]\n"
            "       [--exit-idle-ms MS] [--keep-segment] [--group GID] [--igmp v2|v3|off] [--src-ip A.B.C.D]\n"
            "       [--mode full|rx-only]\n"
            "       lines: --line GROUP:PORT[@DEV] (DEV: a DPDK device name, e.g. 0000:3b:00.1 or net_pcap1)\n"
            "       recovery: [--retrans-server IP:PORT --retrans-mac MAC [--retrans-dev DEV] --src-ip A.B.C.D\n"
            "       [--src-port N]] [--gap-wait-us N] [--request-timeout-ms N] [--request-retries N]\n"
            "       [--request-max N] [--max-outstanding N] [--hold N] [--unrecoverable resume|snapshot]\n"
            "       [--line-stale-ms N] [--line-down-ms N] [--publish SYM,SYM,...|@FILE]\n"
            "       [--line-source A.B.C.D] (after a --line: take it from that source only)\n"
            "       integrity: [--max-ahead N] [--confirm N] [--recover-max N] (0: no limit / believed at once)\n"
            "       [--journal PATH [--journal-mb N]] (every applied message, in order, to a shared-memory ring)\n"
            "       [--restore SNAPSHOT] (start from a snapshot's books and feed position: a restart)\n"
            "       [--standby JOURNAL [--standby-hold N]] (a standby: apply that journal, hold the lines back; take\n"
            "       them at its promotion mark or SIGUSR1)\n",
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

/* "IPV4:PORT" in s (which is cut at the colon) into *ip (host byte order) and *port (<= 65535). 0, or -1
 * (the caller says what was expected). */
static int parse_ip_port(char *s, uint32_t *ip, uint32_t *port, const char *what)
{
    char *colon = strrchr(s, ':');
    struct in_addr a;
    if (!colon || (*colon = 0, inet_pton(AF_INET, s, &a) != 1) || parse_u32(colon + 1, port, what) || *port > 65535)
        return -1;
    *ip = ntohl(a.s_addr);
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
        { "retrans-server", required_argument, 0, 256 }, { "retrans-mac", required_argument, 0, 257 },
        { "retrans-dev", required_argument, 0, 258 },    { "src-port", required_argument, 0, 259 },
        { "gap-wait-us", required_argument, 0, 260 },    { "request-timeout-ms", required_argument, 0, 261 },
        { "request-retries", required_argument, 0, 262 }, { "request-max", required_argument, 0, 263 },
        { "max-outstanding", required_argument, 0, 264 }, { "hold", required_argument, 0, 265 },
        { "unrecoverable", required_argument, 0, 266 },  { "line-stale-ms", required_argument, 0, 267 },
        { "line-down-ms", required_argument, 0, 268 }, { "publish", required_argument, 0, 269 },
        { "line-source", required_argument, 0, 270 },   { "max-ahead", required_argument, 0, 271 },
        { "confirm", required_argument, 0, 272 },       { "recover-max", required_argument, 0, 273 },
        { "journal", required_argument, 0, 274 }, { "journal-mb", required_argument, 0, 275 },
        { "restore", required_argument, 0, 276 },
        { "standby", required_argument, 0, 277 }, { "standby-hold", required_argument, 0, 278 },
        { 0, 0, 0, 0 },
    };
    fh_mold_cfg_t d; /* the feed's defaults, in ms: one source (fh_mold_cfg_defaults), not a copy */
    fh_mold_cfg_defaults(&d, 1);
    *o = (opts_t){ .name = "fh", .port = -1, .gid = -1, .max_orders = 8u << 20, .max_levels = 4u << 20, .events = 1u << 16,
                   .depth = 10, .spin = true, .igmp = 2, .src_port = 40000, .gap_wait_us = (uint32_t)(d.gap_wait * 1000),
                   .request_timeout_ms = (uint32_t)d.request_timeout, .request_retries = d.retries,
                   .request_max = d.request_max, .max_outstanding = d.max_outstanding, .hold = d.hold,
                   .line_stale_ms = (uint32_t)d.line_stale, .line_down_ms = (uint32_t)d.line_down,
                   .max_ahead = (uint32_t)d.max_ahead, .confirm = d.confirm, .recover_max = (uint32_t)d.recover_max,
                   .journal_mb = 256, .standby_hold = 1u << 16 };
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
        case 256: {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            if (parse_ip_port(buf, &o->retrans_ip, &v, "--retrans-server port") || v == 0) {
                fprintf(stderr, "fh-dataplane: --retrans-server '%s': expected IPV4:PORT of the feed's request server, "
                                "e.g. 10.1.2.3:18000\n", optarg);
                return -1;
            }
            o->retrans_port = (uint16_t)v;
            break;
        }
        case 257: {
            unsigned m[6];
            char end;
            if (sscanf(optarg, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &end) != 6 ||
                m[0] > 255 || m[1] > 255 || m[2] > 255 || m[3] > 255 || m[4] > 255 || m[5] > 255) {
                fprintf(stderr, "fh-dataplane: --retrans-mac '%s': expected a MAC address, e.g. 02:00:00:00:00:01\n",
                        optarg);
                return -1;
            }
            for (int i = 0; i < 6; i++)
                o->retrans_mac[i] = (uint8_t)m[i];
            o->have_retrans_mac = true;
            break;
        }
        case 258: snprintf(o->retrans_dev, sizeof o->retrans_dev, "%s", optarg); break;
        case 259:
            if (parse_u32(optarg, &v, "--src-port") || v == 0 || v > 65535) {
                fprintf(stderr, "fh-dataplane: --src-port must be 1 to 65535\n");
                return -1;
            }
            o->src_port = (uint16_t)v;
            break;
        case 260: if (parse_u32(optarg, &o->gap_wait_us, "--gap-wait-us")) return -1; break;
        case 261: if (parse_u32(optarg, &o->request_timeout_ms, "--request-timeout-ms")) return -1; break;
        case 262: if (parse_u32(optarg, &o->request_retries, "--request-retries")) return -1; break;
        case 263: if (parse_u32(optarg, &o->request_max, "--request-max")) return -1; break;
        case 264: if (parse_u32(optarg, &o->max_outstanding, "--max-outstanding")) return -1; break;
        case 265: if (parse_u32(optarg, &o->hold, "--hold")) return -1; break;
        case 266:
            if (strcmp(optarg, "resume") && strcmp(optarg, "snapshot")) {
                fprintf(stderr, "fh-dataplane: --unrecoverable must be resume or snapshot, not '%s'\n", optarg);
                return -1;
            }
            o->unrecoverable = strcmp(optarg, "resume") ? FH_MOLD_SNAPSHOT : FH_MOLD_RESUME;
            break;
        case 267: if (parse_u32(optarg, &o->line_stale_ms, "--line-stale-ms")) return -1; break;
        case 268: if (parse_u32(optarg, &o->line_down_ms, "--line-down-ms")) return -1; break;
        case 271: if (parse_u32(optarg, &o->max_ahead, "--max-ahead")) return -1; break;
        case 272: if (parse_u32(optarg, &o->confirm, "--confirm")) return -1; break;
        case 273: if (parse_u32(optarg, &o->recover_max, "--recover-max")) return -1; break;
        case 269: o->publish = optarg; break;
        case 274: o->journal = optarg; break;
        case 275: if (parse_u32(optarg, &o->journal_mb, "--journal-mb")) return -1; break;
        case 276: o->restore = optarg; break;
        case 277: o->standby = optarg; break;
        case 278: if (parse_u32(optarg, &o->standby_hold, "--standby-hold")) return -1; break;
        case 270: { /* the source of the --line before it (source-specific multicast) */
            struct in_addr a;
            if (inet_pton(AF_INET, optarg, &a) != 1 || !o->net.nlines) {
                fprintf(stderr, "fh-dataplane: --line-source '%s': expected an IPv4 address after a --line, e.g. "
                                "--line 233.54.12.111:26477 --line-source 206.200.1.1\n", optarg);
                return -1;
            }
            fh_net_set_source(&o->net, o->net.nlines - 1, ntohl(a.s_addr));
            break;
        }
        case 'L': {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", optarg);
            char *at = strchr(buf, '@');
            if (at) {
                *at = 0;
                if (!at[1] || strlen(at + 1) >= sizeof o->line_dev[0]) {
                    fprintf(stderr, "fh-dataplane: --line '%s': name a DPDK device after @, e.g. "
                                    "233.54.12.111:26477@0000:3b:00.1\n", optarg);
                    return -1;
                }
                if (o->net.nlines < FH_NET_MAX_LINES)
                    snprintf(o->line_dev[o->net.nlines], sizeof o->line_dev[0], "%s", at + 1);
            }
            uint32_t ip;
            if (parse_ip_port(buf, &ip, &v, "--line port")) {
                fprintf(stderr, "fh-dataplane: --line '%s': expected IPV4:PORT, e.g. 233.54.12.111:26477\n", optarg);
                return -1;
            }
            if (fh_net_add_line(&o->net, ip, (uint16_t)v, 0) < 0) {
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
    o->nfeed = o->net.nlines;
    if (o->retrans_ip) {
        if (!o->src_ip) {
            fprintf(stderr, "fh-dataplane: --retrans-server needs --src-ip, the address the replies come back to\n");
            return -1;
        }
        if (!o->have_retrans_mac) {
            fprintf(stderr, "fh-dataplane: --retrans-server needs --retrans-mac, the next hop's MAC address (fh run "
                            "finds it in the neighbour table, or set feed.retransmission.mac)\n");
            return -1;
        }
        if (o->net.nlines >= FH_NET_MAX_LINES) {
            fprintf(stderr, "fh-dataplane: at most %d lines with a retransmission server\n", FH_NET_MAX_LINES - 1);
            return -1;
        }
        /* The replies: unicast to our address and port, from the server only. */
        fh_net_add_line(&o->net, o->src_ip, o->src_port, o->retrans_ip);
    }
    if (o->line_down_ms && o->line_stale_ms >= o->line_down_ms) {
        fprintf(stderr, "fh-dataplane: --line-stale-ms (%u) must be below --line-down-ms (%u)\n", o->line_stale_ms,
                o->line_down_ms);
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
    uint32_t nfeed; /* lines of the feed; the one after them (if any) carries retransmissions */
} dp_pub_t;

static fh_shm_dp_stats_t dp_out; /* 5.6 KiB: static, not on the stack */

/* Fill the data plane's section of the stats region and publish it (fh_seg_publish_dataplane). Cold: from
 * idle() every 100 ms and at exit. The tick histogram is re-bucketed into the ns scheme of fh/shm.h, each
 * tick bucket by its upper bound (as hist_pct reports it). */
/* The feed's and lines' states and counters travel into the segment under the reader contract's names: the
 * two definitions must agree, and every MoldUDP64 counter must fit. */
_Static_assert(FH_LINE_DOWN == FH_SHM_LINE_DOWN && FH_LINE_LIVE == FH_SHM_LINE_LIVE &&
                   FH_LINE_STALE == FH_SHM_LINE_STALE, "fh/mold.h FH_LINE_* must equal fh/shm.h FH_SHM_LINE_*");
_Static_assert(FH_FEED_WAITING == FH_SHM_FEED_WAITING && FH_FEED_LIVE == FH_SHM_FEED_LIVE &&
                   FH_FEED_RECOVERING == FH_SHM_FEED_RECOVERING && FH_FEED_STALE == FH_SHM_FEED_STALE &&
                   FH_FEED_ENDED == FH_SHM_FEED_ENDED, "fh/mold.h FH_FEED_* must equal fh/shm.h FH_SHM_FEED_*");
_Static_assert(FH_M_COUNT <= FH_SHM_DP_MAX_MOLD, "every MoldUDP64 counter must fit the segment's mold[]");
_Static_assert(FH_NET_DROP_COUNT <= FH_SHM_DP_MAX_DROPS, "every drop cause must fit the segment's drops[]");
_Static_assert(FH_MOLD_MAX_LINES >= FH_SHM_DP_MAX_LINES, "every published line has a feed line");

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
    d->feed_state = (uint32_t)p->feed->state;
    d->held = p->feed->held_now;
    d->outstanding = p->feed->outstanding;
    memcpy(d->session, p->feed->session, FH_MOLD_SESSION_LEN);
    d->nlines = p->net->nlines < FH_SHM_DP_MAX_LINES ? p->net->nlines : FH_SHM_DP_MAX_LINES;
    uint64_t now = rte_rdtsc();
    for (uint32_t i = 0; i < d->nlines && i < FH_MOLD_MAX_LINES; i++) {
        const fh_mold_line_t *L = &p->feed->line[i];
        fh_shm_dp_line_t *o = &d->line[i];
        o->datagrams = L->datagrams;
        o->messages = L->messages;
        o->won = L->won;
        o->duplicates = L->duplicates;
        o->late = L->late;
        o->lost = L->lost;
        o->silent_ns = L->last_rx ? (uint64_t)((double)(now - L->last_rx) * p->ns_per_tsc) : UINT64_MAX;
        o->kind = i < p->nfeed ? FH_SHM_LINE_FEED : FH_SHM_LINE_RETRANS;
        o->state = i < p->nfeed ? (uint32_t)L->state : FH_SHM_LINE_LIVE;
    }
    uint64_t total = 0;
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++) {
        if (!hist[i])
            continue;
        d->lat_bucket[fh_shm_lat_index((uint64_t)((double)fh_shm_lat_upper(i) * p->ns_per_tsc))] += hist[i];
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

/* ---- retransmission requests and ARP ------------------------------------------------------------------ */

#define MAX_PORTS (FH_NET_MAX_LINES + 1)

typedef struct retrans {
    bool on;
    uint16_t port;                 /* DPDK port the requests go out on */
    struct rte_mempool *pool;
    uint8_t mac[6], dst_mac[6];
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port, ip_id;
    uint64_t sent, tx_failed, no_mbuf;
} retrans_t;

/* Send the feed's requests (cold: only while a gap is open). A request the tx queue refuses is counted; the
 * feed resends it after its timeout. */
static __attribute__((noinline, cold)) void retrans_send(retrans_t *r, const fh_mold_request_t *rq, int n)
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

typedef struct arp {
    uint64_t frames, requests_for_us, replies_sent, tx_failed;
} arp_t;

/* A frame fh_net_parse refused as not IPv4: if it is ARP it is no drop; a request for our address (the
 * retransmission server's router asks before it sends the replies back) is answered. Cold. */
static __attribute__((noinline, cold)) void arp_rx(arp_t *a, fh_net_t *net, uint16_t port, struct rte_mempool *pool,
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

/* --publish SYM,SYM,... or @FILE (one symbol a line, # comments): the engine publishes only those. Start-up
 * only. 0, or -1 with a message. */
/* The journal (--journal): what the feed applied, after each datagram and each poll, through the tee (fh/journal_mold.h).
 * NULL: no journal, one predicted branch. The feed's consumer interface will take the tee's place. */
static fh_journal_tee_t *jtee;

static inline int feed_apply(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line, uint64_t now)
{
    int n = fh_mold_feed_apply(f, d, len, line, now);
    if (jtee)
        fh_journal_tee(jtee, f, d, len);
    return n;
}

static inline int feed_poll(fh_mold_feed_t *f, uint64_t now, fh_mold_request_t *rq, int cap)
{
    int n = fh_mold_feed_poll(f, now, rq, cap);
    if (jtee) {
        fh_journal_tee(jtee, f, NULL, 0);
        if (!cap) /* the periodic poll (line states): a sign of life for the journal's followers */
            fh_journal_heartbeat(jtee->j);
    }
    return n;
}

/* --standby (standby.h): the held datagrams go through the feed's own path at promotion. */
static int standby_apply(void *feed, const uint8_t *d, size_t len, int line, uint64_t now)
{
    return feed_apply(feed, d, len, line, now);
}

/* --standby: follow the journal; once promoted, returns NULL (the lines are the data plane's own from then on;
 * what the held datagrams gave is counted in the "standby" statistics, not in messages_applied and its latency). */
static __attribute__((noinline, cold)) fh_standby_t *standby_step(fh_standby_t *sb, fh_mold_feed_t *feed, uint64_t now)
{
    if (promote_sig)
        fh_standby_promote(sb);
    return fh_standby_poll(sb, feed, now, 256, standby_apply, feed) ? NULL : sb;
}

static int set_publish(fh_engine_t *e, const char *spec)
{
    static char buf[1 << 20];
    size_t len = 0;
    char sep = ',';
    if (spec[0] == '@') {
        FILE *fp = fopen(spec + 1, "r");
        if (!fp) {
            fprintf(stderr, "fh-dataplane: --publish %s: %s\n", spec, strerror(errno));
            return -1;
        }
        len = fread(buf, 1, sizeof buf - 1, fp);
        int big = !feof(fp);
        fclose(fp);
        if (big) {
            fprintf(stderr, "fh-dataplane: --publish %s: larger than 1 MiB; one symbol a line is enough\n", spec);
            return -1;
        }
        sep = '\n';
    } else {
        len = strlen(spec) < sizeof buf - 1 ? strlen(spec) : sizeof buf - 1;
        memcpy(buf, spec, len);
    }
    buf[len] = 0;
    static const char *syms[65536];
    uint32_t n = 0;
    for (char *p = buf, *next; p && *p; p = next) {
        next = strchr(p, sep);
        if (next)
            *next++ = 0;
        char *hash = sep == '\n' ? strchr(p, '#') : NULL;
        if (hash)
            *hash = 0;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            *--end = 0;
        if (!*p)
            continue;
        if (n == 65536) {
            fprintf(stderr, "fh-dataplane: --publish: more than 65,536 instruments\n");
            return -1;
        }
        syms[n++] = p;
    }
    if (n == 0) {
        fprintf(stderr, "fh-dataplane: --publish %s: no symbol in it (leave --publish out to publish every book)\n",
                spec);
        return -1;
    }
    if (fh_engine_set_publish_filter(e, syms, n)) {
        fprintf(stderr, "fh-dataplane: --publish: %s\n", fh_errmsg());
        return -1;
    }
    fprintf(stderr, "fh-dataplane: publishing %u instrument(s); the others' books are kept but not published\n", n);
    return 0;
}

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

    uint16_t nports_avail = rte_eth_dev_count_avail();
    if (nports_avail == 0) {
        fprintf(stderr, "fh-dataplane: no DPDK port: bind a NIC to vfio-pci (dpdk-devbind.py) or pass a vdev, e.g. "
                        "--vdev net_pcap0,rx_pcap=FILE\n");
        return 2;
    }
    uint16_t port = 0;
    if (o.port >= 0) {
        if (!rte_eth_dev_is_valid_port((uint16_t)o.port)) {
            fprintf(stderr, "fh-dataplane: --port %d: no such port (%u available)\n", o.port, nports_avail);
            return 2;
        }
        port = (uint16_t)o.port;
    } else {
        RTE_ETH_FOREACH_DEV(port) break;
    }
    /* The ports in use: each line's, and the retransmission server's. */
    uint16_t ports[MAX_PORTS];
    unsigned nports = 0;
    int line_port[FH_NET_MAX_LINES];
    for (uint32_t i = 0; i < o.net.nlines; i++) {
        char what[48];
        snprintf(what, sizeof what, "--line %u", i + 1);
        int p = i < o.nfeed ? port_of(o.line_dev[i], port, what)
                            : port_of(o.retrans_dev[0] ? o.retrans_dev : o.line_dev[0], port, "--retrans-dev");
        if (p < 0)
            return 2;
        line_port[i] = p;
        unsigned k = 0;
        while (k < nports && ports[k] != p)
            k++;
        if (k == nports)
            ports[nports++] = (uint16_t)p;
    }
    if (o.rx_only) {
        ports[0] = port;
        nports = 1;
    }
    struct rte_mempool *pool[MAX_PORTS], *tx_pool[MAX_PORTS];
    bool need_tx = !o.rx_only && (o.igmp || o.retrans_ip || o.src_ip);
    for (unsigned k = 0; k < nports; k++) {
        uint16_t pid = ports[k];
        int socket = rte_eth_dev_socket_id(pid);
        if (socket >= 0 && (unsigned)socket != rte_socket_id())
            fprintf(stderr, "fh-dataplane: warning: port %u is on NUMA node %d but the poll lcore %u is on node %u: "
                            "pick an lcore on node %d (fh plan) for lower latency\n",
                    pid, socket, rte_lcore_id(), rte_socket_id(), socket);
        int pool_socket = socket < 0 ? (int)rte_socket_id() : socket;
        char name[32];
        snprintf(name, sizeof name, "fh_rx%u", pid);
        if (!(pool[k] = rte_pktmbuf_pool_create(name, NB_MBUF, MBUF_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                pool_socket))) {
            fprintf(stderr, "fh-dataplane: port %u: mbuf pool of %d on socket %d: %s\n", pid, NB_MBUF, socket,
                    rte_strerror(rte_errno));
            return 2;
        }
        snprintf(name, sizeof name, "fh_tx%u", pid);
        tx_pool[k] = NULL;
        if (need_tx && !(tx_pool[k] = rte_pktmbuf_pool_create(name, NB_TX_MBUF, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                              pool_socket))) {
            fprintf(stderr, "fh-dataplane: port %u: tx mbuf pool of %d on socket %d: %s\n", pid, NB_TX_MBUF, socket,
                    rte_strerror(rte_errno));
            return 2;
        }
        if (port_init(pid, pool[k]))
            return 2;
    }

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

    if (o.publish && set_publish(e, o.publish)) {
        fh_engine_destroy(e);
        fh_seg_close(seg, 1);
        return 2;
    }
    /* MoldUDP64 sequencing and recovery; the hold-back buffer on the first port's NUMA node. */
    fh_mold_cfg_t mc;
    fh_mold_cfg_defaults(&mc, hz / 1000);
    mc.gap_wait = (uint64_t)o.gap_wait_us * hz / 1000000;
    mc.request_timeout = (uint64_t)o.request_timeout_ms * hz / 1000;
    mc.retries = o.request_retries;
    mc.request_max = o.request_max;
    mc.max_outstanding = o.max_outstanding;
    mc.hold = o.hold;
    mc.can_request = o.retrans_ip != 0;
    mc.policy = o.unrecoverable;
    mc.line_stale = (uint64_t)o.line_stale_ms * hz / 1000;
    mc.line_down = (uint64_t)o.line_down_ms * hz / 1000;
    mc.recovery_lines = o.retrans_ip ? 1u << o.nfeed : 0;
    mc.max_ahead = o.max_ahead;
    mc.confirm = o.confirm;
    mc.recover_max = o.recover_max;
    mc.msg_len = fh_itch_len; /* a block whose length is not its ITCH type's makes its datagram misframed */
    if (o.hold && !(o.hold & (o.hold - 1))) {
        int sock = rte_eth_dev_socket_id(ports[0]);
        mc.hold_mem = rte_zmalloc_socket("fh_hold", (size_t)o.hold * sizeof(fh_mold_slot_t), 64,
                                         sock < 0 ? SOCKET_ID_ANY : sock);
        if (!mc.hold_mem) {
            fprintf(stderr, "fh-dataplane: no room for a hold-back buffer of %u messages (%zu MiB): give EAL more "
                            "memory (-m) or a smaller --hold\n", o.hold, ((size_t)o.hold * sizeof(fh_mold_slot_t)) >> 20);
            fh_engine_destroy(e);
            fh_seg_close(seg, 1);
            return 2;
        }
    }
    fh_mold_feed_t feed;
    if (o.unrecoverable == FH_MOLD_SNAPSHOT)
        fprintf(stderr, "fh-dataplane: warning: --unrecoverable snapshot: this build has no snapshot source yet "
                        "(fh/mold.h defines the interface); gaps that cannot be filled leave the books stale\n");
    if (fh_mold_feed_init(&feed, &mc)) {
        fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
        fh_engine_destroy(e);
        fh_seg_close(seg, 1);
        return 2;
    }
    fh_feed_consumer_t books;
    fh_engine_consumer(e, &books); /* the feed delivers to the engine (--journal: through the journal's tee) */
    fh_mold_feed_set_consumer(&feed, &books);
    if (o.restore) { /* a restart: the snapshot's books, and the feed goes on after its sequence (what came since
                      * is asked for again or arrives as the feed's later datagrams; earlier ones are duplicates) */
        fh_snapshot_meta_t sm;
        if (fh_engine_snapshot_load(e, o.restore, &sm)) {
            fprintf(stderr, "fh-dataplane: --restore: %s\n", fh_errmsg());
            fh_mold_feed_free(&feed);
            fh_engine_destroy(e);
            fh_seg_close(seg, 1);
            return 2;
        }
        fh_mold_feed_resume(&feed, sm.session, sm.next_seq);
        fprintf(stderr, "fh-dataplane: restored %s: %u books, %" PRIu64 " orders, session %.10s from sequence %" PRIu64 "\n",
                o.restore, sm.books, sm.orders, sm.session, sm.next_seq);
    }
    if (o.journal) {
        fh_journal_cfg_t jc = { .path = o.journal, .name = o.name, .capacity = (uint64_t)o.journal_mb << 20,
                                .gid = o.gid };
        fh_journal_t *j = fh_journal_create(&jc);
        jtee = j ? malloc(sizeof *jtee) : NULL;
        if (!jtee) {
            fprintf(stderr, "fh-dataplane: --journal: %s\n", j ? "out of memory" : fh_errmsg());
            fh_journal_close(j, 1);
            fh_mold_feed_free(&feed);
            fh_engine_destroy(e);
            fh_seg_close(seg, 1);
            return 2;
        }
        fh_journal_tee_init(jtee, j);
        fh_journal_tee_attach(jtee, &feed); /* the journal stands in front of the engine */
        if (feed.have_session) { /* restored: the journal goes on from the snapshot's position */
            memcpy(jtee->session, feed.session, FH_MOLD_SESSION_LEN);
            jtee->have_session = 1;
            jtee->next_seq = feed.next_seq;
        }
        fprintf(stderr, "fh-dataplane: journal %s (%u MiB ring)\n", o.journal, o.journal_mb);
    }
    fh_standby_t *sb = NULL, *following = NULL; /* --standby: while following is set, the lines are held back */
    if (o.standby && !(following = sb = fh_standby_open(o.standby, o.standby_hold, e, jtee, hz))) {
        fh_mold_feed_free(&feed);
        fh_engine_destroy(e);
        fh_seg_close(seg, 1);
        return 2;
    }
    if (sb)
        signal(SIGUSR1, on_promote);
    retrans_t rt;
    memset(&rt, 0, sizeof rt);
    if (o.retrans_ip) {
        rt.on = true;
        rt.port = (uint16_t)line_port[o.nfeed];
        for (unsigned k = 0; k < nports; k++)
            if (ports[k] == rt.port)
                rt.pool = tx_pool[k];
        struct rte_ether_addr mac;
        int rc = rte_eth_macaddr_get(rt.port, &mac);
        if (rc) {
            fprintf(stderr, "fh-dataplane: port %u: cannot read its MAC address for retransmission requests: %s\n",
                    rt.port, rte_strerror(-rc));
            return 2;
        }
        memcpy(rt.mac, mac.addr_bytes, 6);
        memcpy(rt.dst_mac, o.retrans_mac, 6);
        rt.src_ip = o.src_ip;
        rt.dst_ip = o.retrans_ip;
        rt.src_port = o.src_port;
        rt.dst_port = o.retrans_port;
    }
    arp_t arp;
    memset(&arp, 0, sizeof arp);

    uint64_t msgs_total = 0, last_rx = rte_rdtsc(), last_stats = last_rx;
    uint64_t exit_idle = (uint64_t)o.exit_idle_ms * hz / 1000, stats_every = hz / 10;
    unsigned empty = 0;
    struct rte_mbuf *bufs[BURST];
    /* IGMP per port, for the groups of the lines on it. */
    igmp_t ig[MAX_PORTS];
    for (unsigned k = 0; k < nports; k++) {
        fh_net_t mine;
        memset(&mine, 0, sizeof mine);
        for (uint32_t i = 0; i < o.nfeed; i++)
            if (line_port[i] == ports[k])
                mine.line[mine.nlines++] = o.net.line[i];
        if (igmp_init(&ig[k], o.igmp, o.src_ip, &mine, ports[k], tx_pool[k], last_rx)) {
            fh_engine_destroy(e);
            fh_seg_close(seg, 1);
            return 2;
        }
    }
    uint64_t seen_not_udp = 0, seen_not_ipv4 = 0; /* o.net.drops[...] as of the last refused frame */
    dp_pub_t pub = { .seg = seg, .net = &o.net, .feed = &feed, .ls = &ls, .ns_per_tsc = ns_per_tsc,
                     .nfeed = o.nfeed };
    fh_mold_request_t rq[FH_MOLD_MAX_OUTSTANDING];

    for (unsigned k = 0; k < nports; k++) {
        char name[RTE_ETH_NAME_MAX_LEN] = "?";
        rte_eth_dev_get_name_by_port(ports[k], name);
        unsigned nl = 0;
        for (uint32_t i = 0; i < o.nfeed; i++)
            nl += line_port[i] == ports[k];
        fprintf(stderr, "fh-dataplane: port %u (%s): %u line(s)%s, igmp %s (%u group(s))\n", ports[k], name, nl,
                rt.on && rt.port == ports[k] ? " and the retransmission server" : "",
                o.igmp ? (o.igmp == 2 ? "v2" : "v3") : "off", ig[k].ngroups);
    }
    fprintf(stderr, "fh-dataplane: lcore %u, segment %s, hold-back %u messages, %s: running\n", rte_lcore_id(),
            o.segment, o.hold, o.retrans_ip ? "retransmission requests on" : "no retransmission server");
    for (unsigned k = 0; k < nports; k++)
        if (ig[k].join)
            igmp_flush(&ig[k], rte_rdtsc()); /* the joins, right after the port started */
    /* On SIGINT/SIGTERM the loop drains what the rx queues already hold (up to 4,096 bursts, and for at most
     * 50 ms: a port that never runs dry must not keep it) so that every frame that reached a port is applied
     * or counted, then stops. Nothing in the loop takes longer than a datagram's blocks or a bounded scan
     * (fh/mold.h), so it answers within 100 ms whatever arrives. */
    unsigned next_port = 0; /* round robin: the port after the last one that had frames is polled first */
    const uint64_t drain_limit = hz / 20;
    uint64_t quit_at = 0;
    for (uint32_t drained = 0;;) {
        uint64_t t0 = rte_rdtsc();
        uint16_t n = 0;
        unsigned k = next_port;
        for (unsigned tries = 0; tries < nports; tries++, k = k + 1 == nports ? 0 : k + 1)
            if ((n = rte_eth_rx_burst(ports[k], 0, bufs, BURST)) > 0)
                break;
        if (n == 0) {
            if (quit)
                break;
            for (unsigned j = 0; j < nports; j++)
                if (FH_UNLIKELY(ig[j].join | ig[j].answer))
                    igmp_flush(&ig[j], t0);
            if (FH_UNLIKELY(fh_mold_feed_busy(&feed))) {
                uint64_t before = feed.counters[FH_M_applied];
                fh_engine_batch_begin_at(e, t0, t0);
                int nr = feed_poll(&feed, t0, rq, FH_MOLD_MAX_OUTSTANDING);
                if (nr)
                    retrans_send(&rt, rq, nr);
                released(&msgs_total, feed.counters[FH_M_applied] - before, t0);
                fh_engine_batch_end(e);
                empty = 0; /* keep polling closely while a gap is open */
            }
            if (t0 - last_stats > stats_every) {
                uint64_t before = feed.counters[FH_M_applied];
                feed_poll(&feed, t0, rq, 0); /* line states */
                released(&msgs_total, feed.counters[FH_M_applied] - before, t0);
            }
            if (FH_UNLIKELY(following != NULL) && !(following = standby_step(sb, &feed, t0)))
                empty = 0;
            if (!idle(&o, e, &pub, t0, &last_stats, stats_every, last_rx,
                      fh_mold_feed_busy(&feed) || following ? 0 : exit_idle, &ls, &empty))
                break;
            continue;
        }
        next_port = k + 1 == nports ? 0 : k + 1;
        empty = 0;
        uint64_t rx = rte_rdtsc(), now = rx; /* now: the last TSC read, the publish stamp of the next datagram */
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
                    igmp_rx(&ig[k], &o.net, rte_pktmbuf_mtod(mb, const uint8_t *), mb->data_len, rx);
                    seen_not_udp = o.net.drops[FH_NET_not_udp];
                } else if (FH_UNLIKELY(o.net.drops[FH_NET_not_ipv4] != seen_not_ipv4)) {
                    arp_rx(&arp, &o.net, ports[k], tx_pool[k], o.src_ip, rte_pktmbuf_mtod(mb, const uint8_t *),
                           mb->data_len);
                    seen_not_ipv4 = o.net.drops[FH_NET_not_ipv4];
                }
                continue;
            }
            if (FH_UNLIKELY(following != NULL)) { /* a standby: held back, applied at promotion */
                fh_standby_hold(following, pkt.payload, pkt.len, pkt.line);
                continue;
            }
            fh_engine_batch_begin_at(e, rx, now); /* stamps the events of this datagram (no TSC read) */
            int applied = feed_apply(&feed, pkt.payload, pkt.len, pkt.line, rx);
            if (applied > 0) { /* one TSC read per applied datagram: its latency, the next one's stamp */
                now = rte_rdtsc();
                hist[fh_shm_lat_index(now - rx)] += (uint64_t)applied;
                msgs_total += (uint64_t)applied;
            }
        }
        if (FH_UNLIKELY(fh_mold_feed_busy(&feed))) {
            uint64_t before = feed.counters[FH_M_applied];
            int nr = feed_poll(&feed, rx, rq, FH_MOLD_MAX_OUTSTANDING);
            if (nr)
                retrans_send(&rt, rq, nr);
            released(&msgs_total, feed.counters[FH_M_applied] - before, rx);
        }
        fh_engine_batch_end(e); /* wake blocked readers once a burst: a fence per burst, not per datagram */
        if (FH_UNLIKELY(following != NULL))
            following = standby_step(sb, &feed, rx);
        ls.packets += n;
        rte_pktmbuf_free_bulk(bufs, n);
        if (FH_UNLIKELY(ig[k].join | ig[k].answer))
            igmp_flush(&ig[k], rx);
        uint64_t t1 = rte_rdtsc();
        if (FH_UNLIKELY(!ls.first_tsc))
            ls.first_tsc = t0;
        ls.busy_cycles += t1 - t0;
        ls.busy_bursts++;
        ls.last_tsc = last_rx = t1;
        if (FH_UNLIKELY(t1 - last_stats > stats_every)) { /* every 100 ms under continuous traffic as well */
            uint64_t before = feed.counters[FH_M_applied];
            feed_poll(&feed, t1, rq, 0); /* line states */
            released(&msgs_total, feed.counters[FH_M_applied] - before, t1);
            fh_engine_publish_stats(e);
            dp_publish(&pub);
            last_stats = t1;
        }
        if (FH_UNLIKELY(quit)) {
            if (!quit_at)
                quit_at = t1;
            if (++drained > 4096 || t1 - quit_at > drain_limit)
                break;
        }
    }

    for (unsigned k = 0; k < nports; k++) /* leave the groups (bounded: a few ms) before the statistics */
        igmp_leave(&ig[k], rte_rdtsc());
    {
        uint64_t t = rte_rdtsc(), before = feed.counters[FH_M_applied];
        feed_poll(&feed, t, rq, 0);
        released(&msgs_total, feed.counters[FH_M_applied] - before, t);
    }
    fh_engine_publish_stats(e);
    dp_publish(&pub);
    struct rte_eth_stats tot;
    memset(&tot, 0, sizeof tot);
    for (unsigned k = 0; k < nports; k++) {
        memset(&st, 0, sizeof st);
        rte_eth_stats_get(ports[k], &st);
        tot.ipackets += st.ipackets, tot.imissed += st.imissed, tot.ierrors += st.ierrors;
        tot.rx_nombuf += st.rx_nombuf, tot.opackets += st.opackets, tot.oerrors += st.oerrors;
    }
    uint64_t c[FH_C_COUNT];
    fh_engine_counters(e, c);
    printf("{\"mode\": \"full\", \"packets\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"messages_applied\": %" PRIu64
           ", \"ports\": %u, \"nic\": {\"ipackets\": %" PRIu64 ", \"imissed\": %" PRIu64 ", \"ierrors\": %" PRIu64
           ", \"rx_nombuf\": %" PRIu64 ", \"opackets\": %" PRIu64 ", \"oerrors\": %" PRIu64 "}, \"drops\": {",
           ls.packets, ls.bytes, msgs_total, nports, tot.ipackets, tot.imissed, tot.ierrors, tot.rx_nombuf,
           tot.opackets, tot.oerrors);
    for (int i = 0; i < FH_NET_DROP_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_net_drop_name(i), o.net.drops[i]);
    printf("}, ");
    igmp_json(&ig[0]);
    for (unsigned k = 1; k < nports; k++) {
        printf(", \"port%u\": {", ports[k]);
        igmp_json(&ig[k]);
        printf("}");
    }
    printf(", \"arp\": {\"frames\": %" PRIu64 ", \"requests_for_us\": %" PRIu64 ", \"replies_sent\": %" PRIu64
           ", \"tx_failed\": %" PRIu64 "}, \"retransmission\": {\"server\": %s, \"requests_sent\": %" PRIu64
           ", \"tx_failed\": %" PRIu64 ", \"no_mbuf\": %" PRIu64 "}",
           arp.frames, arp.requests_for_us, arp.replies_sent, arp.tx_failed, rt.on ? "true" : "false", rt.sent,
           rt.tx_failed, rt.no_mbuf);
    char session[11];
    memcpy(session, feed.session, 10);
    session[10] = 0;
    for (int i = 0; i < 10; i++)
        if ((unsigned char)session[i] < 0x20 || session[i] == '"' || session[i] == '\\' || (unsigned char)session[i] > 0x7e)
            session[i] = '?';
    printf(", \"feed\": {\"state\": \"%s\", \"session\": \"%s\", \"next_seq\": %" PRIu64 ", \"held\": %u, "
           "\"outstanding\": %u}, \"gaps_filled\": {\"count\": %" PRIu64 ", \"last_ns\": %" PRIu64
           ", \"max_ns\": %" PRIu64 ", \"mean_ns\": %" PRIu64 "}, \"mold\": {",
           fh_feed_state_name(feed.state), feed.have_session ? session : "", feed.next_seq, feed.held_now,
           feed.outstanding, feed.filled, (uint64_t)((double)feed.fill_last * ns_per_tsc),
           (uint64_t)((double)feed.fill_max * ns_per_tsc),
           feed.filled ? (uint64_t)((double)feed.fill_total / (double)feed.filled * ns_per_tsc) : 0);
    for (int i = 0; i < FH_M_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_mold_counter_name(i), feed.counters[i]);
    printf("}, \"lines\": [");
    for (uint32_t i = 0; i < o.net.nlines && i < FH_MOLD_MAX_LINES; i++) {
        const fh_mold_line_t *L = &feed.line[i];
        printf("%s{\"kind\": \"%s\", \"state\": \"%s\", \"datagrams\": %" PRIu64 ", \"messages\": %" PRIu64
               ", \"won\": %" PRIu64 ", \"duplicates\": %" PRIu64 ", \"late\": %" PRIu64 ", \"lost\": %" PRIu64 "}",
               i ? ", " : "", i < o.nfeed ? "feed" : "retransmission",
               i < o.nfeed ? fh_line_state_name(L->state) : "live", L->datagrams, L->messages, L->won,
               L->duplicates, L->late, L->lost);
    }
    printf("], ");
    if (sb) {
        fh_standby_json(sb, stdout);
        printf(", ");
    }
    printf("\"engine\": {");
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
    if (jtee) { /* the file stays for the followers that have not read it all */
        fprintf(stderr, "fh-dataplane: journal: %" PRIu64 " records, %" PRIu64 " bytes, next sequence %" PRIu64
                ", %" PRIu64 " missed\n", jtee->j->records, jtee->j->pos, jtee->next_seq, jtee->missed);
        fh_journal_close(jtee->j, 0);
        free(jtee);
    }
    fh_standby_close(sb);
    fh_mold_feed_free(&feed);
    if (mc.hold_mem)
        rte_free(mc.hold_mem);
    for (unsigned k = 0; k < nports; k++) {
        rte_eth_allmulticast_disable(ports[k]);
        rte_eth_dev_stop(ports[k]);
        rte_eth_dev_close(ports[k]);
    }
    rte_eal_cleanup();
    return 0;
}
