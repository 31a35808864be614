/* fh/shm.h: the shared-memory segment of an fh instance, and the whole contract of its readers.
 *
 * Header-only: a trading process includes this file and nothing else of fh. It joins a segment read-only,
 * reads books consistently and follows the event stream, with no syscall and no lock on the read path.
 *
 * One writer (the data plane) owns the segment; any number of readers map it read-only. The writer's
 * book engine keeps its books and price levels *in* the segment, so publishing a change costs a seqlock
 * bump and readers may read any depth:
 *
 *   header      magic, layout version, sizes and offsets of every region, writer pid, start time,
 *               heartbeat; then, each on its own cache line, the event ring's head and its futex word.
 *   books       fh_shm_book_t[nbooks], indexed by the venue's instrument index (ITCH: the stock locate,
 *               nbooks 65536): per book a seqlock, symbol, trading state, book status (live / stale), last
 *               trade, and where its levels lie in the level arena.
 *   level keys  key_bits-wide keys [max_levels]: per side, a sorted run ending with the best price (bids:
 *   level aggs  fh_shm_agg_t[max_levels]  key = fh_shm_key(price); asks: its complement): the side's "deep"
 *               levels, those not in its ladder (below). Prices are signed 64-bit integers in units of
 *               10^price_exp (ITCH: 32-bit keys, price_exp -4, 1/10000 dollars).
 *   ladders     fh_shm_lside_t[2 * (ladder_books + 1)] and their slots, fh_shm_agg_t[FH_SHM_LADDER_W] each
 *               (layout 5): the first ladder_books books created have a price ladder per side, a window of
 *               FH_SHM_LADDER_W consecutive ticks near the touch; a level on the tick inside the window is in
 *               its slot, every other level of the side is deep. A side's levels are the window's and the
 *               deep run's merged best first: fh_shm_snapshot does it (see fh_shm_lside_t).
 *   events      fh_shm_event_t[2^k]: BBO changes, trades, trading-state and stale / recovered notices,
 *               each with a sequence number; a reader that falls 2^k behind is overrun and knows it.
 *   stats       counters by cause (fh_counter_name order), messages by type and, from the data plane
 *               only, its section (fh_shm_dp_stats_t: drops by cause, MoldUDP64 counters, per-line figures,
 *               packets, bytes and the rx->publish latency histogram), all under one seqlock.
 *
 * With it, a wake page in /dev/shm (mode 0660; fh_shm_wake_path) holds the futex word and the waiter count:
 * the one page a reader writes, so that the segment itself can be mapped read-only. It lives in /dev/shm
 * even when the segment is in hugetlbfs, where a 4 KiB file cannot be sized or mapped: /dev/shm/BASENAME.wake
 * for a segment in /dev/shm, /dev/shm/BASENAME.HASH.wake (HASH: of its resolved directory) for one elsewhere,
 * so that segments of one basename in two directories have a page each. The writer holds an exclusive flock on
 * the segment for its lifetime: a second writer is refused, and a reader that can take a shared lock knows the
 * writer is gone.
 *
 * Seqlock protocol (book and stats): the writer makes `seq` odd, writes, makes it even again; a reader
 * copies between two reads of `seq` and retries unless both are equal and even. Readers never block the
 * writer; the writer never waits for a reader.
 *
 * Languages: C11 (gnu11 or strict -std=c11 -pedantic) and C++17/20, with GCC or Clang on Linux (x86-64 or
 * AArch64). The fields that change under readers are plain integers (in C as in C++: Clang refuses its
 * __atomic builtins on _Atomic objects), which the functions here, and the writer, access only with the
 * compilers' __atomic builtins: a reader reads them through these functions (or std::atomic_ref in C++),
 * never directly. Under strict -std=c11 the POSIX and Linux calls need _DEFAULT_SOURCE: it is defined here when
 * nothing else was, which works when this header comes before any system header; `pkg-config --cflags
 * fh-shm` passes -D_DEFAULT_SOURCE so that the order does not matter. */
#ifndef FH_SHM_H
#define FH_SHM_H

#if !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE)
#define _DEFAULT_SOURCE 1 /* flock, syscall, MAP_*, clock_gettime, realpath under strict -std=c11 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
#define FH_SHM_ATOMIC(T) T /* read through the functions below (__atomic builtins), or std::atomic_ref */
#define FH_SHM_ALIGNAS(n) alignas(n)
#define FH_SHM_ALIGNOF(T) alignof(T)
#define FH_SHM_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#include <stdatomic.h>
#define FH_SHM_ATOMIC(T) T /* as in C++: accessed only through the __atomic builtins (Clang refuses them on _Atomic) */
#define FH_SHM_ALIGNAS(n) _Alignas(n)
#define FH_SHM_ALIGNOF(T) _Alignof(T)
#define FH_SHM_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

/* Atomic access for the reader, the same in C and C++ (GCC's and Clang's __atomic builtins, on plain integers). */
#define FH_SHM_LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define FH_SHM_LOAD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define FH_SHM_FENCE_ACQ() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#if defined(__x86_64__) || defined(__i386__)
#define FH_SHM_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define FH_SHM_PAUSE() __asm__ __volatile__("yield" ::: "memory")
#else
#define FH_SHM_PAUSE() __atomic_signal_fence(__ATOMIC_SEQ_CST)
#endif

#define FH_SHM_MAGIC 0x31304d4853484646ull /* "FFHSHM01" */
#define FH_SHM_LAYOUT_VERSION 5u /* 2: fh_shm_stats_t.dp; 3: line health, feed state, 32 MoldUDP64 counters;
                                  * 4: 64-bit signed prices, 32-bit instrument index, nbooks, key_bits, price_exp,
                                  * 128-byte events; 5: the price ladders (fh_shm_lside_t, fh_shm_book_t.ladder) */
#define FH_SHM_BOOKS 65536u /* the ITCH writer's nbooks (one per stock locate); readers use hdr->nbooks */

/* fh_shm_book_t.status */
#define FH_BOOK_EMPTY 0 /* no instrument at this locate */
/* fh_shm_book_t.flags */
#define FH_BOOK_F_UNPUBLISHED 1 /* not among the instruments the writer publishes ([instruments] publish): the
                                 * writer keeps its orders but emits no event for it; readers treat it as absent */
#define FH_BOOK_F_INCOMPLETE 2 /* the writer skipped a message of this book for want of room (its order table or
                                * level memory full: counters order_capacity, level_capacity): the book lacks it, so
                                * it is FH_BOOK_STALE until a snapshot rebuilds it; a recovery of the lines does not
                                * make it live */
#define FH_BOOK_LIVE 1  /* built from a gap-free stream */
#define FH_BOOK_STALE 2 /* a gap may have been applied across: do not trust until recovered */

/* fh_shm_event_t.type */
#define FH_EV_BBO 1       /* a: bid shares, b: ask shares, c: bid price, d: ask price (shares 0 = no level) */
#define FH_EV_TRADE 2     /* a: shares, b: match number, c: price */
#define FH_EV_STATE 3     /* trading_state changed (event.trading_state) */
#define FH_EV_STALE 4     /* the book's status became stale */
#define FH_EV_RECOVERED 5 /* the book's status became live again */

typedef struct fh_shm_side {
    uint32_t off; /* first level of the side's deep run in the arena */
    uint32_t n;   /* deep levels in use; the deep run's best is at off + n - 1 */
} fh_shm_side_t;

/* The price ladder of one side of a book (layout 5): a window of FH_SHM_LADDER_W consecutive tick indexes
 * [lo, lo + FH_SHM_LADDER_W), a ring of slots. The tick index of a price on the book's tick is
 * kx = price / tick for bids and its complement ~(price / tick) for asks, so that on both sides the best
 * level is the highest index; its level is slot[kx % FH_SHM_LADDER_W] (fh_shm_ladder_slots), occupied when
 * bit kx % FH_SHM_LADDER_W of occ is set. A level of the side is in the window exactly when its price is on
 * the tick and its index inside the window; every other level is in the deep run (fh_shm_side_t), so a
 * side's levels best first are the two merged by key. Written under the book's seqlock. */
#define FH_SHM_LADDER_BITS 8u
#define FH_SHM_LADDER_W (1u << FH_SHM_LADDER_BITS) /* slots a side */
#define FH_SHM_LADDER_WORDS (FH_SHM_LADDER_W / 64)
typedef struct fh_shm_lside {
    uint32_t lo;    /* tick index of the window's lowest slot */
    uint32_t best;  /* the highest tick index with a level, when nl > 0 */
    uint32_t nl;    /* levels in the window */
    uint32_t tick;  /* the book's tick in price units; 0: none chosen (nl is 0) */
    uint32_t mul;   /* writer's private: price / tick == (price * mul) >> sh */
    uint32_t sh;    /* writer's private */
    uint64_t wslot; /* writer's private: its address of the slots */
    uint64_t occ[FH_SHM_LADDER_WORDS]; /* occupied slots */
} fh_shm_lside_t;

/* One instrument; 64 bytes, one cache line. Fields other than seq are valid only inside a seqlock read. */
typedef struct fh_shm_book {
    uint32_t seq;            /* seqlock: odd while the writer changes the book */
    uint32_t locate;         /* its index in books[] (ITCH: the stock locate) */
    char trading_state;      /* 'T' trading, 'H' halted, 'P' paused, 'Q' quotation only */
    uint8_t status;          /* FH_BOOK_* */
    uint8_t flags;           /* FH_BOOK_F_* */
    uint8_t symbol_len;
    uint8_t cls[2];          /* writer's private: size class of each side's run */
    uint16_t ladder;         /* its ladders: lside[2 * ladder] (bids), [2 * ladder + 1] (asks), ladder <=
                              * ladder_books (ladder_books: the pair every book past the first ladder_books
                              * shares, whose window never holds a level) */
    fh_shm_side_t side[2];   /* [0] bids, [1] asks */
    char symbol[8];          /* trailing spaces stripped; not NUL-terminated when 8 long */
    int64_t last_price;      /* last trade; last_shares == 0: none yet */
    uint32_t last_shares;
    uint32_t updates;        /* changes so far (wraps) */
    uint64_t itch_ts;        /* exchange timestamp (ITCH: ns since midnight) of the last change */
} fh_shm_book_t;

typedef struct fh_shm_agg {
    uint64_t shares;
    uint32_t orders;
    uint32_t next_free; /* writer's private */
} fh_shm_agg_t;

/* One event; 128 bytes (two cache lines, the second mostly reserved). Valid when `seq` read before and
 * after the copy is the sequence asked for. */
typedef struct fh_shm_event {
    uint64_t seq;      /* 1, 2, 3, ...; 0: never written */
    uint8_t type;      /* FH_EV_* */
    char trading_state;
    uint8_t status;
    uint8_t pad;
    uint32_t locate;   /* the book's index */
    uint64_t itch_ts;  /* exchange timestamp, ns since midnight */
    uint64_t rx_tsc;   /* TSC when the packet arrived (0 when not from a NIC) */
    uint64_t pub_tsc;  /* TSC when the batch that made it began to be applied: a step of the data plane's staged
                        * run (fh_engine_consumer_staged: 32 or more messages applied behind the walk, or what is left
                        * at the burst's end), a datagram, or 256 messages of a file; a message the data plane applies
                        * alone (out of order) has its burst's rx TSC */
    uint64_t a, b;     /* shares (FH_EV_BBO: bid, ask; FH_EV_TRADE: shares, match number) */
    int64_t c, d;      /* prices, in units of 10^price_exp (FH_EV_BBO: bid, ask; FH_EV_TRADE: c) */
    uint64_t reserved[7];
} fh_shm_event_t;

typedef struct fh_shm_hdr {
    /* identity and layout: written once, before magic */
    uint64_t magic;
    uint32_t layout_version;
    uint32_t hdr_size;
    uint64_t size;              /* of the whole segment */
    uint64_t books_off;         /* FH_SHM_BOOKS fh_shm_book_t */
    uint64_t lkey_off;          /* max_levels uint32_t */
    uint64_t lagg_off;          /* max_levels fh_shm_agg_t */
    uint64_t events_off;        /* event_capacity fh_shm_event_t */
    uint64_t stats_off;         /* fh_shm_stats_t */
    uint32_t max_levels;
    uint32_t event_capacity;    /* a power of two */
    uint32_t depth;             /* the configured top-N that readers show by default */
    uint32_t writer_pid;
    uint64_t start_ns;          /* CLOCK_REALTIME when the writer started */
    uint64_t tsc_hz;            /* to turn the TSC stamps of events into ns (0: unknown) */
    char name[32];              /* instance name */
    /* layout version 4: the venue's representation */
    uint32_t nbooks;            /* books[] entries (ITCH: FH_SHM_BOOKS) */
    uint32_t key_bits;          /* 32 or 64: width of a level key (fh_shm_key_price) */
    int32_t price_exp;          /* a price p means p * 10^price_exp of the currency (ITCH: -4) */
    uint32_t pad0;
    /* layout version 5: the price ladders */
    uint64_t ladder_off;        /* fh_shm_lside_t[2 * (ladder_books + 1)] */
    uint64_t lslot_off;         /* fh_shm_agg_t[2 * (ladder_books + 1) * FH_SHM_LADDER_W]: side i's slots from
                                 * i * FH_SHM_LADDER_W */
    uint32_t ladder_bits;       /* FH_SHM_LADDER_BITS */
    uint32_t ladder_books;      /* books with a ladder of their own (0 .. 65534) */
    /* liveness: rewritten by the writer */
    FH_SHM_ALIGNAS(64) FH_SHM_ATOMIC(uint64_t) heartbeat_ns; /* CLOCK_REALTIME of the writer's last sign of life */
    FH_SHM_ATOMIC(uint32_t) writer_state;               /* 1 running, 2 stopped cleanly */
    /* (zero in segments of writers before it: a plain writer's, FH_SHM_STANDBY_NO) A standby's data plane,
     * which builds its books from its primary's journal while its own feed lines are held back, says how current
     * they are against those lines: FH_SHM_STANDBY_*; behind_msgs: messages the lines have delivered that the
     * journal has not yet given (0 when current). Read with fh_shm_standby_state. */
    FH_SHM_ATOMIC(uint32_t) standby;
    FH_SHM_ATOMIC(uint64_t) behind_msgs;
    /* event ring head: written by the writer only */
    FH_SHM_ALIGNAS(64) FH_SHM_ATOMIC(uint64_t) head; /* sequence of the last event published */
} fh_shm_hdr_t;

/* The wake page (fh_shm_wake_path): the futex word is bumped and woken by the writer only while waiters != 0. */
typedef struct fh_shm_wake {
    FH_SHM_ALIGNAS(64) FH_SHM_ATOMIC(uint32_t) futex;
    FH_SHM_ATOMIC(uint32_t) waiters;
} fh_shm_wake_t;

#define FH_SHM_MAX_COUNTERS 64

/* The data plane's section of the stats region. Only the data plane (fh-dataplane) fills it, every 100 ms
 * while the port is idle and once at exit (fh_seg_publish_dataplane); engine-only writers (fh publish)
 * leave it all zero, `present` included. Names travel with the counts, so that a reader needs nothing but
 * this header: drop causes are fh_net_drop_name's, MoldUDP64 counters fh_mold_counter_name's, each a
 * NUL-terminated string.
 *
 * Latency: rx->publish, per message, in ns: TSC at the burst's rx (right after the rx burst returned) to one TSC
 * read once the burst's datagrams were applied and published, converted with the data plane's TSC rate. One
 * stamp a burst: each message's figure is an upper bound of its own, exact for the burst's last datagram and
 * for every message of a one-datagram burst (as at paced rates); in a full burst the first datagrams' messages
 * count the later ones' time too. Messages released from the hold-back buffer by a timer: from that poll.
 * A log-linear (HdrHistogram-style) histogram of FH_SHM_LAT_BUCKETS counts: bucket i < 64 counts exactly i ns;
 * from 64 on, each power of two [2^e, 2^(e+1)), e = 6 .. 39, is cut into FH_SHM_LAT_SUB = 16 sub-buckets of
 * 2^(e-4) ns (6.25 % of 2^e):
 *
 *     i = 64 + (e - 6) * 16 + sub            e = (i - 64) / 16 + 6, sub = (i - 64) % 16
 *     bucket i holds [(16 + sub) << (e - 4), ((16 + sub + 1) << (e - 4)) - 1]   (inclusive, in ns)
 *
 * fh_shm_lat_upper(i) is the inclusive upper bound; the last bucket also holds everything >= 2^40 ns
 * (18 min). Its counts sum to lat_count, which equals the messages the data plane applied. The data plane
 * counts in TSC ticks on its hot path and re-buckets into ns when it publishes (each tick bucket by its
 * upper bound), so a percentile read here is at most one ns bucket (6.25 %) above the one fh-dataplane
 * prints from its tick histogram. */
#define FH_SHM_DP_MAX_DROPS 16
#define FH_SHM_DP_MAX_MOLD 32
#define FH_SHM_DP_MAX_LINES 16
#define FH_SHM_DP_NAME 24
#define FH_SHM_LAT_SUB 16
#define FH_SHM_LAT_BUCKETS (64 + (40 - 6) * FH_SHM_LAT_SUB) /* 608 */

/* fh_shm_hdr_t.standby: how current a standby's books are (a primary's, and any other writer's: NO) */
#define FH_SHM_STANDBY_NO 0          /* not a standby: the books are the writer's own, from its feed */
#define FH_SHM_STANDBY_CURRENT 1     /* a standby whose journal covers every datagram its lines delivered more than
                                      * FH_SHM_STANDBY_SLACK_NS ago: the books are its primary's, as of now */
#define FH_SHM_STANDBY_BEHIND 2      /* a standby catching up: its lines delivered, that long ago, messages its
                                      * journal has not given yet (behind_msgs of them): the books are its
                                      * primary's as of an earlier point (a standby started mid-day, a demoted
                                      * primary rebuilding, a slow link); they fill in order, never torn */
#define FH_SHM_STANDBY_NO_LINES 3    /* a standby whose lines have delivered nothing yet: cannot tell */
#define FH_SHM_STANDBY_SLACK_NS 1000000ull /* 1 ms: the replication lag that still counts as current */

/* fh_shm_dp_line_t.state: from the time since the line's last datagram (heartbeats count) */
#define FH_SHM_LINE_DOWN 0     /* never heard, or silent longer than the down threshold */
#define FH_SHM_LINE_LIVE 1
#define FH_SHM_LINE_STALE 2    /* silent longer than the stale threshold */
/* fh_shm_dp_line_t.kind */
#define FH_SHM_LINE_FEED 0     /* a line of the feed (A, B, ...) */
#define FH_SHM_LINE_RETRANS 1  /* the retransmission server's replies */
/* fh_shm_dp_stats_t.feed_state */
#define FH_SHM_FEED_WAITING 0    /* no sequenced datagram yet */
#define FH_SHM_FEED_LIVE 1
#define FH_SHM_FEED_RECOVERING 2 /* a gap is open: later messages are held while it is filled */
#define FH_SHM_FEED_STALE 3      /* a gap was given up: the books are stale until a snapshot */
#define FH_SHM_FEED_ENDED 4      /* end of session */

typedef struct fh_shm_dp_line {
    uint64_t datagrams;            /* MoldUDP64 datagrams that arrived on the line (heartbeats too) */
    uint64_t messages;             /* sequenced messages they carried */
    uint64_t won;                  /* messages first seen on this line (applied from it) */
    uint64_t duplicates;           /* messages already applied when they came */
    uint64_t late;                 /* messages below the line's own highest sequence (reordered or late) */
    uint64_t lost;                 /* sequences the line skipped when it jumped ahead (whether or not another line
                                    * had them; a reordering counts here, then in late when the rest comes) */
    uint64_t silent_ns;            /* since its last datagram, as of this publication; UINT64_MAX: never */
    uint32_t state;                /* FH_SHM_LINE_* */
    uint32_t kind;                 /* FH_SHM_LINE_FEED or FH_SHM_LINE_RETRANS */
} fh_shm_dp_line_t;

typedef struct fh_shm_dp_stats {
    uint32_t present;              /* 1 once a data plane has published; 0: no data plane (all zero) */
    uint32_t ndrops;               /* entries of drops / drop_name in use */
    uint32_t nmold;                /* entries of mold / mold_name in use */
    uint32_t nlines;               /* entries of line in use: the --line order, then the retransmission line */
    uint64_t packets;              /* frames received */
    uint64_t bytes;                /* their bytes */
    uint64_t next_seq;             /* MoldUDP64: sequence of the next message expected */
    uint32_t feed_state;           /* FH_SHM_FEED_* */
    uint32_t held;                 /* messages in the hold-back buffer now */
    uint32_t outstanding;          /* retransmission requests in flight */
    char session[12];              /* the MoldUDP64 session (10 bytes), NUL-padded */
    uint64_t drops[FH_SHM_DP_MAX_DROPS];   /* frames dropped, by cause */
    uint64_t mold[FH_SHM_DP_MAX_MOLD];     /* MoldUDP64 counters */
    fh_shm_dp_line_t line[FH_SHM_DP_MAX_LINES];
    char drop_name[FH_SHM_DP_MAX_DROPS][FH_SHM_DP_NAME];
    char mold_name[FH_SHM_DP_MAX_MOLD][FH_SHM_DP_NAME];
    uint64_t lat_count;            /* sum of lat_bucket */
    uint64_t lat_bucket[FH_SHM_LAT_BUCKETS]; /* see above */
} fh_shm_dp_stats_t;

typedef struct fh_shm_stats {
    FH_SHM_ALIGNAS(64) FH_SHM_ATOMIC(uint32_t) seq;
    uint32_t count;                 /* counters in use */
    uint64_t counter[FH_SHM_MAX_COUNTERS];
    uint64_t type_count[256];       /* messages by ITCH type byte */
    /* layout version 2 */
    fh_shm_dp_stats_t dp;           /* the data plane's section (above) */
} fh_shm_stats_t;

/* The layout claimed above, held by the compiler in C and in C++ (where the _Atomic fields are plain): a change
 * here is a change of FH_SHM_LAYOUT_VERSION, and of every reader in another language (handler/shm.py builds
 * its numpy dtypes from the same offsets and checks them against the C compiler's). */
#define FH_SHM_AT(T, f, off) FH_SHM_STATIC_ASSERT(offsetof(T, f) == (off), #T "." #f " at offset " #off)
#define FH_SHM_SIZE(T, n) FH_SHM_STATIC_ASSERT(sizeof(T) == (n), "sizeof " #T " is " #n)
FH_SHM_SIZE(fh_shm_side_t, 8);
FH_SHM_SIZE(fh_shm_lside_t, 64); /* one cache line */
FH_SHM_AT(fh_shm_lside_t, tick, 12);
FH_SHM_AT(fh_shm_lside_t, wslot, 24);
FH_SHM_AT(fh_shm_lside_t, occ, 32);
FH_SHM_SIZE(fh_shm_book_t, 64); /* one cache line */
FH_SHM_AT(fh_shm_book_t, locate, 4);
FH_SHM_AT(fh_shm_book_t, trading_state, 8);
FH_SHM_AT(fh_shm_book_t, status, 9);
FH_SHM_AT(fh_shm_book_t, flags, 10);
FH_SHM_AT(fh_shm_book_t, symbol_len, 11);
FH_SHM_AT(fh_shm_book_t, ladder, 14);
FH_SHM_AT(fh_shm_book_t, side, 16);
FH_SHM_AT(fh_shm_book_t, symbol, 32);
FH_SHM_AT(fh_shm_book_t, last_price, 40);
FH_SHM_AT(fh_shm_book_t, last_shares, 48);
FH_SHM_AT(fh_shm_book_t, updates, 52);
FH_SHM_AT(fh_shm_book_t, itch_ts, 56);
FH_SHM_SIZE(fh_shm_agg_t, 16);
FH_SHM_AT(fh_shm_agg_t, orders, 8);
FH_SHM_SIZE(fh_shm_event_t, 128); /* two cache lines */
FH_SHM_AT(fh_shm_event_t, type, 8);
FH_SHM_AT(fh_shm_event_t, status, 10);
FH_SHM_AT(fh_shm_event_t, locate, 12);
FH_SHM_AT(fh_shm_event_t, itch_ts, 16);
FH_SHM_AT(fh_shm_event_t, rx_tsc, 24);
FH_SHM_AT(fh_shm_event_t, pub_tsc, 32);
FH_SHM_AT(fh_shm_event_t, a, 40);
FH_SHM_AT(fh_shm_event_t, b, 48);
FH_SHM_AT(fh_shm_event_t, c, 56);
FH_SHM_AT(fh_shm_event_t, d, 64);
FH_SHM_SIZE(fh_shm_hdr_t, 320);
FH_SHM_AT(fh_shm_hdr_t, layout_version, 8);
FH_SHM_AT(fh_shm_hdr_t, size, 16);
FH_SHM_AT(fh_shm_hdr_t, books_off, 24);
FH_SHM_AT(fh_shm_hdr_t, stats_off, 56);
FH_SHM_AT(fh_shm_hdr_t, max_levels, 64);
FH_SHM_AT(fh_shm_hdr_t, start_ns, 80);
FH_SHM_AT(fh_shm_hdr_t, tsc_hz, 88);
FH_SHM_AT(fh_shm_hdr_t, name, 96);
FH_SHM_AT(fh_shm_hdr_t, nbooks, 128);
FH_SHM_AT(fh_shm_hdr_t, key_bits, 132);
FH_SHM_AT(fh_shm_hdr_t, price_exp, 136);
FH_SHM_AT(fh_shm_hdr_t, ladder_off, 144);
FH_SHM_AT(fh_shm_hdr_t, lslot_off, 152);
FH_SHM_AT(fh_shm_hdr_t, ladder_bits, 160);
FH_SHM_AT(fh_shm_hdr_t, ladder_books, 164);
FH_SHM_AT(fh_shm_hdr_t, heartbeat_ns, 192); /* the writer's liveness on a line of its own */
FH_SHM_AT(fh_shm_hdr_t, writer_state, 200);
FH_SHM_AT(fh_shm_hdr_t, standby, 204);
FH_SHM_AT(fh_shm_hdr_t, behind_msgs, 208);
FH_SHM_AT(fh_shm_hdr_t, head, 256);         /* the event head on a line of its own */
FH_SHM_SIZE(fh_shm_wake_t, 64);
FH_SHM_AT(fh_shm_wake_t, waiters, 4);
FH_SHM_STATIC_ASSERT(FH_SHM_LAT_BUCKETS == 608, "latency buckets: 64 exact + 34 powers of two x 16");
FH_SHM_SIZE(fh_shm_dp_line_t, 64);
FH_SHM_SIZE(fh_shm_dp_stats_t, 7496);
FH_SHM_AT(fh_shm_dp_stats_t, packets, 16);
FH_SHM_AT(fh_shm_dp_stats_t, session, 52);
FH_SHM_AT(fh_shm_dp_stats_t, drops, 64);
FH_SHM_AT(fh_shm_dp_stats_t, mold, 192);
FH_SHM_AT(fh_shm_dp_stats_t, line, 448);
FH_SHM_AT(fh_shm_dp_stats_t, drop_name, 1472);
FH_SHM_AT(fh_shm_dp_stats_t, mold_name, 1856);
FH_SHM_AT(fh_shm_dp_stats_t, lat_count, 2624);
FH_SHM_AT(fh_shm_dp_stats_t, lat_bucket, 2632);
FH_SHM_SIZE(fh_shm_stats_t, 10112);
FH_SHM_AT(fh_shm_stats_t, count, 4);
FH_SHM_AT(fh_shm_stats_t, counter, 8);
FH_SHM_AT(fh_shm_stats_t, type_count, 520);
FH_SHM_AT(fh_shm_stats_t, dp, 2568);

/* Inclusive upper bound, in ns, of latency bucket i (the scheme above). */
static inline uint64_t fh_shm_lat_upper(unsigned i)
{
    if (i < 64)
        return i;
    unsigned e = (i - 64) / FH_SHM_LAT_SUB + 6, sub = (i - 64) % FH_SHM_LAT_SUB;
    return ((uint64_t)(FH_SHM_LAT_SUB + sub + 1) << (e - 4)) - 1;
}

/* The bucket of a latency of v ns. */
static inline unsigned fh_shm_lat_index(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u ^ (unsigned)__builtin_clzll(v); /* the top bit, >= 6 */
    if (__builtin_expect(e >= 40, 0))
        return FH_SHM_LAT_BUCKETS - 1;
    /* 64 + (e - 6) * 16 + (the four bits below the top one): v >> (e - 4) is 16 + those bits, so no mask */
    return 16 * e - 48 + (unsigned)(v >> (e - 4));
}

/* Level keys: sorted ascending, a side's best last. 32-bit keys (ITCH) hold an unsigned price, bids as is and
 * asks complemented; 64-bit keys hold a signed price with its sign bit flipped (so that keys sort like
 * prices), bids as is and asks complemented. side: 0 bids, 1 asks. */
static inline uint64_t fh_shm_key(uint32_t key_bits, int side, int64_t price)
{
    if (key_bits == 32)
        return side ? (uint32_t)~(uint32_t)price : (uint32_t)price;
    uint64_t k = (uint64_t)price ^ (1ull << 63);
    return side ? ~k : k;
}

static inline int64_t fh_shm_key_price(uint32_t key_bits, int side, uint64_t key)
{
    if (key_bits == 32)
        return (int64_t)(side ? (uint32_t)~(uint32_t)key : (uint32_t)key);
    return (int64_t)((side ? ~key : key) ^ (1ull << 63));
}

/* FNV-1a 64 of n bytes (fh_shm_wake_path's directory hash). */
static inline uint64_t fh_shm_fnv1a64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The wake page of the segment at path, always in /dev/shm: /dev/shm/BASENAME.wake when the segment's directory
 * resolves (realpath) to /dev/shm, else /dev/shm/BASENAME.HASH.wake, HASH the 16 lowercase hex digits of FNV-1a 64
 * over the resolved directory's bytes, so that segments of one basename in two directories (two hugetlbfs mounts,
 * /dev/shm and a mount) never share one. The directory is the path up to its last '/' without trailing '/'s ("/"
 * at the root, "." without a '/'); one that cannot be resolved is hashed as given. handler/segments.py's
 * wake_path calls this one. 0, or -1 if the name does not fit in cap (NUL included). Cold: a realpath. */
static inline int fh_shm_wake_path(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dir = ".";
    size_t dn = 1;
    if (slash) {
        dn = (size_t)(slash - path);
        while (dn && path[dn - 1] == '/')
            dn--;
        dir = dn ? path : "/";
        dn = dn ? dn : 1;
    }
    char *given = (char *)malloc(dn + 1), *res = NULL;
    if (given) {
        memcpy(given, dir, dn);
        given[dn] = '\0';
        res = realpath(given, NULL);
        free(given);
    }
    const char *rd = res ? res : dir;
    size_t rn = res ? strlen(res) : dn;
    int in_shm = rn == 8 && !memcmp(rd, "/dev/shm", 8);
    uint64_t h = in_shm ? 0 : fh_shm_fnv1a64(rd, rn);
    free(res);
    size_t bn = strlen(base), hn = in_shm ? 0 : 17; /* ".%016x" */
    if (cap < 9 + bn + hn + sizeof ".wake")
        return -1;
    memcpy(out, "/dev/shm/", 9);
    memcpy(out + 9, base, bn);
    char *q = out + 9 + bn;
    if (!in_shm) {
        *q++ = '.';
        for (int i = 15; i >= 0; i--)
            *q++ = "0123456789abcdef"[(h >> (4 * i)) & 15];
    }
    memcpy(q, ".wake", sizeof ".wake");
    return 0;
}

/* ---- reader ------------------------------------------------------------------------------------------ */

typedef struct fh_shm_reader {
    const uint8_t *base;
    size_t size;
    const fh_shm_hdr_t *hdr;
    const fh_shm_book_t *books;
    const void *lkey;          /* key_bits-wide keys (fh_shm_key_price) */
    const fh_shm_agg_t *lagg;
    const fh_shm_event_t *events;
    const fh_shm_stats_t *stats;
    fh_shm_wake_t *wake; /* NULL when the wake page cannot be opened for writing: fh_shm_wait then polls */
    uint32_t nbooks;     /* hdr->nbooks: books[] entries, the instrument indexes 0 .. nbooks - 1 */
    uint32_t key_bits;   /* hdr->key_bits: 32 or 64 */
    const fh_shm_lside_t *lside; /* layout 5: 2 * (ladder_books + 1) side headers */
    const fh_shm_agg_t *lslot;   /* their slots, FH_SHM_LADDER_W a side */
    uint32_t ladder_books;       /* hdr->ladder_books */
} fh_shm_reader_t;

/* A region of len bytes at off lies inside a mapping of size bytes, aligned for its type. Written so that no
 * sum can wrap: a corrupted header (any offset up to 2^64 - 1) is refused, never followed. */
static inline int fh_shm_region_ok(uint64_t off, uint64_t len, uint64_t align, uint64_t size)
{
    return off <= size && len <= size - off && off % align == 0;
}

/* Join the segment at path read-only. 0, or -errno: -ENOENT (no segment: is fh running?), -EAGAIN (its
 * writer is still creating it: try again), -EPROTO (not an fh segment, or a layout version other than
 * FH_SHM_LAYOUT_VERSION), or mmap's error. */
static inline int fh_shm_join(fh_shm_reader_t *r, const char *path)
{
    memset(r, 0, sizeof *r); /* so that fh_shm_leave is safe after a failed join */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st)) {
        int err = errno;
        close(fd);
        return -err;
    }
    if ((size_t)st.st_size < sizeof(fh_shm_hdr_t)) {
        /* a writer creates the file, locks it, then sizes it: empty or locked, it is still being created (as
         * handler/shm.py's Reader reads it too) */
        int creating = !st.st_size || (flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK);
        close(fd);
        return creating ? -EAGAIN : -EPROTO;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED)
        return -err;
    const fh_shm_hdr_t *h = (const fh_shm_hdr_t *)p;
    uint64_t magic = FH_SHM_LOAD_ACQ(&h->magic);
    uint64_t size = (uint64_t)st.st_size;
    if (magic == 0) {
        munmap(p, (size_t)st.st_size);
        return -EAGAIN;
    }
    if (magic != FH_SHM_MAGIC || h->layout_version != FH_SHM_LAYOUT_VERSION || h->size > size ||
        h->hdr_size != sizeof *h || h->event_capacity == 0 || (h->event_capacity & (h->event_capacity - 1)) ||
        (h->key_bits != 32 && h->key_bits != 64) ||
        !fh_shm_region_ok(h->books_off, (uint64_t)h->nbooks * sizeof(fh_shm_book_t), FH_SHM_ALIGNOF(fh_shm_book_t),
                          size) ||
        !fh_shm_region_ok(h->lkey_off, (uint64_t)h->max_levels * (h->key_bits / 8), h->key_bits / 8, size) ||
        !fh_shm_region_ok(h->lagg_off, (uint64_t)h->max_levels * sizeof(fh_shm_agg_t), FH_SHM_ALIGNOF(fh_shm_agg_t),
                          size) ||
        !fh_shm_region_ok(h->events_off, (uint64_t)h->event_capacity * sizeof(fh_shm_event_t),
                          FH_SHM_ALIGNOF(fh_shm_event_t), size) ||
        !fh_shm_region_ok(h->stats_off, sizeof(fh_shm_stats_t), FH_SHM_ALIGNOF(fh_shm_stats_t), size) ||
        h->ladder_bits != FH_SHM_LADDER_BITS || h->ladder_books > 65534u ||
        !fh_shm_region_ok(h->ladder_off, 2 * ((uint64_t)h->ladder_books + 1) * sizeof(fh_shm_lside_t),
                          FH_SHM_ALIGNOF(fh_shm_lside_t), size) ||
        !fh_shm_region_ok(h->lslot_off, 2 * ((uint64_t)h->ladder_books + 1) * FH_SHM_LADDER_W * sizeof(fh_shm_agg_t),
                          FH_SHM_ALIGNOF(fh_shm_agg_t), size)) {
        munmap(p, (size_t)st.st_size);
        return -EPROTO; /* not an fh segment, or another layout version */
    }
    r->base = (const uint8_t *)p;
    r->size = (size_t)st.st_size;
    r->hdr = h;
    r->books = (const fh_shm_book_t *)(r->base + h->books_off);
    r->lkey = r->base + h->lkey_off;
    r->nbooks = h->nbooks;
    r->key_bits = h->key_bits;
    r->lagg = (const fh_shm_agg_t *)(r->base + h->lagg_off);
    r->events = (const fh_shm_event_t *)(r->base + h->events_off);
    r->stats = (const fh_shm_stats_t *)(r->base + h->stats_off);
    r->lside = (const fh_shm_lside_t *)(r->base + h->ladder_off);
    r->lslot = (const fh_shm_agg_t *)(r->base + h->lslot_off);
    r->ladder_books = h->ladder_books;
    r->wake = NULL;
    char wpath[4096];
    if (fh_shm_wake_path(path, wpath, sizeof wpath) == 0) {
        int wfd = open(wpath, O_RDWR | O_CLOEXEC);
        if (wfd >= 0) {
            void *w = mmap(NULL, sizeof(fh_shm_wake_t), PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
            close(wfd);
            if (w != MAP_FAILED)
                r->wake = (fh_shm_wake_t *)w;
        }
    }
    return 0;
}

/* 1 if the writer still holds the segment, 0 if it is gone (died or stopped), -errno on error. */
static inline int fh_shm_writer_alive(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int alive = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases a shared lock we may have taken */
    return alive;
}

/* How current a standby's books are (FH_SHM_STANDBY_*; FH_SHM_STANDBY_NO for any other writer), and, when
 * behind is not NULL, the messages its lines have delivered that its journal has not given yet. */
static inline uint32_t fh_shm_standby_state(const fh_shm_reader_t *r, uint64_t *behind)
{
    uint32_t st = FH_SHM_LOAD_ACQ(&r->hdr->standby);
    if (behind)
        *behind = FH_SHM_LOAD_ACQ(&r->hdr->behind_msgs);
    return st;
}

static inline void fh_shm_leave(fh_shm_reader_t *r)
{
    if (r->base)
        munmap((void *)r->base, r->size);
    if (r->wake)
        munmap(r->wake, sizeof(fh_shm_wake_t));
    memset(r, 0, sizeof *r);
}

typedef struct fh_shm_level {
    int64_t price;   /* in units of 10^price_exp */
    uint64_t shares;
    uint32_t orders;
    uint32_t pad;
} fh_shm_level_t;

/* A consistent copy of one book's top `depth` levels per side. */
typedef struct fh_shm_snapshot {
    fh_shm_book_t book;  /* the book's fields at the time of the copy (seq even) */
    uint32_t nbids, nasks;
    fh_shm_level_t bids[64]; /* best first */
    fh_shm_level_t asks[64];
    uint32_t nlevels[2];     /* layout 5: each side's levels in the book (window and deep run: book.side[].n counts
                              * only the deep run), of which nbids / nasks are the top */
} fh_shm_snapshot_t;
FH_SHM_SIZE(fh_shm_level_t, 24);
FH_SHM_AT(fh_shm_level_t, shares, 8);
FH_SHM_AT(fh_shm_level_t, orders, 16);
FH_SHM_AT(fh_shm_snapshot_t, nbids, 64);
FH_SHM_AT(fh_shm_snapshot_t, bids, 72);
FH_SHM_AT(fh_shm_snapshot_t, asks, 1608);
FH_SHM_AT(fh_shm_snapshot_t, nlevels, 3144);

/* Copy the top `depth` (<= 64) levels of each side of book `locate` into *out, retrying while the writer
 * changes the book. Returns the number of copies retried (>= 0), -1 if the locate has no instrument (or is
 * not below r->nbooks), or -2
 * if the book stayed mid-change for FH_SHM_BUSY_NS (a writer that died inside an update, or is stopped:
 * check fh_shm_writer_alive). On -1 and -2, out->nbids and out->nasks are 0 (a caller that ignores the
 * result reads no levels); out->book is the book's fields as last seen, or zeros if none was copied. Hot:
 * no check of depth beyond clamping; the clock is read only while the book stays mid-change. */
#define FH_SHM_BUSY_NS 200000000ull

static inline uint64_t fh_shm_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The tick index of the window's next level below kx (a level of the window, not its lowest) into *kx: the
 * first occupied slot going down the ring from kx's. 0, or -1 when there is none inside the window (a torn
 * copy of the header: the caller's seqlock check retries). Bounded: FH_SHM_LADDER_WORDS + 1 words. */
static inline int fh_shm_ladder_below(const fh_shm_lside_t *L, uint32_t *kx)
{
    uint32_t s = *kx & (FH_SHM_LADDER_W - 1), w = s >> 6;
    uint64_t m = L->occ[w] & ((1ull << (s & 63)) - 1);
    for (uint32_t i = 0; !m; i++) {
        if (i == FH_SHM_LADDER_WORDS)
            return -1;
        w = (w - 1) & (FH_SHM_LADDER_WORDS - 1);
        m = L->occ[w];
        if (i == FH_SHM_LADDER_WORDS - 1) /* kx's word again: only its slots above kx's, the ring's far end */
            m &= (s & 63) == 63 ? 0 : ~0ull << ((s & 63) + 1);
    }
    uint32_t ns = w * 64 + 63 - (uint32_t)__builtin_clzll(m);
    uint32_t k = *kx - ((s - ns) & (FH_SHM_LADDER_W - 1));
    if (k - L->lo >= FH_SHM_LADDER_W)
        return -1;
    *kx = k;
    return 0;
}

/* Up to depth levels of side s (0 bids, 1 asks) of the book copied in *bk, best first, into lv: the window of
 * its ladder (32-bit keys only: a writer of 64-bit keys keeps every level deep) and its deep run merged by key.
 * Every index is bounded whatever the copy holds; a torn copy gives wrong levels, which the caller's seqlock
 * check throws away. Returns the number of levels copied; *total: the side's levels in the book. */
static inline uint32_t fh_shm_side_levels(const fh_shm_reader_t *r, const fh_shm_book_t *bk, int s, uint32_t depth,
                                          fh_shm_level_t *lv, uint32_t *total)
{
    const uint32_t *k32 = (const uint32_t *)r->lkey;
    const uint64_t *k64 = (const uint64_t *)r->lkey;
    const uint32_t kb = r->key_bits, max = r->hdr->max_levels;
    fh_shm_side_t sd = bk->side[s];
    uint32_t d = sd.n;
    if (sd.off > max || sd.n > max - sd.off) /* torn: off/n from different writes */
        d = 0;
    fh_shm_lside_t L;
    uint32_t left = 0, lad = 2u * bk->ladder + (uint32_t)s;
    const fh_shm_agg_t *slot = NULL;
    if (kb == 32 && r->lside && bk->ladder <= r->ladder_books) {
        memcpy(&L, &r->lside[lad], sizeof L);
        slot = r->lslot + (size_t)lad * FH_SHM_LADDER_W;
        left = L.nl;
        if (left > FH_SHM_LADDER_W || L.best - L.lo >= FH_SHM_LADDER_W || !L.tick) /* torn, or an empty window */
            left = 0;
    }
    uint32_t n = 0, kx = left ? L.best : 0;
    *total = d + left;
    while (n < depth && (d || left)) {
        uint32_t wprice = left ? ((uint32_t)s ? ~kx : kx) * L.tick : 0;
        uint64_t wkey = (uint32_t)s ? (uint32_t)~wprice : wprice;
        uint64_t dkey = d ? (kb == 32 ? k32[sd.off + d - 1] : k64[sd.off + d - 1]) : 0;
        if (left && (!d || dkey < wkey)) {
            const fh_shm_agg_t *a = &slot[kx & (FH_SHM_LADDER_W - 1)];
            lv[n].price = (int64_t)wprice;
            lv[n].orders = a->orders;
            lv[n].pad = 0;
            lv[n].shares = a->shares;
            if (--left && fh_shm_ladder_below(&L, &kx))
                left = 0;
        } else {
            d--;
            lv[n].price = fh_shm_key_price(kb, s, dkey);
            lv[n].orders = r->lagg[sd.off + d].orders;
            lv[n].pad = 0;
            lv[n].shares = r->lagg[sd.off + d].shares;
        }
        n++;
    }
    return n;
}

static inline int fh_shm_snapshot(const fh_shm_reader_t *r, uint32_t locate, uint32_t depth, fh_shm_snapshot_t *out)
{
    if (locate >= r->nbooks) {
        memset(&out->book, 0, sizeof out->book);
        out->nbids = out->nasks = out->nlevels[0] = out->nlevels[1] = 0;
        return -1;
    }
    const fh_shm_book_t *b = &r->books[locate];
    const uint32_t *seqp = &b->seq;
    if (depth > 64)
        depth = 64;
    uint64_t busy_since = 0;
    for (int tries = 0;; tries++) {
        uint32_t s1 = FH_SHM_LOAD_ACQ(seqp);
        for (uint32_t spin = 1; s1 & 1; spin++) {
            FH_SHM_PAUSE();
            if ((spin & 1023) == 0) {
                uint64_t now = fh_shm_mono_ns();
                if (!busy_since)
                    busy_since = now;
                else if (now - busy_since > FH_SHM_BUSY_NS) {
                    if (!tries)
                        memset(&out->book, 0, sizeof out->book);
                    out->nbids = out->nasks = out->nlevels[0] = out->nlevels[1] = 0;
                    return -2;
                }
            }
            s1 = FH_SHM_LOAD_ACQ(seqp);
        }
        memcpy(&out->book, b, sizeof *b);
        out->nbids = out->nasks = out->nlevels[0] = out->nlevels[1] = 0;
        int ok = out->book.status != FH_BOOK_EMPTY && !(out->book.flags & FH_BOOK_F_UNPUBLISHED);
        if (ok) {
            out->nbids = fh_shm_side_levels(r, &out->book, 0, depth, out->bids, &out->nlevels[0]);
            out->nasks = fh_shm_side_levels(r, &out->book, 1, depth, out->asks, &out->nlevels[1]);
        }
        FH_SHM_FENCE_ACQ();
        uint32_t s2 = FH_SHM_LOAD_RLX(seqp);
        if (s1 == s2)
            return ok ? tries : -1;
    }
}

/* Events: a reader keeps the sequence of the next event it wants (start at fh_shm_head(r) + 1 for new
 * events only). */
static inline uint64_t fh_shm_head(const fh_shm_reader_t *r)
{
    return FH_SHM_LOAD_ACQ(&r->hdr->head);
}

#define FH_SHM_EV_NONE 0    /* not published yet */
#define FH_SHM_EV_OK 1      /* *out holds event `seq` */
#define FH_SHM_EV_OVERRUN 2 /* event `seq` was overwritten: events were lost; resynchronise from the books
                               and go on from *next (the oldest event still in the ring; past a slot that
                               holds what no writer leaves there, a corrupted segment's, the next one) */

/* Read event *next into *out. On FH_SHM_EV_OK, *next advances by one. Lock-free: a slot caught between
 * two laps of the writer is simply read again. */
static inline int fh_shm_event_next(const fh_shm_reader_t *r, uint64_t *next, fh_shm_event_t *out)
{
    uint64_t want = *next;
    uint64_t cap = r->hdr->event_capacity;
    const fh_shm_event_t *slot = &r->events[want & (cap - 1)];
    const uint64_t *seqp = &slot->seq;
    for (uint32_t tries = 0;; tries++) {
        uint64_t s1 = FH_SHM_LOAD_ACQ(seqp);
        if (s1 == want) {
            memcpy(out, slot, sizeof *out);
            FH_SHM_FENCE_ACQ();
            if (FH_SHM_LOAD_RLX(seqp) == want) {
                *next = want + 1;
                return FH_SHM_EV_OK;
            }
        }
        uint64_t head = fh_shm_head(r);
        if (want > head)
            return FH_SHM_EV_NONE; /* not published yet */
        if (want + cap <= head + 1) {
            /* the slot holds (or is being filled with) a later lap: event `want` is gone. Go on from the
             * oldest event that cannot be overwritten before it is read (one slot of margin). */
            *next = head + 2 > cap ? head + 2 - cap : 1;
            return FH_SHM_EV_OVERRUN;
        }
        /* published between our two loads, or being rewritten for this lap: read it again. A writer that
         * keeps the protocol settles a slot within a try or two (its seq is set before the head moves
         * past it); one that stays below `want` while the head is past it was not written by one (a
         * corrupted segment): count it lost rather than wait for ever. */
        if (tries >= 1024) {
            *next = want + 1;
            return FH_SHM_EV_OVERRUN;
        }
        FH_SHM_PAUSE();
    }
}

/* The sleeping half of a wait (fh_shm_wait; the gateway's fh_gw_wait after its own spin): until the head
 * passes `seen`, the writer stops (writer_state 2) or CLOCK_MONOTONIC reaches end_ns (UINT64_MAX: no limit).
 * Sleeps on the futex of the wake page, which the writer wakes only because this function raised `waiters` (or,
 * without a wake page, 50 us at a time), re-checking at least every 100 ms. Returns the head: a caller tells
 * a wake (head > seen) from a stop or a timeout by it. */
static inline uint64_t fh_shm_sleep_until(const fh_shm_reader_t *r, uint64_t seen, uint64_t end_ns)
{
    for (;;) {
        uint64_t head;
        if (FH_SHM_LOAD_ACQ(&r->hdr->writer_state) == 2)
            return fh_shm_head(r);
        uint64_t now_ns = fh_shm_mono_ns();
        if (now_ns >= end_ns)
            return fh_shm_head(r);
        uint64_t left = end_ns - now_ns;
        if (left > 100000000u) /* re-check at least every 100 ms (a writer that died cannot wake us) */
            left = 100000000u;
        if (!r->wake) {
            if ((head = fh_shm_head(r)) > seen)
                return head;
            struct timespec nap = { 0, left < 50000 ? (long)left : 50000 };
            nanosleep(&nap, NULL);
            continue;
        }
        /* Raise waiters (a full barrier), then re-check the head: the writer either published before our
         * increment (we see its head) or will see waiters != 0 after its own barrier and wake us. */
        __atomic_fetch_add(&r->wake->waiters, 1u, __ATOMIC_SEQ_CST);
        uint32_t f = __atomic_load_n(&r->wake->futex, __ATOMIC_SEQ_CST);
        if ((head = fh_shm_head(r)) > seen) {
            __atomic_fetch_sub(&r->wake->waiters, 1u, __ATOMIC_SEQ_CST);
            return head;
        }
        struct timespec ts = { (time_t)(left / 1000000000u), (long)(left % 1000000000u) };
        syscall(SYS_futex, &r->wake->futex, FUTEX_WAIT, f, &ts, NULL, 0);
        __atomic_fetch_sub(&r->wake->waiters, 1u, __ATOMIC_SEQ_CST);
        if ((head = fh_shm_head(r)) > seen)
            return head;
    }
}

/* Block until the head passes `seen`, the writer stops (writer_state 2), or timeout_ns elapses (0: no
 * limit): spins briefly, then fh_shm_sleep_until. A writer that dies cannot say so: a caller that waits
 * without a limit should check fh_shm_writer_alive when this returns with nothing new. Returns the head. */
static inline uint64_t fh_shm_wait(const fh_shm_reader_t *r, uint64_t seen, uint64_t timeout_ns)
{
    for (int i = 0; i < 2000; i++) {
        uint64_t head = fh_shm_head(r);
        if (head > seen)
            return head;
        FH_SHM_PAUSE();
    }
    uint64_t now_ns = fh_shm_mono_ns();
    return fh_shm_sleep_until(r, seen, timeout_ns && timeout_ns < UINT64_MAX - now_ns ? now_ns + timeout_ns : UINT64_MAX);
}


/* A consistent copy of the whole stats region, retrying while the writer publishes. 0, or -2 if it stayed
 * mid-change for FH_SHM_BUSY_NS (a writer stopped inside a publish). */
static inline int fh_shm_stats_copy(const fh_shm_reader_t *r, fh_shm_stats_t *out)
{
    const fh_shm_stats_t *st = r->stats;
    uint64_t t0 = 0;
    for (uint32_t i = 1;; i++) {
        uint32_t s1 = FH_SHM_LOAD_ACQ(&st->seq);
        if (!(s1 & 1)) {
            memcpy((void *)out, (const void *)st, sizeof *out);
            FH_SHM_FENCE_ACQ();
            if (FH_SHM_LOAD_RLX(&st->seq) == s1) {
                __atomic_store_n(&out->seq, s1, __ATOMIC_RELAXED);
                return 0;
            }
        }
        FH_SHM_PAUSE();
        if ((i & 1023) == 0) {
            uint64_t now = fh_shm_mono_ns();
            if (!t0)
                t0 = now;
            else if (now - t0 > FH_SHM_BUSY_NS)
                return -2;
        }
    }
}

#endif
