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
        return -1;
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
    fh_blocks_t w = { d + FH_MOLD_HDR_LEN, d + len };
    const uint8_t *m;
    size_t n;
    int applied = 0;
    for (unsigned i = 0; i < h.count; i++) {
        if (fh_blocks_next(&w, &m, &n) != FH_BLOCK_OK) {
            f->counters[FH_M_malformed]++;
            return -1;
        }
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
    f->counters[FH_M_applied] += (uint64_t)applied;
    return applied;
}
