/* Fuzz target: the frame filter (fh/net.h). Input: a byte n, then n % 5 lines of 10 bytes each
 * (destination address, destination port, source address: 0 = any), then one Ethernet frame. fh_net_parse
 * must agree with the reference parser (native/tests/net_ref.h) on the verdict, the drop cause (returned and
 * counted), and for a frame of ours on the payload's place and length, the line, the source and the VLAN; it
 * counts exactly one frame and at most one drop; and the payload lies inside the frame. fh_net_parse_full (no fast
 * path) gives the same result and counts the same drop; fh_net_parse_fast and fh_net_parse_fast_vlan take the frame
 * with the same result, or leave it untouched. */
#include "fh/net.h"
#include "fuzz.h"
#include "net_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t in = { data, size };
    fh_net_t net, full;
    memset(&net, 0, sizeof net);
    memset(&full, 0, sizeof full);
    ref_line_t lines[4];
    int nlines = fz_u8(&in) % 5;
    for (int i = 0; i < nlines; i++) {
        lines[i].dst = fz_u32(&in);
        lines[i].port = fz_u16(&in);
        lines[i].src = fz_u32(&in);
        FZ_ASSERT(fh_net_add_line(&net, lines[i].dst, lines[i].port, lines[i].src) == i);
        FZ_ASSERT(fh_net_add_line(&full, lines[i].dst, lines[i].port, lines[i].src) == i);
    }
    size_t len;
    uint8_t *frame = fz_take(&in, 65536, &len);
    fh_net_pkt_t got, want;
    memset(&got, 0xee, sizeof got);
    memset(&want, 0xee, sizeof want);
    int cause = -1;
    int r = fh_net_parse(&net, frame, len, &got);
    int w = ref_parse(lines, nlines, frame, len, &cause, &want);
    FZ_ASSERT(net.frames == 1);
    uint64_t drops = 0;
    for (int i = 0; i < FH_NET_DROP_COUNT; i++)
        drops += net.drops[i];
    FZ_ASSERT(w >= 0 ? r == w : r == FH_NET_DROPPED(cause)); /* a drop returns its cause */
    if (w >= 0) {
        FZ_ASSERT(drops == 0);
        FZ_ASSERT(got.payload == want.payload && got.len == want.len && got.line == want.line);
        FZ_ASSERT(got.src_ip == want.src_ip && got.vlan == want.vlan);
        FZ_ASSERT(got.payload >= frame && got.payload + got.len <= frame + len);
    } else {
        FZ_ASSERT(drops == 1 && net.drops[cause] == 1);
        FZ_ASSERT(fh_net_drop_name(cause) != NULL);
    }
    /* the full parser (no fast path) decides the same, and the inline fast path takes a frame only as they do */
    fh_net_pkt_t slow, fast;
    FZ_ASSERT(fh_net_parse_full(&full, frame, len, &slow) == r && full.frames == 1);
    FZ_ASSERT(memcmp(full.drops, net.drops, sizeof net.drops) == 0);
    if (r >= 0)
        FZ_ASSERT(slow.payload == got.payload && slow.len == got.len && slow.line == got.line &&
                  slow.src_ip == got.src_ip && slow.vlan == got.vlan);
    fh_net_pkt_t unc = { 0 };
    int uq = fh_net_parse_fast_uncounted(&full, frame, len, &unc); /* the same verdict, nothing counted */
    FZ_ASSERT(full.frames == 1);
    int q = fh_net_parse_fast(&full, frame, len, &fast);
    FZ_ASSERT(uq == q && (q < 0 || (unc.payload == fast.payload && unc.len == fast.len && unc.line == fast.line)));
    if (q < 0) {
        FZ_ASSERT(q == -1 && full.frames == 1);
        q = fh_net_parse_fast_vlan(&full, frame, len, &fast);
    }
    FZ_ASSERT(q == -1 ? full.frames == 1 : q == r && full.frames == 2 && fast.payload == got.payload &&
                                               fast.len == got.len && fast.line == got.line);
    free(frame);
    return 0;
}
