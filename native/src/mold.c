/* A MoldUDP64 feed's sequencing across its lines (fh/mold.h). */
#include "fh/book.h"
#include "fh/mold.h"

static const char *const names[FH_M_COUNT] = {
#define FH_X(n) #n,
    FH_MOLD_COUNTERS(FH_X)
#undef FH_X
};

const char *fh_mold_counter_name(int c) { return c >= 0 && c < FH_M_COUNT ? names[c] : NULL; }

int fh_mold_feed_apply(fh_mold_feed_t *f, fh_engine_t *e, const uint8_t *d, size_t len, int line)
{
    fh_mold_hdr_t h;
    f->counters[FH_M_datagrams]++;
    if ((unsigned)line < FH_MOLD_MAX_LINES)
        f->line_datagrams[line]++;
    else
        line = -1;
    if (fh_mold_parse_hdr(d, len, &h)) {
        f->counters[FH_M_malformed]++;
        return 0;
    }
    if (h.count == FH_MOLD_END_OF_SESSION) {
        f->counters[FH_M_end_of_session]++;
        return 0;
    }
    int sequenced = h.sequence != 0;
    if (sequenced && (!f->have_session || memcmp(f->session, h.session, sizeof h.session))) {
        if (f->have_session)
            f->counters[FH_M_session_changes]++;
        memcpy(f->session, h.session, sizeof h.session);
        f->have_session = 1;
        f->next_seq = h.sequence;
    }
    if (h.count == FH_MOLD_HEARTBEAT) {
        f->counters[FH_M_heartbeats]++;
        if (sequenced && h.sequence > f->next_seq) { /* the heartbeat names the next sequence: a gap */
            f->counters[FH_M_gaps]++;
            f->counters[FH_M_gap_messages] += h.sequence - f->next_seq;
            f->next_seq = h.sequence;
        }
        return 0;
    }
    /* Frame the blocks first: the datagram's message count must fit (the part that does is still used). */
    fh_blocks_t w = { d + FH_MOLD_HDR_LEN, d + len };
    const uint8_t *m;
    size_t n;
    unsigned whole = 0;
    while (whole < h.count && fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK)
        whole++;
    if (whole < h.count)
        f->counters[FH_M_malformed]++;
    const uint8_t *blocks = d + FH_MOLD_HDR_LEN, *end = w.p;
    unsigned applied = 0;
    if (sequenced && h.sequence == f->next_seq) {
        /* The common case: the next datagram in order. Apply its blocks in one run (the engine prefetches
         * ahead across them). */
        fh_engine_apply_blocks(e, blocks, (size_t)(end - blocks));
        applied = whole;
        f->next_seq += whole;
        if (line >= 0)
            f->line_won[line] += whole;
    } else {
        w = (fh_blocks_t){ blocks, end };
        for (unsigned i = 0; i < whole && fh_blocks_next(&w, &m, &n) == FH_BLOCK_OK; i++) {
            if (!sequenced) {
                f->counters[FH_M_unsequenced]++;
            } else {
                uint64_t seq = h.sequence + i;
                if (seq < f->next_seq) {
                    f->counters[FH_M_duplicates]++;
                    continue;
                }
                if (seq > f->next_seq) {
                    f->counters[FH_M_gaps]++;
                    f->counters[FH_M_gap_messages] += seq - f->next_seq;
                }
                f->next_seq = seq + 1;
                if (line >= 0)
                    f->line_won[line]++;
            }
            fh_engine_apply(e, m, n);
            applied++;
        }
    }
    f->counters[FH_M_applied] += applied;
    return (int)applied;
}
