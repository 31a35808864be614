/* fh-dataplane: the poll-mode core. EAL arguments, then `--`, then ours (options.c has them all):
 *
 *   fh-dataplane [EAL args] -- --segment PATH --line GROUP:PORT[@DEV] [--line ...] [options]
 *
 * Each line is taken on its device's port (DEV: DPDK's name for it, a PCI address or a vdev's name; without
 * @DEV the first port or --port), one rx queue per port, the ports polled in turn by the main lcore, which
 * EAL pins (-l); A and B may share a port (told apart by destination group and port) or come on two. Frames
 * go net -> MoldUDP64 sequencing and recovery (fh/mold.h, docs/line-reliability.md) -> book engine -> the
 * shared segment (loop.c). On exit it prints one JSON line of final statistics on stdout (report.c).
 *
 * Recovery: a gap that the other line does not fill within --gap-wait-us is asked for from the feed's
 * request server: MoldUDP64 requests as UDP from --src-ip:--src-port to --retrans-server, Ethernet to
 * --retrans-mac (the next hop: fh run finds it in the neighbour table), sent on the port of --retrans-dev;
 * the replies come back to --src-ip:--src-port on that port as one more line (from the server only). ARP
 * requests for --src-ip are answered, so the server's router can reach us. Requests and replies are cold
 * paths: only while a gap is open (ports.c).
 *
 * IGMP (igmp_port.h): for every multicast group among a port's lines, a membership report goes out on its
 * tx queue 0 right after the port starts and again when a membership query arrives (in the querier's
 * version: RFC 3376 host compatibility mode), and a leave when the data plane stops, so that a snooping
 * switch forwards the groups only while we listen. Reports never block the loop: a frame the tx queue
 * refuses is counted and retried a millisecond later.
 *
 * This file: main and the phases that set up and tear down (dataplane.h lists them all). Every start-up call
 * is checked and fails with a message naming what failed and the fix; nothing exits once the loop runs (after
 * DPDK's examples/skeleton). Exit status: 0 after a run, 2 when start-up failed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>

#include "dataplane.h"
#include "fh/itch.h"

int dp_init(dp_t *dp, int argc, char **argv)
{
    bool no_huge = false; /* the hint below: hugepages only when EAL was to use them */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        no_huge |= strcmp(argv[i], "--no-huge") == 0;
    int eal = rte_eal_init(argc, argv);
    if (eal < 0) {
        if (no_huge)
            fprintf(stderr, "fh-dataplane: EAL init failed: %s (EAL's own lines above say why: a --vdev driver that "
                            "does not exist, a core that is not online, ...)\n", rte_strerror(rte_errno));
        else
            fprintf(stderr, "fh-dataplane: EAL init failed: %s (no hugepages? add --no-huge -m 512, or reserve "
                            "some: echo 512 > /proc/sys/vm/nr_hugepages)\n", rte_strerror(rte_errno));
        return -1;
    }
    dp->eal = true;
    argc -= eal;
    argv += eal;
    argv[0] = "fh-dataplane";
    if (dp_parse_opts(argc, argv, &dp->o))
        return -1;
    dp->hz = rte_get_tsc_hz();
    dp->ns_per_tsc = 1e9 / (double)dp->hz;
    return 0;
}

int dp_open_feed(dp_t *dp)
{
    const opts_t *o = &dp->o;
    const uint64_t hz = dp->hz;
    if (o->rx_only)
        return 0;
    fh_seg_cfg_t sc = { .path = o->segment, .name = o->name, .max_levels = o->max_levels, .event_capacity = o->events,
                        .depth = o->depth, .gid = o->gid, .ladder_books = o->ladder_books,
                        .standby = o->standby ? FH_SHM_STANDBY_NO_LINES : FH_SHM_STANDBY_NO };
    if (!(dp->seg = fh_seg_create(&sc))) {
        fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
        return -1;
    }
    fh_engine_cfg_t ec = { FH_MAX_LOCATE, o->max_orders, o->max_levels };
    if (!(dp->e = fh_engine_create_on(&ec, dp->seg))) {
        fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
        return -1;
    }
    if (o->publish && dp_set_publish(dp->e, o->publish))
        return -1;
    /* MoldUDP64 sequencing and recovery; the hold-back buffer on the first port's NUMA node. */
    fh_mold_cfg_t mc;
    fh_mold_cfg_defaults(&mc, hz / 1000);
    mc.gap_wait = (uint64_t)o->gap_wait_us * hz / 1000000;
    mc.request_timeout = (uint64_t)o->request_timeout_ms * hz / 1000;
    mc.retries = o->request_retries;
    mc.request_max = o->request_max;
    mc.max_outstanding = o->max_outstanding;
    mc.hold = o->hold;
    mc.can_request = o->retrans_ip != 0;
    mc.policy = o->unrecoverable;
    mc.line_stale = (uint64_t)o->line_stale_ms * hz / 1000;
    mc.line_down = (uint64_t)o->line_down_ms * hz / 1000;
    mc.recovery_lines = o->retrans_ip ? 1u << o->nfeed : 0;
    mc.max_ahead = o->max_ahead;
    mc.confirm = o->confirm;
    mc.recover_max = o->recover_max;
    mc.msg_len = fh_itch_len; /* a block whose length is not its ITCH type's makes its datagram misframed */
    if (o->hold && !(o->hold & (o->hold - 1))) {
        int sock = rte_eth_dev_socket_id(dp->ports[0]);
        mc.hold_mem = dp->hold_mem = rte_zmalloc_socket("fh_hold", (size_t)o->hold * sizeof(fh_mold_slot_t), 64,
                                                        sock < 0 ? SOCKET_ID_ANY : sock);
        if (!dp->hold_mem) {
            fprintf(stderr, "fh-dataplane: no room for a hold-back buffer of %u messages (%zu MiB): give EAL more "
                            "memory (-m) or a smaller --hold\n", o->hold, ((size_t)o->hold * sizeof(fh_mold_slot_t)) >> 20);
            return -1;
        }
    }
    if (o->unrecoverable == FH_MOLD_SNAPSHOT && !o->snapshot_source)
        fprintf(stderr, "fh-dataplane: warning: --unrecoverable snapshot without --snapshot-source: gaps that cannot "
                        "be filled leave the books stale\n");
    if (fh_mold_feed_init(&dp->feed, &mc)) {
        fprintf(stderr, "fh-dataplane: %s\n", fh_errmsg());
        return -1;
    }
    dp->feed_ok = true;
    fh_feed_consumer_t books;
    /* the feed delivers to the engine (--journal: through the journal's tee); a burst's datagrams are staged, applied
     * behind the walk across them, the rest by the burst's fh_engine_batch_end */
    fh_engine_consumer_staged(dp->e, &books);
    fh_mold_feed_set_consumer(&dp->feed, &books);
    if (o->restore) { /* a restart: the snapshot's books, and the feed goes on after its sequence (what came since
                       * is asked for again or arrives as the feed's later datagrams; earlier ones are duplicates) */
        fh_snapshot_meta_t sm;
        if (fh_engine_snapshot_load_stale(dp->e, o->restore, &sm)) { /* stale from the first order loaded */
            fprintf(stderr, "fh-dataplane: --restore: %s\n", fh_errmsg());
            return -1;
        }
        fh_mold_feed_resume(&dp->feed, sm.session, sm.next_seq);
        fh_engine_set_all_status(dp->e, FH_BOOK_STALE); /* until the lines have delivered what came since (loaded
                                                         * stale: this only wakes the readers of the notices) */
        dp->restoring = sm.next_seq, dp->restored_stale = (sm.flags & FH_SNAPSHOT_F_STALE) != 0;
        fprintf(stderr, "fh-dataplane: restored %s: %u books, %" PRIu64 " orders, session %.10s from sequence %" PRIu64 "\n",
                o->restore, sm.books, sm.orders, sm.session, sm.next_seq);
    }
    if (o->journal) {
        fh_journal_cfg_t jc = { .path = o->journal, .name = o->name, .capacity = (uint64_t)o->journal_mb << 20,
                                .gid = o->gid };
        fh_journal_t *j = fh_journal_create(&jc);
        if (!j || !(dp->jtee = malloc(sizeof *dp->jtee))) {
            fprintf(stderr, "fh-dataplane: --journal: %s\n", j ? "out of memory" : fh_errmsg());
            fh_journal_close(j, 1);
            return -1;
        }
        fh_journal_tee_init(dp->jtee, j);
        fh_journal_tee_attach(dp->jtee, &dp->feed); /* the journal stands in front of the engine */
        if (dp->feed.have_session) { /* restored: the journal goes on from the snapshot's position */
            memcpy(dp->jtee->session, dp->feed.session, FH_MOLD_SESSION_LEN);
            dp->jtee->have_session = 1;
            dp->jtee->next_seq = dp->feed.next_seq;
        }
        fprintf(stderr, "fh-dataplane: journal %s (%u MiB ring)\n", o->journal, o->journal_mb);
    }
    if (o->standby) { /* the hold-back ring of datagrams, on the port's node as the feed's hold-back buffer */
        int sock = rte_eth_dev_socket_id(dp->ports[0]);
        size_t bytes = fh_standby_ring_bytes(o->standby_hold);
        if (o->standby_hold && !(o->standby_hold & (o->standby_hold - 1)) &&
            !(dp->sb_mem = rte_zmalloc_socket("fh_standby_hold", bytes, 64, sock < 0 ? SOCKET_ID_ANY : sock))) {
            fprintf(stderr, "fh-dataplane: no room for a standby hold-back ring of %u datagrams (%zu MiB): give EAL "
                            "more memory (-m) or a smaller --standby-hold\n", o->standby_hold, bytes >> 20);
            return -1;
        }
        if (!(dp->sb = fh_standby_open(o->standby, o->standby_hold, dp->sb_mem, dp->e, dp->jtee, hz)))
            return -1; /* it said why */
    }
    if (o->snapshot_source) { /* after the journal's tee: a snapshot reaches the engine through it */
        if (!(dp->glimpse = malloc(sizeof *dp->glimpse)) || fh_glimpse_init(dp->glimpse, &o->snapshot_cfg, NULL)) {
            fprintf(stderr, "fh-dataplane: --snapshot-source: %s\n", dp->glimpse ? fh_errmsg() : "out of memory");
            return -1;
        }
        fh_glimpse_attach(dp->glimpse, &dp->feed);
    }
    return 0;
}

/* The one cleanup ladder: undo, in reverse, whatever was set up (a field of dp says whether its step ran).
 * After a normal run the journal stays for its followers and the segment stays with --keep-segment; after a
 * failed start-up both are removed. */
void dp_fini(dp_t *dp)
{
    if (dp->sb) {
        fh_standby_close(dp->sb);
        dp->sb = NULL;
    }
    if (dp->sb_mem) {
        rte_free(dp->sb_mem);
        dp->sb_mem = NULL;
    }
    if (dp->glimpse) {
        fh_glimpse_close(dp->glimpse);
        free(dp->glimpse);
        dp->glimpse = NULL;
    }
    if (dp->jtee) {
        fh_journal_close(dp->jtee->j, !dp->ok);
        free(dp->jtee);
        dp->jtee = NULL;
    }
    if (dp->feed_ok) {
        fh_mold_feed_free(&dp->feed);
        dp->feed_ok = false;
    }
    if (dp->hold_mem) {
        rte_free(dp->hold_mem);
        dp->hold_mem = NULL;
    }
    if (dp->e) {
        fh_engine_destroy(dp->e);
        dp->e = NULL;
    }
    if (dp->seg) {
        fh_seg_close(dp->seg, !(dp->ok && dp->o.keep));
        dp->seg = NULL;
    }
    dp_close_ports(dp);
    if (dp->eal) {
        rte_eal_cleanup();
        dp->eal = false;
    }
}

int main(int argc, char **argv)
{
    static dp_t dp; /* about 50 KiB: static, not on the stack */
    int rc = 2;
    if (dp_init(&dp, argc, argv) || dp_open_ports(&dp))
        goto out;
    dp_signals();
    if (dp_open_feed(&dp) || dp_run(&dp))
        goto out;
    dp_report(&dp);
    dp.ok = true;
    rc = 0;
out:
    dp_fini(&dp);
    return rc;
}
