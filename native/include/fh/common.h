/* fh/common.h: byte-order loads, branch hints and the error convention shared by every fh module.
 *
 * Errors (after Aeron's aeron_error.h): a function that fails returns -1 (or NULL) and sets a
 * thread-local message naming the function and the cause; fh_errmsg() reads it. Hot-path functions
 * never fail this way: they count anomalies instead. */
#ifndef FH_COMMON_H
#define FH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FH_LIKELY(x)   __builtin_expect(!!(x), 1)
#define FH_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FH_CACHE_LINE  64
#define FH_ALIGNED     __attribute__((aligned(FH_CACHE_LINE)))

static inline uint16_t fh_be16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }
static inline uint32_t fh_be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
static inline uint64_t fh_be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
static inline uint64_t fh_be48(const uint8_t *p) { return ((uint64_t)fh_be16(p) << 32) | fh_be32(p + 2); }

static inline void fh_put_be16(uint8_t *p, uint16_t v) { v = __builtin_bswap16(v); memcpy(p, &v, 2); }
static inline void fh_put_be32(uint8_t *p, uint32_t v) { v = __builtin_bswap32(v); memcpy(p, &v, 4); }
static inline void fh_put_be64(uint8_t *p, uint64_t v) { v = __builtin_bswap64(v); memcpy(p, &v, 8); }
static inline void fh_put_be48(uint8_t *p, uint64_t v) { fh_put_be16(p, (uint16_t)(v >> 32)); fh_put_be32(p + 2, (uint32_t)v); }

/* The last error of this thread, "function:line: message[; context...]". Never NULL. */
const char *fh_errmsg(void);
/* Set the error (replacing any earlier one) / append context as it travels up. Return -1. */
int fh_err_set(const char *func, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fh_err_append(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fh_err_clear(void);
#define FH_ERR(...) fh_err_set(__func__, __LINE__, __VA_ARGS__)

#endif
