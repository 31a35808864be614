"""Failover that a consumer does not notice (issue 14), real processes: a paced day on a veth pair taken by two
fh-dataplane processes, the primary (--journal, shipped by fh-replicate over libfabric's tcp provider) and the
standby (--standby: it follows the standby fh-replicate's journal and holds its own lines back); kill -9 of the
primary's data plane and fh-replicate mid-replay. The standby promotes after its failover timeout, takes the
lines after the last replicated message, fills the hole from what it held back, and ends with the reference's
books; a consumer following its event ring from the start sees every event once, in sequence, equal to those of
a data plane that never failed over; the same with a witness asked before the promotion. See
handler/failover_lab.py."""
from __future__ import annotations

import json
import os
import uuid

import pytest

from conftest import (fh, fh_popen, replicate_path, ring_records, run_config, why_no_af_packet, why_no_dataplane,
                      why_no_replicate)
from handler import process, replay
from handler import replicate as R

WHY = why_no_replicate() or why_no_dataplane() or why_no_af_packet()

pytestmark = [pytest.mark.skipif(WHY is not None, reason=str(WHY)),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a network namespace and a veth pair")]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("failover") / "ab.pcap"
    fh("pcap", "synth", out, "--messages", 20000, "--instruments", "20", "--seed", "7")
    return out


def _events_of_a_plain_replay(pcap) -> list[dict]:
    """The events of one data plane that takes the whole capture (net_pcap, no failover)."""
    from handler.shm import Reader

    name = f"fo-ref-{uuid.uuid4().hex[:8]}"
    segment = f"/dev/shm/fh-{name}"
    try:
        process.run_dataplane(replay.eal_args(name, f"net_pcap0,rx_pcap={pcap}"), segment, replay.pcap_lines(pcap),
                              events=1 << 18, timeout=120)
        with Reader(segment) as r:
            out = []
            for ev in r.events(start=1):
                assert isinstance(ev, dict)
                ev.pop("rx_to_pub_ns", None)
                out.append(ev)
            return out
    finally:
        process.remove_segment(segment)


def _ring_messages(path: str) -> list[tuple[int, bytes]]:
    from handler import journal as J

    return [(rec.seq + i, m) for rec in ring_records(path) if rec.kind == J.MSGS for i, m in enumerate(rec.messages())]


@pytest.mark.solo  # a paced feed on a veth pair taken over mid-day: every message must arrive once
def test_kill_9_of_the_primary_mid_replay(day):
    """... and the promoted standby's own journal (--journal) holds the whole day, followed and own alike: shipped
    at the new epoch to the old primary's host restarted as standby (epoch 1), which adopts epoch 2 and ends
    with the reference's books."""
    from handler import failover_lab

    timeout_ms, hb_ms = 300, 50
    j2 = f"/dev/shm/fh-fo-j2-{uuid.uuid4().hex[:8]}.journal"
    try:
        r = failover_lab.run(day, pps=300, kill_at=0.4, failover_timeout_ms=timeout_ms, heartbeat_ms=hb_ms,
                             journal_out=j2)
        _check_failover(day, r, timeout_ms, hb_ms)
        got = _ring_messages(j2)
        assert [s for s, _ in got] == list(range(1, 20001))
        _ship_to_the_old_primary(day, j2)
    finally:
        if os.path.exists(j2):
            os.unlink(j2)


@pytest.mark.solo  # a paced feed on a veth pair taken over mid-day: every message must arrive once
def test_kill_9_of_the_primary_with_a_witness(day):
    """The same failover with a witness (fh witness on loopback, both fh-replicate --witness --pair): the standby,
    its primary silent for the timeout, asks it, hears that the primary has been silent there too, and promotes;
    everything the plain failover checks holds (books, the consumer's events, nothing lost)."""
    from handler import failover_lab

    r = failover_lab.run(day, pps=300, kill_at=0.4, failover_timeout_ms=300, heartbeat_ms=50, witness=True)
    _check_failover(day, r, 300, 50)
    st = r["status"]
    assert st["witness"] == r["witness_addr"] and st["witness_state"] == "primary-silent", st
    assert st["witness_answers"] >= 1 and st["witness_age_ms"] >= 300, st
    assert "the witness: none for" in r["replicate_err"], r["replicate_err"]
    # the witness heard both hosts of the one pair (the primary's beats until the kill, the standby's) and was asked
    w = r["witness"]
    assert w["queries"] >= 1 and w["malformed"] == 0 and list(w["pairs"]) == [r["witness_pair"]], w
    assert len(w["pairs"][r["witness_pair"]]) == 2, w


def _ship_to_the_old_primary(day, journal: str) -> None:
    import json
    import socket
    import subprocess

    prog = replicate_path()
    tag = uuid.uuid4().hex[:8]
    seg, sj, st, pst = (f"/dev/shm/fh-fo-old-{tag}", f"/dev/shm/fh-fo-old-{tag}.journal",
                        f"/dev/shm/fh-fo-old-{tag}.repl", f"/dev/shm/fh-fo-new-{tag}.repl")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    sb = subprocess.Popen([prog, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", sj,
                           "--journal-mb", "16", "--segment", seg, "--status", st, "--epoch", "1", "--ring-mb", "4",
                           "--max-orders", "1000000", "--max-levels", "400000", "--exit-when-done"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 10
        while (R.read_status(st)["state"] if os.path.exists(st) else None) != "connecting":
            assert sb.poll() is None and time.monotonic() < deadline, sb.communicate()
            time.sleep(0.02)
        pr = subprocess.run([prog, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                             "--epoch", "2", "--status", pst, "--exit-when-done"], capture_output=True, text=True,
                            timeout=60)
        assert pr.returncode == 0, pr.stderr
        out, err = sb.communicate(timeout=60)
        s = json.loads(out.splitlines()[-1])
        assert sb.returncode == 0 and s["epoch"] == 2 and s["messages"] == 20000 and s["holes"] == 0, err
        assert "epoch 2 is newer than 1: adopted" in err
        want, _ = replay.reference_books(day)
        assert replay.segment_books(seg) == want
    finally:
        if sb.poll() is None:
            sb.kill()
            sb.communicate()
        process.remove_segment(seg)
        for f in (sj, st, pst):
            if os.path.exists(f):
                os.unlink(f)


def _check_failover(day, r: dict, timeout_ms: int, hb_ms: int) -> None:
    sb = r["stats"]["standby"]
    # the standby promoted: its fh-replicate after the failover timeout with no heartbeat, then its data plane
    assert r["status"]["state"] == "promoted" and r["status"]["epoch"] == 2 and sb["promoted"] and sb["epoch"] == 2
    assert "no heartbeat from the primary for 300 ms" in r["replicate_err"]
    # not before the timeout since the last heartbeat the standby received (which may have come more than one
    # interval before the kill on a loaded machine), and not before the kill
    assert sb["promoted_ns"] - r["status"]["last_heartbeat_ns"] >= timeout_ms * 1_000_000
    assert sb["promoted_ns"] > r["kill_ns"]
    assert sb["first_own_ns"] >= sb["promoted_ns"]
    # it followed what was shipped, then took the lines from the next sequence: every message exactly once
    assert 0 < sb["messages"] < 20000 and sb["resumed_seq"] == sb["messages"] + 1
    assert sb["messages"] + sb["replay_applied"] + r["stats"]["messages_applied"] == 20000
    assert sb["holes"] == 0 and sb["overwritten"] == 0 and sb["too_big"] == 0
    assert r["stats"]["mold"]["lost"] == 0 and r["stats"]["feed"]["state"] in ("live", "ended")
    # the books equal the reference model's
    want, _ = replay.reference_books(day)
    assert r["books"] == want, replay.diff_books(r["books"], want)
    # the consumer: no gap in event sequence, no stale notice, and the very events of a plain replay
    assert not r["overruns"]
    seqs = [e["seq"] for e in r["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert not any(e["type"] in ("stale", "recovered") for e in r["events"])
    assert r["events"] == _events_of_a_plain_replay(day)


def _config(name, pcap, role, addr) -> str:
    # failover timeout 1.5 s: with 300 ms a loaded CI host starved the primary's fh-replicate that long before it
    # had shipped anything, and the standby promoted with none of the day (the test's premise is a primary that
    # ships the whole day, then stops)
    return run_config(name, pcap, extra=f"""[replication]
role = "{role}"
provider = "tcp"
{addr}
heartbeat_ms = 50
failover_timeout_ms = 1500
""")


def test_fh_run_starts_replication_for_both_roles(tmp_path, monkeypatch):
    """fh run with [replication]: the standby's fh run starts fh-replicate (journal only) and its data plane with
    --standby; the primary's journals and starts fh-replicate --role primary. The primary replays a capture and
    stops (its fh-replicate ships everything first, then stops: no more heartbeats); the standby promotes after
    its failover timeout, its data plane takes the lines (all it held was covered by the journal), and both
    segments hold the same books and the same events."""
    from handler import segments, supervise
    from handler.shm import Reader

    monkeypatch.setenv("FH_RUN_DIR", str(tmp_path / "run"))
    from conftest import ROOT

    pcap = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:6]
    pn, sn = f"frp{tag}", f"frs{tag}"
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfgs = {}
    for n, role, addr in ((pn, "primary", f'peer = "127.0.0.1:{port}"'), (sn, "standby", f'listen = "127.0.0.1:{port}"')):
        cfgs[n] = tmp_path / f"{n}.toml"
        cfgs[n].write_text(_config(n, pcap, role, addr))
    run = lambda n: fh_popen("run", "--config", cfgs[n], "--keep-segment", "--json",  # noqa: E731
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = []
    try:
        procs.append(run(sn))
        import time

        deadline = time.monotonic() + 30
        while (R.read_status(sn)["state"] if os.path.exists(R.status_path(sn)) else None) != "connecting":
            assert procs[0].poll() is None and time.monotonic() < deadline, procs[0].communicate()
            time.sleep(0.02)
        procs.append(run(pn))
        out_p, err_p = procs[1].communicate(timeout=120)
        assert procs[1].returncode == 0, err_p
        assert "replication primary" in err_p and json.loads(out_p)["messages_applied"] == 40000
        out_s, err_s = procs[0].communicate(timeout=120)
        assert procs[0].returncode == 0, err_s
        stats = json.loads(out_s)
        sb = stats["standby"]
        assert sb["promoted"] and sb["messages"] == 40000 and sb["resumed_seq"] > 0, sb
        assert sb["held"] > 0 and sb["released"] + sb["replayed"] == sb["held"]
        assert stats["messages_applied"] == 0 and sb["replay_applied"] == 0  # the journal had it all
        assert R.read_status(sn)["state"] == "promoted" and R.read_status(sn)["epoch"] == 2
        assert replay.segment_books(f"/dev/shm/fh-{sn}") == replay.segment_books(f"/dev/shm/fh-{pn}")
        evs = []
        for n in (pn, sn):
            with Reader(f"/dev/shm/fh-{n}") as r:
                evs.append([{k: v for k, v in e.items() if k != "rx_to_pub_ns"} for e in r.events(start=1)])
        assert len(evs[0]) > 10000 and evs[0] == evs[1]
        assert supervise.read_exit_record(sn)["rc"] == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        for n in (pn, sn):
            segments.remove(f"/dev/shm/fh-{n}")
            for f in (f"/dev/shm/fh-{n}.journal", f"/dev/shm/fh-{n}.standby.journal", R.status_path(n)):
                if os.path.exists(f):
                    os.unlink(f)


def _clean_pair(dp, pseg: str, sseg: str, journal: str) -> None:
    """After a standby data plane test: the standby closed, both segments and the primary's journal removed."""
    if dp is not None:
        dp.close()
    for seg in (pseg, sseg):
        process.remove_segment(seg)
    if os.path.exists(journal):
        os.unlink(journal)


def test_sigusr1_promotes_a_standby_data_plane_whose_journal_has_everything():
    """fh-dataplane --standby on a finished primary's journal (no fh-replicate): it builds the primary's books
    from the journal while holding its own lines (net_pcap, the same capture) back; SIGUSR1 promotes it once the
    journal is read to its head, and every held datagram is then a duplicate: nothing applied twice, the same
    books and events as the primary's."""
    import signal
    import time

    from conftest import ROOT
    from handler.shm import Reader

    pcap = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:8]
    pseg, sseg = f"/dev/shm/fh-fu-p-{tag}", f"/dev/shm/fh-fu-s-{tag}"
    journal = f"{pseg}.journal"
    lines = replay.pcap_lines(pcap)
    dp = None
    try:
        process.run_dataplane(replay.eal_args(f"fu-p-{tag}", f"net_pcap0,rx_pcap={pcap}"), pseg, lines,
                              events=1 << 18, timeout=120, extra=["--journal", journal, "--journal-mb", "16"])
        dp = process.Dataplane(process.dataplane_cmd(replay.eal_args(f"fu-s-{tag}", f"net_pcap0,rx_pcap={pcap}"),
                                                     sseg, lines, events=1 << 18, extra=["--standby", journal]))
        dp.wait_running()
        deadline = time.monotonic() + 60
        while True:  # the journal applied (the engine's count), the capture read and held
            with Reader(sseg) as r:
                if r.stats(types=False).get("messages") == 40000:
                    break
            assert time.monotonic() < deadline and dp.p.poll() is None, dp.err[-3:]
            time.sleep(0.05)
        time.sleep(0.5)
        assert dp.p.poll() is None  # a standby does not stop on idle
        dp.p.send_signal(signal.SIGUSR1)
        stats = dp.wait(60)
        sb = stats["standby"]
        assert sb["promoted"] and sb["epoch"] == 0 and sb["messages"] == 40000 and sb["resumed_seq"] == 40001
        assert sb["held"] == 856 * 2  # every datagram of both lines held (synth-ab-40k: 856 on each)
        assert sb["replay_applied"] == 0 and stats["messages_applied"] == 0 and sb["released"] + sb["replayed"] == \
            sb["held"]
        assert any("promoted (epoch 0)" in l for l in dp.err)
        assert replay.segment_books(sseg) == replay.segment_books(pseg)
        evs = []
        for seg in (pseg, sseg):
            with Reader(seg) as r:
                evs.append([{k: v for k, v in e.items() if k != "rx_to_pub_ns"} for e in r.events(start=1)])
        assert len(evs[0]) > 10000 and evs[0] == evs[1]
    finally:
        _clean_pair(dp, pseg, sseg, journal)


def test_a_standby_data_plane_says_how_current_its_books_are():
    """A standby's segment says whether its books (its primary's, from the journal) are current against its own
    lines: fh-dataplane --standby on a journal that does not exist yet, its lines (net_pcap, the whole capture)
    delivering at once: "behind" by every message the lines carried (40,000), its books empty and not taken for
    current (fh status's writer: standby "behind", 40,000); then the primary's data plane writes that journal: the standby follows it
    and says "current" (behind 0) once the journal covers every held datagram; SIGUSR1 promotes it: no longer a
    standby (None), its books the primary's. The segment says "no-lines" from its creation until the lines deliver
    (fh_seg_cfg_t.standby: never 0 on a standby's new segment)."""
    import signal
    import time

    from conftest import ROOT
    from handler import supervise
    from handler.shm import Reader

    pcap = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:8]
    pseg, sseg = f"/dev/shm/fh-fc-p-{tag}", f"/dev/shm/fh-fc-s-{tag}"
    journal = f"{pseg}.journal"
    lines = replay.pcap_lines(pcap)
    dp = None

    def standby_until(want: tuple[str | None, int], timeout: float = 60) -> tuple[str | None, int]:
        deadline = time.monotonic() + timeout
        while True:
            with Reader(sseg) as r:
                got = r.standby()
            if got == want:
                return got
            assert time.monotonic() < deadline and dp.p.poll() is None, (got, dp.err[-3:])
            time.sleep(0.02)

    try:
        dp = process.Dataplane(process.dataplane_cmd(replay.eal_args(f"fc-s-{tag}", f"net_pcap0,rx_pcap={pcap}"),
                                                     sseg, lines, events=1 << 18, extra=["--standby", journal]))
        dp.wait_running()
        with Reader(sseg) as r:
            first = r.standby()[0]
        assert first in ("no-lines", "behind"), first  # never None: from the segment's creation
        standby_until(("behind", 40000))  # once the lines have delivered the whole capture
        st = {"writer": None, "dataplane_pid": None}
        with Reader(sseg) as r:
            supervise._segment_status(r, st, 0)
            assert r.stats(types=False).get("messages", 0) == 0  # nothing applied: the journal is not there
        assert (st["writer"]["standby"], st["writer"]["behind_msgs"]) == ("behind", 40000), st["writer"]
        m = [x for x in fh("metrics", "--name", sseg, "--once").stdout.splitlines() if x.startswith("fh_standby_")]
        inst = f'fh_instance="fc-s-{tag}"'
        assert sorted(m) == sorted([f'fh_standby_state{{{inst},state="{s}"}} {int(s == "behind")}'
                                    for s in ("current", "behind", "no-lines")]
                                   + [f"fh_standby_behind_messages{{{inst}}} 40000"]), m
        process.run_dataplane(replay.eal_args(f"fc-p-{tag}", f"net_pcap0,rx_pcap={pcap}"), pseg, lines,
                              events=1 << 18, timeout=120, extra=["--journal", journal, "--journal-mb", "16"])
        standby_until(("current", 0))
        with Reader(sseg) as r:
            assert r.stats(types=False).get("messages") == 40000
        dp.p.send_signal(signal.SIGUSR1)
        standby_until((None, 0))
        stats = dp.wait(60)
        assert stats["standby"]["promoted"] and stats["messages_applied"] == 0
        assert replay.segment_books(sseg) == replay.segment_books(pseg)
    finally:
        _clean_pair(dp, pseg, sseg, journal)
