/* fh/itch.h: NASDAQ TotalView-ITCH 5.0 message layouts.
 *
 * Every message starts with an 11-byte header: type (1), stock locate (2), tracking number (2),
 * timestamp (6, ns since midnight), all big-endian. fh_itch_len[type] is the exact length of each of the
 * 23 message types of the 5.0 specification, 0 for a type that is not one of them; callers check a block
 * against it before reading any field (fh_itch_check). The FH_ITCH_OFF_* offsets are the fields the book
 * engine reads on its hot path; fh_itch_fields() describes every field of every type for decoders. */
#ifndef FH_ITCH_H
#define FH_ITCH_H

#include "fh/common.h"

#define FH_ITCH_HDR_LEN 11
#define FH_ITCH_MAX_LEN 50
#define FH_ITCH_JSON_MAX 4096 /* enough for any message as JSON */

extern const uint8_t fh_itch_len[256];

/* Header fields. */
static inline uint16_t fh_itch_locate(const uint8_t *m)    { return fh_be16(m + 1); }
static inline uint16_t fh_itch_tracking(const uint8_t *m)  { return fh_be16(m + 3); }
static inline uint64_t fh_itch_timestamp(const uint8_t *m) { return fh_be48(m + 5); }

/* Hot-path field offsets (bytes from the type byte). */
enum {
    FH_ITCH_OFF_REF    = 11, /* A F E C X D P: order reference number (8); U: original reference */
    FH_ITCH_OFF_A_SIDE = 19, FH_ITCH_OFF_A_SHARES = 20, FH_ITCH_OFF_A_STOCK = 24, FH_ITCH_OFF_A_PRICE = 32,
    FH_ITCH_OFF_E_SHARES = 19, FH_ITCH_OFF_E_MATCH = 23, /* E and C */
    FH_ITCH_OFF_C_PRINTABLE = 31, FH_ITCH_OFF_C_PRICE = 32,
    FH_ITCH_OFF_X_SHARES = 19,
    FH_ITCH_OFF_U_NEWREF = 19, FH_ITCH_OFF_U_SHARES = 27, FH_ITCH_OFF_U_PRICE = 31,
    FH_ITCH_OFF_R_STOCK = 11,
    FH_ITCH_OFF_H_STOCK = 11, FH_ITCH_OFF_H_STATE = 19,
    FH_ITCH_OFF_P_SHARES = 20, FH_ITCH_OFF_P_PRICE = 32,
};

/* Result of checking a block of len bytes that should hold one message. */
typedef enum fh_itch_check {
    FH_ITCH_OK = 0,
    FH_ITCH_LONG = 1,     /* longer than the spec: the known prefix is valid */
    FH_ITCH_UNKNOWN = -1, /* type byte is not an ITCH 5.0 type (or len == 0) */
    FH_ITCH_SHORT = -2,   /* shorter than the type's spec length */
} fh_itch_check_t;

static inline fh_itch_check_t fh_itch_check(const uint8_t *m, size_t len)
{
    if (FH_UNLIKELY(len == 0))
        return FH_ITCH_SHORT;
    size_t want = fh_itch_len[m[0]];
    if (FH_LIKELY(len == want))
        return FH_ITCH_OK;
    if (want == 0)
        return FH_ITCH_UNKNOWN;
    return len < want ? FH_ITCH_SHORT : FH_ITCH_LONG;
}

/* Field descriptors, for decoders (not the hot path). */
typedef enum fh_itch_kind {
    FH_F_ALPHA = 1, /* ASCII, right-padded with spaces; width 1..8 */
    FH_F_UINT = 2,  /* big-endian unsigned; width 2, 4, 6 or 8 */
    FH_F_PRICE4 = 3,
    FH_F_PRICE8 = 4,
} fh_itch_kind_t;

typedef struct fh_itch_field {
    const char *name; /* spec name in snake_case */
    uint8_t kind;     /* fh_itch_kind_t */
    uint8_t offset;
    uint8_t width;
} fh_itch_field_t;

/* The fields of message type t in order, header first; *n receives their number. NULL if t is unknown. */
const fh_itch_field_t *fh_itch_fields(uint8_t t, size_t *n);

/* Write message m (len bytes) as one JSON object, without a newline, in the format of
 * docs/decode-format.md, into out (cap bytes, NUL-terminated). Returns the length written, or
 * FH_ITCH_UNKNOWN / FH_ITCH_SHORT (nothing written), or -3 if cap is below FH_ITCH_JSON_MAX. */
int fh_itch_to_json(const uint8_t *m, size_t len, char *out, size_t cap);

/* Parse-only pass (the benchmark's floor): walk the 2-byte-length blocks in [p, p+len), check each message
 * and read the fields the book engine reads, without building anything. Returns the number of messages;
 * *sum receives a checksum of the fields (so that the work cannot be optimised away). */
uint64_t fh_itch_scan(const uint8_t *p, size_t len, uint64_t *sum);

/* The length of the longest run of whole 2-byte-length blocks at p that fits in max_bytes (at least one
 * block when the first is whole, whatever its size): for splitting a day into chunks. */
size_t fh_blocks_prefix(const uint8_t *p, size_t len, size_t max_bytes);

/* Index the 2-byte-length blocks in [p, p+len) (len < 4 GiB): off[i] receives the offset from p of the i-th
 * message (the byte after its length), for at most cap messages. Returns how many were written; *used (if
 * not NULL) receives the bytes of the whole blocks they span. Lets a columnar decoder (fh history) gather
 * fixed-layout fields with vector code instead of walking the chain itself. */
uint64_t fh_blocks_index(const uint8_t *p, size_t len, uint32_t *off, uint64_t cap, size_t *used);

#endif
