/* fh/glimpse.h: a GLIMPSE-style snapshot client: SoupBinTCP (fh/soupbin.h) over a non-blocking TCP socket,
 * the book as ITCH 5.0 messages, ended by GLIMPSE's snapshot message 'G' that carries the MoldUDP64 sequence
 * number to resume from (docs/recovery.md). It is fh_snapshot_source_t of fh/mold.h.
 *
 * The client never blocks: fh_glimpse_start opens a non-blocking connection, and fh_glimpse_poll does what can
 * be done now (finish connecting, send the login or a heartbeat, read what has arrived, at most
 * FH_GLIMPSE_POLL_BYTES a call, deliver the messages) and returns. It makes system calls (socket, connect,
 * send, recv, clock_gettime), so it is for a slow path: the data plane polls it only while a feed waits for
 * a snapshot, never per packet. Nothing is allocated after fh_glimpse_init.
 *
 * Delivery (to a fh_feed_consumer_t, on the thread that polls): snapshot_begin when the login is accepted, one
 * apply (seq 0) per ITCH message, snapshot_end(seq - 1) at the 'G' message carrying seq (the first sequence
 * the snapshot does not hold); then a logout and the socket is closed. A failure (refused connection, login
 * rejected, a server silent for idle_timeout, the whole fetch longer than total_timeout, a malformed packet,
 * a stream that ends without 'G') is counted by cause, named in one line (fh_glimpse_error), and retried
 * after retry_delay up to `retries` times; then on_fail is called (the feed gives the gap up: stale books).
 * A failure after snapshot_begin leaves the consumer's books cleared and stale until a later snapshot ends. */
#ifndef FH_GLIMPSE_H
#define FH_GLIMPSE_H

#include <stdio.h>

#include "fh/common.h"
#include "fh/consumer.h"
#include "fh/mold.h"
#include "fh/soupbin.h"

#define FH_GLIMPSE_SNAPSHOT_MSG 'G' /* GLIMPSE 5.0 snapshot message: 'G', then the sequence as Alpha 20 */
#define FH_GLIMPSE_SNAPSHOT_LEN 21
#define FH_GLIMPSE_POLL_BYTES (256u << 10) /* read at most this much a poll (bounded work per call) */

#define FH_GLIMPSE_COUNTERS(X) \
    X(requests) X(connects) X(connect_failed) X(logins) X(rejected) X(heartbeats_rx) X(heartbeats_tx) \
    X(messages) X(bytes) X(debug) X(unexpected) X(malformed) X(timeouts) X(silent) X(truncated) \
    X(end_of_session) X(session_mismatch) X(retries) X(completed) X(failed)
typedef enum fh_glimpse_counter {
#define FH_X(n) FH_G_##n,
    FH_GLIMPSE_COUNTERS(FH_X)
#undef FH_X
    FH_G_COUNT
} fh_glimpse_counter_t;
/* Each counter:
 *   requests        fetches asked for (fh_glimpse_start, or the feed's request)
 *   connects        TCP connections made; connect_failed: refused, unreachable or timed out
 *   logins          logins accepted; rejected: logins rejected (wrong user or password, session not served)
 *   heartbeats_rx   server heartbeats; heartbeats_tx: client heartbeats sent (1 s without sending anything)
 *   messages        ITCH messages of snapshots delivered (the 'G' message not included); bytes: bytes read
 *   debug           debug packets (ignored); unexpected: packets of a type the client does not expect (ignored)
 *   malformed       packets that cannot be SoupBinTCP (a zero length, a bad login accepted, a bad 'G'): the
 *                   connection is dropped
 *   timeouts        fetches that took longer than total_timeout; silent: servers silent for idle_timeout
 *   truncated       connections that ended (closed or reset) before the 'G' message; end_of_session: 'Z'
 *                   before it
 *   session_mismatch logins accepted for another session than the one asked for (dropped)
 *   retries         fetches started again after a failure; completed: snapshots ended by 'G'; failed: fetches
 *                   given up after every retry (on_fail called) */

enum { FH_GLIMPSE_IDLE = 0, FH_GLIMPSE_CONNECTING, FH_GLIMPSE_LOGIN, FH_GLIMPSE_STREAM, FH_GLIMPSE_WAIT_RETRY,
       FH_GLIMPSE_DONE, FH_GLIMPSE_FAILED };

typedef struct fh_glimpse_cfg {
    uint32_t ip;                /* the server's IPv4 address, host order */
    uint16_t port;
    char user[FH_SOUP_USER_LEN + 1];
    char password[FH_SOUP_PASSWORD_LEN + 1];
    uint32_t connect_timeout_ms; /* 0: 2000 */
    uint32_t idle_timeout_ms;    /* the server silent this long (it heartbeats every second): 0: 15000 */
    uint32_t total_timeout_ms;   /* one fetch, login to 'G'; 0: 600000 */
    uint32_t heartbeat_ms;       /* a client heartbeat after this long without sending; 0: 1000 */
    uint32_t retries;            /* fetches started again after a failure */
    uint32_t retry_delay_ms;     /* 0: 1000 */
} fh_glimpse_cfg_t;

typedef struct fh_glimpse {
    fh_glimpse_cfg_t cfg;
    fh_feed_consumer_t out;
    void (*on_fail)(void *ctx);  /* every retry failed (NULL: nothing) */
    void *fail_ctx;
    fh_mold_feed_t *feed;        /* fh_glimpse_attach: the feed it serves (NULL: a plain consumer) */
    fh_snapshot_source_t src;    /* what the feed calls (fh_glimpse_attach) */
    int fd, state, begun;
    char session[FH_SOUP_SESSION_LEN]; /* asked for (blank: any); after the login, the server's */
    int want_session;
    uint32_t tries;
    uint64_t t_start, t_state, t_rx, t_tx;  /* ms, CLOCK_MONOTONIC */
    uint64_t end_seq;            /* the 'G' message's sequence (the first not in the snapshot) */
    size_t rlen;
    char err[256];
    uint64_t counters[FH_G_COUNT];
    uint8_t rbuf[FH_GLIMPSE_POLL_BYTES + 65540];
} fh_glimpse_t;

/* Check cfg and set g up (idle, no socket). 0, or -1 with a message naming the field. */
int fh_glimpse_init(fh_glimpse_t *g, const fh_glimpse_cfg_t *cfg, const fh_feed_consumer_t *out);
/* Start a fetch of session (10 bytes; NULL: whatever the server serves), dropping one under way. 0, or -1
 * when no socket can be made at all (then nothing is under way). */
int fh_glimpse_start(fh_glimpse_t *g, const char *session);
/* Do what can be done now. Returns the state: FH_GLIMPSE_DONE after a snapshot ended, FH_GLIMPSE_FAILED
 * after every retry failed, FH_GLIMPSE_IDLE when nothing was started, another state while under way. */
int fh_glimpse_poll(fh_glimpse_t *g);
/* Close the socket (a fetch under way is dropped); g can start again. */
void fh_glimpse_close(fh_glimpse_t *g);
/* The last failure in one line ("" if none). */
const char *fh_glimpse_error(const fh_glimpse_t *g);
const char *fh_glimpse_counter_name(int c);

/* Serve feed f: g becomes its snapshot source (f's request starts a fetch of f's session) and delivers to it
 * (fh_mold_snapshot_begin / _apply / _end), and a fetch that fails for good gives f's gap up
 * (fh_mold_snapshot_failed). Poll g while f waits (f->snap_pending). */
void fh_glimpse_attach(fh_glimpse_t *g, fh_mold_feed_t *f);

/* For foreign callers (cffi): a client on the heap delivering to engine e's consumer (fh_engine_consumer),
 * and its release. NULL with a message on a bad cfg. */
typedef struct fh_engine fh_engine_t;
fh_glimpse_t *fh_glimpse_create(const fh_glimpse_cfg_t *cfg, fh_engine_t *e);
void fh_glimpse_destroy(fh_glimpse_t *g);

/* Parse "A.B.C.D:PORT" into cfg's ip and port. 0, or -1 with a message. */
int fh_glimpse_parse_addr(fh_glimpse_cfg_t *cfg, const char *s);
/* A whole configuration from one argument (fh-dataplane --snapshot-source):
 * "A.B.C.D:PORT,user=U[,password-file=F|password-env=VAR][,connect-ms=N][,idle-ms=N][,timeout-ms=N]
 * [,retries=N][,retry-ms=N]". The password is read now: from the file's first line, else from the environment
 * variable (default FH_SNAPSHOT_PASSWORD), never from the argument. 0, or -1 with a message. */
int fh_glimpse_parse_spec(fh_glimpse_cfg_t *cfg, const char *spec);
/* The counters and state as one JSON object's members ("state": ..., "error": ..., counters), for a stats line. */
void fh_glimpse_json(const fh_glimpse_t *g, FILE *out);

#endif
