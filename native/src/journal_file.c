/* The journal files in C (fh/journal_file.h): one pass over the mapped file, each record's length and CRC-32
 * checked, its messages handed to the engine's block walker in one call. Mirrors handler/journal.py's
 * read_journal_file and handler/snapshot.py's restore() loop; tests/test_journal_file.py holds them equal. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fh/common.h"
#include "fh/journal.h"
#include "fh/journal_file.h"

/* ---- CRC-32 (zlib's): carry-less multiply folding where the CPU has it, else slicing by 8 ---------------------------------------- */

static uint32_t crc_tab[8][256];

__attribute__((constructor)) static void crc_tab_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

static uint32_t crc32_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
            crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
            crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Carry-less multiplication folding (Intel, "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
 * 2009; the bit-reflected constants for 0xEDB88320 as zlib-ng and Chromium's zlib use them): 64 bytes a step
 * in four lanes, folded to 128 bits, then 16 bytes a step, then Barrett reduction to 32 bits. n: a multiple
 * of 16, at least 64. c: the running CRC in its inverted (internal) form. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_clmul(uint32_t c, const uint8_t *p, size_t n)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 0x00)), x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 0x20)), x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
    __m128i x0 = k1k2, x5, x6, x7, x8;
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    p += 64;
    n -= 64;
    while (n >= 64) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(p + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(p + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(p + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(p + 0x30)));
        p += 64;
        n -= 64;
    }
    x0 = k3k4;
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x4), x5);
    while (n >= 16) {
        x2 = _mm_loadu_si128((const __m128i *)p);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x2), x5);
        p += 16;
        n -= 16;
    }
    /* 128 bits to 64, then Barrett */
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x0 = k5k0;
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, x3), x0, 0x00), x2);
    x0 = poly;
    x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, x3), x0, 0x10);
    x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, x3), x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static int have_clmul;

__attribute__((constructor)) static void crc_cpu_init(void)
{
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}
#endif

uint32_t fh_crc32(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
#if defined(__x86_64__)
    if (n >= 64 && have_clmul) {
        size_t k = n & ~(size_t)15;
        crc = ~crc32_clmul(~crc, p, k);
        p += k;
        n -= k;
    }
#endif
    return crc32_sw(crc, p, n);
}

/* ---- the file ---------------------------------------------------------------------------------------- */

static uint32_t le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int check_header(const uint8_t *d, size_t len, const char *path, fh_jfile_result_t *out)
{
    if (len < FH_JFILE_HDR_SIZE)
        return FH_ERR("%s: %zu bytes, shorter than a journal file header (64): truncated", path, len);
    if (memcmp(d, "FHJFILE1", 8)) {
        char m[8 * 3]; /* its first 8 bytes in hex, a space between (handler/journal.py: not_a_journal_text) */
        for (int i = 0; i < 8; i++)
            snprintf(m + 3 * i, 4, i < 7 ? "%02x " : "%02x", d[i]);
        return FH_ERR("%s: not an fh journal file: it begins with the bytes %s, a journal file begins with FHJFILE1 "
                      "(46 48 4a 46 49 4c 45 31); give fh record's *.fhj files (its --dir), or move this file out of "
                      "the journal directory",
                      path, m);
    }
    uint32_t version = le32(d + 8), hsize = le32(d + 12);
    if (version != 1 || hsize != FH_JFILE_HDR_SIZE)
        return FH_ERR("%s: journal file version %u, this fh reads 1", path, version);
    if (le32(d + 60) != fh_crc32(0, d, 60))
        return FH_ERR("%s: its header's CRC does not match: the file is damaged", path);
    memcpy(out->session, d + 16, 10);
    out->day = le32(d + 28);
    out->part = le32(d + 32);
    out->first_seq = le64(d + 36);
    return 0;
}

static inline int sequenced_hole_or_msgs(uint8_t kind)
{
    return kind == FH_JR_MSGS || kind == FH_JR_LOST || kind == FH_JR_MISSED;
}

/* The messages of a MSGS record from index `from` on, one by one (a record that straddles the snapshot's
 * sequence: once per restart), as restore() applies Record.messages()[from:]: at most count blocks, none
 * past the body's end. */
static uint64_t apply_from(fh_engine_t *e, const uint8_t *b, size_t len, uint32_t count, uint64_t from)
{
    size_t o = 0;
    uint64_t n = 0;
    for (uint32_t i = 0; i < count && o + 2 <= len; i++) {
        size_t m = fh_be16(b + o);
        if (o + 2 + m > len)
            break;
        if (i >= from) {
            if (e)
                fh_engine_apply(e, b + o + 2, m);
            n++;
        }
        o += 2 + m;
    }
    return n;
}

static int walk(fh_engine_t *e, const uint8_t *d, size_t len, const char *path, uint64_t after,
                fh_jfile_result_t *out)
{
    size_t off = FH_JFILE_HDR_SIZE;
    const size_t head = FH_JFILE_REC_HEAD + FH_JFILE_PAYLOAD;
    while (after && off + head <= len) {  /* the records the snapshot holds: stepped over unread */
        uint64_t n = le32(d + off);
        const uint8_t *pl = d + off + FH_JFILE_REC_HEAD;
        uint8_t kind = pl[0];
        uint64_t seq = le64(pl + 8), span = kind == FH_JR_MSGS ? (uint64_t)(pl[2] | pl[3] << 8) : le64(pl + 16);
        if (n < FH_JFILE_PAYLOAD || off + FH_JFILE_REC_HEAD + n > len || !seq || !sequenced_hole_or_msgs(kind) ||
            span > after || seq > after - span)  /* seq + span > after, without wrapping */
            break;
        off += FH_JFILE_REC_HEAD + n;
        out->stepped++;
    }
    while (off < len) {
        if (len - off < FH_JFILE_REC_HEAD || (uint64_t)le32(d + off) > len - off - FH_JFILE_REC_HEAD) {
            out->bytes = off;
            return FH_ERR("%s: truncated: the record at offset %zu runs past the end of the file "
                          "(%zu trailing bytes)", path, off, len - off);
        }
        uint32_t n = le32(d + off), crc = le32(d + off + 4);
        const uint8_t *pl = d + off + FH_JFILE_REC_HEAD;
        if (n < FH_JFILE_PAYLOAD || fh_crc32(0, pl, n) != crc) {
            out->bytes = off;
            return FH_ERR("%s: the record at offset %zu fails its CRC: the file is damaged "
                          "(the records before it are sound)", path, off);
        }
        uint8_t kind = pl[0];
        uint32_t count = (uint32_t)(pl[2] | pl[3] << 8);
        uint64_t seq = le64(pl + 8), arg = le64(pl + 16);
        out->records++;
        if (seq && sequenced_hole_or_msgs(kind))
            out->end_seq = seq + (kind == FH_JR_MSGS ? count : arg);
        if (kind == FH_JR_LOST || kind == FH_JR_MISSED)
            out->holes++;
        if (kind == FH_JR_MSGS) {
            const uint8_t *body = pl + FH_JFILE_PAYLOAD;
            size_t blen = n - FH_JFILE_PAYLOAD;
            out->msgs_records++;
            if (seq && seq < after) {  /* it holds the snapshot's last messages: the rest only */
                if (seq + count > after)
                    out->messages += apply_from(e, body, blen, count, after - seq);
            } else {
                if (e)
                    fh_engine_apply_blocks(e, body, blen);
                out->messages += count;
            }
        }
        off += FH_JFILE_REC_HEAD + n;
    }
    out->bytes = off;
    return 0;
}

int fh_jfile_apply(fh_engine_t *e, const char *path, uint64_t after, fh_jfile_result_t *out)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FH_ERR("%s: %s", path, errno == ENOENT ? "no such file or directory" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int err = errno;
        close(fd);
        return FH_ERR("%s: %s", path, strerror(err));
    }
    size_t len = (size_t)st.st_size;
    if (len < FH_JFILE_HDR_SIZE) {  /* nothing to map (an empty file cannot be) */
        uint8_t hdr[FH_JFILE_HDR_SIZE];
        ssize_t got = read(fd, hdr, sizeof hdr);
        close(fd);
        return check_header(hdr, got > 0 ? (size_t)got : 0, path, out);
    }
    const uint8_t *d = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (d == MAP_FAILED)
        return FH_ERR("%s: cannot map it: %s", path, strerror(err));
    madvise((void *)d, len, MADV_SEQUENTIAL);
    int rc = check_header(d, len, path, out);
    if (!rc)
        rc = walk(e, d, len, path, after, out);
    munmap((void *)d, len);
    return rc;
}
