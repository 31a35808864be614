/* fh/net.h: from an Ethernet frame to a feed line's UDP payload.
 *
 * Ethernet II, any number of 802.1Q / 802.1ad tags, IPv4 (options allowed, fragments refused), UDP; the
 * (destination address, destination port) pair picks the feed line. Every frame that is not one of ours
 * is dropped with its cause counted, never silently. No DPDK dependency: the data plane hands each mbuf's
 * bytes here, tests hand bytes from pcaps. */
#ifndef FH_NET_H
#define FH_NET_H

#include <stdbool.h>

#include "fh/common.h"

#define FH_NET_MAX_LINES 16

#define FH_NET_DROPS(X) \
    X(truncated_frame) X(not_ipv4) X(bad_ip_header) X(ip_fragment) X(not_udp) X(bad_udp_length) X(other_group) \
    X(multi_segment) /* a frame in chained buffers (larger than one mbuf): counted by the data plane */
typedef enum fh_net_drop {
#define FH_X(n) FH_NET_##n,
    FH_NET_DROPS(FH_X)
#undef FH_X
    FH_NET_DROP_COUNT
} fh_net_drop_t;

typedef struct fh_net_line {
    uint32_t dst_ip;   /* host byte order; a multicast group or a unicast address */
    uint16_t dst_port; /* host byte order */
    uint32_t src_ip;   /* 0: any source; else only this one (source-specific filter) */
} fh_net_line_t;

/* Zero it before the first fh_net_add_line (= {0} or memset): slots past nlines must stay zero. */
typedef struct fh_net {
    /* What fh_net_parse compares, made by fh_net_add_line from line[] (never written elsewhere): per line
     * the 8 bytes of an option-less IPv4 header from its destination address on (address, UDP source port,
     * UDP destination port) as they lie on the wire, the source-port bytes set to 0xff (so a zero slot never
     * matches a frame); and the source address on the wire with its mask (0 and 0: any source). */
    uint64_t key[FH_NET_MAX_LINES];
    uint32_t src_key[FH_NET_MAX_LINES];
    uint32_t src_mask[FH_NET_MAX_LINES];
    /* The same for lines 0 and 1 as fh_net_parse_fast compares them with SSE4.1, in one 16-byte compare: the 16
     * bytes of an option-less IPv4 header from its source address on (source address, destination address, UDP
     * source port, destination port, length, checksum) as the line wants them, and which of them it ignores
     * (0xff: the source port, length and checksum, and the source address when any source is taken). A zero
     * slot ignores nothing and wants every byte 0, a UDP length of 0 included, so it never matches a frame that
     * fh_net_parse_fast takes. */
    uint8_t fast_want[2][16] __attribute__((aligned(16)));
    uint8_t fast_ignore[2][16] __attribute__((aligned(16)));
    fh_net_line_t line[FH_NET_MAX_LINES];
    uint32_t nlines;
    uint64_t drops[FH_NET_DROP_COUNT];
    uint64_t frames;
} fh_net_t;

/* One frame's result. */
typedef struct fh_net_pkt {
    const uint8_t *payload; /* UDP payload */
    uint32_t len;
    int line;               /* index into fh_net_t.line */
    uint32_t src_ip;
    uint16_t vlan;          /* outermost VLAN id, 0 if none */
} fh_net_pkt_t;

/* Add a line; returns its index, or -1 (with an error message) when full. */
int fh_net_add_line(fh_net_t *n, uint32_t dst_ip, uint16_t dst_port, uint32_t src_ip);
/* Take line i's frames from src_ip only (0: from any source). 0, or -1 with a message. */
int fh_net_set_source(fh_net_t *n, uint32_t i, uint32_t src_ip);

/* What fh_net_parse returns for a frame it dropped because of cause (an fh_net_drop_t): -1 - cause, below 0
 * like every drop; fh_net_drop_cause gives the cause back. */
#define FH_NET_DROPPED(cause) (-1 - (int)(cause))
static inline fh_net_drop_t fh_net_drop_cause(int r) { return (fh_net_drop_t)(-1 - r); }

/* Classify frame f of len bytes. Returns the line index (>= 0) with *out filled, or, after counting the drop
 * in drops[cause], FH_NET_DROPPED(cause) (< 0): the caller learns the cause without comparing counters (the
 * data plane looks for IGMP among not_udp and ARP among not_ipv4). Counts the frame in frames. Hot: reads at
 * most the headers, each bounds-checked against len. The IPv4 header checksum is not verified (the NIC does;
 * a frame from a capture is taken as it is). When several lines fit a frame, the first added wins. A caller
 * with a loop of its own tries fh_net_parse_fast (below) first. */
int fh_net_parse(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out);

/* The same without any fast path: every check in the documented order, the cause of a drop the first that
 * fails. The reference the fast paths are tested against (native/tests/test_net.c, native/fuzz/fuzz_net.c);
 * not for the hot path. */
int fh_net_parse_full(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out);

const char *fh_net_drop_name(int cause);

/* ---- fh_net_parse_fast: the common frame inline, in a caller's loop (the data plane's burst) ----
 *
 * The common frame of a feed: Ethernet II untagged or behind one 802.1Q tag, IPv4 without options or fragments,
 * UDP, the IPv4 datagram filling the frame (no Ethernet padding) and the UDP datagram filling the IPv4 one, to
 * line 0 or 1 (the A and B lines, added first): fh_net_parse_fast untagged, fh_net_parse_fast_vlan tagged. Its
 * header is compared with what it must be in a few wide loads: one 16-byte masked compare from the EtherType to
 * the protocol, the two lengths against the frame's length (in wire order: no arithmetic on the frame's bytes),
 * the 8 bytes from the destination address to the destination port against the two lines' keys, the source
 * against the line's filter. With SSE4.1 (the data plane: DPDK builds it for corei7) the IPv4 total length joins
 * the first compare, and each line is one 16-byte test from the source address on (fast_want, fast_ignore).
 * Anything else is left to fh_net_parse, so the result, the drop counters and their causes are
 * fh_net_parse_full's on every frame (native/tests/test_net.c, as test_net and as test_net_sse41). */

static inline uint64_t fh_net_ld64_(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t fh_net_ld32_(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t fh_net_ld16_(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* A line's key (fh_net_t.key) from the 8 bytes at an option-less IPv4 header's destination address, the UDP
 * source port's two bytes set to 0xff (a zeroed slot never matches). Little-endian: those are bytes 4 and 5. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FH_NET_KEY_ANY_SPORT 0x0000ffff00000000ull
#else
#define FH_NET_KEY_ANY_SPORT 0x00000000ffff0000ull
#endif

/* The 16 bytes from the last EtherType on: IPv4 (0x0800), version 4 with IHL 5, no MF flag and no fragment
 * offset (DF and the reserved bit may be set), protocol UDP. The other bytes may be anything.
 * fh_net_common_shape_total_: the same and the IPv4 total length `total` (host order). */
#if defined(__SSE2__) && !defined(FH_NET_NO_SIMD)
#include <emmintrin.h>
#if defined(__SSE4_1__)
#include <smmintrin.h>
#endif
static inline int fh_net_common_shape_(const uint8_t *p)
{
    const __m128i m = _mm_setr_epi8((char)0xff, (char)0xff, (char)0xff, 0, 0, 0, 0, 0, 0x3f, (char)0xff, 0,
                                    (char)0xff, 0, 0, 0, 0);
    const __m128i w = _mm_setr_epi8(0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0x00, 0x00, 0, 0x11, 0, 0, 0, 0);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(v, m), w)) == 0xffff;
}
static inline int fh_net_common_shape_total_(const uint8_t *p, uint16_t total)
{
#if defined(__SSE4_1__)
    /* the total length put in the wanted bytes, then one test: no difference where the mask looks */
    const __m128i m = _mm_setr_epi8((char)0xff, (char)0xff, (char)0xff, 0, (char)0xff, (char)0xff, 0, 0, 0x3f,
                                    (char)0xff, 0, (char)0xff, 0, 0, 0, 0);
    const __m128i w = _mm_setr_epi8(0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0x00, 0x00, 0, 0x11, 0, 0, 0, 0);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm_testz_si128(_mm_xor_si128(v, _mm_insert_epi16(w, __builtin_bswap16(total), 2)), m);
#else
    return fh_net_common_shape_(p) && fh_net_ld16_(p + 4) == __builtin_bswap16(total);
#endif
}
#else
static inline int fh_net_common_shape_(const uint8_t *p)
{
    static const uint8_t m[16] = { 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0x3f, 0xff, 0, 0xff, 0, 0, 0, 0 };
    static const uint8_t w[16] = { 0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0x00, 0x00, 0, 0x11, 0, 0, 0, 0 };
    return !(((fh_net_ld64_(p) & fh_net_ld64_(m)) ^ fh_net_ld64_(w)) |
             ((fh_net_ld64_(p + 8) & fh_net_ld64_(m + 8)) ^ fh_net_ld64_(w + 8)));
}
static inline int fh_net_common_shape_total_(const uint8_t *p, uint16_t total)
{
    return fh_net_common_shape_(p) && fh_net_ld16_(p + 4) == __builtin_bswap16(total);
}
#endif

/* From the EtherType before an IPv4 header of the common shape and total length at f + off (off = 12, or 16 behind
 * one tag), with len >= off + 30 and len <= 65535 + off + 2: the UDP length, then lines 0 and 1; count: the frame
 * taken is counted in n->frames. */
static inline __attribute__((always_inline)) int fh_net_fast_at_(fh_net_t *n, const uint8_t *f, size_t len,
                                                                 const size_t off, fh_net_pkt_t *out, const bool count)
{
    const uint8_t *const ip = f + off + 2;
    /* plen: the UDP payload's length if the datagrams fill the frame, at most 65,507 (the caller's bound on len) */
    const size_t plen = len - off - 30;
    if (FH_UNLIKELY(fh_net_ld16_(ip + 24) != __builtin_bswap16((uint16_t)(plen + 8))))
        return -1;
    const uint32_t src = fh_net_ld32_(ip + 12);
    int i;
#if defined(__SSE4_1__) && !defined(FH_NET_NO_SIMD)
    /* the 16 bytes from the source address on against each line's: no difference outside what it ignores */
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(ip + 12));
    if (_mm_testc_si128(*(const __m128i *)(const void *)n->fast_ignore[0],
                        _mm_xor_si128(v, *(const __m128i *)(const void *)n->fast_want[0])))
        i = 0;
    else if (_mm_testc_si128(*(const __m128i *)(const void *)n->fast_ignore[1],
                             _mm_xor_si128(v, *(const __m128i *)(const void *)n->fast_want[1])))
        i = 1;
    else
        return -1;
#else
    const uint64_t key = fh_net_ld64_(ip + 16) | FH_NET_KEY_ANY_SPORT;
    if (key == n->key[0] && (src & n->src_mask[0]) == n->src_key[0])
        i = 0;
    else if (key == n->key[1] && (src & n->src_mask[1]) == n->src_key[1])
        i = 1;
    else
        return -1;
#endif
    if (count)
        n->frames++;
    out->payload = ip + 28;
    out->len = (uint32_t)plen;
    out->line = i;
    out->src_ip = __builtin_bswap32(src);
    out->vlan = off == 12 ? 0 : (uint16_t)(__builtin_bswap16(fh_net_ld16_(f + 14)) & 0x0fff);
    return i;
}

/* The common frame's shape and IPv4 total length at f + off, len within the bounds fh_net_fast_at_ wants (the
 * upper one a test the compiler drops for a 16-bit len, as an mbuf's). */
#define FH_NET_FAST_SHAPE_(f, len, off) \
    (FH_LIKELY((len) >= (off) + 30) && FH_LIKELY((len) <= 65535 + (off) + 2) && \
     FH_LIKELY(fh_net_common_shape_total_((f) + (off), (uint16_t)((len) - (off) - 2))))

/* The common frame to line 0 or 1, untagged: counts the frame and returns its line (>= 0) with *out filled, as
 * fh_net_parse would; or returns -1 having done nothing, and the caller tries fh_net_parse_fast_vlan or hands
 * the frame to fh_net_parse. */
static inline __attribute__((always_inline)) int fh_net_parse_fast(fh_net_t *n, const uint8_t *f, size_t len,
                                                                   fh_net_pkt_t *out)
{
    if (FH_NET_FAST_SHAPE_(f, len, 12))
        return fh_net_fast_at_(n, f, len, 12, out, true);
    return -1;
}

/* fh_net_parse_fast without counting the frame it takes: n is only read. For a caller that adds the frames it
 * took to n->frames itself (the data plane: once a burst, from the frames it left to the other paths). */
static inline __attribute__((always_inline)) int fh_net_parse_fast_uncounted(const fh_net_t *n, const uint8_t *f,
                                                                             size_t len, fh_net_pkt_t *out)
{
    if (FH_NET_FAST_SHAPE_(f, len, 12))
        return fh_net_fast_at_((fh_net_t *)n, f, len, 12, out, false);
    return -1;
}

/* The same behind one 802.1Q tag (0x8100): the data plane tries it out of line, after fh_net_parse_fast, so that
 * an untagged frame pays nothing for it. */
static inline __attribute__((always_inline)) int fh_net_parse_fast_vlan(fh_net_t *n, const uint8_t *f, size_t len,
                                                                        fh_net_pkt_t *out)
{
    if (len >= 46 && fh_net_ld16_(f + 12) == __builtin_bswap16(0x8100) && FH_NET_FAST_SHAPE_(f, len, 16))
        return fh_net_fast_at_(n, f, len, 16, out, true);
    return -1;
}

#endif
