"""Replication to a standby over libfabric, real processes, the tcp provider on loopback: a day replayed through
fh-dataplane --journal on the primary, fh-replicate shipping its journal to a standby that applies it; the
standby's books and event sequence equal the primary's, its own journal holds the same records; a primary of
an older epoch is refused record by record and stops; provider verbs without a device says what is missing."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, fh, replicate_path, why_no_replicate
from conftest import ring_records as _ring_records
from handler import journal as J
from handler import process, replay, segments
from handler import replicate as R
from handler.net import sender

PROG = replicate_path()
pytestmark = pytest.mark.skipif(PROG is None, reason=str(why_no_replicate()))
AB = ROOT / "pcaps" / "synth-ab-40k.pcap"
DAY = ROOT / "pcaps" / "synth-100k.itch"


def _remove(*paths: str) -> None:
    """Remove the files a test left in /dev/shm (those that are there)."""
    for f in paths:
        if os.path.exists(f):
            os.unlink(f)


def _primary_status(tag: str) -> str:
    """The status file of the primary _primary(..., tag=tag) starts."""
    return f"/dev/shm/fh-rp-{tag}.repl"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Standby:
    def __init__(self, tag: str, *, epoch: int = 1, events: int = 1 << 18, ring_mb: int = 4, ns: str | None = None,
                 host: str = "127.0.0.1", extra=()):
        self.name = f"rs-{tag}"
        self.segment = f"/dev/shm/fh-{self.name}"
        self.journal = f"/dev/shm/fh-{self.name}.journal"
        self.status = f"/dev/shm/fh-{self.name}.repl"
        self.addr = f"{host}:{_port()}"
        self.p = subprocess.Popen([*(sender.netns_argv(ns) if ns else []), PROG, "--role", "standby", "--provider", "tcp", "--listen", self.addr,
                                   "--journal", self.journal, "--journal-mb", "16", "--segment", self.segment,
                                   "--name", self.name, "--epoch", str(epoch), "--ring-mb", str(ring_mb),
                                   "--max-orders", "1000000", "--max-levels", "400000", "--events", str(events),
                                   "--exit-when-done", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # listening once the status file says connecting
            try:
                if R.read_status(self.status)["state"] == "connecting":
                    return
            except R.ReplicateError:
                pass
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"the standby did not start: {self.p.communicate()}")

    def wait(self, timeout: float = 60) -> dict:
        out, err = self.p.communicate(timeout=timeout)
        assert self.p.returncode == 0, err
        return json.loads(out.splitlines()[-1])

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        _remove(self.segment, segments.wake_path(self.segment), self.journal, self.status)


def _primary(journal: str, peer: str, *, epoch: int = 1, tag: str, extra=(), ns: str | None = None):
    return subprocess.Popen([*(sender.netns_argv(ns) if ns else []), PROG, "--role", "primary", "--provider", "tcp", "--peer", peer, "--journal", journal,
                             "--epoch", str(epoch), "--name", f"rp-{tag}", "--exit-when-done", "--max-outstanding",
                             "16", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _events(segment: str) -> list[dict]:
    from handler.shm import Reader

    with Reader(segment) as r:
        out = []
        for ev in r.events(start=r.oldest()):
            assert isinstance(ev, dict), f"the event ring overran: {ev}"
            ev.pop("rx_to_pub_ns", None)
            out.append(ev)
        return out


@contextmanager
def replicated_replay(pcap: Path):
    """fh-replicate (primary) started first, waiting for the journal, and a standby; fh-dataplane replays pcap with
    --journal. Yields (tag, standby, the primary's segment and journal, (the data plane's, the primary's and the
    standby's final figures)); the processes' files are removed on the way out."""
    tag = uuid.uuid4().hex[:8]
    sb = Standby(tag)
    segment, journal = f"/dev/shm/fh-rpd-{tag}", f"/dev/shm/fh-rpd-{tag}.journal"
    try:
        pr = _primary(journal, sb.addr, tag=tag)
        cmd = process.dataplane_cmd(replay.eal_args(f"rpd-{tag}", f"net_pcap0,rx_pcap={pcap}"), segment,
                                   replay.pcap_lines(pcap), keep=True, events=1 << 18,
                                   extra=["--journal", journal, "--journal-mb", "16"])
        dp = process.Dataplane(cmd)
        try:
            stats = dp.wait(120)
        finally:
            dp.close()
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        yield tag, sb, segment, journal, (stats, json.loads(out.splitlines()[-1]), sb.wait())
    finally:
        sb.close()
        process.remove_segment(segment)
        _remove(journal, _primary_status(tag))


@pytest.mark.dpdk
def test_replayed_day_standby_equals_primary():
    """fh-dataplane replays an A/B day with --journal while fh-replicate ships it: the standby's books, its
    event sequence (every event, in order) and its journal equal the primary's; status reads back."""
    with replicated_replay(AB) as (tag, sb, segment, journal, (stats, p, s)):
        assert stats["messages_applied"] == 40000
        assert p["messages"] == p["acked_messages"] == s["messages"] == 40000
        assert s["refused_epoch"] == 0 and s["holes"] == 0 and p["provider"] == s["provider"] == "tcp"
        want = replay.segment_books(segment)
        assert want and replay.segment_books(sb.segment) == want
        ev_p, ev_s = _events(segment), _events(sb.segment)
        assert len(ev_p) > 10000 and ev_s == ev_p  # same sequence numbers, types, books and values
        # the standby's own journal: the same records as the primary's (its followers see the same day)
        strip = lambda recs: [(r.kind, r.session, r.seq, r.count, r.messages() if r.kind == J.MSGS else r.arg)  # noqa
                              for r in recs]
        assert strip(_ring_records(sb.journal)) == strip(_ring_records(journal))
        st = json.loads(fh("replicate", "status", "--name", sb.status, "--json").stdout)
        assert st["role"] == "standby" and st["state"] == "done" and st["messages"] == 40000
        assert st["provider"] == "tcp" and st["peer"] == sb.addr
        st = json.loads(fh("replicate", "status", "--name", _primary_status(tag), "--json").stdout)
        assert st["role"] == "primary" and st["acked_messages"] == 40000 and st["lag_messages"] == 0


@pytest.mark.dpdk
def test_replayed_faults_standby_equals_primary(tmp_path):
    """Drops on one line and on both (messages lost: the books go stale), reordering, duplicates and a session
    change: the standby's books and every event (the stale notices included) equal the primary's."""
    from handler import faults, native
    from handler.net import pcapgen

    day = native.synth_bytes(20000, 12, 3)
    plan = [{"line": "A", "kind": "drop", "at": 3, "count": 2}, {"line": "B", "kind": "reorder", "at": 7, "depth": 3},
            {"line": "both", "kind": "drop", "seq": 2000, "count": 5},
            {"line": "A", "kind": "duplicate", "at": 50, "count": 3}, {"kind": "session_change", "at": 200}]
    pcap = tmp_path / "f.pcap"
    pcapgen.synth_faulty_pcap(pcap, day, [pcapgen.Line(*pcapgen.DEFAULT_A),
                                          pcapgen.Line(*pcapgen.DEFAULT_B, delay_ns=3000)],
                              faults.parse_plan({"fault": plan}))
    with replicated_replay(pcap) as (_, sb, segment, _, (stats, p, s)):
        assert stats["mold"]["lost"] >= 5 and s["holes"] >= 1
        assert p["messages"] == s["messages"] == stats["mold"]["applied"]
        assert replay.segment_books(sb.segment) == replay.segment_books(segment)
        ev_p = _events(segment)
        assert sum(e["type"] == "stale" for e in ev_p) >= 10  # the loss marked the books stale, with events
        assert _events(sb.segment) == ev_p


@pytest.mark.dpdk
def test_a_late_standby_starts_from_a_snapshot(tmp_path):
    """A standby that joins after the day: the primary ships a mid-day snapshot of fh record's shadow engine
    (the fh_engine_snapshot file, checked whole first), then its journal; the standby loads the snapshot,
    skips the journal's records it already holds, applies the rest, and ends with the primary's books."""
    tag = uuid.uuid4().hex[:8]
    segment, journal = f"/dev/shm/fh-rpl-{tag}", f"/dev/shm/fh-rpl-{tag}.journal"
    sb = None
    try:
        cmd = process.dataplane_cmd(replay.eal_args(f"rpl-{tag}", f"net_pcap0,rx_pcap={AB}"), segment,
                                   replay.pcap_lines(AB), keep=True, events=1 << 18,
                                   extra=["--journal", journal, "--journal-mb", "16"])
        dp = process.Dataplane(cmd)
        try:
            assert dp.wait(120)["messages_applied"] == 40000
        finally:
            dp.close()
        d = tmp_path / "rec"
        fh("record", "--journal", journal, "--dir", d, "--snapshot-every", "15000", "--snapshot-keep", "10")
        snaps = sorted((d / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        assert len(snaps) >= 2
        sb = Standby(tag)
        pr = _primary(journal, sb.addr, tag=tag, extra=["--snapshot", str(snaps[0])])
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        s = sb.wait()
        assert s["snapshot_orders"] > 0 and s["skipped_after_snapshot"] > 0 and s["holes"] == 0
        assert 0 < s["messages"] < 40000  # only what follows the snapshot was applied
        assert replay.segment_books(sb.segment) == replay.segment_books(segment)
    finally:
        if sb:
            sb.close()
        process.remove_segment(segment)
        _remove(journal, journal + ".record", _primary_status(tag))  # .record: fh record's progress


def test_a_damaged_snapshot_is_never_shipped(tmp_path):
    tag = uuid.uuid4().hex[:8]
    journal = _day_journal(tag)
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"FFHSNP01" + b"\0" * 200)
    sb = Standby(tag, events=1 << 16)
    try:
        pr = _primary(journal, sb.addr, tag=tag, extra=["--snapshot", str(bad)])
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 5 and len(err.strip().splitlines()) == 1 and str(bad) in err, err
    finally:
        sb.close()
        os.unlink(journal)
        _remove(_primary_status(tag))


def _day_journal(tag: str) -> str:
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    prog = sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-journal"))[-1]
    path = f"/dev/shm/fh-rj-{tag}.journal"
    subprocess.run([str(prog), str(DAY), "on", "--journal", path, "--mb", "64"], capture_output=True, check=True)
    return path


@pytest.mark.parametrize("write_kb", [None, 64, 0], ids=["combined-256k", "combined-64k", "one-record-a-write"])
def test_a_small_ring_wraps_under_flow_control(write_kb):
    """100,000 messages (3 MB of frames) through a 1 MiB ring: the primary waits for acknowledgements, every
    record arrives once and in order (the standby's journal equals the primary's). The journal is written before
    the primary starts, so records are always ready: they go in runs of frames, one write each (up to --write-kb,
    256 KiB by default, a quarter of this ring; never past the ring's end), which the standby walks; with
    --write-kb 0, one record a write."""
    tag = uuid.uuid4().hex[:8]
    journal = _day_journal(tag)
    sb = Standby(tag, ring_mb=1, events=1 << 16)
    try:
        pr = _primary(journal, sb.addr, tag=tag, extra=() if write_kb is None else ("--write-kb", str(write_kb)))
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        s, p = sb.wait(), json.loads(out)
        assert p["messages"] == s["messages"] == 100000
        assert [r.messages() for r in _ring_records(sb.journal)] == [r.messages() for r in _ring_records(journal)]
        assert s["frames"] == p["frames"] and s["writes"] == p["writes"], (p, s)
        if write_kb == 0:
            assert p["writes"] == p["frames"] and p["write_max"] == 0, p
        else:  # a write holds at least its cap's worth (a frame more at most), but at the ring's end and the last
            cap = (write_kb or 256) << 10
            assert p["write_max"] == cap and p["bytes"] // (cap + 70000) <= p["writes"] < p["frames"] // 8, p
    finally:
        sb.close()
        _remove(journal, _primary_status(tag))


def test_a_record_of_an_older_epoch_is_refused():
    """A standby at epoch 3, a primary at epoch 2 (a returning old primary): every record it ships is refused
    and counted, nothing is applied or journaled, and the primary stops, fenced, with one line."""
    tag = uuid.uuid4().hex[:8]
    journal = _day_journal(tag)
    sb = Standby(tag, epoch=3, events=1 << 16)
    try:
        pr = _primary(journal, sb.addr, epoch=2, tag=tag)
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 4, err
        fenced = [l for l in err.splitlines() if "fenced" in l]
        assert len(fenced) == 1 and "epoch 2" in fenced[0] and "epoch 3" in fenced[0]
        deadline = time.monotonic() + 5
        while R.read_status(sb.status)["refused_epoch"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        st = R.read_status(sb.status)
        assert st["refused_epoch"] >= 1 and st["messages"] == 0 and st["epoch"] == 3
        assert _ring_records(sb.journal) == []
        assert R.read_status(_primary_status(tag))["state"] == "fenced"
    finally:
        sb.close()
        _remove(journal, _primary_status(tag))


def test_verbs_without_a_device_says_what_is_missing(tmp_path):
    if R.list_devices("tcp") and any(d["provider"] == "verbs" for d in R.list_devices("auto")):
        pytest.skip("this host has an RDMA device")
    seg = str(tmp_path / "seg")
    for args in (["--role", "primary", "--journal", str(tmp_path / "none"), "--peer", "127.0.0.1:1"],
                 ["--role", "standby", "--listen", f"127.0.0.1:{_port()}", "--journal", str(tmp_path / "j"),
                  "--segment", seg, "--max-orders", "1000", "--max-levels", "1000"]):
        if args[1] == "primary":  # a journal to follow, so that the provider is what fails
            args[3] = _day_journal(uuid.uuid4().hex[:8])
        try:
            p = subprocess.run([PROG, *args, "--provider", "verbs", "--status", str(tmp_path / "st"),
                                "--connect-timeout-ms", "200"], capture_output=True, text=True, timeout=30)
        finally:  # the standby keeps its segment for readers, and its wake page is in /dev/shm, not tmp_path
            segments.remove(seg)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 3 and len(lines) == 1, p.stderr
        assert "provider verbs: no RDMA device" in lines[0] and "rdma-core" in lines[0]
        if args[1] == "primary":
            os.unlink(args[3])
    p = fh("replicate", "devices", "--provider", "verbs", check=False)
    assert p.returncode != 0 and "rdma-core" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    devs = json.loads(fh("replicate", "devices", "--provider", "tcp", "--json").stdout)
    assert any(d["domain"] == "lo" for d in devs)


def _ip(*args: str) -> str:
    if args[0] == "-n":  # in a namespace through nsenter: `ip -n` remounts /, which fails in a chroot
        args = (*sender.netns_argv(args[1]), "ip", *args[2:])
    else:
        args = ("ip", *args)
    p = subprocess.run(list(args), capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair: the primary's (fhra-*, 10.78.0.1/24 on r0) and the
    standby's (fhrb-*, 10.78.0.2/24 on r1). Yields (primary ns, standby ns)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates network namespaces and a veth pair")
    tag = uuid.uuid4().hex[:8]
    a, b = f"fhra-{tag}", f"fhrb-{tag}"
    made = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("-n", a, "link", "add", "r0", "type", "veth", "peer", "name", "r1", "netns", b)
        _ip("-n", a, "addr", "add", "10.78.0.1/24", "dev", "r0")
        _ip("-n", b, "addr", "add", "10.78.0.2/24", "dev", "r1")
        for ns, dev in ((a, "r0"), (b, "r1"), (a, "lo"), (b, "lo")):
            _ip("-n", ns, "link", "set", dev, "up")
    except (RuntimeError, FileNotFoundError) as e:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot build a network namespace lab here: {e}")
    try:
        yield a, b
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_two_hosts_and_the_link_cut_and_restored(two_hosts):
    """Primary and standby in two network namespaces over a veth pair (the tcp provider on a real link). A paced
    journal (100,000 messages/s for 2 s) is shipped; the link is cut for a second in the middle: the standby
    reports the primary silent (its failover timeout, 300 ms, passes with no heartbeat), then, the link
    restored, catches up: every message arrives once and in order."""
    a, b = two_hosts
    tag = uuid.uuid4().hex[:8]
    journal = f"/dev/shm/fh-rn-{tag}.journal"
    feed_prog = sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-repl-feed"))[-1]
    sb = Standby(tag, ns=b, host="10.78.0.2", events=1 << 16, extra=["--failover-timeout-ms", "300"])
    try:
        feed = subprocess.Popen([str(feed_prog), str(DAY), "--journal", journal, "--mb", "64", "--rate", "100000",
                                 "--loops", "2", "--delay-ms", "500"], stdout=subprocess.PIPE, text=True)
        pr = _primary(journal, sb.addr, tag=tag, ns=a, extra=["--heartbeat-ms", "50"])
        deadline = time.monotonic() + 10
        while R.read_status(sb.status)["messages"] < 20000 and time.monotonic() < deadline:
            time.sleep(0.01)
        _ip("-n", a, "link", "set", "r0", "down")
        states = set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            states.add(R.read_status(sb.status)["state"])
            time.sleep(0.01)
        behind = R.read_status(sb.status)["messages"]
        _ip("-n", a, "link", "set", "r0", "up")
        assert feed.wait(30) == 0
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        s = sb.wait()
        assert "peer-silent" in states
        assert behind < 200000 and s["messages"] == 200000
        assert [r.messages() for r in _ring_records(sb.journal)] == [r.messages() for r in _ring_records(journal)]
    finally:
        sb.close()
        _remove(journal, _primary_status(tag))


def test_promote_fences_the_primary():
    """fh promote in the middle of a paced stream: the standby takes epoch 2, every later record of the
    primary's epoch 1 is refused (counted, not applied), the primary stops fenced with one line, and what the
    standby applied is exactly a prefix of the primary's journal."""
    tag = uuid.uuid4().hex[:8]
    journal = f"/dev/shm/fh-rq-{tag}.journal"
    feed_prog = sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-repl-feed"))[-1]
    sb = Standby(tag, events=1 << 16, extra=["--journal-mb", "128"])  # a late promotion: its journal must not lap
    try:
        # 20 s of stream: the promotion (a Python process starting on a loaded machine: 6 s was seen not to be
        # enough at load 16) comes well before its end
        feed = subprocess.Popen([str(feed_prog), str(DAY), "--journal", journal, "--mb", "128", "--rate", "100000",
                                 "--loops", "20", "--delay-ms", "300"], stdout=subprocess.PIPE, text=True)
        pr = _primary(journal, sb.addr, tag=tag)
        deadline = time.monotonic() + 10
        while R.read_status(sb.status)["messages"] < 20000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert R.read_status(sb.status)["state"] == "streaming", R.read_status(sb.status)
        p = fh("promote", "--name", sb.status, "--json", check=False)
        if p.returncode:
            sb.p.kill()
            raise AssertionError(f"{p.stderr} / the standby: {sb.p.communicate()}")
        assert json.loads(p.stdout)["epoch"] == 2
        out, err = pr.communicate(timeout=30)
        assert pr.returncode == 4 and "fenced" in err and "epoch 2" in err, err
        assert feed.wait(90) == 0
        s = sb.wait()
        assert s["epoch"] == 2 and s["refused_epoch"] >= 1 and 20000 <= s["messages"] < 2000000
        st = R.read_status(sb.status)
        assert st["state"] == "promoted" and st["epoch"] == 2
        recs = _ring_records(sb.journal)  # the standby's journal ends with its promotion mark (epoch 2)
        assert recs[-1].kind == J.PROMOTED and recs[-1].arg == 2 and J.PROMOTED not in {r.kind for r in recs[:-1]}
        mine = [r.messages() for r in recs[:-1]]
        assert mine == [r.messages() for r in _ring_records(journal)][:len(mine)]
        p = fh("promote", "--name", _primary_status(tag), check=False)
        assert p.returncode != 0 and "not a standby" in p.stderr
    finally:
        sb.close()
        _remove(journal, _primary_status(tag))


def test_a_primary_that_joins_a_lapped_journal_marks_the_standby_stale():
    """A 1 MiB journal that has lapped (500,000 messages, 16 MB, written before the primary starts): the primary
    cannot ship the records before its oldest, says so in one line and ships a hole first; the standby counts
    it, applies the rest, and its books are stale, not silently wrong."""
    from handler.shm import Reader

    tag = uuid.uuid4().hex[:8]
    journal = f"/dev/shm/fh-ro-{tag}.journal"
    feed_prog = sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-repl-feed"))[-1]
    subprocess.run([str(feed_prog), str(DAY), "--journal", journal, "--mb", "1", "--loops", "5"], check=True,
                   capture_output=True)
    sb = Standby(tag, events=1 << 16, ring_mb=1)
    try:
        pr = _primary(journal, sb.addr, tag=tag)
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        p, s = json.loads(out), sb.wait()
        assert p["overruns"] == 1 and s["holes"] == 1 and 0 < s["messages"] < 500000
        assert len([l for l in err.splitlines() if "lapped" in l]) == 1
        with Reader(sb.segment) as r:  # every book created after the hole starts stale
            statuses = {r.book(int(loc), 1)["status"] for loc in r.locates()}
            assert statuses == {"stale"}
    finally:
        sb.close()
        _remove(journal, _primary_status(tag))


def test_a_status_path_that_is_no_regular_file_is_refused_at_once(tmp_path):
    """fh replicate status / fh promote --name PATH: a FIFO blocked the read forever, /dev/zero read without end, a
    directory said its errno twice. Each is one line naming what the path is, exit 2."""
    fifo = tmp_path / "status.repl"
    os.mkfifo(fifo)
    for path, kind in ((str(fifo), "a FIFO"), ("/dev/zero", "a character device"), (str(tmp_path), "a directory")):
        for cmd in (("replicate", "status"), ("promote",)):
            r = fh(*cmd, "--name", path, check=False, timeout=20)
            assert r.returncode == 2 and r.stderr.strip() == (
                f"fh: {path}: {kind}, not an fh-replicate status file: give an instance name or the path of the "
                "file fh-replicate --status writes"), (cmd, r.stderr)
