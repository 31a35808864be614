/* The book engine: docs/book-semantics.md in C, for speed.
 *
 * Orders: a direct-mapped table of 2^k 16-byte slots (at least twice max_orders), each reference's home slot a
 * permutation of its low k bits (order_home), tagged with reference >> TAG_SHIFT. NASDAQ hands out references from
 * four counters, one for each residue mod 4, each in increasing order and 4 or a few times 4 apart; order_home gives
 * each residue a quarter of the table, so a counter's consecutive adds take slots 1-14 apart (at a real 09:30,
 * about 1.5 orders a cache line rather than 1), and a uniform day's 1, 2, 3, ... four neighbouring runs. An add,
 * a lookup and a delete each touch one slot, with no probing and no clean-up on delete. Only an order that
 * outlives about 2^k later references meets a newer one on its slot; the newer one takes the slot and moves the
 * old one to a small spill table (open addressing with multiplicative hashing), so the day's new orders always
 * find their home slot. The spill table is consulted only for references not above the highest one it holds
 * (spill_max): on a real day (references to ~184 M, many orders resting all day) it fills with old orders early,
 * and the adds and lookups of current orders, whose references are all above spill_max, never touch it.
 *
 * Books: an array indexed by stock locate (65,536 x 64 bytes; only the books in use are ever touched), so
 * an order stores its locate and no lookup table stands between a message and its book.
 *
 * Publishing: books and levels live in the shared-memory segment (fh/shm.h) itself. A change to a book
 * is made between two bumps of its seqlock, and a change of a best price or size, a trade and a trading
 * state change each append an event to the ring; readers copy whatever depth they want. So publishing
 * adds no copy to the hot path. A private segment (no readers) turns the seqlock and events off.
 *
 * Levels: per side, a sorted array ending with the best price, in a preallocated arena carved into
 * power-of-two blocks (free lists per size). Asks are stored under the key ~price so both sides sort
 * ascending and share one code path. Most activity is at or near the inside, so searches start at the
 * end; deep prices fall back to a binary search. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "fh/book.h"
#include "fh/itch.h"
#include "fh/seg.h"

/* ITCH's lengths of A and D (fh_itch_len), as constants for apply_one's first tests; fh_engine_new checks them. */
#define ITCH_LEN_A 36
#define ITCH_LEN_D 19

typedef struct order {
    uint32_t tag;    /* reference >> TAG_SHIFT (in the spill table: unused, the full reference is beside it) */
    uint32_t lv;     /* its level: the price's tick index on the book's ladder (kx), or with O_KEY its level key
                      * (price for bids, ~price for asks) when the price was off the book's tick */
    uint32_t shares; /* remaining; 0 marks an empty slot */
    uint16_t book;   /* the order's stock locate */
    uint8_t side;    /* 0 bid, 1 ask; | O_KEY: lv is a key */
    uint8_t spilled; /* lives in the spill table */
} order_t;
/* An order on the tick keeps its tick index, so that a reduction finds its window slot without dividing by the
 * tick again. The index cannot go stale: a book's tick is chosen once, at its first price other than 0 (before
 * it only price 0 is on the tick, whose index is 0 under any tick), and an index does not depend on where the
 * window is. */
#define O_KEY 2u
_Static_assert(sizeof(order_t) == 16, "four orders per cache line");

/* A home slot's tag holds the reference's bits from TAG_SHIFT up: a constant (the smallest table has 2^10
 * slots, so the bits between TAG_SHIFT and k repeat the slot's), so that a lookup shifts by a constant. A
 * reference above REF_TAGGED_MAX (2^42 - 1; NASDAQ's reach ~2^28) does not fit a tag: it lives in the
 * spill table. */
#define TAG_SHIFT 10
#define REF_TAGGED_MAX ((1ull << (32 + TAG_SHIFT)) - 1)

/* The home slot of reference ref in a table of mask + 1 = 2^k slots (sh = k - 2): ref's bits 2 .. k - 1 below, and
 * above them its bits 0 and 1 xored with its bits k and k + 1. NASDAQ hands out references from four counters, one
 * for each residue mod 4, each stepping by 4 or a few times 4 (bench/engine.md section 26): so each counter has a
 * quarter of the table, in which its consecutive orders are neighbours (1-14 slots apart, mostly 1-3) rather than a
 * cache line apart, as with ref mod 2^k. Two references share a slot only if their bits 2 .. k - 1 agree, so only if
 * they are at least 2^k - 3 apart (two of one residue: a multiple of 2^(k + 2)); slot and tag together give the
 * reference back (home_ref). */
static inline uint64_t order_home(uint64_t ref, uint64_t mask, uint32_t sh)
{
    return ((ref >> 2) ^ (ref << sh)) & mask;
}

/* The reference whose tag is tag in home slot i (sh = k - 2): the inverse of order_home. The tag holds the bits from
 * TAG_SHIFT up, which include bits k and k + 1 (k >= TAG_SHIFT); i's low TAG_SHIFT - 2 bits are the bits 2 .. 9. */
static inline uint64_t home_ref(uint64_t i, uint32_t tag, uint32_t sh)
{
    uint64_t hi = (uint64_t)tag << TAG_SHIFT;
    return hi | (i & ((1u << (TAG_SHIFT - 2)) - 1)) << 2 | (((i >> sh) ^ (hi >> (sh + 2))) & 3);
}

typedef struct spill {
    uint64_t ref;
    order_t o;
} spill_t;

typedef fh_shm_side_t side_t;
typedef fh_shm_book_t book_t;
_Static_assert(sizeof(book_t) == 64, "one book per cache line");
_Static_assert(offsetof(book_t, seq) == 0, "fh_engine_reset clears what follows seq");

/* The price ladder (fh_shm_lside_t, in the segment: layout 5): per side a window of LAD_W slots around the
 * touch, a ring indexed by tick index (price / tick; for asks its complement, so that on both sides the best
 * is the highest index), an occupancy bitmap, and the side's other levels (off the tick, or outside the
 * window) in the sorted deep arrays (side_t). lside_t is fh_shm_lside_t with the writer's slot address typed. */
#define LAD_BITS FH_SHM_LADDER_BITS
#define LAD_W (1u << LAD_BITS)
#define LAD_MASK (LAD_W - 1)
#define LAD_WORDS (LAD_W / 64)
typedef struct lside {
    uint32_t lo;   /* tick index of the window's lowest slot; the window is [lo, lo + LAD_W) */
    uint32_t best; /* the highest tick index in the window that has a level, when nl > 0 */
    uint32_t nl;   /* levels in the window */
    uint32_t tick; /* the book's tick in price units (0: not chosen yet) */
    uint32_t mul;  /* price / tick == (price * mul) >> sh */
    uint32_t sh;
    fh_shm_agg_t *slot; /* LAD_W slots: the level of tick index kx is slot[kx & LAD_MASK] (fh_shm_lside_t.wslot) */
    uint64_t occ[LAD_WORDS];
} lside_t;
_Static_assert(sizeof(lside_t) == sizeof(fh_shm_lside_t), "one side header per cache line");
_Static_assert(offsetof(lside_t, slot) == offsetof(fh_shm_lside_t, wslot) && sizeof(fh_shm_agg_t *) == 8,
               "the writer's slot address is fh_shm_lside_t.wslot");
_Static_assert(offsetof(lside_t, occ) == offsetof(fh_shm_lside_t, occ), "lside_t is fh_shm_lside_t");
#define BOOK_LAD(b) ((b)->ladder) /* the book's ladders: lside[2 * id], [2 * id + 1] */

/* price / tick on side header L (its mul and sh): the price's tick index before the ask side's complement. */
static inline uint32_t lad_q(const lside_t *L, uint32_t price)
{
    return (uint32_t)(((uint64_t)price * L->mul) >> L->sh);
}

/* Per book (by locate), each side's best level as the writer knows it, for emit_bbo: its aggregate (in the
 * window's slots or at the deep arrays' top; the engine's zero_agg when the side is empty) and its key (an empty
 * side's: 0 for bids, ~0 for asks, so that emit_bbo's price, key or ~key, is 0 with no test). Kept
 * while publishing (fh_engine_set_publish computes it when publishing is turned on): the hot path updates
 * it where a level becomes the best, the rare paths (deep levels, re-centring, the best emptied) recompute
 * it (bbo_set). */
typedef struct bbo {
    const fh_shm_agg_t *g[2];
    uint32_t key[2];
    uint32_t pad[2];
} bbo_t;
_Static_assert(sizeof(bbo_t) == 32, "two a cache line");
_Static_assert(sizeof(book_t) == 2 * sizeof(bbo_t), "a book's bbo_t is at its offset in e->books / 2");

/* The walker: records up to WALK_CHUNK whole blocks from *qp (each message's start and book, then an
 * entry with m NULL that ends the chunk) and
 * prefetches the order slot each will touch (A F C D E U X, 98 % of a day, carry an order reference at
 * offset 11; a U's new reference too); *qp moves past them. It stops at the end and at a truncated block,
 * which it leaves at *qp: the caller applies only what it recorded, so the block loop itself checks no
 * bounds. The type is not tested: the few other messages of 19 bytes or more prefetch a slot for nothing,
 * which costs less than the test. Adds are prefetched because a real day's references are interleaved and
 * sparse (fh synth itch --shape real), so consecutive adds do not fill consecutive slots that the
 * hardware prefetcher would follow. 32 (bench/engine.md section 9): 16 spent 1.3 instructions a message more
 * on the chunks' set-up; 64 saves 0.6 more but prefetches up to 128 messages ahead (not kept: what that
 * distance does to L1 is not measured). */
#define WALK_CHUNK 32
_Static_assert(WALK_CHUNK % 4 == 0, "walk_chunk fills a chunk four blocks a turn");

/* walk_len's value for an unknown type (walk_datagram): no ITCH message is this long (fh_engine_new checks). */
#define WALK_ANY_LEN 255

typedef struct walked {
    const uint8_t *m; /* right after its block's 2-byte length, which apply_one reads (len_type; its length is not
                       * kept here: A and D, most of a day, need no more than len_type) */
    uint32_t bk; /* its book's offset in e->books (stock locate x 64) when its length is 19 or more, else 0 (book 0's
                  * ladder index: any is harmless): kept scaled, so that the ladder pass reads the book with no shift */
    uint32_t slot; /* its reference's home slot in e->orders (order_home of the 8 bytes at offset 11) when its length is
                    * 19 or more, else 0: the level pass reads the order there (a hint: any slot is harmless), and
                    * apply_one finds or places the message's order there (exact: the same bytes). A uint32_t:
                    * max_orders <= 2^30 makes at most 2^31 slots */
} walked_t;

/* The staged consumer's run (fh_engine_consumer_staged): up to STAGE_CAP walked messages of whole datagrams, applied
 * as later ones are staged (all but the last STAGE_LEAD, once STAGE_LEAD + STAGE_STEP are waiting), and all of them
 * at the next fh_engine_batch_end or other call that reads or changes the books (flush_staged). */
#define STAGE_CAP 1024
#define STAGE_LEAD 32 /* messages walked (order slots and book lines prefetched) ahead of the one applied */
#define STAGE_STEP 32 /* applied at least this many at a time */
#define STAGE_LAD 12  /* the ladder headers prefetched 12 messages ahead of the one applied, the level line 6 */
#define STAGE_LVL 6

#define NO_BLOCK 0xFFu
#define NCLASS 15 /* up to 65536 levels per side */
#define CLASS_CAP(c) (4u << (c))

struct fh_engine {
    /* read on every message */
    order_t *orders;
    uint64_t mask;  /* slots - 1 (2^k slots, k >= TAG_SHIFT) */
    uint32_t home_sh; /* k - 2: order_home */
    uint32_t spill_live;
    spill_t *spill;
    uint64_t spill_mask;
    uint64_t spill_max; /* every reference in the spill table is <= this; 0 when it is empty */
    book_t *books;
    uint32_t *lkey;
    fh_shm_agg_t *lagg;
    int64_t room;   /* orders that may still be added: cfg.max_orders less the live ones (one test an add, no load of
                     * the limit; signed, so that add_order's decrement is its test: section 17) */
    bool publish;   /* seqlocks and events on: the segment has readers */
    /* events */
    fh_shm_event_t *events;
    uint64_t ev_mask;
    uint64_t woken; /* head at the last fh_seg_wake */
    uint64_t *hdr_head; /* &seg->hdr->head, the last event published: the engine is its only writer and keeps no
                         * copy of its own (one store an event, not two) */
    uint64_t rx_tsc, now_tsc;
    fh_seg_t *seg;
    bool owns_seg;
    uint8_t new_status; /* status of a book created from now on: FH_BOOK_LIVE, or STALE after a loss */
    uint32_t nfilter;   /* instruments to publish (0: all), their 8-byte symbols as sorted keys */
    uint64_t *filter;
    /* levels */
    uint32_t nbooks;
    uint32_t arena_top;
    uint64_t levels_used;
    uint64_t levels_peak;
    uint32_t free_head[NCLASS]; /* offset + 1 of the first free block of each class; 0: none */
    fh_engine_cfg_t cfg;
    size_t map_len; /* fh_engine_create's mapping of this struct and the order tables */
    uint64_t counters[FH_C_COUNT] FH_ALIGNED;
    uint64_t type_counts[256];
    uint8_t msg_len[256]; /* fh_itch_len, copied: read beside the engine's other fields, with no PIC load */
    uint8_t walk_len[256]; /* the same with WALK_ANY_LEN for an unknown type (0 in msg_len): walk_datagram's one test */
    uint8_t side_of[256]; /* an add's side byte as a side: 0 for 'B', 1 for 'S', 2 for any other (bad_side): one
                           * load gives both the test and the side (bench/engine.md section 16) */
    uint32_t class_cap[256]; /* levels a block of size class c holds (CLASS_CAP); 0 for NO_BLOCK */
    struct lside *lside;      /* the segment's 2 x (lad_books + 1) sides: a pair per book in creation order, then
                               * the pair of every book past lad_books, whose window nothing is ever in */
    uint32_t lad_books;       /* the segment's ladder_books */
    bbo_t *bbo;               /* [FH_MAX_LOCATE + 1] */
    fh_shm_agg_t zero_agg;    /* an empty side's best: 0 shares, 0 orders */
    uint8_t one_block[256][4]; /* a 1-byte block of type t, as the walker records it: { 0, 1, t, 0 } (len_type) */
    uint32_t warm_at;          /* fh_engine_warm's next book, in made[] */
    uint16_t made[FH_MAX_LOCATE + 1]; /* the books' locates in creation order: [0, nbooks) (fh_engine_warm) */
    uint32_t nstaged;          /* the staged run's end in staged[] (0: nothing staged) */
    uint32_t shead;            /* the next staged message to apply */
    walked_t staged[STAGE_CAP] FH_ALIGNED;
};

static void staged_flush(fh_engine_t *e);
/* The staged run applied, if any: first in every call that reads or changes the books, so that what the staged
 * consumer took is applied before anything that follows it. */
static inline void flush_staged(fh_engine_t *e)
{
    if (FH_UNLIKELY(e->nstaged))
        staged_flush(e);
}

static const char *const counter_names[FH_C_COUNT] = {
#define FH_X(n) #n,
    FH_COUNTERS(FH_X)
#undef FH_X
};

const char *fh_counter_name(int c) { return c >= 0 && c < FH_C_COUNT ? counter_names[c] : NULL; }

/* ---- layout ---------------------------------------------------------------------------------------- */

static uint64_t order_slots(uint32_t max_orders)
{
    uint64_t n = 1024;
    while (n < 2ull * max_orders)
        n <<= 1;
    return n;
}

/* The spill table holds up to an eighth of max_orders at a load of at most one half. */
static uint64_t spill_slots(uint32_t max_orders) { return order_slots(max_orders / 8 + 1); }

static size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

typedef struct layout {
    size_t orders, spill, bbo, total;
} layout_t;

static int layout(const fh_engine_cfg_t *cfg, layout_t *l)
{
    if (!cfg || cfg->max_instruments < 1 || cfg->max_instruments > FH_MAX_LOCATE)
        return FH_ERR("max_instruments must be 1..%d", FH_MAX_LOCATE);
    if (cfg->max_orders < 1 || cfg->max_orders > (1u << 30))
        return FH_ERR("max_orders must be 1..%u", 1u << 30);
    if (cfg->max_levels < 8 || cfg->max_levels > (1u << 30))
        return FH_ERR("max_levels must be 8..%u", 1u << 30);
    size_t off = align_up(sizeof(fh_engine_t), FH_CACHE_LINE);
    l->orders = off;
    off = align_up(off + order_slots(cfg->max_orders) * sizeof(order_t), FH_CACHE_LINE);
    l->spill = off;
    off = align_up(off + spill_slots(cfg->max_orders) * sizeof(spill_t), FH_CACHE_LINE);
    l->bbo = off;
    off = align_up(off + (FH_MAX_LOCATE + 1) * sizeof(bbo_t), FH_CACHE_LINE);
    l->total = off;
    return 0;
}

size_t fh_engine_align(void) { return FH_CACHE_LINE; }

size_t fh_engine_footprint(const fh_engine_cfg_t *cfg)
{
    layout_t l;
    return layout(cfg, &l) ? 0 : l.total;
}

/* fh_engine_clear_books; tables: the order and spill tables too (false only for memory known to be zeros: an
 * engine engine_map formats, whose tables are most of its hundreds of MiB) */
static void clear_books(fh_engine_t *e, bool tables)
{
    flush_staged(e);
    if (tables) {
        memset(e->orders, 0, (e->mask + 1) * sizeof(order_t));
        memset(e->spill, 0, (e->spill_mask + 1) * sizeof(spill_t));
    }
    e->spill_live = 0;
    e->spill_max = 0;
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++)
        if (e->books[loc].status != FH_BOOK_EMPTY) {
            book_t *b = &e->books[loc];
            uint32_t seq = b->seq | 1; /* odd while the book is cleared */
            __atomic_store_n(&b->seq, seq, __ATOMIC_RELAXED);
            atomic_thread_fence(memory_order_release);
            if (BOOK_LAD(b) < e->lad_books) /* its ladders, under its seqlock: readers reach them through it */
                for (uint32_t i = 2u * BOOK_LAD(b); i < 2u * BOOK_LAD(b) + 2; i++) {
                    memset(e->lside[i].slot, 0, LAD_W * sizeof(fh_shm_agg_t));
                    e->lside[i] = (lside_t){ .slot = e->lside[i].slot };
                }
            memset((uint8_t *)b + sizeof b->seq, 0, sizeof *b - sizeof b->seq);
            __atomic_store_n(&b->seq, seq + 1, __ATOMIC_RELEASE);
        }
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++)
        e->bbo[loc] = (bbo_t){ .g = { &e->zero_agg, &e->zero_agg }, .key = { 0, ~0u } }; /* as bbo_set */
    e->room = e->cfg.max_orders;
    e->nbooks = 0;
    e->warm_at = 0;
    e->arena_top = 0;
    e->levels_used = 0;
    memset(e->free_head, 0, sizeof e->free_head);
}

void fh_engine_clear_books(fh_engine_t *e) { clear_books(e, true); }

static void engine_reset(fh_engine_t *e, bool tables)
{
    clear_books(e, tables); /* which applies a staged run first */
    e->levels_peak = 0;
    e->new_status = FH_BOOK_LIVE;
    memset(e->counters, 0, sizeof e->counters);
    memset(e->type_counts, 0, sizeof e->type_counts);
}

void fh_engine_reset(fh_engine_t *e) { engine_reset(e, true); }

int fh_engine_set_new_book_status(fh_engine_t *e, int status)
{
    flush_staged(e);
    if (status != FH_BOOK_LIVE && status != FH_BOOK_STALE)
        return -1;
    e->new_status = (uint8_t)status;
    return 0;
}

/* fh_engine_new; zeroed: mem is known to be zeros (engine_map's fresh mapping), so that its tables are not
 * cleared a second time */
static fh_engine_t *engine_new(void *mem, const fh_engine_cfg_t *cfg, fh_seg_t *seg, bool zeroed)
{
    layout_t l;
    if (!mem || ((uintptr_t)mem & (FH_CACHE_LINE - 1))) {
        FH_ERR("memory must be %d-byte aligned", FH_CACHE_LINE);
        return NULL;
    }
    if (!seg) {
        FH_ERR("no segment for the books");
        return NULL;
    }
    if (layout(cfg, &l))
        return NULL;
    uint8_t *base = mem;
    fh_engine_t *e = mem;
    memset(e, 0, sizeof *e);
    e->cfg = *cfg;
    e->cfg.max_levels = seg->hdr->max_levels; /* the segment's arena decides */
    e->orders = (order_t *)(base + l.orders);
    e->mask = order_slots(cfg->max_orders) - 1;
    e->home_sh = (uint32_t)__builtin_ctzll(e->mask + 1) - 2;
    e->spill = (spill_t *)(base + l.spill);
    e->spill_mask = spill_slots(cfg->max_orders) - 1;
    /* the ladders are the segment's (fh_seg_create zeroed them and set the shared pair's window out of reach) */
    e->lside = (lside_t *)seg->lside;
    e->lad_books = seg->hdr->ladder_books;
    for (uint32_t i = 0; i < 2 * (e->lad_books + 1); i++)
        e->lside[i].slot = seg->lslot + (size_t)i * LAD_W;
    e->bbo = (bbo_t *)(base + l.bbo);
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++)
        e->bbo[loc] = (bbo_t){ .g = { &e->zero_agg, &e->zero_agg }, .key = { 0, ~0u } }; /* as bbo_set */
    e->seg = seg;
    e->books = seg->books;
    e->lkey = seg->lkey;
    e->lagg = seg->lagg;
    e->events = seg->events;
    e->ev_mask = seg->hdr->event_capacity - 1;
    e->hdr_head = &seg->hdr->head;
    e->woken = __atomic_load_n(e->hdr_head, __ATOMIC_RELAXED);
    e->publish = seg->fd >= 0;
    e->new_status = FH_BOOK_LIVE;
    memcpy(e->msg_len, fh_itch_len, sizeof e->msg_len);
    bool any_len = false;
    for (int t = 0; t < 256; t++) {
        e->walk_len[t] = fh_itch_len[t] ? fh_itch_len[t] : WALK_ANY_LEN;
        any_len |= fh_itch_len[t] == WALK_ANY_LEN;
    }
    if (fh_itch_len['A'] != ITCH_LEN_A || fh_itch_len['D'] != ITCH_LEN_D || any_len) { /* apply_one's fast tests */
        FH_ERR("fh_itch_len and book.c disagree: A's and D's lengths, or a known type of length 255 (WALK_ANY_LEN)");
        return NULL;
    }
    for (uint32_t t = 0; t < 256; t++)
        memcpy(e->one_block[t], (const uint8_t[4]){ 0, 1, (uint8_t)t, 0 }, 4);
    memset(e->side_of, 2, sizeof e->side_of);
    e->side_of['B'] = 0;
    e->side_of['S'] = 1;
    for (uint32_t c = 0; c < NCLASS; c++)
        e->class_cap[c] = CLASS_CAP(c);
    engine_reset(e, !zeroed);
    return e;
}

fh_engine_t *fh_engine_new(void *mem, const fh_engine_cfg_t *cfg, fh_seg_t *seg)
{
    return engine_new(mem, cfg, seg, false);
}

/* 2 MB hugetlb pages by name, not the host's default size: a host provisioned for DPDK has 1 GB as its default
 * (default_hugepagesz=1G, the pages its mempools need), which this mapping must not take, and whose length (a
 * multiple of 2 MB) munmap would refuse. */
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

static fh_engine_t *engine_map(const fh_engine_cfg_t *cfg, fh_seg_t *seg, bool owns)
{
    size_t fp = fh_engine_footprint(cfg);
    if (!fp)
        return NULL;
    size_t huge = 2u << 20, len = align_up(fp, huge);
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
            FH_ERR("cannot map %zu bytes for the order table: %s; lower max_orders or free memory", len,
                   strerror(errno));
            return NULL;
        }
        madvise(mem, len, MADV_HUGEPAGE); /* transparent hugepages where enabled; harmless otherwise */
        if (fh_prefault(mem, len)) {      /* every page in now, not on the hot path */
            fh_err_append("the engine's tables: lower max_orders or free memory");
            munmap(mem, len);
            return NULL;
        }
    }
    fh_engine_t *e = engine_new(mem, cfg, seg, true); /* a fresh anonymous mapping: zeros */
    if (!e) {
        munmap(mem, len);
        return NULL;
    }
    e->map_len = len;
    e->owns_seg = owns;
    return e;
}

fh_engine_t *fh_engine_create(const fh_engine_cfg_t *cfg)
{
    if (fh_engine_footprint(cfg) == 0)
        return NULL;
    fh_seg_cfg_t sc = { .path = NULL, .name = "private", .max_levels = cfg->max_levels, .event_capacity = 64,
                        .depth = 10, .gid = -1,
                        .ladder_books = cfg->max_instruments < FH_SEG_LADDER_BOOKS ? cfg->max_instruments
                                                                                   : FH_SEG_LADDER_BOOKS };
    fh_seg_t *seg = fh_seg_create(&sc);
    if (!seg)
        return NULL;
    fh_engine_t *e = engine_map(cfg, seg, true);
    if (!e)
        fh_seg_close(seg, 0);
    return e;
}

fh_engine_t *fh_engine_create_on(const fh_engine_cfg_t *cfg, fh_seg_t *seg)
{
    return engine_map(cfg, seg, false);
}

void fh_engine_destroy(fh_engine_t *e)
{
    if (!e)
        return;
    flush_staged(e); /* a staged run is applied, not lost: its segment may outlive the engine */
    fh_seg_t *seg = e->owns_seg ? e->seg : NULL;
    free(e->filter);
    e->filter = NULL;
    if (e->map_len)
        munmap(e, e->map_len);
    if (seg)
        fh_seg_close(seg, 0);
}

static void bbo_set(fh_engine_t *e, const fh_shm_book_t *b, uint32_t side);

/* A private engine (publish off) does not keep the books' cached bests (bbo_t) on its hot path: they are for
 * emit_bbo. Turning publishing on computes them. */
void fh_engine_set_publish(fh_engine_t *e, bool on)
{
    flush_staged(e);
    if (on && !e->publish)
        for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++)
            if (e->books[loc].status != FH_BOOK_EMPTY)
                for (uint32_t sd = 0; sd < 2; sd++)
                    bbo_set(e, &e->books[loc], sd);
    e->publish = on;
}

/* ---- level arena ----------------------------------------------------------------------------------- */

/* Levels are stored as two parallel arrays in the segment: keys (searched, 16 to a cache line) and
 * aggregates (updated once found); fh_shm_agg_t.next_free links free blocks. */
typedef fh_shm_agg_t agg_t;

static int block_alloc(fh_engine_t *e, uint32_t cls, uint32_t *off)
{
    uint32_t head = e->free_head[cls];
    if (head) {
        *off = head - 1;
        e->free_head[cls] = e->lagg[head - 1].next_free;
        return 0;
    }
    if (CLASS_CAP(cls) > e->cfg.max_levels - e->arena_top)
        return -1;
    *off = e->arena_top;
    e->arena_top += CLASS_CAP(cls);
    return 0;
}

static void block_free(fh_engine_t *e, uint32_t off, uint32_t cls)
{
    e->lagg[off].next_free = e->free_head[cls];
    e->free_head[cls] = off + 1;
}

/* Make room for one more level on side s (whose size class is *cls). 0, or -1 when the arena is
 * exhausted. */
static __attribute__((noinline)) int side_grow(fh_engine_t *e, side_t *s, uint8_t *cls_p)
{
    uint32_t cls = *cls_p == NO_BLOCK ? 0 : *cls_p + 1u, off;
    if (cls >= NCLASS || block_alloc(e, cls, &off))
        return -1;
    if (*cls_p != NO_BLOCK) {
        memcpy(e->lkey + off, e->lkey + s->off, s->n * sizeof(uint32_t));
        memcpy(e->lagg + off, e->lagg + s->off, s->n * sizeof(agg_t));
        block_free(e, s->off, *cls_p);
    }
    s->off = off;
    *cls_p = (uint8_t)cls;
    return 0;
}

/* Index of the first key >= key in the ascending k[0..n), given n >= 1 and k[n - 1] >= key (the callers
 * have tested the best level), searching from the best end: most prices are within a few levels of the
 * inside. The next three levels one by one (no vector set-up for the short sides most books have), then
 * four keys per step with SSE2 to 16 levels from the best; past them, a binary search. */
static inline uint32_t level_lower_bound(const uint32_t *k, uint32_t n, uint32_t key)
{
    uint32_t i = n - 1; /* k[i] >= key throughout */
    for (int j = 0; j < 3; j++) {
        if (i == 0 || k[i - 1] < key)
            return i;
        i--;
    }
    uint32_t stop = n > 16 ? n - 16 : 0;
#ifdef __SSE2__
    const __m128i bias = _mm_set1_epi32((int)0x80000000u); /* unsigned order through signed compares */
    const __m128i vk = _mm_xor_si128(_mm_set1_epi32((int)key), bias);
    while (i >= stop + 4) {
        __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(k + i - 4)), bias);
        int lt = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(v, vk))); /* a prefix of the 4 lanes */
        if (lt)
            return i - 4 + (uint32_t)__builtin_ctz(~(unsigned)lt); /* lt is 0b1, 0b11 or 0b111 */
        i -= 4;
    }
#endif
    while (i > stop && k[i - 1] >= key)
        i--;
    if (i > stop || i == 0 || k[i - 1] < key)
        return i;
    uint32_t lo = 0, hi = stop;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (k[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Shift [i, n) of both arrays by one level: up (open a hole at i) or down (close the hole at i). Near the
 * inside that is a few elements: moved inline, without a library call. */
static inline void levels_open(uint32_t *k, agg_t *g, uint32_t i, uint32_t n)
{
    if (n - i > 8) {
        memmove(k + i + 1, k + i, (n - i) * sizeof *k);
        memmove(g + i + 1, g + i, (n - i) * sizeof *g);
        return;
    }
    for (uint32_t j = n; j > i; j--) {
        k[j] = k[j - 1];
        g[j] = g[j - 1];
    }
}

static inline void levels_close(uint32_t *k, agg_t *g, uint32_t i, uint32_t n)
{
    if (n - i > 9) {
        memmove(k + i, k + i + 1, (n - i - 1) * sizeof *k);
        memmove(g + i, g + i + 1, (n - i - 1) * sizeof *g);
        return;
    }
    for (uint32_t j = i; j + 1 < n; j++) {
        k[j] = k[j + 1];
        g[j] = g[j + 1];
    }
}

/* Add shares (one order) at key on side `side` of book b. Returns 1 if the side's best level changed, 0
 * if not, -1 when out of level memory. */
static inline int deep_add(fh_engine_t *e, book_t *b, int side, uint32_t key, uint32_t shares)
{
    side_t *s = &b->side[side];
    uint32_t *k = e->lkey + s->off;
    uint32_t n = s->n;
    uint32_t i = n == 0 || k[n - 1] < key ? n : level_lower_bound(k, n, key);
    if (i < n && k[i] == key) {
        agg_t *g = e->lagg + s->off + i;
        g->orders++;
        g->shares += shares;
        return i == n - 1;
    }
    if (FH_UNLIKELY(n == e->class_cap[b->cls[side]])) { /* full, or no block yet (n 0, class_cap 0) */
        if (side_grow(e, s, &b->cls[side]))
            return -1;
        k = e->lkey + s->off;
    }
    agg_t *g = e->lagg + s->off;
    if (i < n)
        levels_open(k, g, i, n);
    k[i] = key;
    g[i] = (agg_t){ .shares = shares, .orders = 1 };
    s->n = n + 1;
    return i == n;
}

/* Take shares (and, if gone, one order) off the level at key. The level exists: every live order is on
 * its level. Returns whether the side's best level changed. */
static inline bool deep_sub(fh_engine_t *e, side_t *s, uint32_t key, uint32_t shares, bool order_gone)
{
    uint32_t *k = e->lkey + s->off;
    agg_t *g = e->lagg + s->off;
    uint32_t n = s->n;
    uint32_t i = k[n - 1] == key ? n - 1 : level_lower_bound(k, n, key);
    g[i].shares -= shares;
    if (order_gone && --g[i].orders == 0) {
        levels_close(k, g, i, n);
        s->n = n - 1;
    }
    return i == n - 1;
}


/* ---- price ladder ----------------------------------------------------------------------------------- */

static inline lside_t *book_side(const fh_engine_t *e, const book_t *b, uint32_t side)
{
    return e->lside + ((size_t)BOOK_LAD(b) * 2 + side); /* size_t: an lea, no zero-extension */
}

/* Price of tick index kx on side `side` as a level key (price for bids, ~price for asks). */
static inline uint32_t lad_key(const lside_t *L, uint32_t side, uint32_t kx)
{
    return ((kx ^ (0u - side)) * L->tick) ^ (0u - side);
}

static inline bool lad_has(const lside_t *L, uint32_t slot) { return L->occ[slot >> 6] >> (slot & 63) & 1; }

/* The highest tick index with a level below kx, whose slot was just emptied (nl > 0): every level of the
 * window lies in [lo, kx), so the first set bit going down the ring from kx's slot is it. */
static inline uint32_t lad_next_below(const lside_t *L, uint32_t kx)
{
    uint32_t s = kx & LAD_MASK, w = s >> 6;
    uint64_t m = L->occ[w] & ((1ull << (s & 63)) - 1);
    while (!m) {
        w = (w - 1) & (LAD_WORDS - 1);
        m = L->occ[w];
    }
    uint32_t ns = w * 64 + 63 - (uint32_t)__builtin_clzll(m);
    return kx - ((s - ns) & LAD_MASK);
}

/* Whether key (a level of the window) is above every deep level of the side. */
static inline bool above_deep(const fh_engine_t *e, const side_t *s, uint32_t key)
{
    return s->n == 0 || e->lkey[s->off + s->n - 1] < key;
}

/* Whether a cached best lies in the deep arrays (not in a window, not the zero level). */
static inline bool bbo_deep(const fh_engine_t *e, const fh_shm_agg_t *g)
{
    return (uintptr_t)g - (uintptr_t)e->lagg < (uintptr_t)e->cfg.max_levels * sizeof *g;
}

/* The side's best as emit_bbo reads it (bbo_t), from scratch (the rare paths: a deep level changed, a
 * re-centring, the side's best level emptied): the window's best if it is above every deep level, else the
 * deep top, else none. */
static inline __attribute__((always_inline)) void bbo_fill(fh_engine_t *e, bbo_t *c, const lside_t *L,
                                                            const side_t *s, uint32_t side)
{
    uint32_t k = ((L->best ^ (0u - side)) * L->tick) ^ (0u - side);
    if (L->nl && above_deep(e, s, k)) {
        c->g[side] = &L->slot[L->best & LAD_MASK];
        c->key[side] = k;
    } else if (s->n) {
        c->g[side] = &e->lagg[s->off + s->n - 1];
        c->key[side] = e->lkey[s->off + s->n - 1];
    } else {
        c->g[side] = &e->zero_agg;
        c->key[side] = 0u - side; /* emit_bbo's price 0: ~key for asks */
    }
}

static void bbo_set(fh_engine_t *e, const book_t *b, uint32_t side)
{
    bbo_fill(e, &e->bbo[b->locate], book_side(e, b, side), &b->side[side], side);
}

/* bbo_set where a side's best window level emptied (level_sub_at, 0.13 a message), with the side's ladder, deep
 * run and cached bests that the caller has already found. */
static __attribute__((noinline)) void bbo_set_at(fh_engine_t *e, const book_t *b, const lside_t *L, uint32_t side)
{
    bbo_fill(e, &e->bbo[b->locate], L, &b->side[side], side);
}

/* bbo_set on the rare paths (re-centring, deep levels), only while publishing: a private engine's hot path does
 * not keep the cached bests (lad_open, level_sub), so keeping them on its rare paths is work for nothing, and
 * fh_engine_set_publish computes them all when publishing is turned on. */
static inline void bbo_set_rare(fh_engine_t *e, const book_t *b, uint32_t side)
{
    if (e->publish)
        bbo_set(e, b, side);
}

/* Insert a whole level (not present) into the deep arrays; the caller has made room. */
static void deep_insert(fh_engine_t *e, side_t *s, uint32_t key, agg_t g)
{
    uint32_t *k = e->lkey + s->off;
    uint32_t n = s->n;
    uint32_t i = n == 0 || k[n - 1] < key ? n : level_lower_bound(k, n, key);
    if (i < n)
        levels_open(k, e->lagg + s->off, i, n);
    k[i] = key;
    e->lagg[s->off + i] = g;
    s->n = n + 1;
}

/* Move the window of side `side` to [lo, lo + LAD_W): levels leaving it go to the deep arrays, deep levels
 * on the tick inside it come into it. A rare copy (under the book's seqlock, held by the caller). 0, or -1
 * (nothing changed) when the deep arrays cannot take the levels that leave. */
static __attribute__((noinline)) int lad_recentre(fh_engine_t *e, book_t *b, uint32_t side, uint32_t lo)
{
    lside_t *L = book_side(e, b, side);
    side_t *s = &b->side[side];
    /* the levels that leave: all of them when the window moves up past its best (a real day's opening: a side's
     * first levels far from where quoting settles), else counted */
    uint32_t leave = 0;
    if (lo > L->lo && L->best < lo)
        leave = L->nl;
    else
        for (uint32_t w = 0; L->nl && w < LAD_WORDS; w++)
            for (uint64_t m = L->occ[w]; m; m &= m - 1) {
                uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(m);
                leave += (L->lo + ((i - L->lo) & LAD_MASK)) - lo >= LAD_W;
            }
    while (leave && (s->n + leave > e->class_cap[b->cls[side]]))
        if (side_grow(e, s, &b->cls[side]))
            return -1;
    if (leave == 1 && L->nl == 1 && L->best - lo >= LAD_W) {
        /* the one level, the best, leaves (most of a real day's re-centrings): its slot is known, no walk */
        uint32_t i = L->best & LAD_MASK;
        deep_insert(e, s, lad_key(L, side, L->best), L->slot[i]);
        L->slot[i] = (agg_t){ 0 };
        L->occ[i >> 6] ^= 1ull << (i & 63);
        L->nl = 0;
        leave = 0;
    }
    for (uint32_t w = 0; leave && w < LAD_WORDS; w++)
        for (uint64_t m = L->occ[w]; m; m &= m - 1) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(m);
            uint32_t kx = L->lo + ((i - L->lo) & LAD_MASK);
            if (kx - lo >= LAD_W) {
                deep_insert(e, s, lad_key(L, side, kx), L->slot[i]);
                L->slot[i] = (agg_t){ 0 };
                L->occ[w] &= ~(1ull << (i & 63));
                L->nl--;
            }
        }
    /* deep levels on the tick inside the new window: a run at the deep arrays' top end, from the key of
     * its lowest tick up (keys ascend with tick indexes on both sides) */
    uint32_t klo = ((lo ^ (0u - side)) * L->tick) ^ (0u - side), top = s->n, i = top;
    while (L->tick && i > 0 && e->lkey[s->off + i - 1] >= klo)
        i--;
    uint32_t j = i;
    bool had = L->nl && L->best - lo < LAD_W; /* the old best stays in the window, and stays best unless a deep
                                               * level above it comes in */
    uint32_t best = had ? L->best : 0;
    for (; i < top; i++) {
        uint32_t key = e->lkey[s->off + i], price = key ^ (0u - side);
        uint32_t q = lad_q(L, price), kx = q ^ (0u - side);
        if (q * L->tick == price && kx - lo < LAD_W) {
            uint32_t sl = kx & LAD_MASK;
            L->slot[sl] = e->lagg[s->off + i];
            L->slot[sl].next_free = 0;
            L->occ[sl >> 6] |= 1ull << (sl & 63);
            L->nl++;
            if (!had || kx > best)
                best = kx, had = true;
        } else {
            e->lkey[s->off + j] = key;
            e->lagg[s->off + j] = e->lagg[s->off + i];
            j++;
        }
    }
    s->n = j;
    L->lo = lo;
    L->best = best;
    bbo_set_rare(e, b, side);
    return 0;
}

static inline uint32_t lad_lo_for(uint32_t kx, uint32_t below)
{
    uint32_t lo = kx < below ? 0 : kx - below;
    return lo > 0u - LAD_W ? 0u - LAD_W : lo;
}

/* A new level at kx in the window. */
static inline int lad_open(fh_engine_t *e, book_t *b, lside_t *L, uint32_t side, uint32_t kx, uint32_t key,
                           uint32_t shares, bool pub)
{
    uint32_t sl = kx & LAD_MASK;
    L->slot[sl].orders = 1;
    L->slot[sl].shares = shares;
    L->occ[sl >> 6] |= 1ull << (sl & 63);
    if (L->nl++ == 0 || kx > L->best) {
        L->best = kx;
        bbo_t *c = &e->bbo[b->locate];
        if (pub && (key > c->key[side] || c->g[side]->orders == 0)) { /* the side's new best */
            c->g[side] = &L->slot[sl];
            c->key[side] = key;
            return 1;
        }
    }
    return 0;
}

static inline int level_add_place(fh_engine_t *e, book_t *b, uint32_t side, uint32_t key, uint32_t price,
                                  uint32_t shares)
{
    bool full = e->levels_used >= e->cfg.max_levels; /* a new level is refused, an existing one takes the order */
    lside_t *L = book_side(e, b, side);
    int top;
    if (BOOK_LAD(b) != e->lad_books) {
        if (!L->tick && price) { /* the book's tick, from its first price: NASDAQ's 1 cent at and above $1 */
            uint32_t tick = price >= 10000 ? 100 : 1;
            for (uint32_t sd = 0; sd < 2; sd++) {
                book_side(e, b, sd)->tick = (uint16_t)tick;
                book_side(e, b, sd)->mul = tick == 100 ? 1374389535u : 1;
                book_side(e, b, sd)->sh = tick == 100 ? 37 : 0;
            }
        }
        uint32_t q = lad_q(L, price), kx = q ^ (0u - side);
        if (L->tick && q * L->tick == price) {
            uint32_t lo = L->lo;
            if (kx - lo < LAD_W) { /* the tick was just chosen */
            } else if (L->nl == 0 || kx >= lo) { /* an empty window, or above it (kx - lo >= LAD_W) */
                lo = lad_lo_for(kx, LAD_W - LAD_W / 4);
            } else if (L->best - lad_lo_for(kx, LAD_W / 8) < LAD_W) { /* below it: down, if nothing has to leave */
                lo = lad_lo_for(kx, LAD_W / 8);
            }
            if (L->nl == 0 && b->side[side].n == 0) /* nothing to move: an empty side takes its window at once */
                L->lo = lo;
            if (kx - lo < LAD_W && (lo == L->lo || lad_recentre(e, b, side, lo) == 0)) {
                agg_t *g = &L->slot[kx & LAD_MASK];
                if (g->orders) { /* a deep level that the window took in */
                    g->orders++;
                    g->shares += shares;
                    return e->bbo[b->locate].g[side] == g; /* lad_recentre has set it (read only while publishing) */
                }
                if (full)
                    return -1;
                top = lad_open(e, b, L, side, kx, key, shares, true);
                goto opened;
            }
        }
    }
    side_t *s = &b->side[side];
    uint32_t n0 = s->n;
    if (full) {
        const uint32_t *k = e->lkey + s->off;
        uint32_t i = n0 == 0 || k[n0 - 1] < key ? n0 : level_lower_bound(k, n0, key);
        if (i == n0 || k[i] != key)
            return -1;
    }
    bbo_t *c = &e->bbo[b->locate];
    /* the cached best moves with the deep arrays if it is their top, or if this level becomes the best */
    bool again = bbo_deep(e, c->g[side]) || key > c->key[side] || c->g[side]->orders == 0;
    top = deep_add(e, b, (int)side, key, shares);
    if (top < 0)
        return -1;
    if (again)
        bbo_set_rare(e, b, side);
    top = c->key[side] == key && c->g[side]->orders; /* the level is the best (read only while publishing) */
    if (s->n == n0) /* an existing deep level */
        return top;
opened:
    if (++e->levels_used > e->levels_peak)
        e->levels_peak = e->levels_used;
    return top;
}

static __attribute__((noinline)) int level_add_slow(fh_engine_t *e, book_t *b, uint32_t side, uint32_t key,
                                                    uint32_t price, uint32_t shares, order_t *o)
{
    int top = level_add_place(e, b, side, key, price, shares);
    /* the order's level as level_sub will take it: with the book's tick as it is now (chosen above, if ever) */
    const lside_t *L = book_side(e, b, side);
    uint32_t q = lad_q(L, price);
    bool on = q * L->tick == price;
    o->lv = on ? q ^ (0u - side) : key;
    o->side = (uint8_t)(side | (on ? 0 : O_KEY));
    return top;
}

/* Add shares (one order) at price (key: price for bids, ~price for asks) on side `side` of book b, and store
 * where in order o (from order_place: its level and side; order_commit fills the rest, or order_unplace gives
 * the slot back, empty whatever these say). Returns 1 if the side's best level changed, 0 if not, -1 when out
 * of level memory. */
static inline __attribute__((always_inline)) int level_add(fh_engine_t *e, book_t *b, uint32_t side, uint32_t key,
                                                           uint32_t price, uint32_t shares, bool pub, order_t *o)
{
    lside_t *L = book_side(e, b, side);
    uint32_t q = lad_q(L, price);
    uint32_t kx = q ^ (0u - side);
    if (FH_LIKELY(q * L->tick == price && kx - L->lo < LAD_W)) {
        agg_t *g = &L->slot[kx & LAD_MASK];
        o->lv = kx;
        o->side = (uint8_t)side;
        if (g->orders) {
            g->orders++;
            g->shares += shares;
            return pub && e->bbo[b->locate].g[side] == g;
        }
        if (FH_LIKELY(e->levels_used < e->cfg.max_levels)) {
            if (++e->levels_used > e->levels_peak)
                e->levels_peak = e->levels_used;
            return lad_open(e, b, L, side, kx, key, shares, pub);
        }
    }
    return level_add_slow(e, b, side, key, price, shares, o);
}

static __attribute__((noinline)) bool level_sub_deep(fh_engine_t *e, book_t *b, uint32_t side, uint32_t key,
                                                     uint32_t shares, bool order_gone)
{
    side_t *s = &b->side[side];
    const bbo_t *c = &e->bbo[b->locate];
    uint32_t n0 = s->n;
    bool top = c->key[side] == key && c->g[side]->orders; /* the level was the best (read only while publishing) */
    deep_sub(e, s, key, shares, order_gone);
    if (s->n != n0) {
        e->levels_used--;
        if (bbo_deep(e, c->g[side])) /* the cached best is (was) the deep top, which moved or went */
            bbo_set_rare(e, b, side);
    }
    return top;
}

/* Take shares (and, if gone, one order) off window level kx of side `side` (L). Returns whether the side's best
 * level changed. */
static inline __attribute__((always_inline)) bool level_sub_at(fh_engine_t *e, book_t *b, lside_t *L, uint32_t side,
                                                               uint32_t kx, uint32_t shares, bool order_gone, bool pub)
{
    uint32_t sl = kx & LAD_MASK;
    agg_t *g = &L->slot[sl];
    g->shares -= shares;
    bool top = pub && e->bbo[b->locate].g[side] == g;
    if (order_gone && --g->orders == 0) {
        L->occ[sl >> 6] ^= 1ull << (sl & 63); /* the bit is set (the level had an order): one xor clears it */
        e->levels_used--;
        if (--L->nl && kx == L->best)
            L->best = lad_next_below(L, kx);
        if (top) /* the side's best level is gone: the next one is the window's or the deep top */
            bbo_set_at(e, b, L, side);
    }
    return top;
}

/* level_sub for an order whose price was off the tick when added (O_KEY: lv is its key): on the tick now only if
 * the book's tick was chosen since. */
static __attribute__((noinline)) bool level_sub_key(fh_engine_t *e, book_t *b, uint32_t side, uint32_t key,
                                                    uint32_t shares, bool order_gone, bool pub)
{
    lside_t *L = book_side(e, b, side);
    uint32_t price = key ^ (0u - side);
    uint32_t q = lad_q(L, price);
    uint32_t kx = q ^ (0u - side);
    if (q * L->tick != price || kx - L->lo >= LAD_W)
        return level_sub_deep(e, b, side, key, shares, order_gone);
    return level_sub_at(e, b, L, side, kx, shares, order_gone, pub);
}

/* Take shares (and, if gone, one order) off the level of an order (its side byte sb and lv: order_t). The level
 * exists: every live order is on its level. Returns whether the side's best level changed. */
/* level_sub of an order on the tick (its side byte without O_KEY: the side). */
static inline __attribute__((always_inline)) bool level_sub_tick(fh_engine_t *e, book_t *b, uint32_t side,
                                                                 uint32_t lv, uint32_t shares, bool order_gone,
                                                                 bool pub)
{
    lside_t *L = book_side(e, b, side);
    if (FH_UNLIKELY(lv - L->lo >= LAD_W))
        return level_sub_deep(e, b, side, lad_key(L, side, lv), shares, order_gone);
    return level_sub_at(e, b, L, side, lv, shares, order_gone, pub);
}

static inline __attribute__((always_inline)) bool level_sub(fh_engine_t *e, book_t *b, uint32_t sb, uint32_t lv,
                                                            uint32_t shares, bool order_gone, bool pub)
{
    if (FH_UNLIKELY(sb & O_KEY))
        return level_sub_key(e, b, sb & 1u, lv, shares, order_gone, pub);
    return level_sub_tick(e, b, sb, lv, shares, order_gone, pub); /* sb is the side */
}

/* ---- order table ----------------------------------------------------------------------------------- */

/* Spill table: linear probing from a multiplicative hash, backward-shift deletion. */
static inline uint64_t spill_home(const fh_engine_t *e, uint64_t ref)
{
    return (ref * 0x9E3779B97F4A7C15ull) >> (64 - __builtin_ctzll(e->spill_mask + 1));
}

/* Slot of ref in the spill table, or the empty slot where it would go. */
static inline uint64_t spill_slot(const fh_engine_t *e, uint64_t ref)
{
    uint64_t i = spill_home(e, ref);
    while (e->spill[i].o.shares && e->spill[i].ref != ref)
        i = (i + 1) & e->spill_mask;
    return i;
}

static __attribute__((noinline)) void spill_erase(fh_engine_t *e, uint64_t i)
{
    spill_t *t = e->spill;
    uint64_t mask = e->spill_mask, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!t[j].o.shares)
            break;
        uint64_t home = spill_home(e, t[j].ref);
        /* t[j] may move to i unless its home lies cyclically in (i, j]. */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            t[i] = t[j];
            i = j;
        }
    }
    t[i].o.shares = 0;
    if (!--e->spill_live)
        e->spill_max = 0;
}

/* ref's home slot in e's order table (order_home with the table's mask and shift), where the walker has not
 * computed it already (walked_t.slot). */
static inline uint64_t engine_home(const fh_engine_t *e, uint64_t ref)
{
    return order_home(ref, e->mask, e->home_sh);
}

/* The live order ref (home: its home slot, order_home), or NULL. */
static inline order_t *order_find(fh_engine_t *e, uint64_t ref, uint64_t home)
{
    order_t *o = &e->orders[home];
    if (FH_LIKELY(o->shares && o->tag == (ref >> TAG_SHIFT)))
        return o;
    if (FH_LIKELY(ref > e->spill_max))
        return NULL;
    spill_t *s = &e->spill[spill_slot(e, ref)];
    return s->o.shares ? &s->o : NULL;
}

/* Move the order in home slot o to the spill table, to make room for a newer reference; -1 when the spill
 * table is full. */
static int spill_evict(fh_engine_t *e, order_t *o)
{
    if (2 * (uint64_t)(e->spill_live + 1) > e->spill_mask + 1)
        return -1;
    uint64_t ref = home_ref((uint64_t)(o - e->orders), o->tag, e->home_sh);
    spill_t *sp = &e->spill[spill_slot(e, ref)];
    sp->ref = ref;
    sp->o = *o;
    sp->o.spilled = 1;
    e->spill_live++;
    if (ref > e->spill_max)
        e->spill_max = ref;
    o->shares = 0;
    return 0;
}

static inline spill_t *spill_of(order_t *o) { return (spill_t *)((uint8_t *)o - offsetof(spill_t, o)); }

/* Take spill slot sp for order ref (order_commit fills the rest). */
static order_t *spill_take(fh_engine_t *e, spill_t *sp, uint64_t ref)
{
    sp->ref = ref;
    sp->o.spilled = 1;
    e->spill_live++;
    if (ref > e->spill_max)
        e->spill_max = ref;
    return &sp->o;
}

static __attribute__((noinline)) order_t *order_place_slow(fh_engine_t *e, uint64_t ref, order_t *o, int *dup)
{
    *dup = 0;
    if (o->shares && o->tag == (ref >> TAG_SHIFT)) {
        *dup = 1;
        return NULL;
    }
    if (ref <= e->spill_max && e->spill[spill_slot(e, ref)].o.shares) {
        *dup = 1;
        return NULL;
    }
    if (ref > REF_TAGGED_MAX) /* too big a tag for the home slot: the order lives in the spill table */
        return 2 * (uint64_t)(e->spill_live + 1) > e->spill_mask + 1 ? NULL
                                                                        : spill_take(e, &e->spill[spill_slot(e, ref)], ref);
    if (o->shares && spill_evict(e, o))
        return NULL;
    return o;
}

/* Where a new order ref goes (an empty slot: its home slot, after moving an older order there to the
 * spill table, or a spill slot, already counted as the spill table's, when its tag does not fit), or NULL
 * when ref is live already (*dup = 1) or the spill table is full (*dup = 0; *dup is written only when
 * NULL is returned). order_commit fills the slot, or order_unplace gives it back. home: ref's home slot
 * (order_home). */
static inline order_t *order_place(fh_engine_t *e, uint64_t ref, uint64_t home, int *dup)
{
    order_t *o = &e->orders[home];
    if (FH_LIKELY(!o->shares && ref > e->spill_max && ref <= REF_TAGGED_MAX))
        return o; /* a home slot: its `spilled` is 0 */
    return order_place_slow(e, ref, o, dup);
}

/* Give back a slot from order_place that was not filled. */
static __attribute__((noinline)) void order_unplace(fh_engine_t *e, order_t *o)
{
    if (o->spilled && !--e->spill_live)
        e->spill_max = 0;
}

/* Fill slot o (from order_place) with order ref; `spilled` is the slot's already, its level and side level_add's. */
static inline void order_commit(order_t *o, uint64_t ref, uint32_t shares, uint16_t book)
{
    o->tag = (uint32_t)(ref >> TAG_SHIFT);
    o->shares = shares;
    o->book = book; /* its room was taken by add_order's test */
}

static inline void order_free(fh_engine_t *e, order_t *o)
{
    e->room++;
    if (FH_LIKELY(!o->spilled))
        o->shares = 0;
    else
        spill_erase(e, (uint64_t)(spill_of(o) - e->spill));
}

/* ---- books and publishing ------------------------------------------------------------------------- */

/* A message's timestamp (fh_itch_timestamp: 6 bytes at offset 5) as one 8-byte load from offset 3 (the
 * tracking number's bytes shifted out): every message the engine applies has the 11-byte header. */
static inline uint64_t msg_ts(const uint8_t *m) { return fh_be64(m + 3) & 0xFFFFFFFFFFFFull; }

/* The same for a message of 13 bytes or more, as one 8-byte load from offset 5 shifted (no 48-bit mask to form):
 * apply_one's book_end_if, whose messages with a book are 19 bytes or more (bench/engine.md section 17). */
static inline uint64_t msg_ts13(const uint8_t *m) { return fh_be64(m + 5) >> 16; }

/* A book's seq + 1, stored: the writer is its only one. On x86-64 one `add` to memory (a load and a 32-bit store,
 * which TSO keeps in order with the writer's other stores) instead of the load, add and store that gcc makes of a
 * relaxed atomic store of seq + 1 (bench/engine.md section 17); the asm is a compiler barrier as the fences are.
 * Elsewhere the atomic store, with the ordering the caller asks for. */
#if defined(__x86_64__)
#define SEQ_BUMP(p, order) __asm__ volatile("addl $1, %0" : "+m"(*(p)) : : "memory")
#else
#define SEQ_BUMP(p, order) __atomic_store_n((p), *(p) + 1, (order))
#endif

/* The writer's half of a book's seqlock (fh/shm.h): odd while the book changes. */
static inline void book_begin_if(book_t *b, bool publish)
{
    if (publish) {
        SEQ_BUMP(&b->seq, __ATOMIC_RELAXED);
        atomic_thread_fence(memory_order_release);
    }
}

static inline void book_end_ts(book_t *b, uint64_t ts, bool publish)
{
    if (publish) {
        b->updates++;
        b->itch_ts = ts;
        SEQ_BUMP(&b->seq, __ATOMIC_RELEASE);
    }
}

/* book_end_ts for a message of 13 bytes or more (apply_one's: msg_ts13); book_end below for any that has the 11-byte
 * header (fh_engine_set_status, snapshot_load). */
static inline void book_end_if(book_t *b, const uint8_t *m, bool publish) { book_end_ts(b, msg_ts13(m), publish); }

/* The same, publishing as the engine is set to (the block loop passes a constant instead, so that a
 * private engine's hot path carries no publishing test). */
static inline void book_begin(fh_engine_t *e, book_t *b) { book_begin_if(b, e->publish); }
static inline void book_end(fh_engine_t *e, book_t *b, const uint8_t *m) { book_end_ts(b, msg_ts(m), e->publish); }

/* Append an event: the slot's seq is cleared first so that a reader of the previous lap sees it change.
 * event_begin reads every engine field the event needs (its head, the ring, the stamps, the header's address)
 * before the first store, so that none is loaded again after the fence; event_end publishes head h. The
 * header's first eight bytes (type, trading_state, status, pad 0, locate) are one store: the book keeps
 * trading_state and status side by side. ts is the message's timestamp (msg_ts). */
_Static_assert(offsetof(book_t, status) == offsetof(book_t, trading_state) + 1, "the book's state and status: 2 bytes");
_Static_assert(offsetof(fh_shm_event_t, trading_state) == offsetof(fh_shm_event_t, type) + 1 &&
                   offsetof(fh_shm_event_t, status) == offsetof(fh_shm_event_t, type) + 2 &&
                   offsetof(fh_shm_event_t, pad) == offsetof(fh_shm_event_t, type) + 3 &&
                   offsetof(fh_shm_event_t, locate) == offsetof(fh_shm_event_t, type) + 4,
               "the event's type, state, status, pad and locate: 8 bytes");
_Static_assert(offsetof(struct fh_engine, now_tsc) == offsetof(struct fh_engine, rx_tsc) + 8 &&
                   offsetof(fh_shm_event_t, pub_tsc) == offsetof(fh_shm_event_t, rx_tsc) + 8,
               "the stamps: 16 bytes in the engine and in the event");
static inline __attribute__((always_inline)) fh_shm_event_t *event_begin(fh_engine_t *e, uint8_t type, const book_t *b,
                                                                         uint64_t ts, uint64_t *h, uint64_t **hhp)
{
    uint64_t *hh = e->hdr_head;
    uint64_t head = __atomic_load_n(hh, __ATOMIC_RELAXED) + 1, stamps[2];
    memcpy(stamps, &e->rx_tsc, 16); /* rx_tsc and now_tsc: one 16-byte load, and below one store (section 17) */
    fh_shm_event_t *ev = &e->events[head & e->ev_mask];
    uint16_t st;
    memcpy(&st, &b->trading_state, 2);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t w = type | (uint32_t)st << 8 | (uint64_t)b->locate << 32; /* pad 0 */
#else
    uint64_t w = ((uint64_t)type << 24 | (uint32_t)st << 8) << 32 | b->locate;
#endif
    __atomic_store_n(&ev->seq, UINT64_MAX, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_release);
    memcpy(&ev->type, &w, 8);
    ev->itch_ts = ts;
    memcpy(&ev->rx_tsc, stamps, 16); /* rx_tsc, pub_tsc */
    *h = head;
    *hhp = hh;
    return ev;
}

static inline __attribute__((always_inline)) void event_end(uint64_t *hdr_head, fh_shm_event_t *ev, uint64_t head)
{
    __atomic_store_n(&ev->seq, head, __ATOMIC_RELEASE);
    __atomic_store_n(hdr_head, head, __ATOMIC_RELEASE);
}

/* A BBO event, right after the message's book_end (whose stamp it takes from the book). An empty side's cached
 * best is the zero level with key 0 for bids and ~0 for asks (bbo_set), so its price comes out 0 with no test. */
static inline __attribute__((always_inline)) void emit_bbo(fh_engine_t *e, const book_t *b)
{
    if (FH_UNLIKELY(b->flags & FH_BOOK_F_UNPUBLISHED))
        return;
    const bbo_t *c = &e->bbo[b->locate]; /* the bests as the writer keeps them */
    uint64_t bid = c->g[0]->shares, ask = c->g[1]->shares;
    uint32_t bk = c->key[0], ak = ~c->key[1];
    uint64_t h, *hh;
    fh_shm_event_t *ev = event_begin(e, FH_EV_BBO, b, b->itch_ts, &h, &hh);
    ev->a = bid;
    ev->b = ask;
    ev->c = bk;
    ev->d = ak;
    event_end(hh, ev, h);
}

static __attribute__((noinline)) void emit_trade(fh_engine_t *e, const book_t *b, const uint8_t *m, uint64_t match)
{
    if (FH_UNLIKELY(b->flags & FH_BOOK_F_UNPUBLISHED))
        return;
    uint64_t h, *hh;
    fh_shm_event_t *ev = event_begin(e, FH_EV_TRADE, b, msg_ts(m), &h, &hh);
    ev->a = b->last_shares;
    ev->b = match;
    ev->c = b->last_price;
    ev->d = 0;
    event_end(hh, ev, h);
}

static __attribute__((noinline)) void emit_simple(fh_engine_t *e, uint8_t type, const book_t *b, const uint8_t *m)
{
    if (FH_UNLIKELY(b->flags & FH_BOOK_F_UNPUBLISHED))
        return;
    uint64_t h, *hh;
    fh_shm_event_t *ev = event_begin(e, type, b, msg_ts(m), &h, &hh);
    ev->a = ev->b = 0;
    ev->c = ev->d = 0;
    event_end(hh, ev, h);
}

static uint64_t symbol_key(const uint8_t *stock8)
{
    return fh_be64(stock8); /* ITCH's 8 bytes, space-padded: sorted keys sort like the symbols */
}

static int in_filter(const fh_engine_t *e, const uint8_t *stock)
{
    uint64_t k = symbol_key(stock);
    uint32_t lo = 0, hi = e->nfilter;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (e->filter[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < e->nfilter && e->filter[lo] == k;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int fh_engine_set_publish_filter(fh_engine_t *e, const char *const *symbols, uint32_t n)
{
    flush_staged(e);
    uint64_t *keys = NULL;
    if (n) {
        if (!(keys = malloc(n * sizeof *keys))) {
            FH_ERR("no memory for %u instruments to publish", n);
            return -1;
        }
        for (uint32_t i = 0; i < n; i++) {
            size_t len = strlen(symbols[i]);
            if (len == 0 || len > 8) {
                FH_ERR("instrument '%s' to publish: a symbol is 1 to 8 characters", symbols[i]);
                free(keys);
                return -1;
            }
            uint8_t s8[8];
            memset(s8, ' ', 8);
            memcpy(s8, symbols[i], len);
            keys[i] = symbol_key(s8);
        }
        qsort(keys, n, sizeof *keys, cmp_u64);
    }
    free(e->filter);
    e->filter = keys;
    e->nfilter = n;
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++) { /* books that exist already */
        book_t *b = &e->books[loc];
        if (b->status == FH_BOOK_EMPTY)
            continue;
        uint8_t s8[8];
        memset(s8, ' ', 8);
        memcpy(s8, b->symbol, b->symbol_len);
        if (n && !in_filter(e, s8))
            b->flags |= FH_BOOK_F_UNPUBLISHED;
        else
            b->flags &= (uint8_t)~FH_BOOK_F_UNPUBLISHED;
    }
    return 0;
}

static void set_symbol(book_t *b, const uint8_t *stock)
{
    int w = 8;
    while (w > 0 && stock[w - 1] == ' ')
        w--;
    memset(b->symbol, 0, sizeof b->symbol);
    memcpy(b->symbol, stock, (size_t)w);
    b->symbol_len = (uint8_t)w;
}

static __attribute__((noinline)) book_t *book_create(fh_engine_t *e, uint16_t locate, const uint8_t *stock,
                                                     const uint8_t *m)
{
    if (e->nbooks >= e->cfg.max_instruments) {
        e->counters[FH_C_instrument_capacity]++;
        return NULL;
    }
    book_t *b = &e->books[locate];
    book_begin(e, b);
    uint32_t seq = b->seq;
    memset(b, 0, sizeof *b);
    b->seq = seq;
    b->cls[0] = b->cls[1] = NO_BLOCK;
    BOOK_LAD(b) = (uint16_t)(e->nbooks < e->lad_books ? e->nbooks : e->lad_books); /* zeroed (clear_books) */
    b->locate = locate;
    b->trading_state = 'T';
    b->status = e->new_status;
    set_symbol(b, stock);
    if (e->nfilter && !in_filter(e, stock))
        b->flags |= FH_BOOK_F_UNPUBLISHED;
    book_end(e, b, m);
    e->made[e->nbooks++] = locate;
    return b;
}

/* The book at offset bk of e->books (its locate x sizeof(book_t), as the walker keeps it: walked_t.bk) for a message
 * that names its stock (A, F, H): created on first sight, counted. */
static inline book_t *book_for(fh_engine_t *e, uint32_t bk, const uint8_t *stock, const uint8_t *m)
{
    book_t *b = (book_t *)((uint8_t *)e->books + bk);
    if (FH_LIKELY(b->status != FH_BOOK_EMPTY))
        return b;
    b = book_create(e, (uint16_t)(bk / sizeof(book_t)), stock, m); /* counts instrument_capacity when full */
    if (b)
        e->counters[FH_C_unknown_locate]++;
    return b;
}

/* Book b lacks a message the engine had no room for (add_order: order_capacity, level_capacity): flagged
 * FH_BOOK_F_INCOMPLETE and marked stale, once, with a stale event when publishing; no recovery of the lines makes it
 * live again (fh_engine_set_status, fh_engine_set_all_status), a snapshot's rebuild does (clear_books). held: the
 * caller holds b's seqlock. Cold: capacity is configured well above a day's peak. */
static __attribute__((noinline, cold)) void book_incomplete(fh_engine_t *e, book_t *b, const uint8_t *m, bool held)
{
    if (b->flags & FH_BOOK_F_INCOMPLETE)
        return;
    bool was_live = b->status == FH_BOOK_LIVE;
    if (e->publish && !held)
        book_begin(e, b);
    b->flags |= FH_BOOK_F_INCOMPLETE;
    b->status = FH_BOOK_STALE;
    if (e->publish && !held)
        book_end(e, b, m);
    if (e->publish && was_live)
        emit_simple(e, FH_EV_STALE, b, m);
}

/* add_order's order table full: counted, and the book the add was for (b, whose seqlock the caller holds, or the
 * book at offset bk, if it has been made) lacks the order. */
static __attribute__((noinline, cold)) void order_room_out(fh_engine_t *e, book_t *b, uint32_t bk, const uint8_t *m)
{
    e->counters[FH_C_order_capacity]++;
    book_t *ob = b ? b : (book_t *)((uint8_t *)e->books + bk);
    if (ob->status != FH_BOOK_EMPTY)
        book_incomplete(e, ob, m, b != NULL);
}

/* add_order's level memory full: the order given back, counted, and book b (whose seqlock is held: add_order's own
 * book_begin_if, or the caller's) lacks it. */
static __attribute__((noinline, cold)) void level_room_out(fh_engine_t *e, book_t *b, order_t *o, const uint8_t *m)
{
    e->room++;
    order_unplace(e, o);
    e->counters[FH_C_level_capacity]++;
    book_incomplete(e, b, m, true);
}

/* Add an order to book b, or (b == NULL, for A and F) to the book at offset bk (book_for), created from stock on
 * first sight. The checks run in the order of docs/book-semantics.md; a skipped add never creates a book.
 * Returns 1 if a best level changed, and then *bp is the book (for emit_bbo, without finding it again by
 * locate). The caller holds b's seqlock when b != NULL. */
static inline __attribute__((always_inline)) int add_order(fh_engine_t *e, book_t *b, uint32_t bk,
                                                           const uint8_t *m, uint64_t ref, uint64_t home,
                                                           uint32_t side, uint32_t shares, uint32_t price,
                                                           bool publish, book_t **bp)
{
    if (FH_UNLIKELY(side > 1)) { /* side_of's 2: neither 'B' nor 'S' */
        e->counters[FH_C_bad_side]++;
        return 0;
    }
    if (FH_UNLIKELY(shares == 0)) {
        e->counters[FH_C_zero_shares]++;
        return 0;
    }
    int dup;
    order_t *o = order_place(e, ref, home, &dup);
    /* the order's room taken by the test itself (one decrement of memory and its sign: bench/engine.md section 17),
     * given back where the add goes no further */
    if (FH_UNLIKELY(!o || --e->room < 0)) { /* a duplicate before capacity */
        if (o) {
            e->room = 0; /* it was 0: the decrement made it -1 */
            order_unplace(e, o);
        }
        if (o || !dup) /* the order table full: its book (if it has one yet) lacks the order */
            order_room_out(e, b, bk, m);
        else
            e->counters[FH_C_duplicate_ref]++;
        return 0;
    }
    bool own = !b;
    if (own) {
        if (FH_UNLIKELY(!(b = book_for(e, bk, m + FH_ITCH_OFF_A_STOCK, m)))) {
            e->room++;
            order_unplace(e, o); /* a spill slot given back (before, kept: the table a slot short for each) */
            return 0;
        }
        book_begin_if(b, publish);
    }
    uint32_t key = price ^ (0u - side); /* ~price for asks */
    int top = level_add(e, b, side, key, price, shares, publish, o);
    if (FH_LIKELY(top >= 0)) {
        order_commit(o, ref, shares, (uint16_t)b->locate);
    } else {
        level_room_out(e, b, o, m);
    }
    if (own)
        book_end_if(b, m, publish);
    *bp = b;
    return top > 0;
}

/* The live order a message refers to, checked against the message's book (bk: its locate x sizeof(book_t), as the
 * walker keeps it), and in *bp the order's book; NULL if unknown. Compared as offsets: the order's is the one its
 * book is found at, and the message's is not read again. */
static inline __attribute__((always_inline)) order_t *find_order(fh_engine_t *e, uint64_t ref, uint64_t home,
                                                                 uint32_t bk, book_t **bp)
{
    order_t *o = order_find(e, ref, home);
    if (FH_UNLIKELY(!o)) {
        e->counters[FH_C_unknown_ref]++;
        return NULL;
    }
    uint32_t ob = (uint32_t)o->book * sizeof(book_t); /* o->book is the order's locate */
    if (FH_UNLIKELY(ob != bk))
        e->counters[FH_C_locate_mismatch]++;
    *bp = (book_t *)((uint8_t *)e->books + ob);
    return o;
}

/* An order's side byte and `spilled` as one 16-bit value (adjacent in order_t): an order off the tick (O_KEY) or in
 * the spill table, both rare, is told by one test when it is removed (remove_order; bench/engine.md section 16). */
_Static_assert(offsetof(order_t, spilled) == offsetof(order_t, side) + 1, "side and spilled: 2 bytes");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define O_RARE (O_KEY | 1u << 8)
#else
#define O_RARE (O_KEY << 8 | 1u)
#endif

static __attribute__((noinline)) bool remove_order_rare(fh_engine_t *e, book_t *b, order_t *o, bool publish)
{
    bool top = level_sub(e, b, o->side, o->lv, o->shares, true, publish);
    order_free(e, o);
    return top;
}

static inline __attribute__((always_inline)) bool remove_order(fh_engine_t *e, book_t *b, order_t *o, bool publish)
{
    uint16_t sr;
    memcpy(&sr, &o->side, 2);
    if (FH_UNLIKELY(sr & O_RARE))
        return remove_order_rare(e, b, o, publish);
    bool top = level_sub_tick(e, b, o->side, o->lv, o->shares, true, publish); /* order_free of a home slot: */
    e->room++;
    o->shares = 0;
    return top;
}

/* Reduce order o by shares (E, C, X); over: the counter for taking more than remains. */
static inline __attribute__((always_inline)) bool reduce_order(fh_engine_t *e, book_t *b, order_t *o,
                                                               uint32_t shares, fh_counter_t over, bool publish)
{
    if (shares >= o->shares) {
        if (FH_UNLIKELY(shares > o->shares))
            e->counters[over]++;
        return remove_order(e, b, o, publish);
    }
    o->shares -= shares;
    return level_sub(e, b, o->side, o->lv, shares, false, publish);
}

/* The order's price (rare: an execution's last price, snapshots): from its key, or its tick index times the tick. */
static uint32_t order_price(const fh_engine_t *e, const order_t *o)
{
    uint32_t side = o->side & 1u;
    if (o->side & O_KEY)
        return o->lv ^ (0u - side);
    return (o->lv ^ (0u - side)) * book_side(e, &e->books[o->book], side)->tick;
}

/* ---- messages -------------------------------------------------------------------------------------- */

static __attribute__((noinline)) bool check_slow(fh_engine_t *e, const uint8_t *m, size_t len)
{
    switch (fh_itch_check(m, len)) {
    case FH_ITCH_LONG:
        e->counters[FH_C_long_message]++;
        return true;
    case FH_ITCH_UNKNOWN:
        e->counters[FH_C_unknown_type]++;
        return false;
    case FH_ITCH_SHORT:
        e->counters[FH_C_short_message]++;
        return false;
    default:
        return true;
    }
}

static __attribute__((noinline)) void apply_rare(fh_engine_t *e, const uint8_t *m)
{
    uint16_t locate = fh_itch_locate(m);
    book_t *b = &e->books[locate];
    switch (m[0]) {
    case 'R':
        if (b->status != FH_BOOK_EMPTY) {
            book_begin(e, b);
            set_symbol(b, m + FH_ITCH_OFF_R_STOCK);
            book_end(e, b, m);
        } else {
            book_create(e, locate, m + FH_ITCH_OFF_R_STOCK, m);
        }
        break;
    case 'H':
        if ((b = book_for(e, (uint32_t)locate * sizeof(book_t), m + FH_ITCH_OFF_H_STOCK, m))) {
            book_begin(e, b);
            b->trading_state = (char)m[FH_ITCH_OFF_H_STATE];
            book_end(e, b, m);
            if (e->publish)
                emit_simple(e, FH_EV_STATE, b, m);
        }
        break;
    case 'P':
        if (b->status != FH_BOOK_EMPTY) {
            book_begin(e, b);
            b->last_price = fh_be32(m + FH_ITCH_OFF_P_PRICE);
            b->last_shares = fh_be32(m + FH_ITCH_OFF_P_SHARES);
            book_end(e, b, m);
            if (e->publish)
                emit_trade(e, b, m, fh_be64(m + 36));
        }
        break;
    default:
        break;
    }
}

/* A walked message's length and type as one value: the walker records a message right after its block's 2-byte
 * length (big-endian), so one 4-byte load from m - 2 has both (and m[1], masked off; a block of 0 or 1 bytes is
 * recorded as a copy that has it: walk_one). LEN_TYPE(n, t) is the value of an n-byte message of type t. ITCH's
 * lengths of A and D: ITCH_LEN_A, ITCH_LEN_D. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LEN_TYPE(n, t) ((uint32_t)(n) >> 8 | ((uint32_t)(n) & 0xFF) << 8 | (uint32_t)(t) << 16)
#define LEN_TYPE_MASK 0xFFFFFFu
#else
#define LEN_TYPE(n, t) ((uint32_t)(n) << 16 | (uint32_t)(t) << 8)
#define LEN_TYPE_MASK 0xFFFFFF00u
#endif
static inline uint32_t len_type(const uint8_t *m)
{
    uint32_t w;
    memcpy(&w, m - 2, 4);
    return w & LEN_TYPE_MASK;
}

/* One message: the body of fh_engine_apply, inlined into the block loop of fh_engine_apply_blocks. A walked message
 * comes with its book's offset (walked_t.bk: its locate x sizeof(book_t); every message applied here that has a
 * book is 19 bytes or more, so the walker has read it); fh_engine_apply's is read here. A walked message's len is
 * not passed (0): it is read from the block's length before m, past the tests of A and D (len_type). */
static inline __attribute__((always_inline)) void apply_one(fh_engine_t *e, const uint8_t *m, size_t len, uint32_t bk,
                                                             uint64_t home, bool publish, bool walked)
{
    order_t *o;
    book_t *b;
    bool top = false;
    /* `messages` is not counted here: fh_engine_counters derives it from the per-type counts. A and D are 80-85 %
     * of a day: a walked one is told by its length and type together (len_type), which is its length check too. */
    if (walked) {
        uint32_t lt = len_type(m);
        if (FH_LIKELY(lt == LEN_TYPE(ITCH_LEN_A, 'A'))) {
            e->type_counts['A']++;
            goto add;
        }
        if (FH_LIKELY(lt == LEN_TYPE(ITCH_LEN_D, 'D'))) {
            e->type_counts['D']++;
            goto delete;
        }
    }
    /* A walked message's first byte is always readable (the walker points an empty block at a byte whose type
     * wants more), so the block loop needs no test of len == 0; its length is read here, where A and D never get. */
    if (walked)
        len = fh_be16(m - 2);
    if (FH_UNLIKELY((!walked && len == 0) || len != e->msg_len[m[0]]) && !check_slow(e, m, len))
        return;
    if (!walked) { /* every message that gets here has its 11-byte header; those with a reference, 19 bytes or more */
        bk = (uint32_t)fh_itch_locate(m) * sizeof(book_t);
        home = len >= 19 ? engine_home(e, fh_be64(m + FH_ITCH_OFF_REF)) : 0;
    }
    uint8_t t = m[0]; /* read once: the stores below may alias the message bytes */
    e->type_counts[t]++;
    if (!walked) {
        if (FH_LIKELY(t == 'A'))
            goto add;
        if (FH_LIKELY(t == 'D'))
            goto delete;
    }
    switch (t) {
    case 'A':
    case 'F':
    add:
        top = add_order(e, NULL, bk, m, fh_be64(m + FH_ITCH_OFF_REF), home, e->side_of[m[FH_ITCH_OFF_A_SIDE]],
                        fh_be32(m + FH_ITCH_OFF_A_SHARES), fh_be32(m + FH_ITCH_OFF_A_PRICE), publish, &b);
        if (top && publish)
            emit_bbo(e, b);
        return;
    case 'D':
    delete:
        if (!(o = find_order(e, fh_be64(m + FH_ITCH_OFF_REF), home, bk, &b)))
            return;
        book_begin_if(b, publish);
        top = remove_order(e, b, o, publish);
        break;
    case 'U':
        if (!(o = find_order(e, fh_be64(m + FH_ITCH_OFF_REF), home, bk, &b)))
            return;
        book_begin_if(b, publish);
        {
            uint32_t side = o->side & 1u;
            top = remove_order(e, b, o, publish);
            uint64_t nref = fh_be64(m + FH_ITCH_OFF_U_NEWREF);
            top |= add_order(e, b, 0, m, nref, engine_home(e, nref), side,
                             fh_be32(m + FH_ITCH_OFF_U_SHARES), fh_be32(m + FH_ITCH_OFF_U_PRICE), publish, &b);
        }
        break;
    case 'X':
        if (!(o = find_order(e, fh_be64(m + FH_ITCH_OFF_REF), home, bk, &b)))
            return;
        book_begin_if(b, publish);
        top = reduce_order(e, b, o, fh_be32(m + FH_ITCH_OFF_X_SHARES), FH_C_overcancel, publish);
        break;
    case 'E':
        if (!(o = find_order(e, fh_be64(m + FH_ITCH_OFF_REF), home, bk, &b)))
            return;
        book_begin_if(b, publish);
        b->last_price = order_price(e, o);
        b->last_shares = fh_be32(m + FH_ITCH_OFF_E_SHARES);
        top = reduce_order(e, b, o, b->last_shares, FH_C_overexecution, publish);
        book_end_if(b, m, publish);
        if (publish) {
            emit_trade(e, b, m, fh_be64(m + FH_ITCH_OFF_E_MATCH));
            if (top)
                emit_bbo(e, b);
        }
        return;
    case 'C':
        if (!(o = find_order(e, fh_be64(m + FH_ITCH_OFF_REF), home, bk, &b)))
            return;
        book_begin_if(b, publish);
        {
            uint32_t shares = fh_be32(m + FH_ITCH_OFF_E_SHARES);
            bool printable = m[FH_ITCH_OFF_C_PRINTABLE] == 'Y';
            if (printable) {
                b->last_price = fh_be32(m + FH_ITCH_OFF_C_PRICE);
                b->last_shares = shares;
            }
            top = reduce_order(e, b, o, shares, FH_C_overexecution, publish);
            book_end_if(b, m, publish);
            if (publish) {
                if (printable)
                    emit_trade(e, b, m, fh_be64(m + FH_ITCH_OFF_E_MATCH));
                if (top)
                    emit_bbo(e, b);
            }
        }
        return;
    default:
        apply_rare(e, m);
        return;
    }
    book_end_if(b, m, publish);
    if (top && publish)
        emit_bbo(e, b);
}

void fh_engine_apply(fh_engine_t *e, const uint8_t *m, size_t len)
{
    flush_staged(e);
    apply_one(e, m, len, 0, 0, e->publish, false);
}

static inline uint64_t tsc_now(void)
{
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#else
    return 0;
#endif
}

/* End of a batch: wake readers that sleep on the event ring, if any event was published. */
static inline void batch_end(fh_engine_t *e)
{
    uint64_t head = __atomic_load_n(e->hdr_head, __ATOMIC_RELAXED);
    if (e->publish && head != e->woken) {
        fh_seg_wake(e->seg);
        e->woken = head;
    }
}

void fh_engine_set_rx_tsc(fh_engine_t *e, uint64_t tsc) { e->rx_tsc = tsc; }

void fh_engine_batch_begin(fh_engine_t *e, uint64_t rx_tsc)
{
    e->rx_tsc = rx_tsc;
    e->now_tsc = tsc_now();
}

void fh_engine_batch_begin_at(fh_engine_t *e, uint64_t rx_tsc, uint64_t now_tsc)
{
    e->rx_tsc = rx_tsc;
    e->now_tsc = now_tsc;
}

void fh_engine_batch_end(fh_engine_t *e)
{
    flush_staged(e);
    batch_end(e);
}

_Static_assert(offsetof(fh_engine_t, now_tsc) == offsetof(fh_engine_t, rx_tsc) + 8, "fh_engine_stamps: rx, now");
uint64_t *fh_engine_stamps(fh_engine_t *e) { return &e->rx_tsc; }

void fh_engine_publish_stats(fh_engine_t *e)
{
    flush_staged(e);
    uint64_t c[FH_C_COUNT];
    fh_engine_counters(e, c);
    fh_seg_publish_stats(e->seg, c, FH_C_COUNT, e->type_counts);
    fh_seg_heartbeat(e->seg);
}

int fh_engine_set_status(fh_engine_t *e, uint16_t locate, int status, const uint8_t *m)
{
    flush_staged(e);
    book_t *b = &e->books[locate];
    if (b->status == FH_BOOK_EMPTY || (status != FH_BOOK_LIVE && status != FH_BOOK_STALE))
        return -1;
    if (b->status == status || (status == FH_BOOK_LIVE && (b->flags & FH_BOOK_F_INCOMPLETE)))
        return 0; /* (an incomplete book stays stale: book_incomplete) */
    static const uint8_t none[FH_ITCH_HDR_LEN];
    m = m ? m : none;
    book_begin(e, b);
    b->status = (uint8_t)status;
    book_end(e, b, m);
    if (e->publish) {
        emit_simple(e, status == FH_BOOK_STALE ? FH_EV_STALE : FH_EV_RECOVERED, b, m);
        batch_end(e);
    }
    return 0;
}

int fh_engine_set_all_status(fh_engine_t *e, int status)
{
    flush_staged(e);
    if (status != FH_BOOK_LIVE && status != FH_BOOK_STALE)
        return -1;
    static const uint8_t none[FH_ITCH_HDR_LEN];
    int n = 0;
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++) {
        book_t *b = &e->books[loc];
        if (b->status == FH_BOOK_EMPTY || b->status == status ||
            (status == FH_BOOK_LIVE && (b->flags & FH_BOOK_F_INCOMPLETE))) /* stays stale: book_incomplete */
            continue;
        book_begin(e, b);
        b->status = (uint8_t)status;
        book_end(e, b, none);
        if (e->publish)
            emit_simple(e, status == FH_BOOK_STALE ? FH_EV_STALE : FH_EV_RECOVERED, b, none);
        n++;
    }
    e->new_status = (uint8_t)status;
    batch_end(e);
    return n;
}

/* ---- the engine as a feed's consumer (fh/consumer.h) ------------------------------------------------------ */

static void c_apply_blocks(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                           size_t len)
{
    (void)session, (void)first_seq, (void)count;
    fh_engine_apply_blocks((fh_engine_t *)ctx, p, len);
}

static int c_apply_datagram(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                            size_t len)
{
    (void)session, (void)first_seq;
    return fh_engine_apply_datagram((fh_engine_t *)ctx, p, len, count);
}

static void c_apply(void *ctx, const char *session, uint64_t seq, const uint8_t *m, size_t len)
{
    (void)session, (void)seq;
    fh_engine_apply((fh_engine_t *)ctx, m, len);
}

static void c_lost(void *ctx, const char *session, uint64_t from, uint64_t to)
{
    (void)session, (void)from, (void)to;
    fh_engine_set_all_status((fh_engine_t *)ctx, FH_BOOK_STALE);
}

static void c_snapshot_begin(void *ctx, const char *session)
{
    (void)session;
    fh_engine_set_new_book_status((fh_engine_t *)ctx, FH_BOOK_STALE); /* live once the snapshot has ended */
    fh_engine_clear_books((fh_engine_t *)ctx);
}

static void c_snapshot_end(void *ctx, const char *session, uint64_t seq)
{
    (void)session, (void)seq;
    fh_engine_set_all_status((fh_engine_t *)ctx, FH_BOOK_LIVE);
}

static int stage_datagram(fh_engine_t *e, const uint8_t *p, size_t len, uint32_t count);
static int c_stage_datagram(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                            size_t len)
{
    (void)session, (void)first_seq;
    return stage_datagram((fh_engine_t *)ctx, p, len, count);
}

void fh_engine_consumer(fh_engine_t *e, fh_feed_consumer_t *out)
{
    /* apply_datagram checks a datagram's framing with ITCH's lengths as it walks it (a feed with the same table
     * then does not walk it first) */
    *out = (fh_feed_consumer_t){ e, c_apply_blocks, c_apply, c_lost, c_snapshot_begin, c_snapshot_end,
                                 c_apply_datagram, fh_itch_len };
}

void fh_engine_consumer_staged(fh_engine_t *e, fh_feed_consumer_t *out)
{
    fh_engine_consumer(e, out);
    out->apply_datagram = c_stage_datagram;
}

/* An empty block's message, for the block loop: a type whose length is not 0, so that the length check
 * sends it to check_slow, which counts it short without reading it; after its length (0) and before a pad byte, as
 * len_type reads it (the walker records empty_block + 2). */
static const uint8_t empty_block[4] = { 0, 0, 'A', 0 };

/* One whole block of the walker (walk_chunk, walk_datagram): its entry, and the prefetches of its order slot(s) and
 * book line. */
static inline __attribute__((always_inline)) void walk_one(const fh_engine_t *e, const order_t *orders, uint64_t mask,
                                                           uint32_t sh, const book_t *books, walked_t *wp,
                                                           const uint8_t *m, size_t n)
{
    wp->m = m;
    if (FH_LIKELY(n >= 19)) {
        uint32_t bk = (uint32_t)fh_be16(m + 1) * sizeof(book_t); /* every ITCH message's stock locate: its book */
        wp->bk = bk;
        uint64_t sl = order_home(fh_be64(m + FH_ITCH_OFF_REF), mask, sh);
        wp->slot = (uint32_t)sl;
        __builtin_prefetch(&orders[sl], 1);
        __builtin_prefetch((const uint8_t *)books + bk, 1);
        if (n == 35) /* U's length (a V or a J, the others of 35 bytes, prefetch for nothing) */
            __builtin_prefetch(&orders[order_home(fh_be64(m + FH_ITCH_OFF_U_NEWREF), mask, sh)], 1);
    } else {
        wp->bk = 0;
        wp->slot = 0;
        if (n <= 1) /* len_type reads a message's first 2 bytes: these get a copy that has them */
            wp->m = n ? e->one_block[m[0]] + 2 : empty_block + 2;
    }
}

static inline __attribute__((always_inline)) uint32_t walk_chunk(const fh_engine_t *e, const uint8_t **qp,
                                                                 const uint8_t *end, walked_t *w)
{
    /* Addresses as integers: a block's claimed end may lie past the buffer's, and is only compared. */
    uintptr_t q = (uintptr_t)*qp, stop = (uintptr_t)end;
    const order_t *orders = e->orders;
    const book_t *books = e->books;
    uint64_t mask = e->mask;
    uint32_t sh = e->home_sh;
    walked_t *wp = w, *wend = w + WALK_CHUNK;
    /* One bound test a block (bench/engine.md section 16): a block that leaves room for the next one's length
     * (next <= stop - 2) is whole and the next length is readable; only a buffer's last block takes a second test.
     * stop - 2 is not computed before stop - q >= 2 is known (an empty buffer may be at address 0). */
    uintptr_t stop2, next, n; /* n in the width of the addresses: one zero-extension of a length, not two */
    if (FH_UNLIKELY(stop - q < 2))
        goto done;
    stop2 = stop - 2;
    /* Four blocks a turn: WALK_CHUNK is a multiple of 4, so the chunk can only fill after a fourth (one test of wp a
     * turn, not one a block: bench/engine.md section 17, -2.4 a message; two a turn -1.6). */
    for (;;) {
#define WALK_STEP                                                                                                      \
    n = fh_be16((const uint8_t *)q);                                                                                   \
    next = q + 2 + n;                                                                                                  \
    if (FH_UNLIKELY(next > stop2))                                                                                     \
        break;                                                                                                         \
    walk_one(e, orders, mask, sh, books, wp++, (const uint8_t *)q + 2, n);                                             \
    q = next;
        WALK_STEP
        WALK_STEP
        WALK_STEP
        WALK_STEP
#undef WALK_STEP
        if (wp == wend)
            goto done;
    }
    if (next <= stop) { /* the last block, ending at stop or a byte before it */
        walk_one(e, orders, mask, sh, books, wp++, (const uint8_t *)q + 2, n);
        q = next;
    }
done:
    wp->m = NULL;
    *qp = (const uint8_t *)q;
    return (uint32_t)(wp - w);
}

/* The ladders (both sides' headers, two lines) of a chunk's books, whose lines the walker prefetched a chunk ago,
 * so that reading each book's ladder index here seldom waits. The walker kept each block's book (walked_t.bk), so
 * this pass does not read the blocks again (-2.2 instructions a message, section 15), and kept it scaled, so that the
 * pass shifts nothing (-1, section 16). bench/engine.md section 14: the book, ladder and level
 * lines are most of a message's misses once the order slots are prefetched; this pass costs ~24 instructions a
 * message and saves 6-10% of the wall clock on the 2 M days (the walker's book prefetch 3-5% of it). */
static inline __attribute__((always_inline)) void ladder_prefetch(const fh_engine_t *e, uint32_t bk, bool publish)
{
    const book_t *b = (const book_t *)((const uint8_t *)e->books + bk);
    if (publish) /* the book's cached bests (e->bbo[locate]: bk / 2), read by the level pass (bench/engine.md 18) */
        __builtin_prefetch((const uint8_t *)e->bbo + bk / 2, 1);
    const lside_t *ls = e->lside + (size_t)BOOK_LAD(b) * 2; /* size_t: one shift, not two */
    __builtin_prefetch(ls, 1);
    __builtin_prefetch(ls + 1, 1);
}

static inline __attribute__((always_inline)) void ladders_prefetch(const fh_engine_t *e, const walked_t *w, uint32_t n,
                                                                    bool publish)
{
    /* the walker kept each book (0 for a short message): no test. Eight entries a turn, so that the loop's own test
     * and step are paid once for eight (bench/engine.md section 17: -2.6 a message; four a turn -2.2, two -1.3); the
     * chunk's count (not its NULL end) bounds it, and the last n % 8 follow: the same prefetches in the same order. */
    const walked_t *c = w, *eights = w + (n & ~7u);
    for (; c != eights; c += 8) {
        ladder_prefetch(e, c[0].bk, publish);
        ladder_prefetch(e, c[1].bk, publish);
        ladder_prefetch(e, c[2].bk, publish);
        ladder_prefetch(e, c[3].bk, publish);
        ladder_prefetch(e, c[4].bk, publish);
        ladder_prefetch(e, c[5].bk, publish);
        ladder_prefetch(e, c[6].bk, publish);
        ladder_prefetch(e, c[7].bk, publish);
    }
    for (; n & 7; n--, c++)
        ladder_prefetch(e, c->bk, publish);
}

/* The level line a message will touch, once its book line and ladder headers are in (the level pass: bench/engine.md
 * section 18): an add's from its price and side on the book's ladder, any other's from the order in its reference's
 * home slot (prefetched by the walker), whose level and side it reads. A hint: an order not in its home slot, a
 * level off the tick or outside the window, a message that is neither (its slot 0, its book 0) prefetch a line for
 * nothing, and every address is inside the slots. A U (8 % of a day) also prefetches its new price's level, on the
 * order's side (0.98-1.0 of the time for 3.5 instructions a message). While publishing, both sides' best levels
 * too (from the book's bbo_t, prefetched by the ladder pass): 0.93-0.95 of the time for 10.6 instructions.
 * The level's line is what add, reduce and delete read first (g->orders: new or existing level, emptied or not,
 * the branches that mispredict most), after a chain of three loads; with it in, a 2 M day runs in 0.79-0.87 of the
 * time for +28 instructions a message. Either half (adds, references) alone gains 0-7 %. The branch on the type is
 * kept: a version without it (both computed, one chosen by masks) ran 4-6 % slower. */
static inline __attribute__((always_inline)) void level_prefetch(const fh_engine_t *e, const walked_t *c, bool publish)
{
    if (publish) { /* both sides' best levels, which every add and removal tests and a BBO event reads */
        const bbo_t *cb = (const bbo_t *)((const uint8_t *)e->bbo + c->bk / 2);
        __builtin_prefetch(cb->g[0], 1);
        __builtin_prefetch(cb->g[1], 1);
    }
    const uint8_t *m = c->m;
    const book_t *b = (const book_t *)((const uint8_t *)e->books + c->bk);
    const lside_t *L = e->lside + (size_t)BOOK_LAD(b) * 2;
    uint32_t side, kx, lt = len_type(m);
    if (lt == LEN_TYPE(ITCH_LEN_A, 'A')) { /* its price and side: m is 36 bytes */
        side = m[FH_ITCH_OFF_A_SIDE] == 'S';
        kx = lad_q(L, fh_be32(m + FH_ITCH_OFF_A_PRICE)) ^ (0u - side);
    } else {
        const order_t *o = e->orders + c->slot;
        side = o->side & 1u;
        kx = o->lv;
        if (lt == LEN_TYPE(35, 'U')) { /* a replace: also its new price's level, on the order's side */
            uint32_t nk = lad_q(L, fh_be32(m + FH_ITCH_OFF_U_PRICE)) ^ (0u - side);
            __builtin_prefetch(&L[side].slot[nk & LAD_MASK], 1);
        }
    }
    __builtin_prefetch(&L[side].slot[kx & LAD_MASK], 1);
}

static inline __attribute__((always_inline)) void levels_prefetch(const fh_engine_t *e, const walked_t *w, uint32_t n,
                                                                   bool publish)
{
    /* four a turn (bench/engine.md section 18: -1.8 instructions a message), the last n % 4 after */
    const walked_t *c = w, *fours = w + (n & ~3u);
    for (; c != fours; c += 4) {
        level_prefetch(e, &c[0], publish);
        level_prefetch(e, &c[1], publish);
        level_prefetch(e, &c[2], publish);
        level_prefetch(e, &c[3], publish);
    }
    for (; n & 3; n--, c++)
        level_prefetch(e, c, publish);
}

/* Every 2^BATCH_SHIFT messages of a long run of blocks, readers are woken and (every 2^STATS_SHIFT) the
 * stats and heartbeat refreshed, so that a reader follows even a single call over a whole day. Checked once
 * a chunk: a multiple of WALK_CHUNK. */
#define BATCH_SHIFT 8
#define STATS_SHIFT 16
_Static_assert((1u << BATCH_SHIFT) % WALK_CHUNK == 0, "the batch counter is checked once a chunk");

/* The block loop, for publish on or off (a constant: two copies, each without the other's tests). A pipeline of
 * three chunks (32 messages each): the walker records chunk N + 2 (its order slots and book lines prefetched), the
 * ladder pass reads chunk N + 1's books (prefetching their ladder headers), the level pass reads chunk N's books,
 * ladders and orders (prefetching their level lines), then the loop applies chunk N. */
static inline __attribute__((always_inline)) size_t apply_blocks(fh_engine_t *e, const uint8_t *p, size_t len,
                                                                 bool publish)
{
    const uint8_t *end = p + len, *q = p;
    walked_t w[3][WALK_CHUNK + 1];
    uint32_t x = 0, cur = walk_chunk(e, &q, end, w[0]);
    uint32_t next = cur == WALK_CHUNK ? walk_chunk(e, &q, end, w[1]) : 0;
    ladders_prefetch(e, w[0], cur, publish);
    e->now_tsc = tsc_now();
    uint64_t count = 0;
    while (cur) {
        uint32_t x1 = x == 2 ? 0 : x + 1, x2 = x1 == 2 ? 0 : x1 + 1;
        uint32_t after = next == WALK_CHUNK ? walk_chunk(e, &q, end, w[x2]) : 0;
        ladders_prefetch(e, w[x1], next, publish);
        levels_prefetch(e, w[x], cur, publish);
        for (const walked_t *c = w[x]; c->m; c++) /* the loop keeps no count: the chunk ends with m NULL */
            apply_one(e, c->m, 0, c->bk, c->slot, publish, true);
        if (publish && FH_UNLIKELY(((count += cur) & ((1u << BATCH_SHIFT) - 1)) == 0)) {
            batch_end(e);
            e->now_tsc = tsc_now();
            if ((count & ((1u << STATS_SHIFT) - 1)) == 0)
                fh_engine_publish_stats(e);
        }
        x = x1;
        cur = next;
        next = after;
    }
    if (q != end)
        e->counters[FH_C_truncated]++;
    batch_end(e);
    return (size_t)(q - p);
}

size_t fh_engine_apply_blocks(fh_engine_t *e, const uint8_t *p, size_t len)
{
    flush_staged(e);
    return e->publish ? apply_blocks(e, p, len, true) : apply_blocks(e, p, len, false);
}

/* walk_chunk for one whole datagram of count blocks (w has room for count), with its framing checked on the way:
 * each block non-empty, within [p, end), of its type's length when the type is known (msg_len, ITCH's), and exactly
 * count of them ending at end (fh_blocks_framed's answer with fh_itch_len). Returns 0, or -1: misframed.
 *
 * Two tests a block on the common path, as walk_chunk's one bound test: its length against walk_len (an unknown
 * type's WALK_ANY_LEN, which no known type has: a block of that length is any length's, one of another length is
 * checked apart for being empty), and its end against end - 3, which leaves room for the next block's length and
 * type (so both are readable without a test); a block that ends past it must be the count-th and end at end. */
static inline __attribute__((always_inline)) int walk_datagram(const fh_engine_t *e, const uint8_t *p,
                                                               const uint8_t *end, uint32_t count, walked_t *w)
{
    const order_t *orders = e->orders;
    const book_t *books = e->books;
    uint64_t mask = e->mask;
    uint32_t sh = e->home_sh;
    /* Addresses as integers: a block's claimed end may lie past the buffer's, and is only compared. */
    uintptr_t q = (uintptr_t)p, stop = (uintptr_t)end;
    if (FH_UNLIKELY(stop - q < 3 || count == 0))
        return count == 0 && q == stop ? 0 : -1;
    uintptr_t stop3 = stop - 3;
    for (walked_t *wp = w, *last = w + count - 1;; wp++) {
        size_t n = fh_be16((const uint8_t *)q);
        const uint8_t *m = (const uint8_t *)q + 2;
        size_t want = e->walk_len[m[0]];
        uintptr_t next = q + 2 + n;
        if (FH_UNLIKELY(n != want) && (want != WALK_ANY_LEN || n == 0))
            return -1;
        if (FH_UNLIKELY(next > stop3)) { /* the last block, or misframed */
            if (next != stop || wp != last)
                return -1;
            walk_one(e, orders, mask, sh, books, wp, m, n);
            return 0;
        }
        walk_one(e, orders, mask, sh, books, wp, m, n);
        q = next;
        if (FH_UNLIKELY(wp == last)) /* count blocks, and bytes after them */
            return -1;
    }
}

/* fh_engine_apply_datagram: a datagram of up to DATAGRAM_WALK messages (an MTU of 1500 carries at most 105 ITCH
 * messages) walked (checked, order slots and book lines prefetched) once, then applied, each message's apply preceded
 * by the ladder prefetch of the message LAD_AHEAD on (its book line asked for by the walk) and the level prefetch of
 * the message LVL_AHEAD on (its ladder headers asked for LAD_AHEAD - LVL_AHEAD messages ago); a longer one checked by
 * fh_blocks_framed first, then applied by the block loop. The distances (bench/engine.md sections 15 and 18,
 * fh-bench-mold --consumer engine, 2 M days, MTUs 1500 and 340): 6 and 3 ran in 0.81-0.95 of the time of the ladder
 * prefetch alone at 4; 4 and 2 in 0.88-0.96, 8 and 4 in 0.78-1.0 (at MTU 340, ~10 messages a datagram, 8 is most of
 * one). The entries past count are an empty block's (book 0, slot 0): no test in the loop. */
#define DATAGRAM_WALK 128
#define LAD_AHEAD 6
#define LVL_AHEAD 3
_Static_assert(LVL_AHEAD < LAD_AHEAD, "a level is prefetched after its ladder headers, and within the entries walked");
static inline __attribute__((always_inline)) int apply_datagram(fh_engine_t *e, const uint8_t *p, size_t len,
                                                                uint32_t count, bool publish)
{
    walked_t w[DATAGRAM_WALK + LAD_AHEAD];
    if (FH_UNLIKELY(count > DATAGRAM_WALK)) {
        if (!fh_blocks_framed(p, len, count, e->msg_len))
            return -1;
        fh_engine_apply_blocks(e, p, len);
        return 0;
    }
    if (FH_UNLIKELY(walk_datagram(e, p, p + len, count, w)))
        return -1;
    e->now_tsc = tsc_now();
    for (uint32_t i = count; i < count + LAD_AHEAD; i++)
        w[i] = (walked_t){ empty_block + 2, 0, 0 };
    for (uint32_t i = 0; i < LAD_AHEAD && i < count; i++)
        ladder_prefetch(e, w[i].bk, publish);
    for (uint32_t i = 0; i < LVL_AHEAD && i < count; i++)
        level_prefetch(e, &w[i], publish);
    for (uint32_t i = 0; i < count; i++) {
        ladder_prefetch(e, w[i + LAD_AHEAD].bk, publish); /* its book line prefetched by the walk: LAD_AHEAD ahead */
        level_prefetch(e, &w[i + LVL_AHEAD], publish);
        apply_one(e, w[i].m, 0, w[i].bk, w[i].slot, publish, true); /* walked: no empty block gets here */
    }
    batch_end(e);
    return 0;
}

int fh_engine_apply_datagram(fh_engine_t *e, const uint8_t *p, size_t len, uint32_t count)
{
    flush_staged(e);
    return e->publish ? apply_datagram(e, p, len, count, true) : apply_datagram(e, p, len, count, false);
}

/* The staged run (fh_engine_consumer_staged): whole datagrams walked (checked, their order slots and book lines
 * prefetched) into staged[] as the feed hands them over, and applied behind the walk as apply_datagram applies one
 * datagram, each message's apply preceded by the ladder prefetch of the message STAGE_LAD on and the level prefetch
 * of the message STAGE_LVL on; the run keeps STAGE_LEAD messages walked ahead of the one applied, across datagrams,
 * so that a burst of datagrams of a few messages each is applied with the lead of one long run. bench/engine.md
 * section 19 (fh-bench-mold, bursts of 32 datagrams): 0.78-0.90 of the time of one datagram at a time at MTU 340
 * (~9 messages a datagram) and 0.87 of the instructions, 0.87-1.01 of the time at MTU 1500 (~47) and 0.97 of the
 * instructions. Applying the whole run at once at the burst's end or at 128 messages did as well on the uniform day
 * and worse on the real-shaped one at MTU 1500 (0.97-1.03); leads of 16, 64 and 96 were no better than 32.
 *
 * staged_run applies [shead, upto) of a run whose staged messages end at end: the messages STAGE_LAD and STAGE_LVL
 * on are prefetched while they are in the run (behind the walk always; at a flush the run's last messages apply
 * without them), and a run's first apply (shead 0) first prefetches its first ladders and levels. Nothing is
 * prefetched past the run, so that a flush of one small datagram (a paced feed's burst) costs what
 * fh_engine_apply_datagram does. */
_Static_assert(STAGE_LVL < STAGE_LAD && STAGE_LAD <= STAGE_LEAD, "prefetched in order, and within the staged run");
static inline __attribute__((always_inline)) void staged_run(fh_engine_t *e, uint32_t upto, uint32_t end,
                                                             bool publish)
{
    /* restrict: nothing the loop calls writes the run, so its entries are not loaded again after each apply's stores
     * (as the datagram path's own array on the stack is not) */
    const walked_t *restrict w = e->staged;
    uint32_t i = e->shead;
    if (i == 0) {
        for (uint32_t k = 0; k < STAGE_LAD && k < end; k++)
            ladder_prefetch(e, w[k].bk, publish);
        for (uint32_t k = 0; k < STAGE_LVL && k < end; k++)
            level_prefetch(e, &w[k], publish);
    }
    e->now_tsc = tsc_now(); /* the events' publish stamp */
    uint32_t both = end > STAGE_LAD ? end - STAGE_LAD : 0, lvl = end > STAGE_LVL ? end - STAGE_LVL : 0;
    both = upto < both ? upto : both;
    lvl = upto < lvl ? upto : lvl;
    for (const walked_t *restrict c = w + i, *stop = w + both; c < stop; c++) {
        ladder_prefetch(e, c[STAGE_LAD].bk, publish);
        level_prefetch(e, &c[STAGE_LVL], publish);
        apply_one(e, c->m, 0, c->bk, c->slot, publish, true);
    }
    for (i = i > both ? i : both; i < lvl; i++) {
        level_prefetch(e, &w[i + STAGE_LVL], publish);
        apply_one(e, w[i].m, 0, w[i].bk, w[i].slot, publish, true);
    }
    for (; i < upto; i++)
        apply_one(e, w[i].m, 0, w[i].bk, w[i].slot, publish, true);
    e->shead = upto;
}

/* [shead, upto) of a run whose staged messages end at end, publishing as the engine is set to (staged_run's copy for
 * each, as the block loop keeps one). */
static inline __attribute__((always_inline)) void staged_apply(fh_engine_t *e, uint32_t upto, uint32_t end)
{
    if (e->publish)
        staged_run(e, upto, end, true);
    else
        staged_run(e, upto, end, false);
}

/* The whole run applied (flush_staged). */
static __attribute__((noinline)) void staged_flush(fh_engine_t *e)
{
    uint32_t n = e->nstaged;
    e->nstaged = 0; /* first: nothing below stages, and a call that flushes finds nothing */
    staged_apply(e, n, n);
    e->shead = 0;
}

/* All but the run's last STAGE_LEAD applied. */
static __attribute__((noinline)) void staged_advance(fh_engine_t *e)
{
    uint32_t n = e->nstaged;
    staged_apply(e, n - STAGE_LEAD, n);
}

/* fh_engine_apply_datagram for the staged consumer: the datagram walked onto the run (its framing checked as
 * fh_engine_apply_datagram checks it: -1, nothing staged, when misframed), the run applied up to STAGE_LEAD from its
 * end once STAGE_LEAD + STAGE_STEP messages wait. When the datagram does not fit after the run, what waits (at most
 * STAGE_LEAD + STAGE_STEP) is moved to the start (its first apply prefetches again, harmlessly), or the run is applied
 * whole first; a datagram of more than STAGE_CAP messages is applied alone. */
static int stage_datagram(fh_engine_t *e, const uint8_t *p, size_t len, uint32_t count)
{
    if (FH_UNLIKELY(count > STAGE_CAP - e->nstaged)) {
        uint32_t h = e->shead, t = e->nstaged;
        if (h && count <= STAGE_CAP - (t - h)) {
            memmove(e->staged, e->staged + h, (t - h) * sizeof(walked_t));
            e->nstaged = t - h;
            e->shead = 0;
        } else {
            flush_staged(e);
            if (count > STAGE_CAP)
                return fh_engine_apply_datagram(e, p, len, count);
        }
    }
    if (FH_UNLIKELY(walk_datagram(e, p, p + len, count, e->staged + e->nstaged)))
        return -1;
    if ((e->nstaged += count) - e->shead > STAGE_LEAD + STAGE_STEP)
        staged_advance(e);
    return 0;
}

/* Idle warming (fh_engine_warm): book made[c]'s lines are read here, where the call WARM_AHEAD books earlier
 * prefetched its book line and cached bests, so that the loads seldom wait (a load that waits delays the poll that
 * follows, and with it the next frame's rx). What an apply reads first: the book line, the cached bests (bbo_t) and
 * the two best levels they point to, and the two ladder headers; the order slots, spread over the order table, are
 * not worth it. */
#define WARM_AHEAD 16
uint32_t fh_engine_warm(fh_engine_t *e, uint32_t books)
{
    uint32_t n = e->nbooks, c = e->warm_at;
    if (!n)
        return 0;
    for (; books; books--) {
        uint32_t a = c + WARM_AHEAD;
        a = a < n ? a : a % n;
        __builtin_prefetch(&e->books[e->made[a]]);
        __builtin_prefetch(&e->bbo[e->made[a]]);
        const book_t *b = &e->books[e->made[c]];
        const bbo_t *cb = &e->bbo[e->made[c]];
        __builtin_prefetch(cb->g[0]);
        __builtin_prefetch(cb->g[1]);
        if (BOOK_LAD(b) < e->lad_books) { /* its own ladders (books past ladder_books share an empty pair) */
            const lside_t *ls = e->lside + (size_t)BOOK_LAD(b) * 2;
            __builtin_prefetch(ls);
            __builtin_prefetch(ls + 1);
        }
        c = c + 1 < n ? c + 1 : 0;
    }
    e->warm_at = c;
    return n;
}

/* ---- readers --------------------------------------------------------------------------------------- */

uint64_t *fh_engine_counter_slot(fh_engine_t *e, int c)
{
    return c >= 0 && c < FH_C_COUNT && c != FH_C_messages ? &e->counters[c] : NULL;
}

void fh_engine_counters(const fh_engine_t *e, uint64_t out[FH_C_COUNT])
{
    memcpy(out, e->counters, sizeof e->counters);
    uint64_t n = e->counters[FH_C_unknown_type] + e->counters[FH_C_short_message];
    for (int t = 0; t < 256; t++)
        n += e->type_counts[t];
    out[FH_C_messages] = n;
}
const uint64_t *fh_engine_type_counts(const fh_engine_t *e) { return e->type_counts; }
uint64_t fh_engine_live_orders(const fh_engine_t *e) { return e->cfg.max_orders - e->room; }
uint64_t fh_engine_spilled(const fh_engine_t *e) { return e->spill_live; }
uint64_t fh_engine_levels_used(const fh_engine_t *e) { return e->levels_peak; }

uint32_t fh_engine_locates(const fh_engine_t *e, uint16_t *out, uint32_t cap)
{
    uint32_t n = 0;
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++)
        if (e->books[loc].status != FH_BOOK_EMPTY) {
            if (n < cap)
                out[n] = (uint16_t)loc;
            n++;
        }
    return n;
}

int fh_engine_book_info(const fh_engine_t *e, uint16_t locate, fh_book_info_t *out)
{
    const book_t *b = &e->books[locate];
    if (b->status == FH_BOOK_EMPTY)
        return -1;
    memset(out, 0, sizeof *out);
    out->locate = locate;
    memcpy(out->symbol, b->symbol, sizeof b->symbol);
    out->symbol[8] = 0;
    out->symbol_len = b->symbol_len;
    out->status = b->status;
    out->trading_state = b->trading_state;
    for (int sd = 0; sd < 2; sd++)
        out->levels[sd] = b->side[sd].n + book_side(e, b, sd)->nl;
    out->last_price = b->last_price;
    out->last_shares = b->last_shares;
    out->updates = b->updates;
    return 0;
}

uint32_t fh_engine_levels(const fh_engine_t *e, uint16_t locate, int side, fh_level_t *out, uint32_t cap)
{
    if (e->books[locate].status == FH_BOOK_EMPTY || (side != FH_SIDE_BID && side != FH_SIDE_ASK))
        return 0;
    const book_t *b = &e->books[locate];
    const side_t *s = &b->side[side];
    const lside_t *L = book_side(e, b, side);
    const uint32_t *k = e->lkey + s->off;
    const agg_t *g = e->lagg + s->off;
    uint32_t sd = (uint32_t)side, n = 0, d = s->n, left = L->nl, kx = L->best;
    while (n < cap && (d || left)) { /* merge the window (down from its best) and the deep arrays (down from the top) */
        uint32_t lk = left ? lad_key(L, sd, kx) : 0;
        if (left && (!d || k[d - 1] < lk)) {
            const agg_t *a = &L->slot[kx & LAD_MASK];
            out[n++] = (fh_level_t){ .price = lk ^ (0u - sd), .orders = a->orders, .shares = a->shares };
            if (--left)
                kx = lad_next_below(L, kx);
        } else {
            d--;
            out[n++] = (fh_level_t){ .price = k[d] ^ (0u - sd), .orders = g[d].orders, .shares = g[d].shares };
        }
    }
    return n;
}

/* ---- snapshots (fh/book.h) ------------------------------------------------------------------------------
 * File: fh_snap_hdr_t (128 bytes), then the body: counters (FH_C_COUNT u64, the raw ones: `messages` is
 * derived), type counts (256 u64), books (nbooks fh_snap_book_t), orders (norders fh_snap_order_t), all
 * little-endian. CRC-32C (Castagnoli; SSE4.2 when the CPU has it) of the body, and of the header's first
 * 120 bytes. */
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fh_snap_hdr {
    uint64_t magic;
    uint32_t version, hdr_size;
    char session[10];
    uint8_t pad0[6];
    uint64_t next_seq;
    uint32_t day, flags;
    uint64_t created_ns;
    uint32_t nbooks, ncounters;
    uint64_t norders;
    uint64_t body_bytes;
    uint32_t max_orders_hint, pad1; /* the engine's max_orders when saved (information) */
    uint8_t reserved[32];
    uint32_t body_crc, hdr_crc;
} fh_snap_hdr_t;
_Static_assert(sizeof(fh_snap_hdr_t) == 128, "snapshot header is 128 bytes");

typedef struct fh_snap_book {
    uint16_t locate;
    uint8_t symbol_len;
    char trading_state;
    uint8_t status, flags;
    uint8_t pad[2];
    char symbol[8];
    uint32_t last_price, last_shares;
    uint64_t itch_ts;
    uint32_t updates, pad1;
} fh_snap_book_t;
_Static_assert(sizeof(fh_snap_book_t) == 40, "snapshot book is 40 bytes");

typedef struct fh_snap_order {
    uint64_t ref;
    uint32_t price, shares;
    uint16_t locate;
    uint8_t side;
    uint8_t pad[5];
} fh_snap_order_t;
_Static_assert(sizeof(fh_snap_order_t) == 24, "snapshot order is 24 bytes");

static uint32_t crc32c_table[256];

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc32c_table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            crc32c_table[i] = c;
        }
    crc = ~crc;
    while (n--)
        crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = ~crc & 0xffffffffu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

/* CRC-32C of n bytes, continuing from crc (0 to start). */
static uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_hw(crc, p, n);
#endif
    return crc32c_sw(crc, p, n);
}

typedef struct snap_out {
    FILE *f;
    uint32_t crc;
    uint64_t bytes;
    int err;
} snap_out_t;

static void snap_put(snap_out_t *o, const void *p, size_t n)
{
    if (o->err)
        return;
    if (fwrite(p, 1, n, o->f) != n)
        o->err = errno ? errno : EIO;
    o->crc = crc32c(o->crc, p, n);
    o->bytes += n;
}

int fh_engine_snapshot_save(fh_engine_t *e, const fh_snapshot_meta_t *meta, const char *path)
{
    flush_staged(e);
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return FH_ERR("snapshot path too long");
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return FH_ERR("cannot create snapshot %s: %s", tmp, strerror(errno));
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    fh_snap_hdr_t h;
    memset(&h, 0, sizeof h);
    snap_out_t o = { f, 0, 0, 0 };
    if (fwrite(&h, 1, sizeof h, f) != sizeof h) /* placeholder, rewritten at the end */
        o.err = errno ? errno : EIO;
    snap_put(&o, e->counters, sizeof e->counters);
    snap_put(&o, e->type_counts, sizeof e->type_counts);
    uint32_t nbooks = 0;
    for (uint32_t loc = 0; loc <= FH_MAX_LOCATE; loc++) {
        const book_t *b = &e->books[loc];
        if (b->status == FH_BOOK_EMPTY)
            continue;
        fh_snap_book_t sb = { .locate = (uint16_t)loc, .symbol_len = b->symbol_len, .trading_state = b->trading_state,
                              .status = b->status, .flags = b->flags, .last_price = b->last_price,
                              .last_shares = b->last_shares, .itch_ts = b->itch_ts, .updates = b->updates };
        memcpy(sb.symbol, b->symbol, 8);
        snap_put(&o, &sb, sizeof sb);
        nbooks++;
    }
    uint64_t norders = 0;
    for (uint64_t i = 0; i <= e->mask; i++) {
        const order_t *q = &e->orders[i];
        if (!q->shares)
            continue;
        fh_snap_order_t so = { .ref = home_ref(i, q->tag, e->home_sh), .price = order_price(e, q),
                               .shares = q->shares, .locate = q->book, .side = q->side & 1u };
        snap_put(&o, &so, sizeof so);
        norders++;
    }
    for (uint64_t i = 0; i <= e->spill_mask; i++) {
        const spill_t *sp = &e->spill[i];
        if (!sp->o.shares)
            continue;
        fh_snap_order_t so = { .ref = sp->ref, .price = order_price(e, &sp->o),
                               .shares = sp->o.shares, .locate = sp->o.book, .side = sp->o.side & 1u };
        snap_put(&o, &so, sizeof so);
        norders++;
    }
    h.magic = FH_SNAPSHOT_MAGIC;
    h.version = FH_SNAPSHOT_VERSION;
    h.hdr_size = sizeof h;
    memcpy(h.session, meta->session, sizeof h.session);
    h.next_seq = meta->next_seq;
    h.day = meta->day;
    h.flags = meta->flags | (e->new_status == FH_BOOK_STALE ? FH_SNAPSHOT_F_STALE : 0);
    h.created_ns = meta->created_ns;
    h.nbooks = nbooks;
    h.ncounters = FH_C_COUNT;
    h.norders = norders;
    h.body_bytes = o.bytes;
    h.max_orders_hint = e->cfg.max_orders;
    h.body_crc = o.crc;
    h.hdr_crc = crc32c(0, &h, offsetof(fh_snap_hdr_t, body_crc));
    if (!o.err && (fflush(f) || fseek(f, 0, SEEK_SET) || fwrite(&h, 1, sizeof h, f) != sizeof h || fflush(f) ||
                   fsync(fileno(f))))
        o.err = errno ? errno : EIO;
    if (fclose(f) && !o.err)
        o.err = errno ? errno : EIO;
    if (o.err) {
        unlink(tmp);
        return FH_ERR("cannot write snapshot %s: %s (is the disk full?)", tmp, strerror(o.err));
    }
    if (rename(tmp, path)) {
        int err = errno;
        unlink(tmp);
        return FH_ERR("cannot rename %s to %s: %s", tmp, path, strerror(err));
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the rename itself on disk */
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* stale: every book ends stale, each with a stale event when publishing (fh_engine_snapshot_load_stale). */
static int snapshot_load(fh_engine_t *e, const char *path, fh_snapshot_meta_t *meta, bool stale)
{
    if (e) /* NULL: the metadata only */
        flush_staged(e); /* what was staged before the snapshot, applied before it replaces the books */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FH_ERR("cannot open snapshot %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || (size_t)st.st_size < sizeof(fh_snap_hdr_t)) {
        close(fd);
        return FH_ERR("snapshot %s: %lld bytes, shorter than its header (128): truncated", path,
                      (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return FH_ERR("cannot map snapshot %s: %s", path, strerror(errno));
    int rc = -1;
    fh_snap_hdr_t h;
    memcpy(&h, p, sizeof h);
    size_t counters = (size_t)FH_C_COUNT * 8 + 256 * 8;
    if (h.magic != FH_SNAPSHOT_MAGIC) {
        FH_ERR("%s is not an fh snapshot (bad magic)", path);
        goto out;
    }
    if (h.version != FH_SNAPSHOT_VERSION || h.hdr_size != sizeof h) {
        FH_ERR("snapshot %s: version %u, this fh reads version %u", path, h.version, FH_SNAPSHOT_VERSION);
        goto out;
    }
    if (h.hdr_crc != crc32c(0, &h, offsetof(fh_snap_hdr_t, body_crc))) {
        FH_ERR("snapshot %s: its header's CRC does not match: the file is damaged", path);
        goto out;
    }
    if (h.ncounters != FH_C_COUNT ||
        h.body_bytes != counters + (uint64_t)h.nbooks * sizeof(fh_snap_book_t) + h.norders * sizeof(fh_snap_order_t)) {
        FH_ERR("snapshot %s: its sizes do not add up (%u counters, %u books, %llu orders): written by another fh?",
               path, h.ncounters, h.nbooks, (unsigned long long)h.norders);
        goto out;
    }
    if (size != sizeof h + h.body_bytes) {
        FH_ERR("snapshot %s: %zu bytes, its header says %llu: %s", path, size,
               (unsigned long long)(sizeof h + h.body_bytes), size < sizeof h + h.body_bytes ? "truncated" : "trailing bytes");
        goto out;
    }
    const uint8_t *body = p + sizeof h;
    if (h.body_crc != crc32c(0, body, h.body_bytes)) {
        FH_ERR("snapshot %s: its body's CRC does not match: the file is damaged", path);
        goto out;
    }
    const fh_snap_book_t *sb = (const fh_snap_book_t *)(body + counters);
    const fh_snap_order_t *so = (const fh_snap_order_t *)(sb + h.nbooks);
    static uint8_t has_book[FH_MAX_LOCATE + 1];
    memset(has_book, 0, sizeof has_book);
    for (uint32_t i = 0; i < h.nbooks; i++) {
        if (has_book[sb[i].locate] || (sb[i].status != FH_BOOK_LIVE && sb[i].status != FH_BOOK_STALE) ||
            sb[i].symbol_len > 8) {
            FH_ERR("snapshot %s: book %u (locate %u) %s", path, i, sb[i].locate,
                   has_book[sb[i].locate] ? "appears twice" : "is malformed (status or symbol length)");
            goto out;
        }
        has_book[sb[i].locate] = 1;
    }
    for (uint64_t i = 0; i < h.norders; i++)
        if (!has_book[so[i].locate] || so[i].side > 1 || !so[i].shares) {
            FH_ERR("snapshot %s: order %llu (reference %llu) names no book or is malformed", path,
                   (unsigned long long)i, (unsigned long long)so[i].ref);
            goto out;
        }
    if (meta) {
        memset(meta, 0, sizeof *meta);
        memcpy(meta->session, h.session, sizeof meta->session);
        meta->next_seq = h.next_seq;
        meta->day = h.day;
        meta->flags = h.flags;
        meta->created_ns = h.created_ns;
        meta->orders = h.norders;
        meta->books = h.nbooks;
    }
    if (!e) {
        rc = 0;
        goto out;
    }
    if (h.norders > e->cfg.max_orders || h.nbooks > e->cfg.max_instruments) {
        FH_ERR("snapshot %s holds %llu orders and %u books; this engine holds %u and %u: raise max_orders / "
               "max_instruments", path, (unsigned long long)h.norders, h.nbooks, e->cfg.max_orders,
               e->cfg.max_instruments);
        goto out;
    }
    fh_engine_clear_books(e);
    uint8_t m[16] = { 0 }; /* a message header that carries a book's timestamp into book_end */
    uint8_t new_status = e->new_status;
    if (e->publish || stale) /* book_create publishes the book it makes: stale, never live and empty */
        e->new_status = FH_BOOK_STALE;
    for (uint32_t i = 0; i < h.nbooks; i++) {
        uint8_t stock[8];
        memset(stock, ' ', 8);
        memcpy(stock, sb[i].symbol, sb[i].symbol_len <= 8 ? sb[i].symbol_len : 8);
        fh_put_be48(m + 5, sb[i].itch_ts);
        book_t *b = book_create(e, sb[i].locate, stock, m);
        book_begin(e, b);
        b->trading_state = sb[i].trading_state;
        /* A published book is never live half-loaded (a reader would trust a book that lacks orders): stale
         * while its orders come, its status once whole (below). */
        b->status = e->publish || stale ? FH_BOOK_STALE : sb[i].status;
        b->last_price = sb[i].last_price;
        b->last_shares = sb[i].last_shares;
        b->updates = sb[i].updates - (e->publish ? 1 : 0);
        book_end(e, b, m);
        b->itch_ts = sb[i].itch_ts;
    }
    for (uint64_t i = 0; i < h.norders; i++) {
        book_t *b = &e->books[so[i].locate];
        int dup;
        order_t *o = order_place(e, so[i].ref, engine_home(e, so[i].ref), &dup);
        uint32_t key = so[i].side ? ~so[i].price : so[i].price;
        if (!o) {
            FH_ERR("snapshot %s: order reference %llu %s", path, (unsigned long long)so[i].ref,
                   dup ? "appears twice" : "does not fit the order table: raise max_orders");
            fh_engine_clear_books(e);
            e->new_status = new_status;
            goto out;
        }
        book_begin(e, b);
        int top = level_add(e, b, so[i].side, key, so[i].price, so[i].shares, e->publish, o);
        if (top < 0) {
            FH_ERR("snapshot %s: more price levels than the engine holds (%u): raise max_levels", path,
                   e->cfg.max_levels);
            fh_engine_clear_books(e);
            e->new_status = new_status;
            goto out;
        }
        order_commit(o, so[i].ref, so[i].shares, so[i].locate);
        e->room--; /* add_order's test takes it on the hot path */
        b->updates--; /* restoring is not an update */
        book_end(e, b, m);
        b->itch_ts = 0;
    }
    static const uint8_t none[FH_ITCH_HDR_LEN];
    for (uint32_t i = 0; i < h.nbooks; i++) { /* the books' own figures and status after their orders */
        book_t *b = &e->books[sb[i].locate];
        fh_put_be48(m + 5, sb[i].itch_ts);
        book_begin(e, b);
        b->status = stale ? FH_BOOK_STALE : sb[i].status;
        b->flags |= sb[i].flags & FH_BOOK_F_INCOMPLETE; /* (saved stale: it lacked a message when saved) */
        b->updates = sb[i].updates - (e->publish ? 1 : 0);
        book_end(e, b, m);
        b->itch_ts = sb[i].itch_ts;
        if (stale && e->publish)
            emit_simple(e, FH_EV_STALE, b, none);
    }
    memcpy(e->counters, body, sizeof e->counters);
    memcpy(e->type_counts, body + sizeof e->counters, sizeof e->type_counts);
    e->new_status = stale || (h.flags & FH_SNAPSHOT_F_STALE) ? FH_BOOK_STALE : FH_BOOK_LIVE;
    rc = 0;
out:
    munmap((void *)p, size);
    return rc;
}

int fh_engine_snapshot_load(fh_engine_t *e, const char *path, fh_snapshot_meta_t *meta)
{
    return snapshot_load(e, path, meta, false);
}

int fh_engine_snapshot_load_stale(fh_engine_t *e, const char *path, fh_snapshot_meta_t *meta)
{
    return snapshot_load(e, path, meta, true);
}
