"""Failover time, median of N (bench/replication.md): handler/failover_lab.run N times (a paced day on a veth
pair, two data planes, fh-replicate over the tcp provider on loopback, kill -9 of the primary's data plane and
fh-replicate part way), each run's figures from the clocks the processes themselves stamp (CLOCK_REALTIME, one
host):
  kill -> promoted       the kill to the standby data plane seeing its journal's promotion mark
  kill -> own lines      the kill to the first message it applied from its own lines (the held-back datagrams)
  beyond the timeout     promoted - (the last heartbeat the standby received + the failover timeout): what the
                         detection and the hand-over cost beyond the configured timeout (the target: <= 50 ms)
Every run is also checked: books equal to the reference, events 1..n with no gap, nothing lost.

--witness: fh witness on loopback, both fh-replicate given --witness and --pair (handler/failover_lab.py); the
standby promotes only once the witness too has not heard the primary for the timeout, and each run is checked to
have asked it (its status: the witness says the primary is silent). What it adds: the query's round trip, and up
to a heartbeat when the primary's last beat to the witness came after its last heartbeat on the link.
--witnesses N: N witnesses (a quorum: the standby promotes when a majority of them say the primary is dead), each
run checked to have promoted on a majority's word.

    sudo .venv/bin/python bench/failover.py [--runs 10] [--timeout-ms 300] [--heartbeat-ms 50] [--pps 300] [--witness | --witnesses N]
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
    ap.add_argument("--witness", action="store_true", help="a witness asked before the promotion (fh witness)")
    ap.add_argument("--witnesses", type=int, default=0, help="N witnesses, a quorum (1 to 5)")
    a = ap.parse_args()
    nwit = a.witnesses or int(a.witness)
    with tempfile.TemporaryDirectory() as d:
        pcap = Path(d) / "ab.pcap"
        subprocess.run([sys.executable, "-m", "handler", "pcap", "synth", str(pcap), "--messages", str(a.messages),
                        "--instruments", "20", "--seed", "7"], check=True, capture_output=True)
        want, _ = replay.reference_books(pcap)
        rows = []
        for i in range(a.runs):
            r = failover_lab.run(pcap, pps=a.pps, kill_at=0.4, failover_timeout_ms=a.timeout_ms,
                                 heartbeat_ms=a.heartbeat_ms, witness=nwit)
            sb, st = r["stats"]["standby"], r["status"]
            seqs = [e["seq"] for e in r["events"]]
            # with a witness: the standby asked it and promoted on its word (the primary silent there too)
            unasked = nwit and not (st["witness_state"] == "primary-silent" and st["witness_answers"] >= 1
                                    and st["witness_age_ms"] >= a.timeout_ms and st["witness_dead"] > nwit // 2)
            why = [k for k, bad in (("books", r["books"] != want), ("event gap", seqs != list(range(1, len(seqs) + 1))),
                                    ("overrun", bool(r["overruns"])),
                                    ("messages", sb["messages"] + sb["replay_applied"] + r["stats"]["messages_applied"]
                                     != a.messages), ("witness", unasked)) if bad]
            ok = not why
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
            if nwit:
                # where a late promotion's time went: before the standby read the witness's last answer (its loop), or
                # between that and the data plane reading the promotion mark
                row.update(witness_queries=st["witness_queries"], witness_answers=st["witness_answers"],
                           witness_age_ms=st["witness_age_ms"], witness_dead=st["witness_dead"],
                           answer_read_beyond_timeout_ms=(st["witness_answer_ns"] - st["last_heartbeat_ns"]) / 1e6
                           - a.timeout_ms,
                           answer_to_promoted_ms=(sb["promoted_ns"] - st["witness_answer_ns"]) / 1e6)
            if row["beyond_timeout_ms"] > 2 * a.heartbeat_ms or not ok:  # what the standby said, for the reader
                row["standby_said"] = r["replicate_err"].strip().splitlines()[-8:]
            if not ok:  # and its data plane, and where the replication stood at the kill
                row.update(standby_dataplane_said=list(r["standby_err"] or [])[-12:],
                           shipped_at_kill=r["shipped_at_kill"], feed=r["stats"]["feed"], mold=r["stats"]["mold"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = ("kill_to_promoted_ms", "kill_to_own_lines_ms", "beyond_timeout_ms", "own_lines_beyond_timeout_ms")
    summary = {k: {"median": round(statistics.median(r[k] for r in rows), 2),
                   "min": round(min(r[k] for r in rows), 2), "max": round(max(r[k] for r in rows), 2)} for k in keys}
    summary.update(runs=len(rows), all_ok=all(r["ok"] for r in rows), timeout_ms=a.timeout_ms,
                   heartbeat_ms=a.heartbeat_ms, witnesses=nwit)
    print(json.dumps({"summary": summary}), flush=True)
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
