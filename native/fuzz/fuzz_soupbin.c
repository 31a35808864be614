/* Fuzz target: SoupBinTCP framing (fh/soupbin.h). Input: a byte stream as a server might send it. The packet
 * walker must agree with a plain reading of the specification (2-byte big-endian length of type + payload, a
 * length of 0 invalid), never read past what it was given, find the same packets whatever way the stream is
 * cut (TCP may split it anywhere: the stream is fed in two parts at a fuzzer-chosen point, the client's way:
 * whole packets delivered, the rest kept); the field parsers never read outside their payload, and Numeric
 * agrees with a plain reading and round-trips through fh_soup_put_numeric. */
#include "fh/soupbin.h"
#include "fuzz.h"

#define MAXP 4096

typedef struct pk {
    uint8_t type;
    uint16_t len;
    size_t off; /* of the payload in the stream */
} pk_t;

static pk_t want[MAXP], got[MAXP];

/* Numeric, read plainly: spaces, then digits only, at least one, below 2^64. */
static int plain_numeric(const uint8_t *p, size_t n, uint64_t *v)
{
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    if (i == n)
        return -1;
    unsigned __int128 x = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (unsigned)(p[i] - '0');
        if (x > UINT64_MAX)
            return -1;
    }
    *v = (uint64_t)x;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cut = ((size_t)data[0] << 8 | data[1]) % (size - 1);
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    cut = cut <= n ? cut : n;

    /* the plain reading */
    size_t nw = 0, off = 0;
    int bad = 0;
    while (off + 2 <= n && nw < MAXP) {
        size_t l = (size_t)s[off] << 8 | s[off + 1];
        if (l == 0) {
            bad = 1;
            break;
        }
        if (off + 2 + l > n)
            break;
        want[nw++] = (pk_t){ s[off + 2], (uint16_t)(l - 1), off + 3 };
        off += 2 + l;
    }

    /* the walker, fed in two parts through a buffer as the client reads */
    static uint8_t buf[1 << 17];
    size_t have = 0, base = 0, ng = 0; /* base: stream offset of buf[0] */
    int gbad = 0;
    for (int part = 0; part < 2 && !gbad; part++) {
        size_t from = part ? cut : 0, to = part ? n : cut;
        if (have + (to - from) > sizeof buf)
            return 0;
        memcpy(buf + have, s + from, to - from);
        have += to - from;
        size_t o = 0;
        for (;;) {
            fh_soup_pkt_t k;
            int r = fh_soup_next(buf + o, have - o, &k);
            if (r < 0) {
                gbad = 1;
                break;
            }
            if (r == 0)
                break;
            FZ_ASSERT((size_t)r == 3u + k.len && o + (size_t)r <= have);
            FZ_ASSERT(k.payload == buf + o + 3);
            if (ng < MAXP)
                got[ng++] = (pk_t){ k.type, k.len, base + o + 3 };
            if (k.type == FH_SOUP_LOGIN_ACCEPTED) {
                char sess[10];
                uint64_t seq, pv;
                int a = fh_soup_parse_accepted(k.payload, k.len, sess, &seq);
                FZ_ASSERT(a == ((k.len == 30 && plain_numeric(k.payload + 10, 20, &pv) == 0) ? 0 : -1));
                FZ_ASSERT(a || seq == pv);
            }
            if (k.type == FH_SOUP_LOGIN_REQUEST) {
                char u[7], pw[11], sess[10];
                uint64_t seq;
                if (fh_soup_parse_login(k.payload, k.len, u, pw, sess, &seq) == 0)
                    FZ_ASSERT(k.len == 46 && strlen(u) <= 6 && strlen(pw) <= 10);
            }
            o += (size_t)r;
        }
        memmove(buf, buf + o, have - o);
        have -= o;
        base += o;
    }
    if (nw < MAXP && ng < MAXP) {
        FZ_ASSERT(gbad == bad);
        FZ_ASSERT(ng == nw);
        for (size_t i = 0; i < nw; i++)
            FZ_ASSERT(got[i].type == want[i].type && got[i].len == want[i].len && got[i].off == want[i].off);
    }

    /* Numeric on the first 20 bytes (or fewer), and its round trip */
    size_t m = n < 20 ? n : 20;
    uint64_t v = 0, pv = 0;
    int r = fh_soup_numeric(s, m, &v);
    FZ_ASSERT(r == plain_numeric(s, m, &pv));
    if (r == 0) {
        FZ_ASSERT(v == pv);
        uint8_t f[20];
        FZ_ASSERT(fh_soup_put_numeric(f, 20, v) == 0);
        uint64_t back;
        FZ_ASSERT(fh_soup_numeric(f, 20, &back) == 0 && back == v);
    }
    return 0;
}
