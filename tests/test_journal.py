"""The applied-message journal from Python: the ring's reader against a journal of a known day (written by
fh-bench-journal through the real tee), fh record (files, resume after a torn tail, a hole when the ring has
moved on), fh decode / fh book dump --journal, damaged files refused; and the data plane's --journal end to
end (fh-dataplane on net_pcap, a clean A/B capture and one with faults), recorded and rebuilt into the
reference's books."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, ab_lines, fh, fh_popen, run_config
from handler import journal as J
from handler import native, process, replay

DAY = ROOT / "pcaps" / "synth-100k.itch"
AB = ROOT / "pcaps" / "synth-ab-40k.pcap"


def _program(name: str) -> Path:
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    found = sorted(ROOT.glob(f"build/cp3*/native/bench/{name}"), key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.fail(f"no {name} under build/cp3*/native/bench: build with `ninja -C build/cp311`")
    return found[-1]


def _ring_of_day(mb: int = 64) -> str:
    path = f"/dev/shm/fh-test-journal-{uuid.uuid4().hex[:8]}.journal"
    out = subprocess.run([str(_program("fh-bench-journal")), str(DAY), "on", "--journal", path, "--mb", str(mb)],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["messages"] == 100000
    return path


def _unlink_ring(path: str) -> None:
    """A test's journal ring and the state file fh record writes beside it."""
    for p in (path, J.recorder_state_path(path)):
        if os.path.exists(p):
            os.unlink(p)


@pytest.fixture
def ring():
    path = _ring_of_day()
    yield path
    _unlink_ring(path)


def _day_messages():
    return [bytes(m) for _, m in native.iter_blocks(DAY.read_bytes())]


def test_ring_reader_reads_the_day_in_sequence(ring):
    r = J.JournalRing(ring)
    st = r.status()
    assert st["writer_alive"] is False and st["writer_state"] == 2 and st["name"] == "bench"
    pos, got, seqs = r.oldest(), [], []
    assert pos == 0
    while True:
        s, pos, rec = r.read(pos)
        if s == J.NONE:
            break
        assert s == J.OK and rec.kind == J.MSGS and rec.session == "BENCH00001"
        ms = rec.messages()
        assert len(ms) == rec.count
        seqs.extend(range(rec.seq, rec.seq + rec.count))
        got.extend(ms)
    assert got == _day_messages()
    assert seqs == list(range(1, 100001))
    assert pos == r.head()
    assert r.read(pos - 8)[0] == J.CORRUPT
    r.close()


def test_ring_errors_say_what_to_do(tmp_path):
    with pytest.raises(J.JournalError, match="--journal"):
        J.JournalRing(tmp_path / "absent.journal")
    bad = tmp_path / "bad.journal"
    bad.write_bytes(b"x" * 4096)
    with pytest.raises(J.JournalError, match="not an fh journal"):
        J.JournalRing(bad)


def _dump(*src) -> list[dict]:
    return [json.loads(l) for l in fh("book", "dump", *src).stdout.splitlines()]


def test_record_writes_files_that_rebuild_the_books(ring, tmp_path):
    d = tmp_path / "rec"
    p = fh("record", "--journal", ring, "--dir", d, "--day", "20261203", "--json", "--fsync", "always")
    s = json.loads(p.stdout)
    assert s["messages"] == 100000 and s["holes"] == 0 and s["next_seq"] == 100001
    files = J.journal_files(d)
    assert [f.name for f in files] == ["20261203-BENCH00001-0000.fhj"]
    assert _dump("--journal", d) == _dump("--itch", DAY)
    assert _dump("--journal", files[0], "--engine", "reference") == _dump("--itch", DAY)
    lines = fh("decode", "--journal", d, "--json").stdout.splitlines()
    assert len(lines) == 100000
    first = json.loads(lines[0])
    assert first["sequence"] == 1 and first["session"] == "BENCH00001"
    assert json.loads(lines[-1])["sequence"] == 100000


def test_record_rotates_and_resumes_after_a_torn_tail(ring, tmp_path):
    d = tmp_path / "rec"
    fh("record", "--journal", ring, "--dir", d, "--day", "20261203", "--rotate-mb", "1")
    files = J.journal_files(d)
    assert len(files) >= 3  # about 5 MB of records in 1 MB files
    heads = [J.read_journal_file(f)[0] for f in files]
    assert [h.part for h in heads] == list(range(len(files)))
    # the recorder killed mid-write: a torn last record; and the last file's records since lost from disk
    last = files[-1]
    data = last.read_bytes()
    _, recs, _ = J.read_journal_file(last)
    keep = J.FILE_HDR_SIZE + sum(len(J.encode_record(r)) for r in recs[: len(recs) // 2])
    last.write_bytes(data[: keep + 30])
    p = fh("book", "dump", "--journal", d, check=False)
    assert p.returncode == 2 and "truncated" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = fh("record", "--journal", ring, "--dir", d, "--day", "20261203", "--rotate-mb", "1", "--json")
    assert "cut a torn last record" in p.stderr and "resuming session BENCH00001" in p.stderr
    s = json.loads(p.stdout)
    assert s["holes"] == 0
    seqs = [seq for _, seq, _ in J.journal_messages(d)]
    assert seqs == list(range(1, 100001))  # no gap, no duplicate
    assert _dump("--journal", d) == _dump("--itch", DAY)


def test_record_writes_a_hole_when_the_ring_moved_on(tmp_path):
    path = _ring_of_day(mb=1)  # about 5 MB of records through a 1 MB ring: the start is gone
    try:
        d = tmp_path / "rec"
        p = fh("record", "--journal", path, "--dir", d, "--day", "20261203", "--json")
        s = json.loads(p.stdout)
        assert s["holes"] == 0  # nothing recorded before: it starts from the oldest record in the ring
        first = next(J.journal_messages(d))[1]
        assert first > 1
        # a second recording that resumes from the first one's files, from a new ring of the same day: the
        # records it had are skipped; nothing is missing or duplicated
        p = fh("record", "--journal", path, "--dir", d, "--day", "20261203", "--json")
        assert json.loads(p.stdout)["messages"] == 0
        # a recorder that had stopped at sequence 10 resumes: sequences 10 .. first-1 are a hole
        d2 = tmp_path / "rec2"
        w = J.JournalFileWriter(d2, day="20261203")
        body = b"".join(len(m).to_bytes(2, "big") + m for m in _day_messages()[:9])
        w.write([J.Record(J.MSGS, "BENCH00001", 1, 9, len(body), body)])
        w.close()
        p = fh("record", "--journal", path, "--dir", d2, "--day", "20261203", "--json")
        s = json.loads(p.stdout)
        assert s["holes"] == 1 and s["hole_messages"] == first - 10
        assert f"sequences 10..{first - 1} of session BENCH00001" in p.stderr and "retransmission" in p.stderr
        recs = list(J.journal_records(d2))
        lost = [r for r in recs if r.kind == J.LOST]
        assert [(r.seq, r.arg) for r in lost] == [(10, first - 10)]
        assert [seq for _, seq, _ in J.journal_messages(d2)] == list(range(1, 10)) + list(range(first, 100001))
    finally:
        _unlink_ring(path)


def test_damaged_files_are_refused_with_one_line(ring, tmp_path):
    d = tmp_path / "rec"
    fh("record", "--journal", ring, "--dir", d, "--day", "20261203")
    f = J.journal_files(d)[0]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x40
    f.write_bytes(bytes(data))
    p = fh("book", "dump", "--journal", f, check=False)
    assert p.returncode == 2
    assert "fails its CRC" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    data = bytearray(f.read_bytes())
    data[20] ^= 1  # the header
    f.write_bytes(bytes(data))
    p = fh("decode", "--journal", f, check=False)
    assert p.returncode == 2 and "header's CRC" in p.stderr


def _replay_with_journal(pcap: Path, journal: str) -> dict:
    name = f"jr-{uuid.uuid4().hex[:8]}"
    segment = f"/dev/shm/fh-{name}"
    cmd = process.dataplane_cmd(replay.eal_args(name, f"net_pcap0,rx_pcap={pcap}"), segment, replay.pcap_lines(pcap),
                               keep=False, extra=["--journal", journal, "--journal-mb", "16"])
    dp = process.Dataplane(cmd)
    try:
        return dp.wait(120)
    finally:
        dp.close()
        process.remove_segment(segment)


@pytest.mark.dpdk
def test_dataplane_journal_recorded_equals_the_reference(tmp_path):
    journal = f"/dev/shm/fh-test-dpj-{uuid.uuid4().hex[:8]}.journal"
    try:
        stats = _replay_with_journal(AB, journal)
        assert stats["messages_applied"] == 40000
        d = tmp_path / "rec"
        s = json.loads(fh("record", "--journal", journal, "--dir", d, "--json").stdout)
        assert s["messages"] == 40000 and s["holes"] == 0
        want, _ = replay.reference_books(AB)
        assert _dump("--journal", d) == want
        recs = list(J.journal_records(d))
        assert {r.kind for r in recs} <= {J.MSGS, J.HEARTBEAT, J.END}
        assert any(r.kind == J.END for r in recs)
    finally:
        _unlink_ring(journal)


@pytest.mark.dpdk
def test_dataplane_journal_under_faults(tmp_path):
    """Drops on one line and on both (lost: the journal says where), reordering, duplicates, a session
    change: the recorded journal rebuilds the data plane's own books, and its LOST records are the feed's."""
    from handler import faults
    from handler.net import pcapgen

    day = native.synth_bytes(20000, 12, 3)
    plan = [{"line": "A", "kind": "drop", "at": 3, "count": 2}, {"line": "B", "kind": "reorder", "at": 7, "depth": 3},
            {"line": "both", "kind": "drop", "seq": 2000, "count": 5},
            {"line": "A", "kind": "duplicate", "at": 50, "count": 3}, {"kind": "session_change", "at": 200}]
    pcap = tmp_path / "f.pcap"
    pcapgen.synth_faulty_pcap(pcap, day, ab_lines(), faults.parse_plan({"fault": plan}))
    journal = f"/dev/shm/fh-test-dpj-{uuid.uuid4().hex[:8]}.journal"
    try:
        stats = _replay_with_journal(pcap, journal)
        d = tmp_path / "rec"
        s = json.loads(fh("record", "--journal", journal, "--dir", d, "--json").stdout)
        recs = list(J.journal_records(d))
        lost = sum(r.arg for r in recs if r.kind == J.LOST)
        assert lost == stats["mold"]["lost"] and lost >= 5
        assert not any(r.kind == J.MISSED for r in recs)
        assert s["messages"] == stats["mold"]["applied"]  # the datagrams' and the ones drained from the hold-back
        assert len({r.session for r in recs}) == 2
        want, _ = replay.reference_books(pcap)
        assert _dump("--journal", d) == want
    finally:
        _unlink_ring(journal)


# ---- snapshots: the shadow engine of fh record, and a restart's state ----------------------------------


def test_snapshot_round_trip_and_refusals(ring, tmp_path):
    """Snapshot at message k + the journal after k == the uninterrupted day (the reference's books); a
    damaged, truncated, other-session or other-day snapshot is refused with one line and the previous one
    used."""
    d = tmp_path / "rec"
    p = fh("record", "--journal", ring, "--dir", d, "--day", "20261203", "--snapshot-every", "20000",
           "--snapshot-keep", "4", "--json")
    s = json.loads(p.stdout)
    snaps = [Path(x) for x in s["snapshots"]]
    kept = sorted((d / "snapshots").glob("*.snap"))
    assert len(snaps) == 5 and kept == sorted(snaps[-4:])  # every 20,000 messages, the last at the end; 4 kept
    whole = _dump("--itch", DAY)
    want_ref = [json.loads(l) for l in fh("book", "dump", "--itch", DAY, "--engine", "reference").stdout.splitlines()]
    assert whole == want_ref
    seqs = [native.snapshot_meta(k)["next_seq"] for k in kept]
    assert seqs == sorted(seqs) and seqs[-1] == 100001 and all(1 < q <= 100001 for q in seqs)

    def restored():
        p = fh("book", "dump", "--snapshots", d / "snapshots", "--journal", d, check=False)
        assert p.returncode == 0, p.stderr
        return [json.loads(l) for l in p.stdout.splitlines()], p.stderr

    # each kept snapshot alone + the journal after it gives the day's books
    for k in kept:
        only = tmp_path / f"only-{k.name}"
        only.mkdir()
        (only / k.name).write_bytes(k.read_bytes())
        p = fh("book", "dump", "--snapshots", only, "--journal", d)
        assert [json.loads(l) for l in p.stdout.splitlines()] == whole
        assert f"complete to sequence {native.snapshot_meta(k)['next_seq'] - 1}" in p.stderr
    # the newest damaged: refused, the previous used
    data = bytearray(kept[-1].read_bytes())
    data[len(data) // 2] ^= 0x10
    kept[-1].write_bytes(bytes(data))
    got, err = restored()
    assert got == whole
    assert "body's CRC does not match" in err and kept[-2].name in err
    # the next one truncated: refused too
    kept[-2].write_bytes(kept[-2].read_bytes()[:-7])
    got, err = restored()
    assert got == whole and "truncated" in err and kept[-3].name in err
    # a snapshot of another session or day, newer by name: refused
    e = native.Engine(native.EngineConfig.for_input(4_000_000))
    e.apply_file(DAY)
    e.snapshot_save(d / "snapshots" / "20261203-BENCH00001-000000999999.snap", "OTHER00001", 999999, 20261203)
    e.snapshot_save(d / "snapshots" / "20261203-BENCH00001-000000999998.snap", "BENCH00001", 999998, 20261202)
    got, err = restored()
    assert got == whole
    assert "of session OTHER00001, not BENCH00001" in err and "of day 20261202, not 20261203" in err
    assert all(l.startswith("fh: refused") or l.startswith("fh book dump:") for l in err.strip().splitlines())


def test_snapshot_load_continues_like_the_uninterrupted_engine(tmp_path):
    """A snapshot at message k, loaded into a fresh engine that then applies messages k+1..: books, counters
    and every book's figures equal the engine that never stopped (the order table after a load behaves as
    before: executions, cancels, replaces of restored orders)."""
    msgs = _day_messages()
    k = 41234
    a = native.Engine(native.EngineConfig.for_input(4_000_000))
    for m in msgs[:k]:
        a.apply(m)
    snap = tmp_path / "k.snap"
    meta = a.snapshot_save(snap, "BENCH00001", k + 1, 20261203)
    assert meta["orders"] == a.live_orders and meta["books"] == len(a.locates())
    b = native.Engine(native.EngineConfig.for_input(4_000_000))
    b.apply(msgs[0])  # some state that the load must replace
    assert b.snapshot_load(snap)["next_seq"] == k + 1
    for m in msgs[k:]:
        a.apply(m)
        b.apply(m)
    assert b.dump() == a.dump() and b.counters() == a.counters()
    assert [b.info(l) for l in b.locates()] == [a.info(l) for l in a.locates()]
    small = native.Engine(native.EngineConfig(orders=10, levels=64))
    with pytest.raises(native.NativeError, match="raise max_orders"):
        small.snapshot_load(snap)


def test_recorder_killed_and_restarted_leaves_no_gap(tmp_path):
    """kill -9 of fh record in the middle of a day (a torn write possible), then fh record again: the files
    hold every sequence once, and rebuild the day's books."""
    import signal
    import time

    day = tmp_path / "day.itch"
    fh("synth", "itch", day, "--messages", "600000", "--instruments", "200", "--seed", "11")
    path = f"/dev/shm/fh-test-journal-{uuid.uuid4().hex[:8]}.journal"
    subprocess.run([str(_program("fh-bench-journal")), str(day), "on", "--journal", path, "--mb", "256"],
                   capture_output=True, check=True)
    d = tmp_path / "rec"
    try:
        p = fh_popen("record", "--journal", path, "--dir", d, "--day", "20261203", "--rotate-mb", "4", "--fsync",
                     "always", "--json", cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            files = J.journal_files(d) if d.exists() else []
            if sum(f.stat().st_size for f in files) > 3 << 20:
                break
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
        partial = sum(1 for _ in J.journal_files(d))
        assert partial >= 1
        out = fh("record", "--journal", path, "--dir", d, "--day", "20261203", "--rotate-mb", "4", "--json")
        s = json.loads(out.stdout)
        assert "resuming session BENCH00001" in out.stderr and s["holes"] == 0
        assert 0 < s["messages"] < 600000
        seqs = [seq for _, seq, _ in J.journal_messages(d)]
        assert seqs == list(range(1, 600001))
        assert _dump("--journal", d) == _dump("--itch", day)
    finally:
        _unlink_ring(path)


def test_a_recorder_that_drained_a_closed_ring_is_not_started_again(tmp_path):
    """fh run's RecorderProc: a recorder that exited 0 after the data plane closed its journal (the data plane does
    so before its process exits, so fh run may still see it running) is done. Starting it again put a second
    recorder's pid in the pidfile before it had written anything (test_restart's kill -9 cases, under load)."""
    import io
    import time

    from handler.followers import RecorderProc

    name = f"jrp{uuid.uuid4().hex[:6]}"
    ring = J.ring_path(name)
    subprocess.run([str(_program("fh-bench-journal")), str(DAY), "on", "--journal", ring, "--mb", "8"],
                   capture_output=True, check=True)
    try:
        r = J.JournalRing(ring)
        writer = r.writer_pid
        r.close()
        assert not J.writer_alive(ring)
        log = io.StringIO()
        rec = RecorderProc(name, str(tmp_path / "rec"), {"snapshot_every": 0, "snapshot_keep": 2, "fsync": "none"},
                           log=log)
        assert rec.poll(writer + 1) is None and rec.proc is None  # another process's ring: not followed
        pid = rec.poll(writer)
        assert pid is not None and rec.starts == 1
        assert rec.proc.wait(60) == 0, (tmp_path / "rec" / "record.log").read_text()
        for _ in range(3):
            assert rec.poll(writer) is None
            time.sleep(0.05)
        assert rec.starts == 1 and "starting it again" not in log.getvalue(), log.getvalue()
        assert rec.finish() == 0
        seqs = [seq for _, seq, _ in J.journal_messages(tmp_path / "rec")]
        assert seqs == list(range(1, 100001))
    finally:
        for p in (ring, ring + ".record"):
            if os.path.exists(p):
                os.unlink(p)


def test_fh_status_shows_the_journal_and_its_recorder(tmp_path):
    name = f"jst{uuid.uuid4().hex[:6]}"
    ring = f"/dev/shm/fh-{name}.journal"
    subprocess.run([str(_program("fh-bench-journal")), str(DAY), "on", "--journal", ring, "--mb", "8"],
                   capture_output=True, check=True)
    try:
        fh("record", "--name", name, "--dir", tmp_path / "rec", "--day", "20261203", "--snapshot-every", "60000")
        s = json.loads(fh("status", "--name", name, "--json", check=False).stdout)
        j = s["journal"]
        assert j["path"] == ring and j["records"] == 2211 and j["writer_alive"] is False
        r = j["recorder"]
        assert r["next_seq"] == 100001 and r["lag_bytes"] == 0 and r["alive"] is False
        assert r["last_snapshot"]["next_seq"] == 100001 and r["last_snapshot"]["bytes"] > 0
        text = fh("status", "--name", name, check=False).stdout
        assert "journal   " + ring in text and "0 bytes behind" in text and "last snapshot" in text
    finally:
        for p in (ring, ring + ".record"):
            if os.path.exists(p):
                os.unlink(p)


def test_fh_status_after_the_run_names_its_recorder(tmp_path):
    """fh run with [journal] record = true replays the capture to its end: fh status of the ended instance names
    the recorder that run started (the exit record keeps it), the one whose progress is under journal.recorder."""
    name = f"jre{uuid.uuid4().hex[:6]}"
    d = tmp_path / "rec"
    cfgp = tmp_path / "fh.toml"
    cfgp.write_text(run_config(name, AB, extra=f'[journal]\nring_mb = 16\ndir = "{d}"\nrecord = true\n'))
    try:
        p = fh("run", "--config", cfgp, "--json")
        started = int(p.stderr.split(": fh record (pid ", 1)[1].split(")", 1)[0])
        s = json.loads(fh("status", "--name", name, "--json", check=False).stdout)
        assert s["state"] == "stopped" and s["last_exit"]["rc"] == 0, s
        assert s["recorder_pid"] == started == s["journal"]["recorder"]["pid"], s
        assert s["journal"]["recorder"]["next_seq"] == 40001 and s["journal"]["recorder"]["alive"] is False, s
    finally:
        process.remove_segment(f"/dev/shm/fh-{name}")
        for f in (f"/dev/shm/fh-{name}.journal", f"/dev/shm/fh-{name}.journal.record"):
            if os.path.exists(f):
                os.unlink(f)


def test_config_journal_section(tmp_path):
    from handler import config

    base = (ROOT / "examples" / "fh.toml").read_text().replace(
        "/var/lib/prometheus/node-exporter/fh-nasdaq.prom", str(tmp_path / "fh.prom"))
    assert "[journal]" not in base
    on = tmp_path / "on.toml"
    on.write_text(base + "\n[journal]\nring_mb = 512\n")
    cfg = config.load(on)
    a = config.app_args(cfg, retrans_mac="02:00:00:00:00:01")
    assert a[a.index("--journal") + 1] == f"/dev/shm/fh-{cfg.name}.journal" and a[a.index("--journal-mb") + 1] == "512"
    dflt = tmp_path / "dflt.toml"
    dflt.write_text(base + "\n[journal]\n")
    assert config.load(dflt).journal_mb == 256
    no = tmp_path / "no.toml"
    no.write_text(base)
    assert "--journal" not in config.app_args(config.load(no), retrans_mac="02:00:00:00:00:01")
    for bad, why in (("ring_mb = 300", "power of two"), ("ring_mb = 0", "whole number"), ("size = 1", "unknown key")):
        f = tmp_path / "bad.toml"
        f.write_text(base + f"\n[journal]\n{bad}\n")
        with pytest.raises(config.ConfigError, match=f"journal.*{why}"):
            config.load(f)


@pytest.mark.dpdk
def test_dataplane_restart_from_a_snapshot(tmp_path):
    """Run 1 journals the day; fh record's shadow engine snapshots it. Run 2 starts from a mid-day snapshot
    (--restore) and is fed the day again from its start, as a feed that sends its past again would: what
    the snapshot holds is counted as duplicates, the rest applied; the books equal the reference, and run
    2's journal goes on from the snapshot's sequence."""
    journal = f"/dev/shm/fh-test-dpj-{uuid.uuid4().hex[:8]}.journal"
    j2 = journal.replace(".journal", "-2.journal")
    try:
        _replay_with_journal(AB, journal)
        d = tmp_path / "rec"
        s = json.loads(fh("record", "--journal", journal, "--dir", d, "--snapshot-every", "15000",
                          "--snapshot-keep", "5", "--json").stdout)
        mid = Path(s["snapshots"][0])
        k = native.snapshot_meta(mid)["next_seq"]
        assert 15000 < k < 40000
        name = f"jr-{uuid.uuid4().hex[:8]}"
        segment = f"/dev/shm/fh-{name}"
        cmd = process.dataplane_cmd(replay.eal_args(name, f"net_pcap0,rx_pcap={AB}"), segment, replay.pcap_lines(AB),
                                   keep=True, extra=["--restore", str(mid), "--journal", j2, "--journal-mb", "16"])
        dp = process.Dataplane(cmd)
        try:
            stats = dp.wait(120)
            got = replay.segment_books(segment)
        finally:
            dp.close()
            process.remove_segment(segment)
        want, _ = replay.reference_books(AB)
        assert got == want
        assert stats["mold"]["applied"] == 40000 - (k - 1)
        assert stats["mold"]["gaps"] == 0 and stats["mold"]["lost"] == 0
        r = J.JournalRing(j2)
        st, _, first = r.read(0)
        assert st == J.OK and first.kind == J.MSGS and first.seq <= k < first.seq + first.count + 1
        r.close()
        bad = tmp_path / "bad.snap"
        bad.write_bytes(mid.read_bytes()[:-3])
        cmd[cmd.index(str(mid))] = str(bad)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "--restore" in p.stderr and "truncated" in p.stderr
    finally:
        for p in (journal, j2):
            _unlink_ring(p)


@pytest.mark.dpdk
def test_fh_run_restarts_from_the_recorded_day(tmp_path):
    """fh run with [journal] dir: today's newest sound snapshot + the journal after it become the data plane's
    starting state (--restore); the capture fed again ends with the reference's books."""
    import time

    today = time.strftime("%Y%m%d", time.gmtime())
    journal = f"/dev/shm/fh-test-dpj-{uuid.uuid4().hex[:8]}.journal"
    name = f"jrun{uuid.uuid4().hex[:6]}"
    d = tmp_path / "rec"
    try:
        _replay_with_journal(AB, journal)
        fh("record", "--journal", journal, "--dir", d, "--day", today, "--snapshot-every", "15000")
        # keep the journal files only up to a point, as if the data plane died there: cut the file after
        # its first third of records; the newest snapshot beyond it is damaged and refused
        f = J.journal_files(d)[0]
        _, recs, _ = J.read_journal_file(f)
        keep = J.FILE_HDR_SIZE + sum(len(J.encode_record(r)) for r in recs[: 2 * len(recs) // 3])
        f.write_bytes(f.read_bytes()[:keep])
        snaps = sorted((d / "snapshots").glob("*.snap"))
        assert len(snaps) >= 2
        first = native.snapshot_meta(snaps[0])["next_seq"]
        damaged = bytearray(snaps[1].read_bytes())
        damaged[200] ^= 0xFF
        snaps[1].write_bytes(bytes(damaged))
        for s in snaps[2:]:
            s.unlink()
        cfgp = tmp_path / "fh.toml"
        cfgp.write_text(run_config(name, AB, extra=f'[journal]\nring_mb = 16\ndir = "{d}"\n'))
        p = fh("run", "--config", cfgp, "--json", "--keep-segment")
        assert f"restarting from {snaps[0]}" in p.stderr and "complete to sequence" in p.stderr
        assert "fh: refused" in p.stderr and f"snapshot {snaps[1]}: its body's CRC does not match" in p.stderr
        stats = json.loads(p.stdout)
        k = native.snapshot_meta(d / "restart.snap")["next_seq"]
        assert first < k < 40000
        assert stats["mold"]["applied"] == 40000 - (k - 1) and stats["mold"]["lost"] == 0
        got = replay.segment_books(f"/dev/shm/fh-{name}")
        want, _ = replay.reference_books(AB)
        assert got == want
    finally:
        process.remove_segment(f"/dev/shm/fh-{name}")
        for p in (journal, f"/dev/shm/fh-{name}.journal"):
            _unlink_ring(p)


def test_record_refuses_a_bad_day_idle_time_or_dir_before_it_writes(tmp_path):
    """fh record --day abc was a traceback (ValueError) after its first file had been written under DIR/abc/;
    --day 99999999999 would not fit the header's 32-bit day; --idle-exit-s -1 or nan were taken; a --dir that is a
    file was reported as a damaged journal file. Each is one line, exit 2, and nothing is written."""
    out = tmp_path / "out"
    for day in ("abc", "20261399", "2026", "99999999999", "../../x"):
        r = fh("record", "--journal", "/nonexistent.journal", "--dir", out, "--day", day, check=False)
        assert r.returncode == 2 and r.stderr.splitlines()[-1] == (
            f"fh record: error: argument --day: expected a date as YYYYMMDD, e.g. 20240315, got {day!r}"), r.stderr
        assert "Traceback" not in r.stderr
    for s in ("-1", "0", "nan", "inf"):
        r = fh("record", "--journal", "/nonexistent.journal", "--dir", out, f"--idle-exit-s={s}", check=False)
        assert r.returncode == 2 and "argument --idle-exit-s: expected more than 0" in r.stderr, r.stderr
    f = tmp_path / "a-file"
    f.write_bytes(b"\x00\x0cS")
    r = fh("record", "--journal", "/nonexistent.journal", "--dir", f, check=False)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"fh: --dir {f}: not a directory: give the directory the journal files go into (it is created when "
        "missing)"), r.stderr
    assert not out.exists()


def test_a_ring_that_is_a_fifo_or_a_directory_is_refused_at_once(tmp_path):
    """fh record --journal FIFO blocked forever in open(); a directory was "40 bytes, too short for a journal
    header". Both are one line naming what the path is."""
    fifo = tmp_path / "ring.journal"
    os.mkfifo(fifo)
    r = fh("record", "--journal", fifo, "--dir", tmp_path / "out", check=False, timeout=20)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"fh: {fifo}: a FIFO, not a journal ring: give the data plane's ring (/dev/shm/fh-NAME.journal, or --name "
        "NAME)"), r.stderr
    with pytest.raises(J.JournalError, match="a directory, not a journal ring"):
        J.JournalRing(tmp_path)


def test_a_fifo_in_the_journal_or_snapshot_directory_is_named_not_waited_on(tmp_path):
    """fh run's restart (snapshot.restart_snapshot) and fh record's resume read every *.fhj and *.snap of the journal
    directory: a FIFO of that name blocked them forever (fh run never started), a directory of that name was an
    IsADirectoryError. Each is now one line naming the file and what to do."""
    import sys
    import time

    day = time.strftime("%Y%m%d", time.gmtime())
    cases = []
    for what, rel in (("journal", f"{day}/{day}-X-0000.fhj"), ("snapshot", f"snapshots/{day}-X-000000000001.snap")):
        for kind in ("a FIFO", "a directory"):
            d = tmp_path / f"{what}-{kind[2:]}"
            f = d / rel
            f.parent.mkdir(parents=True)
            os.mkfifo(f) if kind == "a FIFO" else f.mkdir()
            cases.append((d, f"{f}: {kind}, not a {what} file, in the {what} directory "
                             f"{f.parent if what == 'snapshot' else d}: move it out"))
    for d, said in cases:
        p = subprocess.run([sys.executable, "-c", "import sys; from handler.snapshot import restart_snapshot\n"
                            "from handler.errors import FhError\n"
                            "try:\n    restart_snapshot(sys.argv[1], sys.argv[2])\n"
                            "except FhError as e:\n    print(e)\n", str(d), day],
                           capture_output=True, text=True, timeout=20, cwd=ROOT)
        assert p.stdout.strip() == said, (d, p.stdout, p.stderr)
