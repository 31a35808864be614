/* Fuzz target: a follower reading a journal ring it did not write (fh/journal.h). Each input makes a
 * journal file, joins it read-only (fh_journal_join) and reads it to its end from two positions (where the
 * records were written, and fh_journal_oldest) with fh_journal_next, walking every FH_JR_MSGS body with
 * fh_journal_blocks. Nothing may crash, read outside the mapping or the record, or hang; join either refuses
 * (-EPROTO, -EAGAIN) or every later read stays in bounds; every record returned lies whole in the ring
 * (8-aligned size of 48 bytes at least, not across the lap's end, at its own position), every block lies
 * inside the record's body, which is copied into a heap buffer of exactly its size (so ASan sees a read one
 * byte past it; a record whose `arg` claims more body than its size holds once made fh_journal_blocks read
 * past it: regress/journal/blocks-past-body-arg), and a reader that was overrun goes on from a lap start.
 *
 * Input: a flags byte.
 *   bit 0 set: raw garbage. The rest of the input is the file's start (header and ring), zeros after it.
 *   bit 0 clear: a valid header (capacity 256 KiB, or 512 KiB with bit 1) and a writer: a u64 start
 *     position (8-aligned), then records, each a spec byte (bits 0-2 kind, 6 and 7 are no kind; bits 4-7
 *     blocks, each a u8 length and its bytes; bit 3: a u32 then XORs the record's size and a u16 its arg
 *     and count after it is made), laid end to end with pads (or a bare tail) where the lap ends, as the
 *     writer does. Then head is where the writer stopped, moved by a signed u16 with bit 2; reserve is
 *     head, plus a u32 with bit 3; with bit 4, patches of the header follow (u8 offset, u8 byte) until
 *     the input ends. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fh/journal.h"
#include "fuzz.h"

#define FILE_MAX (sizeof(fh_journal_hdr_t) + 2 * FH_JOURNAL_MIN_CAPACITY)
static uint8_t *work; /* the file, mapped read-write here */
static int wfd = -1;
static char fdpath[64];
static uint8_t body[FH_JOURNAL_MAX_BODY];

static void open_file(void)
{
    wfd = memfd_create("fh-fuzz-journal", MFD_CLOEXEC);
    if (wfd < 0 || ftruncate(wfd, (off_t)FILE_MAX) ||
        (work = mmap(NULL, FILE_MAX, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0)) == MAP_FAILED) {
        fprintf(stderr, "fuzz_journal: memfd: %s\n", strerror(errno));
        abort();
    }
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", wfd);
}

/* The writer: lays records from the input at positions p0 onwards; returns the position after the last. */
static uint64_t write_records(fz_t *in, uint8_t *data, uint64_t cap, uint64_t p0)
{
    uint64_t mask = cap - 1, p = p0;
    uint8_t blk[16 * 257];
    while (in->n) {
        uint8_t s = fz_u8(in);
        uint32_t nb = s >> 4, bl = 0;
        for (uint32_t i = 0; i < nb; i++) {
            uint8_t l = fz_u8(in);
            blk[bl++] = 0;
            blk[bl++] = l;
            for (uint32_t k = 0; k < l; k++)
                blk[bl++] = fz_u8(in);
        }
        fh_journal_rec_t rec;
        memset(&rec, 0, sizeof rec);
        rec.kind = s & 7;
        rec.count = (uint16_t)nb;
        rec.seq = p;
        rec.arg = bl;
        rec.size = (uint32_t)((sizeof rec + bl + 7) & ~7u);
        memcpy(rec.session, "FUZZ      ", FH_JOURNAL_SESSION_LEN);
        if (s & 8) {
            rec.size ^= fz_u32(in);
            uint16_t x = fz_u16(in);
            rec.arg ^= x;
            rec.count ^= x;
        }
        uint64_t off = p & mask, room = cap - off, need = (sizeof rec + bl + 7) & ~7u;
        if (need > room) { /* the lap's end: a pad, or a bare tail */
            if (room >= sizeof rec) {
                fh_journal_rec_t pad = { .pos = p, .size = (uint32_t)room, .kind = FH_JR_PAD };
                memcpy(data + off, &pad, sizeof pad);
            }
            p += room;
            off = 0;
        }
        rec.pos = p;
        memcpy(data + off, &rec, sizeof rec);
        memcpy(data + off + sizeof rec, blk, bl);
        p += need;
    }
    return p;
}

static void read_from(const fh_journal_reader_t *r, uint64_t pos)
{
    fh_journal_rec_t rec;
    for (int i = 0; i < 20000; i++) {
        uint64_t at = pos;
        int rc = fh_journal_next(r, &pos, &rec, body);
        if (rc == FH_JOURNAL_NONE || rc == FH_JOURNAL_CORRUPT) {
            /* corrupt: *pos stays on the position that holds no record (past the pads and tails before it) */
            FZ_ASSERT(rc == FH_JOURNAL_NONE || (pos >= at && pos < fh_journal_head(r)));
            return;
        }
        if (rc == FH_JOURNAL_OVERRUN) {
            /* a lap start, never backwards (but past 2^64 bytes, which a header made up can claim) */
            FZ_ASSERT((pos > at || at > UINT64_MAX - 2 * r->capacity) && !(pos & r->mask));
            continue;
        }
        FZ_ASSERT(rc == FH_JOURNAL_OK);
        FZ_ASSERT(rec.size >= sizeof rec && !(rec.size & 7) && rec.size - sizeof rec <= FH_JOURNAL_MAX_BODY);
        FZ_ASSERT((rec.pos & r->mask) + rec.size <= r->capacity && pos == rec.pos + rec.size && rec.pos >= at);
        FZ_ASSERT(rec.kind != FH_JR_PAD);
        if (rec.kind != FH_JR_MSGS)
            continue;
        size_t n = rec.size - sizeof rec;
        uint8_t *b = malloc(n ? n : 1); /* exactly the body: a block past it is caught */
        if (!b)
            abort();
        memcpy(b, body, n);
        const uint8_t *msg[16];
        uint16_t len[16];
        uint32_t k = fh_journal_blocks(&rec, b, msg, len, 16);
        FZ_ASSERT(k <= rec.count);
        for (uint32_t j = 0; j < k && j < 16; j++)
            FZ_ASSERT(msg[j] >= b + 2 && msg[j] + len[j] <= b + n);
        free(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!work)
        open_file();
    memset(work, 0, FILE_MAX);
    fz_t in = { data, size };
    uint8_t flags = fz_u8(&in);
    fh_journal_hdr_t *h = (fh_journal_hdr_t *)work;
    uint64_t p0 = 0;
    if (flags & 1) {
        size_t n = in.n < FILE_MAX ? in.n : FILE_MAX;
        memcpy(work, in.p, n);
    } else {
        uint64_t cap = FH_JOURNAL_MIN_CAPACITY << (flags >> 1 & 1);
        h->layout_version = FH_JOURNAL_LAYOUT_VERSION;
        h->hdr_size = sizeof *h;
        h->data_off = sizeof *h;
        h->capacity = cap;
        h->size = sizeof *h + cap;
        memcpy(h->name, "fuzz", 5);
        p0 = fz_u64(&in) & ~7ull;
        uint64_t end = write_records(&in, work + sizeof *h, cap, p0);
        uint64_t head = end;
        if (flags & 4)
            head += (uint64_t)(int64_t)(int16_t)fz_u16(&in);
        uint64_t reserve = head + ((flags & 8) ? fz_u32(&in) : 0);
        atomic_store(&h->head, head);
        atomic_store(&h->reserve, reserve);
        h->magic = FH_JOURNAL_MAGIC;
        if (flags & 16)
            while (in.n) {
                uint8_t at = fz_u8(&in);
                work[at] = fz_u8(&in);
            }
    }
    fh_journal_reader_t r;
    int rc = fh_journal_join(&r, fdpath);
    if (rc) {
        FZ_ASSERT(rc == -EPROTO || rc == -EAGAIN);
        return 0;
    }
    FZ_ASSERT(r.data >= r.base && r.data + r.capacity <= r.base + r.size);
    read_from(&r, p0);
    read_from(&r, fh_journal_oldest(&r));
    fh_journal_leave(&r);
    return 0;
}
