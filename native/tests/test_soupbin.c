/* test_soupbin: SoupBinTCP framing (fh/soupbin.h) and the GLIMPSE client's state machine (fh/glimpse.h)
 * against a scripted server on a loopback socket in this process. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fh/glimpse.h"
#include "fh/soupbin.h"

static void test_framing(void)
{
    uint8_t buf[256];
    const char msg[] = "hello";
    size_t n = fh_soup_encode(buf, sizeof buf, FH_SOUP_SEQUENCED, msg, 5);
    CHECK(n == 8, "encode: %zu bytes, want 8", n);
    CHECK(buf[0] == 0 && buf[1] == 6 && buf[2] == 'S', "encode: header %02x %02x %c", buf[0], buf[1], buf[2]);
    /* Every split point: incomplete until the whole packet is there. */
    for (size_t cut = 0; cut < n; cut++) {
        fh_soup_pkt_t k;
        CHECK(fh_soup_next(buf, cut, &k) == 0, "next on %zu of %zu bytes should wait for more", cut, n);
    }
    fh_soup_pkt_t k;
    CHECK(fh_soup_next(buf, n, &k) == (int)n && k.type == 'S' && k.len == 5 && !memcmp(k.payload, "hello", 5),
          "next: the whole packet");
    /* Two packets back to back, the second a bare heartbeat. */
    size_t m = fh_soup_encode(buf + n, sizeof buf - n, FH_SOUP_SERVER_HB, NULL, 0);
    CHECK(m == 3, "heartbeat: %zu bytes", m);
    CHECK(fh_soup_next(buf + n, m, &k) == 3 && k.type == 'H' && k.len == 0, "heartbeat parsed");
    /* A length of 0 cannot be a packet. */
    uint8_t zero[3] = { 0, 0, 'H' };
    CHECK(fh_soup_next(zero, 3, &k) == -1, "length 0 must be refused");
    CHECK(fh_soup_encode(buf, 7, 'S', msg, 5) == 0, "encode must refuse a buffer too small");
    CHECK(fh_soup_encode(buf, sizeof buf, 'S', msg, FH_SOUP_MAX_PAYLOAD + 1) == 0, "encode: payload too long");
}

static void test_fields(void)
{
    uint64_t v;
    CHECK(fh_soup_numeric((const uint8_t *)"                   1", 20, &v) == 0 && v == 1, "numeric 1");
    CHECK(fh_soup_numeric((const uint8_t *)"18446744073709551615", 20, &v) == 0 && v == UINT64_MAX, "numeric max");
    CHECK(fh_soup_numeric((const uint8_t *)"18446744073709551616", 20, &v) == -1, "numeric overflow refused");
    CHECK(fh_soup_numeric((const uint8_t *)"                    ", 20, &v) == -1, "all spaces refused");
    CHECK(fh_soup_numeric((const uint8_t *)"   12 3", 7, &v) == -1, "a space inside refused");
    CHECK(fh_soup_numeric((const uint8_t *)"  -12", 5, &v) == -1, "a sign refused");
    uint8_t f[20];
    CHECK(fh_soup_put_numeric(f, 20, 12345) == 0 && !memcmp(f, "               12345", 20), "put numeric");
    CHECK(fh_soup_put_numeric(f, 3, 12345) == -1, "put numeric: too long");
    CHECK(fh_soup_put_alpha(f, 6, "ab") == 0 && !memcmp(f, "ab    ", 6), "put alpha");
    CHECK(fh_soup_put_alpha(f, 2, "abc") == -1, "put alpha: too long");

    uint8_t pkt[64];
    size_t n = fh_soup_login(pkt, sizeof pkt, "fh", "secret", "SESSION001", 42);
    CHECK(n == 49, "login request: %zu bytes, want 49 (2 + 47)", n);
    fh_soup_pkt_t k;
    CHECK(fh_soup_next(pkt, n, &k) == (int)n && k.type == 'L' && k.len == 46, "login request framed");
    char user[7], pw[11], sess[10];
    uint64_t seq;
    CHECK(fh_soup_parse_login(k.payload, k.len, user, pw, sess, &seq) == 0, "login parses: %s", fh_errmsg());
    CHECK(!strcmp(user, "fh") && !strcmp(pw, "secret") && !memcmp(sess, "SESSION001", 10) && seq == 42,
          "login round trip: '%s' '%s' %" PRIu64, user, pw, seq);
    CHECK(fh_soup_login(pkt, sizeof pkt, "toolonguser", "x", NULL, 1) == 0, "a 7+ character user refused");
    CHECK(fh_soup_login(pkt, sizeof pkt, "u", "elevenchars", NULL, 1) == 0, "an 11 character password refused");
    n = fh_soup_login(pkt, sizeof pkt, "u", "p", NULL, 1);
    CHECK(n && !memcmp(pkt + 3 + 16, "          ", 10), "a NULL session is blank");

    uint8_t acc[30];
    memcpy(acc, "SESSION001", 10);
    fh_soup_put_numeric(acc + 10, 20, 7);
    CHECK(fh_soup_parse_accepted(acc, 30, sess, &seq) == 0 && seq == 7 && !memcmp(sess, "SESSION001", 10),
          "login accepted parses");
    CHECK(fh_soup_parse_accepted(acc, 29, sess, &seq) == -1, "a short login accepted refused");
    acc[29] = 'x';
    CHECK(fh_soup_parse_accepted(acc, 30, sess, &seq) == -1, "a non-numeric sequence refused");
}

/* ---- the client against a scripted server ---- */

typedef struct rec {
    int begins, ends, applies;
    uint64_t end_seq;
    size_t bytes;
} rec_t;

static void r_begin(void *c, const char *s) { (void)s; ((rec_t *)c)->begins++; }
static void r_apply(void *c, const char *s, uint64_t q, const uint8_t *m, size_t n)
{
    (void)s;
    (void)m;
    CHECK(q == 0, "snapshot messages are unsequenced");
    ((rec_t *)c)->applies++;
    ((rec_t *)c)->bytes += n;
}
static void r_end(void *c, const char *s, uint64_t q) { (void)s; ((rec_t *)c)->ends++; ((rec_t *)c)->end_seq = q; }

static int listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4) ||
        getsockname(fd, (struct sockaddr *)&sa, &sl))
        return -1;
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Poll the client until it is done or failed, or ms pass; the server side runs `script` once connected. */
enum { S_GOOD, S_REJECT, S_TRUNCATE, S_SILENT, S_SPLIT };

static int client_hbs; /* client heartbeats the scripted server received after the login */

static int run_case(int script, rec_t *r, fh_glimpse_t *g, uint32_t idle_ms)
{
    client_hbs = 0;
    uint16_t port;
    int lfd = listener(&port);
    CHECK(lfd >= 0, "cannot listen on loopback: %s", strerror(errno));
    if (lfd < 0)
        return -1;
    fh_glimpse_cfg_t cfg = { .ip = 0x7f000001, .port = port, .idle_timeout_ms = idle_ms, .retries = 0,
                             .heartbeat_ms = 40 };
    strcpy(cfg.user, "fh");
    strcpy(cfg.password, "pw");
    fh_feed_consumer_t out = { .ctx = r, .apply = r_apply, .snapshot_begin = r_begin, .snapshot_end = r_end };
    CHECK(fh_glimpse_init(g, &cfg, &out) == 0, "init: %s", fh_errmsg());
    CHECK(fh_glimpse_start(g, "SESSION001") == 0, "start");
    int cfd = -1, st = 0, sent = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        st = fh_glimpse_poll(g);
        if (st == FH_GLIMPSE_DONE || st == FH_GLIMPSE_FAILED)
            break;
        if (cfd < 0) {
            struct pollfd p = { .fd = lfd, .events = POLLIN };
            if (poll(&p, 1, 1) == 1)
                cfd = accept(lfd, NULL, NULL);
        } else if (!sent) {
            uint8_t in[64];
            ssize_t got = recv(cfd, in, sizeof in, MSG_DONTWAIT);
            if (got == 49) { /* the login */
                uint8_t out_b[4096];
                size_t o = 0;
                if (script == S_REJECT) {
                    o += fh_soup_encode(out_b + o, sizeof out_b - o, 'J', "A", 1);
                } else {
                    uint8_t acc[30];
                    memcpy(acc, "SESSION001", 10);
                    fh_soup_put_numeric(acc + 10, 20, 1);
                    o += fh_soup_encode(out_b + o, sizeof out_b - o, 'A', acc, 30);
                    if (script != S_SILENT) {
                        for (int i = 0; i < 3; i++) {
                            uint8_t add[36] = { 'A' };
                            o += fh_soup_encode(out_b + o, sizeof out_b - o, 'S', add, sizeof add);
                        }
                        o += fh_soup_encode(out_b + o, sizeof out_b - o, 'H', NULL, 0);
                        o += fh_soup_encode(out_b + o, sizeof out_b - o, '+', "debug", 5);
                    }
                    if (script == S_GOOD || script == S_SPLIT) {
                        uint8_t gm[21] = { 'G' };
                        fh_soup_put_numeric(gm + 1, 20, 1000);
                        o += fh_soup_encode(out_b + o, sizeof out_b - o, 'S', gm, 21);
                    }
                }
                if (script == S_SPLIT) { /* one byte at a time: the client must reassemble */
                    for (size_t i = 0; i < o; i++) {
                        send(cfd, out_b + i, 1, MSG_NOSIGNAL);
                        fh_glimpse_poll(g);
                    }
                } else {
                    send(cfd, out_b, o, MSG_NOSIGNAL);
                }
                if (script == S_TRUNCATE)
                    close(cfd), cfd = -2;
                sent = 1;
            }
        } else if (cfd >= 0) { /* after the login: count the client's heartbeats (3-byte 'R' packets) */
            uint8_t in[64];
            ssize_t got = recv(cfd, in, sizeof in, MSG_DONTWAIT);
            for (ssize_t i = 0; i + 3 <= got; i += 3)
                client_hbs += in[i] == 0 && in[i + 1] == 1 && in[i + 2] == 'R';
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > 5000)
            break;
    }
    if (cfd >= 0)
        close(cfd);
    close(lfd);
    return st;
}

static void test_client(void)
{
    static fh_glimpse_t g;
    rec_t r = { 0 };
    int st = run_case(S_GOOD, &r, &g, 2000);
    CHECK(st == FH_GLIMPSE_DONE, "a good snapshot: state %d (%s)", st, fh_glimpse_error(&g));
    CHECK(r.begins == 1 && r.applies == 3 && r.ends == 1 && r.end_seq == 999,
          "a good snapshot: %d begins, %d messages, %d ends at %" PRIu64 " (want 1, 3, 1 at 999)", r.begins,
          r.applies, r.ends, r.end_seq);
    CHECK(g.end_seq == 1000 && g.counters[FH_G_heartbeats_rx] == 1 && g.counters[FH_G_debug] == 1 &&
          g.counters[FH_G_completed] == 1 && g.counters[FH_G_logins] == 1, "a good snapshot's counters");

    memset(&r, 0, sizeof r);
    st = run_case(S_SPLIT, &r, &g, 2000);
    CHECK(st == FH_GLIMPSE_DONE && r.applies == 3 && r.end_seq == 999, "byte-by-byte: state %d, %d messages", st,
          r.applies);

    memset(&r, 0, sizeof r);
    st = run_case(S_REJECT, &r, &g, 2000);
    CHECK(st == FH_GLIMPSE_FAILED && g.counters[FH_G_rejected] == 1 && strstr(fh_glimpse_error(&g), "not authorized"),
          "a rejected login: state %d, '%s'", st, fh_glimpse_error(&g));
    CHECK(r.begins == 0, "a rejected login delivers nothing");

    memset(&r, 0, sizeof r);
    st = run_case(S_TRUNCATE, &r, &g, 2000);
    CHECK(st == FH_GLIMPSE_FAILED && g.counters[FH_G_truncated] == 1 && r.ends == 0,
          "a truncated stream: state %d, '%s'", st, fh_glimpse_error(&g));

    memset(&r, 0, sizeof r);
    st = run_case(S_SILENT, &r, &g, 200);
    CHECK(st == FH_GLIMPSE_FAILED && g.counters[FH_G_silent] == 1 && strstr(fh_glimpse_error(&g), "silent"),
          "a silent server: state %d, '%s'", st, fh_glimpse_error(&g));
    /* 200 ms of silence with a heartbeat due every 40 ms without sending: the client kept the link alive */
    CHECK(g.counters[FH_G_heartbeats_tx] >= 3 && client_hbs >= 3 && (uint64_t)client_hbs <= g.counters[FH_G_heartbeats_tx],
          "client heartbeats: %" PRIu64 " sent, %d received", g.counters[FH_G_heartbeats_tx], client_hbs);

    /* Nobody listening: refused, retried once, then failed. */
    uint16_t port;
    int lfd = listener(&port);
    close(lfd);
    fh_glimpse_cfg_t cfg = { .ip = 0x7f000001, .port = port, .retries = 1, .retry_delay_ms = 10 };
    fh_feed_consumer_t out = { .ctx = &r };
    CHECK(fh_glimpse_init(&g, &cfg, &out) == 0, "init");
    CHECK(fh_glimpse_start(&g, NULL) == 0, "start");
    for (int i = 0; i < 2000 && (st = fh_glimpse_poll(&g)) != FH_GLIMPSE_FAILED; i++)
        usleep(1000);
    CHECK(st == FH_GLIMPSE_FAILED && g.counters[FH_G_connect_failed] == 2 && g.counters[FH_G_retries] == 1,
          "a refused connection: state %d, %" PRIu64 " failed connects, '%s'", st, g.counters[FH_G_connect_failed],
          fh_glimpse_error(&g));

    fh_glimpse_cfg_t bad = { .ip = 1, .port = 0 };
    CHECK(fh_glimpse_init(&g, &bad, NULL) == -1, "port 0 refused");
    CHECK(fh_glimpse_parse_addr(&cfg, "127.0.0.1:7001") == 0 && cfg.ip == 0x7f000001 && cfg.port == 7001,
          "parse addr");
    CHECK(fh_glimpse_parse_addr(&cfg, "localhost:7001") == -1 && fh_glimpse_parse_addr(&cfg, "1.2.3.4:0") == -1,
          "bad addresses refused");
}

int main(void)
{
    test_framing();
    test_fields();
    test_client();
    if (failures)
        return 1;
    printf("test_soupbin: ok\n");
    return 0;
}
