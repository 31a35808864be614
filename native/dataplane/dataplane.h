/* dataplane.h: fh-dataplane's context object and its phases (private to native/dataplane/).
 *
 * One dp_t holds everything the program sets up and everything the loop counts; main runs the phases in order
 * and dp_fini undoes, in reverse, exactly what was set up, on the success path and on every error path:
 *
 *   dp_init        EAL, then our options                                   dataplane.c, options.c
 *   dp_open_ports  the ports in use: mempools, rx/tx queues, start, the retransmission port   ports.c
 *   dp_open_feed   segment, engine, publish filter, hold-back buffer, feed, restore, journal  dataplane.c
 *   dp_run         IGMP on each port, then the poll loop until a signal or --exit-idle-ms      loop.c
 *   dp_report      the final statistics: into the segment, and one JSON line on stdout         report.c
 *   dp_fini        journal, feed, hold-back buffer, engine, segment, ports, mempools, EAL      dataplane.c
 *
 * Every phase returns 0, or -1 after one line on stderr naming the cause and the fix; main then exits 2.
 * The hot path (loop.c) allocates nothing, makes no syscall and takes no lock. */
#ifndef FH_DP_DATAPLANE_H
#define FH_DP_DATAPLANE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <rte_mempool.h>

#include "fh/book.h"
#include "fh/glimpse.h"
#include "fh/journal_mold.h"
#include "fh/mold.h"
#include "fh/net.h"
#include "fh/seg.h"
#include "fh/shm.h"
#include "igmp_port.h"
#include "standby.h"

#define BURST 32
#define RX_RING 1024
#define TX_RING 256
#define NB_MBUF 8191
#define MBUF_CACHE 256
#define NB_TX_MBUF 63 /* IGMP reports only; a pool of their own so that rx can never starve them */
#define MAX_PORTS (FH_NET_MAX_LINES + 1)
#define DP_WARM_US 1000      /* --warm-us's default with --idle spin (bench/latency.md, "Idle warming") */
#define DP_WARM_US_MAX 10000000

/* Our options (after EAL's and `--`): options.c. */
typedef struct opts {
    const char *segment, *name;
    int port;
    uint32_t max_orders, max_levels, events, depth;
    uint32_t ladder_books; /* books with a price ladder of their own (fh/seg.h) */
    bool spin;
    int64_t warm_us; /* --warm-us: every book warmed once in this many µs while idle (fh_engine_warm; 0: none); -1
                      * until parsed: DP_WARM_US with --idle spin, 0 with backoff */
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
    const char *snapshot_source;   /* --snapshot-source SPEC (fh/glimpse.h): the snapshot service; NULL: none */
    fh_glimpse_cfg_t snapshot_cfg; /* ... parsed (its password read) with the other options */
} opts_t;

typedef struct loop_stats {
    uint64_t packets, bytes;
    uint64_t empty_polls, empty_cycles; /* empty polls that followed another, and the TSC cycles from each one's start
                                         * to the next's: an empty poll's period, the longest a frame waits to be seen
                                         * (full mode) */
    uint64_t busy_cycles, busy_bursts; /* TSC cycles from before rx_burst to the end of non-empty bursts */
    uint64_t first_tsc, last_tsc;      /* start of the first non-empty burst, end of the last */
} loop_stats_t;

/* Retransmission requests to the feed's request server (ports.c). */
typedef struct retrans {
    bool on;
    uint16_t port;                 /* DPDK port the requests go out on */
    struct rte_mempool *pool;
    uint8_t mac[6], dst_mac[6];
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port, ip_id;
    uint64_t sent, tx_failed, no_mbuf;
} retrans_t;

typedef struct arp {
    uint64_t frames, requests_for_us, replies_sent, tx_failed;
} arp_t;

typedef struct dp {
    opts_t o;
    uint64_t hz;
    double ns_per_tsc;
    /* What has been set up, in order; dp_fini undoes it in reverse (each field says whether its step ran). */
    bool eal;                                           /* rte_eal_init succeeded */
    uint16_t port;                                      /* --port, or the first port */
    uint16_t ports[MAX_PORTS];                          /* the ports in use */
    unsigned nports;
    unsigned nstarted;                                  /* ports[0 .. nstarted) were started */
    int line_port[FH_NET_MAX_LINES];                    /* the port of each line */
    struct rte_mempool *pool[MAX_PORTS], *tx_pool[MAX_PORTS];
    fh_seg_t *seg;
    fh_engine_t *e;
    void *hold_mem;                                     /* the feed's hold-back buffer (rte_zmalloc_socket) */
    bool feed_ok;                                       /* fh_mold_feed_init succeeded */
    fh_journal_tee_t *jtee;                             /* --journal: the tee in front of the engine; NULL: none */
    fh_standby_t *sb;                                   /* --standby: the journal followed until promoted */
    void *sb_mem;                                       /* its hold-back ring (rte_zmalloc_socket) */
    fh_glimpse_t *glimpse;                              /* --snapshot-source: the feed's snapshot source, polled in
                                                         * the loop only while the feed waits for it; NULL: none */
    bool ok;                                            /* the run ended normally: keep the journal (and the
                                                         * segment with --keep-segment) */
    /* The loop's state and counters. */
    fh_mold_feed_t feed;
    retrans_t rt;
    arp_t arp;
    igmp_t ig[MAX_PORTS];
    loop_stats_t ls;
    uint64_t msgs_total;
    uint64_t restoring;  /* --restore: the restart point until the restored books are settled (loop.c); 0 then */
    bool restored_stale; /* the snapshot was saved across a loss: its books never recover this way */
    /* Log-linear latency histogram (HdrHistogram-style) in TSC ticks, converted to ns only when reported: the
     * one scheme of fh/shm.h (fh_shm_lat_index, fh_shm_lat_upper), here applied to ticks. */
    uint64_t hist[FH_SHM_LAT_BUCKETS];
    /* The same for the messages of bursts of one frame only: a datagram that arrived alone, so that its rx->publish
     * is its own, without the frames that arrived with it ahead of it (fh bench latency's "what fh adds"). */
    uint64_t hist1[FH_SHM_LAT_BUCKETS];
    fh_shm_dp_stats_t out; /* 5.6 KiB: what dp_publish copies into the segment */
} dp_t;

extern volatile sig_atomic_t dp_quit;       /* SIGINT/SIGTERM/SIGUSR2 */
extern volatile sig_atomic_t dp_quit_stale; /* SIGUSR2: stop with every book marked stale (a demoted primary) */

/* options.c */
void dp_usage(const char *prog);
int dp_parse_opts(int argc, char **argv, opts_t *o);
int dp_set_publish(fh_engine_t *e, const char *spec); /* --publish: start-up only */

/* ports.c */
int dp_open_ports(dp_t *dp);
int dp_open_igmp(dp_t *dp, uint64_t now); /* per port, for the groups of the lines on it */
void dp_close_ports(dp_t *dp);
void dp_retrans_send(retrans_t *r, const fh_mold_request_t *rq, int n);                    /* cold */
void dp_arp_rx(arp_t *a, fh_net_t *net, uint16_t port, struct rte_mempool *pool, uint32_t our_ip, const uint8_t *f,
               size_t len);                                                                /* cold */

/* loop.c */
void dp_signals(void); /* SIGINT, SIGTERM: dp_quit; SIGUSR2: dp_quit_stale too */
int dp_run(dp_t *dp);

/* report.c */
void dp_publish(dp_t *dp); /* the data plane's stats into the segment; cold: every 100 ms and at exit */
void dp_report(dp_t *dp);

/* dataplane.c */
int dp_init(dp_t *dp, int argc, char **argv);
int dp_open_feed(dp_t *dp);
void dp_fini(dp_t *dp);

#endif
