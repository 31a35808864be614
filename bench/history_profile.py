#!/usr/bin/env python3
"""Where the history writer's CPU goes (bench/history.md, the writer's profile): `build_day` on a daily ITCH file
with the source's thread split by stage (thread CPU time of each call: the engine's apply, fh_hist_decode and
its Python around it, the events, the book snapshots, the message index) and the writer threads' CPU by table
and stage (`write_cpu_by_stage`: the partition sorted and made into Arrow arrays, then Parquet encoding and zstd).

    python bench/history_profile.py DAY.itch [--work /tmp/fh-hp]

Prints one JSON object. The timing wrappers cost a few microseconds a call (a few hundred calls a day)."""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("day")
    p.add_argument("--work", default="/tmp/fh-history-profile")
    a = p.parse_args()
    from handler import native
    from handler.history import columns as C
    from handler.history.source import ItchFileSource, build_day

    cpu: collections.Counter = collections.Counter()

    class Timed:  # the C calls of handler.history.columns, each timed on its thread
        def __init__(self, lib):
            self._lib = lib

        def __getattr__(self, k):
            f = getattr(self._lib, k)
            if not callable(f):
                return f

            def g(*args):
                t = time.thread_time()
                try:
                    return f(*args)
                finally:
                    cpu[k] += time.thread_time() - t
            return g

    def timed(cls, name: str, key: str) -> None:
        f = getattr(cls, name)

        def g(*args, **kw):
            t = time.thread_time()
            try:
                return f(*args, **kw)
            finally:
                cpu[key] += time.thread_time() - t
        setattr(cls, name, g)

    def timed_gen(cls, name: str, key: str) -> None:
        f = getattr(cls, name)

        def g(*args, **kw):
            t = time.thread_time()
            for x in f(*args, **kw):
                cpu[key] += time.thread_time() - t
                yield x
                t = time.thread_time()
            cpu[key] += time.thread_time() - t
        setattr(cls, name, g)

    C.lib = Timed(C.lib)
    timed(native.Engine, "apply_blocks", "engine apply")
    timed(C.ItchColumns, "_decode", "_decode (fh_hist_decode and its arrays)")
    timed(C.ItchColumns, "_events", "_events (fh_hist_events and its arrays)")
    timed(C.ItchColumns, "_index", "_index (fh_blocks_index)")
    timed_gen(C.ItchColumns, "_snapshots", "_snapshots (book snapshots)")
    out = Path(a.work)
    shutil.rmtree(out, ignore_errors=True)
    la = round(os.getloadavg()[0], 2)
    src = ItchFileSource(a.day)
    r = build_day(src, out, "2026-01-02")
    src.close()
    n = r["messages"]
    res = {"messages": n, "loadavg": [la, round(os.getloadavg()[0], 2)], "wall_s": r["seconds"],
           "cpu_s": r["cpu_seconds"], "cpu_s_per_million": round(r["cpu_seconds"] / n * 1e6, 3),
           "decode_thread_cpu_s": r["decode_cpu_seconds"],
           "decode_by_stage_s": {k: round(v, 3) for k, v in cpu.most_common()},
           "write_cpu_s": r["write_cpu_seconds"], "write_by_stage_s": r["write_cpu_by_stage"],
           "decoded_s": r["decoded_seconds"], "writer_wait_s": r["writer_wait_seconds"], "tail_s": r["tail_seconds"]}
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
