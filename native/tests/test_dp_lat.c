/* test_dp_lat: the data plane's latency bucket (native/dataplane/lat.h) is fh_shm_lat_index's (fh/shm.h) on
 * every value below 2^20, around every power of two and every sub-bucket bound up to 2^64, and on 10,000,000
 * random values of every magnitude. Exit 0 pass, 1 fail. */
#include <stdio.h>

#include "../dataplane/lat.h"
#include "msg.h"

static long bad;

static void one(uint64_t v)
{
    unsigned want = fh_shm_lat_index(v), got = dp_lat_index(v);
    if (got != want && bad++ < 10)
        fprintf(stderr, "v = %llu: dp_lat_index %u, fh_shm_lat_index %u\n", (unsigned long long)v, got, want);
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
        fprintf(stderr, "test_dp_lat: %d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
