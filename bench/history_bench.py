#!/usr/bin/env python3
"""Figures for bench/history.md: Parquet bytes per message against the raw ITCH day and its gzip, the
history writer's messages/s (wall and CPU), fh query times (one symbol-hour, whole-day aggregates), and
fh gateway's events/s and publish-stamp -> subscriber latency at a paced 100 k events/s.

    python bench/history_bench.py --messages 20000000 --instruments 8000 --work /tmp/fh-hb [--skip-gzip]

Everything runs in one process tree on this host: a generated day (fh synth itch), a local nats-server.
Prints one JSON object (and keeps the files under --work for inspection)."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def gzip_size(path: Path) -> int:
    n = 0
    co = gzip.compress  # noqa: F841 (the module's default level, 9, is what `gzip FILE` uses? no: gzip(1) uses 6)
    import zlib

    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += len(z.compress(chunk))
    return n + len(z.flush())


def history_source_module(before: str | None):
    """handler.history.source, or (before = a git revision) that revision's handler/history/{columns,writer,
    source}.py loaded beside it as handler.history._before_*, on the same native library (a revision whose Python
    calls only functions this library still has): the writer's figures before and after a change in one session."""
    if not before:
        from handler.history import source

        return source
    import importlib.util
    import tempfile

    import handler.history  # noqa: F401 (the package the revision's modules load into)

    tmp = Path(tempfile.mkdtemp(prefix="fh-history-before-"))
    mods = {}
    for name in ("columns", "writer", "source"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{before}:handler/history/{name}.py"], check=True,
                              capture_output=True, text=True).stdout
        for dep in ("columns", "writer"):
            text = text.replace(f"from .{dep} import", f"from ._before_{dep} import")
        path = tmp / f"_before_{name}.py"
        path.write_text(text)
        full = f"handler.history._before_{name}"
        spec = importlib.util.spec_from_file_location(full, path)
        mods[name] = importlib.util.module_from_spec(spec)
        sys.modules[full] = mods[name]
        spec.loader.exec_module(mods[name])
    shutil.rmtree(tmp)
    return mods["source"]


def bench_writer(day: Path, out: Path, before: str | None = None) -> dict:
    source = history_source_module(before)
    shutil.rmtree(out, ignore_errors=True)
    src = source.ItchFileSource(day)
    la = loadavg()
    res = source.build_day(src, out, "2026-01-02")
    src.close()
    per_table = {}
    for t in ("orders", "bbo", "trades", "books"):
        per_table[t] = sum(f.stat().st_size for f in (out / t).rglob("*.parquet"))
    return {"code": f"before ({before})" if before else "this tree",
            "messages": res["messages"], "wall_s": res["seconds"], "cpu_s": res["cpu_seconds"],
            "decode_cpu_s": res["decode_cpu_seconds"], "write_cpu_s": res["write_cpu_seconds"],
            "write_cpu_by_stage": res.get("write_cpu_by_stage"),
            "decoded_s": res["decoded_seconds"], "writer_wait_s": res["writer_wait_seconds"], "tail_s": res["tail_seconds"],
            "cpu_s_per_million": round(res["cpu_seconds"] / res["messages"] * 1e6, 3), "loadavg_at_end": loadavg(),
            "messages_per_s_wall": res["messages_per_s"], "messages_per_cpu_s": round(res["messages"] / res["cpu_seconds"]),
            "rows": res["rows"], "bytes": res["bytes"], "bytes_by_table": per_table, "loadavg_at_start": la}


def bench_queries(root: Path, repeats: int = 5) -> dict:
    from handler.history import query

    con = query.connect(root)
    sym = con.sql("SELECT symbol FROM trades GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchall()[0][0]
    qs = {
        "symbol_hour_quotes": (f"SELECT count(*), avg(ask_price - bid_price) FROM bbo WHERE date = '2026-01-02' AND hour = 11 "
                               f"AND symbol = '{sym}'"),
        "symbol_hour_trades_rows": (f"SELECT * FROM trades WHERE date = '2026-01-02' AND hour = 11 AND symbol = '{sym}' ORDER BY seq"),
        "symbol_hour_orders_rows": (f"SELECT * FROM orders WHERE date = '2026-01-02' AND hour = 11 AND symbol = '{sym}' ORDER BY seq"),
        # the files are sorted by (symbol, seq) and DuckDB keeps the file order: one symbol's rows come in
        # sequence order without the sort
        "symbol_hour_orders_rows_file_order": (f"SELECT * FROM orders WHERE date = '2026-01-02' AND hour = 11 "
                                               f"AND symbol = '{sym}'"),
        "day_vwap_all_symbols": "SELECT symbol, sum(price * shares) / sum(shares) FROM trades GROUP BY symbol",
        "day_orders_by_symbol_type": "SELECT symbol, type, count(*), sum(shares) FROM orders GROUP BY ALL",
        "day_spread_stats": ("SELECT symbol, avg(ask_price - bid_price), median(ask_price - bid_price) FROM bbo "
                             "WHERE bid_price > 0 AND ask_price > 0 GROUP BY symbol"),
        "day_1m_bars_all_symbols": ("SELECT symbol, ts_ns // 60000000000 AS m, arg_min(price, seq), max(price), min(price), "
                                    "arg_max(price, seq), sum(shares) FROM trades GROUP BY ALL"),
    }
    # what `fh query trades|quotes SYM --from 11:00 --to 12:00` runs: with the manifest's seq_order, no sort
    ordered = query.seq_ordered(root, "2026-01-02")
    for what in ("trades", "quotes"):
        a = argparse.Namespace(date="2026-01-02", symbol=sym, start="11:00", end="12:00", limit=10**9)
        qs[f"fh_query_{what}_symbol_hour"] = query.sql_for(what, a, ordered)[:2]
    out = {"symbol": sym, "loadavg": loadavg(), "seq_order": ordered}
    for name, sql in qs.items():
        sql, params = sql if isinstance(sql, tuple) else (sql, None)
        times, cpus, rows = [], [], 0
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            rows = con.sql(sql, params=params).to_arrow_table().num_rows  # as a program takes it: columns
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        out[name] = {"median_ms": round(statistics.median(times) * 1e3, 1), "min_ms": round(min(times) * 1e3, 1),
                     "median_cpu_ms": round(statistics.median(cpus) * 1e3, 1), "rows": rows}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "handler", "query", "trades", sym, "--from", "11:00", "--to", "12:00",
                    "--root", str(root)], check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    out["cli_fh_query_trades_symbol_hour_ms"] = round((time.perf_counter() - t0) * 1e3)
    return out


def paced_publisher(day: Path, name: str, events_per_s: int, seconds: float, ready: Path) -> subprocess.Popen:
    """A child that applies the day into a fresh segment at about events_per_s (BBO + trade events), in
    1 ms steps (sleeping between them: no busy-wait)."""
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from handler import native
from handler.segments import writer_path
from pathlib import Path
data = Path({str(day)!r}).read_bytes()
seg = native.Segment(writer_path({name!r}, native.segment_footprint(4 << 20, 1 << 22)), {name!r}, event_capacity=1 << 22)
eng = native.Engine(native.EngineConfig.for_input(len(data)), segment=seg)
Path({str(ready)!r}).write_text('1')
time.sleep(1.0)  # the gateway joins and starts from the head
msgs_per_ms = max(1, int({events_per_s} / 0.45 / 1000))  # about 0.45 events a message in these days
off, t0, step = 0, time.monotonic(), 0
mv = memoryview(data)
while off < len(data) and time.monotonic() - t0 < {seconds}:
    n = native.blocks_prefix(mv[off:], msgs_per_ms * 31)
    if n == 0:
        break
    eng.apply_blocks(mv[off:off + n])
    off += n
    step += 1
    d = t0 + step / 1000 - time.monotonic()
    if d > 0:
        time.sleep(d)
eng.publish_stats()
time.sleep(3)
seg.close(unlink=True)
"""
    return subprocess.Popen([sys.executable, "-c", code])


def c_subscriber() -> Path | None:
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    found = sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-nats-sub"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def gateway_module(before: str | None):
    """handler.gateway.gateway, or (before = a git revision) that revision's gateway.py loaded beside it as
    handler.gateway._gateway_before, on the same native library: the figures before and after a change in one
    session."""
    if not before:
        from handler.gateway import gateway
        return gateway
    import importlib.util

    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{before}:handler/gateway/gateway.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path("/tmp") / f"fh-gateway-before-{os.getpid()}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("handler.gateway._gateway_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def paced_run(day: Path, work: Path, c, rate: int, seconds: float, csub: bool = False, before: str | None = None,
              direct: bool = True) -> dict:
    from handler.gateway.settings import Gateway as Settings

    Gateway = gateway_module(before).Gateway
    if not before:
        Gateway.DIRECT_WRITE = direct
    name2 = f"hb2-{os.getpid()}-{rate}-{'b' if before else 'a' if direct else 'q'}"
    ready = work / "ready"
    ready.unlink(missing_ok=True)
    pub = paced_publisher(day, name2, rate, seconds, ready)
    while not ready.exists():
        time.sleep(0.05)
    if csub:  # the C subscriber: the figure without a Python subscriber in it
        host, port = c.urls[0].rsplit("/", 1)[-1].rsplit(":", 1)
        sub = subprocess.Popen([str(c_subscriber()), host, port, f"fh.{name2}.*.bbo", str(seconds + 6)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    else:
        sub = subprocess.Popen([sys.executable, str(ROOT / "examples" / "nats_subscriber.py"), "--server", c.urls[0],
                                "--feed", name2, "--kind", "bbo", "--quiet", "--seconds", str(seconds + 6), "--latency"],
                               stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    wakes = [0]
    ticks = [0, 0, 0.0]  # book ticks, books sent, their CPU-s

    async def run_paced():
        gw = Gateway(name2, Settings(servers=tuple(c.urls), stream=False), name2, start="head")
        await gw.connect()
        loop = asyncio.get_running_loop()
        real_books = gw._books

        async def timed_books():  # the book tick's own CPU (the loop thread's, while it runs)
            c0, b0 = time.thread_time(), gw.counters["books"]
            await real_books()
            ticks[0] += 1
            ticks[1] += gw.counters["books"] - b0
            ticks[2] += time.thread_time() - c0

        gw._books = timed_books
        if before:  # the revision before waits in the executor: count its wakes there
            real = loop.run_in_executor

            def counted(*a):
                wakes[0] += 1
                return real(*a)

            loop.run_in_executor = counted
        t0 = time.perf_counter()
        res = await gw.run(idle_timeout=1.5)
        return res, time.perf_counter() - t0 - 1.5

    la = loadavg()
    c0 = time.process_time()
    res, wall = asyncio.run(run_paced())
    gw_cpu = time.process_time() - c0
    out, err = sub.communicate()
    pub.wait()
    k = res["counters"]
    if csub:
        got = json.loads(out) if out.strip() else err.strip()[-300:]
    else:
        got = [l for l in err.splitlines() if "-> subscriber" in l] or err.strip()[-300:] or None
    f = res.get("follower")
    if f:  # a wake: a blocking wait's return (an event, or the 50 ms timeout), as each executor call before
        wakes[0] = f["sleeps"] + f["spin_hits"]
    return {"gateway": f"before ({before})" if before else "this tree" + ("" if direct else ", nats-py's queue"),
            "target_events_per_s": rate,
            "events": k["events"], "achieved_events_per_s": round(k["events"] / wall),
            "published_bbo": k["bbo"], "gateway_cpu_s": round(gw_cpu, 3), "wall_s": round(wall + 1.5, 2),
            "cpu_share": round(gw_cpu / (wall + 1.5), 3), "wakes": wakes[0],
            "cpu_us_per_wake": round(gw_cpu * 1e6 / wakes[0], 1) if wakes[0] else None,
            "cpu_us_per_event": round(gw_cpu * 1e6 / k["events"], 2) if k["events"] else None,
            "book_ticks": ticks[0], "books": ticks[1], "book_tick_cpu_s": round(ticks[2], 4),
            "book_tick_cpu_share": round(ticks[2] / (wall + 1.5), 4),
            "book_tick_us_per_book": round(ticks[2] * 1e6 / ticks[1], 2) if ticks[1] else None,
            "follower": f, "conflated": k["bbo_conflated"], "dropped_trades": k["trades_dropped"],
            "overrun": k["overrun_events"], "subscriber": "c" if csub else "python", "latency": got,
            "loadavg": la, "loadavg_end": loadavg()}


def pump_only(name: str) -> dict:
    """The gateway's C follow loop alone (fh_gw_pump: read the ring, format the PUB commands) over a whole
    published day in the ring, no NATS: its CPU a event, the floor under the gateway's own cost."""
    import numpy as np

    from handler.gateway.gateway import Gateway
    from handler.gateway.settings import Gateway as Settings
    from handler._native import lib

    gw = Gateway(name, Settings(servers=("nats://127.0.0.1:1",), stream=False), name, start="oldest")
    p = gw._p
    best = None
    for _ in range(3):
        p.next, p.events = gw.r.oldest(), 0
        nbytes = 0
        c0 = time.thread_time()
        while True:
            w = lib.fh_gw_pump(gw.r._r, p, gw._cout, len(gw._cbuf))
            nbytes += w
            if p.stop == lib.FH_GW_NEED_PREFIX:
                gw._c_prefixes(np.array([p.stop_locate], np.int64))
            elif p.stop == lib.FH_GW_CAUGHT_UP:
                break
        cpu = time.thread_time() - c0
        best = cpu if best is None else min(best, cpu)
    gw.r.close()
    return {"events": int(p.events), "bytes": nbytes, "cpu_s": round(best, 4),
            "ns_per_event": round(best * 1e9 / p.events, 1), "events_per_cpu_s": round(p.events / best)}


def book_tick_only(name: str) -> dict:
    """The book tick alone over every book of a published day (no NATS): fh_gw_books (C, as Gateway._books
    calls it) against _book_py (the Python formatting it replaced, the same bytes), thread CPU time, best of 5."""
    import numpy as np

    from handler._native import ffi, lib
    from handler.gateway.gateway import SUBJ_STRIDE, Gateway
    from handler.gateway.settings import Gateway as Settings

    gw = Gateway(name, Settings(servers=("nats://127.0.0.1:1",), stream=False), name)
    locs = np.sort(gw.r.locates()).astype(np.uint16)
    assert gw._c_prefixes(locs.astype(np.int64))
    lp, depth, gw_ns = ffi.from_buffer("uint16_t[]", locs), gw.s.book_depth, time.time_ns()
    c_best = py_best = None
    for _ in range(5):
        gw._cn[0] = 0
        c0 = time.thread_time()
        w = lib.fh_gw_books(gw.r._r, lp, len(locs), depth, 1, gw_ns, gw._pkeep[0], gw._pkeep[1], SUBJ_STRIDE,
                            gw._cout, len(gw._cbuf), gw._cdone, gw._cn)
        cpu = time.thread_time() - c0
        assert gw._cdone[0] == len(locs)
        c_best = cpu if c_best is None else min(c_best, cpu)
        c0 = time.thread_time()
        py = [gw._book_py(int(loc), gw_ns) for loc in locs]
        cpu = time.thread_time() - c0
        py_best = cpu if py_best is None else min(py_best, cpu)
    books = int(gw._cn[0])
    gw.r.close()
    return {"books": books, "depth": depth, "bytes": int(w), "py_bytes": sum(len(b) for b in py if b),
            "c_us_per_book": round(c_best * 1e6 / books, 2), "py_us_per_book": round(py_best * 1e6 / books, 2),
            "py_over_c": round(py_best / c_best, 1)}


def bench_gateway(day: Path, work: Path, rates: list[int], seconds: float, csub: bool = False,
                  throughput: bool = True, before: str | None = None, queue: bool = False) -> dict:
    from handler import native
    from handler.gateway.gateway import Gateway
    from handler.gateway.natsrv import start_cluster
    from handler.gateway.settings import Gateway as Settings
    from handler.segments import writer_path

    out = {}
    with start_cluster(1, work / "nats") as c:
        if throughput:
            # 1. throughput: a whole published day, from the start of the ring, as fast as the gateway goes
            name = f"hb-{os.getpid()}"
            data = day.read_bytes()
            seg = native.Segment(writer_path(name, native.segment_footprint(4 << 20, 1 << 22)), name, event_capacity=1 << 22)
            eng = native.Engine(native.EngineConfig.for_input(len(data)), segment=seg)
            eng.apply_blocks(data)
            eng.publish_stats()
            out["pump_only"] = pump_only(name)
            out["book_tick_only"] = book_tick_only(name)
            print(json.dumps(out["book_tick_only"]), file=sys.stderr, flush=True)
            if csub:  # the C subscriber takes the BBOs (the Python one, everything, is slower than the gateway)
                host, port = c.urls[0].rsplit("/", 1)[-1].rsplit(":", 1)
                sub = subprocess.Popen([str(c_subscriber()), host, port, f"fh.{name}.*.bbo", "600", "2"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            else:
                sub = subprocess.Popen([sys.executable, str(ROOT / "examples" / "nats_subscriber.py"), "--server",
                                        c.urls[0], "--feed", name, "--kind", "*", "--quiet", "--seconds", "600",
                                        "--latency"], stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)

            async def run_all():
                gw = Gateway(name, Settings(servers=tuple(c.urls), stream=False), name, start="oldest")
                await gw.connect()
                t0, c0 = time.perf_counter(), time.process_time()
                res = await gw.run(idle_timeout=0.5)
                return res, time.perf_counter() - t0 - 0.5, time.process_time() - c0

            la = loadavg()
            res, wall, cpu = asyncio.run(run_all())
            if csub:
                got, _ = sub.communicate()
                got = json.loads(got)["messages"] if got.strip() else None
            else:
                sub.terminate()
                sub.communicate()
                got = None
            seg.close(unlink=True)
            k = res["counters"]
            out["throughput"] = {"events": k["events"], "published_bbo": k["bbo"], "published_trades": k["trades"],
                                 "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "events_per_s": round(k["events"] / wall),
                                 "events_per_cpu_s": round(k["events"] / cpu), "conflated": k["bbo_conflated"],
                                 "subscriber_bbo": got, "loadavg": la}
        # 2. latency at paced rates, conflation off: publish stamp (the engine's TSC at the start of the
        # message run) -> a subscriber process on the same host
        out["paced"] = []
        for rate in rates:  # with --before: that revision's gateway, then this tree's, at each rate in turn
            if before:
                out["paced"].append(paced_run(day, work, c, rate, seconds, csub, before))
                print(json.dumps(out["paced"][-1]), file=sys.stderr, flush=True)
            if queue:
                out["paced"].append(paced_run(day, work, c, rate, seconds, csub, direct=False))
                print(json.dumps(out["paced"][-1]), file=sys.stderr, flush=True)
            out["paced"].append(paced_run(day, work, c, rate, seconds, csub))
            print(json.dumps(out["paced"][-1]), file=sys.stderr, flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=20_000_000)
    p.add_argument("--instruments", type=int, default=8000)
    p.add_argument("--work", default="/tmp/fh-history-bench")
    p.add_argument("--skip-gzip", action="store_true")
    p.add_argument("--skip-gateway", action="store_true")
    p.add_argument("--gateway-messages", type=int, default=2_000_000)
    p.add_argument("--rates", default="10000,100000", help="paced events/s for the latency figures")
    p.add_argument("--skip-history", action="store_true", help="only the gateway figures")
    p.add_argument("--only-queries", action="store_true", help="only the query figures, over an existing --work history")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--c-subscriber", action="store_true",
                   help="the latency figures with fh-bench-nats-sub (C) as the subscriber instead of the Python example")
    p.add_argument("--skip-throughput", action="store_true", help="gateway: only the paced latency figures")
    p.add_argument("--before", metavar="REV", help="gateway: also the paced figures of REV's handler/gateway/gateway.py "
                                                    "(e.g. HEAD~1), each rate before this tree's, in one session")
    p.add_argument("--writer-before", metavar="REV", help="history: also REV's writer (handler/history/{columns,writer,"
                                                           "source}.py, e.g. b2c3d26) on the same day, just before this tree's")
    p.add_argument("--queue", action="store_true", help="gateway: also this tree's paced figures with every hand-off "
                                                        "through nats-py's queue and flusher (no direct socket write)")
    a = p.parse_args()
    from handler import native

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    day = work / f"day-{a.messages}.itch"
    if not day.exists() and not a.skip_history:
        native.synth_file(day, a.messages, a.instruments, seed=2026)
    res = {"messages": a.messages, "instruments": a.instruments, "raw_bytes": day.stat().st_size if day.exists() else None, "cpus": os.cpu_count()}
    if a.skip_history or a.only_queries:
        a.skip_gzip = True
    if not a.skip_gzip:
        t0 = time.perf_counter()
        res["gzip6_bytes"] = gzip_size(day)
        res["gzip6_s"] = round(time.perf_counter() - t0, 1)
    if a.skip_history:
        gday = work / f"gday-{a.gateway_messages}.itch"
        if not gday.exists():
            native.synth_file(gday, a.gateway_messages, 500, seed=2027)
        res["gateway"] = bench_gateway(gday, work, [int(r) for r in a.rates.split(",")], a.seconds, a.c_subscriber,
                                       not a.skip_throughput, a.before, a.queue)
        print(json.dumps(res, indent=1))
        return 0
    if a.only_queries:
        res["queries"] = bench_queries(work / "history")
        print(json.dumps(res, indent=1))
        return 0
    if a.writer_before:  # that revision's writer first, on the same day, then this tree's
        res["writer_before"] = bench_writer(day, work / "history-before", a.writer_before)
        print(json.dumps(res["writer_before"]), file=sys.stderr, flush=True)
    res["writer"] = w = bench_writer(day, work / "history")
    res["bytes_per_message"] = {"raw_itch": round(res["raw_bytes"] / a.messages, 2),
                                "gzip6_of_raw": round(res["gzip6_bytes"] / a.messages, 2) if "gzip6_bytes" in res else None,
                                "parquet_all_tables": round(w["bytes"] / a.messages, 2),
                                **{f"parquet_{t}": round(b / a.messages, 2) for t, b in w["bytes_by_table"].items()}}
    print(json.dumps(res), file=sys.stderr, flush=True)  # the writer's figures, before the queries
    res["queries"] = bench_queries(work / "history")
    print(json.dumps(res), flush=True)
    if a.only_queries:
        return 0
    if not a.skip_gateway:
        gday = work / f"gday-{a.gateway_messages}.itch"
        if not gday.exists():
            native.synth_file(gday, a.gateway_messages, 500, seed=2027)
        res["gateway"] = bench_gateway(gday, work, [int(r) for r in a.rates.split(",")], a.seconds, a.c_subscriber,
                                       not a.skip_throughput, a.before, a.queue)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
