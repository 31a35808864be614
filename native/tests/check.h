/* check.h: CHECK(cond, fmt, ...) for the C test programs that explain each failure in words (liburing-style
 * exit status: the program returns failures != 0). Stops after 50 failures. */
#ifndef FH_TEST_CHECK_H
#define FH_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;

static void fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (++failures > 50) {
        fprintf(stderr, "too many failures\n");
        exit(1);
    }
}

#define CHECK(cond, ...)                              \
    do {                                              \
        if (!(cond))                                  \
            fail_at(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#endif
