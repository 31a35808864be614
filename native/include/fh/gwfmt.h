/* fh/gwfmt.h: fh gateway's NATS PUB commands for a run of segment events, formatted in C.
 *
 * The gateway (handler/gateway/gateway.py) reads the event ring in batches; for a batch with nothing to
 * conflate it hands this function the events and gets back the PUB commands of its BBO changes and trades,
 * byte for byte what its Python formatting writes:
 *
 *   PUB <prefix>bbo <n>\r\n{"seq":S,"ts":T,"bid":C,"bid_shares":A,"ask":D,"ask_shares":B,"pub_ns":P,"gw_ns":G}\r\n
 *   PUB <prefix>trade <n>\r\n{"seq":S,"ts":T,"price":C,"shares":A,"match":B,"pub_ns":P,"gw_ns":G}\r\n
 *
 * where <prefix> is the locate's subject prefix (`fh.<feed>.<symbol>.`) and P is `null` when pub_ns is 0.
 * Other event types are skipped (the caller handles them). Nothing is allocated. */
#ifndef FH_GWFMT_H
#define FH_GWFMT_H

#include <stddef.h>
#include <stdint.h>

#include "fh/shm.h"

/* Format events [0, n) into out (cap bytes). subj: stride bytes per locate, subj_len[locate] of them used
 * (a locate with length 0 has no prefix yet: the function stops there, *done says where). Returns the bytes
 * written; *done receives the number of events consumed (n unless out filled up or a prefix was missing);
 * *nbbo and *ntrade are incremented per command written. */
size_t fh_gw_format(const fh_shm_event_t *ev, size_t n, const int64_t *pub_ns, uint64_t gw_ns, const char *subj,
                    const uint8_t *subj_len, size_t stride, char *out, size_t cap, size_t *done, uint64_t *nbbo,
                    uint64_t *ntrade);

#endif
