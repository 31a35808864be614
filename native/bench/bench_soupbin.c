/* fh-bench-soupbin N MODE: the cost of SoupBinTCP framing on the snapshot client's path, for callgrind
 * (instructions, repeatable on a shared machine): N sequenced-data packets of an ITCH Add Order each, walked
 * with fh_soup_next in 64 KiB reads as the client does (MODE walk: framing only, MODE apply: and each message
 * applied to an engine, MODE engine: the same messages applied from a plain array, no framing). Compare
 * `valgrind --tool=callgrind` totals of the modes; the difference over N is framing's instructions a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh/book.h"
#include "fh/soupbin.h"

int main(int argc, char **argv)
{
    if (argc != 3)
        return fprintf(stderr, "usage: fh-bench-soupbin N walk|apply|engine\n"), 2;
    size_t n = strtoul(argv[1], NULL, 10);
    int mode = !strcmp(argv[2], "walk") ? 0 : !strcmp(argv[2], "apply") ? 1 : 2;
    uint8_t *buf = malloc(n * 39), *msgs = malloc(n * 36);
    for (size_t i = 0; i < n; i++) {
        uint8_t *m = msgs + i * 36;
        memset(m, 0, 36);
        m[0] = 'A';
        fh_put_be16(m + 1, (uint16_t)(1 + i % 100));
        fh_put_be64(m + 11, i + 1);
        m[19] = i & 1 ? 'B' : 'S';
        fh_put_be32(m + 20, 100);
        memcpy(m + 24, "SYM     ", 8);
        fh_put_be32(m + 32, (uint32_t)(1000000 + (i % 3000) * 100));
        fh_soup_encode(buf + i * 39, 39, FH_SOUP_SEQUENCED, m, 36);
    }
    fh_engine_t *e = fh_engine_create(&(fh_engine_cfg_t){ 256, (uint32_t)n + 16, 1 << 20 });
    if (!e)
        return fprintf(stderr, "%s\n", fh_errmsg()), 1;
    size_t total = n * 39, off = 0, pkts = 0;
    if (mode == 2) {
        for (size_t i = 0; i < n; i++)
            fh_engine_apply(e, msgs + i * 36, 36);
        pkts = n;
    } else {
        static uint8_t rb[(64 << 10) + 65540];
        size_t have = 0;
        while (off < total || have) {
            size_t take = total - off < (64u << 10) ? total - off : (64u << 10);
            memcpy(rb + have, buf + off, take); /* the recv() */
            off += take;
            have += take;
            size_t o = 0;
            fh_soup_pkt_t k;
            int r;
            while ((r = fh_soup_next(rb + o, have - o, &k)) > 0) {
                if (mode == 1)
                    fh_engine_apply(e, k.payload, k.len);
                o += (size_t)r;
                pkts++;
            }
            memmove(rb, rb + o, have - o);
            have -= o;
            if (!take && have)
                break;
        }
    }
    printf("{\"mode\": \"%s\", \"packets\": %zu, \"live_orders\": %llu}\n", argv[2], pkts,
           (unsigned long long)fh_engine_live_orders(e));
    fh_engine_destroy(e);
    free(buf);
    free(msgs);
    return 0;
}
