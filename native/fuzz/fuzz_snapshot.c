/* Fuzz target: restoring a snapshot file that is damaged, truncated or made up (fh_engine_snapshot_load,
 * fh/book.h). A real snapshot is made once: an engine applies a small generated day (eight books with
 * levels on both sides, executions, a halt, a cross trade) and fh_engine_snapshot_save writes it. Each input
 * patches its bytes, may cut the file short, and may then put the header's sizes and both CRCs right again
 * (so that the checks behind them are reached), and the engine loads it. The load either refuses with a
 * one-line message or succeeds; either way, nothing crashes or reads outside the file, and the engine's
 * invariants hold after it (fuzz.h: the same checks as fuzz_book), and the engine still applies messages.
 *
 * Input: a flags byte (bit 0: cut the file to a u32 length, modulo its size; bit 1: recompute body_crc and
 * hdr_crc after the patches; bit 2: recompute body_bytes from nbooks and norders first, and size the file
 * to match), then patches, each a selector byte (bits 6-7: the header, the books, the orders, anywhere;
 * bits 0-3: 1-16 bytes), a u32 offset into that region and the bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fh/itch.h"
#include "fuzz.h"

#define LEVELS 256
#define HDR 128u
#define OFF_NBOOKS 56
#define OFF_NORDERS 64
#define OFF_BODY_BYTES 72
#define OFF_BODY_CRC 120
#define OFF_HDR_CRC 124
#define BOOK_SZ 40u
#define ORDER_SZ 24u
#define COUNTERS ((size_t)FH_C_COUNT * 8 + 256 * 8)
#define WORK_MAX (1u << 20)

static fh_engine_t *eng;
static uint8_t *tmpl;  /* the pristine snapshot */
static size_t full;    /* its size */
static uint8_t *work;  /* the file the engine loads, mapped read-write here (room for WORK_MAX bytes) */
static int wfd = -1;
static char fdpath[64];

static void done(void) { fh_engine_destroy(eng); }

static uint32_t crc32c(const uint8_t *p, size_t n) /* CRC-32C (Castagnoli), as the snapshot's */
{
    static uint32_t t[256];
    if (!t[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            t[i] = c;
        }
    uint32_t c = ~0u;
    while (n--)
        c = t[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

static void apply_day(fh_engine_t *e) { fz_small_day(e, 7919, 10); } /* references the table's slots collide on; some executions fill their order */

static void make_template(void)
{
    if (!(eng = fh_engine_create(&(fh_engine_cfg_t){ 16, 1024, LEVELS }))) {
        fprintf(stderr, "fuzz_snapshot: %s\n", fh_errmsg());
        abort();
    }
    atexit(done);
    apply_day(eng);
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fh-fuzz-snap-%d", (int)getpid());
    fh_snapshot_meta_t meta = { .session = "FUZZ      ", .next_seq = 1234, .day = 20260102, .created_ns = 1 };
    if (fh_engine_snapshot_save(eng, &meta, path)) {
        fprintf(stderr, "fuzz_snapshot: %s\n", fh_errmsg());
        abort();
    }
    FILE *f = fopen(path, "rb");
    FZ_ASSERT(f && !fseek(f, 0, SEEK_END));
    full = (size_t)ftell(f);
    FZ_ASSERT(full > HDR + COUNTERS && full <= WORK_MAX && !fseek(f, 0, SEEK_SET));
    tmpl = malloc(full);
    FZ_ASSERT(tmpl && fread(tmpl, 1, full, f) == full);
    fclose(f);
    unlink(path);
    fh_engine_reset(eng);
    FZ_ASSERT(fh_engine_snapshot_load(eng, "/nonexistent/fh-fuzz", NULL) == -1);
    wfd = memfd_create("fh-fuzz-snapshot", MFD_CLOEXEC);
    if (wfd < 0 || ftruncate(wfd, (off_t)WORK_MAX) ||
        (work = mmap(NULL, WORK_MAX, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0)) == MAP_FAILED) {
        fprintf(stderr, "fuzz_snapshot: memfd: %s\n", strerror(errno));
        abort();
    }
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", wfd);
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tmpl)
        make_template();
    memcpy(work, tmpl, full);
    fz_t in = { data, size };
    uint8_t flags = fz_u8(&in);
    size_t len = full;
    if (flags & 1)
        len = fz_u32(&in) % (full + 1);
    uint32_t nbooks = rd32(tmpl + OFF_NBOOKS);
    size_t books_off = HDR + COUNTERS, orders_off = books_off + (size_t)nbooks * BOOK_SZ;
    int npatch = 0;
    while (in.n && npatch++ < 4096) {
        uint8_t sel = fz_u8(&in);
        uint32_t at = fz_u32(&in);
        size_t n = 1 + (sel & 15), base, span;
        switch (sel >> 6) {
        case 0: base = 0, span = HDR; break;
        case 1: base = books_off, span = orders_off - books_off; break;
        case 2: base = orders_off, span = full - orders_off; break;
        default: base = 0, span = full; break;
        }
        size_t off = base + at % span;
        if (off + n > full)
            n = full - off;
        for (size_t i = 0; i < n; i++)
            work[off + i] = fz_u8(&in);
    }
    if (flags & 4) { /* sizes that add up, whatever the counts say (within the room the file has) */
        uint64_t bb = COUNTERS + (uint64_t)rd32(work + OFF_NBOOKS) * BOOK_SZ + rd64(work + OFF_NORDERS) * ORDER_SZ;
        memcpy(work + OFF_BODY_BYTES, &bb, 8);
        if (bb <= WORK_MAX - HDR)
            len = HDR + bb;
    }
    if (len > full)
        memset(work + full, 0, len - full);
    if (flags & 2) {
        uint64_t bb = rd64(work + OFF_BODY_BYTES);
        if (len >= HDR && bb <= len - HDR) {
            uint32_t c = crc32c(work + HDR, bb);
            memcpy(work + OFF_BODY_CRC, &c, 4);
        }
        uint32_t c = crc32c(work, OFF_BODY_CRC);
        memcpy(work + OFF_HDR_CRC, &c, 4);
    }
    FZ_ASSERT(ftruncate(wfd, (off_t)len) == 0);

    fh_engine_reset(eng);
    fh_snapshot_meta_t meta;
    int rc = fh_engine_snapshot_load(eng, fdpath, &meta);
    if (rc) {
        FZ_ASSERT(rc == -1);
        const char *msg = fh_errmsg();
        FZ_ASSERT(msg && *msg && !strchr(msg, '\n'));
    } else {
        FZ_ASSERT(meta.orders == fh_engine_live_orders(eng));
    }
    fz_check_engine(eng, LEVELS);
    apply_day(eng); /* the restored engine goes on */
    fz_check_engine(eng, LEVELS);
    FZ_ASSERT(ftruncate(wfd, (off_t)WORK_MAX) == 0);
    return 0;
}
