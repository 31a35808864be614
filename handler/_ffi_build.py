"""cffi builder for handler._native, run by meson: `python _ffi_build.py OUT.c`.

The declarations below mirror native/include/fh/*.h; the generated C includes those headers, so any
mismatch fails the build instead of corrupting memory at run time. Only exported, non-inline functions
are declared (FFI cannot call `static inline`).
"""

import sys

import cffi

CDEF = """
const char *fh_errmsg(void);

/* itch.h */
extern const uint8_t fh_itch_len[256];
int fh_itch_to_json(const uint8_t *m, size_t len, char *out, size_t cap);
#define FH_ITCH_JSON_MAX 4096
uint64_t fh_itch_scan(const uint8_t *p, size_t len, uint64_t *sum);
size_t fh_blocks_prefix(const uint8_t *p, size_t len, size_t max_bytes);
uint64_t fh_blocks_index(const uint8_t *p, size_t len, uint32_t *off, uint64_t cap, size_t *used);

/* book.h */
typedef struct fh_engine fh_engine_t;
typedef struct fh_engine_cfg {
    uint32_t max_instruments;
    uint32_t max_orders;
    uint32_t max_levels;
} fh_engine_cfg_t;
typedef struct fh_level {
    uint32_t price;
    uint32_t orders;
    uint64_t shares;
} fh_level_t;
typedef struct fh_book_info {
    uint16_t locate;
    char symbol[9];
    uint8_t symbol_len;
    char trading_state;
    uint8_t status;
    uint32_t levels[2];
    uint32_t last_price;
    uint32_t last_shares;
    uint64_t updates;
} fh_book_info_t;
typedef struct fh_seg fh_seg_t;
typedef struct fh_seg_cfg {
    const char *path;
    const char *name;
    uint32_t max_levels;
    uint32_t event_capacity;
    uint32_t depth;
    int gid;
    uint32_t ladder_books;
} fh_seg_cfg_t;
#define FH_SEG_LADDER_BOOKS ...
#define FH_SEG_MAX_LADDER_BOOKS ...
size_t fh_seg_footprint(const fh_seg_cfg_t *cfg);
fh_seg_t *fh_seg_create(const fh_seg_cfg_t *cfg);
void fh_seg_close(fh_seg_t *s, int unlink_files);
void fh_seg_heartbeat(fh_seg_t *s);

size_t fh_engine_footprint(const fh_engine_cfg_t *cfg);
fh_engine_t *fh_engine_create(const fh_engine_cfg_t *cfg);
fh_engine_t *fh_engine_create_on(const fh_engine_cfg_t *cfg, fh_seg_t *seg);
void fh_engine_set_publish(fh_engine_t *e, bool on);
void fh_engine_set_rx_tsc(fh_engine_t *e, uint64_t tsc);
void fh_engine_publish_stats(fh_engine_t *e);
int fh_engine_set_status(fh_engine_t *e, uint16_t locate, int status, const uint8_t *m);
void fh_engine_destroy(fh_engine_t *e);
void fh_engine_reset(fh_engine_t *e);
void fh_engine_clear_books(fh_engine_t *e);
int fh_engine_set_publish_filter(fh_engine_t *e, const char *const *symbols, uint32_t n);
int fh_engine_set_new_book_status(fh_engine_t *e, int status);
void fh_engine_apply(fh_engine_t *e, const uint8_t *msg, size_t len);
size_t fh_engine_apply_blocks(fh_engine_t *e, const uint8_t *p, size_t len);
void fh_engine_batch_begin(fh_engine_t *e, uint64_t rx_tsc);
void fh_engine_batch_end(fh_engine_t *e);
uint64_t *fh_engine_counter_slot(fh_engine_t *e, int c);
void fh_engine_counters(const fh_engine_t *e, uint64_t *out);
const uint64_t *fh_engine_type_counts(const fh_engine_t *e);
const char *fh_counter_name(int c);
uint32_t fh_engine_locates(const fh_engine_t *e, uint16_t *out, uint32_t cap);
int fh_engine_book_info(const fh_engine_t *e, uint16_t locate, fh_book_info_t *out);
uint32_t fh_engine_levels(const fh_engine_t *e, uint16_t locate, int side, fh_level_t *out, uint32_t cap);
uint64_t fh_engine_live_orders(const fh_engine_t *e);
uint64_t fh_engine_spilled(const fh_engine_t *e);
uint64_t fh_engine_levels_used(const fh_engine_t *e);
typedef struct fh_snapshot_meta {
    char session[10]; uint64_t next_seq; uint32_t day; uint32_t flags; uint64_t created_ns; uint64_t orders;
    uint32_t books;
} fh_snapshot_meta_t;
int fh_engine_snapshot_save(fh_engine_t *e, const fh_snapshot_meta_t *meta, const char *path);
int fh_engine_snapshot_load(fh_engine_t *e, const char *path, fh_snapshot_meta_t *meta);

/* journal_file.h: the journal files read in C (a restart's apply) */
typedef struct fh_jfile_result {
    char session[10]; uint32_t day; uint32_t part; uint64_t first_seq; uint64_t stepped; uint64_t records;
    uint64_t msgs_records; uint64_t holes; uint64_t messages; uint64_t end_seq; uint64_t bytes;
} fh_jfile_result_t;
int fh_jfile_apply(fh_engine_t *e, const char *path, uint64_t after, fh_jfile_result_t *out);
uint32_t fh_crc32(uint32_t crc, const void *p, size_t n);

/* consumer.h: what a sequenced feed delivers to */
typedef struct fh_feed_consumer {
    void *ctx;
    void (*apply_blocks)(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                         size_t len);
    void (*apply)(void *ctx, const char *session, uint64_t seq, const uint8_t *msg, size_t len);
    void (*lost)(void *ctx, const char *session, uint64_t from, uint64_t to);
    void (*snapshot_begin)(void *ctx, const char *session);
    void (*snapshot_end)(void *ctx, const char *session, uint64_t seq);
    int (*apply_datagram)(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                          size_t len);
    const uint8_t *framing;
} fh_feed_consumer_t;
void fh_engine_consumer(fh_engine_t *e, fh_feed_consumer_t *out);
void fh_engine_consumer_staged(fh_engine_t *e, fh_feed_consumer_t *out);
int fh_engine_set_all_status(fh_engine_t *e, int status);

/* mold.h: a feed's sequencing */
typedef struct fh_mold_cfg {
    uint64_t gap_wait;
    uint64_t request_timeout;
    uint32_t retries;
    uint32_t request_max;
    uint32_t max_outstanding;
    uint32_t hold;
    bool can_request;
    int policy;
    uint64_t line_stale;
    uint64_t line_down;
    uint32_t recovery_lines;
    void *hold_mem;
    uint64_t max_ahead;
    uint32_t confirm;
    uint64_t recover_max;
    const uint8_t *msg_len;
} fh_mold_cfg_t;
typedef struct fh_mold_request {
    char session[10];
    uint64_t seq;
    uint16_t count;
} fh_mold_request_t;
typedef struct fh_mold_line {
    uint64_t datagrams, messages, won, duplicates, late, lost, next, last_rx;
    int state;
} fh_mold_line_t;
typedef struct fh_snapshot_source {
    int (*request)(void *ctx, const char *session, uint64_t after_seq);
    void *ctx;
} fh_snapshot_source_t;
typedef struct fh_mold_feed {
    char session[10];
    int have_session;
    int state;
    uint64_t next_seq;
    uint64_t known_hi;
    int gap_open;
    uint32_t held_now;
    int snap_pending;
    int stale;
    int ended;
    uint32_t outstanding;
    uint64_t counters[...];
    fh_mold_line_t line[16];
    ...;
} fh_mold_feed_t;
void fh_mold_cfg_defaults(fh_mold_cfg_t *c, uint64_t ticks_per_ms);
int fh_mold_feed_init(fh_mold_feed_t *f, const fh_mold_cfg_t *cfg);
void fh_mold_feed_free(fh_mold_feed_t *f);
void fh_mold_feed_set_snapshot_source(fh_mold_feed_t *f, const fh_snapshot_source_t *s);
void fh_mold_feed_set_consumer(fh_mold_feed_t *f, const fh_feed_consumer_t *c);
int fh_mold_apply_unsequenced(const uint8_t *d, size_t len, const fh_feed_consumer_t *c, uint64_t *malformed);
int fh_mold_feed_apply(fh_mold_feed_t *f, const uint8_t *d, size_t len, int line, uint64_t now);
int fh_mold_feed_poll(fh_mold_feed_t *f, uint64_t now, fh_mold_request_t *out, int cap);
size_t fh_mold_request_encode(uint8_t *out, const fh_mold_request_t *r);
void fh_mold_snapshot_begin(fh_mold_feed_t *f);
void fh_mold_snapshot_apply(fh_mold_feed_t *f, const uint8_t *msg, size_t len);
void fh_mold_snapshot_end(fh_mold_feed_t *f, uint64_t seq);
const char *fh_line_state_name(int s);
const char *fh_feed_state_name(int s);
const char *fh_mold_counter_name(int c);

/* synth.h */
typedef struct fh_synth_cfg {
    uint64_t messages;
    uint32_t instruments;
    uint64_t seed;
    uint32_t anomaly_ppm;
    uint32_t shape;
} fh_synth_cfg_t;
uint64_t fh_synth_min_messages(uint32_t instruments);
int fh_synth_buffer(const fh_synth_cfg_t *cfg, uint8_t **out, size_t *out_len);
void fh_synth_free(uint8_t *p);
int fh_synth_file(const fh_synth_cfg_t *cfg, const char *path);

/* shm.h: the segment as a reader sees it. Plain integers stand for the _Atomic fields of the same size;
 * the header and stats are partial (`...;`: cffi takes their layout from the compiler, and their padding
 * and _Alignas have no names to declare); the wake page is opaque. Read the _Atomic fields through the
 * wrappers of native/src/shm_reader.c, which are the exported forms of the header's static inline readers. */
#define FH_SHM_MAGIC 0x31304d4853484646
#define FH_SHM_LAYOUT_VERSION 5
#define FH_SHM_BOOKS 65536
#define FH_SHM_MAX_COUNTERS 64
#define FH_BOOK_EMPTY 0
#define FH_BOOK_LIVE 1
#define FH_BOOK_STALE 2
#define FH_BOOK_F_UNPUBLISHED 1
#define FH_BOOK_F_INCOMPLETE 2
#define FH_EV_BBO 1
#define FH_EV_TRADE 2
#define FH_EV_STATE 3
#define FH_EV_STALE 4
#define FH_EV_RECOVERED 5
#define FH_SHM_EV_NONE 0
#define FH_SHM_EV_OK 1
#define FH_SHM_EV_OVERRUN 2
typedef struct fh_shm_side {
    uint32_t off;
    uint32_t n;
} fh_shm_side_t;
#define FH_SHM_LADDER_BITS ...
#define FH_SHM_LADDER_W ...
typedef struct fh_shm_lside {
    uint32_t lo;
    uint32_t best;
    uint32_t nl;
    uint32_t tick;
    uint32_t mul;
    uint32_t sh;
    uint64_t wslot;
    uint64_t occ[4];
} fh_shm_lside_t;
typedef struct fh_shm_book {
    uint32_t seq;
    uint32_t locate;
    char trading_state;
    uint8_t status;
    uint8_t flags;
    uint8_t symbol_len;
    uint8_t cls[2];
    uint16_t ladder;
    fh_shm_side_t side[2];
    char symbol[8];
    int64_t last_price;
    uint32_t last_shares;
    uint32_t updates;
    uint64_t itch_ts;
} fh_shm_book_t;
typedef struct fh_shm_agg {
    uint64_t shares;
    uint32_t orders;
    uint32_t next_free;
} fh_shm_agg_t;
typedef struct fh_shm_event {
    uint64_t seq;
    uint8_t type;
    char trading_state;
    uint8_t status;
    uint8_t pad;
    uint32_t locate;
    uint64_t itch_ts;
    uint64_t rx_tsc;
    uint64_t pub_tsc;
    uint64_t a, b;
    int64_t c, d;
    uint64_t reserved[7];
} fh_shm_event_t;
typedef struct fh_shm_hdr {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t hdr_size;
    uint64_t size;
    uint64_t books_off;
    uint64_t lkey_off;
    uint64_t lagg_off;
    uint64_t events_off;
    uint64_t stats_off;
    uint32_t max_levels;
    uint32_t event_capacity;
    uint32_t depth;
    uint32_t writer_pid;
    uint64_t start_ns;
    uint64_t tsc_hz;
    char name[32];
    uint32_t nbooks;
    uint32_t key_bits;
    int32_t price_exp;
    uint64_t ladder_off;
    uint64_t lslot_off;
    uint32_t ladder_bits;
    uint32_t ladder_books;
    uint64_t heartbeat_ns;
    uint32_t writer_state;
    uint32_t standby;
    uint64_t behind_msgs;
    uint64_t head;
    ...;
} fh_shm_hdr_t;
typedef struct fh_shm_wake fh_shm_wake_t;
#define FH_SHM_DP_MAX_DROPS ...
#define FH_SHM_DP_MAX_MOLD ...
#define FH_SHM_DP_MAX_LINES ...
#define FH_SHM_DP_NAME ...
#define FH_SHM_LAT_SUB ...
#define FH_SHM_LAT_BUCKETS ...
#define FH_SHM_STANDBY_NO ...
#define FH_SHM_STANDBY_CURRENT ...
#define FH_SHM_STANDBY_BEHIND ...
#define FH_SHM_STANDBY_NO_LINES ...
#define FH_SHM_STANDBY_SLACK_NS ...
#define FH_SHM_LINE_DOWN ...
#define FH_SHM_LINE_LIVE ...
#define FH_SHM_LINE_STALE ...
#define FH_SHM_LINE_FEED ...
#define FH_SHM_LINE_RETRANS ...
#define FH_SHM_FEED_WAITING ...
#define FH_SHM_FEED_LIVE ...
#define FH_SHM_FEED_RECOVERING ...
#define FH_SHM_FEED_STALE ...
#define FH_SHM_FEED_ENDED ...
typedef struct fh_shm_dp_line {
    uint64_t datagrams;
    uint64_t messages;
    uint64_t won;
    uint64_t duplicates;
    uint64_t late;
    uint64_t lost;
    uint64_t silent_ns;
    uint32_t state;
    uint32_t kind;
} fh_shm_dp_line_t;
typedef struct fh_shm_dp_stats {
    uint32_t present;
    uint32_t ndrops;
    uint32_t nmold;
    uint32_t nlines;
    uint64_t packets;
    uint64_t bytes;
    uint64_t next_seq;
    uint32_t feed_state;
    uint32_t held;
    uint32_t outstanding;
    char session[12];
    uint64_t drops[16];
    uint64_t mold[32];
    fh_shm_dp_line_t line[16];
    char drop_name[16][24];
    char mold_name[32][24];
    uint64_t lat_count;
    uint64_t lat_bucket[608];
} fh_shm_dp_stats_t;
typedef struct fh_shm_stats {
    uint32_t seq;
    uint32_t count;
    uint64_t counter[64];
    uint64_t type_count[256];
    fh_shm_dp_stats_t dp;
    ...;
} fh_shm_stats_t;
typedef struct fh_shm_reader {
    const uint8_t *base;
    size_t size;
    const fh_shm_hdr_t *hdr;
    const fh_shm_book_t *books;
    const void *lkey;
    const fh_shm_agg_t *lagg;
    const fh_shm_event_t *events;
    const fh_shm_stats_t *stats;
    fh_shm_wake_t *wake;
    uint32_t nbooks;
    uint32_t key_bits;
    const fh_shm_lside_t *lside;
    const fh_shm_agg_t *lslot;
    uint32_t ladder_books;
} fh_shm_reader_t;
typedef struct fh_shm_level {
    int64_t price;
    uint64_t shares;
    uint32_t orders;
    uint32_t pad;
} fh_shm_level_t;
typedef struct fh_shm_snapshot {
    fh_shm_book_t book;
    uint32_t nbids, nasks;
    fh_shm_level_t bids[64];
    fh_shm_level_t asks[64];
    uint32_t nlevels[2];
} fh_shm_snapshot_t;
#define FH_SHM_READER_BUSY -2
int fh_shm_reader_join(fh_shm_reader_t *r, const char *path);
void fh_shm_reader_leave(fh_shm_reader_t *r);
int fh_shm_reader_writer_alive(const char *path);
int fh_shm_reader_snapshot(const fh_shm_reader_t *r, uint32_t locate, uint32_t depth, fh_shm_snapshot_t *out);
uint64_t fh_shm_reader_head(const fh_shm_reader_t *r);
int fh_shm_reader_event_next(const fh_shm_reader_t *r, uint64_t *next, fh_shm_event_t *out);
uint32_t fh_shm_reader_events(const fh_shm_reader_t *r, uint64_t *next, fh_shm_event_t *out, uint32_t cap, int *rc);
uint64_t fh_shm_reader_wait(const fh_shm_reader_t *r, uint64_t seen, uint64_t timeout_ns);
int fh_shm_reader_stats(const fh_shm_reader_t *r, uint64_t *counters, uint32_t cap, uint64_t *type_counts);
int fh_shm_stats_copy(const fh_shm_reader_t *r, fh_shm_stats_t *out);
uint64_t fh_shm_lat_upper(unsigned i);
unsigned fh_shm_lat_index(uint64_t v);
uint64_t fh_shm_key(uint32_t key_bits, int side, int64_t price);
int64_t fh_shm_key_price(uint32_t key_bits, int side, uint64_t key);
int fh_shm_wake_path(const char *path, char *out, size_t cap);
uint64_t fh_shm_reader_heartbeat_ns(const fh_shm_reader_t *r);
uint32_t fh_shm_reader_writer_state(const fh_shm_reader_t *r);
uint32_t fh_shm_reader_standby(const fh_shm_reader_t *r, uint64_t *behind);

/* hist.h */
typedef struct fh_hist_state {
    uint8_t *symbols;
    uint8_t *sides;
    uint64_t sides_cap;
    uint64_t ref_limit;
    uint64_t out_of_range;
    uint64_t need;
} fh_hist_state_t;
typedef struct fh_hist_cols {
    uint64_t *ts;
    uint16_t *locate;
    uint8_t *type;
    uint32_t *o_idx;
    int64_t *o_ref, *o_new_ref, *o_shares, *o_price, *o_match;
    uint8_t *o_side;
    uint8_t *o_printable;
    uint8_t *o_mpid;
    uint64_t o_rows;
    uint64_t *o_ts;
    uint16_t *o_locate;
    uint8_t *o_type;
} fh_hist_cols_t;
uint64_t fh_hist_decode(fh_hist_state_t *st, uint8_t *buf, const uint32_t *off, uint64_t n, uint64_t start,
                        uint64_t ordinal, fh_hist_cols_t *c);
typedef struct fh_hist_ev_cols {
    uint64_t *t_seq, *t_ts;
    int64_t *t_recv;
    uint16_t *t_locate;
    int64_t *t_price, *t_shares, *t_match;
    uint8_t *t_type, *t_aggressor;
    uint64_t t_rows;
    uint64_t *b_seq, *b_ts;
    int64_t *b_recv;
    uint16_t *b_locate;
    int64_t *b_bid_price, *b_bid_shares, *b_ask_price, *b_ask_shares;
    uint64_t b_rows;
} fh_hist_ev_cols_t;
int fh_hist_events(const fh_hist_state_t *st, const fh_shm_event_t *ring, uint64_t mask, uint64_t from, uint64_t to,
                   uint64_t first, uint64_t n, const uint64_t *seq, const uint64_t *ts, const int64_t *recv,
                   const uint8_t *typ, const uint8_t *buf, const uint32_t *off, fh_hist_ev_cols_t *c);
void fh_hist_sort_dest(const uint16_t *key, const uint16_t *loc, uint64_t n, uint64_t *count, int64_t *dest);
int fh_hist_codes(const uint8_t *v, uint64_t n, const uint8_t *isnull, uint8_t *dict, int32_t *idx, uint8_t *valid,
                  uint64_t *nulls);
uint64_t fh_hist_valid(const uint8_t *typ, uint64_t n, const uint8_t *has, uint8_t *valid);

/* gwfmt.h */
size_t fh_gw_format(const fh_shm_event_t *ev, size_t n, const int64_t *pub_ns, uint64_t gw_ns, const char *subj,
                    const uint8_t *subj_len, size_t stride, char *out, size_t cap, size_t *done, uint64_t *nbbo,
                    uint64_t *ntrade);
#define FH_GW_CAUGHT_UP 0
#define FH_GW_FULL 1
#define FH_GW_NEED_PREFIX 2
#define FH_GW_STALE 3
#define FH_GW_RECOVERED 4
typedef struct fh_gw_pump {
    const char *subj;
    const uint8_t *subj_len;
    uint64_t stride;
    uint8_t *dirty;
    uint64_t tsc0;
    int64_t ns0;
    double ns_per_tick;
    uint64_t gw_ns;
    uint64_t next;
    uint64_t lost;
    uint64_t events, nbbo, ntrade;
    uint64_t last_seq, last_ts;
    uint32_t stop;
    uint32_t stop_locate;
    uint64_t call_gw_ns;
} fh_gw_pump_t;
size_t fh_gw_pump(const fh_shm_reader_t *r, fh_gw_pump_t *p, char *out, size_t cap);
typedef struct fh_gw_wait {
    uint64_t max_spin_ns, spin_ns, waits, ready, spin_hits, sleeps, timeouts, spun_ns;
} fh_gw_wait_t;
uint64_t fh_gw_wait(const fh_shm_reader_t *r, uint64_t seen, uint64_t timeout_ns, fh_gw_wait_t *w);
int64_t fh_gw_clock_pair(uint64_t *tsc, int64_t *ns);
size_t fh_gw_take_dirty(uint8_t *dirty, size_t n, uint16_t *out);
size_t fh_gw_books(const fh_shm_reader_t *r, const uint16_t *locs, size_t n, uint32_t depth, uint64_t seq,
                   uint64_t gw_ns, const char *subj, const uint8_t *subj_len, size_t stride, char *out, size_t cap,
                   size_t *done, uint64_t *nbooks);

/* glimpse.h: the SoupBinTCP snapshot client, delivering to an engine */
typedef struct fh_glimpse_cfg {
    uint32_t ip;
    uint16_t port;
    char user[7];
    char password[11];
    uint32_t connect_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t total_timeout_ms;
    uint32_t heartbeat_ms;
    uint32_t retries;
    uint32_t retry_delay_ms;
} fh_glimpse_cfg_t;
typedef struct fh_glimpse {
    int state;
    char session[10];
    uint64_t end_seq;
    uint64_t counters[...];
    ...;
} fh_glimpse_t;
#define FH_G_COUNT ...
#define FH_GLIMPSE_DONE ...
#define FH_GLIMPSE_FAILED ...
#define FH_GLIMPSE_IDLE ...
fh_glimpse_t *fh_glimpse_create(const fh_glimpse_cfg_t *cfg, fh_engine_t *e);
void fh_glimpse_destroy(fh_glimpse_t *g);
int fh_glimpse_start(fh_glimpse_t *g, const char *session);
int fh_glimpse_poll(fh_glimpse_t *g);
const char *fh_glimpse_error(const fh_glimpse_t *g);
const char *fh_glimpse_counter_name(int c);
int fh_glimpse_parse_addr(fh_glimpse_cfg_t *cfg, const char *s);
"""

SOURCE = """
#include "fh/common.h"
#include "fh/itch.h"
#include "fh/book.h"
#include "fh/mold.h"
#include "fh/seg.h"
#include "fh/synth.h"
#include "fh/shm.h"
#include "fh/shm_reader.h"
#include "fh/hist.h"
#include "fh/gwfmt.h"
#include "fh/glimpse.h"
#include "fh/journal_file.h"
"""


def main(out: str) -> None:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("handler._native", SOURCE)
    ffi.emit_c_code(out)


if __name__ == "__main__":
    main(sys.argv[1])
