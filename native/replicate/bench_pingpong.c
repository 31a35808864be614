/* fh-bench-fabric-pingpong [--provider tcp] [--port N] [--size BYTES] [--rounds N] [--cores A,B]: the fabric's
 * own one-way latency, the baseline of the replication lag (bench/replication.sh runs it in the same session).
 *
 * Two processes (a fork) on one host, connected over fabric.c exactly as fh-replicate's roles are (FI_EP_MSG,
 * the same provider, memory registration and completion queues): A writes --size bytes with fi_writedata
 * into B's registered buffer; B, polling its receive queue, writes the same back into A's; A sees the
 * completion. Both spin (no nap) on their own core (--cores, default 0,1; -1: anywhere). One-way = round trip / 2,
 * per round, after --warmup rounds (default 1,000); prints one JSON line: p50, p90, p99, p99.9, max in µs. Two
 * spinning processes need two free cores: on a loaded machine each round waits for the scheduler. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fabric.h"

typedef struct peer_buf {
    uint32_t type, pad;
    uint64_t addr, key;
} peer_buf_t;

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int pin(int core)
{
    if (core < 0) /* -1: anywhere */
        return 0;
    cpu_set_t cs;
    CPU_ZERO(&cs);
    CPU_SET(core, &cs);
    if (sched_setaffinity(0, sizeof cs, &cs)) {
        fprintf(stderr, "fh-bench-fabric-pingpong: core %d: %s\n", core, strerror(errno));
        return -1;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct side {
    fh_fab_t f;
    uint8_t *buf;
    size_t size;
    fh_fab_mr_t mr;
    peer_buf_t peer;
    fh_fab_op_t op[16]; /* a write's context stays the provider's until its completion */
    int busy[16];
    int arrived; /* the peer's writes seen and not yet answered (one may come with its buffer message) */
} side_t;

/* Transmit completions: their contexts free again. */
static int reap(side_t *s)
{
    fh_fab_op_t *done[16];
    int n = fh_fab_poll_tx(&s->f, done, 16);
    for (int i = 0; i < n; i++)
        s->busy[done[i] - s->op] = 0;
    return n < 0 ? -1 : 0;
}

static int reg_buf(fh_fab_t *f, void *arg)
{
    side_t *s = arg;
    return fh_fab_reg(f, s->buf, s->size, FI_WRITE | FI_REMOTE_WRITE, &s->mr);
}

/* Wait for the peer's buffer (a control message). */
static int get_peer(side_t *s)
{
    for (uint64_t t0 = mono_ns(); mono_ns() - t0 < 5000000000ull;) {
        fh_fab_rx_t rx[16];
        int n = fh_fab_poll_rx(&s->f, rx, 16);
        if (n < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            if (!rx[i].write && rx[i].len >= sizeof s->peer)
                memcpy(&s->peer, rx[i].msg, sizeof s->peer);
            s->arrived += rx[i].write;
            fh_fab_rx_done(&s->f, &rx[i]);
        }
        if (s->peer.type == 1)
            return 0;
    }
    return fh_fab_fail("no buffer from the peer within 5 s");
}

static int send_buf(side_t *s)
{
    peer_buf_t m = { 1, 0, s->mr.addr, s->mr.key };
    for (int tries = 0; tries < 1000000; tries++) {
        int rc = fh_fab_send(&s->f, &m, sizeof m);
        if (!rc)
            return 0;
        if (rc != -FI_EAGAIN)
            return -1;
        fh_fab_op_t *done[16];
        fh_fab_poll_tx(&s->f, done, 16);
    }
    return fh_fab_fail("control send: no free slot");
}

/* The peer's next write (its completion on our side). */
static int wait_write(side_t *s)
{
    while (!s->arrived) {
        fh_fab_rx_t rx[16];
        int n = fh_fab_poll_rx(&s->f, rx, 16);
        if (n < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            s->arrived += rx[i].write;
            fh_fab_rx_done(&s->f, &rx[i]);
        }
    }
    s->arrived--;
    return 0;
}

/* Unless first: wait for the peer's write (its completion on our side); then one write of the whole buffer. */
static int write_and_wait(side_t *s, uint64_t data, int first)
{
    if (!first && wait_write(s))
        return -1;
    int k = (int)(data & 15);
    while (s->busy[k]) /* its write 16 rounds ago not completed yet */
        if (reap(s))
            return -1;
    for (;;) {
        int rc = fh_fab_write(&s->f, s->buf, s->size, &s->mr, s->peer.addr, s->peer.key, data, &s->op[k]);
        if (!rc)
            break;
        if (rc != -FI_EAGAIN || reap(s))
            return -1;
    }
    s->busy[k] = 1;
    return reap(s);
}

int main(int argc, char **argv)
{
    const char *provider = "tcp", *port = "0";
    char portbuf[16];
    size_t size = 1104; /* a record of 32 messages of the synthetic day, with its frame header */
    long rounds = 20000, warmup = 1000;
    int core_a = 0, core_b = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--provider") && i + 1 < argc)
            provider = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--cores") && i + 1 < argc && sscanf(argv[i + 1], "%d,%d", &core_a, &core_b) == 2)
            i++;
        else {
            fprintf(stderr, "usage: %s [--provider tcp|verbs|auto] [--port N] [--size BYTES] [--rounds N] [--warmup N] [--cores A,B (-1: any)]\n",
                    argv[0]);
            return 2;
        }
    }
    if (size < 8 || size > (1u << 20) || rounds < 1 || rounds > 10000000 || warmup < 0 || warmup > 1000000) {
        fprintf(stderr, "fh-bench-fabric-pingpong: --size 8..1048576, --rounds 1..10000000, --warmup 0..1000000 expected\n");
        return 2;
    }
    if (!strcmp(port, "0")) {
        snprintf(portbuf, sizeof portbuf, "%d", 30000 + getpid() % 20000);
        port = portbuf;
    }
    int sync[2];
    if (pipe(sync))
        return 2;
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 2;
    }
    side_t s;
    memset(&s, 0, sizeof s);
    s.size = size;
    if (posix_memalign((void **)&s.buf, 4096, size)) {
        fprintf(stderr, "fh-bench-fabric-pingpong: out of memory\n");
        return 2;
    }
    memset(s.buf, 0xab, size);
    long total = rounds + warmup;
    if (child == 0) { /* B: listens, answers every write with one of its own */
        close(sync[0]);
        if (pin(core_b))
            _exit(2);
        if (fh_fab_listen(&s.f, provider, "127.0.0.1", port)) {
            fprintf(stderr, "fh-bench-fabric-pingpong: %s\n", fh_fab_err());
            _exit(3);
        }
        if (write(sync[1], "l", 1) != 1)
            _exit(2);
        if (fh_fab_accept(&s.f, 10000, reg_buf, &s) || send_buf(&s) || get_peer(&s)) {
            fprintf(stderr, "fh-bench-fabric-pingpong: %s\n", fh_fab_err());
            _exit(3);
        }
        for (long r = 0; r < total; r++)
            if (write_and_wait(&s, (uint64_t)r, 0)) {
                fprintf(stderr, "fh-bench-fabric-pingpong: B: %s\n", fh_fab_err());
                _exit(3);
            }
        usleep(100000); /* the last write on its way before the connection closes */
        fh_fab_dereg(&s.mr);
        fh_fab_close(&s.f);
        _exit(0);
    }
    close(sync[1]);
    char c;
    if (read(sync[0], &c, 1) != 1 || pin(core_a)) {
        kill(child, SIGTERM);
        return 3;
    }
    int rc = fh_fab_connect(&s.f, provider, "127.0.0.1", port, 10000);
    if (!rc)
        rc = reg_buf(&s.f, &s);
    if (!rc)
        rc = get_peer(&s);
    if (!rc)
        rc = send_buf(&s);
    if (rc) {
        fprintf(stderr, "fh-bench-fabric-pingpong: %s\n", fh_fab_err());
        kill(child, SIGTERM);
        return 3;
    }
    uint64_t *oneway = calloc((size_t)rounds, sizeof *oneway);
    if (!oneway)
        return 2;
    for (long r = 0; r < total; r++) { /* A's write r, then B's answer */
        uint64_t t = mono_ns();
        if (write_and_wait(&s, (uint64_t)r, 1)) {
            fprintf(stderr, "fh-bench-fabric-pingpong: A: %s\n", fh_fab_err());
            kill(child, SIGTERM);
            return 3;
        }
        if (wait_write(&s)) {
            fprintf(stderr, "fh-bench-fabric-pingpong: A: %s\n", fh_fab_err());
            kill(child, SIGTERM);
            return 3;
        }
        if (r >= warmup)
            oneway[r - warmup] = (mono_ns() - t) / 2;
    }
    int st = 0;
    waitpid(child, &st, 0);
    qsort(oneway, (size_t)rounds, sizeof *oneway, cmp_u64);
#define PCT(q) ((double)oneway[(size_t)((double)(rounds - 1) * (q))] / 1000.0)
    printf("{\"provider\": \"%s\", \"size\": %zu, \"rounds\": %ld, \"cores\": [%d, %d], \"one_way_us_p50\": %.2f, "
           "\"one_way_us_p90\": %.2f, \"one_way_us_p99\": %.2f, \"one_way_us_p999\": %.2f, \"one_way_us_max\": %.2f}\n",
           s.f.provider, size, rounds, core_a, core_b, PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), PCT(1.0));
    fh_fab_dereg(&s.mr);
    fh_fab_close(&s.f);
    free(oneway);
    free(s.buf);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 3;
}
