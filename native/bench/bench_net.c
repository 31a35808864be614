/* fh-bench-net [MIX] [PASSES] [REPEATS]: the cost of fh_net_parse (fh/net.h) on a frame mix built in memory.
 *
 * MIX "mix" (default): 4,096 frames of two feed lines (233.54.12.111:26477 and 233.49.196.111:26477), half of
 * them behind one 802.1Q tag, with 3% UDP to another group and 2% not UDP (IGMP reports with the Router
 * Alert option, TCP); "a": the A line only, untagged, as `fh bench dataplane` sends it. Payloads of 60 to
 * 1,400 bytes (most about 300: MoldUDP64 at MTU 340); each frame at the start of its own 2 KiB buffer, as
 * an mbuf's data. The order is a fixed pseudo-random one (seed 1), so the figures are comparable between
 * builds.
 *
 * Each repeat (REPEATS, default 5) parses the set PASSES times (default 2,000) and prints ns and TSC cycles
 * per frame (min and median over the repeats) as one JSON object, with the accepted count and the drops.
 * bench/callgrind_net.sh runs it as `fh-bench-net MIX 10 1` under
 * `valgrind --tool=callgrind --toggle-collect=fh_net_parse` for the instructions per frame, the repeatable
 * figure on a shared machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh/net.h"
#include "bench_util.h"

#define NFRAMES 4096
#define STRIDE  2048

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* One Ethernet II frame: ntags 802.1Q tags, IPv4 with ihl 32-bit words of header, protocol proto, then
 * plen bytes (a UDP header and payload when proto is 17). Returns the frame's length. */
static size_t frame(uint8_t *b, int ntags, uint32_t src, uint32_t dst, uint16_t dport, uint8_t proto, int ihl,
                    size_t plen)
{
    static const uint8_t mac[12] = { 0x01, 0x00, 0x5e, 0x36, 0x0c, 0x6f, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
    memcpy(b, mac, 12);
    size_t off = 12;
    for (int t = 0; t < ntags; t++, off += 4) {
        fh_put_be16(b + off, 0x8100);
        fh_put_be16(b + off + 2, (uint16_t)(100 + t));
    }
    fh_put_be16(b + off, 0x0800);
    uint8_t *ip = b + off + 2;
    size_t hl = (size_t)ihl * 4, total = hl + plen;
    memset(ip, 0, hl);
    ip[0] = (uint8_t)(0x40 | ihl);
    fh_put_be16(ip + 2, (uint16_t)total);
    fh_put_be16(ip + 4, (uint16_t)rnd());
    fh_put_be16(ip + 6, 0x4000); /* DF */
    ip[8] = 32;
    ip[9] = proto;
    fh_put_be32(ip + 12, src);
    fh_put_be32(ip + 16, dst);
    if (ihl > 5)
        fh_put_be32(ip + 20, 0x94040000); /* Router Alert */
    uint8_t *p = ip + hl;
    memset(p, 0xab, plen);
    if (proto == 17) {
        fh_put_be16(p, 40000);
        fh_put_be16(p + 2, dport);
        fh_put_be16(p + 4, (uint16_t)plen);
        fh_put_be16(p + 6, 0);
    }
    size_t len = off + 2 + total;
    return len < 60 ? 60 : len; /* padded to the Ethernet minimum */
}

int main(int argc, char **argv)
{
    const char *mix = argc > 1 ? argv[1] : "mix";
    long passes = argc > 2 ? atol(argv[2]) : 2000;
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    int only_a = strcmp(mix, "a") == 0;
    if ((!only_a && strcmp(mix, "mix")) || passes < 1 || passes > 1000000 || repeats < 1 || repeats > 1000) {
        fprintf(stderr, "usage: %s [mix|a] [PASSES 1..1000000] [REPEATS 1..1000]\n", argv[0]);
        return 2;
    }
    const uint32_t src = 0x0a000001, grp_a = 0xe9360c6f, grp_b = 0xe931c46f; /* 233.54.12.111, 233.49.196.111 */
    fh_net_t net;
    memset(&net, 0, sizeof net);
    if (fh_net_add_line(&net, grp_a, 26477, 0) < 0 || fh_net_add_line(&net, grp_b, 26477, 0) < 0) {
        fprintf(stderr, "%s: %s\n", argv[0], fh_errmsg());
        return 2;
    }
    uint8_t *buf = aligned_alloc(64, (size_t)NFRAMES * STRIDE);
    static size_t len[NFRAMES];
    if (!buf) {
        perror("aligned_alloc");
        return 2;
    }
    for (int i = 0; i < NFRAMES; i++) {
        uint8_t *b = buf + (size_t)i * STRIDE;
        uint32_t r = rnd() % 100;
        size_t plen = 8 + (rnd() % 10 ? 270 + rnd() % 60 : 52 + rnd() % 1350); /* UDP header + payload */
        int tag = only_a ? 0 : (int)(rnd() & 1);
        if (only_a || r >= 5)
            len[i] = frame(b, tag, src, !only_a && (rnd() & 1) ? grp_b : grp_a, 26477, 17, 5, plen);
        else if (r >= 2) /* another group on the same port */
            len[i] = frame(b, tag, src, 0xe9360c70, 26477, 17, 5, plen);
        else if (r >= 1) /* an IGMPv2 report: IP options, not UDP */
            len[i] = frame(b, tag, 0x0a000002, grp_a, 0, 2, 6, 8);
        else /* TCP */
            len[i] = frame(b, tag, src, 0x0a000003, 0, 6, 5, 40);
    }

    double *ns = calloc((size_t)repeats, sizeof *ns), *cyc = calloc((size_t)repeats, sizeof *cyc);
    uint64_t sink = 0, accepted = 0;
    for (int rep = 0; rep < repeats; rep++) {
        fh_net_pkt_t pkt;
        uint64_t t0 = now_ns(), c0 = __builtin_ia32_rdtsc();
        for (long p = 0; p < passes; p++) {
            for (int i = 0; i < NFRAMES; i++) {
                int line = fh_net_parse(&net, buf + (size_t)i * STRIDE, len[i], &pkt);
                if (line >= 0) {
                    sink += pkt.len + (uint64_t)line;
                    accepted++;
                }
            }
        }
        uint64_t c1 = __builtin_ia32_rdtsc(), t1 = now_ns();
        ns[rep] = (double)(t1 - t0) / ((double)passes * NFRAMES);
        cyc[rep] = (double)(c1 - c0) / ((double)passes * NFRAMES);
    }
    /* sort for min and median */
    for (int i = 1; i < repeats; i++)
        for (int j = i; j > 0 && ns[j] < ns[j - 1]; j--) {
            double t = ns[j]; ns[j] = ns[j - 1]; ns[j - 1] = t;
        }
    for (int i = 1; i < repeats; i++)
        for (int j = i; j > 0 && cyc[j] < cyc[j - 1]; j--) {
            double t = cyc[j]; cyc[j] = cyc[j - 1]; cyc[j - 1] = t;
        }
    printf("{\"mix\": \"%s\", \"frames\": %llu, \"accepted\": %llu, \"ns_per_frame_min\": %.2f, "
           "\"ns_per_frame_median\": %.2f, \"tsc_per_frame_min\": %.1f, \"tsc_per_frame_median\": %.1f, "
           "\"sink\": %llu, \"drops\": {",
           mix, (unsigned long long)net.frames, (unsigned long long)accepted, ns[0], ns[repeats / 2], cyc[0],
           cyc[repeats / 2], (unsigned long long)sink);
    for (int i = 0; i < FH_NET_DROP_COUNT; i++)
        printf("%s\"%s\": %llu", i ? ", " : "", fh_net_drop_name(i), (unsigned long long)net.drops[i]);
    printf("}}\n");
    free(ns);
    free(cyc);
    free(buf);
    return 0;
}
