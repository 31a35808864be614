"""systemd's readiness protocol: fh run and fh witness run as Type=notify units and say READY=1 on $NOTIFY_SOCKET
once they handle SIGHUP, so that `systemctl reload` (SIGHUP) in a unit's first fraction of a second, which systemd
holds until READY=1, can no longer end them. Real processes and a real AF_UNIX datagram socket standing in for
systemd's (a path, and an abstract name as systemd gives); a SIGHUP sent the moment READY=1 arrives."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, dataplane_path, fh_run_popen, run_config, stop_all
from handler import sdnotify, segments, supervise


def _notify_socket(where: str) -> tuple[socket.socket, str]:
    """A bound datagram socket as systemd's notify socket; (it, the $NOTIFY_SOCKET naming it)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if where.startswith("@"):
        s.bind("\0" + where[1:])
    else:
        s.bind(where)
    s.settimeout(30)
    return s, where


def _lines(path) -> list[str]:
    with open(path) as f:
        return f.read().splitlines()


def _until(what, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _ready_then_sighup(s: socket.socket, proc: subprocess.Popen, err) -> list[str]:
    """The first datagram, which must say READY=1 (within 30 s, the process still running); SIGHUP sent the moment
    it came, and the process's line about it waited for. The datagram's lines."""
    lines = s.recv(4096).decode().split("\n")
    proc.send_signal(signal.SIGHUP)
    assert "READY=1" in lines, lines
    _until(lambda: any("SIGHUP" in x for x in _lines(err)) or proc.poll() is not None)
    assert proc.poll() is None, _lines(err)
    return lines


def test_notify_outside_systemd_sends_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(sdnotify, "_address", None)
    assert sdnotify.notify("READY=1") is False


def test_notify_takes_the_socket_from_the_environment(tmp_path, monkeypatch):
    """A path socket: the datagram as sent, $NOTIFY_SOCKET gone from the environment (children do not get it); a
    socket nobody listens on is not an error (False)."""
    s, where = _notify_socket(str(tmp_path / "notify"))
    monkeypatch.setattr(sdnotify, "_address", None)
    monkeypatch.setenv("NOTIFY_SOCKET", where)
    try:
        assert sdnotify.notify("READY=1", "STATUS=x") is True
        assert s.recv(4096) == b"READY=1\nSTATUS=x" and "NOTIFY_SOCKET" not in os.environ
    finally:
        s.close()
    os.unlink(where)
    assert sdnotify.notify("STOPPING=1") is False


@pytest.mark.dpdk
def test_fh_run_ready_then_sighup_at_once(tmp_path, monkeypatch):
    """fh run (without [replication]) under a notify socket: READY=1 (with its STATUS); a SIGHUP sent the moment it
    arrives is taken (one line: nothing to re-read) and fh run and its data plane (the same pid: SIGHUP never reaches
    it) run on; the data plane did not inherit $NOTIFY_SOCKET; SIGTERM stops both cleanly. (With replication, SIGHUP
    re-reads the witness key: test_rekey.)"""
    if dataplane_path() is None:
        pytest.skip("needs fh-dataplane")
    monkeypatch.setenv("FH_RUN_DIR", str(tmp_path / "run"))
    name = f"sdn{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "fh.toml"
    cfg.write_text(run_config(name, ROOT / "pcaps" / "synth-ab-40k.pcap", exit_idle_ms=0))
    err = tmp_path / "run.err"
    s, where = _notify_socket(str(tmp_path / "notify"))
    run = fh_run_popen(cfg, err, {"NOTIFY_SOCKET": where})
    try:
        assert f"STATUS=starting {name}" in _ready_then_sighup(s, run, err)
        _until(lambda: (supervise.lookup(name)[1] or {}).get("dataplane_pid"), 30)
        dp = supervise.lookup(name)[1]["dataplane_pid"]
        env = open(f"/proc/{dp}/environ", "rb").read().split(b"\0")
        time.sleep(0.3)
        assert run.poll() is None and os.kill(dp, 0) is None and supervise.lookup(name)[1]["dataplane_pid"] == dp
    finally:
        stop_all([run], 30)
        s.close()
        segments.remove(f"/dev/shm/fh-{name}")
    assert not any(e.startswith(b"NOTIFY_SOCKET=") for e in env) and any(e.startswith(b"FH_RUN_DIR=") for e in env)
    said = [x for x in _lines(err) if "SIGHUP" in x]
    assert said == [f"fh run: {name}: SIGHUP: no [replication]: nothing to re-read"], said
    assert run.returncode == 0 and "the data plane stopped cleanly on SIGTERM" in _lines(err)[-1], _lines(err)[-5:]


def test_fh_witness_ready_then_sighup_at_once(tmp_path):
    """fh witness under an abstract notify socket (as systemd names its own): READY=1 once listening; a SIGHUP at
    once is taken (unkeyed: nothing to read again) and it answers on; SIGTERM ends it with its counts."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
    s, where = _notify_socket(f"@fh-test-notify-{uuid.uuid4().hex}")
    err = tmp_path / "w.err"
    p = subprocess.Popen([sys.executable, "-m", "handler", "witness", "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.PIPE, stderr=open(err, "w"), text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": where})
    try:
        assert f"STATUS=listening on 127.0.0.1:{port}" in _ready_then_sighup(s, p, err)
        time.sleep(0.2)
        assert p.poll() is None
    finally:
        s.close()
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
    assert p.returncode == 0 and out.strip().startswith("{"), _lines(err)
    assert [x for x in _lines(err) if "SIGHUP" in x] == [
        "fh witness: SIGHUP: unkeyed (no --key-file): nothing to read again"], _lines(err)


@pytest.mark.parametrize("unit", ["deploy/fh@.service", "ansible/roles/fh_witness/templates/fh-witness.service.j2"])
def test_units_are_type_notify(unit):
    """Both units wait for READY=1 (Type=notify) and take it from the main process only."""
    lines = (ROOT / unit).read_text().splitlines()
    assert "Type=notify" in lines and "NotifyAccess=main" in lines
    assert not [x for x in lines if x.startswith("Type=") and x != "Type=notify"]
