/* fh-bench-nats-sub: a NATS subscriber in C for the gateway's latency figure (bench/history.md).
 *
 * Speaks the NATS client protocol itself (CONNECT, SUB, PING/PONG, MSG) over one TCP connection, so that the
 * measurement is the gateway and the server, not a subscriber's interpreter. For every message it takes
 * CLOCK_REALTIME and the message's "pub_ns" (the data plane's publish stamp, as wall time) and "gw_ns" (when the
 * gateway handed it to NATS), and at the end prints one JSON line: messages, and p50/p99/p99.9/max of
 * now - pub_ns and of now - gw_ns in microseconds, and of gw_ns - pub_ns (the gateway's own part: from the publish
 * stamp to the gateway's read of the event).
 *
 *   fh-bench-nats-sub HOST PORT SUBJECT SECONDS [IDLE_SECONDS]
 *
 * Stops SECONDS after the start, or IDLE_SECONDS (default 3) after the last message once one came. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CAP (1u << 24)

static uint64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void pct(const char *name, int64_t *v, size_t n)
{
    if (!n) {
        printf("\"%s\":null", name);
        return;
    }
    qsort(v, n, sizeof *v, cmp64);
    double q[4] = { 0.5, 0.99, 0.999, 1.0 };
    printf("\"%s\":{", name);
    static const char *k[4] = { "p50_us", "p99_us", "p999_us", "max_us" };
    for (int i = 0; i < 4; i++) {
        size_t j = (size_t)(q[i] * (double)(n - 1));
        printf("%s\"%s\":%.1f", i ? "," : "", k[i], (double)v[j] / 1e3);
    }
    printf("}");
}

/* The integer after key in [p, end), or -1. */
static int64_t field(const char *p, const char *end, const char *key)
{
    size_t kl = strlen(key);
    const char *h = memmem(p, (size_t)(end - p), key, kl);
    if (!h)
        return -1;
    h += kl;
    if (h >= end || *h < '0' || *h > '9')
        return -1;
    int64_t v = 0;
    while (h < end && *h >= '0' && *h <= '9')
        v = v * 10 + (*h++ - '0');
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT SUBJECT SECONDS [IDLE_SECONDS]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[4]), idle = argc > 5 ? atof(argv[5]) : 3.0;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (rc) {
        fprintf(stderr, "fh-bench-nats-sub: %s:%s: %s\n", argv[1], argv[2], gai_strerror(rc));
        return 1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        fprintf(stderr, "fh-bench-nats-sub: connect %s:%s: %s: is nats-server running there?\n", argv[1], argv[2],
                strerror(errno));
        return 1;
    }
    freeaddrinfo(ai);
    char hello[512];
    int hl = snprintf(hello, sizeof hello,
                      "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"fh-bench-nats-sub\"}\r\nSUB %s 1\r\nPING\r\n",
                      argv[3]);
    if (write(fd, hello, (size_t)hl) != hl) {
        perror("fh-bench-nats-sub: write");
        return 1;
    }
    int64_t *lat_pub = malloc(CAP * sizeof(int64_t)), *lat_gw = malloc(CAP * sizeof(int64_t));
    int64_t *lat_pg = malloc(CAP * sizeof(int64_t));
    size_t bufcap = 1 << 22, len = 0, npub = 0, ngw = 0, npg = 0, msgs = 0, nostamp = 0;
    char *buf = malloc(bufcap);
    if (!lat_pub || !lat_gw || !lat_pg || !buf) {
        fprintf(stderr, "fh-bench-nats-sub: out of memory\n");
        return 1;
    }
    uint64_t t0 = now_ns(CLOCK_MONOTONIC), last = 0;
    for (;;) {
        uint64_t mono = now_ns(CLOCK_MONOTONIC);
        if ((double)(mono - t0) / 1e9 > seconds || (last && (double)(mono - last) / 1e9 > idle))
            break;
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, buf + len, bufcap - len);
        if (r <= 0) {
            fprintf(stderr, "fh-bench-nats-sub: the server closed the connection\n");
            break;
        }
        uint64_t wall = now_ns(CLOCK_REALTIME);
        len += (size_t)r;
        size_t off = 0;
        for (;;) { /* whole protocol lines (and MSG payloads) in buf[off, len) */
            char *p = buf + off, *end = buf + len;
            char *nl = memmem(p, (size_t)(end - p), "\r\n", 2);
            if (!nl)
                break;
            if (!strncmp(p, "MSG ", 4)) {
                /* MSG <subject> <sid> [reply-to] <#bytes> */
                char *sp = nl;
                while (sp > p && sp[-1] != ' ')
                    sp--;
                size_t n = strtoul(sp, NULL, 10);
                char *pay = nl + 2;
                if ((size_t)(end - pay) < n + 2)
                    break; /* the payload is not all here yet */
                int64_t pub = field(pay, pay + n, "\"pub_ns\":"), gw = field(pay, pay + n, "\"gw_ns\":");
                if (pub > 0 && npub < CAP)
                    lat_pub[npub++] = (int64_t)wall - pub;
                else if (pub <= 0)
                    nostamp++;
                if (gw > 0 && ngw < CAP)
                    lat_gw[ngw++] = (int64_t)wall - gw;
                if (gw > 0 && pub > 0 && npg < CAP)
                    lat_pg[npg++] = gw - pub;
                msgs++;
                last = now_ns(CLOCK_MONOTONIC);
                off = (size_t)(pay + n + 2 - buf);
                continue;
            }
            if (!strncmp(p, "PING", 4) && write(fd, "PONG\r\n", 6) != 6) {
                perror("fh-bench-nats-sub: write");
                return 1;
            }
            if (!strncmp(p, "-ERR", 4))
                fprintf(stderr, "fh-bench-nats-sub: server: %.*s\n", (int)(nl - p), p);
            off = (size_t)(nl + 2 - buf);
        }
        memmove(buf, buf + off, len - off);
        len -= off;
        if (len == bufcap) {
            fprintf(stderr, "fh-bench-nats-sub: a message larger than %zu bytes\n", bufcap);
            return 1;
        }
    }
    printf("{\"messages\":%zu,\"without_pub_ns\":%zu,", msgs, nostamp);
    pct("pub_to_subscriber", lat_pub, npub);
    printf(",");
    pct("gateway_to_subscriber", lat_gw, ngw);
    printf(",");
    pct("pub_to_gateway", lat_pg, npg);
    printf("}\n");
    close(fd);
    return 0;
}
