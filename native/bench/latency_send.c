/* fh-latency-send: MoldUDP64 frames sent on one interface at a fixed rate in ITCH messages a second, for
 * `fh bench latency` (handler/bench/latency.py, bench/latency.md).
 *
 *   fh-latency-send --iface IF --rate MSGS_PER_S (--itch DAY [--per-packet K] [--mtu N] [--group A.B.C.D]
 *                   [--port P] [--session S] | --pcap FILE) [--messages N] [--cpu C] [--realtime]
 *
 * Input: a daily ITCH file, packed here into MoldUDP64 datagrams of K messages (default: as many as the MTU
 * holds) on one multicast line, or a classic pcap whose Ethernet frames are sent as captured, every line of it
 * (a frame's messages are those it is the first to carry: an A/B capture's B copies carry none and follow their
 * A). --messages stops after the frame that reaches N messages. Every frame
 * is built before the first one leaves, so sending is only waiting and the send call.
 *
 * Pacing holds an absolute schedule in messages: the frame whose first message is the m-th of the stream is
 * due at m / rate seconds after the start, so the message rate is exact whatever the packing. The sender
 * spins on CLOCK_MONOTONIC for the last 200 us before a frame (sleeps before that); every frame already due
 * when it looks goes in one sendmmsg (at most 64), so a sender held back catches up without changing the
 * schedule. How late each frame left is kept in fh/shm.h's log-linear histogram.
 *
 * The socket: AF_PACKET, SOCK_RAW, protocol 0 (sends only), PACKET_QDISC_BYPASS (no queueing discipline: the
 * frame goes to the driver, here veth, which hands it to its peer in the same call). A full peer backlog
 * (ENOBUFS) is retried (100,000 times in all, then the frame counts as an error by its errno name).
 *
 * One JSON line on stdout at the end: frames and messages scheduled and sent, bytes, errors, elapsed and
 * scheduled time, achieved and requested rates, lateness p50/p99/p99.9/max, send calls. Errors: one line on
 * stderr naming the cause, exit 2. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fh/shm.h" /* the latency histogram's buckets: fh_shm_lat_index, fh_shm_lat_upper */
#include "bench_util.h"

#define BATCH 64
#define SPIN_NS 200000ull
#define ENOBUFS_TRIES 100000
#define HDR (14 + 20 + 8) /* Ethernet, IPv4, UDP */
#define MOLD_HDR 20

typedef struct frame {
    uint32_t off, len; /* in the frame buffer */
    uint32_t msgs;     /* ITCH messages it carries */
    uint64_t due;      /* ns after the start */
} frame_t;

typedef struct frames {
    uint8_t *buf;
    size_t used, cap;
    frame_t *f;
    size_t n, ncap;
    uint64_t msgs;
} frames_t;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fh-latency-send: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint8_t *frame_room(frames_t *F, size_t len)
{
    if (F->used + len > F->cap) {
        size_t cap = F->cap ? F->cap * 2 : 1 << 20;
        while (cap < F->used + len)
            cap *= 2;
        if (!(F->buf = realloc(F->buf, cap)))
            die("out of memory for %zu bytes of frames", cap);
        F->cap = cap;
    }
    if (F->n == F->ncap) {
        F->ncap = F->ncap ? F->ncap * 2 : 4096;
        if (!(F->f = realloc(F->f, F->ncap * sizeof *F->f)))
            die("out of memory for %zu frames", F->ncap);
    }
    return F->buf + F->used;
}

static void frame_add(frames_t *F, size_t len, uint32_t msgs)
{
    F->f[F->n++] = (frame_t){ .off = (uint32_t)F->used, .len = (uint32_t)len, .msgs = msgs };
    F->used += len;
    F->msgs += msgs;
}

static const uint8_t *map_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size == 0)
        die("%s: %s", path, st.st_size == 0 ? "empty file" : strerror(errno));
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        die("%s: mmap: %s", path, strerror(errno));
    *len = (size_t)st.st_size;
    return p;
}

static uint16_t ip_checksum(const uint8_t *h)
{
    uint32_t s = 0;
    for (int i = 0; i < 20; i += 2)
        s += (uint32_t)(h[i] << 8 | h[i + 1]);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

/* --itch: the day's messages packed K to a datagram (and no more than the MTU holds), line group:port. */
static void frames_from_itch(frames_t *F, const char *path, uint32_t per_packet, uint32_t mtu, uint32_t group,
                             uint16_t port, const char *session, uint64_t limit)
{
    size_t len;
    const uint8_t *d = map_file(path, &len);
    const size_t room = mtu - 20 - 8 - MOLD_HDR; /* the MoldUDP64 blocks' room in one datagram */
    uint8_t tpl[HDR];
    memset(tpl, 0, sizeof tpl);
    const uint8_t mac[6] = { 0x01, 0x00, 0x5e, (uint8_t)((group >> 16) & 0x7f), (uint8_t)(group >> 8), (uint8_t)group };
    const uint8_t src[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
    memcpy(tpl, mac, 6);
    memcpy(tpl + 6, src, 6);
    put16(tpl + 12, 0x0800);
    uint8_t *ip = tpl + 14;
    ip[0] = 0x45, ip[6] = 0x40 /* DF */, ip[8] = 16 /* TTL */, ip[9] = 17;
    const uint32_t saddr = 0x0a000001; /* 10.0.0.1, as fh pcap synth's lines */
    for (int i = 0; i < 4; i++)
        ip[12 + i] = (uint8_t)(saddr >> (24 - 8 * i)), ip[16 + i] = (uint8_t)(group >> (24 - 8 * i));
    put16(tpl + 34, 49152);
    put16(tpl + 36, port);
    uint64_t seq = 1;
    uint16_t ident = 0;
    size_t pos = 0;
    while (pos + 2 <= len && (!limit || F->msgs < limit)) {
        /* the blocks of this datagram: up to per_packet whole messages that fit the room */
        size_t start = pos, bytes = 0;
        uint32_t k = 0;
        while (pos + 2 <= len && k < per_packet) {
            size_t m = (size_t)d[pos] << 8 | d[pos + 1];
            if (m == 0 || pos + 2 + m > len)
                die("%s: a message at byte %zu is %s: not a daily ITCH file, or cut short", path, pos,
                    m == 0 ? "empty" : "cut off by the end of the file");
            if (bytes + 2 + m > room) {
                if (k == 0)
                    die("%s: a %zu-byte message at byte %zu does not fit a datagram at MTU %u", path, m, pos, mtu);
                break;
            }
            bytes += 2 + m, pos += 2 + m, k++;
            if (limit && F->msgs + k >= limit)
                break;
        }
        size_t flen = HDR + MOLD_HDR + bytes;
        uint8_t *f = frame_room(F, flen);
        memcpy(f, tpl, HDR);
        put16(f + 14 + 2, (uint16_t)(20 + 8 + MOLD_HDR + bytes));
        put16(f + 14 + 4, ++ident);
        put16(f + 14 + 10, 0);
        put16(f + 14 + 10, ip_checksum(f + 14));
        put16(f + 38, (uint16_t)(8 + MOLD_HDR + bytes));
        uint8_t *mold = f + HDR;
        memset(mold, ' ', 10);
        memcpy(mold, session, strnlen(session, 10));
        for (int i = 0; i < 8; i++)
            mold[10 + i] = (uint8_t)(seq >> (56 - 8 * i));
        put16(mold + 18, (uint16_t)k);
        memcpy(mold + MOLD_HDR, d + start, bytes);
        frame_add(F, flen, k);
        seq += k;
    }
    if (pos + 2 > len && pos != len)
        die("%s: one byte left over at the end: not a daily ITCH file", path);
}

/* --pcap: the frames as captured. A frame's messages are the MoldUDP64 messages it is the first to carry: those
 * beyond the highest sequence seen so far in its session (a B line's copy, a duplicate, a heartbeat, an end of
 * session and anything that is not IPv4 UDP with a MoldUDP64 header carry none, and leave with the frame
 * before them). A new session starts counting anew. */
typedef struct mold_seen {
    uint8_t session[10];
    uint64_t next; /* one past the highest sequence seen */
} mold_seen_t;

static uint32_t mold_new(mold_seen_t *seen, const uint8_t *f, size_t len)
{
    size_t o = 12;
    uint16_t type;
    for (;;) {
        if (o + 2 > len)
            return 0;
        type = (uint16_t)(f[o] << 8 | f[o + 1]);
        if (type != 0x8100 && type != 0x88a8)
            break;
        o += 4;
    }
    o += 2;
    if (type != 0x0800 || o + 20 > len || (f[o] >> 4) != 4 || f[o + 9] != 17)
        return 0;
    o += (size_t)(f[o] & 15) * 4 + 8;
    if (o + MOLD_HDR > len)
        return 0;
    const uint8_t *m = f + o;
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = seq << 8 | m[10 + i];
    uint32_t c = (uint32_t)(m[18] << 8 | m[19]);
    if (c == 0xffff || c == 0 || seq == 0)
        return seq == 0 && c != 0xffff ? c : 0; /* sequence 0: applied unsequenced, every copy */
    if (memcmp(seen->session, m, 10)) {
        memcpy(seen->session, m, 10);
        seen->next = 0;
    }
    uint64_t end = seq + c;
    if (end <= seen->next)
        return 0;
    uint32_t n = (uint32_t)(end - (seq > seen->next ? seq : seen->next));
    seen->next = end;
    return n;
}

static void frames_from_pcap(frames_t *F, const char *path, uint64_t limit)
{
    size_t len;
    const uint8_t *d = map_file(path, &len);
    if (len < 24)
        die("%s: shorter than a pcap header", path);
    uint32_t magic;
    memcpy(&magic, d, 4);
    bool swap;
    if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)
        swap = false;
    else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
        swap = true;
    else
        die("%s: not a classic pcap (magic %08x): convert it with `editcap -F pcap`", path, magic);
    uint32_t linktype;
    memcpy(&linktype, d + 20, 4);
    if (swap)
        linktype = __builtin_bswap32(linktype);
    if (linktype != 1)
        die("%s: link type %u is not Ethernet: its frames cannot be sent as they are", path, linktype);
    size_t pos = 24;
    mold_seen_t seen = { .next = 0 };
    memset(seen.session, 0, sizeof seen.session);
    while (pos + 16 <= len && (!limit || F->msgs < limit)) {
        uint32_t incl;
        memcpy(&incl, d + pos + 8, 4);
        if (swap)
            incl = __builtin_bswap32(incl);
        if (pos + 16 + incl > len)
            break; /* a record cut off at the end ends the capture, as in handler.net.pcapfile */
        uint8_t *f = frame_room(F, incl);
        memcpy(f, d + pos + 16, incl);
        frame_add(F, incl, mold_new(&seen, f, incl));
        pos += 16 + incl;
    }
}

static uint64_t parse_rate(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K')
        v *= 1e3, end++;
    else if (*end == 'M' || *end == 'm')
        v *= 1e6, end++;
    if (*end || !(v >= 1 && v <= 1e9))
        die("--rate %s: a rate in messages a second, 1 to 1e9 (100k, 1M, 5M)", s);
    return (uint64_t)(v + 0.5);
}

static void usage(void)
{
    fputs("usage: fh-latency-send --iface IF --rate MSGS_PER_S (--itch DAY [--per-packet K] [--mtu N] [--group A.B.C.D]"
          " [--port P] [--session S] | --pcap FILE) [--messages N] [--cpu C] [--realtime]\n",
          stderr);
    exit(2);
}

static uint64_t pct(const uint64_t *h, uint64_t total, double p)
{
    uint64_t want = (uint64_t)(p * (double)total + 0.5), seen = 0;
    if (!want)
        want = 1;
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++)
        if ((seen += h[i]) >= want)
            return fh_shm_lat_upper(i);
    return 0;
}

int main(int argc, char **argv)
{
    const char *iface = NULL, *itch = NULL, *pcap = NULL, *session = "FHSYNTH001";
    uint64_t rate = 0, limit = 0;
    uint32_t per_packet = 0xfffe, mtu = 1500, group = 0xe9360c6f; /* 233.54.12.111: fh pcap synth's A line */
    uint16_t port = 26477;
    int cpu = -1;
    bool realtime = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && (v ? (i++, 1) : (die("%s: needs a value", name), 0)))
        if (ARG("--iface"))
            iface = v;
        else if (ARG("--rate"))
            rate = parse_rate(v);
        else if (ARG("--itch"))
            itch = v;
        else if (ARG("--pcap"))
            pcap = v;
        else if (ARG("--messages"))
            limit = strtoull(v, NULL, 10);
        else if (ARG("--per-packet"))
            per_packet = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--mtu"))
            mtu = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--port"))
            port = (uint16_t)strtoul(v, NULL, 10);
        else if (ARG("--session"))
            session = v;
        else if (ARG("--cpu"))
            cpu = atoi(v);
        else if (ARG("--group")) {
            struct in_addr g;
            if (inet_pton(AF_INET, v, &g) != 1 || (ntohl(g.s_addr) >> 28) != 0xe)
                die("--group %s: an IPv4 multicast address (224.0.0.0/4)", v);
            group = ntohl(g.s_addr);
        } else if (!strcmp(a, "--realtime"))
            realtime = true;
        else
            usage();
#undef ARG
    }
    if (!iface || !rate || !!itch == !!pcap)
        usage();
    if (per_packet < 1 || per_packet > 0xfffe)
        die("--per-packet %u: 1 to 65534 messages a datagram", per_packet);
    if (mtu < 20 + 8 + MOLD_HDR + 2 + 64 || mtu > 9000)
        die("--mtu %u: 114 to 9000 bytes", mtu);
    if (bench_pin("fh-latency-send", cpu))
        exit(2);
    if (realtime) {
        struct sched_param sp = { .sched_priority = 10 };
        if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
            die("--realtime: SCHED_FIFO: %s (needs root or CAP_SYS_NICE)", strerror(errno));
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    frames_t F = { 0 };
    if (itch)
        frames_from_itch(&F, itch, per_packet, mtu, group, port, session, limit);
    else
        frames_from_pcap(&F, pcap, limit);
    if (!F.n)
        die("%s: no frame to send", itch ? itch : pcap);
    uint64_t m = 0;
    for (size_t i = 0; i < F.n; i++) {
        F.f[i].due = (uint64_t)((double)m * 1e9 / (double)rate);
        m += F.f[i].msgs;
    }
    const uint64_t scheduled = (uint64_t)((double)F.msgs * 1e9 / (double)rate); /* the stream's length */

    int s = socket(AF_PACKET, SOCK_RAW, 0);
    if (s < 0)
        die("AF_PACKET socket: %s (needs root or CAP_NET_RAW)", strerror(errno));
    int one = 1;
    setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one); /* best effort: older kernels lack it */
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(iface) };
    if (!sll.sll_ifindex)
        die("interface %s: %s: is it in this network namespace?", iface, strerror(errno));
    if (bind(s, (struct sockaddr *)&sll, sizeof sll) < 0)
        die("interface %s: bind: %s", iface, strerror(errno));

    static uint64_t late[FH_SHM_LAT_BUCKETS];
    static struct mmsghdr mm[BATCH];
    static struct iovec iov[BATCH];
    uint64_t late_max = 0, sent = 0, sent_msgs = 0, bytes = 0, calls = 0, retries = 0, err_count = 0;
    int err_no[8] = { 0 };
    uint64_t err_n[8] = { 0 };
    const uint64_t t0 = mono_ns() + 1000000; /* 1 ms to settle */
    for (size_t i = 0; i < F.n;) {
        uint64_t target = t0 + F.f[i].due, now = mono_ns();
        if (now < target) {
            if (target - now > SPIN_NS) {
                uint64_t nap = target - now - SPIN_NS;
                struct timespec ts = { (time_t)(nap / 1000000000ull), (long)(nap % 1000000000ull) };
                nanosleep(&ts, NULL);
            }
            while ((now = mono_ns()) < target)
                ;
        }
        size_t k = 0;
        while (k < BATCH && i + k < F.n && t0 + F.f[i + k].due <= now) {
            uint64_t l = now - (t0 + F.f[i + k].due);
            late[fh_shm_lat_index(l)]++;
            if (l > late_max)
                late_max = l;
            iov[k] = (struct iovec){ F.buf + F.f[i + k].off, F.f[i + k].len };
            mm[k].msg_hdr = (struct msghdr){ .msg_iov = &iov[k], .msg_iovlen = 1 };
            k++;
        }
        size_t done = 0;
        unsigned tries = 0;
        while (done < k) {
            int r = sendmmsg(s, mm + done, (unsigned)(k - done), 0);
            calls++;
            if (r > 0) {
                for (int j = 0; j < r; j++) {
                    const frame_t *fr = &F.f[i + done + (size_t)j];
                    sent++, sent_msgs += fr->msgs, bytes += fr->len;
                }
                done += (size_t)r;
                continue;
            }
            int e = r < 0 ? errno : EIO;
            if ((e == ENOBUFS || e == EAGAIN || e == EINTR) && retries < ENOBUFS_TRIES && tries++ < 1000) {
                retries++;
                sched_yield();
                continue;
            }
            /* the frame at `done` is given up: counted by errno */
            int slot = 0;
            while (slot < 7 && err_no[slot] && err_no[slot] != e)
                slot++;
            err_no[slot] = e, err_n[slot]++, err_count++;
            done++, tries = 0;
        }
        i += k;
    }
    uint64_t end = mono_ns();
    close(s);
    double elapsed = (double)(end - t0) / 1e9;
    uint64_t nlate = 0;
    for (unsigned i = 0; i < FH_SHM_LAT_BUCKETS; i++)
        nlate += late[i];
    printf("{\"iface\": \"%s\", \"input\": \"%s\", \"rate\": %" PRIu64 ", \"frames\": %zu, \"messages\": %" PRIu64
           ", \"sent\": %" PRIu64 ", \"sent_messages\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"send_calls\": %" PRIu64
           ", \"enobufs_retries\": %" PRIu64 ", \"errors\": {",
           iface, itch ? itch : pcap, rate, F.n, F.msgs, sent, sent_msgs, bytes, calls, retries);
    for (int j = 0; j < 8 && err_no[j]; j++)
        printf("%s\"%s\": %" PRIu64, j ? ", " : "", strerrorname_np(err_no[j]) ? strerrorname_np(err_no[j]) : "?",
               err_n[j]);
    printf("}, \"error_frames\": %" PRIu64 ", \"elapsed_s\": %.6f, \"scheduled_s\": %.6f, \"achieved_msgs_per_s\": %.1f, "
           "\"achieved_pps\": %.1f, \"messages_per_frame\": %.3f, \"late_ns\": {\"count\": %" PRIu64 ", \"p50\": %" PRIu64
           ", \"p99\": %" PRIu64 ", \"p99.9\": %" PRIu64 ", \"max\": %" PRIu64 "}}\n",
           err_count, elapsed, (double)scheduled / 1e9, elapsed > 0 ? (double)sent_msgs / elapsed : 0.0,
           elapsed > 0 ? (double)sent / elapsed : 0.0, (double)F.msgs / (double)F.n, nlate, pct(late, nlate, 0.5),
           pct(late, nlate, 0.99), pct(late, nlate, 0.999), late_max);
    free(F.buf);
    free(F.f);
    return 0; /* frames given up are in "errors": the caller judges */
}
