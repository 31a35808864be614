/* fh/book.h: the order-by-order book engine for NASDAQ TotalView-ITCH 5.0.
 *
 * One engine holds every instrument of a feed: an order table keyed by order reference number, and per
 * instrument the aggregated price levels of each side. Semantics: docs/book-semantics.md.
 *
 * Memory: the order table is sized from fh_engine_cfg_t and laid out in one private block that the caller
 * provides (fh_engine_footprint / fh_engine_new, after Firedancer's align/footprint/new) or that
 * fh_engine_create maps (hugepages when it can). Books and price levels live in a segment (fh/seg.h):
 * a shared one that readers join (fh_engine_create_on), or a private one (fh_engine_create). Nothing is
 * allocated after that. The engine is single-writer and not thread-safe: one thread applies messages;
 * other threads and processes read the segment (fh/shm.h).
 *
 * Hot path: fh_engine_apply (one message) and fh_engine_apply_blocks (a run of 2-byte-length blocks, as
 * in a MoldUDP64 datagram or a daily file; it prefetches ahead). They never fail: bad input is counted in
 * the engine's counters by cause and skipped. */
#ifndef FH_BOOK_H
#define FH_BOOK_H

#include <stdbool.h>

#include "fh/common.h"
#include "fh/consumer.h"

#define FH_SIDE_BID 0
#define FH_SIDE_ASK 1
#define FH_MAX_LOCATE 65535

/* Anomaly and event counters: index into fh_engine_counters(). Names: fh_counter_name(). */
#define FH_COUNTERS(X) \
    X(messages) X(unknown_type) X(short_message) X(long_message) X(truncated) X(mold_malformed) \
    X(unknown_locate) X(instrument_capacity) X(bad_side) X(zero_shares) X(duplicate_ref) X(unknown_ref) \
    X(overexecution) X(overcancel) X(locate_mismatch) X(order_capacity) X(level_capacity)
typedef enum fh_counter {
#define FH_X(n) FH_C_##n,
    FH_COUNTERS(FH_X)
#undef FH_X
    FH_C_COUNT
} fh_counter_t;

typedef struct fh_engine_cfg {
    uint32_t max_instruments; /* books; 1..65535 */
    uint32_t max_orders;      /* live orders at once; the table has at least twice as many slots */
    uint32_t max_levels;      /* price levels over all books and sides */
} fh_engine_cfg_t;

typedef struct fh_level {
    uint32_t price;  /* 1/10000 */
    uint32_t orders;
    uint64_t shares;
} fh_level_t;

/* A book's summary, for readers (fh_engine_book_info). */
typedef struct fh_book_info {
    uint16_t locate;
    char symbol[9];      /* trailing spaces stripped, NUL-padded */
    uint8_t symbol_len;  /* bytes of symbol (a symbol may hold a NUL) */
    char trading_state;  /* 'T', 'H', 'P', 'Q' */
    uint8_t status;      /* FH_BOOK_LIVE or FH_BOOK_STALE */
    uint32_t levels[2];  /* number of levels per side */
    uint32_t last_price; /* last trade; 0 if none */
    uint32_t last_shares;
    uint64_t updates;    /* messages that changed this book (counted while publishing) */
} fh_book_info_t;

typedef struct fh_engine fh_engine_t;
typedef struct fh_seg fh_seg_t;

/* 0 with an error message when cfg is invalid. */
size_t fh_engine_footprint(const fh_engine_cfg_t *cfg);
size_t fh_engine_align(void);
/* Format an engine in mem (fh_engine_align-aligned, fh_engine_footprint bytes) keeping its books in seg
 * (whose max_levels overrides cfg's). NULL on bad cfg. */
fh_engine_t *fh_engine_new(void *mem, const fh_engine_cfg_t *cfg, fh_seg_t *seg);
/* Map, fault in and format an engine (2 MB hugepages when the host has free ones) with a private segment
 * of cfg->max_levels levels, or on a shared segment that outlives it. NULL on failure. */
fh_engine_t *fh_engine_create(const fh_engine_cfg_t *cfg);
fh_engine_t *fh_engine_create_on(const fh_engine_cfg_t *cfg, fh_seg_t *seg);
void fh_engine_destroy(fh_engine_t *e);
/* Forget every order and book; keeps the configuration and memory. Not while readers read. */
void fh_engine_reset(fh_engine_t *e);
/* Forget every order and book but keep the counters (a snapshot is about to rebuild them). Each book is
 * emptied under its seqlock, so readers see it whole before and empty after. */
void fh_engine_clear_books(fh_engine_t *e);
/* The status books created from now on get: FH_BOOK_LIVE (the default), or FH_BOOK_STALE after an
 * unrecoverable loss (a book first seen after it may have lost messages in it too). 0, or -1. */
int fh_engine_set_new_book_status(fh_engine_t *e, int status);

/* Publishing (on for a shared segment, off for a private one): seqlocks and events. Turning it off on a
 * shared segment is for measuring its cost only. */
void fh_engine_set_publish(fh_engine_t *e, bool on);
/* The TSC of the packet being applied, stamped on the events it causes (0 offline). */
void fh_engine_set_rx_tsc(fh_engine_t *e, uint64_t tsc);
/* Around a run of fh_engine_apply calls (a datagram): stamp events with the packet's TSC, then wake readers
 * blocked on the event ring if any event was published. fh_engine_apply_blocks does this itself. */
void fh_engine_batch_begin(fh_engine_t *e, uint64_t rx_tsc);
/* The same with the publish stamp given (a TSC the caller has just read): saves a TSC read per batch. */
void fh_engine_batch_begin_at(fh_engine_t *e, uint64_t rx_tsc, uint64_t now_tsc);
void fh_engine_batch_end(fh_engine_t *e);
/* Where the engine keeps those stamps, for a caller that sets them without a call (the data plane, once a
 * burst): [0] the rx TSC, [1] the publish TSC. Valid for the engine's life. */
uint64_t *fh_engine_stamps(fh_engine_t *e);
/* Copy the counters to the segment's stats region and beat the heartbeat (done every 65,536 messages by
 * fh_engine_apply_blocks; the data plane calls it when idle). */
void fh_engine_publish_stats(fh_engine_t *e);
/* Idle warming, for a poll loop with nothing to do (the data plane's empty polls, --warm-us): pull into the cache
 * the lines a message's apply reads first (the book, its cached bests and their two levels, its two ladder headers)
 * of the next `books` books, in creation order, round and round. A datagram that arrives alone after a quiet spell
 * then finds them in the cache rather than in memory, where other tasks on the host (and the engine's own order
 * table) evict them to. Prefetches only, and loads of lines a call WARM_AHEAD books earlier prefetched: changes
 * nothing, takes no lock, bounded (~25 instructions a book). Returns the engine's books, so that the caller can
 * pace a whole round (the data plane: one book every warm_us / books). bench/latency.md, "Idle warming". */
uint32_t fh_engine_warm(fh_engine_t *e, uint32_t books);
/* Mark a book FH_BOOK_STALE or FH_BOOK_LIVE, with a stale / recovered event. m: the message that caused it
 * (for its timestamp), or NULL. 0, or -1 if the locate has no book or status is not one of the two. */
int fh_engine_set_status(fh_engine_t *e, uint16_t locate, int status, const uint8_t *m);
/* Every book with a different status to `status` (FH_BOOK_LIVE or FH_BOOK_STALE), each with its stale /
 * recovered event, in one pass over the books; and the status of books created from now on. Returns how
 * many changed, or -1 for another status. */
int fh_engine_set_all_status(fh_engine_t *e, int status);

/* The engine as a sequenced feed's consumer (fh/consumer.h): apply_blocks / apply_datagram (fh_engine_apply_datagram:
 * it checks the framing, `framing` = fh_itch_len) / apply apply the messages (the session and sequence numbers are not
 * needed here), lost marks every book stale (and the books created
 * after), snapshot_begin clears the books (stale until the end), snapshot_end marks every book live. */
void fh_engine_consumer(fh_engine_t *e, fh_feed_consumer_t *out);
/* The same, staging whole datagrams: apply_datagram checks a datagram's framing and walks it (prefetching its
 * order slots and book lines) onto the engine's staged run, and returns; the run is applied in order behind the
 * walk, all but its last 32 messages once 64 wait, and whole by fh_engine_batch_end and every other call that
 * changes or publishes the books (the consumer's other calls among them), before what that call does. The data
 * plane's consumer: the datagrams of a burst are applied with the prefetching lead of one long run, however few
 * messages each carries. The caller keeps a staged datagram's bytes until the next fh_engine_batch_end; the readers
 * below (counters, book_info) see a staged message only once it is applied. */
void fh_engine_consumer_staged(fh_engine_t *e, fh_feed_consumer_t *out);

/* Publish only these instruments (n symbols, 1-8 characters each; n = 0: all). The others' books are built
 * as ever (orders, levels) but flagged FH_BOOK_F_UNPUBLISHED: no events, and readers treat them as absent.
 * 0, or -1 with a message. */
int fh_engine_set_publish_filter(fh_engine_t *e, const char *const *symbols, uint32_t n);

/* Apply one message of len bytes (checked against its type's length before any field is read). */
void fh_engine_apply(fh_engine_t *e, const uint8_t *msg, size_t len);
/* Apply the 2-byte-length blocks in [p, p+len). Returns the bytes consumed: len, or less when the last
 * block is truncated (counted in `truncated`). */
size_t fh_engine_apply_blocks(fh_engine_t *e, const uint8_t *p, size_t len);
/* A MoldUDP64 datagram's count blocks [p, p+len), applied only when their framing is right (fh_blocks_framed
 * with fh_itch_len: exactly count non-empty blocks filling it, each of a known type of its type's length),
 * checked whole before any is applied, in the same walk that prefetches their order slots. Returns 0, or -1:
 * misframed, nothing applied (the caller counts it). The engine's consumer's apply_datagram (fh/consumer.h). */
int fh_engine_apply_datagram(fh_engine_t *e, const uint8_t *p, size_t len, uint32_t count);
/* One MoldUDP64 datagram without sequencing is the MoldUDP64 layer's: fh_mold_apply_unsequenced (fh/mold.h)
 * to the engine's consumer, counting malformed datagrams in fh_engine_counter_slot(e, FH_C_mold_malformed). */

/* Counters: copy the FH_C_COUNT counters to out (`messages` = the per-type counts + unknown_type +
 * short_message, derived here rather than counted on the hot path). Per message type: indexed by the
 * type byte, 256 of them, counting the messages that passed the length check. */
void fh_engine_counters(const fh_engine_t *e, uint64_t out[FH_C_COUNT]);
const uint64_t *fh_engine_type_counts(const fh_engine_t *e);
/* Counter c for a layer in front of the engine to count into, so that it is published with the engine's
 * counters (in the segment's stats, under its name): mold_malformed, which fh_mold_apply_unsequenced counts.
 * NULL for an unknown index or `messages` (derived, not counted). */
uint64_t *fh_engine_counter_slot(fh_engine_t *e, int c);
const char *fh_counter_name(int c);

/* Readers. Locates with a book, ascending: writes up to cap of them to out and returns how many exist. */
uint32_t fh_engine_locates(const fh_engine_t *e, uint16_t *out, uint32_t cap);
/* 0, or -1 if the locate has no book. */
int fh_engine_book_info(const fh_engine_t *e, uint16_t locate, fh_book_info_t *out);
/* Up to cap levels of one side, best first. Returns the number written (0 for no book). */
uint32_t fh_engine_levels(const fh_engine_t *e, uint16_t locate, int side, fh_level_t *out, uint32_t cap);
/* Live orders in the table. */
uint64_t fh_engine_live_orders(const fh_engine_t *e);
/* Of them, those in the spill table: lapped in their home slot by a newer reference, or with a reference above
 * 2^42 - 1 (bench/engine.md section 2). */
uint64_t fh_engine_spilled(const fh_engine_t *e);
/* Highest number of levels in use at once (of max_levels). */
uint64_t fh_engine_levels_used(const fh_engine_t *e);


/* ---- snapshots (docs/journal.md): the engine's whole state in a checksummed file --------------------------
 *
 * Every live order (reference, locate, side, price, shares), every book (locate, symbol, trading state,
 * status, flags, last trade, ITCH timestamp, updates), the counters and the per-type counts, and the feed
 * position the state is complete to (session, next sequence). A header with its own CRC-32C, then a body
 * with another. fh_engine_snapshot_save writes PATH.tmp, fsyncs it, renames it to PATH and fsyncs the
 * directory: a reader sees the old file or the new one, never half of one. fh_engine_snapshot_load checks
 * the whole file (magic, version, sizes, both CRCs, every order's book) before it touches the engine, so
 * a refused file leaves the engine as it was. Not on the hot path: the shadow engine of fh record saves,
 * a restart loads. */
#define FH_SNAPSHOT_MAGIC 0x3130504e53484646ull /* "FFHSNP01" */
#define FH_SNAPSHOT_VERSION 1u

typedef struct fh_snapshot_meta {
    char session[10];   /* the MoldUDP64 session the state belongs to */
    uint64_t next_seq;  /* the state is complete to next_seq - 1 */
    uint32_t day;       /* YYYYMMDD */
    uint32_t flags;     /* FH_SNAPSHOT_F_* */
    uint64_t created_ns;
    uint64_t orders;    /* filled in by save / load */
    uint32_t books;
} fh_snapshot_meta_t;
#define FH_SNAPSHOT_F_STALE 1 /* built across a loss: books created from now on start stale */

/* 0, or -1 with a message (the file is left as it was: a failed save removes its temporary file). */
int fh_engine_snapshot_save(fh_engine_t *e, const fh_snapshot_meta_t *meta, const char *path);
/* Check the snapshot at path and, if sound, replace the engine's state with it (fh_engine_reset first);
 * *meta gets its header. 0, or -1 with a one-line message naming the cause (not a snapshot, another
 * version, truncated, a CRC that does not match, an order of no book, more orders or levels than the
 * engine holds). With e NULL, only checks the file. */
int fh_engine_snapshot_load(fh_engine_t *e, const char *path, fh_snapshot_meta_t *meta);
/* The same for a restart (fh-dataplane --restore): every book loaded stale, each with a stale event when the
 * engine publishes, and books created from now on start stale, until the caller marks them live (the feed
 * has caught up). Published books are never seen live while they load, by either function. */
int fh_engine_snapshot_load_stale(fh_engine_t *e, const char *path, fh_snapshot_meta_t *meta);

#endif
