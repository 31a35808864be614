/* fh/net.h: from an Ethernet frame to a feed line's UDP payload.
 *
 * Ethernet II, any number of 802.1Q / 802.1ad tags, IPv4 (options allowed, fragments refused), UDP; the
 * (destination address, destination port) pair picks the feed line. Every frame that is not one of ours
 * is dropped with its cause counted, never silently. No DPDK dependency: the data plane hands each mbuf's
 * bytes here, tests hand bytes from pcaps. */
#ifndef FH_NET_H
#define FH_NET_H

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
 * data plane looks for IGMP among not_udp and ARP among not_ipv4). Hot: reads at most the headers, each
 * bounds-checked against len. The IPv4 header checksum is not verified (the NIC does; a frame from a capture
 * is taken as it is). When several lines fit a frame, the first added wins. */
int fh_net_parse(fh_net_t *n, const uint8_t *f, size_t len, fh_net_pkt_t *out);

const char *fh_net_drop_name(int cause);

#endif
