/* The GLIMPSE-style snapshot client (fh/glimpse.h): SoupBinTCP over a non-blocking socket. */
#define _GNU_SOURCE
#include "fh/glimpse.h"
#include "fh/book.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const counter_names[] = {
#define FH_X(n) #n,
    FH_GLIMPSE_COUNTERS(FH_X)
#undef FH_X
};

const char *fh_glimpse_counter_name(int c) { return c >= 0 && c < FH_G_COUNT ? counter_names[c] : "?"; }

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int fh_glimpse_parse_addr(fh_glimpse_cfg_t *cfg, const char *s)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return FH_ERR("snapshot server '%s' is not A.B.C.D:PORT", s);
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1)
        return FH_ERR("snapshot server '%s': '%s' is not an IPv4 address", s, host);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return FH_ERR("snapshot server '%s': the port must be 1..65535", s);
    cfg->ip = ntohl(a.s_addr);
    cfg->port = (uint16_t)port;
    return 0;
}

int fh_glimpse_init(fh_glimpse_t *g, const fh_glimpse_cfg_t *cfg, const fh_feed_consumer_t *out)
{
    if (!cfg->port)
        return FH_ERR("no snapshot server port");
    if (strnlen(cfg->user, sizeof cfg->user) > FH_SOUP_USER_LEN)
        return FH_ERR("snapshot username longer than %d characters", FH_SOUP_USER_LEN);
    if (strnlen(cfg->password, sizeof cfg->password) > FH_SOUP_PASSWORD_LEN)
        return FH_ERR("snapshot password longer than %d characters", FH_SOUP_PASSWORD_LEN);
    memset(g, 0, offsetof(fh_glimpse_t, rbuf));
    g->cfg = *cfg;
    fh_glimpse_cfg_t *c = &g->cfg;
    c->user[FH_SOUP_USER_LEN] = 0;
    c->password[FH_SOUP_PASSWORD_LEN] = 0;
    if (!c->connect_timeout_ms)
        c->connect_timeout_ms = 2000;
    if (!c->idle_timeout_ms)
        c->idle_timeout_ms = 15000;
    if (!c->total_timeout_ms)
        c->total_timeout_ms = 600000;
    if (!c->heartbeat_ms)
        c->heartbeat_ms = 1000;
    if (!c->retry_delay_ms)
        c->retry_delay_ms = 1000;
    if (out)
        g->out = *out;
    g->fd = -1;
    g->state = FH_GLIMPSE_IDLE;
    return 0;
}

const char *fh_glimpse_error(const fh_glimpse_t *g) { return g->err; }

void fh_glimpse_close(fh_glimpse_t *g)
{
    if (g->fd >= 0)
        close(g->fd);
    g->fd = -1;
    g->rlen = 0;
}

static int open_socket(fh_glimpse_t *g)
{
    g->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g->fd < 0) {
        snprintf(g->err, sizeof g->err, "snapshot client: cannot make a TCP socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(g->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(g->cfg.port),
                              .sin_addr.s_addr = htonl(g->cfg.ip) };
    g->state = FH_GLIMPSE_CONNECTING;
    g->t_state = g->t_start = g->t_rx = g->t_tx = now_ms();
    g->rlen = 0;
    g->begun = 0;
    if (connect(g->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)
        return errno; /* refused at once: a failure to retry, not the absence of sockets */
    return 0;
}

/* A failure of this try: count it, say why, close; retry later or give up. */
static void fail(fh_glimpse_t *g, int counter, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(fh_glimpse_t *g, int counter, const char *fmt, ...)
{
    g->counters[counter]++;
    int n = snprintf(g->err, sizeof g->err, "snapshot server %u.%u.%u.%u:%u: ", g->cfg.ip >> 24,
                     (g->cfg.ip >> 16) & 255, (g->cfg.ip >> 8) & 255, g->cfg.ip & 255, g->cfg.port);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err + n, sizeof g->err - (size_t)n, fmt, ap);
    va_end(ap);
    fh_glimpse_close(g);
    if (g->tries < g->cfg.retries) {
        g->tries++;
        g->counters[FH_G_retries]++;
        g->state = FH_GLIMPSE_WAIT_RETRY;
        g->t_state = now_ms();
        return;
    }
    g->state = FH_GLIMPSE_FAILED;
    g->counters[FH_G_failed]++;
    if (g->on_fail)
        g->on_fail(g->fail_ctx);
}

int fh_glimpse_start(fh_glimpse_t *g, const char *session)
{
    fh_glimpse_close(g);
    g->counters[FH_G_requests]++;
    g->want_session = session != NULL;
    if (session)
        memcpy(g->session, session, FH_SOUP_SESSION_LEN);
    else
        memset(g->session, ' ', FH_SOUP_SESSION_LEN);
    g->tries = 0;
    g->err[0] = 0;
    g->end_seq = 0;
    int rc = open_socket(g);
    if (rc < 0) {
        g->state = FH_GLIMPSE_IDLE;
        return -1;
    }
    if (rc > 0)
        fail(g, FH_G_connect_failed, "cannot connect: %s", strerror(rc));
    return 0;
}

static int send_all(fh_glimpse_t *g, const uint8_t *p, size_t n)
{
    /* Client packets are tiny (at most 50 bytes) and the socket's buffer is empty but for them: a short write
     * would mean the connection is gone. */
    ssize_t w = send(g->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w == (ssize_t)n) {
        g->t_tx = now_ms();
        return 0;
    }
    return -1;
}

/* One packet from the server. Returns 0 to go on, -1 if the connection was dropped (or the snapshot ended). */
static int on_packet(fh_glimpse_t *g, const fh_soup_pkt_t *k)
{
    switch (k->type) {
    case FH_SOUP_SERVER_HB:
        g->counters[FH_G_heartbeats_rx]++;
        return 0;
    case FH_SOUP_DEBUG:
        g->counters[FH_G_debug]++;
        return 0;
    case FH_SOUP_LOGIN_REJECTED:
        fail(g, FH_G_rejected, "login rejected: %s", k->len == 1 ? fh_soup_reject_reason(k->payload[0]) :
                                                                   "(a rejection without a reason code)");
        return -1;
    case FH_SOUP_LOGIN_ACCEPTED: {
        char sess[FH_SOUP_SESSION_LEN];
        uint64_t seq;
        if (g->state != FH_GLIMPSE_LOGIN || fh_soup_parse_accepted(k->payload, k->len, sess, &seq)) {
            fail(g, FH_G_malformed, "a malformed or second login accepted packet: dropped");
            return -1;
        }
        if (g->want_session && memcmp(sess, g->session, FH_SOUP_SESSION_LEN)) {
            fail(g, FH_G_session_mismatch, "login accepted for session '%.10s', not the feed's '%.10s': not used",
                 sess, g->session);
            return -1;
        }
        memcpy(g->session, sess, FH_SOUP_SESSION_LEN);
        g->counters[FH_G_logins]++;
        g->state = FH_GLIMPSE_STREAM;
        g->t_state = now_ms();
        return 0;
    }
    case FH_SOUP_SEQUENCED:
        if (g->state != FH_GLIMPSE_STREAM) {
            fail(g, FH_G_malformed, "sequenced data before the login was accepted: dropped");
            return -1;
        }
        if (k->len && k->payload[0] == FH_GLIMPSE_SNAPSHOT_MSG) {
            uint64_t seq;
            /* Alpha 20 per GLIMPSE 5.0: the number as ASCII digits; fh accepts it padded either way. */
            size_t n = k->len - 1, a = 0;
            const uint8_t *p = k->payload + 1;
            while (n && p[n - 1] == ' ')
                n--;
            while (a < n && p[a] == ' ')
                a++;
            if (k->len != FH_GLIMPSE_SNAPSHOT_LEN || fh_soup_numeric(p + a, n - a, &seq) || seq == 0) {
                fail(g, FH_G_malformed, "a malformed snapshot ('G') message: dropped");
                return -1;
            }
            if (!g->begun) {
                g->begun = 1;
                if (g->out.snapshot_begin)
                    g->out.snapshot_begin(g->out.ctx, g->session);
            }
            g->end_seq = seq;
            if (g->out.snapshot_end)
                g->out.snapshot_end(g->out.ctx, g->session, seq - 1);
            g->counters[FH_G_completed]++;
            uint8_t lo[3];
            send_all(g, lo, fh_soup_encode(lo, sizeof lo, FH_SOUP_LOGOUT, NULL, 0)); /* best effort */
            fh_glimpse_close(g);
            g->state = FH_GLIMPSE_DONE;
            return -1;
        }
        if (!g->begun) {
            g->begun = 1;
            if (g->out.snapshot_begin)
                g->out.snapshot_begin(g->out.ctx, g->session);
        }
        g->counters[FH_G_messages]++;
        if (g->out.apply)
            g->out.apply(g->out.ctx, g->session, 0, k->payload, k->len);
        return 0;
    case FH_SOUP_END_OF_SESSION:
        fail(g, FH_G_end_of_session, "end of session before the snapshot's end ('G'): incomplete, not used");
        return -1;
    default:
        g->counters[FH_G_unexpected]++;
        return 0;
    }
}

int fh_glimpse_poll(fh_glimpse_t *g)
{
    uint64_t t = now_ms();
    switch (g->state) {
    case FH_GLIMPSE_IDLE:
    case FH_GLIMPSE_DONE:
    case FH_GLIMPSE_FAILED:
        return g->state;
    case FH_GLIMPSE_WAIT_RETRY:
        if (t - g->t_state >= g->cfg.retry_delay_ms) {
            int rc = open_socket(g);
            if (rc < 0) {
                g->state = FH_GLIMPSE_FAILED;
                g->counters[FH_G_failed]++;
                if (g->on_fail)
                    g->on_fail(g->fail_ctx);
            } else if (rc > 0) {
                fail(g, FH_G_connect_failed, "cannot connect: %s", strerror(rc));
            }
        }
        return g->state;
    case FH_GLIMPSE_CONNECTING: {
        int err = 0;
        socklen_t el = sizeof err;
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        if (getpeername(g->fd, (struct sockaddr *)&peer, &pl) == 0) {
            g->counters[FH_G_connects]++;
            uint8_t pkt[FH_SOUP_LOGIN_LEN + 2];
            size_t n = fh_soup_login(pkt, sizeof pkt, g->cfg.user, g->cfg.password,
                                     g->want_session ? g->session : NULL, 1); /* GLIMPSE: always from 1 */
            if (!n || send_all(g, pkt, n)) {
                fail(g, FH_G_connect_failed, "cannot send the login request");
                return g->state;
            }
            g->state = FH_GLIMPSE_LOGIN;
            g->t_state = g->t_rx = t;
            return g->state;
        }
        getsockopt(g->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err && err != EINPROGRESS && err != EALREADY) {
            fail(g, FH_G_connect_failed, "cannot connect: %s (is fh snapshot-server running there?)", strerror(err));
            return g->state;
        }
        if (t - g->t_state >= g->cfg.connect_timeout_ms)
            fail(g, FH_G_connect_failed, "cannot connect: no answer in %u ms", g->cfg.connect_timeout_ms);
        return g->state;
    }
    default:
        break;
    }
    /* LOGIN or STREAM: read what has come (bounded), deliver the whole packets, keep the rest. */
    size_t got = 0;
    while (got < FH_GLIMPSE_POLL_BYTES) {
        ssize_t r = recv(g->fd, g->rbuf + g->rlen, sizeof g->rbuf - g->rlen, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            const char *why = r == 0 ? "closed the connection" : strerror(errno);
            if (g->state == FH_GLIMPSE_LOGIN)
                fail(g, FH_G_truncated, "%s before answering the login", why);
            else
                fail(g, FH_G_truncated, "%s after %" PRIu64 " messages, before the snapshot's end ('G'): "
                     "incomplete, not used", why, g->counters[FH_G_messages]);
            return g->state;
        }
        if (r < 0)
            break;
        g->rlen += (size_t)r;
        got += (size_t)r;
        g->counters[FH_G_bytes] += (uint64_t)r;
        g->t_rx = t;
        size_t off = 0;
        for (;;) {
            fh_soup_pkt_t k;
            int n = fh_soup_next(g->rbuf + off, g->rlen - off, &k);
            if (n < 0) {
                fail(g, FH_G_malformed, "a packet of length 0: not SoupBinTCP, dropped");
                return g->state;
            }
            if (n == 0)
                break;
            off += (size_t)n;
            if (on_packet(g, &k))
                return g->state;
        }
        memmove(g->rbuf, g->rbuf + off, g->rlen - off);
        g->rlen -= off;
    }
    if (t - g->t_rx >= g->cfg.idle_timeout_ms) {
        fail(g, FH_G_silent, "silent for %u ms (no data, no heartbeat): the connection is taken as lost",
             g->cfg.idle_timeout_ms);
        return g->state;
    }
    if (t - g->t_start >= g->cfg.total_timeout_ms) {
        fail(g, FH_G_timeouts, "the snapshot took longer than %u ms: given up", g->cfg.total_timeout_ms);
        return g->state;
    }
    if (t - g->t_tx >= g->cfg.heartbeat_ms) {
        uint8_t hb[3];
        if (send_all(g, hb, fh_soup_encode(hb, sizeof hb, FH_SOUP_CLIENT_HB, NULL, 0)) == 0)
            g->counters[FH_G_heartbeats_tx]++;
    }
    return g->state;
}

/* ---- serving a MoldUDP64 feed ------------------------------------------------------------------------- */

static void feed_begin(void *ctx, const char *session)
{
    (void)session;
    fh_mold_snapshot_begin(((fh_glimpse_t *)ctx)->feed);
}

static void feed_apply(void *ctx, const char *session, uint64_t seq, const uint8_t *m, size_t len)
{
    (void)session;
    (void)seq;
    fh_mold_snapshot_apply(((fh_glimpse_t *)ctx)->feed, m, len);
}

static void feed_end(void *ctx, const char *session, uint64_t seq)
{
    (void)session;
    fh_mold_snapshot_end(((fh_glimpse_t *)ctx)->feed, seq);
}

static void feed_failed(void *ctx) { fh_mold_snapshot_failed(((fh_glimpse_t *)ctx)->feed); }

static int feed_request(void *ctx, const char session[FH_MOLD_SESSION_LEN], uint64_t after_seq)
{
    (void)after_seq; /* GLIMPSE serves the book as of now, whatever the gap */
    return fh_glimpse_start((fh_glimpse_t *)ctx, session);
}

void fh_glimpse_attach(fh_glimpse_t *g, fh_mold_feed_t *f)
{
    g->feed = f;
    g->out = (fh_feed_consumer_t){ .ctx = g, .apply = feed_apply, .snapshot_begin = feed_begin,
                                   .snapshot_end = feed_end };
    g->on_fail = feed_failed;
    g->fail_ctx = g;
    g->src = (fh_snapshot_source_t){ .request = feed_request, .ctx = g };
    fh_mold_feed_set_snapshot_source(f, &g->src);
}

fh_glimpse_t *fh_glimpse_create(const fh_glimpse_cfg_t *cfg, fh_engine_t *e)
{
    fh_glimpse_t *g = malloc(sizeof *g);
    if (!g) {
        FH_ERR("out of memory for a snapshot client");
        return NULL;
    }
    fh_feed_consumer_t out;
    fh_engine_consumer(e, &out);
    if (fh_glimpse_init(g, cfg, &out)) {
        free(g);
        return NULL;
    }
    return g;
}

void fh_glimpse_destroy(fh_glimpse_t *g)
{
    if (!g)
        return;
    fh_glimpse_close(g);
    free(g);
}

int fh_glimpse_parse_spec(fh_glimpse_cfg_t *cfg, const char *spec)
{
    char buf[1024];
    if (strlen(spec) >= sizeof buf)
        return FH_ERR("--snapshot-source: too long");
    strcpy(buf, spec);
    memset(cfg, 0, sizeof *cfg);
    char *save = NULL, *tok = strtok_r(buf, ",", &save);
    if (!tok || fh_glimpse_parse_addr(cfg, tok))
        return tok ? -1 : FH_ERR("--snapshot-source: empty; expected A.B.C.D:PORT,user=U");
    const char *pwfile = NULL, *pwenv = "FH_SNAPSHOT_PASSWORD";
    int have_user = 0;
    while ((tok = strtok_r(NULL, ",", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return FH_ERR("--snapshot-source: '%s' is not KEY=VALUE", tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        uint32_t *num = !strcmp(k, "connect-ms") ? &cfg->connect_timeout_ms : !strcmp(k, "idle-ms") ? &cfg->idle_timeout_ms
                      : !strcmp(k, "timeout-ms") ? &cfg->total_timeout_ms : !strcmp(k, "retries") ? &cfg->retries
                      : !strcmp(k, "retry-ms") ? &cfg->retry_delay_ms : NULL;
        if (num) {
            char *end;
            unsigned long x = strtoul(v, &end, 10);
            if (!*v || *end || x > UINT32_MAX)
                return FH_ERR("--snapshot-source: %s=%s is not a whole number", k, v);
            *num = (uint32_t)x;
        } else if (!strcmp(k, "user")) {
            if (!*v || strlen(v) > FH_SOUP_USER_LEN)
                return FH_ERR("--snapshot-source: user '%s' must be 1 to %d characters", v, FH_SOUP_USER_LEN);
            strcpy(cfg->user, v);
            have_user = 1;
        } else if (!strcmp(k, "password-file")) {
            pwfile = v;
        } else if (!strcmp(k, "password-env")) {
            pwenv = v;
        } else {
            return FH_ERR("--snapshot-source: unknown key '%s' (user, password-file, password-env, connect-ms, "
                          "idle-ms, timeout-ms, retries, retry-ms)", k);
        }
    }
    if (!have_user)
        return FH_ERR("--snapshot-source: no user=; the snapshot service's SoupBinTCP username");
    char pw[64] = "";
    if (pwfile) {
        FILE *f = fopen(pwfile, "r");
        if (!f)
            return FH_ERR("--snapshot-source: password-file %s: %s", pwfile, strerror(errno));
        if (!fgets(pw, sizeof pw, f))
            pw[0] = 0;
        fclose(f);
        pw[strcspn(pw, "\r\n")] = 0;
    } else if (getenv(pwenv)) {
        snprintf(pw, sizeof pw, "%s", getenv(pwenv));
    }
    if (!pw[0])
        return FH_ERR("--snapshot-source: no password (%s%s is empty or unset)", pwfile ? "the file " : "$",
                      pwfile ? pwfile : pwenv);
    if (strlen(pw) > FH_SOUP_PASSWORD_LEN)
        return FH_ERR("--snapshot-source: the password is longer than SoupBinTCP's %d characters", FH_SOUP_PASSWORD_LEN);
    strcpy(cfg->password, pw);
    return 0;
}

void fh_glimpse_json(const fh_glimpse_t *g, FILE *out)
{
    static const char *const names[] = { "idle", "connecting", "login", "stream", "wait_retry", "done", "failed" };
    fprintf(out, "\"state\": \"%s\", \"error\": \"", names[g->state]);
    for (const char *p = g->err; *p; p++) /* a JSON string: the message is ASCII text from this file */
        fputc(*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ? '?' : *p, out);
    fprintf(out, "\"");
    for (int i = 0; i < FH_G_COUNT; i++)
        fprintf(out, ", \"%s\": %" PRIu64, counter_names[i], g->counters[i]);
}
