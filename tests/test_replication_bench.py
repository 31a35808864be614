"""The replication benchmarks' own parts (bench/replication.sh, bench/replication_cost.sh), each checked on a
short run: the per-record trace that splits the lag (fh-bench-repl-feed --trace, fh-replicate --trace) covers
every record with times in their order; the fabric ping-pong gives a one-way latency; the journal follower
(fh-bench-journal --follow, and the follower thread of --rounds) reads every message the writer wrote."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, replicate_path, why_no_replicate
from handler.segments import wake_path

PROG = replicate_path()
DAY = ROOT / "pcaps" / "synth-100k.itch"


def _bench(name: str, sub: str = "bench"):
    found = sorted(ROOT.glob(f"build/cp3*/native/{sub}/{name}"))
    if not found:
        pytest.fail(f"no {name} under build/cp3*/native/{sub}: build with `bash scripts/setup.sh`")
    return str(found[-1])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(PROG is None, reason=str(why_no_replicate()))
def test_trace_splits_the_lag(tmp_path):
    """A paced journal (100,000 messages in records of 32 at 200,000/s)
    shipped to a standby with --trace: every record the feed wrote is in the standby's trace once, and its times
    are in order: written <= seen by the primary <= posted <= completion seen by the standby <= applied."""
    tag = uuid.uuid4().hex[:8]
    journal, sj = f"/dev/shm/fh-rt-{tag}.journal", f"/dev/shm/fh-rts-{tag}.journal"
    seg, addr = f"/dev/shm/fh-rts-{tag}", f"127.0.0.1:{_port()}"
    ftrace, strace = tmp_path / "feed.trace", tmp_path / "standby.trace"
    sb = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", sj,
                           "--journal-mb", "16", "--segment", seg, "--name", f"rts-{tag}", "--max-orders", "1000000",
                           "--max-levels", "400000", "--exit-when-done", "--trace", str(strace)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        pr = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                               "--name", f"rt-{tag}", "--exit-when-done", "--connect-timeout-ms", "10000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        feed = subprocess.run([_bench("fh-bench-repl-feed"), str(DAY), "--journal", journal, "--mb", "64", "--rate",
                               "200000", "--delay-ms", "500", "--trace", str(ftrace)],
                              capture_output=True, text=True, timeout=60)
        assert feed.returncode == 0, feed.stderr
        f = json.loads(feed.stdout)
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        sout, serr = sb.communicate(timeout=60)
        assert sb.returncode == 0, serr
        s = json.loads(sout.splitlines()[-1])
        assert s["messages"] == f["messages"] == 100000
        written = dict(struct.iter_unpack("<QQ", ftrace.read_bytes()))
        rows = list(struct.iter_unpack("<5Q", strace.read_bytes()))
        assert len(written) == f["records"] and sorted(r[0] for r in rows) == sorted(written)
        for seq, seen, sent, cq, applied in rows:
            assert written[seq] <= seen <= sent <= cq <= applied, (seq, written[seq], seen, sent, cq, applied)
    finally:
        for p in (sb,):
            if p.poll() is None:
                p.kill()
                p.wait()
        for path in (journal, sj, seg, wake_path(seg), f"/dev/shm/fh-rts-{tag}.repl", f"/dev/shm/fh-rt-{tag}.repl"):
            if os.path.exists(path):
                os.unlink(path)


@pytest.mark.skipif(PROG is None, reason=str(why_no_replicate()))
def test_fabric_pingpong():
    """The provider's one-way latency, a ping-pong of one write (10 rounds of warm-up, then 200), unpinned: two
    spinning processes pinned to the cores of a loaded machine wait for the scheduler at every round."""
    p = subprocess.run([_bench("fh-bench-fabric-pingpong", "replicate"), "--rounds", "200", "--warmup", "10",
                        "--port", str(_port()), "--cores", "-1,-1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["provider"] == "tcp" and r["rounds"] == 200
    assert 0 < r["one_way_us_p50"] <= r["one_way_us_p99"] <= r["one_way_us_max"]


def test_journal_follower_reads_every_message(tmp_path):
    """fh-bench-journal --follow (the process bench/replication_cost.sh runs beside the writer under callgrind)
    reads every message of the day while the writer writes, and the --rounds follower thread reads every message
    of its followed rounds, with no overrun."""
    journal = f"/dev/shm/fh-bench-follow-{uuid.uuid4().hex[:8]}.journal"
    prog = _bench("fh-bench-journal")
    try:
        follower = subprocess.Popen([prog, "--follow", journal], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        w = subprocess.run([prog, str(DAY), "on", "--journal", journal, "--mb", "64"], capture_output=True, text=True,
                           timeout=60)
        assert w.returncode == 0, w.stderr
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        f, day = json.loads(out), json.loads(w.stdout)
        assert f["messages"] == day["messages"] == 100000 and f["overruns"] == 0
        assert f["records"] == day["journal_records"] and f["position"] == day["journal_bytes"]
    finally:
        if os.path.exists(journal):
            os.unlink(journal)
    r = subprocess.run([prog, str(DAY), "--rounds", "2"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["follower_messages"] == 2 * 100000 and j["follower_overruns"] == 0 and j["follower_late"] == 0
    assert j["ns_per_msg_off"] > 0 and j["ns_per_msg_on"] > 0 and j["ns_per_msg_followed"] > 0
