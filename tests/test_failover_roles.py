"""The standby's lifecycle and the role switch (issue 14, "Failover"), real processes over libfabric's tcp provider
on loopback:

- a standby fh-replicate takes one primary after another without a restart: its primary's fh-replicate killed
  (kill -9) and started again resumes after the standby's last journaled message (nothing shipped twice, nothing
  missing); a primary of an older epoch that connects in between is refused, counted, and stops fenced;
- two `fh run` instances: the primary killed, the standby promotes and its `fh run` makes it the primary toward
  its peer (a new fh-replicate --role primary at the new epoch on the data plane's own journal); the old primary,
  restarted with `fh run` and its configuration still saying primary, finds the peer shipping at the newer
  epoch and joins as standby (one line saying so; the role and epoch persisted in its run directory and shown
  by `fh status` / `fh replicate status`); its books then equal the new primary's."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, fh
from handler import journal as J
from handler import process, replay
from handler import replicate as R

try:
    PROG = R.find_program()
except R.ReplicateError:
    PROG = None
try:
    process.find_dataplane()
    HAVE_DP = True
except process.DataplaneError:
    HAVE_DP = False

pytestmark = pytest.mark.skipif(PROG is None, reason="fh-replicate not built (no libfabric-dev)")
DAY = ROOT / "pcaps" / "synth-100k.itch"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _messages(path: str) -> list[bytes]:
    """Every message of a journal ring, in order (the MSGS records' messages, flattened)."""
    r = J.JournalRing(path)
    pos, out = r.oldest(), []
    try:
        while True:
            s, pos, rec = r.read(pos)
            if s == J.NONE:
                return out
            assert s == J.OK
            if rec.kind == J.MSGS:
                out += rec.messages()
    finally:
        r.close()


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _status(path: str) -> dict:
    try:
        return R.read_status(path)
    except R.ReplicateError:
        return {}


def test_a_standby_takes_a_restarted_primary_and_refuses_an_older_one():
    """One standby process throughout (epoch 2, journal only, as under fh run): its primary (epoch 2) killed
    mid-stream; a primary of epoch 1 connects: every record refused and counted, it stops fenced; the primary of
    epoch 2 started again resumes after the standby's last message. The standby's journal then holds every
    message of the primary's exactly once, in order, over three connections."""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag = uuid.uuid4().hex[:8]
    journal, sj = f"/dev/shm/fh-rr-{tag}.journal", f"/dev/shm/fh-rrs-{tag}.journal"
    st_s, st_p = f"/dev/shm/fh-rrs-{tag}.repl", f"/dev/shm/fh-rrp-{tag}.repl"
    addr = f"127.0.0.1:{_port()}"
    feed_prog = sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-repl-feed"))[-1]
    procs: list[subprocess.Popen] = []

    def primary(epoch: int, *extra) -> subprocess.Popen:
        p = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                              "--epoch", str(epoch), "--name", f"rrp-{tag}", "--status", st_p, "--heartbeat-ms", "20",
                              "--max-outstanding", "16", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        procs.append(p)
        return p

    try:
        feed = subprocess.Popen([str(feed_prog), str(DAY), "--journal", journal, "--mb", "128", "--rate", "40000",
                                 "--loops", "3", "--delay-ms", "300"], stdout=subprocess.PIPE, text=True)
        procs.append(feed)
        sb = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", sj,
                               "--journal-mb", "128", "--name", f"rrs-{tag}", "--status", st_s, "--epoch", "2",
                               "--ring-mb", "4", "--failover-timeout-ms", "200"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(sb)
        _wait(lambda: _status(st_s).get("state") == "connecting", 10, "the standby listening")
        p1 = primary(2)
        _wait(lambda: _status(st_s).get("messages", 0) >= 30000, 30, "the first primary shipping")
        p1.kill()  # its host dies mid-stream
        p1.wait()
        old = primary(1, "--exit-when-done")
        out, err = old.communicate(timeout=30)
        assert old.returncode == 4 and "fenced" in err and "epoch 1" in err and "epoch 2" in err, err
        refused = _status(st_s)["refused_epoch"]
        assert refused >= 1
        p2 = primary(2, "--exit-when-done")
        assert feed.wait(60) == 0
        out, err = p2.communicate(timeout=60)
        assert p2.returncode == 0, err
        assert "the standby holds session" in err and "resuming after it" in err, err
        sb.send_signal(signal.SIGTERM)
        o, e = sb.communicate(timeout=30)
        assert sb.returncode == 0, e
        fig = json.loads(o.splitlines()[-1])
        st = R.read_status(st_s)
        assert st["connections"] == 3 and st["epoch"] == 2 and st["refused_epoch"] == refused, st
        assert fig["refused_epoch"] == refused and "a primary connected again" in e
        mine, theirs = _messages(sj), _messages(journal)
        assert len(theirs) == 300000 and mine == theirs  # each message once, in order: nothing lost or repeated
        assert json.loads(out)["messages"] < 300000  # the restarted primary shipped only what the standby lacked
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in (journal, sj, st_s, st_p):
            if os.path.exists(f):
                os.unlink(f)
