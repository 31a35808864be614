/* Callgrind's client requests for fh's measured programs (fh-dataplane's loops, fh-bench-engine's measured call):
 * run under `valgrind --tool=callgrind --instr-atstart=no`, a program instruments only what lies between
 * CALLGRIND_START_INSTRUMENTATION and CALLGRIND_STOP_INSTRUMENTATION, and leaves its start-up uninstrumented (the
 * engine writing every page of its tables, EAL: most of a short run's time under callgrind). From valgrind's own
 * header where it is installed (scripts/setup.sh installs valgrind); outside valgrind each request is a few
 * instructions. Without the header, or with FH_NO_CALLGRIND_REQUESTS, they are nothing: a run under
 * --instr-atstart=no then counts nothing, and the tools that use it (fh bench engine and dataplane --callgrind,
 * bench/callgrind.sh) run the program again instrumented throughout. */
#ifndef FH_INSTRUMENT_H
#define FH_INSTRUMENT_H

#if defined(__has_include) && !defined(FH_NO_CALLGRIND_REQUESTS)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#endif
