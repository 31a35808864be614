/* fh_net_parse (fh/net.h): each drop cause, VLAN / QinQ, IPv4 options, fragments, frames cut at every
 * header boundary, UDP lengths, source-specific lines, the line limit; then 1,000,000 fuzzed frames
 * against a plain reference parser written from the contract; then the fast paths (fh_net_parse_fast, and
 * fh_net_parse's) against the full parser (fh_net_parse_full) on mutated and fuzzed frames. Exit 0 on success,
 * 1 on failure. */
#include <stdlib.h>

#include "fh/net.h"
#include "msg.h"
#include "net_ref.h"

/* ---- frames ---- */

typedef struct spec {
    int ntags;
    uint16_t tag_type[4], tag_vid[4];
    uint16_t ethertype;  /* after the tags */
    int ihl;             /* 32-bit words */
    uint8_t version, proto;
    uint16_t frag;       /* flags + offset field */
    uint32_t src, dst;
    uint16_t sport, dport;
    size_t payload;      /* UDP payload bytes */
    int total_adj, ulen_adj; /* added to the true IPv4 total length / UDP length */
    size_t pad;          /* bytes after the IPv4 datagram (Ethernet padding) */
} spec_t;

static spec_t ours(void)
{
    return (spec_t){ .ethertype = 0x0800, .ihl = 5, .version = 4, .proto = 17, .frag = 0x4000,
                     .src = 0x0a000001, .dst = 0xe9360c6f, .sport = 40000, .dport = 26477, .payload = 100 };
}

/* Writes the frame into b (at least 1600 bytes); returns its length. */
static size_t build(uint8_t *b, const spec_t *s)
{
    memset(b, 0x5a, 1600);
    for (int i = 0; i < 12; i++)
        b[i] = (uint8_t)i;
    size_t off = 12;
    for (int t = 0; t < s->ntags; t++, off += 4) {
        fh_put_be16(b + off, s->tag_type[t] ? s->tag_type[t] : 0x8100);
        fh_put_be16(b + off + 2, s->tag_vid[t]);
    }
    fh_put_be16(b + off, s->ethertype);
    uint8_t *ip = b + off + 2;
    size_t hl = (size_t)s->ihl * 4, total = hl + 8 + s->payload;
    memset(ip, 0, hl > 20 ? hl : 20);
    ip[0] = (uint8_t)(s->version << 4 | (s->ihl & 15));
    fh_put_be16(ip + 2, (uint16_t)(total + s->total_adj));
    fh_put_be16(ip + 6, s->frag);
    ip[8] = 64;
    ip[9] = s->proto;
    fh_put_be32(ip + 12, s->src);
    fh_put_be32(ip + 16, s->dst);
    for (size_t i = 20; i < hl; i++)
        ip[i] = 1; /* NOP options */
    uint8_t *udp = ip + hl;
    fh_put_be16(udp, s->sport);
    fh_put_be16(udp + 2, s->dport);
    fh_put_be16(udp + 4, (uint16_t)(8 + s->payload + s->ulen_adj));
    fh_put_be16(udp + 6, 0);
    for (size_t i = 0; i < s->payload; i++)
        udp[8 + i] = (uint8_t)(i * 7);
    return off + 2 + total + s->pad;
}

/* ---- one frame through both ---- */

typedef struct pair {
    fh_net_t net;
    ref_line_t lines[FH_NET_MAX_LINES];
    int nlines;
    uint64_t drops[FH_NET_DROP_COUNT];
} pair_t;

static void pair_init(pair_t *p)
{
    memset(p, 0, sizeof *p);
}

static void pair_add(pair_t *p, uint32_t dst, uint16_t port, uint32_t src)
{
    CHECK_EQ(fh_net_add_line(&p->net, dst, port, src), p->nlines);
    p->lines[p->nlines++] = (ref_line_t){ dst, port, src };
}

static long mismatches;

/* Parses f[0..len) (copied to a buffer of exactly len bytes, so that ASan sees any read past the end) with
 * both; returns fh_net_parse's result and stores the drop cause (or -1) in *cause. */
static int check_one(pair_t *p, const uint8_t *f, size_t len, int *cause)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, f, len);
    fh_net_pkt_t got, want;
    memset(&got, 0xee, sizeof got);
    memset(&want, 0xee, sizeof want);
    uint64_t before[FH_NET_DROP_COUNT], frames = p->net.frames;
    memcpy(before, p->net.drops, sizeof before);
    int rc_cause = -1;
    int r = fh_net_parse(&p->net, copy, len, &got);
    int w = ref_parse(p->lines, p->nlines, copy, len, &rc_cause, &want);
    int changed = -1, nchanged = 0;
    for (int i = 0; i < FH_NET_DROP_COUNT; i++) {
        if (p->net.drops[i] != before[i]) {
            nchanged++;
            changed = i;
            if (p->net.drops[i] != before[i] + 1)
                nchanged += 100;
        }
    }
    /* a frame of ours: the same line; a drop: the reference's cause, in the return value and in the counter */
    int bad = (w >= 0 ? r != w : r != FH_NET_DROPPED(rc_cause)) || p->net.frames != frames + 1;
    if (w >= 0 && r == w)
        bad |= nchanged != 0 || got.payload - copy != want.payload - copy || got.len != want.len ||
               got.line != want.line || got.src_ip != want.src_ip || got.vlan != want.vlan;
    else if (w < 0)
        bad |= nchanged != 1 || changed != rc_cause;
    if (bad && mismatches++ < 10) {
        fprintf(stderr, "mismatch on a %zu-byte frame: fh_net_parse %d (drop %s, counted %s), reference %d (drop %s)\n",
                len, r, r < 0 ? fh_net_drop_name(fh_net_drop_cause(r)) : "-",
                changed >= 0 ? fh_net_drop_name(changed) : "-", w, w < 0 ? fh_net_drop_name(rc_cause) : "-");
        for (size_t i = 0; i < len && i < 64; i++)
            fprintf(stderr, "%02x%s", copy[i], i % 16 == 15 ? "\n" : " ");
        fprintf(stderr, "\n");
        if (r >= 0 && w >= 0)
            fprintf(stderr, "  got len %u line %d src %08x vlan %u; want len %u line %d src %08x vlan %u\n", got.len,
                    got.line, got.src_ip, got.vlan, want.len, want.line, want.src_ip, want.vlan);
    }
    CHECK(!bad);
    free(copy);
    *cause = w >= 0 ? -1 : changed;
    return r;
}

/* Expects a drop by cause (a name from FH_NET_DROPS). */
#define EXPECT_DROP(p, b, len, name)                                                                          \
    do {                                                                                                      \
        int c_;                                                                                               \
        int r_ = check_one(p, b, len, &c_);                                                                   \
        if (r_ != FH_NET_DROPPED(FH_NET_##name) || c_ != FH_NET_##name)                                       \
            fprintf(stderr, "%s:%d: expected drop %s, got %d (%s)\n", __FILE__, __LINE__, #name, r_,          \
                    c_ >= 0 ? fh_net_drop_name(c_) : "-");                                                    \
        CHECK(r_ == FH_NET_DROPPED(FH_NET_##name) && c_ == FH_NET_##name);                                    \
    } while (0)
#define EXPECT_LINE(p, b, len, want)                                                                          \
    do {                                                                                                      \
        int c_;                                                                                               \
        int r_ = check_one(p, b, len, &c_);                                                                   \
        if (r_ != (want))                                                                                     \
            fprintf(stderr, "%s:%d: expected line %d, got %d (%s)\n", __FILE__, __LINE__, (int)(want), r_,    \
                    c_ >= 0 ? fh_net_drop_name(c_) : "-");                                                    \
        CHECK_EQ(r_, (want));                                                                                 \
    } while (0)

static uint8_t fb[1600];

static void test_accept(void)
{
    pair_t p;
    pair_init(&p);
    pair_add(&p, 0xe9360c6f, 26477, 0);
    pair_add(&p, 0xe931c46f, 26477, 0);
    spec_t s = ours();
    size_t n = build(fb, &s);
    fh_net_pkt_t pkt;
    CHECK_EQ(fh_net_parse(&p.net, fb, n, &pkt), 0);
    CHECK(pkt.payload == fb + 42);
    CHECK_EQ(pkt.len, 100);
    CHECK_EQ(pkt.src_ip, 0x0a000001);
    CHECK_EQ(pkt.vlan, 0);
    CHECK_EQ(pkt.line, 0);
    s.dst = 0xe931c46f;
    n = build(fb, &s);
    EXPECT_LINE(&p, fb, n, 1);
    s.frag = 0; /* DF clear */
    EXPECT_LINE(&p, fb, build(fb, &s), 1);
    s.payload = 0; /* an empty datagram */
    n = build(fb, &s);
    CHECK_EQ(fh_net_parse(&p.net, fb, n, &pkt), 1);
    CHECK_EQ(pkt.len, 0);
    /* Ethernet padding after the datagram: not part of the payload */
    s = ours();
    s.payload = 2;
    s.pad = 16;
    n = build(fb, &s);
    CHECK_EQ(n, 60);
    CHECK_EQ(fh_net_parse(&p.net, fb, n, &pkt), 0);
    CHECK_EQ(pkt.len, 2);
    /* a UDP length shorter than the IPv4 datagram: the UDP length wins */
    s = ours();
    s.ulen_adj = -30;
    n = build(fb, &s);
    CHECK_EQ(fh_net_parse(&p.net, fb, n, &pkt), 0);
    CHECK_EQ(pkt.len, 70);
    /* the same group on another port, or another group on the port */
    s = ours();
    s.dport = 26478;
    EXPECT_DROP(&p, fb, build(fb, &s), other_group);
    s = ours();
    s.dst = 0xe9360c70;
    EXPECT_DROP(&p, fb, build(fb, &s), other_group);
    /* the UDP source port does not matter */
    s = ours();
    s.sport = 1;
    EXPECT_LINE(&p, fb, build(fb, &s), 0);
    CHECK_EQ(p.net.frames, 9);
}

static void test_vlan(void)
{
    pair_t p;
    pair_init(&p);
    pair_add(&p, 0xe9360c6f, 26477, 0);
    static const uint16_t types[] = { 0x8100, 0x88a8, 0x9100 };
    fh_net_pkt_t pkt;
    for (int nt = 1; nt <= 4; nt++) {
        for (int t = 0; t < 3; t++) {
            spec_t s = ours();
            s.ntags = nt;
            for (int i = 0; i < nt; i++) {
                s.tag_type[i] = types[(t + i) % 3];
                s.tag_vid[i] = (uint16_t)(0xf000 | (100 * (i + 1) + t)); /* PCP/DEI bits are not the id */
            }
            size_t n = build(fb, &s);
            EXPECT_LINE(&p, fb, n, 0);
            CHECK_EQ(fh_net_parse(&p.net, fb, n, &pkt), 0);
            CHECK_EQ(pkt.vlan, 100 + t); /* the outermost */
            CHECK(pkt.payload == fb + 42 + 4 * nt);
            CHECK_EQ(pkt.len, 100);
            s.dst = 1;
            EXPECT_DROP(&p, fb, build(fb, &s), other_group);
            s = ours();
            s.ntags = nt;
            s.ethertype = 0x86dd; /* IPv6 behind the tags */
            EXPECT_DROP(&p, fb, build(fb, &s), not_ipv4);
        }
    }
    /* an outer tag with VLAN id 0 (a priority tag): the outermost id is 0, whatever the inner ones (until
     * the fast path, a 0 outer id let the next tag's id through), with options or not */
    spec_t s = ours();
    s.ntags = 2;
    s.tag_vid[0] = 0x2000;
    s.tag_vid[1] = 0x0123;
    for (int ihl = 5; ihl <= 6; ihl++) {
        s.ihl = ihl;
        size_t n = build(fb, &s);
        EXPECT_LINE(&p, fb, n, 0);
        CHECK_EQ(fh_net_parse(&p.net, fb, n, &pkt), 0);
        CHECK_EQ(pkt.vlan, 0);
    }
    /* other EtherTypes */
    static const uint16_t other[] = { 0x0806, 0x86dd, 0x8847, 0x0000, 0xffff, 0x0801, 0x0008, 0x8101 };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        s = ours();
        s.ethertype = other[i];
        EXPECT_DROP(&p, fb, build(fb, &s), not_ipv4);
    }
}

static void test_ip_header(void)
{
    pair_t p;
    pair_init(&p);
    pair_add(&p, 0xe9360c6f, 26477, 0);
    fh_net_pkt_t pkt;
    /* options: IHL 6..15, tagged or not */
    for (int ihl = 6; ihl <= 15; ihl++) {
        for (int nt = 0; nt <= 2; nt++) {
            spec_t s = ours();
            s.ihl = ihl;
            s.ntags = nt;
            size_t n = build(fb, &s);
            EXPECT_LINE(&p, fb, n, 0);
            CHECK_EQ(fh_net_parse(&p.net, fb, n, &pkt), 0);
            CHECK(pkt.payload == fb + 14 + 4 * nt + 4 * ihl + 8);
            CHECK_EQ(pkt.len, 100);
        }
    }
    /* IHL below 5, versions other than 4 */
    for (int ihl = 0; ihl < 5; ihl++) {
        spec_t s = ours();
        size_t n = build(fb, &s);
        fb[14] = (uint8_t)(0x40 | ihl);
        EXPECT_DROP(&p, fb, n, bad_ip_header);
    }
    for (int v = 0; v < 16; v++) {
        if (v == 4)
            continue;
        spec_t s = ours();
        s.version = (uint8_t)v;
        EXPECT_DROP(&p, fb, build(fb, &s), bad_ip_header);
    }
    /* total length below the header length */
    spec_t s = ours();
    s.ihl = 6;
    s.total_adj = -(24 + 8 + 100) + 23;
    EXPECT_DROP(&p, fb, build(fb, &s), bad_ip_header);
    s.total_adj = -(24 + 8 + 100) + 24; /* = header length: no room for UDP */
    EXPECT_DROP(&p, fb, build(fb, &s), bad_udp_length);
    /* total length beyond the frame */
    s = ours();
    s.total_adj = 1;
    EXPECT_DROP(&p, fb, build(fb, &s), truncated_frame);
    s.total_adj = 60000;
    EXPECT_DROP(&p, fb, build(fb, &s), truncated_frame);
    /* fragments: MF, an offset, both; the reserved bit and DF are no fragment */
    static const uint16_t frag[] = { 0x2000, 0x0001, 0x1fff, 0x2001, 0x6000, 0x4001, 0x8001, 0x0100 };
    for (size_t i = 0; i < sizeof frag / sizeof frag[0]; i++) {
        s = ours();
        s.frag = frag[i];
        EXPECT_DROP(&p, fb, build(fb, &s), ip_fragment);
        s.ihl = 7;
        EXPECT_DROP(&p, fb, build(fb, &s), ip_fragment);
    }
    static const uint16_t whole[] = { 0x0000, 0x4000, 0x8000, 0xc000 };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        s = ours();
        s.frag = whole[i];
        EXPECT_LINE(&p, fb, build(fb, &s), 0);
    }
    /* not UDP: TCP, ICMP, IGMP (with Router Alert), ... */
    static const uint8_t protos[] = { 0, 1, 2, 6, 16, 18, 47, 50, 132, 255 };
    for (size_t i = 0; i < sizeof protos; i++) {
        s = ours();
        s.proto = protos[i];
        EXPECT_DROP(&p, fb, build(fb, &s), not_udp);
        s.ihl = 6;
        EXPECT_DROP(&p, fb, build(fb, &s), not_udp);
    }
    /* the header checksum is not checked: build() leaves it 0, and the frame is taken */
}

static void test_udp_length(void)
{
    pair_t p;
    pair_init(&p);
    pair_add(&p, 0xe9360c6f, 26477, 0);
    for (int ihl = 5; ihl <= 6; ihl++) {
        for (int adj = -108; adj <= 3; adj++) { /* UDP length 0 .. total - ihl + 3 */
            spec_t s = ours();
            s.ihl = ihl;
            s.ulen_adj = adj;
            size_t n = build(fb, &s);
            if (adj < -100 || adj > 0)
                EXPECT_DROP(&p, fb, n, bad_udp_length);
            else
                EXPECT_LINE(&p, fb, n, 0);
        }
        /* the IPv4 datagram has room for less than a UDP header */
        for (int room = 0; room < 8; room++) {
            spec_t s = ours();
            s.ihl = ihl;
            s.total_adj = -(8 + 100) + room;
            EXPECT_DROP(&p, fb, build(fb, &s), bad_udp_length);
        }
    }
}

/* A frame of ours cut at every length, tagged 0..2 times, with options or not. */
static void test_short(void)
{
    pair_t p;
    pair_init(&p);
    pair_add(&p, 0xe9360c6f, 26477, 0);
    for (int nt = 0; nt <= 2; nt++) {
        for (int ihl = 5; ihl <= 6; ihl++) {
            spec_t s = ours();
            s.ntags = nt;
            s.ihl = ihl;
            s.payload = 4;
            size_t n = build(fb, &s);
            for (size_t cut = 0; cut < n; cut++)
                EXPECT_DROP(&p, fb, cut, truncated_frame);
            EXPECT_LINE(&p, fb, n, 0);
            /* a cut within the tags of a frame that is not IPv4 is still truncated_frame while a tag is cut */
            s.ethertype = 0x86dd;
            n = build(fb, &s);
            for (size_t cut = 0; cut < 14 + 4 * (size_t)nt; cut++)
                EXPECT_DROP(&p, fb, cut, truncated_frame);
            EXPECT_DROP(&p, fb, 14 + 4 * (size_t)nt, not_ipv4);
        }
    }
    EXPECT_DROP(&p, fb, 0, truncated_frame);
}

static void test_lines(void)
{
    pair_t p;
    pair_init(&p);
    /* a source-specific line, then the same group and port from any source */
    pair_add(&p, 0xe9360c6f, 26477, 0x0a000009);
    spec_t s = ours();
    EXPECT_DROP(&p, fb, build(fb, &s), other_group);
    s.src = 0x0a000009;
    EXPECT_LINE(&p, fb, build(fb, &s), 0);
    pair_add(&p, 0xe9360c6f, 26477, 0);
    EXPECT_LINE(&p, fb, build(fb, &s), 0);
    s.src = 0x0a000001;
    EXPECT_LINE(&p, fb, build(fb, &s), 1);
    /* any source first: it takes every frame */
    pair_t q;
    pair_init(&q);
    pair_add(&q, 0xe9360c6f, 26477, 0);
    pair_add(&q, 0xe9360c6f, 26477, 0x0a000009);
    s.src = 0x0a000009;
    EXPECT_LINE(&q, fb, build(fb, &s), 0);
    /* a unicast line; address 0, port 0 */
    pair_add(&q, 0x0a000063, 5000, 0);
    pair_add(&q, 0, 0, 0);
    s = ours();
    s.dst = 0x0a000063;
    s.dport = 5000;
    EXPECT_LINE(&q, fb, build(fb, &s), 2);
    s.dst = 0;
    s.dport = 0;
    EXPECT_LINE(&q, fb, build(fb, &s), 3);
    s.dport = 1;
    EXPECT_DROP(&q, fb, build(fb, &s), other_group);
    /* no line at all: every UDP frame is other_group */
    pair_t e;
    pair_init(&e);
    s = ours();
    EXPECT_DROP(&e, fb, build(fb, &s), other_group);
    s.dst = 0;
    s.dport = 0;
    EXPECT_DROP(&e, fb, build(fb, &s), other_group);
    /* the limit: 16 lines, the 16th works, a 17th is refused with a message */
    pair_init(&p);
    for (int i = 0; i < FH_NET_MAX_LINES; i++)
        pair_add(&p, 0xe9000000u + (uint32_t)i, (uint16_t)(30000 + i), i % 3 == 2 ? 0x0a000000u + (uint32_t)i : 0);
    CHECK_EQ(fh_net_add_line(&p.net, 0xe9000100, 1, 0), -1);
    CHECK(strstr(fh_errmsg(), "at most 16") != NULL);
    CHECK_EQ(p.net.nlines, FH_NET_MAX_LINES);
    for (int i = 0; i < FH_NET_MAX_LINES; i++) {
        s = ours();
        s.dst = 0xe9000000u + (uint32_t)i;
        s.dport = (uint16_t)(30000 + i);
        s.src = i % 3 == 2 ? 0x0a000000u + (uint32_t)i : 77;
        EXPECT_LINE(&p, fb, build(fb, &s), i);
        s.dport++;
        EXPECT_DROP(&p, fb, build(fb, &s), other_group);
    }
    s = ours();
    s.dst = 0xe9000100;
    s.dport = 1;
    EXPECT_DROP(&p, fb, build(fb, &s), other_group);
    /* the names */
    CHECK(strcmp(fh_net_drop_name(FH_NET_truncated_frame), "truncated_frame") == 0);
    CHECK(strcmp(fh_net_drop_name(FH_NET_multi_segment), "multi_segment") == 0);
    CHECK(fh_net_drop_name(-1) == NULL && fh_net_drop_name(FH_NET_DROP_COUNT) == NULL);
}

/* ---- fuzzing ---- */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static const uint32_t groups[] = { 0xe9360c6f, 0xe931c46f, 0xe9360c70, 0x0a000063, 0 };
static const uint16_t ports[] = { 26477, 26478, 5000, 0 };
static const uint32_t sources[] = { 0x0a000001, 0x0a000009, 0 };
#define PICK(a) a[rnd() % (sizeof a / sizeof a[0])]

/* A frame near ours, then damaged: bytes overwritten (mostly in the headers), bits flipped, cut short. */
static size_t fuzz_frame(uint8_t *b)
{
    spec_t s = ours();
    static const uint16_t tag_types[] = { 0x8100, 0x88a8, 0x9100 };
    s.ntags = rnd() % 3 ? 0 : 1 + (int)(rnd() % 4);
    for (int i = 0; i < s.ntags; i++) {
        s.tag_type[i] = PICK(tag_types);
        s.tag_vid[i] = (uint16_t)rnd();
    }
    s.ihl = rnd() % 4 ? 5 : 5 + (int)(rnd() % 11);
    s.dst = PICK(groups);
    s.dport = PICK(ports);
    s.src = PICK(sources);
    s.sport = (uint16_t)rnd();
    s.payload = rnd() % 8 ? rnd() % 64 : rnd() % 1400;
    s.pad = rnd() % 4 ? 0 : rnd() % 32;
    if (rnd() % 8 == 0)
        s.frag = (uint16_t)rnd();
    if (rnd() % 8 == 0)
        s.proto = (uint8_t)rnd();
    if (rnd() % 8 == 0)
        s.total_adj = (int)(rnd() % 64) - 32;
    if (rnd() % 8 == 0)
        s.ulen_adj = (int)(rnd() % 64) - 32;
    if (rnd() % 32 == 0)
        s.version = (uint8_t)(rnd() % 16);
    if (rnd() % 32 == 0)
        s.ethertype = (uint16_t)rnd();
    size_t n = build(b, &s);
    if (rnd() % 3 == 0) {
        int k = 1 + (int)(rnd() % 4);
        for (int i = 0; i < k; i++) {
            size_t within = rnd() % 4 ? 64 : n; /* mostly the headers */
            size_t at = rnd() % within;
            if (rnd() & 1)
                b[at] = (uint8_t)rnd();
            else
                b[at] ^= (uint8_t)(1u << (rnd() % 8));
        }
    }
    if (rnd() % 6 == 0)
        n = rnd() % (n + 1);
    if (rnd() % 64 == 0) { /* pure noise */
        n = rnd() % 128;
        for (size_t i = 0; i < n; i++)
            b[i] = (uint8_t)rnd();
    }
    return n;
}

static void test_fuzz(long frames)
{
    pair_t p;
    uint64_t hits = 0, by_cause[FH_NET_DROP_COUNT] = { 0 };
    for (long i = 0; i < frames; i++) {
        if (i % 5000 == 0) { /* a new table of 0..16 lines, some source-specific, some duplicated */
            pair_init(&p);
            int nl = (int)(rnd() % (FH_NET_MAX_LINES + 1));
            for (int k = 0; k < nl; k++) { /* one rnd() a statement: the same sequence from any compiler */
                uint32_t dst = PICK(groups);
                uint16_t port = PICK(ports);
                uint32_t src = rnd() % 3 ? 0 : PICK(sources);
                pair_add(&p, dst, port, src);
            }
        }
        size_t n = fuzz_frame(fb);
        int cause;
        int r = check_one(&p, fb, n, &cause);
        if (r >= 0)
            hits++;
        else if (cause >= 0)
            by_cause[cause]++;
    }
    fprintf(stderr, "fuzz: %ld frames, %llu taken", frames, (unsigned long long)hits);
    for (int c = 0; c < FH_NET_DROP_COUNT; c++)
        if (by_cause[c])
            fprintf(stderr, ", %s %llu", fh_net_drop_name(c), (unsigned long long)by_cause[c]);
    fprintf(stderr, "; %ld mismatches\n", mismatches);
    /* every outcome must have been reached, or the fuzzer tests less than it seems */
    CHECK(hits > 0);
    for (int c = 0; c < FH_NET_DROP_COUNT; c++)
        if (c != FH_NET_multi_segment)
            CHECK(by_cause[c] > 0);
}

/* ---- the fast paths against the full parser ----
 *
 * fh_net_parse_fast (and fh_net_parse_fast_uncounted: the same result, nothing counted) then fh_net_parse_fast_vlan
 * (inline, the data plane's common frame, as the data plane tries them) and fh_net_parse (its own fast path, then
 * the full parser)
 * against fh_net_parse_full (every check in order, no fast path) on two nets with the same lines: the same
 * verdict, line, payload, length, source and VLAN, the same drop counted, one frame counted each; a frame
 * the fast paths do not take leaves the net untouched. Returns the fast paths' result (-1: not taken). */
static long fast_mismatches;

static int check_fast(fh_net_t *a, fh_net_t *b, const uint8_t *f0, size_t len)
{
    uint8_t *f = malloc(len ? len : 1); /* exactly len bytes: ASan sees a read past the end */
    memcpy(f, f0, len);
    fh_net_pkt_t fast, got, want;
    memset(&fast, 0xee, sizeof fast);
    memset(&got, 0xee, sizeof got);
    memset(&want, 0xee, sizeof want);
    fh_net_t before;
    memcpy(&before, a, sizeof before);
    fh_net_pkt_t unc;
    memset(&unc, 0xee, sizeof unc);
    int uq = fh_net_parse_fast_uncounted(a, f, len, &unc); /* the data plane's: the same, the net left untouched */
    int bad = memcmp(&before, a, sizeof before) != 0;
    int fq = fh_net_parse_fast(a, f, len, &fast);
    bad |= uq != fq || (fq >= 0 && memcmp(&unc, &fast, sizeof unc) != 0);
    if (fq < 0) {
        bad |= fq != -1 || memcmp(&before, a, sizeof before) != 0; /* nothing done: the caller goes on */
        fq = fh_net_parse_fast_vlan(a, f, len, &fast);
        if (fq < 0)
            bad |= fq != -1 || memcmp(&before, a, sizeof before) != 0;
    }
    int q = fq;
    if (q < 0)
        q = fh_net_parse(a, f, len, &got);
    else
        got = fast;
    int w = fh_net_parse_full(b, f, len, &want);
    bad |= q != w || a->frames != b->frames || memcmp(a->drops, b->drops, sizeof a->drops) != 0;
    if (w >= 0)
        bad |= got.payload != want.payload || got.len != want.len || got.line != want.line ||
               got.src_ip != want.src_ip || got.vlan != want.vlan;
    if (bad && fast_mismatches++ < 10) {
        fprintf(stderr, "fast/full mismatch on a %zu-byte frame: fast path %d, fh_net_parse_full %d\n", len, q, w);
        for (size_t i = 0; i < len && i < 64; i++)
            fprintf(stderr, "%02x%s", f[i], i % 16 == 15 ? "\n" : " ");
        fprintf(stderr, "\n");
    }
    CHECK(!bad);
    free(f);
    return fq;
}

static void add_both(fh_net_t *a, fh_net_t *b, uint32_t dst, uint16_t port, uint32_t src)
{
    CHECK_EQ(fh_net_add_line(a, dst, port, src), fh_net_add_line(b, dst, port, src));
}

/* Every byte of a common frame's headers (to line 0 and to line 1, untagged and behind one 802.1Q tag) set to each
 * of 256 values, every length cut,
 * then a million fuzzed frames (fuzz_frame: tags, options, fragments, lengths, damaged bytes) against tables of 0
 * to 16 lines; the fast path must have taken frames to both of its lines, and left others to fh_net_parse. */
static void test_fast_vs_full(long frames)
{
    fh_net_t a, b;
    uint64_t taken[2] = { 0, 0 }, left = 0;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    add_both(&a, &b, 0xe9360c6f, 26477, 0);
    add_both(&a, &b, 0xe931c46f, 26477, 0x0a000001);
    for (int line = 0; line < 2; line++)
    for (int tagged = 0; tagged < 2; tagged++) {
        spec_t s = ours();
        s.dst = line ? 0xe931c46f : 0xe9360c6f;
        s.frag = line ? 0 : 0x4000;
        s.ntags = tagged;
        s.tag_type[0] = 0x8100;
        s.tag_vid[0] = 0xf123; /* priority bits set: the id is 0x123 */
        size_t n = build(fb, &s);
        CHECK_EQ(check_fast(&a, &b, fb, n), line); /* the fast path's own frame */
        for (size_t at = 0; at < 42 + 4 * (size_t)tagged; at++) {
            uint8_t keep = fb[at];
            for (int v = 0; v < 256; v++) {
                fb[at] = (uint8_t)v;
                int q = check_fast(&a, &b, fb, n);
                q >= 0 ? taken[q]++ : left++;
            }
            fb[at] = keep;
        }
        for (size_t cut = 0; cut <= n + 8; cut++) { /* shorter frames; longer: what follows is padding */
            int q = check_fast(&a, &b, fb, cut);
            q >= 0 ? taken[q]++ : left++;
        }
    }
    for (long i = 0; i < frames; i++) {
        if (i % 5000 == 0) {
            memset(&a, 0, sizeof a);
            memset(&b, 0, sizeof b);
            int nl = (int)(rnd() % (FH_NET_MAX_LINES + 1));
            for (int k = 0; k < nl; k++) {
                uint32_t dst = PICK(groups);
                uint16_t port = PICK(ports);
                uint32_t src = rnd() % 3 ? 0 : PICK(sources);
                add_both(&a, &b, dst, port, src);
            }
            if (nl && rnd() % 2) { /* a line's source filter changed after it was added */
                uint32_t k = (uint32_t)(rnd() % (uint32_t)nl), src = rnd() % 2 ? 0 : PICK(sources);
                CHECK_EQ(fh_net_set_source(&a, k, src), 0);
                CHECK_EQ(fh_net_set_source(&b, k, src), 0);
            }
        }
        int q = check_fast(&a, &b, fb, fuzz_frame(fb));
        q >= 0 ? taken[q]++ : left++;
    }
#if defined(__SSE4_1__) && !defined(FH_NET_NO_SIMD)
    const char *variant = "SSE4.1";
#elif defined(__SSE2__) && !defined(FH_NET_NO_SIMD)
    const char *variant = "SSE2";
#else
    const char *variant = "scalar";
#endif
    fprintf(stderr, "fast vs full (%s): %llu frames taken by the fast path to line 0, %llu to line 1, %llu left to "
                    "fh_net_parse; %ld mismatches\n", variant,
            (unsigned long long)taken[0], (unsigned long long)taken[1], (unsigned long long)left, fast_mismatches);
    CHECK(taken[0] > 1000 && taken[1] > 1000 && left > 1000);
}

int main(int argc, char **argv)
{
    long fuzz = argc > 1 ? atol(argv[1]) : 1000000;
    test_accept();
    test_vlan();
    test_ip_header();
    test_udp_length();
    test_short();
    test_lines();
    test_fuzz(fuzz);
    test_fast_vs_full(fuzz);
    if (test_failures)
        fprintf(stderr, "test_net: %d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
