/* fh/consumer.h: what a sequenced feed delivers, and to whom (after Aeron's fragment handler: a context and
 * callbacks). The MoldUDP64 sequencer (fh/mold.h) calls these and nothing else; the book engine implements
 * them (fh_engine_consumer in fh/book.h); a journal can stand in front of the engine as a tee (record, then
 * pass on). Venue-independent: a message is bytes, its position a session and a sequence number.
 *
 * Every call comes from the one thread that drives the feed, in sequence order. session points at the
 * feed's 10 session bytes (not NUL-terminated), valid during the call. Hot: apply_blocks (a whole datagram
 * in order, the common case) and apply (one message: out of a gap, from the hold-back buffer, unsequenced);
 * neither may block or fail (bad messages are the consumer's to count); apply_datagram (optional) is
 * apply_blocks for a datagram whose framing the consumer checks itself, and refuses it whole when wrong. */
#ifndef FH_CONSUMER_H
#define FH_CONSUMER_H

#include "fh/blocks.h"
#include "fh/common.h"

#define FH_SESSION_LEN 10

typedef struct fh_feed_consumer {
    void *ctx;
    /* count messages in 2-byte-length blocks [p, p+len) (fh/blocks.h), sequences first_seq ..
     * first_seq+count-1 of session */
    void (*apply_blocks)(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                         size_t len);
    /* one message; seq 0: unsequenced (sequence-0 datagrams, a snapshot's messages) */
    void (*apply)(void *ctx, const char *session, uint64_t seq, const uint8_t *msg, size_t len);
    /* sequences [from, to) of session will never be delivered: whatever they touched may be wrong (the
     * engine marks every book stale, and books created later start stale) */
    void (*lost)(void *ctx, const char *session, uint64_t from, uint64_t to);
    /* a snapshot follows (its messages through apply, seq 0): forget everything; then its end, as of seq */
    void (*snapshot_begin)(void *ctx, const char *session);
    void (*snapshot_end)(void *ctx, const char *session, uint64_t seq);
    /* Optional (NULL: none). apply_blocks for a datagram whose framing is not checked yet: applied only when
     * fh_blocks_framed(p, len, count, framing) holds (checked whole before anything is applied: the consumer's own
     * walk of the blocks can do it); otherwise nothing is applied and it returns -1 (the feed counts the
     * datagram malformed). Returns 0 when applied. A feed whose cfg.msg_len is this consumer's `framing` table
     * calls it instead of checking the framing itself (one walk of the blocks, not two). */
    int (*apply_datagram)(void *ctx, const char *session, uint64_t first_seq, uint32_t count, const uint8_t *p,
                          size_t len);
    /* the message lengths by type (256 entries, 0: any non-empty length) apply_datagram checks with */
    const uint8_t *framing;
} fh_feed_consumer_t;

#endif
