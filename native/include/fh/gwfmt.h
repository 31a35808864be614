/* fh/gwfmt.h: fh gateway's NATS PUB commands for a run of segment events, formatted in C.
 *
 * The gateway (handler/gateway/gateway.py) reads the event ring in batches; for a batch with nothing to
 * conflate it hands this function the events and gets back the PUB commands of its BBO changes and trades,
 * byte for byte what its Python formatting writes:
 *
 *   PUB <prefix>bbo <n>\r\n{"seq":S,"ts":T,"bid":C,"bid_shares":A,"ask":D,"ask_shares":B,"pub_ns":P,"gw_ns":G}\r\n
 *   PUB <prefix>trade <n>\r\n{"seq":S,"ts":T,"price":C,"shares":A,"match":B,"pub_ns":P,"gw_ns":G}\r\n
 *
 * where <prefix> is the locate's subject prefix (`fh.<feed>.<symbol>.`) and P is `null` when pub_ns is 0.
 * Other event types are skipped (the caller handles them). Nothing is allocated. */
#ifndef FH_GWFMT_H
#define FH_GWFMT_H

#include <stddef.h>
#include <stdint.h>

#include "fh/shm.h"

/* Format events [0, n) into out (cap bytes). subj: stride bytes per locate, subj_len[locate] of them used
 * (a locate with length 0 has no prefix yet: the function stops there, *done says where). Returns the bytes
 * written; *done receives the number of events consumed (n unless out filled up or a prefix was missing);
 * *nbbo and *ntrade are incremented per command written. */
size_t fh_gw_format(const fh_shm_event_t *ev, size_t n, const int64_t *pub_ns, uint64_t gw_ns, const char *subj,
                    const uint8_t *subj_len, size_t stride, char *out, size_t cap, size_t *done, uint64_t *nbbo,
                    uint64_t *ntrade);

/* Why fh_gw_pump returned. */
#define FH_GW_CAUGHT_UP 0   /* no event left to read */
#define FH_GW_FULL 1        /* out has no room for another command: send it and call again */
#define FH_GW_NEED_PREFIX 2 /* event `next` names stop_locate, which has no subject prefix yet (not consumed) */
#define FH_GW_STALE 3       /* the last event consumed: stop_locate's book became stale (send out, then tell) */
#define FH_GW_RECOVERED 4   /* the same, recovered */

/* The gateway's follow loop, kept across calls by the caller. */
typedef struct fh_gw_pump {
    /* set by the caller */
    const char *subj;       /* stride bytes per locate: its subject prefix, `fh.<feed>.<symbol>.` */
    const uint8_t *subj_len;/* 65536: the prefix's length, 0 = not made yet */
    uint64_t stride;
    uint8_t *dirty;         /* 65536: set to 1 for each locate with a BBO change, trade or state change
                             * (atomically: another thread takes them with fh_gw_take_dirty) */
    uint64_t tsc0;          /* pub_tsc -> CLOCK_REALTIME ns: ns0 + (pub_tsc - tsc0) * ns_per_tick */
    int64_t ns0;
    double ns_per_tick;     /* 0: the TSC rate is unknown, pub_ns is written as null */
    uint64_t gw_ns;         /* 0: gw_ns is CLOCK_REALTIME read once per call; else this value (tests) */
    /* kept and advanced by fh_gw_pump */
    uint64_t next;          /* the next event sequence to read */
    uint64_t lost;          /* events lost to overruns (the ring went past the gateway) */
    uint64_t events, nbbo, ntrade;
    uint64_t last_seq, last_ts; /* of the last event consumed */
    uint32_t stop;          /* FH_GW_* */
    uint32_t stop_locate;
    uint64_t call_gw_ns;    /* the gw_ns of the last call (what its commands carry) */
} fh_gw_pump_t;

/* Read every event from p->next up to the ring's head (or until out fills up), writing the PUB commands of the
 * BBO changes and trades into out (cap bytes, at least stride + 512) in one run, as fh_gw_format writes them,
 * with gw_ns read once per call; marks dirty books; counts overruns. Returns the bytes written; p->stop says
 * why it stopped. Never blocks: pair it with fh_shm_reader_wait. Nothing is allocated. */
size_t fh_gw_pump(const fh_shm_reader_t *r, fh_gw_pump_t *p, char *out, size_t cap);

/* The gateway follower's wait for new events: fh_shm_wait's protocol (raise `waiters`, re-check the head, sleep
 * on the wake page's futex, which the writer wakes only while waiters != 0) with an adaptive spin in front instead
 * of a fixed one. fh_shm_wait spins 2000 pause rounds (~90 us on a VM) before every sleep: at a paced feed
 * (a datagram each millisecond) the spin never catches the next event and costs 90 us of CPU a wake. Here the
 * spin lasts spin_ns, which follows the gaps seen: a sleep that ended after a gap shorter than max_spin_ns sets
 * spin_ns to twice that gap (spinning that long would have caught it); a spin that caught nothing halves it,
 * down to 0 (straight to the futex). max_spin_ns = 0: never spin. The counters say what each wait did. */
typedef struct fh_gw_wait {
    uint64_t max_spin_ns;   /* set by the caller: the longest spin (0: none) */
    uint64_t spin_ns;       /* the current spin, kept by fh_gw_wait */
    uint64_t waits;         /* calls */
    uint64_t ready;         /* returned at once: the head had already passed `seen` */
    uint64_t spin_hits;     /* an event came during the spin */
    uint64_t sleeps;        /* went to sleep on the futex (or, without a wake page, polled) */
    uint64_t timeouts;      /* returned with nothing new */
    uint64_t spun_ns;       /* time spent spinning, in all */
} fh_gw_wait_t;

/* Block until the head passes `seen`, the writer stops (writer_state 2) or timeout_ns elapses (0: no limit;
 * re-checks at least every 100 ms, as fh_shm_wait). Returns the head. Called from one thread per w. */
uint64_t fh_gw_wait(const fh_shm_reader_t *r, uint64_t seen, uint64_t timeout_ns, fh_gw_wait_t *w);

/* A (TSC, CLOCK_REALTIME ns) pair read together: the TSC read between two clock reads, the tightest of 16
 * tries, ns the middle of that bracket. Returns the bracket's width in ns (the pair's uncertainty), or -1
 * where there is no TSC (not x86-64). Two pairs a second or more apart give the TSC rate to a few ppm, where
 * the segment's tsc_hz (a 20 ms calibration by its writer) can be off by a few hundred: hundreds of
 * microseconds a second, in pub_ns. */
int64_t fh_gw_clock_pair(uint64_t *tsc, int64_t *ns);

/* The locates marked in dirty[0, n) (by fh_gw_pump, maybe running in another thread), each unmarked as it is
 * taken (an atomic exchange: a mark made meanwhile is either taken now or left for the next call, never lost).
 * Writes them to out (room for n) and returns how many. */
size_t fh_gw_take_dirty(uint8_t *dirty, size_t n, uint16_t *out);

/* The book tick: the top `depth` levels of each book in locs[0, n) (in that order), each copied with
 * fh_shm_snapshot, as PUB commands written byte for byte as the gateway's Python formatting (Gateway._book_py):
 *
 *   PUB <prefix>book <n>\r\n{"seq":S,"ts":T,"bids":[[P,S,O],...],"asks":[...],"status":"live","trading_state":"T","gw_ns":G}\r\n
 *
 * S is `seq` (the last event the gateway applied), T the book's itch_ts, levels best first as [price, shares,
 * orders], status "live" / "stale" (another value as its number), trading_state the book's character (UTF-8 of
 * its Latin-1 reading, as Python writes it). A book that is gone, not published or stuck mid-change (snapshot
 * < 0) is skipped (consumed, nothing written). Stops before a published book whose locate has no subject prefix
 * (subj_len 0: the caller makes it and calls again from there) or that out has no room for (FH_GW_BOOK_ROOM).
 * Returns the bytes written; *done receives the locates consumed, *nbooks is incremented per command. Depth is
 * clamped to 64. Nothing is allocated; the book layout is read only through fh_shm_snapshot. */
#define FH_GW_BOOK_ROOM(stride, depth) ((stride) + 200 + 2 * 55 * (size_t)((depth) < 64 ? (depth) : 64))
size_t fh_gw_books(const fh_shm_reader_t *r, const uint16_t *locs, size_t n, uint32_t depth, uint64_t seq,
                   uint64_t gw_ns, const char *subj, const uint8_t *subj_len, size_t stride, char *out, size_t cap,
                   size_t *done, uint64_t *nbooks);

#endif
