"""fh-bench-lone (native/bench/bench_lone.c; bench/latency.md, "A lone datagram in process"): a day cut into
datagrams of K messages, each applied alone and timed. Checked here: that it cuts the day as the day is framed
(every message once, in order, K a datagram, the last datagram what is left), that a misframed datagram is counted
and not applied, that the percentiles are ordered, and that bad arguments get one line. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from handler import native, process

PROG = process.find_program("fh-bench-lone", "FH_BENCH_LONE", "bench")
pytestmark = pytest.mark.skipif(PROG is None, reason="fh-bench-lone is not built (bash scripts/setup.sh builds it)")


def _run(*args: str) -> subprocess.CompletedProcess:
    seg = f"/dev/shm/fh-test-lone-{uuid.uuid4().hex[:8]}"
    return subprocess.run([PROG, *args, "--segment", seg], capture_output=True, text=True, timeout=120)


def _types(data: bytes) -> str:
    return "".join(chr(m[0]) for _, m in native.iter_blocks(data))


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    data = native.synth_bytes(5_001, 40, 3, shape="real-late")
    path = tmp_path_factory.mktemp("lone") / "day.itch"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("mode, staged", [("publish", False), ("engine", False), ("publish", True)])
def test_cuts_the_whole_day_into_datagrams(day, tmp_path, mode, staged):
    """Whole (fh_engine_apply_datagram) or --staged (the staged consumer fh-dataplane uses, flushed by batch_end)."""
    path, data = day
    types = _types(data)
    samples = tmp_path / "samples.txt"
    r = _run(str(path), "--per", "4", "--gap-us", "0", "--warm-us", "0", "--datagrams", "100000", "--mode", mode,
             "--samples", str(samples), *(["--staged"] if staged else []))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    n = len(types)
    assert out["mode"] == mode and out["per"] == 4
    assert out["messages"] == n and out["datagrams"] == -(-n // 4)  # the last one holds what is left
    assert out["misframed"] == 0
    assert out["books"] == 40
    ns = out["ns"]
    assert 0 < ns["p50"] <= ns["p90"] <= ns["p99"] <= ns["p99.9"] <= ns["max"]
    lines = samples.read_text().splitlines()
    assert len(lines) == out["datagrams"]
    cut = [line.split()[1] for line in lines]
    assert "".join(cut) == types  # every message once, in the day's order
    assert all(len(c) == 4 for c in cut[:-1]) and 1 <= len(cut[-1]) <= 4


def test_stops_after_the_datagrams_asked_for(day):
    path, _ = day
    r = _run(str(path), "--per", "1", "--gap-us", "1", "--warm-us", "5", "--datagrams", "300")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["datagrams"] == 300 and out["messages"] == 300 and out["misframed"] == 0


def test_misframed_datagram_is_counted(tmp_path):
    """A block whose length is not its type's: the datagram holding it is refused by the engine's framing check
    (fh_engine_apply_datagram returns -1) and counted, the others applied."""
    data = bytearray(native.synth_bytes(400, 5, 1))
    blocks = list(native.iter_blocks(bytes(data)))
    # the 10th message (in the 3rd datagram of 4) claims a length one short: its type's length check fails
    off = sum(2 + len(m) for _, m in blocks[:9])
    n = int.from_bytes(data[off:off + 2], "big")
    data[off:off + 2 + n] = (n - 1).to_bytes(2, "big") + data[off + 2:off + 2 + n - 1]
    path = tmp_path / "bad.itch"
    path.write_bytes(bytes(data))
    r = _run(str(path), "--per", "4", "--gap-us", "0", "--warm-us", "0")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["misframed"] == 1
    assert out["messages"] == len(blocks)


@pytest.mark.parametrize("args, says", [
    (["--per", "0"], "--per 1..105"),
    (["--per", "106"], "--per 1..105"),
    (["--gap-us", "x"], "--gap-us wants a number, not 'x'"),
    (["--mode", "fast"], "--mode publish or engine"),
    (["--datagrams", "0"], "--datagrams 1..100000000"),
])
def test_bad_arguments_get_one_line(day, args, says):
    path, _ = day
    r = _run(str(path), *args)
    assert r.returncode == 2
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_missing_day_gets_one_line(tmp_path):
    r = _run(str(tmp_path / "none.itch"))
    assert r.returncode == 2
    assert "cannot read" in r.stderr and len(r.stderr.strip().splitlines()) == 1
