"""`fh bench restart`: how long preparing a restart takes as a function of the day's position.

A synthetic day is recorded as `fh record` records it: journal files (one MSGS record per MoldUDP64 datagram,
handler.journal.JournalFileWriter) and, through the shadow engine (handler.snapshot.Shadow), a snapshot every
--snapshot-every messages. For each position (a fraction of the day: the data plane died there), a directory
holds the journal up to that point (files of --rotate-mb) and the snapshots taken before it, and `fh run`'s
restart is timed:
`handler.snapshot.restart_snapshot` (the newest sound snapshot loaded, the journal after it applied, the state
saved as restart.snap), split into

    load     fh_engine_snapshot_load of the newest snapshot (checked whole: both CRCs, every order)
    apply    the journal files after it, read and applied (messages/s)
    save     restart.snap written (temp + fsync + rename)
    total    restart_snapshot as fh run calls it (engine creation and the journal scan included)

and the data plane's own start from it is the `load` of restart.snap (the same C function). In the same run,
a baseline: the C engine applying the same journal messages from memory (fh_engine_apply_blocks over the
day's bytes), so `apply` reads as a ratio against the engine's own speed. Each position is the minimum of
--repeats runs. Timings on a shared machine vary; the ratios are steadier. bench/restart.md has figures.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

DAY = "20261203"
SESSION = "BENCH00001"


def record_day(day: bytes, out: Path, every: int, rotate_mb: int = 1024) -> list[int]:
    """The day as fh record writes it: journal files under out, snapshots under out/snapshots. Returns the
    datagrams' first sequences (record boundaries), and the sequence after the last."""
    from .. import journal as J
    from ..net import pcapgen
    from ..snapshot import Shadow

    w = J.JournalFileWriter(out, day=DAY, fsync="none", rotate_bytes=rotate_mb << 20)
    shadow = Shadow(out / "snapshots", every=every, keep=1 << 20, day=DAY)
    seq, firsts = 1, []
    for _, msgs in pcapgen.packetize(day):
        body = b"".join(len(m).to_bytes(2, "big") + m for m in msgs)
        r = J.Record(J.MSGS, SESSION, seq, len(msgs), len(body), body)
        w.write([r])
        shadow.apply(r)
        firsts.append(seq)
        seq += len(msgs)
        if shadow.due():
            w.sync()
            shadow.save()
    w.close()
    firsts.append(seq)
    return firsts


def cut_at(src: Path, dst: Path, upto: int) -> None:
    """dst: the journal of src up to sequence upto (exclusive, at a record boundary) and the snapshots before
    it: what the recorder had written when the data plane died there."""
    from .. import journal as J
    from ..snapshot import list_snapshots

    dst.mkdir(parents=True)
    (dst / "snapshots").mkdir()
    for p in list_snapshots(src / "snapshots"):
        if int(p.stem.rsplit("-", 1)[1]) <= upto:
            shutil.copy(p, dst / "snapshots" / p.name)
    for f in J.journal_files(src):  # the files as they were, the last one cut at upto
        h, recs, _ = J.read_journal_file(f)
        if h.first_seq >= upto:
            break
        keep = [r for r in recs if r.seq < upto]
        (dst / f.parent.name).mkdir(exist_ok=True)
        if len(keep) == len(recs):
            shutil.copy(f, dst / f.parent.name / f.name)
        else:
            data = f.read_bytes()
            n = J.FILE_HDR_SIZE + sum(len(J.encode_record(r)) for r in keep)
            (dst / f.parent.name / f.name).write_bytes(data[:n])


def time_restart(d: Path) -> dict:
    from .. import native
    from ..snapshot import _restart_capacity, list_snapshots, restart_snapshot, restore
    from .. import journal as J

    snaps = list_snapshots(d / "snapshots")
    files = J.journal_files(d)
    cfg = _restart_capacity(snaps, files)
    if snaps:  # the engine restart_snapshot ends up with: the default when the sized one cannot hold the state
        try:
            native.Engine(cfg).snapshot_load(snaps[-1])
        except native.NativeError:
            cfg = native.EngineConfig()
    e = native.Engine(cfg)
    t0 = time.perf_counter()
    used = None
    if snaps:
        used = e.snapshot_load(snaps[-1])
    t1 = time.perf_counter()
    e2 = native.Engine(cfg)
    got = restore(e2, d / "snapshots", d, log=open("/dev/null", "w"))
    t2 = time.perf_counter()
    restore_s = t2 - t1
    apply_s = max(restore_s - (t1 - t0), 1e-9)
    t3 = time.perf_counter()
    out = restart_snapshot(d, DAY, log=open("/dev/null", "w"))
    t4 = time.perf_counter()
    path, info = out
    t5 = time.perf_counter()
    e3 = native.Engine(cfg)
    e3.snapshot_load(path)
    t6 = time.perf_counter()
    return {"engine_orders": cfg.orders, "snapshot_next_seq": used["next_seq"] if used else None,
            "orders": info["restart"]["orders"],
            "snapshot_bytes": snaps[-1].stat().st_size if snaps else 0,
            "journal_messages": got["journal_messages"], "load_s": t1 - t0, "apply_s": apply_s,
            "apply_msgs_per_s": got["journal_messages"] / apply_s if got["journal_messages"] else None,
            "total_s": t4 - t3, "restart_load_s": t6 - t5,
            "next_seq": info["restart"]["next_seq"]}


def engine_baseline(day: bytes) -> float:
    """Messages/s of the C engine applying the day from memory (the same messages, one call)."""
    from .. import native

    n = sum(1 for _ in native.iter_blocks(day))
    e = native.Engine(native.EngineConfig.for_input(len(day)))
    t0 = time.perf_counter()
    e.apply_blocks(day)
    return n / (time.perf_counter() - t0)


def bench_restart(a) -> int:
    from .. import native
    from ..ui import fmt_int, print_json, print_table

    day = native.synth_bytes(a.messages, a.instruments, a.seed, shape=a.shape)
    points = [round((i + 1) / a.points, 4) for i in range(a.points)]
    with tempfile.TemporaryDirectory(prefix="fh-bench-restart-") as tmp:
        tmp = Path(tmp)
        full = tmp / "full"
        t0 = time.perf_counter()
        firsts = record_day(day, full, a.snapshot_every, a.rotate_mb)
        record_s = time.perf_counter() - t0
        last = firsts[-1]
        rows = []
        for p in points:
            upto = next(s for s in firsts if s - 1 >= p * (last - 1))  # a record boundary at or past p
            d = tmp / f"at-{p}"
            cut_at(full, d, upto)
            best = None
            for _ in range(a.repeats):
                r = time_restart(d)
                if best is None or r["total_s"] < best["total_s"]:
                    best = r
                (d / "restart.snap").unlink(missing_ok=True)
            assert best["next_seq"] == upto, (best, upto)  # complete to where the journal ends
            rows.append({"position": p, "messages_before": upto - 1, **best})
            shutil.rmtree(d)
        base = max(engine_baseline(day) for _ in range(a.repeats))
    res = {"messages": a.messages, "instruments": a.instruments, "shape": a.shape, "snapshot_every": a.snapshot_every,
           "repeats": a.repeats, "record_s": round(record_s, 3), "engine_msgs_per_s": round(base), "points": rows}
    for r in rows:
        r["apply_vs_engine"] = round(r["apply_msgs_per_s"] / base, 4) if r["apply_msgs_per_s"] else None
    if a.json:
        print_json(res)
        return 0
    print(f"fh bench restart: a {a.shape} day of {a.messages} messages, {a.instruments} instruments; a snapshot "
          f"every {a.snapshot_every} messages; minimum of {a.repeats} run(s); the C engine from memory: "
          f"{base / 1e6:.2f} M messages/s")
    columns = ("position", "before", "snapshot", "orders", "snap KiB", "journal", "load ms", "apply ms", "apply M/s",
               "vs eng", "total ms", "dp load ms")
    print_table(columns, [(f"{r['position']:.2f}", fmt_int(r["messages_before"]), fmt_int(r["snapshot_next_seq"]),
                           fmt_int(r["orders"]), f"{r['snapshot_bytes'] / 1024:.0f}", fmt_int(r["journal_messages"]),
                           f"{r['load_s'] * 1e3:.1f}", f"{r['apply_s'] * 1e3:.1f}",
                           f"{(r['apply_msgs_per_s'] or 0) / 1e6:.2f}", f"{r['apply_vs_engine'] or 0:.3f}",
                           f"{r['total_s'] * 1e3:.1f}", f"{r['restart_load_s'] * 1e3:.1f}") for r in rows],
                right=[True] * len(columns))
    return 0


def register(sub, positive, nonneg) -> None:
    b = sub.add_parser("restart", help="restart preparation time (snapshot load + journal apply) by the day's "
                                       "position")
    from ..process import sigterm_as_interrupt
    from . import add_day_options

    add_day_options(b, positive, messages=2_000_000, instruments=500)
    b.add_argument("--shape", choices=("uniform", "real", "real-late"), default="uniform")
    b.add_argument("--snapshot-every", type=positive, default=250_000, metavar="MESSAGES")
    b.add_argument("--rotate-mb", type=positive, default=64, help="journal file size (fh record --rotate-mb)")
    b.add_argument("--points", type=positive, default=5, help="positions: 1/N, 2/N, ... of the day")
    b.add_argument("--repeats", type=positive, default=3)
    from ..ui import add_json_flag

    add_json_flag(b, "fh bench restart")
    b.set_defaults(func=sigterm_as_interrupt(bench_restart))


if __name__ == "__main__":
    sys.exit("run it as: fh bench restart")
