"""bench/latency_ab.py: paired rounds of `fh bench latency` (bench/latency.md). The comparison on series whose answer
is known, and the runner against a stand-in fh that records how it was called (the real one needs root, DPDK and
both CPUs: bench/latency.md has its figures)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "bench" / "latency_ab.py"
spec = importlib.util.spec_from_file_location("latency_ab", SCRIPT)
ab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab)


def _run(rate, p50, p99, p999, every, share, empty):
    row = {"rate": rate, "latency_one_frame_ns": {"p50": p50, "p99": p99, "p99.9": p999},
           "latency_ns": {"p99": every}, "one_frame_share": share, "machine": {"scan": {"loop_ns": 10.0}}}
    if empty is not None:
        row["dataplane"] = {"empty_poll_ns": empty}
    return row


def _write(d, name, i, runs):
    (d / f"{name}.{i}.json").write_text(json.dumps({"runs": runs}))


def test_compare_pairs_rounds_and_takes_medians_of_ratios(tmp_path):
    # A's lone p50 over three rounds 100, 200, 400; B's 50, 300, 200: ratios 0.5, 1.5, 0.5
    for i, (x, y) in enumerate([(100, 50), (200, 300), (400, 200)], start=1):
        _write(tmp_path, "base", i, [_run(1000000, x, 1000, 2000, 3000, 0.9, 40.0)])
        _write(tmp_path, "new", i, [_run(1000000, y, 1000, 2000, 3000, 0.9, None)])
    _write(tmp_path, "base", 4, [_run(1000000, 1, 1, 1, 1, 1.0, 1.0)])  # no pair: left out
    (tmp_path / "new.4.json").write_text("not json")  # a failed round
    (tmp_path / "new.x.json").write_text("{}")  # not a round
    t = ab.compare(ab.load_series(tmp_path, "base"), ab.load_series(tmp_path, "new"))
    assert list(t) == [1000000]
    rows = {r["metric"]: r for r in t[1000000]}
    p50 = rows["lone p50 ns"]
    assert (p50["rounds"], p50["a"], p50["b"], p50["ratio"]) == (3, 200, 200, 0.5)
    assert (p50["b_lower"], p50["b_higher"]) == (2, 1)
    p99 = rows["lone p99 ns"]
    assert (p99["ratio"], p99["b_lower"], p99["b_higher"], p99["sign_p"]) == (1.0, 0, 0, 1.0)
    assert "empty poll ns" not in rows  # B never reported it
    assert (rows["scan loop ns"]["a"], rows["scan loop ns"]["ratio"]) == (10.0, 1.0)
    text = ab.render(t, "base", "new")
    assert "1,000,000 msg/s: 3 paired rounds" in text and "lone p50 ns" in text


def test_sign_test():
    assert ab.sign_test(0, 10) == 2 / 1024
    assert ab.sign_test(1, 9) == ab.sign_test(9, 1) == 2 * 11 / 1024
    assert ab.sign_test(5, 5) == 1.0 and ab.sign_test(0, 0) == 1.0 and ab.sign_test(0, 1) == 1.0


def test_runner_interleaves_and_passes_binary_and_arguments(tmp_path):
    """A stand-in fh logs its arguments and FH_DATAPLANE and answers one run whose p50 says which variant ran."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "fh"
    fake.write_text(f"""#!{sys.executable}
import json, os, sys
open({str(log)!r}, "a").write(json.dumps([sys.argv[1:], os.environ.get("FH_DATAPLANE")]) + "\\n")
p50 = 300 if "--warm-us" in sys.argv else 200
print(json.dumps({{"runs": [{{"rate": 100000, "latency_one_frame_ns": {{"p50": p50, "p99": 900, "p99.9": 1500}},
                  "latency_ns": {{"p99": 1000}}, "one_frame_share": 0.99, "dataplane": {{"empty_poll_ns": 39.5}}}}]}}))
""")
    fake.chmod(0o755)
    binary = tmp_path / "fh-dataplane"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    out = tmp_path / "ab"
    p = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "3", "--out", str(out), "--fh", str(fake),
                        "--a", "warm", "--a-bin", str(binary), "--b", "cold", "--b-args", "--warm-us 0", "--json",
                        "--", "--realtime", "--rates", "100k"],
                       capture_output=True, text=True, check=False, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    # A B, B A, A B; every call with the common arguments, --json last; the binary only for A
    assert [("--warm-us" in args) for args, _ in calls] == [False, True, True, False, False, True]
    for args, dp in calls:
        assert args[:5] == ["bench", "latency", "--realtime", "--rates", "100k"] and args[-1] == "--json"
        assert dp == (None if "--warm-us" in args else str(binary))
    doc = json.loads(p.stdout)
    p50 = next(r for r in doc["rates"]["100000"] if r["metric"] == "lone p50 ns")
    assert (p50["a"], p50["b"], p50["ratio"], p50["b_lower"], p50["b_higher"]) == (200, 300, 1.5, 0, 3)
    assert sorted(f.name for f in out.glob("*.json")) == [f"{v}.{i}.json" for v in ("cold", "warm") for i in (1, 2, 3)]


def test_bad_arguments_get_one_line(tmp_path):
    for argv, want in (
        (["--a", "x", "--b", "x"], "two different names"),
        (["--a", "x.y"], "two different names"),
        (["--a-bin", str(tmp_path / "none")], "is not an executable file"),
        (["--fh", str(tmp_path / "none")], "no fh at"),
    ):
        p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "o"), *argv], capture_output=True,
                           text=True, check=False)
        assert p.returncode == 2 and want in p.stderr, (argv, p.stderr)
    p = subprocess.run([sys.executable, str(SCRIPT), "--summarize", str(tmp_path), "--a", "p", "--b", "q"],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 1 and "no paired rounds of p and q" in p.stderr
