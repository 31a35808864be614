/* lat.h: the latency histogram's bucket in the loop (private to native/dataplane/; no DPDK).
 *
 * dp_lat_index(v) is fh_shm_lat_index(v) (fh/shm.h: the one scheme of the segment's histograms) in about half
 * the instructions, for the data plane's once-a-datagram use: from 64 on, v's top bit e and the four bits below
 * it give the bucket as 16 e - 48 + (v >> (e - 4)) (the top bit adds the 16 that fh_shm_lat_index's mask takes
 * away), with no mask and one shift. native/tests/test_dp_lat.c checks both on every bucket's bounds and on
 * random values. */
#ifndef FH_DP_LAT_H
#define FH_DP_LAT_H

#include "fh/shm.h"

_Static_assert(FH_SHM_LAT_SUB == 16 && FH_SHM_LAT_BUCKETS == 64 + (40 - 6) * 16, "dp_lat_index: fh/shm.h's scheme");

static inline unsigned dp_lat_index(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u ^ (unsigned)__builtin_clzll(v); /* the top bit, 6 .. 63 */
    if (__builtin_expect(e >= 40, 0))
        return FH_SHM_LAT_BUCKETS - 1;
    return 16 * e - 48 + (unsigned)(v >> (e - 4));
}

#endif
