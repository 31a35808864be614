/* loop.c: fh-dataplane's poll loop and its idle strategy.
 *
 * The ports in use are polled in turn by the main lcore (EAL pins it, -l); a burst's frames go net ->
 * MoldUDP64 sequencing and recovery (fh/mold.h) -> book engine -> the shared segment. Every dropped frame is
 * counted by cause. A log-linear latency histogram gets one TSC read a burst: what the burst applied, from its rx
 * stamp to the end of its publishing (messages released from the hold-back buffer by a timer count from that
 * poll's start). IGMP queries and ARP are found among the frames fh_net_parse refuses, so they cost the hot path
 * nothing. Idle: rte_pause() (--idle spin), or after 1,000 empty polls short naps (--idle backoff: replay and
 * tests); every 100 ms the line states and the statistics are published. SIGINT/SIGTERM stop it within 100 ms
 * whatever arrives, as does, with --exit-idle-ms, a port that stays silent that long after traffic while no gap
 * is open.
 *
 * --mode rx-only receives and frees, nothing else: the PMD's own cost, to subtract from a full run's (both
 * count busy_cycles, the TSC cycles spent in non-empty bursts; fh bench dataplane).
 *
 * Nothing here allocates, blocks or exits: a burst costs its frames' parsing, sequencing and applying. */
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "dataplane.h"
#include "fh/instrument.h" /* dp_run: CALLGRIND_START_INSTRUMENTATION around the loops */
#include "fh/shm.h" /* fh_shm_lat_index */

volatile sig_atomic_t dp_quit;
volatile sig_atomic_t dp_quit_stale;
static volatile sig_atomic_t promote_sig;
static void on_signal(int sig) { (void)sig; dp_quit = 1; }
static void on_quit_stale(int sig) { (void)sig; dp_quit_stale = dp_quit = 1; } /* SIGUSR2: demoted */
static void on_promote(int sig) { (void)sig; promote_sig = 1; } /* --standby: take the lines (standby.h) */

/* The latency histogram (dp_t.hist, in TSC ticks): n messages published by now, received at `since`, in one
 * bucket, with one TSC read. Once a burst (the burst's rx to the end of its publishing: every message of the
 * burst gets its burst's stamp, an upper bound of its own rx->publish that is exact for the burst's last
 * datagram), and after each poll that released messages from the hold-back buffer without a burst (a gap given
 * up or closed by a timer: from that poll's start, their own arrival is not kept). So the histogram counts
 * every applied message once: its sum is the loop's count of messages (dp_t.msgs_total), messages_applied. */
static inline void latency_stamp(uint64_t *hist, uint64_t n, uint64_t since)
{
    if (n)
        hist[fh_shm_lat_index(rte_rdtsc() - since)] += n;
}

/* latency_stamp for what a burst of `frames` frames applied: also counted in hist1 when the burst was one frame. */
static inline void latency_stamp_burst(uint64_t *hist, uint64_t *hist1, uint64_t n, uint64_t since, uint16_t frames)
{
    if (n) {
        unsigned i = fh_shm_lat_index(rte_rdtsc() - since);
        hist[i] += n;
        if (frames == 1)
            hist1[i] += n;
    }
}

/* The journal (--journal): what the feed applied, after each datagram and each poll, through the tee
 * (fh/journal_mold.h). NULL: no journal, one predicted branch. */
static inline int feed_apply(fh_journal_tee_t *jtee, fh_mold_feed_t *f, const uint8_t *d, size_t len, int line,
                             uint64_t now)
{
    int n = fh_mold_feed_apply(f, d, len, line, now);
    if (jtee)
        fh_journal_tee(jtee, f, d, len);
    return n;
}

static inline int feed_poll(fh_journal_tee_t *jtee, fh_mold_feed_t *f, uint64_t now, fh_mold_request_t *rq, int cap)
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
static int standby_apply(void *ctx, const uint8_t *d, size_t len, int line, uint64_t now)
{
    dp_t *dp = ctx;
    return feed_apply(dp->jtee, &dp->feed, d, len, line, now);
}

/* A frame refused by the net filter (counted there): IGMP and ARP are among these, and given back if found. */
static __attribute__((noinline, cold)) void refused(dp_t *dp, unsigned k, int r, const uint8_t *f, size_t len,
                                                   uint64_t rx)
{
    if (r == FH_NET_DROPPED(FH_NET_not_udp))
        igmp_rx(&dp->ig[k], &dp->o.net, f, len, rx);
    else if (r == FH_NET_DROPPED(FH_NET_not_ipv4))
        dp_arp_rx(&dp->arp, &dp->o.net, dp->ports[k], dp->tx_pool[k], dp->o.src_ip, f, len);
}

/* A frame fh_net_parse_fast did not take: the common frame behind one 802.1Q tag (fh_net_parse_fast_vlan), else
 * fh_net_parse; then the feed if it is ours. A drop is counted by the filter; IGMP and ARP are among those, and
 * given back if found. */
static __attribute__((noinline)) void other_frame(dp_t *dp, unsigned k, const uint8_t *f, size_t len, uint64_t rx,
                                                  bool journal)
{
    fh_net_pkt_t pkt;
    int r = fh_net_parse_fast_vlan(&dp->o.net, f, len, &pkt);
    if (r < 0)
        r = fh_net_parse(&dp->o.net, f, len, &pkt);
    if (FH_UNLIKELY(r < 0))
        refused(dp, k, r, f, len, rx);
    else
        feed_apply(journal ? dp->jtee : NULL, &dp->feed, pkt.payload, pkt.len, pkt.line, rx);
}

/* A burst's frames from port k, received at rx: net filter, sequencing, books. Per frame: the next frame's
 * header prefetched (bufs[n] = bufs[n - 1], so without a test), the common frame's header checked inline
 * (fh_net_parse_fast_uncounted: the frames it took are counted once a burst; any other frame out of line), the
 * datagram handed to the feed. Nothing else a datagram: what the burst applied and its latency are taken once the
 * burst is published (full_loop). journal: a constant, so that the loop is made twice, with and without the tee,
 * and tests nothing for it per frame. Returns the burst's bytes. */
static inline __attribute__((always_inline)) uint64_t burst_(dp_t *dp, struct rte_mbuf **bufs, uint16_t n,
                                                              unsigned k, uint64_t rx, const bool journal)
{
    fh_net_t *const net = &dp->o.net; /* net and feed at fixed offsets from dp: one register for both */
    fh_mold_feed_t *const feed = &dp->feed;
    fh_journal_tee_t *const jtee = journal ? dp->jtee : NULL;
    uint64_t bytes = 0;
    unsigned not_fast = 0; /* frames the fast path did not take: n - not_fast were taken, counted once a burst */
    bufs[n] = bufs[n - 1];
    const uint8_t *f = rte_pktmbuf_mtod(bufs[0], const uint8_t *);
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *mb = bufs[i];
        const uint8_t *next = rte_pktmbuf_mtod(bufs[i + 1], const uint8_t *);
        rte_prefetch0(next);
        const uint8_t *const cur = f;
        f = next;
        const uint16_t len = mb->data_len; /* = pkt_len in a single segment */
        bytes += len;
        if (FH_UNLIKELY(mb->nb_segs != 1)) {
            bytes += mb->pkt_len - len;
            net->drops[FH_NET_multi_segment]++;
            not_fast++;
            continue;
        }
        fh_net_pkt_t pkt;
        if (FH_LIKELY(fh_net_parse_fast_uncounted(net, cur, len, &pkt) >= 0)) {
            feed_apply(jtee, feed, pkt.payload, pkt.len, pkt.line, rx);
        } else {
            other_frame(dp, k, cur, len, rx, journal); /* counts its frame itself (fh_net_parse) */
            not_fast++;
        }
    }
    net->frames += n - not_fast; /* as fh_net_parse_fast would have, one frame at a time */
    return bytes;
}

static __attribute__((noinline)) uint64_t burst(dp_t *dp, struct rte_mbuf **bufs, uint16_t n, unsigned k, uint64_t rx)
{
    return dp->jtee ? burst_(dp, bufs, n, k, rx, true) : burst_(dp, bufs, n, k, rx, false);
}

/* --standby: a burst's datagrams held back (fh_standby_hold), applied at promotion. */
static __attribute__((noinline, cold)) void hold_burst(dp_t *dp, fh_standby_t *sb, struct rte_mbuf **bufs, uint16_t n,
                                                       unsigned k, uint64_t rx)
{
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *mb = bufs[i];
        dp->ls.bytes += mb->pkt_len;
        if (FH_UNLIKELY(mb->nb_segs != 1)) {
            dp->o.net.drops[FH_NET_multi_segment]++;
            continue;
        }
        fh_net_pkt_t pkt;
        const uint8_t *f = rte_pktmbuf_mtod(mb, const uint8_t *);
        int r = fh_net_parse(&dp->o.net, f, mb->data_len, &pkt);
        if (r < 0)
            refused(dp, k, r, f, mb->data_len, rx);
        else
            fh_standby_hold(sb, pkt.payload, pkt.len, pkt.line, rx);
    }
}

/* --standby: follow the journal; once promoted, returns NULL (the lines are the data plane's own from then on;
 * what the held datagrams gave is counted in the "standby" statistics, not in messages_applied and its latency). */
static __attribute__((noinline, cold)) fh_standby_t *standby_step(dp_t *dp, uint64_t now)
{
    if (promote_sig)
        fh_standby_promote(dp->sb);
    int promoted = fh_standby_poll(dp->sb, &dp->feed, now, 256, standby_apply, dp);
    uint64_t behind;
    uint32_t st = fh_standby_currency(dp->sb, now, &behind); /* the segment says how current its books are */
    fh_seg_set_standby(dp->seg, st, behind);
    return promoted ? NULL : dp->sb;
}

/* --restore: the restored books are stale (with events) until the feed has caught up with the lines
 * (fh_mold_feed_caught_up), then live again, each with its recovered event; a gap given up leaves them stale.
 * Cold: called only while dp->restoring (the restart point) is set; 0 once settled. */
static __attribute__((cold, noinline)) void restore_settle(dp_t *dp)
{
    int c = fh_mold_feed_caught_up(&dp->feed, dp->restoring);
    if (!c)
        return;
    if (c > 0 && !dp->restored_stale)
        fh_engine_set_all_status(dp->e, FH_BOOK_LIVE);
    dp->restoring = 0;
}

/* The idle strategy: what an empty poll does. */
typedef struct idle {
    bool spin;            /* --idle spin: rte_pause() only; backoff: naps after 1,000 empty polls */
    unsigned empty;       /* empty polls in a row */
    uint64_t last_stats;  /* TSC of the last publishing of the statistics */
    uint64_t stats_every; /* TSC ticks between two */
} idle_t;

/* Publish stats now and then (full mode); stop after exit_idle ticks of silence following traffic; pause or
 * nap. Returns false to stop. */
static inline bool idle(dp_t *dp, idle_t *w, uint64_t now, uint64_t last_rx, uint64_t exit_idle)
{
    if (dp->e && now - w->last_stats > w->stats_every) {
        fh_engine_publish_stats(dp->e);
        dp_publish(dp);
        w->last_stats = now;
    }
    if (exit_idle && dp->ls.packets && now - last_rx > exit_idle)
        return false;
    if (w->spin || ++w->empty < 1000) {
        rte_pause();
    } else {
        struct timespec nap = { 0, w->empty < 100000 ? 1000 : 50000 };
        nanosleep(&nap, NULL);
    }
    return true;
}

/* --mode rx-only: receive and free, counting packets and bytes. */
static __attribute__((noinline)) void rx_only_loop(dp_t *dp)
{
    const uint16_t port = dp->port;
    loop_stats_t *ls = &dp->ls;
    uint64_t last_rx = rte_rdtsc(), exit_idle = (uint64_t)dp->o.exit_idle_ms * dp->hz / 1000;
    idle_t w = { .spin = dp->o.spin, .last_stats = last_rx, .stats_every = dp->hz };
    struct rte_mbuf *bufs[BURST];
    while (!dp_quit) {
        uint64_t t0 = rte_rdtsc();
        uint16_t n = rte_eth_rx_burst(port, 0, bufs, BURST);
        if (n == 0) {
            if (!idle(dp, &w, t0, last_rx, exit_idle))
                break;
            continue;
        }
        w.empty = 0;
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

/* The full loop, from `start` (the TSC the IGMP state was set up at). */
static __attribute__((noinline)) void full_loop(dp_t *dp, uint64_t start)
{
    const opts_t *o = &dp->o;
    fh_mold_feed_t *const feed = &dp->feed;
    fh_engine_t *const e = dp->e;
    fh_journal_tee_t *const jtee = dp->jtee;
    uint64_t *const hist = dp->hist, *const hist1 = dp->hist1;
    loop_stats_t *const ls = &dp->ls;
    igmp_t *const ig = dp->ig;
    const uint16_t *const ports = dp->ports;
    const unsigned nports = dp->nports;
    const uint64_t hz = dp->hz;
    uint64_t last_rx = start;
    const uint64_t exit_idle = (uint64_t)o->exit_idle_ms * hz / 1000;
    idle_t w = { .spin = o->spin, .last_stats = start, .stats_every = hz / 10 };
    struct rte_mbuf *bufs[BURST + 1]; /* + 1: burst()'s prefetch of the frame after the last */
    uint64_t *const stamp = fh_engine_stamps(e);
    fh_mold_request_t rq[FH_MOLD_MAX_OUTSTANDING];
    fh_standby_t *following = dp->sb; /* --standby: while set, the lines are held back */

    /* On SIGINT/SIGTERM the loop drains what the rx queues already hold (up to 4,096 bursts, and for at most
     * 50 ms: a port that never runs dry must not keep it) so that every frame that reached a port is applied
     * or counted, then stops. Nothing in the loop takes longer than a datagram's blocks or a bounded scan
     * (fh/mold.h), so it answers within 100 ms whatever arrives. */
    unsigned next_port = 0; /* round robin: the port after the last one that had frames is polled first */
    const uint64_t drain_limit = hz / 20;
    /* idle warming: one book every warm_cycle / books TSC ticks of empty polls, at most one an empty poll, so that
     * every book is warmed about once a warm_us (bench/latency.md, "Idle warming"); 0: none */
    const uint64_t warm_cycle = (uint64_t)((double)o->warm_us * (double)hz / 1e6);
    uint64_t warm_next = 0;
    uint64_t empty_t0 = 0; /* the start of the last poll if it was empty, else 0: ls->empty_cycles */
    uint64_t quit_at = 0;
    for (uint32_t drained = 0;;) {
        uint64_t t0 = rte_rdtsc();
        uint16_t n = 0;
        unsigned k = next_port;
        for (unsigned tries = 0; tries < nports; tries++, k = k + 1 == nports ? 0 : k + 1)
            if ((n = rte_eth_rx_burst(ports[k], 0, bufs, BURST)) > 0)
                break;
        if (n == 0) {
            if (dp_quit)
                break;
            if (empty_t0) { /* an empty poll's period: from one's start to the next's */
                ls->empty_polls++;
                ls->empty_cycles += t0 - empty_t0;
            }
            empty_t0 = t0;
            if (warm_cycle && t0 >= warm_next) { /* the next book's first lines back in the cache */
                uint32_t books = fh_engine_warm(e, 1);
                warm_next = t0 + warm_cycle / (books ? books : 1);
            }
            for (unsigned j = 0; j < nports; j++)
                if (FH_UNLIKELY(ig[j].join | ig[j].answer))
                    igmp_flush(&ig[j], t0);
            if (FH_UNLIKELY(fh_mold_feed_busy(feed))) {
                uint64_t before = feed->counters[FH_M_applied];
                fh_engine_batch_begin_at(e, t0, t0);
                if (FH_UNLIKELY(feed->snap_pending))
                    fh_glimpse_poll(dp->glimpse);
                int nr = feed_poll(jtee, feed, t0, rq, FH_MOLD_MAX_OUTSTANDING);
                if (nr)
                    dp_retrans_send(&dp->rt, rq, nr);
                latency_stamp(hist, feed->counters[FH_M_applied] - before, t0);
                if (FH_UNLIKELY(dp->restoring))
                    restore_settle(dp);
                fh_engine_batch_end(e);
                w.empty = 0; /* keep polling closely while a gap is open */
            }
            if (t0 - w.last_stats > w.stats_every) {
                uint64_t before = feed->counters[FH_M_applied];
                feed_poll(jtee, feed, t0, rq, 0); /* line states */
                latency_stamp(hist, feed->counters[FH_M_applied] - before, t0);
            }
            if (FH_UNLIKELY(following != NULL) && !(following = standby_step(dp, t0)))
                w.empty = 0;
            if (!idle(dp, &w, t0, last_rx, fh_mold_feed_busy(feed) || following ? 0 : exit_idle))
                break;
            continue;
        }
        next_port = k + 1 == nports ? 0 : k + 1;
        w.empty = 0;
        empty_t0 = 0;
        uint64_t rx = rte_rdtsc();
        /* The events' stamps (fh_engine_stamps): rx, and the publish stamp of what the engine applies without a
         * TSC read of its own (a datagram applied whole reads one: fh_engine_apply_datagram). */
        stamp[0] = stamp[1] = rx;
        const uint64_t applied_before = feed->counters[FH_M_applied];
        if (FH_UNLIKELY(following != NULL)) /* a standby: held back, applied at promotion */
            hold_burst(dp, following, bufs, n, k, rx);
        else
            ls->bytes += burst(dp, bufs, n, k, rx);
        if (FH_UNLIKELY(fh_mold_feed_busy(feed))) {
            if (FH_UNLIKELY(feed->snap_pending))
                fh_glimpse_poll(dp->glimpse);
            int nr = feed_poll(jtee, feed, rx, rq, FH_MOLD_MAX_OUTSTANDING);
            if (nr)
                dp_retrans_send(&dp->rt, rq, nr);
        }
        if (FH_UNLIKELY(dp->restoring))
            restore_settle(dp);
        fh_engine_batch_end(e); /* wake blocked readers once a burst: a fence per burst, not per datagram */
        /* What the burst applied (its datagrams and what they and the poll released), published by now: each
         * message's rx->publish from this burst's rx to this one TSC read (latency_stamp). */
        latency_stamp_burst(hist, hist1, feed->counters[FH_M_applied] - applied_before, rx, n);
        if (FH_UNLIKELY(following != NULL))
            following = standby_step(dp, rx);
        ls->packets += n;
        rte_pktmbuf_free_bulk(bufs, n);
        if (FH_UNLIKELY(ig[k].join | ig[k].answer))
            igmp_flush(&ig[k], rx);
        uint64_t t1 = rte_rdtsc();
        if (FH_UNLIKELY(!ls->first_tsc))
            ls->first_tsc = t0;
        ls->busy_cycles += t1 - t0;
        ls->busy_bursts++;
        ls->last_tsc = last_rx = t1;
        if (FH_UNLIKELY(t1 - w.last_stats > w.stats_every)) { /* every 100 ms under continuous traffic as well */
            uint64_t before = feed->counters[FH_M_applied];
            feed_poll(jtee, feed, t1, rq, 0); /* line states */
            latency_stamp(hist, feed->counters[FH_M_applied] - before, t1);
            fh_engine_publish_stats(e);
            dp_publish(dp);
            w.last_stats = t1;
        }
        if (FH_UNLIKELY(dp_quit)) {
            if (!quit_at)
                quit_at = t1;
            if (++drained > 4096 || t1 - quit_at > drain_limit)
                break;
        }
    }

    for (unsigned k = 0; k < nports; k++) /* leave the groups (bounded: a few ms) before the statistics */
        igmp_leave(&ig[k], rte_rdtsc());
    {
        uint64_t t = rte_rdtsc(), before = feed->counters[FH_M_applied];
        feed_poll(jtee, feed, t, rq, 0);
        latency_stamp(hist, feed->counters[FH_M_applied] - before, t);
    }
    if (dp_quit_stale) {
        /* SIGUSR2: fh run demotes this host (a peer primary beats it). These books were built from this host's
         * own lines and are no longer the pair's: readers still mapping the segment find every book stale, each
         * with its notice, instead of books that look live and stop changing. A standby rebuilds them. */
        int n = fh_engine_set_all_status(e, FH_BOOK_STALE);
        fprintf(stderr, "fh-dataplane: SIGUSR2 (demoted): %d book(s) marked stale; stopping\n", n);
    }
    uint64_t msgs_total = 0;
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++)
        msgs_total += hist[i];
    dp->msgs_total = msgs_total;
}

static int run_loops(dp_t *dp);

/* The loops; under `valgrind --tool=callgrind --instr-atstart=no` the only part instrumented (fh/instrument.h). */
int dp_run(dp_t *dp)
{
    CALLGRIND_START_INSTRUMENTATION;
    int rc = run_loops(dp);
    CALLGRIND_STOP_INSTRUMENTATION;
    return rc;
}

static int run_loops(dp_t *dp)
{
    const opts_t *o = &dp->o;
    if (o->rx_only) {
        fprintf(stderr, "fh-dataplane: port %u, lcore %u: running rx-only\n", dp->port, rte_lcore_id());
        rx_only_loop(dp);
        return 0;
    }
    uint64_t start = rte_rdtsc();
    if (dp_open_igmp(dp, start))
        return -1;
    for (unsigned k = 0; k < dp->nports; k++) {
        char name[RTE_ETH_NAME_MAX_LEN] = "?";
        rte_eth_dev_get_name_by_port(dp->ports[k], name);
        unsigned nl = 0;
        for (uint32_t i = 0; i < o->nfeed; i++)
            nl += dp->line_port[i] == dp->ports[k];
        fprintf(stderr, "fh-dataplane: port %u (%s): %u line(s)%s, igmp %s (%u group(s))\n", dp->ports[k], name, nl,
                dp->rt.on && dp->rt.port == dp->ports[k] ? " and the retransmission server" : "",
                o->igmp ? (o->igmp == 2 ? "v2" : "v3") : "off", dp->ig[k].ngroups);
    }
    fprintf(stderr, "fh-dataplane: lcore %u, segment %s, hold-back %u messages, %s: running\n", rte_lcore_id(),
            o->segment, o->hold, o->retrans_ip ? "retransmission requests on" : "no retransmission server");
    for (unsigned k = 0; k < dp->nports; k++)
        if (dp->ig[k].join)
            igmp_flush(&dp->ig[k], rte_rdtsc()); /* the joins, right after the port started */
    if (dp->sb)
        signal(SIGUSR1, on_promote);
    full_loop(dp, start);
    return 0;
}

void dp_signals(void)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGUSR2, on_quit_stale);
}
