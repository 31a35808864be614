"""`fh replay` and `fh verify`: a pcap through the real DPDK data plane (net_pcap), its books read back
from shared memory, and the reference model's books for the same datagrams."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class DataplaneError(RuntimeError):
    """The data plane could not run or exited with an error; the message is its own."""


def find_dataplane() -> str:
    """The fh-dataplane program: $FH_DATAPLANE, then PATH (an installed fh), then this checkout's build."""
    env = os.environ.get("FH_DATAPLANE")
    if env:
        return env
    found = shutil.which("fh-dataplane")
    if found:
        return found
    for p in sorted(ROOT.glob("build/cp3*/native/dataplane/fh-dataplane")):
        return str(p)
    raise DataplaneError("fh-dataplane not found: it is built with DPDK (apt-get install libdpdk-dev pkg-config, "
                         "then bash scripts/setup.sh), or set FH_DATAPLANE")


def pcap_lines(path: str | Path) -> list[tuple[str, int]]:
    """The (destination, port) of each UDP flow of a capture, in order of first appearance."""
    from .pcapfile import PcapReader

    seen: dict[tuple[str, int], None] = {}
    for d in PcapReader(path).datagrams():
        seen.setdefault((d.dst, d.dport), None)
    return list(seen)


def poll_core() -> int:
    """The lcore to poll on: the last CPU this process may use (core 1 on a 2-core lab machine)."""
    return max(os.sched_getaffinity(0))


def eal_args(name: str, vdev: str, core: int | None = None, memory_mb: int = 256) -> list[str]:
    return ["--no-pci", "--no-shconf", "--no-huge", "-m", str(memory_mb), "--file-prefix", f"fh-{name}",
            "-l", str(poll_core() if core is None else core), "--log-level", "lib.eal:error",
            "--log-level", "pmd.net.pcap:error", "--vdev", vdev]


def run_dataplane(eal: list[str], segment: str, lines: list[tuple[str, int]], *, keep: bool = True,
                  idle: str = "backoff", exit_idle_ms: int = 300, max_orders: int = 1 << 20,
                  max_levels: int = 1 << 20, events: int = 1 << 16, timeout: float | None = None) -> dict:
    """Run fh-dataplane to the end of its input; return its final statistics."""
    if not lines:
        raise DataplaneError("no UDP flow to listen to: the capture holds no UDP datagram")
    cmd = [find_dataplane(), *eal, "--", "--segment", segment, "--idle", idle, "--exit-idle-ms", str(exit_idle_ms),
           "--max-orders", str(max_orders), "--max-levels", str(max_levels), "--events", str(events)]
    for dst, port in lines:
        cmd += ["--line", f"{dst}:{port}"]
    if keep:
        cmd.append("--keep-segment")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        err = [l for l in p.stderr.splitlines() if l.startswith("fh-dataplane") or "EAL" in l]
        raise DataplaneError((err[-1] if err else p.stderr.strip()[-400:]) or f"exit status {p.returncode}")
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise DataplaneError(f"fh-dataplane printed no statistics: {p.stderr.strip()[-400:]}") from None


def remove_segment(path: str) -> None:
    for p in (path, path + ".wake"):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def segment_books(path: str, depth: int | None = None) -> list[dict]:
    """The canonical dump (docs/book-semantics.md) of every book in a segment."""
    from .shm import Reader

    r = Reader(path)
    try:
        return r.dump(depth)
    finally:
        r.close()


def replay(pcap: str | Path, *, name: str | None = None, depth: int | None = None, want_books: bool = False,
           lines: list[tuple[str, int]] | None = None) -> tuple[dict, list[dict] | None]:
    """Replay a capture through the data plane at top speed; return (statistics, books or None)."""
    pcap = str(Path(pcap).resolve())
    name = name or f"replay-{uuid.uuid4().hex[:8]}"
    segment = f"/dev/shm/fh-{name}"
    lines = lines if lines is not None else pcap_lines(pcap)
    t0 = time.perf_counter()
    try:
        stats = run_dataplane(eal_args(name, f"net_pcap0,rx_pcap={pcap}"), segment, lines)
        stats["wall_s"] = round(time.perf_counter() - t0, 3)
        stats["lines_listened"] = [f"{d}:{p}" for d, p in lines]
        books = segment_books(segment, depth) if want_books else None
    finally:
        remove_segment(segment)
    return stats, books


def reference_books(pcap: str | Path, lines: list[tuple[str, int]] | None = None,
                    depth: int | None = None) -> tuple[list[dict], dict]:
    """The reference model's books for the datagrams the data plane would take, sequenced the same way:
    the first copy of each sequence number wins across lines; sequence 0 is applied unsequenced."""
    from .pcapfile import PcapReader
    from .reference import ReferenceBook, iter_mold

    want = set(lines if lines is not None else pcap_lines(pcap))
    ref = ReferenceBook()
    session, nxt = None, 0
    for d in PcapReader(pcap).datagrams():
        if (d.dst, d.dport) not in want:
            continue
        dg = iter_mold(d.payload)
        h = dg.header
        if h is None or dg.malformed or h.count == 0xFFFF:
            continue
        if h.sequence and h.session != session:
            session, nxt = h.session, h.sequence
        if h.count == 0:
            nxt = max(nxt, h.sequence) if h.sequence else nxt
            continue
        for i, m in enumerate(dg.messages):
            if h.sequence:
                seq = h.sequence + i
                if seq < nxt:
                    continue
                nxt = seq + 1
            ref.apply(m)
    return ref.books(depth), dict(ref.counters)


def diff_books(got: list[dict], want: list[dict], limit: int = 5) -> list[str]:
    """Human-readable first differences between two dumps."""
    g = {b["locate"]: b for b in got}
    w = {b["locate"]: b for b in want}
    out = []
    for loc in sorted(set(g) | set(w)):
        if g.get(loc) != w.get(loc):
            a, b = g.get(loc), w.get(loc)
            if a is None or b is None:
                out.append(f"locate {loc}: {'missing from the data plane' if a is None else 'not in the reference'}")
            else:
                for side in ("bids", "asks"):
                    for i, (x, y) in enumerate(zip(a[side] + [None] * 99, b[side] + [None] * 99)):
                        if x != y:
                            out.append(f"locate {loc} ({b['symbol']}) {side}[{i}]: data plane {x}, reference {y}")
                            break
                        if x is None:
                            break
            if len(out) >= limit:
                break
    return out


def summary_lines(stats: dict) -> list[str]:
    drops = {k: v for k, v in stats["drops"].items() if v}
    lat = stats["latency_ns"]
    mold = stats["mold"]
    return [
        f"packets {stats['packets']} ({stats['nic']['ipackets']} at the NIC, {stats['nic']['imissed']} missed), "
        f"messages applied {stats['messages_applied']} in {stats.get('wall_s', 0)} s",
        f"drops: {', '.join(f'{k}={v}' for k, v in drops.items()) or 'none'}",
        f"moldudp64: datagrams {mold['datagrams']}, duplicates {mold['duplicates']}, gaps {mold['gaps']} "
        f"({mold['gap_messages']} messages), heartbeats {mold['heartbeats']}, end of session {mold['end_of_session']}",
        f"latency rx->publish (ns): p50 {lat['p50']}, p99 {lat['p99']}, p99.9 {lat['p99.9']}, max {lat['max']} "
        f"over {lat['count']} messages",
    ]
