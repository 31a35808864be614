/* synth.c: a deterministic synthetic TotalView-ITCH 5.0 day (see fh/synth.h for what it looks like).
 *
 * The generator keeps the book the engine will build (docs/book-semantics.md) in a compact form:
 *   - slots (24 bytes): one per live order; each instrument owns a fixed run of them, its live orders
 *     packed at the front (random picks index it; a removal moves the last one into the hole);
 *   - levels: per instrument and side, a dense array over every tick its orders can reach (the mid's
 *     range +- MAX_OFF_TICKS), each entry the oldest and newest order of a FIFO list through the
 *     slots. Zeroed memory is an empty level, so the pages of prices never reached are never touched;
 *   - instruments (one cache line each): slot run, mid, level arrays, symbol, trading state.
 * Everything is allocated before the first message; the per-message work is O(1) apart from clearing
 * a level before a mid step, which writes one message per order it removes. Instruments are drawn a
 * few dozen messages ahead so their lines, the levels around their mids and the order they will pick
 * can be prefetched: with thousands of instruments the work is bound by memory latency.
 *
 * Determinism: xoshiro256** seeded by splitmix64 (one stream for instrument draws, one for the rest),
 * integer arithmetic only. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fh/common.h"
#include "fh/synth.h"

/* error.c may not be linked (the synth test builds synth.c alone): set the message only if it is. */
#pragma weak fh_err_set

#define SYNTH_ERR(rc, ...)                                   \
    do {                                                     \
        if (fh_err_set)                                      \
            fh_err_set(__func__, __LINE__, __VA_ARGS__);     \
        return (rc);                                         \
    } while (0)

#define TICK     100u
#define NIL      0u           /* slot 0 is never used, so zeroed memory means empty */
#define NS       1000000000ull
#define PPM      1000000u

#define T_SYS_OPEN   ((3ull * 3600 + 59 * 60) * NS)  /* S 'O' */
#define T_SYS_START  (4ull * 3600 * NS)              /* S 'S' */
#define T_MKT_OPEN   ((9ull * 3600 + 30 * 60) * NS)  /* S 'Q' */
#define T_MKT_CLOSE  (16ull * 3600 * NS)             /* S 'M' */
#define T_SYS_END    (20ull * 3600 * NS)             /* S 'E' */
#define T_MSG_END    ((20ull * 3600 + 5 * 60) * NS)  /* S 'C' */

/* Tuning. */
#define LIVE_PER_INSTRUMENT 50u      /* target live orders per instrument ... */
#define LIVE_MSG_DIVISOR    32u      /* ... but at most body/32 in all */
#define MIDMOVE_PPM         30000u   /* chance per body step of a mid step attempt */
#define PRICE_P256          90u      /* geometric tick offset: P(1 tick) = 90/256 */
#define FAR_PPM             20000u   /* quotes 10..99 ticks away */
#define F_PPM               50000u   /* adds sent as F */
#define C_PPM               100000u  /* executions sent as C */
#define FULL_EXEC_PPM       600000u  /* executions that fill the order */
#define MIX_SLACK           4u       /* messages a category may run ahead of / behind its share */
#define RESUME_RING         16u      /* mid-day halts pending at once */
#define EXEC_PROBE_TICKS    4u
#define ADD_Q_PPM           540000   /* add (vs delete) at the target count; deletes must also make up */
#define ADD_GAIN_PPM        150000   /* for clearing and executions, hence above one half */
#define ADD_Q_MIN_PPM       400000
#define ADD_Q_MAX_PPM       620000
#define MAX_OFF_TICKS       100u     /* no quote is further than this from its mid */
#define MID_RANGE_MAX       400u     /* the mid stays within +-min(5 %, this many ticks) of the reference */

/* FH_SYNTH_SHAPE_REAL (fh/synth.h says where each figure comes from). */
#define REAL_STREAMS        4u            /* concurrent reference counters */
#define REAL_REF_OPEN       10000000ull   /* the frontier at 09:30 */
#define REAL_REF_CLOSE      184000000ull  /* ... and at 16:00 */
#define REAL_BLOCKS         64u           /* blocks of references between the two */
#define REAL_NEWREF_PPM     520000u       /* new references per body message (A/F and U), for the step */
#define REAL_REST_TICKS     200u          /* resting orders: up to this many ticks beyond the mid's range */
/* FH_SYNTH_SHAPE_REAL_LATE: the steps between a counter's consecutive new orders in the 09:30 slice (661 of them:
 * 291 of 4, 139 of 8, ..., 9 of 44-104, counted here as 56), as cumulative counts (the counts of bench/remap_refs.py's
 * STEPS, STEP_COUNT: keep the two alike). */
static const uint8_t LATE_STEP[] = { 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 56 };
static const uint16_t LATE_STEP_CUM[] = { 291, 430, 519, 575, 600, 618, 633, 637, 644, 652, 661 };
#define LATE_STEPS          (sizeof LATE_STEP / sizeof LATE_STEP[0])
_Static_assert(sizeof LATE_STEP_CUM / sizeof LATE_STEP_CUM[0] == LATE_STEPS, "a cumulative count for each step");
#define LATE_STEP_TOTAL     LATE_STEP_CUM[LATE_STEPS - 1]
#define LATE_BLK            (1ull << 21)  /* a counter's block of references (the slice's four are 0.4-2 M apart) */

enum { L_S = 12, L_R = 39, L_H = 25, L_Y = 20, L_L = 26, L_V = 35, L_W = 12, L_K = 28, L_J = 35, L_h = 21,
       L_A = 36, L_F = 40, L_E = 31, L_C = 36, L_X = 23, L_D = 19, L_U = 35, L_P = 44, L_Q = 40, L_B = 19,
       L_I = 50, L_N = 20 };

/* Body categories and their shares (the add/delete split is steered per instrument). */
enum { C_AD = 0, C_U, C_X, C_E, C_O, C_N };
static const uint32_t CAT_PPM[C_N] = { 850000, 80000, 30000, 20000, 20000 };

/* ---- PRNG: xoshiro256**, seeded with splitmix64 ------------------------------------------------ */

typedef struct rng { uint64_t s[4]; } rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_u64(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return res;
}

/* Uniform in [0, n) (multiply-high; the bias is below 2^-32 for every n used here). */
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return (uint64_t)(((unsigned __int128)rng_u64(r) * n) >> 64); }
static inline int rng_ppm(rng_t *r, uint32_t ppm) { return rng_below(r, PPM) < ppm; }

/* 0, 1, 2, ... with P(k) = (1 - p)^k p, p = p256 / 256, at most cap. */
static inline uint32_t rng_geo(rng_t *r, uint32_t p256, uint32_t cap)
{
    uint64_t b = rng_u64(r);
    uint32_t k = 0;
    while (k < cap && (b & 0xff) >= p256) {
        k++;
        b >>= 8;
        if (!(k & 7))
            b = rng_u64(r);
    }
    return k;
}

/* ---- state ------------------------------------------------------------------------------------- */

/* One live order, 24 bytes. An instrument's orders occupy slots first..first+n-1 of one pool (the
 * live array and the order store are the same thing), so its random picks and level walks stay in a
 * small region; a removal moves the instrument's last slot into the hole and re-points its links. */
typedef struct slot {
    uint64_t ref;
    uint32_t pxs;          /* price | side << 31 (side 0 bid, 1 ask) */
    uint32_t shares;
    uint32_t next, prev;   /* FIFO within the level, NIL-terminated (global slot indices) */
} slot_t;

#define SIDE_BIT 0x80000000u
static inline uint32_t sl_px(const slot_t *s) { return s->pxs & ~SIDE_BIT; }
static inline uint8_t sl_side(const slot_t *s) { return (uint8_t)(s->pxs >> 31); }

typedef struct level { uint32_t head, tail; } level_t;   /* oldest, newest order; NIL when empty */

/* What the body touches of an instrument: one cache line. */
typedef struct inst {
    uint32_t first;        /* its slots: first .. first + n - 1 live, up to first + cap - 1 */
    uint32_t n, cap;
    uint32_t target;       /* live orders the add/delete split steers towards */
    uint32_t mid, ref_px;  /* 1/10000 */
    uint32_t lo, hi;       /* the mid stays within [lo, hi] */
    uint32_t base, span;   /* levels cover ticks base .. base + span - 1 */
    level_t *lv;           /* bids lv[0 .. span), asks lv[span .. 2 span), by tick - base */
    char sym[8];
    uint16_t range_ticks;
    uint8_t state;         /* 'T', 'H', 'P' */
} __attribute__((aligned(64))) inst_t;

/* Directory fields, used once in the prelude. */
typedef struct inst_dir { uint8_t mkt_cat, fin_status, issue_class, etp, inverse, lev, tier; } inst_dir_t;

typedef struct sched { uint64_t due; uint16_t locate; } sched_t;

#define ZQ 32

typedef struct seg { uint64_t j0, n, t0; unsigned __int128 step; } seg_t;

typedef struct out {
    uint8_t *buf;
    size_t len, cap;
    int fd;                /* >= 0: flush there when full */
    int err;
} out_t;

typedef struct rstream { uint64_t next, end; } rstream_t;   /* a reference counter and its block */

typedef struct gen {
    rng_t rng;
    int real;              /* FH_SYNTH_SHAPE_REAL or FH_SYNTH_SHAPE_REAL_LATE */
    int late;              /* FH_SYNTH_SHAPE_REAL_LATE: the slice's steps, the body's references a late window */
    uint64_t late_start;   /* ... which starts here */
    rstream_t rs[REAL_STREAMS];
    uint64_t frontier;     /* the next free block of references */
    uint64_t blk, rq;      /* block size; steps are 4 * (1 + uniform [0, 2 rq - 1)) */
    uint64_t ref_max;
    uint64_t rest_left;    /* resting orders still to add at the open */
    uint32_t rest_loc, rest_k;
    int nomix;             /* writing resting orders: not counted in the mix */
    uint32_t n_inst;
    uint32_t ppm;
    inst_t *inst;          /* [n_inst + 1], by locate */
    inst_dir_t *dir;       /* [n_inst + 1] */
    rng_t zrng;            /* instrument draws: their own stream, drawn ZQ ahead so they can be prefetched */
    uint16_t zq[ZQ];
    uint64_t zr[ZQ];       /* with each draw, the randomness of its first order pick */
    uint64_t pick_r;       /* that of the instrument zipf() returned last */
    uint32_t zh;
    uint16_t *rank_loc;    /* Zipf rank -> locate */
    uint64_t *zthr;        /* alias table */
    uint16_t *zalias;
    uint64_t zW;
    slot_t *slots;
    level_t *lv_pool;
    uint64_t live, next_ref, match, last_dead;
    uint64_t B, bdone;     /* body size, body messages written */
    uint64_t B0;           /* messages before the body */
    uint64_t reserved;     /* scheduled messages still to come */
    uint64_t ts, last_ts;
    seg_t seg[5];
    uint32_t segk;
    sched_t rel[16];
    uint32_t n_rel, rel_next;
    sched_t ring[RESUME_RING];
    uint32_t ring_head, ring_n;
    uint64_t cat[C_N], catn;
    int anom;              /* writing an anomaly: not counted in the mix */
    uint64_t anom_owed;    /* anomalies drawn but not yet written */
    out_t out;
    fh_synth_stats_t st;
} gen_t;

/* ---- output ------------------------------------------------------------------------------------ */

static void out_flush(out_t *o)
{
    size_t off = 0;
    while (off < o->len && !o->err) {
        ssize_t w = write(o->fd, o->buf + off, o->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            o->err = -errno;
        } else if (w == 0) {
            o->err = -EIO;
        } else {
            off += (size_t)w;
        }
    }
    o->len = 0;
}

/* Room for n more bytes. On failure the error is kept and the buffer start is reused (the run is
 * abandoned at the next check), so writers always get valid memory. */
static uint8_t *out_slow(out_t *o, size_t n)
{
    if (o->fd >= 0) {
        out_flush(o);
        return o->buf;
    }
    size_t nc = o->cap + o->cap / 2 + n;
    uint8_t *nb = o->err ? NULL : realloc(o->buf, nc);
    if (!nb) {
        if (!o->err)
            o->err = -ENOMEM;
        o->len = 0;
        return o->buf;
    }
    o->buf = nb;
    o->cap = nc;
    return nb + o->len;
}

static inline uint16_t track_of(uint16_t locate) { return locate ? (uint16_t)(1 + locate % 7) : 0; }

static inline void put_hdr(uint8_t *p, uint8_t type, uint16_t locate, uint64_t ts)
{
    p[0] = type;
    fh_put_be16(p + 1, locate);
    fh_put_be16(p + 3, track_of(locate));
    fh_put_be48(p + 5, ts);
}

static const uint8_t TYPE_CAT[256] = {
    ['A'] = C_AD, ['F'] = C_AD, ['D'] = C_AD, ['U'] = C_U, ['X'] = C_X, ['E'] = C_E, ['C'] = C_E,
    ['S'] = C_O, ['R'] = C_O, ['H'] = C_O, ['Y'] = C_O, ['L'] = C_O, ['V'] = C_O, ['W'] = C_O, ['K'] = C_O,
    ['J'] = C_O, ['h'] = C_O, ['P'] = C_O, ['Q'] = C_O, ['B'] = C_O, ['I'] = C_O, ['N'] = C_O,
};

static inline void count_msg(gen_t *g, uint8_t type, uint32_t len)
{
    g->st.messages++;
    g->st.bytes += len + 2u;
    if (len)
        g->st.type_count[type]++;
    if (!g->anom && !g->nomix) {
        g->cat[TYPE_CAT[type]]++;
        g->catn++;
    }
}

/* Reserve a block of len bytes with its header written; returns the message start. */
static inline uint8_t *msg(gen_t *g, uint8_t type, uint32_t len, uint16_t locate)
{
    out_t *o = &g->out;
    uint8_t *p = (o->cap - o->len >= len + 2u) ? o->buf + o->len : out_slow(o, len + 2u);
    fh_put_be16(p, (uint16_t)len);
    o->len += len + 2u;
    p += 2;
    put_hdr(p, type, locate, g->ts);
    count_msg(g, type, len);
    return p;
}

/* A block of raw bytes (anomalies). */
static void raw(gen_t *g, const uint8_t *b, uint32_t len)
{
    out_t *o = &g->out;
    uint8_t *p = (o->cap - o->len >= len + 2u) ? o->buf + o->len : out_slow(o, len + 2u);
    fh_put_be16(p, (uint16_t)len);
    if (len)
        memcpy(p + 2, b, len);
    o->len += len + 2u;
    count_msg(g, len ? b[0] : 0, len);
}

/* Ask for transparent huge pages over the page-aligned inside of a big allocation: fewer page faults
 * when the buffer is first written. Advisory; errors are ignored. */
static void want_huge_pages(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = 2u << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + len) & ~(huge - 1);
    if (len >= 4 * huge && e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)len;
#endif
}

/* ---- message bodies ---------------------------------------------------------------------------- */

static void fill_A(uint8_t *p, uint64_t ref, uint8_t side, uint32_t shares, const char *sym, uint32_t price)
{
    fh_put_be64(p + 11, ref);
    p[19] = side;
    fh_put_be32(p + 20, shares);
    memcpy(p + 24, sym, 8);
    fh_put_be32(p + 32, price);
}

static void fill_E(uint8_t *p, uint64_t ref, uint32_t shares, uint64_t match)
{
    fh_put_be64(p + 11, ref);
    fh_put_be32(p + 19, shares);
    fh_put_be64(p + 23, match);
}

static void fill_X(uint8_t *p, uint64_t ref, uint32_t shares)
{
    fh_put_be64(p + 11, ref);
    fh_put_be32(p + 19, shares);
}

static void fill_U(uint8_t *p, uint64_t orig, uint64_t nref, uint32_t shares, uint32_t price)
{
    fh_put_be64(p + 11, orig);
    fh_put_be64(p + 19, nref);
    fh_put_be32(p + 27, shares);
    fh_put_be32(p + 31, price);
}

static void emit_S(gen_t *g, uint8_t code)
{
    uint8_t *p = msg(g, 'S', L_S, 0);
    p[11] = code;
}

static void emit_H(gen_t *g, uint16_t loc, uint8_t state, const char reason[4])
{
    uint8_t *p = msg(g, 'H', L_H, loc);
    memcpy(p + 11, g->inst[loc].sym, 8);
    p[19] = state;
    p[20] = ' ';
    memcpy(p + 21, reason, 4);
}

static const char MPIDS[][4] = { "GSCO", "MSCO", "UBSS", "CDRG", "NITE", "SUSQ", "VIRT", "JPMS", "CITD", "ETMM",
                                 "GSMM", "HRTF", "JSTC", "TMBR", "LATS", "XTXM", "WEDB", "BOFA", "NFSC", "IMCC" };
#define N_MPIDS (sizeof MPIDS / sizeof MPIDS[0])

/* ---- time -------------------------------------------------------------------------------------- */

/* 09:30-16:00, U-shaped: share of the body per segment. */
static const struct { uint32_t secs, ppm; } SEGS[5] = {
    { 1800, 140000 },   /* 09:30-10:00 */
    { 3600, 140000 },   /* 10:00-11:00 */
    { 10800, 300000 },  /* 11:00-14:00 */
    { 5400, 220000 },   /* 14:00-15:30 */
    { 1800, 200000 },   /* 15:30-16:00 */
};

static void time_init(gen_t *g)
{
    uint64_t j0 = 0, t0 = T_MKT_OPEN;
    for (int k = 0; k < 5; k++) {
        uint64_t span = SEGS[k].secs * NS;
        uint64_t n = (k == 4) ? g->B - j0 : (uint64_t)(((unsigned __int128)g->B * SEGS[k].ppm) / PPM);
        seg_t *s = &g->seg[k];
        s->j0 = j0;
        s->n = n;
        s->t0 = t0 + (k == 0 ? 1000 : 0);
        uint64_t usable = span - (k == 0 ? 1000 : 0) - (k == 4 ? 1000 : 0);
        s->step = ((unsigned __int128)usable << 32) / (n ? n : 1);
        j0 += n;
        t0 += span;
    }
    g->segk = 0;
}

/* The timestamp of body message j: the intensity curve plus jitter, never decreasing. */
static void time_at(gen_t *g, uint64_t j)
{
    while (g->segk < 4 && j >= g->seg[g->segk + 1].j0)
        g->segk++;
    const seg_t *s = &g->seg[g->segk];
    uint64_t base = s->t0 + (uint64_t)(((unsigned __int128)(j - s->j0) * s->step) >> 32);
    uint64_t gap = (uint64_t)(s->step >> 32);
    uint64_t t = base + (gap > 1 ? rng_below(&g->rng, gap) : 0);
    if (t < g->last_ts)
        t = g->last_ts;
    g->ts = g->last_ts = t;
}

/* ---- instruments ------------------------------------------------------------------------------- */

/* Busiest first. All distinct, 1..5 uppercase letters. */
static const char *const REAL[] = {
    "AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "META", "GOOGL", "GOOG", "AMD", "QQQ", "SPY", "AVGO", "NFLX", "INTC",
    "COST", "ADBE", "PEP", "CSCO", "TQQQ", "SQQQ", "SOXL", "PLTR", "MU", "QCOM", "TXN", "AMAT", "SBUX", "PYPL",
    "COIN", "MARA", "RIOT", "SOFI", "HOOD", "LCID", "RIVN", "NIO", "BABA", "JD", "PDD", "BIDU", "CMCSA", "TMUS",
    "HON", "INTU", "AMGN", "ISRG", "BKNG", "MDLZ", "ADP", "GILD", "ADI", "VRTX", "REGN", "LRCX", "PANW", "SNPS",
    "CDNS", "KLAC", "MELI", "ASML", "ABNB", "CSX", "MAR", "ORLY", "MNST", "CTAS", "FTNT", "CHTR", "NXPI", "KDP",
    "AEP", "MRVL", "DXCM", "PCAR", "ADSK", "KHC", "LULU", "EXC", "PAYX", "IDXX", "ROST", "ODFL", "BIIB", "CPRT",
    "MCHP", "XEL", "EA", "CTSH", "FAST", "GEHC", "VRSK", "CSGP", "DDOG", "ON", "ANSS", "BKR", "TTD", "TEAM",
    "CRWD", "ZS", "WDAY", "DLTR", "FANG", "GFS", "ILMN", "WBD", "SIRI", "ZM", "EBAY", "ALGN", "ENPH", "OKTA",
    "DOCU", "ROKU", "SNAP", "UBER", "LYFT", "DKNG", "AAL", "UAL", "DAL", "JBLU", "NCLH", "CCL", "PTON", "BYND",
    "AFRM", "UPST", "NKLA", "F", "T", "C", "GE", "BAC", "WFC", "JPM", "XOM", "CVX", "KO", "PFE", "MRK", "IWM",
    "XLF", "ARKK", "SMCI", "ARM", "MSTR", "DELL", "HPQ", "ORCL", "CRM", "SHOP", "SQ", "NET", "SNOW", "MDB", "U",
    "RBLX", "PINS", "ETSY", "W", "Z", "ZG", "EXPE", "TRIP", "WYNN", "LVS", "MGM", "CZR", "PENN", "CHWY", "GME",
    "AMC", "BB", "NOK", "SPCE", "PLUG", "FCEL", "BLNK", "CHPT", "QS", "RUN", "SEDG", "FSLR", "TLRY", "CGC", "ACB",
    "SNDL", "OPEN", "CLOV", "IONQ", "RGTI", "QUBT", "SOUN", "AI", "PATH", "S", "DNA", "GRAB", "SE", "CPNG", "NU",
    "HIMS", "CELH", "ENVX", "ACHR", "JOBY", "LUNR", "RKLB", "ASTS", "VKTX", "SMR", "OKLO",
};
#define N_REAL (sizeof REAL / sizeof REAL[0])

/* Exchange-traded products among them: {symbol, leverage, inverse}. */
static const struct { const char *sym; uint8_t lev, inv; } ETPS[] = {
    { "QQQ", 1, 0 }, { "SPY", 1, 0 }, { "TQQQ", 3, 0 }, { "SQQQ", 3, 1 }, { "SOXL", 3, 0 }, { "IWM", 1, 0 },
    { "XLF", 1, 0 }, { "ARKK", 1, 0 },
};

static uint64_t sym_key(const char *s8)
{
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k = (k << 8) | (uint8_t)s8[i];
    return k;
}

static void sym_from_key(char out[8], uint64_t k)
{
    for (int i = 7; i >= 0; i--, k >>= 8)
        out[i] = (char)(k & 0xff);
}

static uint64_t sym_key_str(const char *s)
{
    char b[8];
    memset(b, ' ', 8);
    memcpy(b, s, strlen(s));
    return sym_key(b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int is_real(const uint64_t *real_sorted, uint64_t k)
{
    return bsearch(&k, real_sorted, N_REAL, sizeof k, cmp_u64) != NULL;
}

static uint64_t letters_key(uint64_t v, int n, char suffix)
{
    char b[8];
    memset(b, ' ', 8);
    for (int i = n - 1; i >= 0; i--, v /= 26)
        b[i] = (char)('A' + v % 26);
    if (suffix)
        b[n] = suffix;
    return sym_key(b);
}

/* The symbol of each Zipf rank: real tickers first, then made-up 3-, 4- and 5-letter ones. Every
 * made-up symbol uses its own code from a bijection (3 letters: c * 4111 + 999 mod 26^3, 4 letters:
 * c * 7919 + 104729 mod 26^4, both multipliers prime to 26), so they are all distinct; a code that
 * spells a real ticker is skipped. */
static void make_symbols(uint64_t *by_rank, uint32_t n, uint8_t *suffix_class)
{
    uint64_t real_sorted[N_REAL];
    for (size_t i = 0; i < N_REAL; i++)
        real_sorted[i] = sym_key_str(REAL[i]);
    qsort(real_sorted, N_REAL, sizeof real_sorted[0], cmp_u64);
    uint64_t c3 = 0, c4 = 0;
    static const char SUFFIX[3] = { 'W', 'R', 'U' };
    for (uint32_t r = 0; r < n; r++) {
        suffix_class[r] = 0;
        if (r < N_REAL) {
            by_rank[r] = sym_key_str(REAL[r]);
            continue;
        }
        uint32_t i = r - (uint32_t)N_REAL;
        uint64_t k;
        if (i % 6 == 5) {
            do
                k = letters_key((c3++ * 4111 + 999) % 17576, 3, 0);
            while (is_real(real_sorted, k));
        } else if (i % 6 == 3) {
            char sfx = SUFFIX[(i / 6) % 3];
            k = letters_key((c4++ * 7919 + 104729) % 456976, 4, sfx);
            suffix_class[r] = (uint8_t)sfx;
        } else {
            do
                k = letters_key((c4++ * 7919 + 104729) % 456976, 4, 0);
            while (is_real(real_sorted, k));
        }
        by_rank[r] = k;
    }
}

static uint64_t isqrt64(uint64_t v)
{
    uint64_t r = 0, bit = 1ull << 62;
    while (bit > v)
        bit >>= 2;
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

static inline uint16_t zipf_draw(gen_t *g)
{
    uint64_t j = rng_below(&g->zrng, g->n_inst);
    uint64_t u = rng_below(&g->zrng, g->zW);
    return g->rank_loc[u < g->zthr[j] ? j : g->zalias[j]];
}

/* The next Zipf-drawn instrument. Draws run ZQ ahead: a new draw's instrument line is prefetched, and
 * ZQ/2 draws before an instrument is used, the levels around its mid and its newest orders are. */
static inline uint32_t pick_index(uint64_t r, uint32_t n);

static inline uint16_t zipf(gen_t *g)
{
    uint32_t h = g->zh;
    uint16_t loc = g->zq[h];
    g->pick_r = g->zr[h];
    uint16_t nl = zipf_draw(g);
    g->zq[h] = nl;
    g->zr[h] = rng_u64(&g->zrng);
    __builtin_prefetch(&g->inst[nl]);
    g->zh = h = (h + 1) & (ZQ - 1);
    uint32_t k = (h + ZQ / 2 - 1) & (ZQ - 1);
    const inst_t *in = &g->inst[g->zq[k]];
    if (in->lv) {
        uint32_t t = in->mid / TICK - in->base;
        __builtin_prefetch(&in->lv[t > 4 ? t - 4 : 0]);
        __builtin_prefetch(&in->lv[in->span + t + 1]);
        __builtin_prefetch(&g->slots[in->first + in->n]);
        if (in->n)
            __builtin_prefetch(&g->slots[in->first + pick_index(g->zr[k], in->n)]);
    }
    return loc;
}

/* ---- levels and orders ------------------------------------------------------------------------- */

static inline level_t *level_of(const gen_t *g, uint16_t loc, uint8_t side, uint32_t price)
{
    const inst_t *in = &g->inst[loc];
    return &in->lv[(side ? in->span : 0) + price / TICK - in->base];
}

static void level_link(gen_t *g, uint16_t loc, uint32_t s)
{
    slot_t *sl = &g->slots[s];
    level_t *l = level_of(g, loc, sl_side(sl), sl_px(sl));
    sl->next = NIL;
    sl->prev = l->tail;
    if (l->tail == NIL)
        l->head = s;
    else
        g->slots[l->tail].next = s;
    l->tail = s;
}

static void level_unlink(gen_t *g, uint16_t loc, uint32_t s)
{
    slot_t *sl = &g->slots[s];
    level_t *l = level_of(g, loc, sl_side(sl), sl_px(sl));
    if (sl->prev == NIL)
        l->head = sl->next;
    else
        g->slots[sl->prev].next = sl->next;
    if (sl->next == NIL)
        l->tail = sl->prev;
    else
        g->slots[sl->next].prev = sl->prev;
}

/* Free slot s of instrument loc, already unlinked from its level: the instrument's last slot moves
 * into it and its neighbours (or its level) follow. */
static void order_drop(gen_t *g, uint16_t loc, uint32_t s)
{
    inst_t *in = &g->inst[loc];
    uint32_t last = in->first + --in->n;
    g->last_dead = g->slots[s].ref;
    g->live--;
    if (s == last)
        return;
    slot_t *sl = &g->slots[s];
    *sl = g->slots[last];
    if (sl->prev == NIL || sl->next == NIL) {
        level_t *l = level_of(g, loc, sl_side(sl), sl_px(sl));
        if (sl->prev == NIL)
            l->head = s;
        if (sl->next == NIL)
            l->tail = s;
    }
    if (sl->prev != NIL)
        g->slots[sl->prev].next = s;
    if (sl->next != NIL)
        g->slots[sl->next].prev = s;
}

static void order_remove(gen_t *g, uint16_t loc, uint32_t s)
{
    level_unlink(g, loc, s);
    order_drop(g, loc, s);
}

static void order_new(gen_t *g, uint16_t loc, uint8_t side, uint32_t price, uint32_t shares, uint64_t ref)
{
    inst_t *in = &g->inst[loc];
    uint32_t s = in->first + in->n++;
    slot_t *sl = &g->slots[s];
    sl->ref = ref;
    sl->pxs = price | (uint32_t)side << 31;
    sl->shares = shares;
    level_link(g, loc, s);
    if (++g->live > g->st.live_orders_peak)
        g->st.live_orders_peak = g->live;
}

/* Index of a live order among n > 0: half the time one of the 16 newest, else any. */
static inline uint32_t pick_index(uint64_t r, uint32_t n)
{
    uint64_t x = (r >> 1) & 0xffffffffu;
    if (r & 1) {
        uint32_t w = n < 16 ? n : 16;
        return n - 1 - (uint32_t)((x * w) >> 32);
    }
    return (uint32_t)((x * n) >> 32);
}

/* A live order of the instrument zipf() returned last (n > 0). The first pick uses the randomness
 * drawn with the instrument, whose slot zipf() has prefetched. */
static inline uint32_t pick(gen_t *g, const inst_t *in)
{
    uint64_t r = g->pick_r;
    g->pick_r = rng_u64(&g->rng);
    return in->first + pick_index(r, in->n);
}

/* A new quote's price: mid -/+ (1 + geometric) ticks, 2 % of them 10..99 ticks away; bids >= 1 tick. */
static uint32_t quote(gen_t *g, const inst_t *in, uint8_t side)
{
    uint32_t off = rng_ppm(&g->rng, FAR_PPM) ? 10 + (uint32_t)rng_below(&g->rng, 90)
                                            : 1 + rng_geo(&g->rng, PRICE_P256, 40);
    if (side)
        return in->mid + off * TICK;
    uint32_t maxoff = in->mid / TICK - 1;
    if (off > maxoff)
        off = maxoff;
    return in->mid - off * TICK;
}

static uint32_t draw_shares(gen_t *g)
{
    uint64_t r = rng_below(&g->rng, 1000);
    if (r < 100)
        return 1 + (uint32_t)rng_below(&g->rng, 99);                                   /* odd lot */
    if (r < 130)
        return 100 * (1 + (uint32_t)rng_below(&g->rng, 5)) + 1 + (uint32_t)rng_below(&g->rng, 99); /* mixed */
    if (r < 140)
        return 100 * (10 + (uint32_t)rng_below(&g->rng, 91));                         /* block */
    return 100 * (1 + rng_geo(&g->rng, 115, 9));                                       /* 100..1000 */
}

/* Fewer shares than rem (rem >= 2): round lots when there is room. */
static uint32_t part_of(gen_t *g, uint32_t rem)
{
    if (rem >= 200)
        return 100 * (1 + (uint32_t)rng_below(&g->rng, rem / 100 - 1));
    return 1 + (uint32_t)rng_below(&g->rng, rem - 1);
}

/* ---- order messages ---------------------------------------------------------------------------- */

/* A step between a counter's consecutive new orders, drawn from the 09:30 slice's (REAL_LATE). */
static uint64_t late_step(gen_t *g)
{
    uint64_t u = rng_below(&g->rng, LATE_STEP_TOTAL);
    uint32_t i = 0;
    while (u >= LATE_STEP_CUM[i])
        i++;
    return LATE_STEP[i];
}

/* A new order reference for instrument loc: 1, 2, 3, ... (UNIFORM), or the next of its counter (REAL, REAL_LATE). */
static uint64_t new_ref(gen_t *g, uint16_t loc)
{
    if (!g->real)
        return g->next_ref++;
    rstream_t *s = &g->rs[loc % REAL_STREAMS];
    uint64_t r = s->next + (g->late ? late_step(g) : 4 * (1 + rng_below(&g->rng, 2 * g->rq - 1)));
    if (r >= s->end) { /* the block is used up: the next one at the frontier, same residue mod 4 */
        r = g->frontier + 4 + (r & 3);
        s->end = g->frontier + g->blk;
        g->frontier = s->end;
    }
    s->next = r;
    if (r > g->ref_max)
        g->ref_max = r;
    return r;
}

/* REAL_LATE: the counters leave the open's references for the late window, counter k at residue k, each part-way
 * through a block of its own; the frontier (where a used-up block's successor is taken) above the four. */
static void late_window(gen_t *g)
{
    for (uint32_t k = 0; k < REAL_STREAMS; k++) {
        uint64_t b0 = g->late_start + k * LATE_BLK;
        g->rs[k].next = b0 + 4 * rng_below(&g->rng, LATE_BLK / 8) + k;
        g->rs[k].end = b0 + LATE_BLK;
    }
    g->frontier = g->late_start + REAL_STREAMS * LATE_BLK;
}

/* The resting orders of the open (REAL, REAL_LATE): rest_count(target) per instrument, never touched again. */
static inline uint32_t rest_count(const inst_t *in) { return 1 + in->target / 4; }

static void do_rest(gen_t *g)
{
    while (g->rest_k >= rest_count(&g->inst[g->rest_loc])) {
        g->rest_loc++;
        g->rest_k = 0;
    }
    uint16_t loc = (uint16_t)g->rest_loc;
    inst_t *in = &g->inst[loc];
    uint32_t d = 1 + (uint32_t)rng_below(&g->rng, REAL_REST_TICKS);
    uint8_t side = (uint8_t)((g->rest_k++ & 1) || in->lo / TICK <= d); /* a bid needs a price above 0 */
    uint32_t price = side ? in->hi + d * TICK : in->lo - d * TICK;
    uint32_t shares = draw_shares(g);
    uint64_t ref = new_ref(g, loc);
    g->nomix = 1;
    if (rng_ppm(&g->rng, F_PPM)) {
        uint8_t *p = msg(g, 'F', L_F, loc);
        fill_A(p, ref, side ? 'S' : 'B', shares, in->sym, price);
        memcpy(p + 36, MPIDS[rng_below(&g->rng, N_MPIDS)], 4);
    } else {
        fill_A(msg(g, 'A', L_A, loc), ref, side ? 'S' : 'B', shares, in->sym, price);
    }
    g->nomix = 0;
    if (++g->live > g->st.live_orders_peak)
        g->st.live_orders_peak = g->live;
    g->st.resting_orders++;
    g->reserved--;
    if (!--g->rest_left && g->late)
        late_window(g);
}

static void do_add(gen_t *g, uint16_t loc)
{
    inst_t *in = &g->inst[loc];
    uint8_t side = (uint8_t)(rng_u64(&g->rng) & 1);
    uint32_t price = quote(g, in, side);
    uint32_t shares = draw_shares(g);
    uint64_t ref = new_ref(g, loc);
    order_new(g, loc, side, price, shares, ref);
    uint8_t sb = side ? 'S' : 'B';
    if (rng_ppm(&g->rng, F_PPM)) {
        uint8_t *p = msg(g, 'F', L_F, loc);
        fill_A(p, ref, sb, shares, in->sym, price);
        memcpy(p + 36, MPIDS[rng_below(&g->rng, N_MPIDS)], 4);
    } else {
        fill_A(msg(g, 'A', L_A, loc), ref, sb, shares, in->sym, price);
    }
}

static void do_delete(gen_t *g, uint16_t loc)
{
    uint32_t s = pick(g, &g->inst[loc]);
    fh_put_be64(msg(g, 'D', L_D, loc) + 11, g->slots[s].ref);
    order_remove(g, loc, s);
}

static void do_replace(gen_t *g, uint16_t loc)
{
    inst_t *in = &g->inst[loc];
    uint32_t s = pick(g, in);
    slot_t *sl = &g->slots[s];
    uint64_t nref = new_ref(g, loc);
    uint8_t side = sl_side(sl);
    uint32_t price = quote(g, in, side);
    uint32_t shares = rng_ppm(&g->rng, 500000) ? sl->shares : draw_shares(g);
    fill_U(msg(g, 'U', L_U, loc), sl->ref, nref, shares, price);
    level_unlink(g, loc, s);
    g->last_dead = sl->ref;
    sl->ref = nref;
    sl->pxs = price | (uint32_t)side << 31;
    sl->shares = shares;
    level_link(g, loc, s);
}

static void do_cancel(gen_t *g, uint16_t loc)
{
    inst_t *in = &g->inst[loc];
    uint32_t s = pick(g, in);
    for (int t = 0; t < 3 && g->slots[s].shares < 2; t++)
        s = pick(g, in);
    slot_t *sl = &g->slots[s];
    if (sl->shares < 2) {   /* nothing to cancel partially: delete it */
        fh_put_be64(msg(g, 'D', L_D, loc) + 11, sl->ref);
        order_remove(g, loc, s);
        return;
    }
    uint32_t c = part_of(g, sl->shares);
    fill_X(msg(g, 'X', L_X, loc), sl->ref, c);
    sl->shares -= c;
}

/* E or C of x shares of slot s (x <= remaining); removes the order when filled. */
static void exec_slot(gen_t *g, uint16_t loc, uint32_t s, uint32_t x)
{
    slot_t *sl = &g->slots[s];
    uint64_t m = ++g->match;
    if (rng_ppm(&g->rng, C_PPM)) {
        uint8_t *p = msg(g, 'C', L_C, loc);
        fill_E(p, sl->ref, x, m);
        p[31] = rng_ppm(&g->rng, 850000) ? 'Y' : 'N';
        uint32_t px = sl_px(sl);
        if (rng_ppm(&g->rng, 300000)) /* price improvement for the resting order */
            px = sl_side(sl) ? px + TICK : (px > TICK ? px - TICK : px);
        fh_put_be32(p + 32, px);
    } else {
        fill_E(msg(g, 'E', L_E, loc), sl->ref, x, m);
    }
    if (x == sl->shares)
        order_remove(g, loc, s);
    else
        sl->shares -= x;
}

/* The oldest order of the best level within EXEC_PROBE_TICKS of the mid, one side then the other;
 * a random order if there is none. */
static uint32_t inside(gen_t *g, const inst_t *in, uint16_t loc)
{
    uint8_t side = (uint8_t)(rng_u64(&g->rng) & 1);
    for (int pass = 0; pass < 2; pass++, side ^= 1) {
        for (uint32_t k = 1; k <= EXEC_PROBE_TICKS; k++) {
            if (!side && in->mid <= k * TICK)
                break;
            uint32_t px = side ? in->mid + k * TICK : in->mid - k * TICK;
            uint32_t h = level_of(g, loc, side, px)->head;
            if (h != NIL)
                return h;
        }
    }
    return pick(g, in);
}

static void do_exec(gen_t *g, uint16_t loc)
{
    inst_t *in = &g->inst[loc];
    uint32_t s = inside(g, in, loc);
    uint32_t rem = g->slots[s].shares;
    uint32_t x = (rem < 2 || rng_ppm(&g->rng, FULL_EXEC_PPM)) ? rem : part_of(g, rem);
    exec_slot(g, loc, s, x);
}

/* ---- mix ----------------------------------------------------------------------------------------- */

static inline int cat_over(const gen_t *g, int c)
{
    return (unsigned __int128)g->cat[c] * PPM > (unsigned __int128)g->catn * CAT_PPM[c] + (uint64_t)MIX_SLACK * PPM;
}

static inline int cat_under(const gen_t *g, int c)
{
    return (unsigned __int128)g->cat[c] * PPM + (uint64_t)MIX_SLACK * PPM < (unsigned __int128)g->catn * CAT_PPM[c];
}

static int draw_cat(gen_t *g)
{
    uint64_t r = rng_below(&g->rng, PPM);
    int c = r < 80000 ? C_U : r < 110000 ? C_X : r < 130000 ? C_E : r < 150000 ? C_O : C_AD;
    if (c != C_AD) {
        if (cat_over(g, c))
            c = C_AD;
    } else {
        for (int k = C_U; k < C_N; k++)
            if (cat_under(g, k))
                return k;
    }
    return c;
}

/* Add (1) or delete (0) on an instrument with live orders: steer its count towards its target. */
static int add_or_delete(gen_t *g, const inst_t *in)
{
    if (in->n >= in->cap)
        return 0;
    int64_t q = ADD_Q_PPM + (int64_t)ADD_GAIN_PPM * ((int64_t)in->target - (int64_t)in->n) / (int64_t)in->target;
    if (q < ADD_Q_MIN_PPM)
        q = ADD_Q_MIN_PPM;
    if (q > ADD_Q_MAX_PPM)
        q = ADD_Q_MAX_PPM;
    return rng_below(&g->rng, PPM) < (uint64_t)q;
}

/* ---- mid steps ----------------------------------------------------------------------------------- */

/* Step one instrument's mid by a cent (mean-reverting); the orders resting at the new mid are cleared
 * first, if budget messages suffice. */
static void mid_move(gen_t *g, uint64_t budget)
{
    uint16_t loc = zipf(g);
    inst_t *in = &g->inst[loc];
    if (in->state != 'T')
        return;
    int64_t dev = ((int64_t)in->mid - (int64_t)in->ref_px) / TICK;
    int64_t pu = 500000 - 125000 * dev / (int64_t)in->range_ticks;
    int up = (int64_t)rng_below(&g->rng, PPM) < pu;
    if (up && in->mid + TICK > in->hi)
        up = 0;
    if (!up && in->mid - TICK < in->lo)
        up = 1;
    uint32_t nm = up ? in->mid + TICK : in->mid - TICK;
    uint8_t side = up ? 1 : 0;   /* the side the new mid would cross */
    level_t *l = level_of(g, loc, side, nm);
    if (l->head != NIL) {
        uint64_t n = 0;
        for (uint32_t s = l->head; s != NIL; s = g->slots[s].next)
            n++;
        if (n > budget)
            return;
        /* oldest first; each removal re-reads the head, since order_drop may move slots */
        while (l->head != NIL) {
            uint32_t s = l->head;
            slot_t *sl = &g->slots[s];
            int exec = (unsigned __int128)g->cat[C_E] * PPM <= (unsigned __int128)g->catn * CAT_PPM[C_E];
            if (exec) {
                uint64_t m = ++g->match;
                if (rng_ppm(&g->rng, C_PPM)) {
                    uint8_t *p = msg(g, 'C', L_C, loc);
                    fill_E(p, sl->ref, sl->shares, m);
                    p[31] = 'Y';
                    fh_put_be32(p + 32, sl_px(sl));
                } else {
                    fill_E(msg(g, 'E', L_E, loc), sl->ref, sl->shares, m);
                }
            } else {
                fh_put_be64(msg(g, 'D', L_D, loc) + 11, sl->ref);
            }
            order_remove(g, loc, s);
        }
        g->st.clearing_messages += n;
    }
    in->mid = nm;
    g->st.mid_moves++;
}

/* ---- other message types ------------------------------------------------------------------------- */

static void put_sym(uint8_t *p, const inst_t *in) { memcpy(p, in->sym, 8); }

static uint32_t tick_round(uint64_t px) { return (uint32_t)(px / TICK * TICK); }

/* One of P, I, N, Q, L, Y, J, B, K, h, H, V, W; room: messages the body may still spend. */
static void do_other(gen_t *g, uint16_t loc, uint64_t room)
{
    inst_t *in = &g->inst[loc];
    rng_t *r = &g->rng;
    uint64_t x = rng_below(r, 1000);
    int kind = x < 420 ? 'P' : x < 620 ? 'I' : x < 710 ? 'N' : x < 770 ? 'Q' : x < 820 ? 'L' : x < 880 ? 'Y'
             : x < 910 ? 'J' : x < 940 ? 'B' : x < 960 ? 'K' : x < 980 ? 'h' : x < 986 ? 'H' : x < 993 ? 'V' : 'W';
    if ((kind == 'P' || kind == 'Q') && in->state != 'T')
        kind = 'N';
    if (kind == 'B' && !g->match)
        kind = 'Y';
    if (kind == 'H' && (in->state != 'T' || g->ring_n >= RESUME_RING || room < 2))
        kind = 'N';
    uint8_t *p;
    switch (kind) {
    case 'P':
        p = msg(g, 'P', L_P, loc);
        fh_put_be64(p + 11, 0);
        p[19] = (rng_u64(r) & 1) ? 'S' : 'B';
        fh_put_be32(p + 20, 100 * (1 + rng_geo(r, 100, 20)));
        put_sym(p + 24, in);
        fh_put_be32(p + 32, in->mid);
        fh_put_be64(p + 36, ++g->match);
        break;
    case 'I': {
        static const char PVI[] = "L123456789ABC ";
        static const char DIR[] = "BSNO";
        int phase_close = g->bdone * 2 >= g->B;
        p = msg(g, 'I', L_I, loc);
        uint8_t dir = (uint8_t)DIR[rng_below(r, 4)];
        fh_put_be64(p + 11, 100 * rng_below(r, 100000));
        fh_put_be64(p + 19, dir == 'N' ? 0 : 100 * (1 + rng_below(r, 10000)));
        p[27] = dir;
        put_sym(p + 28, in);
        int64_t d1 = (int64_t)rng_below(r, 21) - 10, d2 = (int64_t)rng_below(r, 11) - 5;
        fh_put_be32(p + 36, (uint32_t)((int64_t)in->mid + d1 * TICK > TICK ? (int64_t)in->mid + d1 * TICK : TICK));
        fh_put_be32(p + 40, (uint32_t)((int64_t)in->mid + d2 * TICK > TICK ? (int64_t)in->mid + d2 * TICK : TICK));
        fh_put_be32(p + 44, in->mid);
        p[48] = rng_ppm(r, 50000) ? 'H' : (phase_close ? 'C' : 'O');
        p[49] = (uint8_t)PVI[rng_below(r, sizeof PVI - 1)];
        break;
    }
    case 'N':
        p = msg(g, 'N', L_N, loc);
        put_sym(p + 11, in);
        p[19] = (uint8_t)"BSAN"[rng_below(r, 4)];
        break;
    case 'Q': {
        uint64_t k = g->bdone, n = g->B;
        uint8_t ct = k * 50 < n ? 'O' : (k * 50 >= n * 49 ? 'C' : (rng_ppm(r, 200000) ? 'H' : 'I'));
        p = msg(g, 'Q', L_Q, loc);
        fh_put_be64(p + 11, 100 * (1 + rng_below(r, 5000)));
        put_sym(p + 19, in);
        fh_put_be32(p + 27, in->mid);
        fh_put_be64(p + 31, ++g->match);
        p[39] = ct;
        break;
    }
    case 'L': {
        uint64_t m = rng_below(r, 100), s = rng_below(r, 100);
        p = msg(g, 'L', L_L, loc);
        memcpy(p + 11, MPIDS[rng_below(r, N_MPIDS)], 4);
        put_sym(p + 15, in);
        p[23] = rng_ppm(r, 300000) ? 'Y' : 'N';
        p[24] = m < 80 ? 'N' : m < 90 ? 'P' : (uint8_t)"SRL"[m % 3];
        p[25] = s < 85 ? 'A' : (uint8_t)"EWSD"[s % 4];
        break;
    }
    case 'Y':
        p = msg(g, 'Y', L_Y, loc);
        put_sym(p + 11, in);
        p[19] = (uint8_t)"012"[rng_below(r, 3)];
        break;
    case 'J': {
        uint32_t band = tick_round(in->mid / 10) ? tick_round(in->mid / 10) : TICK;
        p = msg(g, 'J', L_J, loc);
        put_sym(p + 11, in);
        fh_put_be32(p + 19, in->mid);
        fh_put_be32(p + 23, in->mid + band);
        fh_put_be32(p + 27, in->mid > band ? in->mid - band : TICK);
        fh_put_be32(p + 31, (uint32_t)rng_below(r, 4));
        break;
    }
    case 'B':
        p = msg(g, 'B', L_B, loc);
        fh_put_be64(p + 11, 1 + rng_below(r, g->match));
        break;
    case 'K': {
        uint64_t t = g->ts / NS + 300 + rng_below(r, 3300);
        p = msg(g, 'K', L_K, loc);
        put_sym(p + 11, in);
        fh_put_be32(p + 19, (uint32_t)(t < 86400 ? t : 86399));
        p[23] = rng_ppm(r, 900000) ? 'A' : 'C';
        fh_put_be32(p + 24, in->ref_px);
        break;
    }
    case 'h':
        p = msg(g, 'h', L_h, loc);
        put_sym(p + 11, in);
        p[19] = (uint8_t)"QBX"[rng_below(r, 3)];
        p[20] = rng_ppm(r, 500000) ? 'H' : 'T';
        break;
    case 'H': {
        int pause = rng_ppm(r, 700000);
        in->state = pause ? 'P' : 'H';
        emit_H(g, loc, in->state, pause ? "LUDP" : "T1  ");
        uint64_t delay = g->B / 80 + 1;
        sched_t *s = &g->ring[(g->ring_head + g->ring_n++) % RESUME_RING];
        s->due = g->bdone + delay;
        s->locate = loc;
        g->reserved++;
        g->st.halts++;
        break;
    }
    case 'V': {
        uint64_t base = (400000 + rng_below(r, 200000)) * 1000000ull;  /* index level 4000.00-6000.00, 1e-8 */
        p = msg(g, 'V', L_V, 0);
        fh_put_be64(p + 11, base / 100 * 93);
        fh_put_be64(p + 19, base / 100 * 87);
        fh_put_be64(p + 27, base / 100 * 80);
        break;
    }
    default: /* 'W' */
        p = msg(g, 'W', L_W, 0);
        p[11] = (uint8_t)"123"[rng_below(r, 3)];
        break;
    }
}

/* ---- scheduled resumptions ----------------------------------------------------------------------- */

static const sched_t *sched_peek(const gen_t *g)
{
    const sched_t *a = g->rel_next < g->n_rel ? &g->rel[g->rel_next] : NULL;
    const sched_t *b = g->ring_n ? &g->ring[g->ring_head] : NULL;
    if (!a)
        return b;
    if (!b)
        return a;
    return b->due < a->due ? b : a;
}

static void sched_emit(gen_t *g)
{
    const sched_t *s = sched_peek(g);
    uint16_t loc = s->locate;
    if (s == &g->ring[g->ring_head]) {
        g->ring_head = (g->ring_head + 1) % RESUME_RING;
        g->ring_n--;
    } else {
        g->rel_next++;
    }
    g->reserved--;
    g->inst[loc].state = 'T';
    emit_H(g, loc, 'T', "    ");
}

/* ---- anomalies ----------------------------------------------------------------------------------- */

static uint64_t dead_ref(gen_t *g)
{
    if (g->last_dead && (rng_u64(&g->rng) & 1))
        return g->last_dead;
    return (1ull << 62) + rng_below(&g->rng, 1ull << 40);
}

static void anomaly(gen_t *g)
{
    rng_t *r = &g->rng;
    uint16_t loc = zipf(g);
    inst_t *in = &g->inst[loc];
    int kind = (int)rng_below(r, FH_SYNTH_AN_COUNT);
    if (in->n < 1 && (kind == FH_SYNTH_AN_DUPLICATE_ADD || kind == FH_SYNTH_AN_OVEREXECUTION ||
                      kind == FH_SYNTH_AN_OVERCANCEL))
        kind = FH_SYNTH_AN_UNKNOWN_TYPE;
    if (in->n < 2 && kind == FH_SYNTH_AN_REPLACE_ONTO_LIVE)
        kind = FH_SYNTH_AN_UNKNOWN_TYPE;
    g->anom = 1;
    uint8_t side = (rng_u64(r) & 1) ? 'S' : 'B';
    uint32_t px = quote(g, in, side == 'S');
    uint32_t shares = draw_shares(g);
    switch (kind) {
    case FH_SYNTH_AN_UNKNOWN_REF_D:
        fh_put_be64(msg(g, 'D', L_D, loc) + 11, dead_ref(g));
        break;
    case FH_SYNTH_AN_UNKNOWN_REF_E:
        fill_E(msg(g, 'E', L_E, loc), dead_ref(g), shares, ++g->match);
        break;
    case FH_SYNTH_AN_UNKNOWN_REF_X:
        fill_X(msg(g, 'X', L_X, loc), dead_ref(g), shares);
        break;
    case FH_SYNTH_AN_UNKNOWN_REF_U: {
        uint64_t orig = dead_ref(g);
        fill_U(msg(g, 'U', L_U, loc), orig, new_ref(g, loc), shares, px);
        break;
    }
    case FH_SYNTH_AN_DUPLICATE_ADD:
        fill_A(msg(g, 'A', L_A, loc), g->slots[pick(g, in)].ref, side, shares, in->sym, px);
        break;
    case FH_SYNTH_AN_OVEREXECUTION: {
        uint32_t s = pick(g, in);
        fill_E(msg(g, 'E', L_E, loc), g->slots[s].ref, g->slots[s].shares + 1 + (uint32_t)rng_below(r, 500), ++g->match);
        order_remove(g, loc, s);
        break;
    }
    case FH_SYNTH_AN_OVERCANCEL: {
        uint32_t s = pick(g, in);
        fill_X(msg(g, 'X', L_X, loc), g->slots[s].ref, g->slots[s].shares + 1 + (uint32_t)rng_below(r, 500));
        order_remove(g, loc, s);
        break;
    }
    case FH_SYNTH_AN_BAD_SIDE:
        fill_A(msg(g, 'A', L_A, loc), new_ref(g, loc), (uint8_t)"bsX 0"[rng_below(r, 5)], shares, in->sym, px);
        break;
    case FH_SYNTH_AN_ZERO_SHARES:
        fill_A(msg(g, 'A', L_A, loc), new_ref(g, loc), side, 0, in->sym, px);
        break;
    case FH_SYNTH_AN_REPLACE_ONTO_LIVE: {
        uint32_t ia = (uint32_t)rng_below(r, in->n);
        uint32_t ib = (ia + 1 + (uint32_t)rng_below(r, in->n - 1)) % in->n;
        uint32_t a = in->first + ia, b = in->first + ib;
        fill_U(msg(g, 'U', L_U, loc), g->slots[a].ref, g->slots[b].ref, shares, quote(g, in, sl_side(&g->slots[a])));
        order_remove(g, loc, a);
        break;
    }
    case FH_SYNTH_AN_UNKNOWN_TYPE: {
        static const char TYPES[] = "ZGTMabxz0";
        uint8_t b[64];
        uint32_t len = 11 + (uint32_t)rng_below(r, 30);
        put_hdr(b, (uint8_t)TYPES[rng_below(r, sizeof TYPES - 1)], loc, g->ts);
        for (uint32_t k = 11; k < len; k++)
            b[k] = (uint8_t)rng_u64(r);
        raw(g, b, len);
        break;
    }
    default: { /* FH_SYNTH_AN_SHORT_MESSAGE: a prefix of a real message, never applied */
        uint8_t b[64];
        uint32_t full;
        uint64_t t = rng_below(r, 6);
        if (in->n == 0 && t >= 1 && t <= 4)
            t = 0;
        switch (t) {
        case 0:
            put_hdr(b, 'A', loc, g->ts);
            fill_A(b, new_ref(g, loc), side, shares, in->sym, px);
            full = L_A;
            break;
        case 1:
            put_hdr(b, 'D', loc, g->ts);
            fh_put_be64(b + 11, g->slots[pick(g, in)].ref);
            full = L_D;
            break;
        case 2:
            put_hdr(b, 'E', loc, g->ts);
            fill_E(b, g->slots[pick(g, in)].ref, 1, g->match + 1);
            full = L_E;
            break;
        case 3:
            put_hdr(b, 'X', loc, g->ts);
            fill_X(b, g->slots[pick(g, in)].ref, 1);
            full = L_X;
            break;
        case 4:
            put_hdr(b, 'U', loc, g->ts);
            fill_U(b, g->slots[pick(g, in)].ref, new_ref(g, loc), shares, px);
            full = L_U;
            break;
        default:
            put_hdr(b, 'S', 0, g->ts);
            b[11] = 'A';
            full = L_S;
            break;
        }
        raw(g, b, (uint32_t)rng_below(r, full));
        break;
    }
    }
    g->anom = 0;
    g->st.anomalies[kind]++;
    g->st.anomalies_total++;
}

/* ---- the day ------------------------------------------------------------------------------------- */

static void normal(gen_t *g, uint64_t room)
{
    int c = draw_cat(g);
    uint16_t loc = zipf(g);
    inst_t *in = &g->inst[loc];
    if (c == C_O) {
        do_other(g, loc, room);
        return;
    }
    if (in->n == 0) {   /* nothing to delete, replace, cancel or execute */
        do_add(g, loc);
        return;
    }
    switch (c) {
    case C_U:
        do_replace(g, loc);
        break;
    case C_X:
        do_cancel(g, loc);
        break;
    case C_E:
        if (in->state == 'T')
            do_exec(g, loc);
        else
            do_delete(g, loc);
        break;
    default:
        if (add_or_delete(g, in))
            do_add(g, loc);
        else
            do_delete(g, loc);
        break;
    }
}

static void body(gen_t *g)
{
    memset(g->cat, 0, sizeof g->cat);
    g->catn = 0;
    while (g->bdone < g->B && !g->out.err) {
        uint64_t j = g->bdone;
        time_at(g, j);
        uint64_t room = g->B - j - g->reserved;
        const sched_t *s = sched_peek(g);
        if (g->rest_left) {
            do_rest(g);
        } else if (s && (room == 0 || s->due <= j)) {
            sched_emit(g);
        } else if (g->anom_owed) {
            g->anom_owed--;
            anomaly(g);
        } else {
            if (room > 1 && rng_ppm(&g->rng, MIDMOVE_PPM)) {
                uint64_t before = g->st.messages;
                mid_move(g, room - 1);
                room -= g->st.messages - before;
            }
            normal(g, room);
        }
        uint64_t done = g->st.messages - g->B0;
        /* every body message, anomalies included, is one chance in 10^6 / ppm of owing an anomaly
         * (an iteration can write several messages, so drawing once per iteration would fall short) */
        if (g->ppm)
            for (uint64_t k = j; k < done; k++)
                g->anom_owed += rng_ppm(&g->rng, g->ppm);
        g->bdone = done;
    }
}

static int gen_setup(gen_t *g, const fh_synth_cfg_t *cfg);

static uint32_t halted_at_start(uint32_t n) { return n < 10 ? 0 : (2 + n / 1000 < 12 ? 2 + n / 1000 : 12); }

uint64_t fh_synth_min_messages(uint32_t instruments)
{
    if (instruments == 0 || instruments > 65535)
        return 0;
    return 2ull * instruments + 6 + halted_at_start(instruments);
}

static void gen_free(gen_t *g)
{
    free(g->inst);
    free(g->dir);
    free(g->rank_loc);
    free(g->zthr);
    free(g->zalias);
    free(g->slots);
    free(g->lv_pool);
}

/* Build instruments, Zipf table, order pool and level table. */
static int gen_setup(gen_t *g, const fh_synth_cfg_t *cfg)
{
    uint32_t n = cfg->instruments;
    uint64_t x = cfg->seed;
    for (int i = 0; i < 4; i++)
        g->rng.s[i] = splitmix64(&x);
    for (int i = 0; i < 4; i++)
        g->zrng.s[i] = splitmix64(&x);
    g->n_inst = n;
    g->ppm = cfg->anomaly_ppm > PPM ? PPM : cfg->anomaly_ppm;
    g->next_ref = 1;
    uint32_t h0 = halted_at_start(n);
    g->B = cfg->messages - (2ull * n + 6);   /* includes the h0 releases */

    uint64_t *by_rank = malloc(sizeof *by_rank * n);
    uint8_t *sfx = malloc(n);
    uint64_t *sorted = malloc(sizeof *sorted * n);
    g->inst = aligned_alloc(64, sizeof *g->inst * (n + 1));
    g->dir = calloc(n + 1, sizeof *g->dir);
    g->rank_loc = malloc(sizeof *g->rank_loc * n);
    g->zthr = malloc(sizeof *g->zthr * n);
    g->zalias = malloc(sizeof *g->zalias * n);
    uint32_t *stack = malloc(sizeof *stack * n * 2);
    if (g->inst)
        memset(g->inst, 0, sizeof *g->inst * (n + 1));
    if (!by_rank || !sfx || !sorted || !g->inst || !g->dir || !g->rank_loc || !g->zthr || !g->zalias || !stack) {
        free(by_rank), free(sfx), free(sorted), free(stack);
        return -ENOMEM;
    }

    /* symbols; locates in alphabetical order; rank kept in the low 16 bits after sorting */
    make_symbols(by_rank, n, sfx);
    for (uint32_t r = 0; r < n; r++)
        sorted[r] = by_rank[r];
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    for (uint32_t r = 0; r < n; r++) {
        uint64_t k = by_rank[r];
        const uint64_t *f = bsearch(&k, sorted, n, sizeof *sorted, cmp_u64);
        uint16_t loc = (uint16_t)(f - sorted + 1);
        g->rank_loc[r] = loc;
        inst_t *in = &g->inst[loc];
        inst_dir_t *dr = &g->dir[loc];
        sym_from_key(in->sym, k);
        static const uint8_t CATS[] = "QQQQQQQQGGGSSSNNNNPA";
        dr->mkt_cat = CATS[rng_below(&g->rng, 20)];
        dr->fin_status = (dr->mkt_cat == 'Q' || dr->mkt_cat == 'G' || dr->mkt_cat == 'S') ? 'N' : ' ';
        dr->issue_class = sfx[r] ? sfx[r] : (rng_ppm(&g->rng, 60000) ? 'A' : 'C');
        dr->tier = rng_ppm(&g->rng, 400000) ? '1' : '2';
        dr->etp = 'N';
        dr->inverse = 'N';
        for (size_t e = 0; e < sizeof ETPS / sizeof ETPS[0]; e++)
            if (sym_key_str(ETPS[e].sym) == k) {
                dr->etp = 'Y';
                dr->lev = ETPS[e].lev;
                dr->inverse = ETPS[e].inv ? 'Y' : 'N';
                dr->tier = '1';
            }
        /* reference price: log-uniform over $1..$512 by octave, capped at $500, whole cents */
        uint64_t oct = rng_below(&g->rng, 9), lo = 100ull << oct;
        uint64_t ticks = lo + rng_below(&g->rng, lo);
        if (ticks > 50000)
            ticks = 50000;
        in->ref_px = (uint32_t)(ticks * TICK);
        in->mid = in->ref_px;
        in->range_ticks = (uint16_t)(ticks / 20 < 5 ? 5 : ticks / 20 > MID_RANGE_MAX ? MID_RANGE_MAX : ticks / 20);
        in->lo = (uint32_t)((ticks > in->range_ticks + 3u ? ticks - in->range_ticks : 3) * TICK);
        in->hi = in->ref_px + in->range_ticks * TICK;
        in->state = 'T';
    }
    free(by_rank);
    free(sfx);
    free(sorted);

    /* Zipf weights 2^40 / (rank + 3); integer alias table (Vose) */
    uint64_t W = 0;
    for (uint32_t r = 0; r < n; r++)
        W += (1ull << 40) / (r + 3);
    g->zW = W;
    uint32_t ns = 0, nl = 0;   /* small from the bottom, large from the top of stack */
    uint64_t *mass = g->zthr;  /* mass m_i = w_i * n, bucket capacity W */
    for (uint32_t r = 0; r < n; r++) {
        mass[r] = (1ull << 40) / (r + 3) * n;
        g->zalias[r] = (uint16_t)r;
        if (mass[r] < W)
            stack[ns++] = r;
        else
            stack[2 * n - 1 - nl++] = r;
    }
    while (ns && nl) {
        uint32_t s = stack[--ns], l = stack[2 * n - nl];
        g->zalias[s] = (uint16_t)l;   /* zthr[s] = mass[s] already */
        mass[l] -= W - mass[s];
        if (mass[l] < W) {
            nl--;
            stack[ns++] = l;
        }
    }
    while (ns)
        mass[stack[--ns]] = W;
    while (nl)
        mass[stack[2 * n - nl--]] = W;
    free(stack);

    /* live-order targets ~ sqrt(activity); capacities 2 * target + 4 carved from one pool */
    uint64_t T = (uint64_t)LIVE_PER_INSTRUMENT * n;
    if (T > g->B / LIVE_MSG_DIVISOR)
        T = g->B / LIVE_MSG_DIVISOR;
    uint64_t SW = 0;
    for (uint32_t r = 0; r < n; r++)
        SW += isqrt64((1ull << 40) / (r + 3));
    uint64_t slots = 0;
    for (uint32_t r = 0; r < n; r++) {
        inst_t *in = &g->inst[g->rank_loc[r]];
        uint64_t t = 1 + (uint64_t)(((unsigned __int128)T * isqrt64((1ull << 40) / (r + 3))) / SW);
        in->target = (uint32_t)t;
        in->cap = (uint32_t)(2 * t + 4);
        slots += in->cap;
    }
    if (slots >= 0xFFFFFFF0u)
        return -ENOMEM;
    g->slots = malloc(sizeof *g->slots * (slots + 1));
    uint64_t ticks = 0;
    for (uint32_t loc = 1; loc <= n; loc++) {
        inst_t *in = &g->inst[loc];
        in->base = in->lo / TICK > MAX_OFF_TICKS ? in->lo / TICK - MAX_OFF_TICKS : 0;
        in->span = in->hi / TICK + MAX_OFF_TICKS + 1 - in->base;
        ticks += 2ull * in->span;
    }
    /* zeroed = empty (NIL): calloc maps it lazily, so prices never reached cost no memory */
    g->lv_pool = calloc(ticks, sizeof *g->lv_pool);
    if (!g->slots || !g->lv_pool)
        return -ENOMEM;
    uint64_t loff = 0;
    for (uint32_t loc = 1; loc <= n; loc++) {
        inst_t *in = &g->inst[loc];
        in->lv = g->lv_pool + loff;
        loff += 2ull * in->span;
    }
    uint64_t off = 1;   /* slot 0 is NIL */
    for (uint32_t loc = 1; loc <= n; loc++) {
        g->inst[loc].first = (uint32_t)off;
        off += g->inst[loc].cap;
    }

    /* a few quiet instruments start halted (IPOs) and are released in the body */
    g->n_rel = h0;
    for (uint32_t k = 0; k < h0; k++) {
        uint16_t loc;
        int dup;
        do {
            loc = g->rank_loc[n / 2 + rng_below(&g->rng, n - n / 2)];
            dup = 0;
            for (uint32_t q = 0; q < k; q++)
                dup |= g->rel[q].locate == loc;
        } while (dup);
        g->rel[k].locate = loc;
        g->rel[k].due = g->B / 20 + (uint64_t)k * (g->B / 4) / h0;
        g->inst[loc].state = 'H';
    }
    g->reserved = h0;
    if (cfg->shape == FH_SYNTH_SHAPE_REAL || cfg->shape == FH_SYNTH_SHAPE_REAL_LATE) {
        g->real = 1;
        g->late = cfg->shape == FH_SYNTH_SHAPE_REAL_LATE;
        uint64_t newrefs = (uint64_t)(((unsigned __int128)g->B * REAL_NEWREF_PPM) / PPM) + 1;
        g->rq = (REAL_REF_CLOSE - REAL_REF_OPEN) / (4 * newrefs);
        g->rq = g->rq ? g->rq : 1;
        g->blk = g->late ? LATE_BLK : (REAL_REF_CLOSE - REAL_REF_OPEN) / REAL_BLOCKS;
        g->frontier = REAL_REF_OPEN;
        for (uint32_t k = 0; k < REAL_STREAMS; k++) { /* each part-way through a block below the frontier */
            uint64_t b0 = REAL_REF_OPEN * k / REAL_STREAMS, len = REAL_REF_OPEN / REAL_STREAMS;
            g->rs[k].next = b0 + rng_below(&g->rng, len / 2);
            if (g->late) /* counter k at residue k, as the slice's four are at four residues */
                g->rs[k].next = (g->rs[k].next & ~3ull) + k;
            g->rs[k].end = b0 + len;
        }
        if (g->late) { /* the window: the blocks its new references take (at the slice's mean step, with a
                        * margin), ending below the close's last reference, or from twice the open's on a
                        * day too long for that */
            uint64_t sum = 0; /* of the slice's steps: the mean step is sum / LATE_STEP_TOTAL (6,796 / 661) */
            for (uint32_t i = 0; i < LATE_STEPS; i++)
                sum += (uint64_t)LATE_STEP[i] * (LATE_STEP_CUM[i] - (i ? LATE_STEP_CUM[i - 1] : 0));
            uint64_t span = newrefs / LATE_STEP_TOTAL * sum + sum;
            uint64_t need = (span / LATE_BLK + 2 * REAL_STREAMS) * LATE_BLK;
            g->late_start = need + 2 * REAL_REF_OPEN < REAL_REF_CLOSE ? REAL_REF_CLOSE - need : 2 * REAL_REF_OPEN;
        }
        uint64_t rest = 0;
        for (uint32_t loc = 1; loc <= n; loc++)
            rest += rest_count(&g->inst[loc]);
        if (rest <= g->B / 8) { /* else too small a day for an open book: none */
            g->rest_left = rest;
            g->rest_loc = 1;
            g->reserved += rest;
        }
        if (g->late && !g->rest_left)
            late_window(g);
    }
    for (int i = 0; i < ZQ; i++) {
        g->zq[i] = zipf_draw(g);
        g->zr[i] = rng_u64(&g->zrng);
    }
    time_init(g);
    return 0;
}

static void prelude(gen_t *g)
{
    uint32_t n = g->n_inst;
    g->ts = T_SYS_OPEN;
    emit_S(g, 'O');
    for (uint32_t loc = 1; loc <= n; loc++) {
        inst_t *in = &g->inst[loc];
        inst_dir_t *dr = &g->dir[loc];
        g->ts = T_SYS_OPEN + NS / 10 + (uint64_t)loc * 500000;   /* 500 us apart */
        uint8_t *p = msg(g, 'R', L_R, (uint16_t)loc);
        memcpy(p + 11, in->sym, 8);
        p[19] = dr->mkt_cat;
        p[20] = dr->fin_status;
        fh_put_be32(p + 21, 100);
        p[25] = 'N';
        p[26] = dr->issue_class;
        memcpy(p + 27, "Z ", 2);
        p[29] = 'P';
        p[30] = dr->fin_status == 'N' ? 'N' : ' ';
        p[31] = in->state == 'H' ? 'Y' : 'N';
        p[32] = dr->tier;
        p[33] = dr->etp;
        fh_put_be32(p + 34, dr->lev);
        p[38] = dr->inverse;
    }
    g->ts = T_SYS_START;
    emit_S(g, 'S');
    for (uint32_t loc = 1; loc <= n; loc++) {
        g->ts = T_SYS_START + 1000 + (uint64_t)loc * 1000;
        int halted = g->inst[loc].state == 'H';
        emit_H(g, (uint16_t)loc, halted ? 'H' : 'T', halted ? "IPO1" : "    ");
    }
    g->ts = g->last_ts = T_MKT_OPEN;
    emit_S(g, 'Q');
}

static void epilogue(gen_t *g)
{
    g->ts = T_MKT_CLOSE;
    emit_S(g, 'M');
    g->ts = T_SYS_END;
    emit_S(g, 'E');
    g->ts = T_MSG_END;
    emit_S(g, 'C');
}

static int check_cfg(const fh_synth_cfg_t *cfg)
{
    if (!cfg)
        SYNTH_ERR(-EINVAL, "cfg is NULL");
    if (cfg->instruments == 0 || cfg->instruments > 65535)
        SYNTH_ERR(-EINVAL, "instruments must be 1..65535, not %u", cfg->instruments);
    if (cfg->shape != FH_SYNTH_SHAPE_UNIFORM && cfg->shape != FH_SYNTH_SHAPE_REAL &&
        cfg->shape != FH_SYNTH_SHAPE_REAL_LATE)
        SYNTH_ERR(-EINVAL, "shape must be %d (uniform), %d (real) or %d (real-late), not %u", FH_SYNTH_SHAPE_UNIFORM,
                  FH_SYNTH_SHAPE_REAL, FH_SYNTH_SHAPE_REAL_LATE, cfg->shape);
    uint64_t m = fh_synth_min_messages(cfg->instruments);
    if (cfg->messages < m)
        SYNTH_ERR(-EINVAL, "%u instruments need at least %llu messages, not %llu", cfg->instruments,
                  (unsigned long long)m, (unsigned long long)cfg->messages);
    return 0;
}

/* Run the whole day into g->out (set up by the caller). */
static int run(gen_t *g, const fh_synth_cfg_t *cfg, fh_synth_stats_t *stats)
{
    int rc = gen_setup(g, cfg);
    if (rc)
        goto done;
    prelude(g);
    g->B0 = g->st.messages;
    body(g);
    if (!g->out.err)
        epilogue(g);
    rc = g->out.err;
    g->st.live_orders_end = g->live;
    g->st.last_ref = g->real ? g->ref_max : g->next_ref - 1;
    g->st.last_match = g->match;
    if (!rc && stats)
        *stats = g->st;
done:
    gen_free(g);
    return rc;
}

int fh_synth_buffer_ex(const fh_synth_cfg_t *cfg, uint8_t **out, size_t *out_len, fh_synth_stats_t *stats)
{
    if (!out || !out_len)
        SYNTH_ERR(-EINVAL, "out and out_len must not be NULL");
    *out = NULL;
    *out_len = 0;
    int rc = check_cfg(cfg);
    if (rc)
        return rc;
    gen_t *g = calloc(1, sizeof *g);
    if (!g)
        SYNTH_ERR(-ENOMEM, "out of memory");
    /* about 31 bytes per message on average; grown if needed */
    unsigned __int128 est = (unsigned __int128)cfg->messages * 31 + (unsigned __int128)cfg->instruments * 70 + 4096;
    if (est > SIZE_MAX / 2) {
        free(g);
        SYNTH_ERR(-ENOMEM, "%llu messages do not fit in memory", (unsigned long long)cfg->messages);
    }
    g->out.cap = (size_t)est;
    g->out.buf = malloc(g->out.cap);
    g->out.fd = -1;
    if (!g->out.buf) {
        free(g);
        SYNTH_ERR(-ENOMEM, "out of memory for a %zu-byte buffer", (size_t)est);
    }
    want_huge_pages(g->out.buf, g->out.cap);
    rc = run(g, cfg, stats);
    if (rc) {
        free(g->out.buf);
        free(g);
        SYNTH_ERR(rc, "generating %llu messages: %s", (unsigned long long)cfg->messages, strerror(-rc));
    }
    uint8_t *b = g->out.buf;
    if (g->out.len < g->out.cap) {
        uint8_t *nb = realloc(b, g->out.len);
        if (nb)
            b = nb;
    }
    *out = b;
    *out_len = g->out.len;
    free(g);
    return 0;
}

int fh_synth_buffer(const fh_synth_cfg_t *cfg, uint8_t **out, size_t *out_len)
{
    return fh_synth_buffer_ex(cfg, out, out_len, NULL);
}

void fh_synth_free(uint8_t *p) { free(p); }

int fh_synth_file_ex(const fh_synth_cfg_t *cfg, const char *path, fh_synth_stats_t *stats)
{
    if (!path)
        SYNTH_ERR(-EINVAL, "path is NULL");
    int rc = check_cfg(cfg);
    if (rc)
        return rc;
    gen_t *g = calloc(1, sizeof *g);
    if (!g)
        SYNTH_ERR(-ENOMEM, "out of memory");
    g->out.cap = 1u << 20;
    g->out.buf = malloc(g->out.cap);
    if (!g->out.buf) {
        free(g);
        SYNTH_ERR(-ENOMEM, "out of memory");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        free(g->out.buf);
        free(g);
        SYNTH_ERR(rc, "open %s: %s", path, strerror(-rc));
    }
    /* a partial day is removed on failure, but only from a regular file: a device (/dev/null, /dev/full), a FIFO or
     * a socket given as the output is never unlinked */
    struct stat st;
    int regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    g->out.fd = fd;
    rc = run(g, cfg, stats);
    if (!rc) {
        out_flush(&g->out);
        rc = g->out.err;
    }
    if (close(fd) < 0 && !rc)
        rc = -errno;
    free(g->out.buf);
    free(g);
    if (rc) {
        if (regular)
            unlink(path);
        SYNTH_ERR(rc, "writing %s: %s", path, strerror(-rc));
    }
    return 0;
}

int fh_synth_file(const fh_synth_cfg_t *cfg, const char *path)
{
    return fh_synth_file_ex(cfg, path, NULL);
}
