/* test_lat_index: fh_shm_lat_index (fh/shm.h: the segment's latency buckets, in the data plane once a datagram,
 * computed without a mask) is the scheme's definition, the reference below, on every value below 2^20, around every power of two and every sub-bucket bound up to 2^64, and on 10,000,000
 * random values of every magnitude. Exit 0 pass, 1 fail. */
#include <stdio.h>

#include "fh/shm.h"
#include "msg.h"

static long bad;

/* The definition (fh/shm.h's comment above FH_SHM_LAT_SUB): exact below 64 ns, then 16 sub-buckets a power of
 * two up to 2^40, the last bucket above. */
static unsigned reference(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e >= 40)
        return FH_SHM_LAT_BUCKETS - 1;
    return 64 + (e - 6) * FH_SHM_LAT_SUB + (unsigned)((v >> (e - 4)) & (FH_SHM_LAT_SUB - 1));
}

static void one(uint64_t v)
{
    unsigned want = reference(v), got = fh_shm_lat_index(v);
    if (got != want && bad++ < 10)
        fprintf(stderr, "v = %llu: fh_shm_lat_index %u, the reference %u\n", (unsigned long long)v, got, want);
}

int main(void)
{
    for (uint64_t v = 0; v < (1u << 20); v++)
        one(v);
    for (int e = 0; e < 64; e++)
        for (uint64_t s = 0; s < 16; s++) {
            uint64_t b = (1ull << e) + (e >= 4 ? s << (e - 4) : s);
            for (int d = -2; d <= 2; d++)
                one(b + (uint64_t)(int64_t)d);
        }
    one(UINT64_MAX);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (long i = 0; i < 10000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        one(x >> (x % 64));
    }
    CHECK_EQ(bad, 0);
    if (test_failures)
        fprintf(stderr, "test_lat_index: %d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
