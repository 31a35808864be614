import os
import subprocess
import sys
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
    p = subprocess.run([sys.executable, "-m", "handler.cli", *map(str, args)], capture_output=True, text=True,
                       env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"fh {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p
