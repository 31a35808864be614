"""python native/bench/shm_py_snapshot.py SEGMENT [N] [DEPTH]: the cost of a Python snapshot of one book,
`handler.shm.Reader(SEGMENT).snapshot(locate, DEPTH)`, in ns: median, p99 and p99.9 of N (default 200,000)
calls timed one by one with time.perf_counter_ns (its own cost, measured back to back, is subtracted), and
the mean of N calls timed as one block. Locates: the 10 books with the most updates, in turn (as
fh-bench-shm-read's "hot" pattern). One JSON line. Run it pinned (taskset -c 1) against a held segment."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from handler.shm import Reader


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    r = Reader(sys.argv[1])
    locs = r.locates()
    updates = r.books["updates"][locs]
    hot = [int(x) for x in locs[np.argsort(-updates.astype(np.int64), kind="stable")[:10]]]
    k = len(hot)
    pc = time.perf_counter_ns
    snap = r.snapshot
    for i in range(20_000):  # warm up
        snap(hot[i % k], depth)
    t = [0] * n
    for i in range(n):
        a = pc()
        b = pc()
        t[i] = b - a
    t.sort()
    overhead = t[n // 2]
    for i in range(n):
        loc = hot[i % k]
        a = pc()
        snap(loc, depth)
        t[i] = pc() - a - overhead
    t.sort()
    locs_seq = [hot[i % k] for i in range(n)]
    a = pc()
    for loc in locs_seq:
        snap(loc, depth)
    block = (pc() - a) / n
    print(json.dumps({"python": "Reader.snapshot", "depth": depth, "books": k, "calls": n,
                      "median_ns": t[n // 2], "p99_ns": t[n * 99 // 100], "p999_ns": t[n * 999 // 1000],
                      "block_mean_ns": round(block, 1), "timer_overhead_ns": overhead}))
    r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
