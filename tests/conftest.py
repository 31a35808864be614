import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# fh run keeps pidfiles and exit records in FH_RUN_DIR: keep the tests' out of /run/fh.
os.environ.setdefault("FH_RUN_DIR", f"/tmp/fh-test-run-{os.getuid()}")
REAL = (ROOT / ".." / "shared" / "data" / "real").resolve()


@pytest.fixture(scope="session")
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real market data not found at {REAL} (it lives beside the project, in ../shared/data/real)")
    return REAL


def real_itch_files() -> list[Path]:
    return sorted((REAL / "itch").glob("*")) if REAL.is_dir() else []


def real_itch_pcaps() -> list[Path]:
    """The MoldUDP64 pcaps that carry ITCH 5.0 (all but the ISE heartbeat capture)."""
    if not REAL.is_dir():
        return []
    return sorted(p for p in (REAL / "moldudp64").glob("*.pcap") if "Itch" in p.name)


def fh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run the fh command line in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "handler", *map(str, args)], capture_output=True, text=True,
                       env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"fh {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p


def _unique() -> str:
    return f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def publisher(day: Path, *extra: str, name: str | None = None, hold: bool = True, timeout: float = 120.0):
    """`fh publish` of a day into a segment (default: a unique /dev/shm/fh-test-*); yields (name, process) once
    the day is applied. The process is stopped and the segment removed on the way out, whatever happened."""
    from handler import segments, shm

    name = name or _unique()
    path = shm.segment_path(name)
    ready = Path(f"/tmp/fh-{name}.ready")
    ready.unlink(missing_ok=True)
    args = [sys.executable, "-m", "handler", "publish", "--itch", str(day), "--name", name,
            "--ready-file", str(ready), *(("--hold",) if hold else ()), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
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
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        ready.unlink(missing_ok=True)
        segments.remove(path)
