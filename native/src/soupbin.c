/* SoupBinTCP framing (fh/soupbin.h). */
#include "fh/soupbin.h"

int fh_soup_next(const uint8_t *p, size_t len, fh_soup_pkt_t *out)
{
    if (len < 2)
        return 0;
    uint16_t n = fh_be16(p);
    if (n == 0)
        return -1; /* every packet has at least its type byte */
    if (len < 2u + n)
        return 0;
    out->type = p[2];
    out->len = (uint16_t)(n - 1);
    out->payload = p + 3;
    return 2 + n;
}

size_t fh_soup_encode(uint8_t *out, size_t cap, uint8_t type, const void *payload, size_t n)
{
    if (n > FH_SOUP_MAX_PAYLOAD || cap < 3 + n)
        return 0;
    fh_put_be16(out, (uint16_t)(n + 1));
    out[2] = type;
    if (n)
        memcpy(out + 3, payload, n);
    return 3 + n;
}

int fh_soup_numeric(const uint8_t *p, size_t n, uint64_t *v)
{
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    if (i == n)
        return -1;
    uint64_t x = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

int fh_soup_put_numeric(uint8_t *p, size_t n, uint64_t v)
{
    char tmp[21];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if ((size_t)k > n)
        return -1;
    memset(p, ' ', n);
    for (int i = 0; i < k; i++)
        p[n - 1 - (size_t)i] = (uint8_t)tmp[i];
    return 0;
}

int fh_soup_put_alpha(uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    if (k > n)
        return -1;
    memset(p, ' ', n);
    memcpy(p, s, k);
    return 0;
}

size_t fh_soup_login(uint8_t *out, size_t cap, const char *user, const char *password, const char *session,
                     uint64_t seq)
{
    uint8_t pl[FH_SOUP_LOGIN_LEN - 1];
    if (fh_soup_put_alpha(pl, FH_SOUP_USER_LEN, user))
        return FH_ERR("username '%s' is longer than SoupBinTCP's %d characters", user, FH_SOUP_USER_LEN), 0;
    if (fh_soup_put_alpha(pl + 6, FH_SOUP_PASSWORD_LEN, password))
        return FH_ERR("the password is longer than SoupBinTCP's %d characters", FH_SOUP_PASSWORD_LEN), 0;
    if (session)
        memcpy(pl + 16, session, FH_SOUP_SESSION_LEN);
    else
        memset(pl + 16, ' ', FH_SOUP_SESSION_LEN);
    fh_soup_put_numeric(pl + 26, FH_SOUP_SEQ_LEN, seq); /* a u64 always fits 20 digits */
    size_t n = fh_soup_encode(out, cap, FH_SOUP_LOGIN_REQUEST, pl, sizeof pl);
    if (!n)
        FH_ERR("no room for a login request (%zu bytes)", cap);
    return n;
}

int fh_soup_parse_accepted(const uint8_t *p, size_t len, char session[FH_SOUP_SESSION_LEN], uint64_t *seq)
{
    if (len != FH_SOUP_ACCEPTED_LEN - 1)
        return FH_ERR("login accepted with %zu bytes, not %d", len, FH_SOUP_ACCEPTED_LEN - 1);
    if (fh_soup_numeric(p + FH_SOUP_SESSION_LEN, FH_SOUP_SEQ_LEN, seq))
        return FH_ERR("login accepted whose sequence number is not a number");
    memcpy(session, p, FH_SOUP_SESSION_LEN);
    return 0;
}

static void unpad(char *dst, const uint8_t *src, size_t n)
{
    memcpy(dst, src, n);
    dst[n] = 0;
    while (n && dst[n - 1] == ' ')
        dst[--n] = 0;
}

int fh_soup_parse_login(const uint8_t *p, size_t len, char user[FH_SOUP_USER_LEN + 1],
                        char password[FH_SOUP_PASSWORD_LEN + 1], char session[FH_SOUP_SESSION_LEN], uint64_t *seq)
{
    if (len != FH_SOUP_LOGIN_LEN - 1)
        return FH_ERR("login request with %zu bytes, not %d", len, FH_SOUP_LOGIN_LEN - 1);
    if (fh_soup_numeric(p + 26, FH_SOUP_SEQ_LEN, seq))
        return FH_ERR("login request whose requested sequence number is not a number");
    unpad(user, p, FH_SOUP_USER_LEN);
    unpad(password, p + 6, FH_SOUP_PASSWORD_LEN);
    memcpy(session, p + 16, FH_SOUP_SESSION_LEN);
    return 0;
}

const char *fh_soup_reject_reason(uint8_t code)
{
    switch (code) {
    case 'A': return "not authorized (wrong username or password)";
    case 'S': return "session not available (the requested session is not the server's)";
    default: return "an unknown reason code";
    }
}
