/* Fuzz target: a reader joining a corrupted or truncated segment file (fh/shm.h). A real segment is made
 * once (fh_seg_create, an engine on it, a few hundred messages: eight books with levels on both sides,
 * trades, a halt, an event ring that has wrapped); each input patches its bytes and may cut the file
 * short, then a reader joins it and reads everything a reader reads: the header, every book of the first
 * 512 locates and a few named ones (fh_shm_snapshot), the whole event ring (fh_shm_event_next), the stats
 * (fh_shm_stats_copy), and the gateway's book tick over the same books (fh_gw_books: whatever values a
 * corrupted book holds, each command fits FH_GW_BOOK_ROOM, into a heap buffer of exactly that size, and says
 * its own length). Nothing may crash, read outside the mapping or hang; join either refuses with
 * -EPROTO / -EAGAIN or every later read stays in bounds. Books and stats left mid-change (an odd seqlock)
 * are not read here: a reader waits FH_SHM_BUSY_NS for them by design, then gives up (-2).
 *
 * Layout 5: the template's books have levels both in their ladders' windows and in their deep runs (orders
 * off the tick, and a jump that re-centres a window), and the template's snapshots are checked against the
 * engine's own levels once, so that the merge the fuzzed reads exercise is the one that is right.
 *
 * Input: a flags byte (bit 0: cut the file to a u32 length, modulo its size), then patches, each a
 * selector byte (bits 6-7: the header, the first books, the event ring, anywhere, or with bit 5 also set the
 * ladders' side headers; bits 0-3: 1-16 bytes), a u32 offset into that region and the bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fh/gwfmt.h"
#include "fh/itch.h"
#include "fh/seg.h"
#include "fh/shm.h"
#include "fuzz.h"

static uint8_t *tmpl;     /* the pristine segment */
static size_t full;       /* its size */
static uint8_t *work;     /* the file the reader joins, mapped read-write here */
static int wfd = -1;
static int cut;           /* the last input cut the file */
static struct { size_t off, len; } patched[4096];
static size_t npatched;

static void make_template(void)
{
    char tpath[64];
    snprintf(tpath, sizeof tpath, "/dev/shm/fh-fuzz-tmpl-%d", (int)getpid());
    fh_seg_t *seg = fh_seg_create(&(fh_seg_cfg_t){ tpath, "fuzz", 256, 64, 10, -1, 16, 0 });
    fh_engine_t *e = seg ? fh_engine_create_on(&(fh_engine_cfg_t){ 16, 1024, 256 }, seg) : NULL;
    if (!e) {
        fprintf(stderr, "fuzz_shm: %s\n", fh_errmsg());
        abort();
    }
    fz_small_day(e, 1, 0);
    /* deep levels beside the windows: off the tick on books 1-4, and on books 5-6 a price far better than the
     * window, which re-centres it (the levels it leaves go deep) */
    uint8_t m[FH_ITCH_MAX_LEN];
    for (int i = 0; i < 6; i++) {
        memset(m, 0, sizeof m);
        m[0] = 'A';
        fh_put_be16(m + 1, (uint16_t)(1 + i));
        fh_put_be64(m + FH_ITCH_OFF_REF, 1000 + (uint64_t)i);
        int ask = (1 + i) % 2; /* the side the book has levels on (fz_small_day: odd locates asks) */
        m[FH_ITCH_OFF_A_SIDE] = ask ? 'S' : 'B';
        fh_put_be32(m + FH_ITCH_OFF_A_SHARES, 50);
        fh_put_be32(m + FH_ITCH_OFF_A_PRICE, i < 4 ? 1000037u + 300u * (uint32_t)i : ask ? 700000u : 1300000u);
        fh_engine_apply(e, m, fh_itch_len['A']);
    }
    fh_engine_publish_stats(e);
    /* the reader's merge of window and deep run is the engine's (fh_engine_levels), and both kinds are there */
    fh_shm_reader_t tr;
    if (fh_shm_join(&tr, tpath)) {
        fprintf(stderr, "fuzz_shm: cannot join the template\n");
        abort();
    }
    int mixed = 0;
    for (uint16_t loc = 1; loc <= 8; loc++) {
        fh_shm_snapshot_t snap;
        fh_level_t lv[64];
        FZ_ASSERT(fh_shm_snapshot(&tr, loc, 64, &snap) >= 0);
        for (int sd = 0; sd < 2; sd++) {
            uint32_t n = fh_engine_levels(e, loc, sd, lv, 64);
            const fh_shm_level_t *got = sd ? snap.asks : snap.bids;
            FZ_ASSERT(n == (sd ? snap.nasks : snap.nbids) && n == snap.nlevels[sd]);
            for (uint32_t j = 0; j < n; j++)
                FZ_ASSERT(got[j].price == (int64_t)lv[j].price && got[j].shares == lv[j].shares &&
                          got[j].orders == lv[j].orders);
            mixed += snap.book.side[sd].n > 0 && snap.nlevels[sd] > snap.book.side[sd].n;
        }
    }
    FZ_ASSERT(mixed == 6);
    fh_shm_leave(&tr);
    full = seg->size;
    tmpl = malloc(full);
    memcpy(tmpl, seg->hdr, full);
    fh_engine_destroy(e);
    fh_seg_close(seg, 1);

    /* the file the reader joins: a memfd, joined as /proc/self/fd/N (no wake page there: none needed) */
    wfd = memfd_create("fh-fuzz-shm", MFD_CLOEXEC);
    if (wfd < 0 || ftruncate(wfd, (off_t)full) ||
        (work = mmap(NULL, full, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0)) == MAP_FAILED) {
        fprintf(stderr, "fuzz_shm: memfd: %s\n", strerror(errno));
        abort();
    }
    memcpy(work, tmpl, full);
}

/* The gateway's book tick over the books read_all reads, one buffer of exactly FH_GW_BOOK_ROOM a call (so that
 * AddressSanitizer sees a byte written past it): each call consumes the books it skips and writes at most one
 * command, whose header states its body's length. */
#define GW_STRIDE 16
static char gw_subj[65536 * GW_STRIDE];
static uint8_t gw_subj_len[65536];

static void gw_books(const fh_shm_reader_t *r, const uint16_t *extra, int nextra)
{
    static uint16_t locs[512 + 16];
    size_t n = 0;
    for (int i = 0; i < 512 + nextra; i++) {
        uint16_t loc = i < 512 ? (uint16_t)i : extra[i - 512];
        if (loc >= r->nbooks || !(r->books[loc].seq & 1)) /* one left mid-change would be waited for (BUSY_NS) */
            locs[n++] = loc;
    }
    if (!gw_subj_len[0])
        for (uint32_t loc = 0; loc < 65536; loc++)
            gw_subj_len[loc] = (uint8_t)snprintf(gw_subj + loc * GW_STRIDE, GW_STRIDE, "fh.f.L%u.", loc);
    const size_t room = FH_GW_BOOK_ROOM(GW_STRIDE, 64);
    for (size_t at = 0; at < n;) {
        char *buf = malloc(room);
        size_t done = 0;
        uint64_t nb = 0;
        size_t w = fh_gw_books(r, locs + at, n - at, 64, UINT64_MAX, UINT64_MAX, gw_subj, gw_subj_len, GW_STRIDE, buf,
                               room, &done, &nb);
        FZ_ASSERT(w <= room && done >= 1 && done <= n - at && nb <= 1 && (w == 0) == (nb == 0));
        if (w) { /* PUB <subject>book <len>\r\n<body>\r\n */
            FZ_ASSERT(w > 4 && memcmp(buf, "PUB ", 4) == 0 && memcmp(buf + w - 2, "\r\n", 2) == 0);
            char *nl = memchr(buf, '\n', w);
            FZ_ASSERT(nl && nl[-1] == '\r');
            char *sp = nl - 2;
            while (sp > buf && *sp != ' ')
                sp--;
            size_t len = strtoul(sp + 1, NULL, 10), hdr = (size_t)(nl + 1 - buf);
            FZ_ASSERT(hdr + len + 2 == w && buf[hdr] == '{' && buf[hdr + len - 1] == '}');
        }
        free(buf);
        at += done;
    }
}

static void read_all(const fh_shm_reader_t *r, const uint16_t *extra, int nextra)
{
    const fh_shm_hdr_t *h = r->hdr;
    /* the books the join vouches for: nbooks of them (a corrupted header may say fewer than FH_SHM_BOOKS; a
     * locate at or past nbooks is not read here, and fh_shm_snapshot refuses it without reading) */
    FZ_ASSERT((const uint8_t *)r->books >= r->base &&
              (const uint8_t *)(r->books + r->nbooks) <= r->base + r->size);
    fh_shm_snapshot_t snap;
    for (int i = 0; i < 512 + nextra; i++) {
        uint16_t loc = i < 512 ? (uint16_t)i : extra[i - 512];
        if (loc < r->nbooks && r->books[loc].seq & 1)
            continue;
        memset(&snap, 0xa5, sizeof snap); /* what the call leaves is what it wrote */
        int rc = fh_shm_snapshot(r, loc, h->depth, &snap);
        FZ_ASSERT(rc >= -1);
        FZ_ASSERT(snap.nbids <= 64 && snap.nasks <= 64);
        FZ_ASSERT(snap.nbids <= h->depth && snap.nasks <= h->depth); /* the window and the deep run together */
        FZ_ASSERT(rc >= 0 || (snap.nbids == 0 && snap.nasks == 0));
    }
    gw_books(r, extra, nextra);
    uint64_t head = fh_shm_head(r), cap = h->event_capacity;
    uint64_t next = head > cap ? head - cap + 1 : 1;
    fh_shm_event_t ev;
    for (uint64_t i = 0; i < cap + 4; i++) {
        int rc = fh_shm_event_next(r, &next, &ev);
        FZ_ASSERT(rc == FH_SHM_EV_OK || rc == FH_SHM_EV_OVERRUN || rc == FH_SHM_EV_NONE);
        if (rc == FH_SHM_EV_NONE)
            break;
    }
    if (!(__atomic_load_n(&r->stats->seq, __ATOMIC_RELAXED) & 1)) {
        static fh_shm_stats_t st;
        FZ_ASSERT(fh_shm_stats_copy(r, &st) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tmpl)
        make_template();
    /* undo the last input */
    if (cut) {
        FZ_ASSERT(ftruncate(wfd, (off_t)full) == 0);
        memcpy(work, tmpl, full);
        cut = 0;
    } else {
        for (size_t i = 0; i < npatched; i++)
            memcpy(work + patched[i].off, tmpl + patched[i].off, patched[i].len);
    }
    npatched = 0;

    fz_t in = { data, size };
    uint8_t flags = fz_u8(&in);
    size_t len = full;
    if (flags & 1)
        len = fz_u32(&in) % (full + 1);
    const fh_shm_hdr_t *th = (const fh_shm_hdr_t *)tmpl;
    uint16_t extra[16];
    int nextra = 0;
    while (in.n && npatched < sizeof patched / sizeof patched[0]) {
        uint8_t sel = fz_u8(&in);
        uint32_t at = fz_u32(&in);
        size_t n = 1 + (sel & 15), base, span;
        switch (sel >> 6) {
        case 0: base = 0, span = sizeof(fh_shm_hdr_t); break;
        case 1: base = th->books_off, span = 512 * sizeof(fh_shm_book_t); break;
        case 2: base = th->events_off, span = th->event_capacity * sizeof(fh_shm_event_t); break;
        default:
            if (sel & 32)
                base = th->ladder_off, span = 2 * ((size_t)th->ladder_books + 1) * sizeof(fh_shm_lside_t);
            else
                base = 0, span = full;
            break;
        }
        size_t off = base + at % span;
        if (off + n > full)
            n = full - off;
        for (size_t i = 0; i < n; i++)
            work[off + i] = fz_u8(&in);
        patched[npatched].off = off;
        patched[npatched++].len = n;
        if (sel & 16 && nextra < 16)
            extra[nextra++] = (uint16_t)at;
    }
    if (len < full) {
        FZ_ASSERT(ftruncate(wfd, (off_t)len) == 0);
        cut = 1;
    }

    /* the reader: a path to the file, as a trading process has */
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", wfd);
    fh_shm_reader_t r;
    int rc = fh_shm_join(&r, fdpath);
    if (rc == 0) {
        read_all(&r, extra, nextra);
        fh_shm_leave(&r);
    } else {
        FZ_ASSERT(rc == -EPROTO || rc == -EAGAIN);
    }
    return 0;
}
