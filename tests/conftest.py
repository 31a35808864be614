import fcntl
import functools
import os
import shutil
import signal
import sys
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# fh run keeps pidfiles and exit records in FH_RUN_DIR: keep the tests' out of /run/fh.
os.environ.setdefault("FH_RUN_DIR", f"/tmp/fh-test-run-{os.getuid()}")
REAL = (ROOT / ".." / "shared" / "data" / "real").resolve()

# ---- markers (registered in pyproject.toml) and the one place that decides what a host can run -------------
#   dpdk       needs fh-dataplane and the DPDK bindings (both built where libdpdk is installed)
#   netns      needs root and network namespaces with a veth pair (with dpdk: also the net_af_packet PMD)
#   real_data  needs the real NASDAQ data in ../shared/data/real (also given to every test using `real`)
#   slow       takes more than a few seconds
#   unit       everything else, added here: `pytest -m unit` runs in seconds, on any host
CATEGORIES = ("dpdk", "netns", "real_data", "slow")


@functools.cache
def why_no_dataplane() -> str | None:
    from handler import process
    from handler.host import ports

    try:
        process.find_dataplane()
    except process.DataplaneError as e:  # built only where DPDK is installed
        return str(e)
    return ports.unavailable()


def dataplane_path() -> str | None:
    """The fh-dataplane program, or None where it is not built (tests that run it are marked dpdk)."""
    from handler import process

    return None if why_no_dataplane() else process.find_dataplane()


@functools.cache
def why_no_replicate() -> str | None:
    """Why fh-replicate cannot run here (it is built only where libfabric-dev is installed), or None."""
    from handler import replicate

    try:
        replicate.find_program()
    except replicate.ReplicateError as e:
        return str(e)
    return None


def replicate_path() -> str | None:
    """The fh-replicate program, or None where it is not built (tests that run it skip with why_no_replicate)."""
    from handler import replicate

    return None if why_no_replicate() else replicate.find_program()


@functools.cache
def why_no_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it creates network namespaces and a veth pair"
    if shutil.which("ip") is None:
        return "the ip command is not installed (apt-get install iproute2)"
    ns = f"fhct-{uuid.uuid4().hex[:8]}"
    try:
        # (not `ip -n NS ...`: it remounts / in a private mount namespace, which fails in a chroot; the labs use
        # nsenter --net, handler.net.sender.netns_argv)
        c0 = f"fhc{ns[5:]}"
        for cmd in (["netns", "add", ns], ["link", "add", c0, "type", "veth", "peer", "name", "c1", "netns", ns]):
            p = subprocess.run(["ip", *cmd], capture_output=True, text=True, timeout=20)
            if p.returncode != 0:
                return f"cannot create a network namespace and a veth pair here: ip {' '.join(cmd)}: {p.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
    return None


@functools.cache
def why_no_af_packet() -> str | None:
    from handler import process

    if not process.pmd_available("net_af_packet"):
        return "DPDK's net_af_packet driver (librte_net_af_packet) is not installed (apt-get install dpdk)"
    return None


def why_no_real() -> str | None:
    if not REAL.is_dir():
        return f"real market data not found at {REAL} (it lives beside the project, in ../shared/data/real)"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "real" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)
        if not any(item.get_closest_marker(m) for m in CATEGORIES):
            item.add_marker(pytest.mark.unit)


def pytest_runtest_setup(item):
    dpdk, netns = item.get_closest_marker("dpdk"), item.get_closest_marker("netns")
    why = ((dpdk and why_no_dataplane()) or (netns and why_no_netns()) or (dpdk and netns and why_no_af_packet())
           or (item.get_closest_marker("real_data") and why_no_real()))
    if why:
        pytest.skip(why)


# ---- two workers at once (scripts/test.sh runs pytest -n 2 --dist loadfile, with pytest-xdist) -----------------
# Each worker runs whole files. A test marked solo needs the machine to itself (a paced feed through a data plane
# that must receive every datagram, a busy-polling benchmark): it waits until the other worker's current test is
# done, and the other worker's next test waits for it. Two flock(2) locks in a directory the controller makes before
# it starts its workers: RUN, held shared by every test and exclusively by a solo one, from its setup to its
# teardown; and GATE, held only while RUN is taken, so that a solo test waiting for RUN keeps the other worker from
# slipping its next test in ahead of it. Without workers (plain pytest, or -n 0) nothing is locked.
LOCKS_ENV = "FH_TEST_LOCKS"


def pytest_configure(config):
    if getattr(config, "workerinput", None) is None and config.getoption("numprocesses", None) \
            and LOCKS_ENV not in os.environ:
        config.fh_locks = tempfile.mkdtemp(prefix="fh-test-locks-")
        os.environ[LOCKS_ENV] = config.fh_locks  # the workers, started after this, inherit it


def pytest_unconfigure(config):
    if getattr(config, "fh_locks", None):
        shutil.rmtree(config.fh_locks, ignore_errors=True)
        os.environ.pop(LOCKS_ENV, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    d = os.environ.get(LOCKS_ENV)
    if not d or getattr(item.config, "workerinput", None) is None:
        yield
        return
    with open(os.path.join(d, "gate"), "a") as gate, open(os.path.join(d, "run"), "a") as run:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(run, fcntl.LOCK_EX if item.get_closest_marker("solo") else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(run, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def real() -> Path:
    if why_no_real():
        pytest.skip(why_no_real())
    return REAL


def real_itch_files() -> list[Path]:
    return sorted((REAL / "itch").glob("*")) if REAL.is_dir() else []


def real_itch_pcaps() -> list[Path]:
    """The MoldUDP64 pcaps that carry ITCH 5.0 (all but the ISE heartbeat capture)."""
    if not REAL.is_dir():
        return []
    return sorted(p for p in (REAL / "moldudp64").glob("*.pcap") if "Itch" in p.name)


def fh_env(extra: dict | None = None) -> dict:
    """The environment the tests run fh in: this one, PYTHONPATH this checkout, and EXTRA."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}


def fh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run the fh command line in a subprocess, as a user would."""
    from handler.process import fh_argv

    p = subprocess.run(fh_argv(*args), capture_output=True, text=True, env=fh_env(), **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"fh {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p


def fh_popen(*args, env: dict | None = None, **kw) -> subprocess.Popen:
    """Start the fh command line in the background, as fh() runs it (env: variables added to fh_env's); kw as
    subprocess.Popen's. The caller stops it (stop_process)."""
    from handler.process import fh_argv

    return subprocess.Popen(fh_argv(*args), env=fh_env(env), **kw)


def ring_records(path: str) -> list:
    """Every record of a journal ring (handler.journal.JournalRing), oldest first."""
    from handler import journal as J

    r = J.JournalRing(path)
    pos, out = r.oldest(), []
    try:
        while True:
            s, pos, rec = r.read(pos)
            if s == J.NONE:
                return out
            assert s == J.OK
            out.append(rec)
    finally:
        r.close()


def unit_exec_reload(unit_text: str, instance: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """fh@INSTANCE's ExecReload= run as systemd would run it (%i the instance), with this checkout's fh in place of
    /usr/local/bin/fh and this process's environment (its FH_RUN_DIR standing in for the unit's /run/fh)."""
    import shlex

    (line,) = [x for x in unit_text.splitlines() if x.startswith("ExecReload=")]
    argv = shlex.split(line.removeprefix("ExecReload=").replace("%i", instance))
    assert argv[0] == "/usr/local/bin/fh", argv
    return subprocess.run([sys.executable, "-m", "handler", *argv[1:]], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _unique() -> str:
    return f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM to a process the test started, if it still runs; SIGKILL when it has not ended within `timeout`
    (the product's own way: handler.process.terminate)."""
    from handler.process import terminate

    terminate(proc, timeout)


def stop_all(procs, timeout: float = 30.0) -> None:
    """SIGTERM to every process of a test still running, all at once (instances that watch each other stop
    together), then each waited for with its pipes drained; SIGKILL to one not ended within `timeout`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


# ---- a synthetic day on an A and a B line (test_faults, test_recovery, test_restart) -----------------------


def ab_lines() -> list:
    """The A and B lines of the generated captures (pcapgen's default groups), B 3 µs behind A."""
    from handler.net import pcapgen

    return [pcapgen.Line(*pcapgen.DEFAULT_A), pcapgen.Line(*pcapgen.DEFAULT_B, delay_ns=3000)]


# For a module that defines `day` (an ITCH day, bytes): its messages, its capture on ab_lines() without faults,
# and that capture's books as the reference model builds them.
@pytest.fixture(scope="module")
def messages(day) -> list[bytes]:
    from handler import native

    return [bytes(m) for _, m in native.iter_blocks(day)]


@pytest.fixture(scope="module")
def clean(day, tmp_path_factory) -> Path:
    from handler.net import pcapgen

    out = tmp_path_factory.mktemp("clean") / "clean.pcap"
    pcapgen.synth_pcap(out, day, ab_lines())
    return out


@pytest.fixture(scope="module")
def clean_books(clean) -> list[dict]:
    from handler import replay

    return replay.reference_books(clean)[0]


# ---- fh run: an instance, its configuration and its run directory ------------------------------------------

AB_PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"  # the bundled capture: 40,000 messages on an A and a B line


def run_config(name: str, pcap: Path = AB_PCAP, *, lines: tuple[str, str] = ("A", "B"), exit_idle_ms: int = 300,
               feed: str = "", extra: str = "") -> str:
    """An fh.toml for `fh run` of instance NAME replaying PCAP (net_pcap, no hugepages, 256 MB, backoff idle) on
    the capture's two lines, named LINES; the data plane ends `exit_idle_ms` after the capture (0: it is held
    until stopped). FEED: keys and tables added under [feed]; EXTRA: tables appended at the end."""
    a, b = lines
    return f"""
[instance]
name = "{name}"
[feed]
protocol = "moldudp64-itch50"
{feed}
[[feed.lines]]
name = "{a}"
group = "233.54.12.111"
port = 26477
[[feed.lines]]
name = "{b}"
group = "233.49.196.111"
port = 26477
[nic]
vdev = "net_pcap0,rx_pcap={pcap}"
[memory]
hugepages = false
mb = 256
[run]
idle = "backoff"
exit_idle_ms = {exit_idle_ms}
{extra}"""


def fh_run_popen(cfg: Path, err: Path, env: dict | None = None) -> subprocess.Popen:
    """`fh run --config CFG --keep-segment` from this checkout, in the background: stdout dropped, stderr to ERR (read
    it while it runs), the environment this process's plus ENV."""
    return subprocess.Popen([sys.executable, "-m", "handler", "run", "--config", str(cfg), "--keep-segment"],
                            stdout=subprocess.DEVNULL, stderr=open(err, "w"),
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    """FH_RUN_DIR (pidfiles, exit records) in the test's own directory, for this process and every fh it starts."""
    d = tmp_path / "run"
    monkeypatch.setenv("FH_RUN_DIR", str(d))
    return d


@pytest.fixture
def instance_name() -> str:
    """A unique instance name (fh-NAME's 31 characters at most); its segment is removed after the test."""
    from handler import segments

    n = f"i{os.getpid() % 100000}{uuid.uuid4().hex[:8]}"
    yield n
    segments.remove(f"/dev/shm/fh-{n}")


@contextmanager
def publisher(day: Path, *extra: str, name: str | None = None, hold: bool = True, timeout: float = 120.0):
    """`fh publish` of a day into a segment (default: a unique /dev/shm/fh-test-*); yields (name, process) once
    the day is applied. The process is stopped and the segment removed on the way out, whatever happened."""
    from handler import segments, shm

    name = name or _unique()
    path = shm.segment_path(name)
    ready = Path(f"/tmp/fh-{name}.ready")
    ready.unlink(missing_ok=True)
    proc = fh_popen("publish", "--itch", day, "--name", name, "--ready-file", ready, *(("--hold",) if hold else ()),
                    *extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None and not ready.exists():
                raise AssertionError(f"fh publish exited {proc.returncode}: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("fh publish did not get ready in time")
            time.sleep(0.02)
        yield name, proc
    finally:
        stop_process(proc)
        proc.stdout.close()
        proc.stderr.close()
        ready.unlink(missing_ok=True)
        segments.remove(path)
