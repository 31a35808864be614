"""GLIMPSE-style snapshots over SoupBinTCP (docs/recovery.md), real processes on loopback: `fh snapshot-server`
serving a recorded day at several points, taken by the C client (the data plane's) into an engine whose books
equal the reference model's at that point; served from a capture and from fh record's journal files and
snapshots; a wrong password, a session not served, a server that goes silent, a stream cut short and a
malformed packet each end in one line and a counter."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, fh
from handler import glimpse, native
from handler.net.retransmit import Store
from handler.reference import ReferenceBook

AB = ROOT / "pcaps" / "synth-ab-40k.pcap"
PW = "s3cret"


@contextmanager
def server(tmp_path, *source: str, fault: str | None = None, user: str = "fh", extra=()):
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    pwf = tmp_path / "pw"
    pwf.write_text(PW + "\n")
    cmd = [sys.executable, "-m", "handler", "snapshot-server", *source, "--listen", "127.0.0.1:0", "--user", user,
           "--password-file", str(pwf), "--ready-file", str(ready), "--json", *extra]
    if fault:
        cmd += ["--fault", fault]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for _ in range(600):
            if ready.exists() or p.poll() is not None:
                break
            time.sleep(0.05)
        if not ready.exists():
            out, err = p.communicate(timeout=10)
            pytest.fail(f"fh snapshot-server did not start:\n{err}")
        info = json.loads(ready.read_text())
        info["proc"] = p
        yield info
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        info_out = out.strip().splitlines()
        if info_out:
            try:
                p.summary = json.loads(info_out[-1])
            except ValueError:
                p.summary = {}


def _reference_at(at: int) -> list[dict]:
    st = Store.from_pcap(AB)
    (msgs,) = st.sessions.values()
    ref = ReferenceBook()
    for s in range(1, at):
        ref.apply(msgs[s])
    return ref.books()


@pytest.mark.parametrize("at", [1, 7531, 20000, 40001])
def test_books_at_several_points_equal_the_reference(tmp_path, at):
    with server(tmp_path, "--pcap", str(AB), "--at", str(at)) as s:
        assert s["next_seq"] == at and s["session"] == "FHSYNTH001"
        e, info = glimpse.fetch(s["listen"], "fh", PW, "FHSYNTH001")
    assert info["next_seq"] == at and info["session"] == "FHSYNTH001"
    c = info["counters"]
    assert c["completed"] == 1 and c["logins"] == 1 and c["failed"] == 0 and c["messages"] == s["messages"]
    assert e.dump() == _reference_at(at)
    assert all(i["status"] == "live" for i in map(e.info, e.locates())), "every book live after the snapshot's end"
    # every book of the day so far (empty ones too) with its symbol and trading state, as the feed made them
    direct = native.Engine()
    (msgs,) = Store.from_pcap(AB).sessions.values()
    for q in range(1, at):
        direct.apply(msgs[q])
    def books(x):
        return [(i["locate"], i["symbol"], i["trading_state"]) for i in map(x.info, x.locates())]
    assert books(e) == books(direct)
    if at > 1:
        assert e.live_orders == s["orders"] > 0


def test_fetch_to_a_snapshot_file_that_restore_loads(tmp_path, monkeypatch):
    out = tmp_path / "glimpse.snap"
    monkeypatch.setenv("FH_SNAPSHOT_PASSWORD", PW)  # the password from the environment (fh() passes it on)
    with server(tmp_path, "--pcap", str(AB), "--at", "12345") as s:
        p = fh("snapshot-fetch", "--server", s["listen"], "--user", "fh", "--out", out, "--json")
    got = json.loads(p.stdout)
    assert got["next_seq"] == 12345 and got["orders"] == s["orders"]
    meta = native.snapshot_meta(out)
    assert meta["next_seq"] == 12345 and meta["session"] == "FHSYNTH001"
    e = native.Engine()
    e.snapshot_load(out)
    assert e.dump() == _reference_at(12345)
    # the server's summary: one login, one snapshot served, a logout after it
    assert s["proc"].summary["logins"] == 1 and s["proc"].summary["served"] == 1


def test_served_from_the_journal_files_and_their_snapshots(tmp_path):
    """The state at a point between two of fh record's snapshots: the older snapshot + the journal up to it."""
    import uuid

    from test_journal import _replay_with_journal, HAVE_DP

    if not HAVE_DP:
        pytest.skip("fh-dataplane not built (no DPDK): no journal to record")
    journal = f"/dev/shm/fh-test-gl-{uuid.uuid4().hex[:8]}.journal"
    try:
        _replay_with_journal(AB, journal)
        d = tmp_path / "rec"
        s = json.loads(fh("record", "--journal", journal, "--dir", d, "--snapshot-every", "15000",
                          "--snapshot-keep", "5", "--json").stdout)
        first = native.snapshot_meta(s["snapshots"][0])["next_seq"]
        at = first + 4321
        with server(tmp_path, "--journal", str(d), "--at", str(at)) as srv:
            e, info = glimpse.fetch(srv["listen"], "fh", PW)
        assert info["next_seq"] == at
        assert e.dump() == _reference_at(at)
        # the whole recorded day by default
        with server(tmp_path, "--journal", str(d)) as srv:
            e, info = glimpse.fetch(srv["listen"], "fh", PW)
        assert info["next_seq"] == 40001 and e.dump() == _reference_at(40001)
    finally:
        if os.path.exists(journal):
            os.unlink(journal)


def test_bad_login_silent_server_truncated_stream_each_one_line_and_counted(tmp_path, monkeypatch):
    with server(tmp_path, "--pcap", str(AB), "--at", "30000") as s:
        with pytest.raises(glimpse.GlimpseError) as ei:
            glimpse.fetch(s["listen"], "fh", "wrong")
        assert "login rejected: not authorized" in str(ei.value) and "\n" not in str(ei.value)
        assert ei.value.counters["rejected"] == 1 and ei.value.counters["failed"] == 1
        with pytest.raises(glimpse.GlimpseError) as ei:
            glimpse.fetch(s["listen"], "fh", PW, "OTHERSESS1")
        assert "session not available" in str(ei.value) and ei.value.counters["rejected"] == 1
    assert s["proc"].summary["rejected"] == 2 and s["proc"].summary["served"] == 0

    with server(tmp_path, "--pcap", str(AB), "--at", "30000", fault="silent:200") as s:
        t0 = time.monotonic()
        with pytest.raises(glimpse.GlimpseError) as ei:
            glimpse.fetch(s["listen"], "fh", PW, idle_timeout_ms=400)
        assert time.monotonic() - t0 < 10
        assert "silent for 400 ms" in str(ei.value) and ei.value.counters["silent"] == 1
        assert ei.value.counters["messages"] == 200 and ei.value.counters["completed"] == 0

    with server(tmp_path, "--pcap", str(AB), "--at", "30000", fault="close:300") as s:
        with pytest.raises(glimpse.GlimpseError) as ei:
            glimpse.fetch(s["listen"], "fh", PW, retries=1, retry_delay_ms=50)
        msg = str(ei.value)
        assert "before the snapshot's end ('G'): incomplete, not used" in msg and "\n" not in msg
        assert ei.value.counters["truncated"] == 2 and ei.value.counters["retries"] == 1

    with server(tmp_path, "--pcap", str(AB), "--at", "30000", fault="garbage:10") as s:
        with pytest.raises(glimpse.GlimpseError) as ei:
            glimpse.fetch(s["listen"], "fh", PW)
        assert "not SoupBinTCP" in str(ei.value) and ei.value.counters["malformed"] == 1

    # nobody there: the CLI's one line, exit status 1
    p = fh("snapshot-fetch", "--server", "127.0.0.1:1", "--user", "fh", "--out", tmp_path / "x.snap",
           "--password-file", tmp_path / "pw", "--connect-timeout-ms", "500", check=False)
    assert p.returncode != 0 and "cannot connect" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.snap").exists()


def test_server_refuses_bad_arguments_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FH_SNAPSHOT_PASSWORD", PW)
    for args, want in [
        (["--pcap", str(AB), "--at", "50000"], "pick a point in 1..40001"),
        (["--pcap", str(AB), "--session", "NOPE"], "is not in the capture"),
        (["--pcap", str(AB), "--fault", "loud:3"], "expected silent:N, close:N or garbage:N"),
        (["--journal", str(tmp_path)], "no journal files"),
    ]:
        p = fh("snapshot-server", *args, "--user", "fh", "--listen", "127.0.0.1:0", check=False, timeout=60)
        assert p.returncode != 0 and want in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    monkeypatch.delenv("FH_SNAPSHOT_PASSWORD")
    p = fh("snapshot-server", "--pcap", str(AB), "--user", "fh", check=False, timeout=60)
    assert p.returncode != 0 and "FH_SNAPSHOT_PASSWORD" in p.stderr
