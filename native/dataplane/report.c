/* report.c: what fh-dataplane tells: its section of the segment's statistics (every 100 ms from the loop, and
 * at exit), and on exit one JSON line of final statistics on stdout (tests and fh replay read it; its keys
 * are a contract). Cold code only. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>

#include "dataplane.h"

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

/* The tick histogram's p-quantile (upper bound of its bucket, in ticks). */
static uint64_t hist_pct(const uint64_t *hist, double p, uint64_t total)
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

/* A tick histogram as the final line's latency object: its count and percentiles in ns. */
static void print_latency(const uint64_t *h, double ns_per_tsc)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++)
        total += h[i];
    printf("{\"count\": %" PRIu64 ", \"p50\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"p99.9\": %" PRIu64
           ", \"max\": %" PRIu64 "}",
           total, (uint64_t)((double)hist_pct(h, 0.5, total) * ns_per_tsc),
           (uint64_t)((double)hist_pct(h, 0.99, total) * ns_per_tsc),
           (uint64_t)((double)hist_pct(h, 0.999, total) * ns_per_tsc),
           (uint64_t)((double)hist_pct(h, 1.0, total) * ns_per_tsc));
}

/* Fill the data plane's section of the stats region and publish it (fh_seg_publish_dataplane). Cold: from
 * the loop every 100 ms and at exit. The tick histogram is re-bucketed into the ns scheme of fh/shm.h, each
 * tick bucket by its upper bound (as hist_pct reports it). */
__attribute__((noinline, cold)) void dp_publish(dp_t *dp)
{
    const fh_net_t *net = &dp->o.net;
    const fh_mold_feed_t *feed = &dp->feed;
    fh_shm_dp_stats_t *d = &dp->out;
    memset(d, 0, sizeof *d);
    d->packets = dp->ls.packets;
    d->bytes = dp->ls.bytes;
    d->next_seq = feed->next_seq;
    d->ndrops = FH_NET_DROP_COUNT < FH_SHM_DP_MAX_DROPS ? FH_NET_DROP_COUNT : FH_SHM_DP_MAX_DROPS;
    for (uint32_t i = 0; i < d->ndrops; i++) {
        d->drops[i] = net->drops[i];
        snprintf(d->drop_name[i], FH_SHM_DP_NAME, "%s", fh_net_drop_name((int)i));
    }
    d->nmold = FH_M_COUNT < FH_SHM_DP_MAX_MOLD ? FH_M_COUNT : FH_SHM_DP_MAX_MOLD;
    for (uint32_t i = 0; i < d->nmold; i++) {
        d->mold[i] = feed->counters[i];
        snprintf(d->mold_name[i], FH_SHM_DP_NAME, "%s", fh_mold_counter_name((int)i));
    }
    d->feed_state = (uint32_t)feed->state;
    d->held = feed->held_now;
    d->outstanding = feed->outstanding;
    memcpy(d->session, feed->session, FH_MOLD_SESSION_LEN);
    d->nlines = net->nlines < FH_SHM_DP_MAX_LINES ? net->nlines : FH_SHM_DP_MAX_LINES;
    uint64_t now = rte_rdtsc();
    for (uint32_t i = 0; i < d->nlines && i < FH_MOLD_MAX_LINES; i++) {
        const fh_mold_line_t *L = &feed->line[i];
        fh_shm_dp_line_t *o = &d->line[i];
        o->datagrams = L->datagrams;
        o->messages = L->messages;
        o->won = L->won;
        o->duplicates = L->duplicates;
        o->late = L->late;
        o->lost = L->lost;
        o->silent_ns = L->last_rx ? (uint64_t)((double)(now - L->last_rx) * dp->ns_per_tsc) : UINT64_MAX;
        o->kind = i < dp->o.nfeed ? FH_SHM_LINE_FEED : FH_SHM_LINE_RETRANS;
        o->state = i < dp->o.nfeed ? (uint32_t)L->state : FH_SHM_LINE_LIVE;
    }
    uint64_t total = 0;
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++) {
        if (!dp->hist[i])
            continue;
        d->lat_bucket[fh_shm_lat_index((uint64_t)((double)fh_shm_lat_upper(i) * dp->ns_per_tsc))] += dp->hist[i];
        total += dp->hist[i];
    }
    d->lat_count = total;
    fh_seg_publish_dataplane(dp->seg, d);
}

static void report_rx_only(dp_t *dp)
{
    const loop_stats_t *ls = &dp->ls;
    struct rte_eth_stats st;
    memset(&st, 0, sizeof st);
    rte_eth_stats_get(dp->port, &st);
    printf("{\"mode\": \"rx-only\", \"packets\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"nic\": {\"ipackets\": %" PRIu64
           ", \"imissed\": %" PRIu64 ", \"ierrors\": %" PRIu64 ", \"rx_nombuf\": %" PRIu64 "}, \"busy_cycles\": %" PRIu64
           ", \"busy_bursts\": %" PRIu64 ", \"tsc_hz\": %" PRIu64 ", \"active_ns\": %" PRIu64 "}\n",
           ls->packets, ls->bytes, st.ipackets, st.imissed, st.ierrors, st.rx_nombuf, ls->busy_cycles,
           ls->busy_bursts, dp->hz, (uint64_t)((double)(ls->last_tsc - ls->first_tsc) * dp->ns_per_tsc));
    fflush(stdout);
}

void dp_report(dp_t *dp)
{
    if (dp->o.rx_only) {
        report_rx_only(dp);
        return;
    }
    const opts_t *o = &dp->o;
    const loop_stats_t *ls = &dp->ls;
    const fh_mold_feed_t *feed = &dp->feed;
    const uint64_t msgs_total = dp->msgs_total;
    const double ns_per_tsc = dp->ns_per_tsc;
    fh_engine_publish_stats(dp->e);
    dp_publish(dp);
    struct rte_eth_stats st, tot;
    memset(&tot, 0, sizeof tot);
    for (unsigned k = 0; k < dp->nports; k++) {
        memset(&st, 0, sizeof st);
        rte_eth_stats_get(dp->ports[k], &st);
        tot.ipackets += st.ipackets, tot.imissed += st.imissed, tot.ierrors += st.ierrors;
        tot.rx_nombuf += st.rx_nombuf, tot.opackets += st.opackets, tot.oerrors += st.oerrors;
    }
    uint64_t c[FH_C_COUNT];
    fh_engine_counters(dp->e, c);
    printf("{\"mode\": \"full\", \"packets\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"messages_applied\": %" PRIu64
           ", \"ports\": %u, \"nic\": {\"ipackets\": %" PRIu64 ", \"imissed\": %" PRIu64 ", \"ierrors\": %" PRIu64
           ", \"rx_nombuf\": %" PRIu64 ", \"opackets\": %" PRIu64 ", \"oerrors\": %" PRIu64 "}, \"drops\": {",
           ls->packets, ls->bytes, msgs_total, dp->nports, tot.ipackets, tot.imissed, tot.ierrors, tot.rx_nombuf,
           tot.opackets, tot.oerrors);
    for (int i = 0; i < FH_NET_DROP_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_net_drop_name(i), o->net.drops[i]);
    printf("}, ");
    igmp_json(&dp->ig[0]);
    for (unsigned k = 1; k < dp->nports; k++) {
        printf(", \"port%u\": {", dp->ports[k]);
        igmp_json(&dp->ig[k]);
        printf("}");
    }
    const arp_t *arp = &dp->arp;
    const retrans_t *rt = &dp->rt;
    printf(", \"arp\": {\"frames\": %" PRIu64 ", \"requests_for_us\": %" PRIu64 ", \"replies_sent\": %" PRIu64
           ", \"tx_failed\": %" PRIu64 "}, \"retransmission\": {\"server\": %s, \"requests_sent\": %" PRIu64
           ", \"tx_failed\": %" PRIu64 ", \"no_mbuf\": %" PRIu64 "}",
           arp->frames, arp->requests_for_us, arp->replies_sent, arp->tx_failed, rt->on ? "true" : "false", rt->sent,
           rt->tx_failed, rt->no_mbuf);
    if (dp->glimpse) {
        printf(", \"snapshot_source\": {");
        fh_glimpse_json(dp->glimpse, stdout);
        printf("}");
    }
    char session[11];
    memcpy(session, feed->session, 10);
    session[10] = 0;
    for (int i = 0; i < 10; i++)
        if ((unsigned char)session[i] < 0x20 || session[i] == '"' || session[i] == '\\' || (unsigned char)session[i] > 0x7e)
            session[i] = '?';
    printf(", \"feed\": {\"state\": \"%s\", \"session\": \"%s\", \"next_seq\": %" PRIu64 ", \"held\": %u, "
           "\"outstanding\": %u}, \"gaps_filled\": {\"count\": %" PRIu64 ", \"last_ns\": %" PRIu64
           ", \"max_ns\": %" PRIu64 ", \"mean_ns\": %" PRIu64 "}, \"mold\": {",
           fh_feed_state_name(feed->state), feed->have_session ? session : "", feed->next_seq, feed->held_now,
           feed->outstanding, feed->filled, (uint64_t)((double)feed->fill_last * ns_per_tsc),
           (uint64_t)((double)feed->fill_max * ns_per_tsc),
           feed->filled ? (uint64_t)((double)feed->fill_total / (double)feed->filled * ns_per_tsc) : 0);
    for (int i = 0; i < FH_M_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_mold_counter_name(i), feed->counters[i]);
    printf("}, \"lines\": [");
    for (uint32_t i = 0; i < o->net.nlines && i < FH_MOLD_MAX_LINES; i++) {
        const fh_mold_line_t *L = &feed->line[i];
        printf("%s{\"kind\": \"%s\", \"state\": \"%s\", \"datagrams\": %" PRIu64 ", \"messages\": %" PRIu64
               ", \"won\": %" PRIu64 ", \"duplicates\": %" PRIu64 ", \"late\": %" PRIu64 ", \"lost\": %" PRIu64 "}",
               i ? ", " : "", i < o->nfeed ? "feed" : "retransmission",
               i < o->nfeed ? fh_line_state_name(L->state) : "live", L->datagrams, L->messages, L->won,
               L->duplicates, L->late, L->lost);
    }
    printf("], ");
    if (dp->sb) {
        fh_standby_json(dp->sb, stdout);
        printf(", ");
    }
    printf("\"engine\": {");
    for (int i = 0; i < FH_C_COUNT; i++)
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", fh_counter_name(i), c[i]);
    printf("}, \"latency_ns\": ");
    print_latency(dp->hist, ns_per_tsc); /* its count is msgs_total, the loop's sum of the same buckets */
    printf(", \"latency_one_frame_ns\": ");
    print_latency(dp->hist1, ns_per_tsc);
    printf(", \"busy_cycles\": %" PRIu64 ", \"busy_bursts\": %" PRIu64 ", \"tsc_hz\": %" PRIu64
           ", \"active_ns\": %" PRIu64 ", \"warm_us\": %" PRId64 ", \"empty_polls\": %" PRIu64 ", \"empty_poll_ns\": %.1f}\n",
           ls->busy_cycles, ls->busy_bursts, dp->hz, (uint64_t)((double)(ls->last_tsc - ls->first_tsc) * ns_per_tsc),
           o->warm_us, ls->empty_polls,
           ls->empty_polls ? (double)ls->empty_cycles / (double)ls->empty_polls * ns_per_tsc : 0.0);
    fflush(stdout);
    if (dp->jtee) /* the file stays for the followers that have not read it all */
        fprintf(stderr, "fh-dataplane: journal: %" PRIu64 " records, %" PRIu64 " bytes, next sequence %" PRIu64
                ", %" PRIu64 " missed\n", dp->jtee->j->records, dp->jtee->j->pos, dp->jtee->next_seq, dp->jtee->missed);
}
