"""Failover time, median of N (bench/replication.md): handler/failover_lab.run N times (a paced day on a veth
pair, two data planes, fh-replicate over the tcp provider on loopback, kill -9 of the primary's data plane and
fh-replicate part way), each run's figures from the clocks the processes themselves stamp (CLOCK_REALTIME, one
host):
  kill -> promoted       the kill to the standby data plane seeing its journal's promotion mark
  kill -> own lines      the kill to the first message it applied from its own lines (the held-back datagrams)
  beyond the timeout     promoted - (the last heartbeat the standby received + the failover timeout): what the
                         detection and the hand-over cost beyond the configured timeout (the target: <= 50 ms)
Every run is also checked: books equal to the reference, events 1..n with no gap, nothing lost.

    sudo .venv/bin/python bench/failover.py [--runs 10] [--timeout-ms 300] [--heartbeat-ms 50] [--pps 300]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handler import failover_lab, replay  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--timeout-ms", type=int, default=300)
    ap.add_argument("--heartbeat-ms", type=int, default=50)
    ap.add_argument("--pps", type=float, default=300)
    ap.add_argument("--messages", type=int, default=20000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        pcap = Path(d) / "ab.pcap"
        subprocess.run([sys.executable, "-m", "handler", "pcap", "synth", str(pcap), "--messages", str(a.messages),
                        "--instruments", "20", "--seed", "7"], check=True, capture_output=True)
        want, _ = replay.reference_books(pcap)
        rows = []
        for i in range(a.runs):
            r = failover_lab.run(pcap, pps=a.pps, kill_at=0.4, failover_timeout_ms=a.timeout_ms,
                                 heartbeat_ms=a.heartbeat_ms)
            sb = r["stats"]["standby"]
            seqs = [e["seq"] for e in r["events"]]
            ok = (r["books"] == want and seqs == list(range(1, len(seqs) + 1)) and not r["overruns"]
                  and sb["messages"] + sb["replay_applied"] + r["stats"]["messages_applied"] == a.messages)
            why = [k for k, bad in (("books", r["books"] != want), ("event gap", seqs != list(range(1, len(seqs) + 1))),
                                    ("overrun", bool(r["overruns"])),
                                    ("messages", sb["messages"] + sb["replay_applied"] + r["stats"]["messages_applied"]
                                     != a.messages)) if bad]
            row = {"run": i + 1, "ok": ok, "failed": why, "lost": r["stats"]["mold"]["lost"],
                   "applied": [sb["messages"], sb["replay_applied"], r["stats"]["messages_applied"]],
                   "feed_state": r["stats"]["feed"]["state"], "holes": sb["holes"],
                   "kill_to_promoted_ms": (sb["promoted_ns"] - r["kill_ns"]) / 1e6,
                   "kill_to_own_lines_ms": (sb["first_own_ns"] - r["kill_ns"]) / 1e6,
                   "last_heartbeat_before_kill_ms": (r["kill_ns"] - r["status"]["last_heartbeat_ns"]) / 1e6,
                   "beyond_timeout_ms": (sb["promoted_ns"] - r["status"]["last_heartbeat_ns"]) / 1e6 - a.timeout_ms,
                   "own_lines_beyond_timeout_ms":
                       (sb["first_own_ns"] - r["status"]["last_heartbeat_ns"]) / 1e6 - a.timeout_ms,
                   "held_replayed": sb["replayed"], "messages_from_held": sb["replay_applied"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = ("kill_to_promoted_ms", "kill_to_own_lines_ms", "beyond_timeout_ms", "own_lines_beyond_timeout_ms")
    summary = {k: {"median": round(statistics.median(r[k] for r in rows), 2),
                   "min": round(min(r[k] for r in rows), 2), "max": round(max(r[k] for r in rows), 2)} for k in keys}
    summary.update(runs=len(rows), all_ok=all(r["ok"] for r in rows), timeout_ms=a.timeout_ms,
                   heartbeat_ms=a.heartbeat_ms)
    print(json.dumps({"summary": summary}), flush=True)
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
