/* fh/gwfmt.h: the gateway's PUB commands, formatted in C. */
#include "fh/gwfmt.h"

#include <string.h>

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        *p++ = tmp[--i];
    return p;
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

static char *put_s(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT(p, lit) put_s(p, lit, sizeof(lit) - 1)

/* the longest command: "PUB " + prefix (<= stride) + "trade " + 5 digits + CRLF + body (< 400) + CRLF */
#define ROOM(stride) ((stride) + 512)

size_t fh_gw_format(const fh_shm_event_t *ev, size_t n, const int64_t *pub_ns, uint64_t gw_ns, const char *subj,
                    const uint8_t *subj_len, size_t stride, char *out, size_t cap, size_t *done, uint64_t *nbbo,
                    uint64_t *ntrade)
{
    char *p = out, *end = out + cap;
    size_t i;
    for (i = 0; i < n; i++) {
        const fh_shm_event_t *e = &ev[i];
        if (e->type != FH_EV_BBO && e->type != FH_EV_TRADE)
            continue;
        size_t sl = e->locate < 65536 ? subj_len[e->locate] : 0;
        if (!sl || (size_t)(end - p) < ROOM(stride))
            break;
        char body[400], *b = body;
        int bbo = e->type == FH_EV_BBO;
        b = PUT(b, "{\"seq\":");
        b = put_u64(b, e->seq);
        b = PUT(b, ",\"ts\":");
        b = put_u64(b, e->itch_ts);
        if (bbo) {
            b = PUT(b, ",\"bid\":");
            b = put_i64(b, e->c);
            b = PUT(b, ",\"bid_shares\":");
            b = put_u64(b, e->a);
            b = PUT(b, ",\"ask\":");
            b = put_i64(b, e->d);
            b = PUT(b, ",\"ask_shares\":");
            b = put_u64(b, e->b);
        } else {
            b = PUT(b, ",\"price\":");
            b = put_i64(b, e->c);
            b = PUT(b, ",\"shares\":");
            b = put_u64(b, e->a);
            b = PUT(b, ",\"match\":");
            b = put_u64(b, e->b);
        }
        b = PUT(b, ",\"pub_ns\":");
        b = pub_ns[i] ? put_i64(b, pub_ns[i]) : PUT(b, "null");
        b = PUT(b, ",\"gw_ns\":");
        b = put_u64(b, gw_ns);
        *b++ = '}';
        p = PUT(p, "PUB ");
        p = put_s(p, subj + (size_t)e->locate * stride, sl);
        p = bbo ? PUT(p, "bbo ") : PUT(p, "trade ");
        p = put_u64(p, (uint64_t)(b - body));
        p = PUT(p, "\r\n");
        p = put_s(p, body, (size_t)(b - body));
        p = PUT(p, "\r\n");
        if (bbo)
            ++*nbbo;
        else
            ++*ntrade;
    }
    *done = i;
    return (size_t)(p - out);
}
