"""`fh soak --minutes N`: replay a generated day again and again through the real data plane (fh-dataplane on
net_pcap), each loop under the next fault plan of a rotating set, with a reader following the event ring the
whole time; after each loop the books are checked against the reference model's, and one JSON line reports
the loop: the data plane's peak RSS, drops, MoldUDP64 counters, the reader's events and overruns, this
process's own RSS. A summary line ends it; the exit status is 1 if any loop's books differed (or the data plane
failed), else 0. What a long soak shows: no growth of RSS loop over loop, no drop, books right after every
fault. docs/hardening.md holds a 30-minute run.

The plans (docs/fault-plans.md), each checked its own way:
  clean             books equal the clean day's, every book live
  a-loss            line A drops and reorders, B covers it: equal, live, nothing lost
  b-dup-late        line B duplicates and is late: equal, live
  session-change    a new session mid-day: equal, live, one session change
  both-loss         a datagram lost on both lines, no request server: the books equal the reference model's of
                    the capture (what arrived), every book stale, the loss counted
(Loss on both lines filled by the retransmission server needs a veth lab: tests/test_recovery.py.)"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

PLANS: list[tuple[str, list[dict]]] = [
    ("clean", []),
    ("a-loss", [{"line": "A", "kind": "drop", "at": 10, "count": 3}, {"line": "A", "kind": "reorder", "at": 40,
                                                                       "count": 2}]),
    ("b-dup-late", [{"line": "B", "kind": "duplicate", "at": 20, "count": 3},
                    {"line": "B", "kind": "delay", "at": 60, "count": 2, "delay_us": 200}]),
    ("session-change", [{"kind": "session_change", "at": 50}]),
    ("both-loss", [{"line": "both", "kind": "drop", "at": 30, "count": 1}]),
]


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


class _Follower(threading.Thread):
    """A reader on the segment while the data plane runs: follows the event ring, counts events and overruns,
    and samples the data plane's RSS."""

    def __init__(self, segment: str, dp):
        super().__init__(daemon=True)
        self.segment, self.dp = segment, dp
        self.events = self.overruns = self.lost = 0
        self.rss_max = self.hwm = 0
        self.joined = False
        self.error: str | None = None

    def run(self) -> None:
        from .shm import Reader, ShmError

        r = None
        t_end = time.monotonic() + 30
        while r is None and self.dp.p.poll() is None and time.monotonic() < t_end:
            try:
                r = Reader(self.segment, wait_s=0.2)
            except ShmError:
                time.sleep(0.02)
        if r is None:
            self.error = "the reader could not join the segment"
            return
        self.joined = True
        try:
            nxt = 1
            while True:
                alive = self.dp.p.poll() is None
                if alive:
                    rss, hwm = _rss_kb(self.dp.p.pid)
                    self.rss_max, self.hwm = max(self.rss_max, rss), max(self.hwm, hwm)
                arr, nxt, lost = r.read_events(nxt)
                self.events += len(arr)
                if lost:
                    self.overruns += 1
                    self.lost += lost
                if not len(arr):
                    if not alive:
                        break
                    time.sleep(0.005)
        finally:
            r.close()


def _check(plan: str, books, status: dict, stats: dict, clean_books, pcap_books) -> list[str]:
    from .replay import diff_books

    m = stats["mold"]
    bad = []
    if plan == "both-loss":
        bad += diff_books(books, pcap_books)
        if set(status.values()) != {"stale"}:
            bad.append(f"books not all stale after a loss: {sorted(set(status.values()))}")
        if not m["lost"] or m["unrecoverable"] != 1:
            bad.append(f"the loss was not counted: lost {m['lost']}, unrecoverable {m['unrecoverable']}")
    else:
        bad += diff_books(books, clean_books)
        if set(status.values()) != {"live"}:
            bad.append(f"books not all live: {sorted(set(status.values()))}")
        if m["lost"]:
            bad.append(f"{m['lost']} messages lost")
        if plan == "session-change" and m["session_changes"] != 1:
            bad.append(f"session changes {m['session_changes']}, expected 1")
    if sum(stats["drops"].values()):
        bad.append(f"frames dropped: {stats['drops']}")
    return bad


def _datagrams_needed() -> int:
    """The datagrams a day must have for every plan's faults to fall inside it."""
    return max(f.get("at", 0) + f.get("count", 1) for _, plan in PLANS for f in plan)


def _enough_datagrams(day: bytes, messages: int, instruments: int) -> None:
    """InputError, naming a --messages that is enough, when the day is too short for the plans (the fault plan's
    own "at 10 is beyond the day's 3 datagrams" named neither the plans nor the fix)."""
    from . import native
    from .errors import InputError
    from .net import pcapgen

    need, have = _datagrams_needed(), len(pcapgen.packetize(day))
    if have >= need:
        return
    m = messages
    while have < need:  # (a day's datagrams grow with its messages: a few tries of small days)
        m = max(m + 1, -(-m * need // max(have, 1)))
        have = len(pcapgen.packetize(native.synth_bytes(m, instruments, 7)))
    raise InputError(f"the fault plans act on datagrams up to {need}, and a day of {messages} messages of "
                     f"{instruments} instrument{'s' if instruments > 1 else ''} makes {len(pcapgen.packetize(day))}: "
                     f"give --messages {m} or more")


def soak(minutes: float, messages: int = 20000, instruments: int = 20, loops: int | None = None,
         out=sys.stdout, events: int = 1 << 16) -> int:
    from . import faults, native, process, replay
    from .net import pcapgen
    from .shm import Reader
    from .ui import print_json

    day = native.synth_bytes(messages, instruments, 7)
    _enough_datagrams(day, messages, instruments)
    lines = [pcapgen.Line(*pcapgen.DEFAULT_A), pcapgen.Line(*pcapgen.DEFAULT_B, delay_ns=3000)]
    tmp = Path(tempfile.mkdtemp(prefix="fh-soak-"))
    caps = {}
    try:
        for name, plan in PLANS:
            p = tmp / f"{name}.pcap"
            pcapgen.synth_faulty_pcap(p, day, lines, faults.parse_plan({"fault": plan}))
            caps[name] = (p, replay.reference_books(p)[0])
        clean_books = caps["clean"][1]
        t0 = time.monotonic()
        deadline = t0 + minutes * 60
        n = failures = 0
        per_plan: dict[str, list[int]] = {}
        while (loops is None and time.monotonic() < deadline) or (loops is not None and n < loops):
            name, _ = PLANS[n % len(PLANS)]
            pcap, pcap_books = caps[name]
            seg_name = f"soak-{uuid.uuid4().hex[:8]}"
            segment = f"/dev/shm/fh-{seg_name}"
            extra = ["--gap-wait-us", "500"] if name == "both-loss" else []
            cmd = process.dataplane_cmd(replay.eal_args(seg_name, f"net_pcap0,rx_pcap={pcap}"), segment,
                                       replay.pcap_lines(pcap), exit_idle_ms=300, events=events, extra=extra)
            t1 = time.monotonic()
            dp = process.Dataplane(cmd)
            follow = _Follower(segment, dp)
            follow.start()
            rec: dict = {"loop": n + 1, "plan": name}
            try:
                stats = dp.wait(120)
                m = stats["mold"]
                follow.join(30)
                r = Reader(segment)
                try:
                    books = r.dump()
                    status = {b["locate"]: b["status"] for b in (r.book(int(loc), 0) for loc in r.locates())}
                finally:
                    r.close()
                bad = _check(name, books, status, stats, clean_books, pcap_books)
                if follow.error:
                    bad.append(follow.error)
                rec.update(ok=not bad, books=len(books), applied=m["applied"],
                           messages_applied=stats["messages_applied"], drops=sum(stats["drops"].values()), gaps=m["gaps"], lost=m["lost"],
                           duplicates=m["duplicates"], session_changes=m["session_changes"],
                           reader_events=follow.events, reader_overruns=follow.overruns,
                           reader_lost=follow.lost, dataplane_rss_kb=follow.rss_max,
                           dataplane_hwm_kb=follow.hwm, soak_rss_kb=_rss_kb(os.getpid())[0],
                           p99_ns=stats.get("latency_ns", {}).get("p99"))
                if bad:
                    rec["differences"] = bad[:5]
            except Exception as e:  # a data plane that failed is a failed loop, reported, not the end
                rec.update(ok=False, error=str(e)[-300:])
            finally:
                dp.close()
                process.remove_segment(segment)
            rec["wall_s"] = round(time.monotonic() - t1, 2)
            rec["elapsed_s"] = round(time.monotonic() - t0, 1)
            failures += not rec["ok"]
            if rec.get("dataplane_hwm_kb"):
                per_plan.setdefault(name, []).append(rec["dataplane_hwm_kb"])
            print_json([rec], out, lines=True, flush=True)
            n += 1
        summary = {"summary": True, "loops": n, "failures": failures, "minutes": round((time.monotonic() - t0) / 60, 2),
                   "dataplane_hwm_kb_by_plan": {k: {"first": v[0], "last": v[-1], "min": min(v), "max": max(v)}
                                                for k, v in per_plan.items()},
                   "soak_rss_kb": _rss_kb(os.getpid())[0]}
        print_json([summary], out, lines=True, flush=True)
        return 1 if failures else 0
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def cmd_soak(a) -> int:
    if a.minutes is None and a.loops is None:
        a.minutes = 1.0
    return soak(a.minutes or 0.0, messages=a.messages, instruments=a.instruments, loops=a.loops)


def register(sub, positive, nonneg) -> None:
    from .cli.argtypes import U64_MAX, _bounded
    from .process import sigterm_as_interrupt
    from .ui import HelpFormatter, examples

    s = sub.add_parser("soak", help="replay a day in loops under rotating fault plans through the data plane, "
                       "with a reader attached; books checked after each loop; RSS, drops, overruns over time",
                       formatter_class=HelpFormatter,
                       epilog=examples("fh soak --minutes 10", "fh soak --loops 5 --messages 50000"))
    def minutes(text: str) -> float:
        import argparse

        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected minutes, got {text!r}") from None
        if not 0 < v <= 7 * 24 * 60:  # (nan fails the comparison; a week is the longest soak taken)
            raise argparse.ArgumentTypeError(f"expected more than 0 and at most 10080 minutes (a week), got {text}")
        return v

    how_long = s.add_mutually_exclusive_group()
    how_long.add_argument("--minutes", type=minutes, default=None, help="run this long, whole loops (default: 1)")
    how_long.add_argument("--loops", type=positive, default=None,
                          help="run this many loops instead of --minutes (one per fault plan: 5 make a round)")
    s.add_argument("--messages", type=_bounded(1, U64_MAX), default=20000, help="messages in the day")
    s.add_argument("--instruments", type=positive, default=20, help="instruments in the day")
    s.set_defaults(func=sigterm_as_interrupt(cmd_soak))  # (SIGTERM left the loop's segment and captures behind)
