"""`fh bench engine`: the C book engine on one core, in the same run as a parse-only pass (the floor) and,
when the PyPI package itch-book is installed, itch-book on the same bytes. With --callgrind, also the
instructions a message of the engine (private books), the engine publishing (seqlocks and events) and the
parse-only pass, counted by callgrind on the same day: the repeatable figures the issue's targets are set in
(<= 100 for the engine, <= 30 for publishing: the difference of the two)."""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ..errors import FhError

TARGET_ENGINE = 100      # instructions a message, fh_engine_apply_blocks with private books
TARGET_PUBLISHING = 30   # instructions a message, publishing on less publishing off
SHAPE_SETS = {"both": ("uniform", "real"), "all": ("uniform", "real", "real-late")}  # --shape: several days
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)", re.M)
CALLGRIND_TIMEOUT_S = 7200  # a 20 M-message day is about 30 s instrumented late


def _pin(cpu: int | None) -> int | None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        target = cpus[-1] if cpu is None else cpu
        os.sched_setaffinity(0, {target})
        return target
    except OSError:
        return None


def _time(fn, repeats: int, before=None) -> list[float]:
    out = []
    for _ in range(repeats):
        if before:
            before()
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def _stats(ns: list[float], messages: int) -> dict:
    per = [t / messages for t in ns]
    med = statistics.median(per)
    return {"min_ns_per_msg": round(min(per), 2), "median_ns_per_msg": round(med, 2),
            "msgs_per_s": round(1e9 / med)}


def bench_engine(a) -> int:
    """One day (--itch, or --shape uniform/real/real-late), or several shapes one after the other (--shape both:
    uniform and real; all: the three)."""
    from . import plot

    shape = getattr(a, "shape", "uniform")
    chart = getattr(a, "plot", None)
    plot.check(chart)
    if a.itch or shape not in SHAPE_SETS:
        res = _bench_one(a, None if a.itch else shape)
    else:
        days = []
        for s in SHAPE_SETS[shape]:
            days.append(_bench_one(a, s, collect=a.json))
            if not a.json:
                sys.stdout.write("\n")
        res = {"days": days}
        if a.json:
            print(json.dumps(res))
    if chart:
        plot.engine(res, chart)
    return 0


def callgrind_counts(day: Path, program: str | None = None) -> dict:
    """Instructions a message on the daily ITCH file `day`, under callgrind, with fh-bench-engine (`program`, or
    $FH_BENCH_ENGINE, PATH, this checkout's build): `engine` (fh_engine_apply_blocks, private books), `publish`
    (the same into a shared segment of its own: seqlocks and events), `parse_only` (fh_itch_scan), and
    `publishing` (publish - engine). Each run counts only inside the function it toggles on, so mapping the day
    and creating the engine are left out; the same build and day give the same counts (bench/callgrind.sh's
    method)."""
    from .. import process, segments
    from .dataplane import _need_valgrind, program_stderr

    _need_valgrind()
    prog = program or process.find_program("fh-bench-engine", "FH_BENCH_ENGINE", "bench")
    if prog is None:
        raise FhError("fh-bench-engine not found: it is built with the C core (bash scripts/setup.sh), or set "
                      "FH_BENCH_ENGINE")
    seg = f"/dev/shm/fh-bench-engine-{uuid.uuid4().hex[:8]}"
    out: dict = {"program": prog}
    raw: dict = {}

    def run(mode: str, fn: str, late: bool) -> tuple[int, int]:
        name = f"callgrind run of {Path(prog).name} ({mode})"
        try:
            p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                                f"--toggle-collect={fn}", *(["--instr-atstart=no"] if late else []), prog, str(day),
                                "1", mode], capture_output=True, text=True,
                               env={**os.environ, "FH_BENCH_SEGMENT": seg}, timeout=CALLGRIND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise FhError(f"{name} did not finish in {CALLGRIND_TIMEOUT_S} s: give it a shorter day (--messages, or "
                          f"a shorter --itch file)") from None
        got = _COLLECTED.findall(p.stderr)
        line = next((x for x in p.stdout.splitlines() if x.startswith("{")), None)
        try:
            msgs = json.loads(line)["messages"] if line else None
        except ValueError:  # e.g. its ns figures inf or nan on a day of no messages
            msgs = None
        if p.returncode != 0 or not got or msgs is None:
            cause = (program_stderr(p.stderr) or ["no output"])[-1]  # the program's, not valgrind's summary
            raise FhError(f"{name} failed (exit status {p.returncode}): {cause}")
        return int(got[-1]), msgs

    try:
        for mode, fn in (("engine", "fh_engine_apply_blocks"), ("publish", "fh_engine_apply_blocks"),
                         ("scan", "fh_itch_scan")):
            # instrumented from the measured call on (the program's client requests: ten times faster); a
            # program built without valgrind's header counts nothing so, and runs instrumented throughout
            ir, msgs = run(mode, fn, True)
            if ir == 0:
                ir, msgs = run(mode, fn, False)
            if ir == 0 or msgs == 0:
                raise FhError(f"callgrind counted nothing in {fn} ({mode}): is {prog} stripped?")
            out["messages"] = msgs
            raw["parse_only" if mode == "scan" else mode] = ir / msgs
    finally:
        segments.remove(seg)  # and its wake page, if a run failed before removing them itself
    raw["publishing"] = raw["publish"] - raw["engine"]
    out.update({k: round(v, 2) for k, v in raw.items()})  # rounded for the report; the verdicts below are not
    out["targets"] = {"engine": TARGET_ENGINE, "publishing": TARGET_PUBLISHING}
    out["engine_target_met"] = raw["engine"] <= TARGET_ENGINE
    out["publishing_target_met"] = raw["publishing"] <= TARGET_PUBLISHING
    return out


def _callgrind_day(a, data: bytes) -> dict:
    """callgrind_counts on this run's day: the --itch file, or the generated bytes written to a temporary file."""
    if a.itch:
        return callgrind_counts(Path(a.itch))
    with tempfile.NamedTemporaryFile(prefix="fh-bench-day-", suffix=".itch") as f:
        f.write(data)
        f.flush()
        return callgrind_counts(Path(f.name))


def _bench_one(a, shape: str | None, collect: bool = False):
    from .. import native

    cpu = _pin(a.cpu)
    t0 = time.perf_counter()
    if a.itch:
        from .. import inputs

        a.itch = str(inputs.require(a.itch, "itch", "--itch"))
        with open(a.itch, "rb") as f:
            data = f.read()
        source = a.itch
    else:
        data = native.synth_bytes(a.messages, a.instruments, a.seed, shape=shape)
        source = f"synth: {a.messages} messages, {a.instruments} instruments, seed {a.seed}, shape {shape}"
    gen_s = time.perf_counter() - t0
    messages, _ = native.itch_scan(data)

    eng = native.Engine()
    eng.apply_blocks(data)  # warm-up: faults in every page the day touches
    res = {"source": source, "shape": shape or "file", "bytes": len(data), "messages": messages, "cpu": cpu,
           "repeats": a.repeats, "generate_s": round(gen_s, 2)}
    res["parse_only"] = _stats(_time(lambda: native.itch_scan(data), a.repeats), messages)
    res["engine"] = _stats(_time(lambda: eng.apply_blocks(data), a.repeats, eng.reset), messages)
    counters = eng.counters()
    res["engine"].update({
        "live_orders_at_end": eng.live_orders,
        "levels_peak": eng.levels_peak,
        "footprint_mb": round(eng.footprint / 2**20, 1),
        "anomalies": {k: v for k, v in counters.items() if v and not k.startswith("type_") and k != "messages"},
    })
    try:
        import itch_book
        from itch_book._core import Session
    except ImportError:
        itch_book = None
    if itch_book is not None and not a.no_itch_book:
        arr = __import__("numpy").frombuffer(data, dtype="uint8")
        sessions = []

        def new_session():
            sessions.clear()
            s = Session(tables=["bbo"], depth=0, symbols=[])
            s.reserve(messages)
            sessions.append(s)

        ib = _stats(_time(lambda: sessions[0].feed(arr), a.repeats, new_session), messages)
        ib["version"] = itch_book.__version__
        ib["messages_decoded"] = sessions[0].stats()["messages"]
        res["itch_book"] = ib
        res["speedup_vs_itch_book"] = round(ib["median_ns_per_msg"] / res["engine"]["median_ns_per_msg"], 2)
    elif not a.no_itch_book:
        res["itch_book_skipped"] = "itch-book is not installed: pip install itch-book (or fh[bench]) to compare"
    res["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if getattr(a, "callgrind", False):
        if not a.json:
            sys.stdout.flush()
            print("callgrind: the engine, the engine publishing and the parse-only pass ...", file=sys.stderr)
        res["callgrind"] = _callgrind_day(a, data)

    if collect:
        return res
    if a.json:
        print(json.dumps(res))
        return res
    from ..ui import fmt_bytes, fmt_rate, fmt_seconds, print_table

    w = sys.stdout.write
    w(f"input: {source} ({fmt_bytes(len(data))}, {messages:,} messages; generated in {fmt_seconds(gen_s)})\n")
    w(f"cpu: {cpu}, repeats: {a.repeats}\n")
    print_table(["pass", "min ns/msg", "median ns/msg", "median rate"],
                [(name.replace("_", " "), f"{res[name]['min_ns_per_msg']:.2f}", f"{res[name]['median_ns_per_msg']:.2f}",
                  fmt_rate(res[name]["msgs_per_s"])) for name in ("parse_only", "engine", "itch_book") if name in res])
    if "speedup_vs_itch_book" in res:
        w(f"engine vs itch-book {res['itch_book']['version']}: {res['speedup_vs_itch_book']}x the throughput\n")
    elif "itch_book_skipped" in res:
        w(f"no peer: {res['itch_book_skipped']}\n")
    e = res["engine"]
    w(f"engine memory: {e['footprint_mb']} MiB preallocated; {e['live_orders_at_end']:,} live orders at the end, "
      f"{e['levels_peak']:,} levels at the peak; process max RSS {res['max_rss_mb']} MiB\n")
    w(f"anomalies: {e['anomalies'] or 'none'}\n")
    if "callgrind" in res:
        c = res["callgrind"]
        yes = lambda met: "met" if met else "NOT met"  # noqa: E731
        print_table(["instructions a message (callgrind)", ""], [
            ("engine (fh_engine_apply_blocks)", f"{c['engine']:.2f}"),
            ("engine, publishing", f"{c['publish']:.2f}"),
            ("publishing (the difference)", f"{c['publishing']:.2f}"),
            ("parse-only (fh_itch_scan)", f"{c['parse_only']:.2f}")], right=[False, True])
        w(f"targets: engine <= {TARGET_ENGINE}: {yes(c['engine_target_met'])}; publishing <= {TARGET_PUBLISHING}: "
          f"{yes(c['publishing_target_met'])}\n")
    return res
