/* fh_jfile_apply and fh_crc32 (fh/journal_file.h): a journal file written here as handler/journal.py writes
 * one, read back whole, after a sequence (records stepped over, one straddling it), check-only; truncated,
 * damaged and foreign files refused with the reader's one-line messages. Exit 0 pass, 1 fail. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fh/book.h"
#include "fh/journal.h"
#include "fh/journal_file.h"
#include "msg.h"

static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint8_t file[1 << 16];
static size_t flen;

static void header(uint64_t first_seq)
{
    memset(file, 0, 64);
    memcpy(file, "FHJFILE1", 8);
    put32(file + 8, 1);
    put32(file + 12, 64);
    memcpy(file + 16, "TEST000001", 10);
    put32(file + 28, 20261203);
    put32(file + 32, 7);
    put64(file + 36, first_seq);
    put64(file + 44, 123);
    put32(file + 60, fh_crc32(0, file, 60));
    flen = 64;
}

/* One record: kind, count, seq, arg, body; returns its offset. */
static size_t record(uint8_t kind, uint16_t count, uint64_t seq, uint64_t arg, const uint8_t *body, size_t blen)
{
    size_t off = flen;
    uint8_t *pl = file + off + 8;
    memset(pl, 0, 24);
    pl[0] = kind;
    pl[2] = (uint8_t)count;
    pl[3] = (uint8_t)(count >> 8);
    put64(pl + 8, seq);
    put64(pl + 16, arg);
    if (blen)
        memcpy(pl + 24, body, blen);
    put32(file + off, (uint32_t)(24 + blen));
    put32(file + off + 4, fh_crc32(0, pl, 24 + blen));
    flen = off + 8 + 24 + blen;
    return off;
}

/* A MSGS record of n adds, references ref0.. */
static size_t adds(uint64_t seq, uint64_t ref0, int n)
{
    uint8_t body[4096], m[64];
    size_t b = 0;
    for (int i = 0; i < n; i++) {
        size_t len = m_A(m, 1, ref0 + (uint64_t)i, 'B', 100, "ABC", 1000000 + (uint32_t)i * 100);
        fh_put_be16(body + b, (uint16_t)len);
        memcpy(body + b + 2, m, len);
        b += 2 + len;
    }
    return record(FH_JR_MSGS, (uint16_t)n, seq, b, body, b);
}

static char path[64];

static void save(size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(file, 1, len, f) != len || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static fh_engine_t *engine(void)
{
    fh_engine_cfg_t cfg = {.max_instruments = 16, .max_orders = 1024, .max_levels = 4096};
    fh_engine_t *e = fh_engine_create(&cfg);
    if (!e) {
        fprintf(stderr, "fh_engine_create: %s\n", fh_errmsg());
        exit(1);
    }
    return e;
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/fh-test-jfile-%d.fhj", (int)getpid());

    /* the CRC: the check value, every alignment and length against the bitwise definition, continuation */
    CHECK_EQ(fh_crc32(0, "123456789", 9), 0xCBF43926u);
    CHECK_EQ(fh_crc32(0, "", 0), 0u);
    uint8_t buf[3000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t a = 0; a < 8; a++)
        for (size_t n = 0; n + a <= sizeof buf; n += n < 300 ? 1 : 61)
            CHECK_EQ(fh_crc32(0, buf + a, n), crc_bitwise(buf + a, n));
    CHECK_EQ(fh_crc32(fh_crc32(0, buf, 101), buf + 101, 199), fh_crc32(0, buf, 300));
    CHECK_EQ(fh_crc32(fh_crc32(0, buf, 1000), buf + 1000, 2000), crc_bitwise(buf, 3000));

    /* a file: a directory message, 3 MSGS records of 10 adds (seq 2..31), a heartbeat, a LOST hole 32..36,
     * 5 adds from 37 */
    header(1);
    uint8_t r[64], rb[66];
    size_t rl = m_R(r, 1, "ABC");
    fh_put_be16(rb, (uint16_t)rl);
    memcpy(rb + 2, r, rl);
    record(FH_JR_MSGS, 1, 1, 2 + rl, rb, 2 + rl);
    size_t off2 = adds(2, 1, 10);
    adds(12, 11, 10);
    adds(22, 21, 10);
    record(FH_JR_HEARTBEAT, 0, 32, 0, NULL, 0);
    size_t off_lost = record(FH_JR_LOST, 0, 32, 5, NULL, 0);
    size_t off_last = adds(37, 31, 5);
    size_t whole = flen;
    save(whole);

    fh_jfile_result_t res;
    fh_engine_t *e = engine();
    CHECK_EQ(fh_jfile_apply(e, path, 0, &res), 0);
    CHECK(!memcmp(res.session, "TEST000001", 10));
    CHECK_EQ(res.day, 20261203u);
    CHECK_EQ(res.part, 7u);
    CHECK_EQ(res.first_seq, 1u);
    CHECK_EQ(res.records, 7u);
    CHECK_EQ(res.msgs_records, 5u);
    CHECK_EQ(res.holes, 1u);
    CHECK_EQ(res.stepped, 0u);
    CHECK_EQ(res.messages, 36u);
    CHECK_EQ(res.end_seq, 42u);
    CHECK_EQ(res.bytes, (uint64_t)whole);
    CHECK_EQ(fh_engine_live_orders(e), 35u);
    fh_engine_destroy(e);

    /* after 17 (the engine holds 1..16 from a snapshot): the first two records stepped over unread, the
     * third (12..21) straddles it: its adds 17..21 only (references 16..20), then the rest */
    e = engine();
    uint8_t m[64];
    fh_engine_apply(e, r, rl);  /* what the snapshot would hold: the directory and references 1..15 */
    for (uint64_t ref = 1; ref <= 15; ref++)
        fh_engine_apply(e, m, m_A(m, 1, ref, 'B', 100, "ABC", 1000000 + (uint32_t)(ref - 1) * 100));
    CHECK_EQ(fh_jfile_apply(e, path, 17, &res), 0);
    CHECK_EQ(res.stepped, 2u);
    CHECK_EQ(res.records, 5u);
    CHECK_EQ(res.messages, 5u + 10u + 5u);
    CHECK_EQ(res.end_seq, 42u);
    CHECK_EQ(fh_engine_live_orders(e), 35u);
    uint64_t c[FH_C_COUNT];
    fh_engine_counters(e, c);
    CHECK_EQ(c[FH_C_duplicate_ref], 0u);  /* nothing the snapshot held was applied again */
    fh_engine_destroy(e);

    /* after 42 (the snapshot holds everything): every sequenced record stepped over; the heartbeat stops the
     * stepping (as the Python reader's), the records from it on are read, none applied */
    CHECK_EQ(fh_jfile_apply(NULL, path, 42, &res), 0);
    CHECK_EQ(res.stepped, 4u);
    CHECK_EQ(res.records, 3u);
    CHECK_EQ(res.messages, 0u);
    CHECK_EQ(res.end_seq, 42u);

    /* check only: counts without an engine */
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), 0);
    CHECK_EQ(res.messages, 36u);

    /* truncated: the last record cut short, and a lone length */
    char want[256];
    for (size_t cut = whole - 1; cut > off_last; cut -= 9) {
        save(cut);
        CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
        snprintf(want, sizeof want, "%s: truncated: the record at offset %zu runs past the end of the file "
                 "(%zu trailing bytes)", path, off_last, cut - off_last);
        CHECK(strstr(fh_errmsg(), want) != NULL);
        CHECK_EQ(res.bytes, (uint64_t)off_last);
    }

    /* damaged: a flipped byte in a payload, then in a length (the length now runs past: truncated) */
    file[off2 + 8 + 30] ^= 0x40;
    save(whole);
    e = engine();
    CHECK_EQ(fh_jfile_apply(e, path, 0, &res), -1);
    snprintf(want, sizeof want, "%s: the record at offset %zu fails its CRC: the file is damaged (the records "
             "before it are sound)", path, off2);
    CHECK(strstr(fh_errmsg(), want) != NULL);
    CHECK_EQ(res.bytes, (uint64_t)off2);
    CHECK_EQ(res.messages, 1u);  /* the directory message before it */
    fh_engine_destroy(e);
    file[off2 + 8 + 30] ^= 0x40;
    file[off_lost] ^= 0x01;  /* a payload length of 25: its CRC covers another span */
    save(whole);
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
    CHECK(strstr(fh_errmsg(), "fails its CRC") != NULL);
    file[off_lost] ^= 0x01;

    /* the header: too short, another magic, a damaged header CRC, another version; a missing file */
    save(40);
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
    CHECK(strstr(fh_errmsg(), "40 bytes, shorter than a journal file header (64): truncated") != NULL);
    save(0);
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
    CHECK(strstr(fh_errmsg(), "0 bytes, shorter than a journal file header") != NULL);
    memcpy(file, "PK\x03\x04xxxx", 8);
    save(whole);
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
    CHECK(strstr(fh_errmsg(), "not an fh journal file: it begins with the bytes 50 4b 03 04 78 78 78 78, a journal file begins with FHJFILE1") != NULL);
    memcpy(file, "FHJFILE1", 8);
    file[50] ^= 1;
    save(whole);
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
    CHECK(strstr(fh_errmsg(), "its header's CRC does not match: the file is damaged") != NULL);
    file[50] ^= 1;
    put32(file + 8, 2);
    save(whole);
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
    CHECK(strstr(fh_errmsg(), "journal file version 2, this fh reads 1") != NULL);
    unlink(path);
    CHECK_EQ(fh_jfile_apply(NULL, path, 0, &res), -1);
    CHECK(strstr(fh_errmsg(), "no such file or directory") != NULL);

    if (test_failures)
        fprintf(stderr, "%d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
