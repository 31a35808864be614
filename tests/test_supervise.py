"""`fh run` supervision (one instance per name through a locked pidfile, stale pidfiles taken over, the
exit record), `fh stop`, `fh status`, and the systemd unit. The data plane runs on the bundled capture
(net_pcap, --no-huge, backoff idle) and is held alive with run.exit_idle_ms = 0 until it is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, fh, fh_popen, run_config, stop_process
from handler import shm, supervise

DAY = ROOT / "pcaps" / "synth-100k.itch"


needs_dataplane = pytest.mark.dpdk


def write_config(tmp_path: Path, name: str, exit_idle_ms: int = 0) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(run_config(name, exit_idle_ms=exit_idle_ms))
    return p


def _kill_pid(pid: int | None) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def fh_run(cfg: Path, name: str, timeout: float = 60.0):
    """`fh run --config cfg` in the background; yields (process, pidfile record) once its data plane
    publishes the whole capture. Whatever happens, the supervisor and its data plane end on the way out."""
    proc = fh_popen("run", "--config", cfg, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rec = None
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"fh run exited {proc.returncode}: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "fh run did not get ready in time"
            path, rec, locked = supervise.lookup(name)
            if locked and rec and rec.get("dataplane_pid"):
                try:
                    with shm.Reader(name, wait_s=0.1) as r:
                        if r.writer_status().state == "running" and r.stats(types=False).get("messages") == 40000:
                            break
                except shm.ShmError:
                    pass
            time.sleep(0.05)
        yield proc, rec
    finally:
        stop_process(proc, 15)
        if rec:
            _kill_pid(rec.get("dataplane_pid") if supervise.pid_is(rec.get("dataplane_pid"),
                                                                    rec.get("dataplane_boot_s")) else None)
        for f in (proc.stdout, proc.stderr):
            f.close()


# ---- the pidfile ------------------------------------------------------------------------------------------


@needs_dataplane
def test_second_run_of_the_same_name_is_refused(tmp_path, run_dir, instance_name):
    cfg = write_config(tmp_path, instance_name)
    with fh_run(cfg, instance_name) as (proc, rec):
        assert rec["pid"] == proc.pid and (run_dir / f"{instance_name}.pid").read_text().split("\n")[0] == str(proc.pid)
        p = fh("run", "--config", cfg, check=False)
        assert p.returncode == 2
        msg = p.stderr.strip()
        assert msg.startswith(f"fh: instance {instance_name} is already running (pid {proc.pid}, started ")
        assert msg.endswith(f"fh stop --name {instance_name} first") and "\n" not in msg
        assert proc.poll() is None  # the first one is untouched
        with shm.Reader(instance_name) as r:
            assert r.writer_status().state == "running" and r.writer_pid == rec["dataplane_pid"]


@needs_dataplane
def test_stale_pidfile_is_taken_over(tmp_path, run_dir, instance_name):
    gone = subprocess.Popen(["true"])
    gone.wait()
    run_dir.mkdir(parents=True)
    stale = {"pid": gone.pid, "name": instance_name, "started_ns": time.time_ns() - 10**9, "boot_s": 0.0}
    (run_dir / f"{instance_name}.pid").write_text(f"{gone.pid}\n{json.dumps(stale)}\n")
    st = json.loads(fh("status", "--name", instance_name, "--json", "--sample", "0", check=False).stdout)
    assert st["state"] == "dead" and st["pid"] == gone.pid and "stale" in " ".join(st["notes"])
    p = fh("run", "--config", write_config(tmp_path, instance_name, exit_idle_ms=300), "--json")
    assert f"took over the stale pidfile {run_dir / instance_name}.pid of pid {gone.pid}" in p.stderr
    assert "stopped cleanly after 300 ms without traffic (run.exit_idle_ms)" in p.stderr
    assert json.loads(p.stdout)["messages_applied"] == 40000
    assert not (run_dir / f"{instance_name}.pid").exists() and not (run_dir / f"{instance_name}.dataplane.out").exists()
    ex = json.loads((run_dir / f"{instance_name}.exit.json").read_text())
    assert ex["rc"] == 0 and ex["stats"]["messages_applied"] == 40000 and ex["pid"] != gone.pid
    st = json.loads(fh("status", "--name", instance_name, "--json", "--sample", "0", check=False).stdout)
    assert st["state"] == "stopped" and "run.exit_idle_ms" in st["last_exit"]["reason"]


def test_pidfile_lock_and_release(run_dir, instance_name):
    """In-process: the lock is what counts; release removes the file; a pidfile of a live lock refuses."""
    with supervise.Pidfile(instance_name, {"config": "/x.toml"}) as pf:
        assert supervise.is_locked(pf.path) and supervise.read_record(pf.path)["config"] == "/x.toml"
        with pytest.raises(supervise.AlreadyRunning,
                           match=rf"instance {instance_name} is already running \(pid {os.getpid()}"):
            supervise.Pidfile(instance_name, {})
    assert not pf.path.exists()


def test_a_rewritten_pidfile_is_never_read_empty(run_dir, instance_name):
    """fh run rewrites its pidfile's record in place many times (pf.update); a reader in another process must
    never find it empty or cut short, only the old record or the new one (a read in the middle of the write may
    see a mix, which read_record refuses and reads again). Truncating before writing left it empty while the
    writer was descheduled between the two calls: fh status then showed no record (a CI failure under load)."""
    with supervise.Pidfile(instance_name, {"config": "/x.toml", "n": 0}) as pf:
        writer = subprocess.Popen([sys.executable, "-c", (
            "import os, sys, time, json\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "from handler import supervise\n"
            "pf = supervise.Pidfile.__new__(supervise.Pidfile)\n"
            "pf.fd = os.open(sys.argv[2], os.O_RDWR)\n"
            "pf.record = json.loads(open(sys.argv[2]).read().splitlines()[1])\n"
            "t0 = time.monotonic(); i = 0\n"
            "while time.monotonic() - t0 < 1.5:\n"
            "    i += 1\n"
            "    pf.update(n=i, pad='x' * (i % 97))  # lengths vary: the tail of a longer record stays a moment\n"
        ), str(ROOT), str(pf.path)])
        short = reads = 0
        while writer.poll() is None:
            lines = pf.path.read_text().splitlines()
            reads += 1
            short += len(lines) < 2
        assert writer.returncode == 0 and reads > 1000
        assert short == 0, f"{short} of {reads} reads found the pidfile empty or with only its first line"
        assert supervise.read_record(pf.path)["n"] > 0


def test_run_dir_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("FH_RUN_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setattr(supervise, "DEFAULT_RUN_DIR", str(tmp_path / "ro" / "fh"))
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        d = supervise.writable_run_dir()
        if os.geteuid() == 0:  # root writes anywhere: the first candidate wins
            assert d == tmp_path / "ro" / "fh"
        else:
            assert d == tmp_path / "xdg" / "fh"
    finally:
        (tmp_path / "ro").chmod(0o755)


# ---- fh stop ----------------------------------------------------------------------------------------------


@needs_dataplane
def test_stop(tmp_path, run_dir, instance_name):
    with fh_run(write_config(tmp_path, instance_name), instance_name) as (proc, rec):
        p = fh("stop", "--name", instance_name)
        assert p.stdout.startswith(f"fh stop: instance {instance_name} stopped (pid {proc.pid}, in ")
        assert "the data plane stopped cleanly on SIGTERM" in p.stdout
        assert proc.wait(10) == 0
        err = proc.stderr.read()
        assert f"fh run: {instance_name}: the data plane stopped cleanly on SIGTERM" in err
        assert "messages applied 40,000" in proc.stdout.read()
    assert not (run_dir / f"{instance_name}.pid").exists()
    assert not os.path.exists(f"/dev/shm/fh-{instance_name}")  # a clean stop removes the segment
    p = fh("stop", "--name", instance_name)
    assert p.returncode == 0 and f"instance {instance_name} is not running" in p.stdout
    p = fh("status", "--name", instance_name, check=False)
    assert p.returncode == 1 and f"instance  {instance_name}: stopped" in p.stdout and "on SIGTERM" in p.stdout


@needs_dataplane
def test_stop_kills_after_the_timeout(tmp_path, run_dir, instance_name):
    with fh_run(write_config(tmp_path, instance_name), instance_name) as (proc, rec):
        dp = rec["dataplane_pid"]
        os.kill(dp, signal.SIGSTOP)  # a data plane that does not answer SIGTERM
        t0 = time.monotonic()
        p = fh("stop", "--name", instance_name, "--timeout", "1", check=False)
        assert p.returncode == 1 and time.monotonic() - t0 < 10
        assert f"did not stop within 1 s of SIGTERM; killed pids {proc.pid}, {dp} with SIGKILL" in p.stderr
        assert proc.wait(5) == -signal.SIGKILL
        st = json.loads(fh("status", "--name", instance_name, "--json", "--sample", "0", check=False).stdout)
        assert st["state"] == "dead"  # the segment was left mid-run
        assert st["last_exit"]["signal"] == "SIGKILL" and "killed by fh stop" in st["last_exit"]["reason"]


@needs_dataplane
def test_killed_supervisor_leaves_the_instance_locked(tmp_path, run_dir, instance_name):
    """A data plane whose fh run was killed keeps the instance locked (it inherited the lock), is shown as
    unsupervised, still refuses a second run, and fh stop stops it cleanly (its statistics are kept)."""
    cfg = write_config(tmp_path, instance_name)
    with fh_run(cfg, instance_name) as (proc, rec):
        proc.kill()
        proc.wait()
        st = json.loads(fh("status", "--name", instance_name, "--json", "--sample", "0").stdout)
        assert st["state"] == "running" and st["pid"] is None and st["dataplane_pid"] == rec["dataplane_pid"]
        assert any("runs unsupervised" in n for n in st["notes"])
        assert fh("run", "--config", cfg, check=False).returncode == 2
        p = fh("stop", "--name", instance_name)
        assert f"its data plane, pid {rec['dataplane_pid']}, whose fh run was gone" in p.stdout
        st = json.loads(fh("status", "--name", instance_name, "--json", "--sample", "0", check=False).stdout)
        assert st["state"] == "stopped" and st["drops"]["nic_missed"] == 0
        assert "stopped cleanly on SIGTERM from fh stop" in st["last_exit"]["reason"]


# ---- fh status --------------------------------------------------------------------------------------------


@needs_dataplane
def test_status_json(tmp_path, run_dir, instance_name):
    cfg = write_config(tmp_path, instance_name)
    with fh_run(cfg, instance_name) as (proc, rec):
        p = fh("status", "--name", instance_name, "--json")
        s = json.loads(p.stdout)
        assert p.returncode == 0 and s["state"] == "running" and s["supervised"]
        assert s["pid"] == proc.pid and s["dataplane_pid"] == rec["dataplane_pid"]
        assert s["config"] == str(cfg) and s["segment"] == f"/dev/shm/fh-{instance_name}"
        assert [(l["name"], l["group"], l["port"]) for l in s["lines"]] == [("A", "233.54.12.111", 26477),
                                                                             ("B", "233.49.196.111", 26477)]
        with shm.Reader(instance_name) as r:
            status = r.books["status"]
            assert s["books"] == {"count": int((status != shm.EMPTY).sum()), "live": int((status == shm.LIVE).sum()),
                                  "stale": int((status == shm.STALE).sum())}
            assert s["events"] == {"head": r.head, "capacity": r.event_capacity}
            assert 0 < s["uptime_s"] < 120 and abs(s["uptime_s"] - (time.time_ns() - r.start_ns) / 1e9) < 5
            counters = r.stats(types=False)
        assert s["messages"] == counters["messages"] == 40000
        assert s["anomalies"] == {k: v for k, v in counters.items() if k != "messages"}
        assert s["rates"]["messages_per_s"] == 0 and 0.4 < s["rates"]["over_s"] < 5  # the capture is over
        assert s["writer"]["state"] == "running" and s["writer"]["heartbeat_age_s"] < 5
        assert s["drops"] is None and s["last_exit"] is None
        # the feed and its lines, from the data plane's section of the segment
        assert s["feed"]["state"] == "ended" and s["feed"]["next_seq"] == 40001 and s["feed"]["lost"] == 0
        assert [(l["name"], l["kind"], l["won"]) for l in s["line_state"]] == [("A", "feed", 40000),
                                                                              ("B", "feed", 0)]
        # live, or stale once the capture has been over for line_stale_ms (3 s)
        assert all(l["state"] in ("live", "stale") and l["lost"] == 0 for l in s["line_state"])
        text = fh("status", "--name", instance_name, "--sample", "0").stdout
        assert "feed      ended, session " in text and "unrecoverable 0 (0 messages lost)" in text
        rows = {l.split()[0]: l.split() for l in text.splitlines()[text.splitlines().index("") + 1:]}
        assert rows["line"][:4] == ["line", "state", "silent", "datagrams"]  # the lines' table, named by fh.toml
        assert rows["A"][1] in ("live", "stale") and rows["A"][-4:] == ["40,000", "0", "0", "0"]
        assert f"instance  {instance_name}: running (pid {proc.pid}, data plane pid {rec['dataplane_pid']})" in text
        assert "lines     A 233.54.12.111:26477, B 233.49.196.111:26477" in text
        m = fh("metrics", "--name", instance_name, "--once").stdout
        assert f'fh_supervisor_up{{fh_instance="{instance_name}"}} 1' in m
        assert f'fh_writer_up{{fh_instance="{instance_name}"}} 1' in m
        assert f'fh_feed_state{{fh_instance="{instance_name}",state="ended"}} 1' in m
        assert sum(f'fh_line_state{{fh_instance="{instance_name}",line="A",kind="feed",state="{st}"}} 1' in m
                   for st in ("live", "stale")) == 1


@pytest.mark.slow
def test_status_and_stop_of_an_unsupervised_writer(run_dir, instance_name):
    """`fh publish --hold` (no fh run, no pidfile): running, its pid the writer's; fh stop stops it too."""
    ready = run_dir.parent / "ready"
    proc = fh_popen("publish", "--itch", DAY, "--name", instance_name, "--hold", "--pace", "0.01", "--chunk", "4096",
                    "--ready-file", ready, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # status while it is still applying the day (paced): the rate is not zero
            try:
                with shm.Reader(instance_name, wait_s=0.1):
                    break
            except shm.ShmError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
        s = json.loads(fh("status", "--name", instance_name, "--json").stdout)
        assert s["state"] == "running" and s["pid"] == proc.pid and not s["supervised"] and s["config"] is None
        if not ready.exists():
            assert s["rates"]["messages_per_s"] > 0
        assert any("does not run under fh run" in n for n in s["notes"])
        p = fh("stop", "--name", instance_name)
        assert f"stopped (pid {proc.pid}, the segment's writer, not under fh run" in p.stdout
        assert proc.wait(10) == 0
        p = fh("status", "--name", instance_name, check=False)
        assert p.returncode == 1 and "stopped" in p.stdout
    finally:
        stop_process(proc, 15)
        proc.stderr.close()


@pytest.mark.slow
def test_status_of_an_unknown_instance(run_dir, instance_name):
    p = fh("status", "--name", instance_name, "--json", check=False)
    s = json.loads(p.stdout)
    assert p.returncode == 1 and s["state"] == "stopped" and s["writer"] is None and s["last_exit"] is None
    assert any(n.startswith("nothing of this name on this host") for n in s["notes"]), s["notes"]
    p = fh("status", "--name", "bad name", check=False)
    assert p.returncode == 2 and "--name 'bad name'" in p.stderr


# ---- records fh run did not write ----------------------------------------------------------------------------


def _one_line(p) -> str:
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("text, why", [("[1,2]", "it holds [1, 2], not a JSON object"),
                                       ('{"stopped_ns":"x"}', '.stopped_ns = "x": not a whole number'),
                                       ('{"stats":7}', ".stats = 7: not a JSON object"),
                                       ('{"stats":{"nic":{"imissed":"many"}}}', '.stats.nic.imissed = "many"'),
                                       ("not json", "not JSON")])
def test_a_malformed_exit_record_is_named_with_its_fix(run_dir, instance_name, text, why):
    """NAME.exit.json of another shape was an AttributeError or TypeError in fh status (exit 70)."""
    run_dir.mkdir()
    ex = run_dir / f"{instance_name}.exit.json"
    ex.write_text(text + "\n")
    for args in (["--sample", "0"], ["--json", "--sample", "0"]):
        line = _one_line(fh("status", "--name", instance_name, *args, check=False))
        assert line.startswith(f"fh: {ex}: not an exit record fh run wrote ({why}")
        assert line.endswith(f"); remove it (rm {ex})")


def test_a_malformed_pidfile_is_named_and_nothing_is_signalled(run_dir, instance_name):
    """A pidfile {"pid": -5, "config": 7, "segment": 9} was a TypeError in fh status and fh stop; a record of
    another shape must never have its pid signalled (-5 would be a process group). Locked, as by a live fh run,
    with the pid of a live process: fh stop refuses it and that process lives on."""
    import fcntl

    run_dir.mkdir()
    pf = run_dir / f"{instance_name}.pid"
    pf.write_text('1\n{"pid": -5, "config": 7, "segment": 9}\n')
    want = f"fh: {pf}: not a pidfile fh run wrote (.pid = -5: not a process id (a whole number above 0)); remove it " \
           f"(rm {pf}); the next fh run writes a new one"
    for cmd in (["status", "--sample", "0"], ["stop"], ["reload"]):
        assert _one_line(fh(*cmd, "--name", instance_name, check=False)) == want
    p = fh("status", "--all", "--json", "--sample", "0", check=False)
    assert p.returncode == 4 and "Traceback" not in p.stderr
    # (--all also lists the segments in /dev/shm of instances that other tests run at the same time)
    mine = [d for d in json.loads(p.stdout)["instances"] if d["name"] == instance_name]
    assert mine == [{"name": instance_name, "state": "unreadable", "error": want[4:]}]
    sleeper = subprocess.Popen(["sleep", "60"])
    fd = os.open(pf, os.O_RDONLY)
    try:
        pf.write_text(f'{sleeper.pid}\n{{"pid": {sleeper.pid}, "config": 7, "segment": 9}}\n')
        fcntl.flock(fd, fcntl.LOCK_EX)
        line = _one_line(fh("stop", "--name", instance_name, "--timeout", "1", check=False))
        assert ".config = 7: not a string" in line and f"find it with fuser -v {pf}" in line
        assert sleeper.poll() is None
    finally:
        os.close(fd)
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("text, why", [("garbage\n", "it holds 'garbage', not a pid and its JSON record"),
                                       ("", "it is empty")])
def test_a_pidfile_of_garbage_is_named_not_called_stale(run_dir, instance_name, text, why):
    """A pidfile holding no record at all (echo garbage > NAME.pid) was reported as the stale pidfile of "pid None"
    (fh status exit 3, fh stop exit 0): docs/cli.md promises the one line naming the file and the fix, exit 2."""
    run_dir.mkdir()
    pf = run_dir / f"{instance_name}.pid"
    pf.write_text(text)
    want = f"fh: {pf}: not a pidfile fh run wrote ({why}); remove it (rm {pf}); the next fh run writes a new one"
    for cmd in (["status", "--sample", "0"], ["stop"]):
        assert _one_line(fh(*cmd, "--name", instance_name, check=False)) == want
    assert pf.exists()


# ---- the systemd unit -------------------------------------------------------------------------------------


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    text = (ROOT / "deploy" / "fh@.service").read_text()
    assert "ExecStart=/usr/local/bin/fh run --config /etc/fh/%i.toml" in text
    for key in ("Restart=on-failure", "LimitMEMLOCK=infinity", "KillSignal=SIGTERM", "CPUAffinity=",
                "TimeoutStopSec=", "AmbientCapabilities="):
        assert key in text
    # verify checks that ExecStart's program exists; fh is not installed in /usr/local/bin here
    unit = tmp_path / "fh@.service"
    unit.write_text(text.replace("/usr/local/bin/fh", shutil.which("true") or "/bin/true"))
    p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    complaints = [l for l in (p.stdout + p.stderr).splitlines() if "fh@" in l]
    assert p.returncode == 0 and not complaints, p.stdout + p.stderr


def test_a_failing_fh_run_stops_its_data_plane(run_dir, instance_name, monkeypatch):
    """When fh run's own supervision fails (here: its loop raises), the data plane it started is stopped, not left
    running unsupervised with the pidfile's lock."""
    import subprocess
    import types

    from handler import run, supervise

    def broken(*a, **kw):
        raise OSError(17, "File exists", "/some/journal/dir")

    monkeypatch.setattr(run, "_follow", broken)
    started = []
    real_popen = subprocess.Popen

    def popen(*a, **kw):
        started.append(real_popen(*a, **kw))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    cfg = types.SimpleNamespace(name=instance_name)
    with supervise.Pidfile(instance_name, {}) as pf:
        with pytest.raises(OSError):
            run._supervise(cfg, ["sleep", "60"], pf, False)
    assert started and started[0].poll() == -15  # SIGTERM: stopped, and reaped
