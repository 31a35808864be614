/* Fuzz target: a journal file that is damaged, truncated or made up, read and applied by fh_jfile_apply
 * (fh/journal_file.h). The file is a sound header, then records built from the input: each a selector byte
 * (bits 0-2: the kind; bit 3: a CRC from the input instead of the right one; bit 4: a payload length from
 * the input instead of the right one), count, sequence and argument (one byte each, so that sequences meet
 * `after`), a body length (u16, up to 1500) and the body bytes (message blocks or garbage). A flags byte first:
 * bit 0 cuts the file to a u16 length past the header, bit 1 damages a header byte; a byte then gives `after`.
 * The read either refuses with a one-line message (bytes: where the sound prefix ends, within the file) or
 * reads the whole file; never reads outside it; the engine's invariants hold and it goes on applying. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fh/journal.h"
#include "fh/journal_file.h"
#include "fuzz.h"

#define LEVELS 256
#define FILE_MAX (1u << 20)

static fh_engine_t *eng;
static uint8_t *file;
static int wfd = -1;
static char fdpath[64];

static void done(void) { fh_engine_destroy(eng); }

static void init(void)
{
    if (!(eng = fh_engine_create(&(fh_engine_cfg_t){ 16, 1024, LEVELS }))) {
        fprintf(stderr, "fuzz_jfile: %s\n", fh_errmsg());
        abort();
    }
    atexit(done);
    file = malloc(FILE_MAX);
    wfd = memfd_create("fh-fuzz-jfile", MFD_CLOEXEC);
    if (!file || wfd < 0) {
        fprintf(stderr, "fuzz_jfile: memfd: %s\n", strerror(errno));
        abort();
    }
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", wfd);
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!eng)
        init();
    fz_t in = { data, size };
    uint8_t flags = fz_u8(&in);
    uint64_t after = fz_u8(&in);
    memset(file, 0, 64);
    memcpy(file, "FHJFILE1", 8);
    put32(file + 8, 1);
    put32(file + 12, 64);
    memcpy(file + 16, "FUZZ000001", 10);
    put32(file + 28, 20261203);
    put64(file + 36, 1);
    put32(file + 60, fh_crc32(0, file, 60));
    size_t len = 64;
    uint64_t counted = 0;
    int framed = 1; /* every length the right one: the walk sees the records built here */
    while (in.n) {
        uint8_t sel = fz_u8(&in);
        uint8_t *pl = file + len + 8;
        size_t blen = fz_u16(&in) % 1501;
        if (len + 8 + 24 + blen > FILE_MAX)
            break;
        memset(pl, 0, 24);
        pl[0] = sel & 7;
        pl[2] = fz_u8(&in);
        put64(pl + 8, fz_u8(&in));
        put64(pl + 16, fz_u8(&in));
        size_t got;
        uint8_t *b = fz_take(&in, blen, &got);
        memcpy(pl + 24, b, got);
        free(b);
        if ((sel & 7) == FH_JR_MSGS)
            counted += pl[2];
        framed &= !(sel & 16);
        put32(file + len, sel & 16 ? fz_u32(&in) : (uint32_t)(24 + got));
        put32(file + len + 4, sel & 8 ? fz_u32(&in) : fh_crc32(0, pl, 24 + got));
        len += 8 + 24 + got;
    }
    if (flags & 1)
        len = 64 + fz_u16(&in) % (len - 63);
    if (flags & 2)
        file[fz_u8(&in) % 64] ^= 0x20;
    FZ_ASSERT(ftruncate(wfd, 0) == 0 && pwrite(wfd, file, len, 0) == (ssize_t)len);

    fh_engine_reset(eng);
    fh_jfile_result_t r;
    int rc = fh_jfile_apply(eng, fdpath, after, &r);
    if (rc) {
        FZ_ASSERT(rc == -1);
        const char *msg = fh_errmsg();
        FZ_ASSERT(msg && *msg && !strchr(msg, '\n'));
        FZ_ASSERT(r.bytes <= len);
    } else {
        FZ_ASSERT(r.bytes == len && !(flags & 2));
        FZ_ASSERT(!memcmp(r.session, "FUZZ000001", 10) && r.day == 20261203 && r.first_seq == 1);
    }
    FZ_ASSERT(r.msgs_records + r.holes <= r.records && (!framed || r.messages <= counted));
    fz_check_engine(eng, LEVELS);
    fz_small_day(eng, 7919, 10); /* the engine goes on */
    fz_check_engine(eng, LEVELS);
    return 0;
}
