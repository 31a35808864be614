/* Fuzz target: MoldUDP64 framing (fh/mold.h) and the unsequenced path into the engine. Input: one datagram.
 * The header parser and the block walker must agree with a plain reading of the specification; a walker
 * never leaves [p, end) and stays put on a truncated block; fh_mold_apply_unsequenced into the engine's
 * consumer returns the header's count exactly when its blocks are all whole, else -1 with the engine's
 * mold_malformed counted once (fh_engine_counter_slot), and applies the whole
 * blocks before the fault (as many messages counted as the walk found); the book invariants hold after;
 * and a request encoded from the header reads back as the same session, sequence and count. */
#include "fh/itch.h"
#include "fh/mold.h"
#include "fuzz.h"

#define LEVELS 4096
static fh_engine_t *eng;
static void done(void) { fh_engine_destroy(eng); } /* so that LeakSanitizer sees the engine freed */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!eng) {
        if (!(eng = fh_engine_create(&(fh_engine_cfg_t){ 256, 4096, LEVELS }))) {
            fprintf(stderr, "fuzz_mold: %s\n", fh_errmsg());
            abort();
        }
        atexit(done);
    }
    fh_engine_reset(eng);
    fz_t in = { data, size };
    size_t len;
    uint8_t *d = fz_take(&in, size, &len);

    fh_mold_hdr_t h;
    int hr = fh_mold_parse_hdr(d, len, &h);
    FZ_ASSERT((hr == 0) == (len >= 20));
    /* the specification, read plainly: how many whole blocks follow the header, and do `count` of them fit */
    size_t whole = 0, off = 20;
    while (len >= 20 && off + 2 <= len && off + 2 + ((size_t)d[off] << 8 | d[off + 1]) <= len) {
        off += 2 + ((size_t)d[off] << 8 | d[off + 1]);
        whole++;
    }
    if (hr == 0) {
        FZ_ASSERT(memcmp(h.session, d, 10) == 0);
        uint64_t seq = 0;
        for (int i = 0; i < 8; i++)
            seq = seq << 8 | d[10 + i];
        FZ_ASSERT(h.sequence == seq && h.count == ((unsigned)d[18] << 8 | d[19]));
        fh_blocks_t w = { d + 20, d + len };
        const uint8_t *m;
        size_t n, k = 0;
        fh_block_rc_t rc;
        while ((rc = fh_blocks_next(&w, &m, &n)) == FH_BLOCK_OK) {
            FZ_ASSERT(m >= d + 22 && m + n <= d + len && w.p <= w.end);
            k++;
        }
        FZ_ASSERT(k == whole);
        FZ_ASSERT(rc == (off == len ? FH_BLOCK_END : FH_BLOCK_TRUNCATED));
        FZ_ASSERT(w.p == d + off);
        FZ_ASSERT(fh_blocks_next(&w, &m, &n) == rc && w.p == d + off); /* it stays put */

        fh_mold_request_t rq;
        memcpy(rq.session, h.session, 10);
        rq.seq = h.sequence;
        rq.count = h.count;
        uint8_t enc[20];
        FZ_ASSERT(fh_mold_request_encode(enc, &rq) == 20);
        fh_mold_hdr_t back;
        FZ_ASSERT(fh_mold_parse_hdr(enc, 20, &back) == 0);
        FZ_ASSERT(memcmp(back.session, h.session, 10) == 0 && back.sequence == h.sequence && back.count == h.count);
    }

    fh_feed_consumer_t books;
    fh_engine_consumer(eng, &books);
    int r = fh_mold_apply_unsequenced(d, len, &books, fh_engine_counter_slot(eng, FH_C_mold_malformed));
    uint64_t c[FH_C_COUNT];
    fh_engine_counters(eng, c);
    if (hr != 0) {
        FZ_ASSERT(r == -1 && c[FH_C_mold_malformed] == 1 && c[FH_C_messages] == 0);
    } else if (h.count == FH_MOLD_HEARTBEAT || h.count == FH_MOLD_END_OF_SESSION) {
        FZ_ASSERT(r == h.count && c[FH_C_mold_malformed] == 0 && c[FH_C_messages] == 0);
    } else if (whole >= h.count) {
        FZ_ASSERT(r == h.count && c[FH_C_mold_malformed] == 0);
        FZ_ASSERT(c[FH_C_messages] == h.count);
    } else {
        FZ_ASSERT(r == -1 && c[FH_C_mold_malformed] == 1 && c[FH_C_messages] == whole);
    }
    fz_check_engine(eng, LEVELS);
    free(d);
    return 0;
}
