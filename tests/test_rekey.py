"""The witnesses' key rotated in service: SIGHUP makes fh-replicate read --witness-key-file again (and fh run, sent
SIGHUP by `systemctl reload`, checks the file and forwards it to its fh-replicate processes), so that a new key
needs no restart (a restarted primary fh-replicate would pause its beats: a failover risk).

Real processes: a primary fh-replicate whose beats are captured on a UDP socket and checked with handler.witness's
tags (the new key after the re-read, every beat counted on, a bad file leaving the key in use); a standby
fh-replicate asking a real keyed fh witness, whose answers it takes no more once its own key is another; fh run
with replication, SIGHUP re-reading the key in its fh-replicate and never reaching the data plane."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import fh, fh_run_popen, unit_exec_reload, why_no_replicate
from handler import replicate as R
from handler import witness as W
from test_replicate import _day_journal, _primary, _remove
from test_witness import PROG, _keyed_server, _stop, _until_answered

pytestmark = pytest.mark.skipif(PROG is None, reason=str(why_no_replicate()))

REREAD = "re-read at SIGHUP ({n} bytes): the witness datagrams are signed with it from now on"
STAYS = ": the key in use stays"


def _replace_key(path: str, data: bytes, mode: int = 0o600) -> None:
    """A key file replaced as an operator would: a temporary file beside it, its mode set, renamed over it."""
    tmp = f"{path}.new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _lines(err_path) -> list[str]:
    with open(err_path) as f:
        return f.read().splitlines()


def _said(err_path, what: str, after: int = 0, timeout: float = 10, times: int = 1) -> list[str]:
    """The stderr lines (from line `after` on) once `times` of them hold `what`."""
    deadline = time.monotonic() + timeout
    while True:
        new = _lines(err_path)[after:]
        if sum(what in line for line in new) >= times:
            return new
        assert time.monotonic() < deadline, f"not said in {timeout} s: {what!r}; said: {new}"
        time.sleep(0.01)


def _primary_beating(tmp_path, name: str, cap_port: int, key_file: str | None, *, witness: bool = True):
    """A primary fh-replicate that waits for a journal that is not there (its beats go on meanwhile, from their
    thread), stderr to a file: (the process, that file)."""
    err = tmp_path / f"{name}.err"
    wit = ["--witness", f"127.0.0.1:{cap_port}", "--pair", "pk"] if witness else []
    p = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", "127.0.0.1:9", "--journal",
                          f"/dev/shm/fh-{name}-none.journal", "--name", name, "--status",
                          str(tmp_path / f"{name}.repl"),
                          "--heartbeat-ms", "20", "--connect-timeout-ms", "60000", *wit,
                          *(["--witness-key-file", key_file] if key_file else [])],
                         stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    return p, err


def test_primary_beats_under_the_new_key_after_sighup(tmp_path):
    """A primary beating keyed: its key file replaced by a new key (another length too) and SIGHUP: one line, and the
    beats from then on verify under the new key, not the old; no beat lost (their nonces, the beat count, go on
    one by one across the swap) and the process runs on. Then a file of mode 644, then one of 10 bytes: one line
    each naming the cause and its fix, and the beats stay under the key in use. SIGHUP to fh-replicate without
    --witness-key-file (keyed or not by --witness): one line, nothing changes, it runs on."""
    k1, k2, k3 = os.urandom(32), os.urandom(48), os.urandom(32)
    kf = str(tmp_path / "witness.key")
    _replace_key(kf, k1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cap:
        cap.bind(("127.0.0.1", 0))
        cap.settimeout(5)
        port = cap.getsockname()[1]
        pr, err = _primary_beating(tmp_path, "rkp", port, kf)
        beats: list[bytes] = []

        def take(n: int) -> None:
            for _ in range(n):
                beats.append(cap.recvfrom(256)[0])

        try:
            take(5)
            _replace_key(kf, k2)
            pr.send_signal(signal.SIGHUP)
            said = _said(err, "re-read at SIGHUP")
            take(10)  # (those sent before the line too: the line comes after the swap)
            n_good = len(beats)
            _replace_key(kf, k3, 0o644)
            pr.send_signal(signal.SIGHUP)
            said_644 = _said(err, "mode 644", len(said))
            take(5)
            _replace_key(kf, b"x" * 10)
            pr.send_signal(signal.SIGHUP)
            said_short = _said(err, "too short", len(said) + len(said_644))
            take(5)
            assert pr.poll() is None, _lines(err)
        finally:
            _stop(pr)
    lines = [line for line in _lines(err) if "SIGHUP" in line]
    assert lines == [f"fh-replicate: --witness-key-file {kf}: " + REREAD.format(n=48),
                     f"fh-replicate: --witness-key-file {kf}: at SIGHUP: mode 644, readable by group or others: "
                     f"chmod 600 {kf}" + STAYS,
                     f"fh-replicate: --witness-key-file {kf}: at SIGHUP: too short (10 bytes): 32 to 1024 bytes of "
                     "secret, e.g. head -c 32 /dev/urandom > PATH; chmod 600 PATH" + STAYS], lines
    assert said[-1] == lines[0] and said_644[-1] == lines[1] and said_short[-1] == lines[2]
    under = ["k1" if W.unpack(b, k1) else "k2" if W.unpack(b, k2) else "?" for b in beats]
    assert "?" not in under and all(W.unpack(b, k3) is None for b in beats), under
    first = under.index("k2")
    assert under[:5] == ["k1"] * 5 and under[first:] == ["k2"] * (len(beats) - first), under  # one swap, for good
    assert len(beats) - n_good == 10  # after the bad files: all under the key in use
    nonces = [(W.unpack(b, k1) or W.unpack(b, k2))["nonce"] for b in beats]
    assert nonces == list(range(nonces[0], nonces[0] + len(beats))), nonces  # none lost, none sent twice

    # without --witness-key-file: unkeyed beats (and no witness at all): one line, nothing re-read, running on
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cap:
        cap.bind(("127.0.0.1", 0))
        cap.settimeout(5)
        pu, err_u = _primary_beating(tmp_path, "rku", cap.getsockname()[1], None)
        pn, err_n = _primary_beating(tmp_path, "rkn", 9, None, witness=False)
        try:
            cap.recvfrom(256)
            time.sleep(0.2)  # (pn at its journal's wait too)
            for p in (pu, pn):
                p.send_signal(signal.SIGHUP)
            _said(err_u, "SIGHUP")
            _said(err_n, "SIGHUP")
            plain = [cap.recvfrom(256)[0] for _ in range(3)]
            assert pu.poll() is None and pn.poll() is None
        finally:
            _stop(pu, pn)
    assert all(len(b) == 64 and W.unpack(b)["type"] == W.BEAT for b in plain)
    assert [line for line in _lines(err_u) if "SIGHUP" in line] == [
        "fh-replicate: SIGHUP: no --witness-key-file given: nothing to re-read (the witness datagrams stay unkeyed)"]
    assert [line for line in _lines(err_n) if "SIGHUP" in line] == [
        "fh-replicate: SIGHUP: no --witness-key-file given: nothing to re-read (no --witness either)"]


@pytest.mark.netns
def test_primary_connecting_to_a_silent_peer_re_reads_at_once(tmp_path):
    """A primary whose connect to its standby hangs (a namespace where the peer's address leads nowhere: its SYNs are
    never answered, TCP retries for minutes; under fh run the connect timeout is a day): SIGHUP re-reads the key
    while the connect still waits (fabric.c's wait calls fh-replicate back when a signal interrupts it), not
    once TCP gives up; its status counts the re-read."""
    from handler.net import sender
    from test_replicate import _ip

    if os.geteuid() != 0:
        pytest.skip("needs root: a network namespace")
    tag = uuid.uuid4().hex[:8]
    ns = f"fhrk-{tag}"
    try:
        _ip("netns", "add", ns)
    except (RuntimeError, FileNotFoundError) as e:
        pytest.skip(f"cannot make a network namespace here: {e}")
    journal, status, err = None, str(tmp_path / "p.repl"), tmp_path / "p.err"
    kf = str(tmp_path / "witness.key")
    _replace_key(kf, os.urandom(32))
    pr = None
    try:
        # the peer 10.99.0.2 behind a veth whose far end has no address: a permanent neighbour entry, so that the
        # SYNs go out (no ARP failure) and are never answered
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", ns, "addr", "add", "10.99.0.1/24", "dev", "v0")
        for dev in ("v0", "v1"):
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "neigh", "add", "10.99.0.2", "lladdr", "02:00:00:00:00:02", "dev", "v0", "nud", "permanent")
        journal = _day_journal(tag)
        pr = subprocess.Popen([*sender.netns_argv(ns), PROG, "--role", "primary", "--provider", "tcp", "--peer",
                               "10.99.0.2:7400", "--journal", journal, "--name", f"rkc-{tag}", "--status", status,
                               "--heartbeat-ms", "50", "--connect-timeout-ms", "60000", "--witness", "127.0.0.1:9",
                               "--pair", "pk", "--witness-key-file", kf],
                              stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        _until(status, lambda d: d["state"] == "connecting", 10, lambda: _lines(err))
        time.sleep(0.5)  # in the connect's wait
        _replace_key(kf, os.urandom(40))
        t0 = time.monotonic()
        pr.send_signal(signal.SIGHUP)
        said = _said(err, "re-read at SIGHUP", timeout=5)
        took = time.monotonic() - t0
        d = R.read_status(status)
        assert pr.poll() is None, _lines(err)
    finally:
        if pr is not None:
            pr.kill()
            pr.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if journal:
            _remove(journal)
    assert said == [f"fh-replicate: --witness-key-file {kf}: " + REREAD.format(n=40)], said  # nothing else said
    assert took < 2 and d["state"] == "connecting" and d["witness_rekeys"] == 1, (took, d)


def test_standby_queries_refused_after_its_key_changes(tmp_path):
    """A standby, its primary gone (shipped a day, then exited), asks a keyed fh witness (one key) that hears the
    pair's primary (beats sent from here under that key): authentic answers, "primary alive", not promoting. Its
    key file changed to a key the witness does not have, and SIGHUP: from the line on, no answer is taken (the
    witness refuses its queries: bad_auth there), it says so and still does not promote; its status counts the
    re-read."""
    tag = uuid.uuid4().hex[:8]
    k1, k2 = os.urandom(32), os.urandom(32)
    wkf, skf = str(tmp_path / "witness.key"), str(tmp_path / "standby.key")
    _replace_key(wkf, k1)
    _replace_key(skf, k1)
    pair = f"rk-{tag}"
    wp, wport = _keyed_server(wkf)
    stop_beats = threading.Event()

    def primary_beats() -> None:  # the pair's primary, alive as far as the witness knows
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            n = time.time_ns()
            while not stop_beats.is_set():
                n += 1
                s.sendto(W.pack(W.BEAT, pair, role=W.PRIMARY, epoch=1, nonce=n, key=k1), ("127.0.0.1", wport))
                stop_beats.wait(0.02)

    name = f"rks-{tag}"
    journal, sj, status = f"/dev/shm/fh-rj-{tag}.journal", f"/dev/shm/fh-{name}.journal", str(tmp_path / "s.repl")
    err = tmp_path / "standby.err"
    pr = sb = None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(0.5)
            _until_answered(c, ("127.0.0.1", wport), pair, k1)
        threading.Thread(target=primary_beats, daemon=True).start()
        assert _day_journal(tag) == journal
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            addr = f"127.0.0.1:{s.getsockname()[1]}"
        sb = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", sj,
                               "--journal-mb", "16", "--name", name, "--status", status, "--ring-mb", "4",
                               "--failover-timeout-ms", "300", "--heartbeat-ms", "20", "--promote-on-silence",
                               "--witness", f"127.0.0.1:{wport}", "--pair", pair, "--witness-key-file", skf],
                              stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        _until(status, lambda d: d["state"] == "connecting", 10, lambda: _lines(err))
        pr = _primary(journal, addr, tag=tag)
        assert pr.wait(60) == 0, pr.communicate()
        # the primary gone: the standby asks after 300 ms of silence; the witness hears "the primary" from here
        before = _until(status, lambda d: d["witness_state"] == "primary-alive", 10, lambda: _lines(err))
        assert before["witness_answers"] >= 1 and before["witness_bad_auth"] == 0 and before["witness_rekeys"] == 0
        _replace_key(skf, k2)
        sb.send_signal(signal.SIGHUP)
        said = _said(err, "re-read at SIGHUP")
        d0 = R.read_status(status)
        d = _until(status, lambda d: d["witness_queries"] >= d0["witness_queries"] + 5
                   and d["witness_state"] == "no-answer", 10, lambda: _lines(err))
        assert sb.poll() is None
    finally:
        stop_beats.set()
        _stop(*(p for p in (pr, sb) if p))
        wp.send_signal(signal.SIGTERM)
        wout, werr = wp.communicate(timeout=10)
        _remove(journal, sj, f"/dev/shm/fh-rp-{tag}.repl")
    assert said[-1] == f"fh-replicate: --witness-key-file {skf}: " + REREAD.format(n=32), said
    assert d["witness_answers"] == d0["witness_answers"] and d["state"] != "promoted", d  # none taken since
    assert d["witness_rekeys"] == 1 and d["epoch"] == 1, d
    verdicts = [line for line in _lines(err)[len(said):] if line.startswith("fh-replicate: witness:")]
    assert verdicts and all("not promoting" in v for v in verdicts), verdicts
    assert "not keyed with this --witness-key-file" in verdicts[-1] or "a bad tag" in verdicts[-1], verdicts
    st = json.loads(wout.splitlines()[-1])
    assert st["bad_auth"] >= 5 and st["malformed"] == 0, st  # its queries (and beats) under the other key


def _status(path: str) -> dict:
    try:
        return R.read_status(path)
    except R.ReplicateError:
        return {}


def _until(status: str, pred, timeout: float, what) -> dict:
    """fh-replicate's status once pred holds of it; what: the failure's message (a callable: read then)."""
    deadline = time.monotonic() + timeout
    while True:
        d = _status(status)
        if d and pred(d):
            return d
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.02)


def test_status_layouts_with_and_without_rekeys(tmp_path):
    """fh replicate status reads the status file with fenced_by (904 bytes), the one before it with witness_rekeys
    (896: fenced_by 0) and the one before that (888: both 0)."""
    head = R._HEAD.pack(R.STATUS_MAGIC, 1, 1, os.getpid(), 0, 1, b"tcp", b"", b"", *([0] * 17))
    wit = R._WITNESS_AUTH.pack(b"10.0.0.9:7410", b"", 0, 0, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0)
    rk = (3).to_bytes(8, "little")
    for raw, n, by in ((head + wit + rk + (5).to_bytes(8, "little"), 3, 5), (head + wit + rk, 3, 0), (head + wit, 0, 0)):
        p = tmp_path / "s.repl"
        p.write_bytes(raw)
        d = R.read_status(str(p))
        assert (d["witness"], d["witness_beats"], d["witness_rekeys"], d["fenced_by"]) == ("10.0.0.9:7410", 12, n,
                                                                                          by), d
    assert len(head + wit) + 8 == 896 and len(head + wit) + 16 == 904


# ---- fh run ----------------------------------------------------------------------------------------------------------

def _record(name: str) -> dict:
    from handler import supervise

    return supervise.lookup(name)[1] or {}


@pytest.mark.dpdk
def test_fh_run_sighup_has_its_fh_replicate_re_read_the_key(tmp_path, monkeypatch):
    """fh run, primary with replication (its peer not there: its fh-replicate waits for it, beating to the witness, a
    UDP socket here; its guard on the listen address), keyed: its key file replaced and SIGHUP to fh run: fh run
    checks the file and says so in one line, its fh-replicate and its guard each say the re-read line, the beats
    verify under the new key from then on; fh run, its data plane (the same pid) and both fh-replicate (the same
    pids, not restarted) run on. Then the file made mode 644 and SIGHUP: fh run's one line (the loader's words, the
    fix), nothing forwarded (no fh-replicate line), the beats still under the key in use. Each SIGHUP is sent by the
    unit's ExecReload (`fh reload`), which returns once the reload has taken (both status files count the re-read
    when it returns, exit 0) and fails, with fh run's line, when the file was refused (exit 1)."""
    from conftest import ROOT, dataplane_path, stop_all
    from handler import replication_run as RR
    from handler import segments
    from test_failover_roles import _config
    from test_failover_roles import _port as tcp_port

    if dataplane_path() is None:
        pytest.skip("needs fh-dataplane")
    monkeypatch.setenv("FH_RUN_DIR", str(tmp_path / "run"))
    k1, k2 = os.urandom(32), os.urandom(48)
    kf = str(tmp_path / "witness.key")
    _replace_key(kf, k1)
    name = f"rkr{uuid.uuid4().hex[:6]}"
    cap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cap.bind(("127.0.0.1", 0))
    cap.settimeout(5)
    cfg = tmp_path / "fh.toml"
    cfg.write_text(_config(name, ROOT / "pcaps" / "synth-ab-40k.pcap", "primary", tcp_port(), tcp_port(),
                           failover_timeout_ms=300, more=f'witness = "127.0.0.1:{cap.getsockname()[1]}"\n'
                           f'pair = "rk"\nwitness_key_file = "{kf}"\n'))
    err = tmp_path / "run.err"
    run = fh_run_popen(cfg, err)
    guard_status = f"/dev/shm/fh-{name}.guard.repl"

    def up() -> bool:  # both fh-replicate started, each past its signal handlers (its status file written)
        rep = _record(name).get("replication") or {}
        return bool(rep.get("pid") and rep.get("guard_pid")) and _status(name).get("pid") == rep["pid"] \
            and _status(guard_status).get("pid") == rep["guard_pid"]

    try:
        deadline = time.monotonic() + 30
        while not up():
            assert run.poll() is None and time.monotonic() < deadline, _lines(err)
            time.sleep(0.05)
        rec = _record(name)
        dp, pid, gpid = rec["dataplane_pid"], rec["replication"]["pid"], rec["replication"]["guard_pid"]
        assert W.unpack(cap.recvfrom(256)[0], k1)["type"] == W.BEAT
        n0 = len(_lines(err))
        _replace_key(kf, k2)
        unit = (ROOT / "deploy" / "fh@.service").read_text()
        ok = unit_exec_reload(unit, name)
        rekeys = (_status(name).get("witness_rekeys"), _status(guard_status).get("witness_rekeys"))
        _said(err, "re-read at SIGHUP", n0, times=2)  # the replicator's and the guard's
        time.sleep(0.3)  # (a third line would be a fault)
        said = [x for x in _lines(err)[n0:] if "SIGHUP" in x]
        cap.setblocking(False)
        try:
            while True:
                cap.recvfrom(256)  # the beats sent before the swap
        except BlockingIOError:
            pass
        cap.settimeout(5)
        after = [cap.recvfrom(256)[0] for _ in range(3)]
        n1 = len(_lines(err))
        os.chmod(kf, 0o644)
        refused = unit_exec_reload(unit, name)
        _said(err, "the key in use stays", n1)
        time.sleep(0.5)  # a forwarded SIGHUP would be said by now
        bad = [x for x in _lines(err)[n1:] if "SIGHUP" in x]
        still = [cap.recvfrom(256)[0] for _ in range(3)]
        rec2 = _record(name)
        shown = [x for x in fh("status", "--name", name, "--sample", "0", check=False).stdout.splitlines()
                 if x.startswith("reload")]
        assert run.poll() is None and rec2["dataplane_pid"] == dp and os.kill(dp, 0) is None
        assert (rec2["replication"]["pid"], rec2["replication"]["guard_pid"]) == (pid, gpid), rec2
        assert rec2["replication"]["restarts"] == 0, rec2
    finally:
        stop_all([run], 30)
        cap.close()
        segments.remove(f"/dev/shm/fh-{name}")
        _remove(f"/dev/shm/fh-{name}.journal", f"/dev/shm/fh-{name}.standby.journal", R.status_path(name),
                guard_status)
    assert run.returncode == 0, _lines(err)[-20:]
    assert ok.returncode == 0 and rekeys == (1, 1), (ok, rekeys)  # taken by both when fh reload returned
    assert (rec2["reload"]["n"], rec2["reload"]["ok"]) == (2, False) and len(shown) == 1, (rec2["reload"], shown)
    assert shown[0].startswith("reload    2x since the start; the last refused: ") and "chmod 600" in shown[0], shown
    assert ok.stdout == f"fh reload: instance {name} reloaded: {said[0].split(': ', 2)[2]}\n", ok.stdout
    assert refused.returncode == 1 and refused.stderr == f"fh reload: instance {name}: {bad[0].split(': ', 2)[2]}\n", \
        refused
    rr = f"fh-replicate: --witness-key-file {kf}: " + REREAD.format(n=48)
    assert said == [f"fh run: {name}: SIGHUP: {kf} checked: fh-replicate (pid {pid}) and its guard (pid {gpid}) told "
                    "to re-read it (each says so in a line of its own)", rr, rr], said
    assert all(W.unpack(b, k2) and not W.unpack(b, k1) for b in after + still)
    assert bad == [f"fh run: {name}: SIGHUP: {cfg}: replication.witness_key_file = '{kf}': mode 644, readable by "
                   f"group or others: chmod 600 {kf}: nothing forwarded, the key in use stays"], bad
    assert RR.read_state(name, tmp_path / "run")["role"] == "primary"


def test_the_unit_reloads_with_fh_reload(tmp_path, monkeypatch):
    """systemctl reload fh@NAME runs `fh reload --name NAME`: SIGHUP to fh run, waiting until it has taken (above);
    an instance that does not run fails in one line. The unit's other checks and systemd-analyze verify:
    test_supervise.test_systemd_unit_verifies."""
    from conftest import ROOT

    text = (ROOT / "deploy" / "fh@.service").read_text()
    assert [line for line in text.splitlines() if line.startswith("ExecReload=")] == [
        "ExecReload=/usr/local/bin/fh reload --name %i"]
    monkeypatch.setenv("FH_RUN_DIR", str(tmp_path / "run"))
    r = unit_exec_reload(text, "nosuch")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.splitlines() == [
        f"fh reload: instance nosuch is not running under fh run (no live pidfile in {tmp_path / 'run'}): nothing "
        "to reload; start it (systemctl start fh@nosuch, or fh run --config ...)"], r.stderr
