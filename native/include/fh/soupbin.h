/* fh/soupbin.h: SoupBinTCP framing (NASDAQ's point-to-point sequenced protocol over TCP; docs/recovery.md has
 * the subset fh speaks and the public specification it follows). No sockets here: bytes in, packets out, and
 * packets encoded into caller buffers, so the framing is unit-tested and fuzzed alone (native/tests/test_soupbin.c,
 * native/fuzz/fuzz_soupbin.c); fh/glimpse.h drives a connection with it.
 *
 * A logical packet: a 2-byte big-endian length (of what follows: the type byte and the payload, so >= 1),
 * the type, the payload. TCP may split or join packets: fh_soup_next takes whatever bytes have arrived and
 * says whether a whole packet is there.
 *
 * Fields: Alpha = ASCII left-justified, space-padded on the right; Numeric = ASCII digits right-justified,
 * space-padded on the left. */
#ifndef FH_SOUPBIN_H
#define FH_SOUPBIN_H

#include "fh/common.h"

/* Packet types, server to client. */
#define FH_SOUP_DEBUG 0x2B          /* '+': debug text, ignored */
#define FH_SOUP_LOGIN_ACCEPTED 0x41 /* 'A': session (Alpha 10), sequence number of the next message (Numeric 20) */
#define FH_SOUP_LOGIN_REJECTED 0x4A /* 'J': reason code (1): 'A' not authorized, 'S' session not available */
#define FH_SOUP_SEQUENCED 0x53      /* 'S': one message of the sequenced stream */
#define FH_SOUP_SERVER_HB 0x48      /* 'H': server heartbeat (sent after 1 s without anything else) */
#define FH_SOUP_END_OF_SESSION 0x5A /* 'Z': the session has ended: nothing more will come */
/* Client to server ('U' unsequenced data goes both ways). */
#define FH_SOUP_UNSEQUENCED 0x55    /* 'U' */
#define FH_SOUP_LOGIN_REQUEST 0x4C  /* 'L': username (Alpha 6), password (Alpha 10), requested session (Alpha 10;
                                     * blank: the current one), requested sequence number (Numeric 20) */
#define FH_SOUP_CLIENT_HB 0x52      /* 'R': client heartbeat */
#define FH_SOUP_LOGOUT 0x4F         /* 'O': logout request */

#define FH_SOUP_USER_LEN 6
#define FH_SOUP_PASSWORD_LEN 10
#define FH_SOUP_SESSION_LEN 10
#define FH_SOUP_SEQ_LEN 20
#define FH_SOUP_LOGIN_LEN (1 + FH_SOUP_USER_LEN + FH_SOUP_PASSWORD_LEN + FH_SOUP_SESSION_LEN + FH_SOUP_SEQ_LEN) /* 47 */
#define FH_SOUP_ACCEPTED_LEN (1 + FH_SOUP_SESSION_LEN + FH_SOUP_SEQ_LEN)                                       /* 31 */
#define FH_SOUP_MAX_PAYLOAD 65534   /* the length field counts the type byte too */

typedef struct fh_soup_pkt {
    uint8_t type;
    uint16_t len;          /* payload bytes */
    const uint8_t *payload; /* into the caller's buffer */
} fh_soup_pkt_t;

/* The first packet of the len bytes at p. Returns the bytes it takes (3 + payload), 0 when the bytes are not
 * a whole packet yet (wait for more), or -1 when they cannot be one (a length field of 0). */
int fh_soup_next(const uint8_t *p, size_t len, fh_soup_pkt_t *out);

/* Write a packet of `type` with n payload bytes into out (cap bytes). Returns its size, or 0 if it does not
 * fit or n > FH_SOUP_MAX_PAYLOAD. */
size_t fh_soup_encode(uint8_t *out, size_t cap, uint8_t type, const void *payload, size_t n);

/* A login request packet (50 bytes with the header). user and password: NUL-terminated, longer ones refused;
 * session: 10 bytes, or NULL for blank (the server's current session). Returns its size, or 0 (with a
 * message) for a user longer than 6 or a password longer than 10 characters, or cap < 50. */
size_t fh_soup_login(uint8_t *out, size_t cap, const char *user, const char *password, const char *session,
                     uint64_t seq);

/* Parse a Login Accepted payload: session (10 bytes, as sent) and sequence number. 0, or -1 (with a message)
 * when the length is not 30 or the number is not Numeric. */
int fh_soup_parse_accepted(const uint8_t *p, size_t len, char session[FH_SOUP_SESSION_LEN], uint64_t *seq);
/* Parse a Login Request payload (46 bytes): user and password with their padding removed (NUL-terminated),
 * session as sent. 0, or -1 with a message. */
int fh_soup_parse_login(const uint8_t *p, size_t len, char user[FH_SOUP_USER_LEN + 1],
                        char password[FH_SOUP_PASSWORD_LEN + 1], char session[FH_SOUP_SESSION_LEN], uint64_t *seq);

/* Numeric: n ASCII bytes, spaces then at least one digit (no sign, no spaces after the first digit), the value
 * below 2^64. 0, or -1. */
int fh_soup_numeric(const uint8_t *p, size_t n, uint64_t *v);
/* Write v as Numeric in n bytes (space-padded on the left). 0, or -1 if it does not fit. */
int fh_soup_put_numeric(uint8_t *p, size_t n, uint64_t v);
/* Write s as Alpha in n bytes. 0, or -1 if s is longer than n. */
int fh_soup_put_alpha(uint8_t *p, size_t n, const char *s);

/* What a login rejection's reason code means, in words. */
const char *fh_soup_reject_reason(uint8_t code);

#endif
