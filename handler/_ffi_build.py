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
} fh_seg_cfg_t;
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
void fh_engine_apply(fh_engine_t *e, const uint8_t *msg, size_t len);
size_t fh_engine_apply_blocks(fh_engine_t *e, const uint8_t *p, size_t len);
int fh_engine_apply_mold(fh_engine_t *e, const uint8_t *dgram, size_t len);
void fh_engine_counters(const fh_engine_t *e, uint64_t *out);
const uint64_t *fh_engine_type_counts(const fh_engine_t *e);
const char *fh_counter_name(int c);
uint32_t fh_engine_locates(const fh_engine_t *e, uint16_t *out, uint32_t cap);
int fh_engine_book_info(const fh_engine_t *e, uint16_t locate, fh_book_info_t *out);
uint32_t fh_engine_levels(const fh_engine_t *e, uint16_t locate, int side, fh_level_t *out, uint32_t cap);
uint64_t fh_engine_live_orders(const fh_engine_t *e);
uint64_t fh_engine_levels_used(const fh_engine_t *e);

/* synth.h */
typedef struct fh_synth_cfg {
    uint64_t messages;
    uint32_t instruments;
    uint64_t seed;
    uint32_t anomaly_ppm;
} fh_synth_cfg_t;
uint64_t fh_synth_min_messages(uint32_t instruments);
int fh_synth_buffer(const fh_synth_cfg_t *cfg, uint8_t **out, size_t *out_len);
void fh_synth_free(uint8_t *p);
int fh_synth_file(const fh_synth_cfg_t *cfg, const char *path);
"""

SOURCE = """
#include "fh/common.h"
#include "fh/itch.h"
#include "fh/book.h"
#include "fh/seg.h"
#include "fh/synth.h"
"""


def main(out: str) -> None:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("handler._native", SOURCE)
    ffi.emit_c_code(out)


if __name__ == "__main__":
    main(sys.argv[1])
