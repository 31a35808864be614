/* fh-bench-snapshot [ORDERS] [INSTRUMENTS] [DIR]: snapshot size, write and load time of an engine holding
 * ORDERS live orders (default 10,000,000) over INSTRUMENTS books (default 8,000), each order at one of 50
 * prices per side around its book's middle; and, as the other half of a restart, how fast the engine
 * applies a journal (the same adds as 2-byte-length blocks, fh_engine_apply_blocks). Prints one JSON object
 * (bench/journal.md). The snapshot goes to DIR (default /tmp) and is removed afterwards. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "fh/book.h"

static size_t put_add(uint8_t *b, uint16_t loc, uint64_t ref, int ask, uint32_t shares, uint32_t price)
{
    fh_put_be16(b, 36);
    b += 2;
    memset(b, 0, 36);
    b[0] = 'A';
    fh_put_be16(b + 1, loc);
    fh_put_be48(b + 5, ref);
    fh_put_be64(b + 11, ref);
    b[19] = ask ? 'S' : 'B';
    fh_put_be32(b + 20, shares);
    memcpy(b + 24, "S       ", 8);
    fh_put_be16(b + 25, loc); /* a distinct symbol per book */
    fh_put_be32(b + 32, price);
    return 38;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000ull;
    uint32_t ni = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 8000;
    const char *dir = argc > 3 ? argv[3] : "/tmp";
    if (n < 1 || n > (1u << 30) || ni < 1 || ni > 65000) {
        fprintf(stderr, "usage: %s [ORDERS 1..2^30] [INSTRUMENTS 1..65000] [DIR]\n", argv[0]);
        return 2;
    }
    size_t len = (size_t)n * 38;
    uint8_t *day = malloc(len);
    if (!day) {
        fprintf(stderr, "%s: no memory for %llu adds\n", argv[0], (unsigned long long)n);
        return 2;
    }
    size_t w = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t loc = (uint16_t)(1 + i % ni);
        int ask = (int)((i / ni) & 1);
        uint32_t mid = 1000000 + loc * 100;
        uint32_t off = (uint32_t)((i * 2654435761u) % 50) * 100 + 100;
        w += put_add(day + w, loc, i + 1, ask, 100 + (uint32_t)(i % 900), ask ? mid + off : mid - off);
    }
    fh_engine_cfg_t cfg = { 65535, (uint32_t)n, 4u << 20 };
    fh_engine_t *a = fh_engine_create(&cfg), *b = fh_engine_create(&cfg);
    if (!a || !b) {
        fprintf(stderr, "%s: %s\n", argv[0], fh_errmsg());
        return 2;
    }
    uint64_t t0 = now_ns();
    fh_engine_apply_blocks(a, day, len);
    uint64_t t_apply = now_ns() - t0;
    if (fh_engine_live_orders(a) != n) {
        fprintf(stderr, "%s: %llu live orders, expected %llu\n", argv[0], (unsigned long long)fh_engine_live_orders(a),
                (unsigned long long)n);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fh-bench-%d.snap", dir, (int)getpid());
    fh_snapshot_meta_t m = { .session = "BENCH00001", .next_seq = n + 1, .day = 20261203 };
    t0 = now_ns();
    if (fh_engine_snapshot_save(a, &m, path)) {
        fprintf(stderr, "%s: %s\n", argv[0], fh_errmsg());
        return 1;
    }
    uint64_t t_save = now_ns() - t0;
    struct stat st;
    stat(path, &st);
    t0 = now_ns();
    if (fh_engine_snapshot_load(b, path, &m)) {
        fprintf(stderr, "%s: %s\n", argv[0], fh_errmsg());
        return 1;
    }
    uint64_t t_load = now_ns() - t0;
    unlink(path);
    int same = fh_engine_live_orders(b) == n;
    uint16_t locs[8] = { 1, 2, 3, (uint16_t)(ni / 2), (uint16_t)ni };
    for (int k = 0; k < 5 && same; k++)
        for (int side = 0; side < 2; side++) {
            fh_level_t x[64], y[64];
            uint32_t nx = fh_engine_levels(a, locs[k], side, x, 64), ny = fh_engine_levels(b, locs[k], side, y, 64);
            same &= nx == ny && !memcmp(x, y, nx * sizeof x[0]);
        }
    printf("{\"orders\": %llu, \"instruments\": %u, \"snapshot_bytes\": %lld, \"bytes_per_order\": %.1f, "
           "\"save_s\": %.3f, \"load_s\": %.3f, \"journal_apply_s\": %.3f, \"journal_msgs_per_s\": %.0f, "
           "\"load_orders_per_s\": %.0f, \"loaded_equal\": %s}\n",
           (unsigned long long)n, ni, (long long)st.st_size, (double)st.st_size / (double)n, t_save / 1e9,
           t_load / 1e9, t_apply / 1e9, (double)n / (t_apply / 1e9), (double)n / (t_load / 1e9), same ? "true" : "false");
    fh_engine_destroy(a);
    fh_engine_destroy(b);
    free(day);
    return same ? 0 : 1;
}
