/* Thread-local error messages (see fh/common.h). */
#include <stdarg.h>
#include <stdio.h>

#include "fh/common.h"

static __thread char fh_err_buf[1024];

const char *fh_errmsg(void) { return fh_err_buf; }

void fh_err_clear(void) { fh_err_buf[0] = '\0'; }

int fh_err_set(const char *func, int line, const char *fmt, ...)
{
    int n = snprintf(fh_err_buf, sizeof fh_err_buf, "%s:%d: ", func, line);
    if (n < 0 || (size_t)n >= sizeof fh_err_buf)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fh_err_buf + n, sizeof fh_err_buf - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int fh_err_append(const char *fmt, ...)
{
    size_t n = strlen(fh_err_buf);
    if (n + 3 >= sizeof fh_err_buf)
        return -1;
    memcpy(fh_err_buf + n, "; ", 3);
    n += 2;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fh_err_buf + n, sizeof fh_err_buf - n, fmt, ap);
    va_end(ap);
    return -1;
}
