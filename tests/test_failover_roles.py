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

from conftest import ROOT, dataplane_path, fh, replicate_path, run_config, why_no_replicate
from handler import journal as J
from handler import process, replay
from handler import replicate as R

PROG = replicate_path()
HAVE_DP = dataplane_path() is not None

pytestmark = pytest.mark.skipif(PROG is None, reason=str(why_no_replicate()))
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


def _wait(cond, timeout: float, what):
    """what: the failure's message, or a callable giving it (a log read at the time of the failure)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what() if callable(what) else what
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


def _config(name, pcap, role, peer, listen) -> str:
    return run_config(name, pcap, exit_idle_ms=0, extra=f"""[replication]
role = "{role}"
provider = "tcp"
peer = "127.0.0.1:{peer}"
listen = "127.0.0.1:{listen}"
heartbeat_ms = 50
failover_timeout_ms = 1500
""")


def _fh_json(*args) -> dict:
    p = fh(*args, "--json", check=False)
    assert p.stdout.strip(), p.stderr
    return json.loads(p.stdout)


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_the_old_primary_returns_as_standby_under_fh_run(tmp_path, monkeypatch):
    """Two fh run instances, a (configured primary) and b (configured standby), each with the other as peer.
    a's host dies (kill -9 of fh run, its data plane and fh-replicate); b promotes to epoch 2 and its fh run
    makes it the primary toward a. a restarted with the same configuration finds b shipping at epoch 2 and joins
    as standby (one line; role and epoch persisted; fh status and fh replicate status show them), and its books
    then equal b's. b's fh-replicate killed: fh run restarts it (counted) and a's standby takes it back without
    a restart (fh run starts it again within a few hundred ms, inside the failover timeout: a longer silence
    would be a failover, which a standby cannot tell from its primary's host dying)."""
    from handler.shm import Reader

    run_d = tmp_path / "run"
    monkeypatch.setenv("FH_RUN_DIR", str(run_d))
    pcap = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:6]
    a, b = f"fra{tag}", f"frb{tag}"
    pa, pb = _port(), _port()
    cfgs = {a: tmp_path / "a.toml", b: tmp_path / "b.toml"}
    cfgs[a].write_text(_config(a, pcap, "primary", pb, pa))
    cfgs[b].write_text(_config(b, pcap, "standby", pa, pb))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    errs = {a: tmp_path / "a.err", b: tmp_path / "b.err", a + "2": tmp_path / "a2.err"}
    procs: list[subprocess.Popen] = []

    def run(n: str, log: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "handler", "run", "--config", str(cfgs[n]), "--keep-segment",
                              "--json"], stdout=subprocess.PIPE, stderr=open(errs[log], "w"), text=True, env=env)
        procs.append(p)
        return p

    def messages(n: str) -> int:
        try:
            with Reader(f"/dev/shm/fh-{n}", wait_s=0) as r:
                return r.stats(types=False).get("messages", 0)
        except Exception:  # noqa: BLE001 - not there yet
            return 0

    from handler import replication_run as RR
    from handler import segments

    try:
        rb = run(b, b)
        _wait(lambda: _status(b).get("state") == "connecting", 30, "b's standby listening")
        ra = run(a, a)
        _wait(lambda: _status(b).get("messages", 0) == 40000 and messages(b) == 40000, 60,
              lambda: f"b following a: {errs[a].read_text()[-500:]}")
        first = R.read_status(a)
        assert first["role"] == "primary" and first["epoch"] == 1
        assert RR.read_state(a, run_d)["role"] == "primary" and "nothing" not in errs[a].read_text()
        dp_a = _fh_json("status", "--name", a)["dataplane_pid"]
        for pid in (first["pid"], dp_a, ra.pid):  # a's host dies
            os.kill(pid, signal.SIGKILL)
        ra.wait()
        _wait(lambda: not R.pid_alive(dp_a) and not R.pid_alive(first["pid"]), 30, "a's processes gone")
        _wait(lambda: (RR.read_state(b, run_d) or {}).get("role") == "primary"
              and _status(b).get("role") == "primary", 30,
              lambda: f"b promoted and shipping: {errs[b].read_text()[-800:]}")
        st_b = RR.read_state(b, run_d)
        assert st_b["epoch"] == 2 and "promoted" in st_b["why"]
        assert "promoted to primary at epoch 2" in errs[b].read_text()

        ra2 = run(a, a + "2")  # the old primary, its configuration still saying primary
        _wait(lambda: (RR.read_state(a, run_d) or {}).get("role") == "standby", 30,
              lambda: f"a joining as standby: {errs[a + '2'].read_text()[-800:]}")
        _wait(lambda: messages(a) == 40000, 60, f"a's books from b: {errs[a + '2'].read_text()[-800:]}")
        line = [l for l in errs[a + "2"].read_text().splitlines() if "joining as standby" in l]
        assert len(line) == 1 and "epoch 2" in line[0] and "newer than this host's 1" in line[0], line
        assert RR.read_state(a, run_d)["epoch"] == 2
        assert replay.segment_books(f"/dev/shm/fh-{a}") == replay.segment_books(f"/dev/shm/fh-{b}")
        sa = _fh_json("status", "--name", a)
        assert sa["state"] == "running" and sa["replication"]["role"] == "standby" and \
            sa["replication"]["epoch"] == 2, sa["replication"]
        assert "replication standby at epoch 2" in fh("status", "--name", a, check=False).stdout
        ra_st = _fh_json("replicate", "status", "--name", a)
        assert ra_st["role"] == "standby" and ra_st["epoch"] == 2 and ra_st["state"] == "streaming", ra_st
        assert _fh_json("replicate", "status", "--name", b)["role"] == "primary"

        # b's fh-replicate dies: fh run starts it again; a's standby takes it back, without a restart
        os.kill(R.read_status(b)["pid"], signal.SIGKILL)
        _wait(lambda: (_fh_json("status", "--name", b)["replication"].get("supervised") or {}).get("restarts") == 1,
              30, f"b's fh-replicate restarted: {errs[b].read_text()[-500:]}")
        _wait(lambda: _status(a).get("connections") == 2 and _status(a).get("state") == "streaming", 30,
              lambda: f"a's standby reconnected: {errs[a + '2'].read_text()[-500:]}")
        assert ra2.poll() is None and _status(a)["refused_epoch"] == 0
        assert "exited with status -9" in errs[b].read_text()

        # a's standby fh-replicate dies: fh run starts it again on a new journal at the same path, which resumes
        # after the old one's last message; a's data plane follows the new journal, applying nothing twice
        os.kill(R.read_status(a)["pid"], signal.SIGKILL)
        _wait(lambda: (_fh_json("status", "--name", a)["replication"].get("supervised") or {}).get("restarts") == 1,
              30, f"a's fh-replicate restarted: {errs[a + '2'].read_text()[-500:]}")
        _wait(lambda: _status(a).get("state") == "streaming" and "was recreated" in errs[a + "2"].read_text(), 30,
              lambda: f"a's standby back: {errs[a + '2'].read_text()[-800:]}")
        assert "ended at session" in errs[a + "2"].read_text() and _status(a)["messages"] == 0  # nothing again
        assert messages(a) == 40000 and ra2.poll() is None
        for p in (ra2, rb):
            p.send_signal(signal.SIGTERM)
        outs = {}
        for n, p in ((a, ra2), (b, rb)):
            outs[n] = p.communicate(timeout=60)[0]
            assert p.returncode == 0, errs
        sb = json.loads(outs[a])["standby"]
        assert sb["rejoins"] == 1 and sb["skipped"] == 0 and sb["messages"] == 40000 and not sb["promoted"], sb
        assert replay.segment_books(f"/dev/shm/fh-{a}") == replay.segment_books(f"/dev/shm/fh-{b}")
    finally:
        for p in procs:  # fh run stops its data plane and fh-replicate on SIGTERM; killed, it would leave them
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        for n in (a, b):
            segments.remove(f"/dev/shm/fh-{n}")
            for f in (f"/dev/shm/fh-{n}.journal", f"/dev/shm/fh-{n}.standby.journal", R.status_path(n)):
                if os.path.exists(f):
                    os.unlink(f)


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_standby_without_a_segment_takes_the_late_join_snapshot(tmp_path):
    """The standby host as fh run sets it up (fh-replicate journal only, its data plane following that journal)
    joins after the day: the primary ships a mid-day snapshot, then its journal. fh-replicate checks the snapshot
    whole, leaves it beside its journal and journals a snapshot record with what follows it; the data plane loads
    it in place of everything before, applies the rest, and holds the primary's books (then, promoted, every
    datagram it held back is covered: nothing applied twice)."""
    AB = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:8]
    seg_p, journal = f"/dev/shm/fh-rlp-{tag}", f"/dev/shm/fh-rlp-{tag}.journal"
    seg_s, sj, st_s = f"/dev/shm/fh-rls-{tag}", f"/dev/shm/fh-rls-{tag}.standby.journal", f"/dev/shm/fh-rls-{tag}.repl"
    addr = f"127.0.0.1:{_port()}"
    lines = replay.pcap_lines(AB)
    procs, dp = [], None
    try:
        process.run_dataplane(replay.eal_args(f"rlp-{tag}", f"net_pcap0,rx_pcap={AB}"), seg_p, lines, events=1 << 18,
                              timeout=120, extra=["--journal", journal, "--journal-mb", "16"])
        d = tmp_path / "rec"
        fh("record", "--journal", journal, "--dir", d, "--snapshot-every", "15000", "--snapshot-keep", "10")
        snap = sorted((d / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)[0]
        sb = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", sj,
                               "--journal-mb", "16", "--name", f"rls-{tag}", "--status", st_s, "--ring-mb", "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(sb)
        _wait(lambda: _status(st_s).get("state") == "connecting", 10, "the standby listening")
        dp = process.Dataplane(process.dataplane_cmd(replay.eal_args(f"rls-{tag}", f"net_pcap0,rx_pcap={AB}"), seg_s,
                                                     lines, events=1 << 18, extra=["--standby", sj]))
        dp.wait_running()
        pr = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                               "--name", f"rlp-{tag}", "--status", f"{seg_p}.repl", "--exit-when-done",
                               "--snapshot", str(snap)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(pr)
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        want = replay.segment_books(seg_p)
        _wait(lambda: replay.segment_books(seg_s) == want, 30, lambda: f"the standby's books: {dp.err[-5:]}")
        assert not os.path.exists(sj + ".snapshot")  # loaded, then removed
        dp.p.send_signal(signal.SIGUSR1)
        stats = dp.wait(60)
        s = stats["standby"]
        assert s["snapshots"] == 1 and 0 < s["messages"] < 40000 and s["holes"] == 0, s
        assert s["promoted"] and s["resumed_seq"] == 40001 and stats["messages_applied"] == 0 and \
            s["replay_applied"] == 0, stats
        assert any("loaded the primary's snapshot" in l for l in dp.err)
        assert replay.segment_books(seg_s) == want
        sb.send_signal(signal.SIGTERM)
        o, e = sb.communicate(timeout=30)
        assert "journaled for the data plane" in e and json.loads(o.splitlines()[-1])["snapshot_orders"] > 0, e
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if dp is not None:
            dp.close()
        for seg in (seg_p, seg_s):
            process.remove_segment(seg)
        for f in (journal, journal + ".record", sj, sj + ".snapshot", st_s, f"{seg_p}.repl"):
            if os.path.exists(f):
                os.unlink(f)
