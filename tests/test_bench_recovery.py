"""Smoke tests of two benchmarks: `fh bench recovery` (live, needs root: a gap lost on both lines is filled
through the retransmission server) and `fh bench dataplane --ab` (the cost of B copies) on tiny inputs. The
figures themselves are not asserted: they are timings on a shared machine (bench/recovery.md,
bench/dataplane.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from handler import process

pytestmark = [pytest.mark.dpdk, pytest.mark.slow]  # without root it checks the one-line skip of the benchmark


def _fh(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "handler", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=process.ROOT, env=env)


def test_bench_recovery_fills_the_gap():
    if os.geteuid() != 0:
        p = _fh("bench", "recovery", "--repeats", "1", "--messages", "20000", "--json")
        assert p.returncode == 0 and json.loads(p.stdout)["skipped"].startswith("needs root")
        assert p.stderr.count("\n") == 1 and "skipped" in p.stderr
        pytest.skip("fh bench recovery needs root")
    if not process.pmd_available("net_af_packet"):
        pytest.skip("DPDK's net_af_packet driver is not installed")
    p = _fh("bench", "recovery", "--repeats", "1", "--messages", "20000", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    gap = res["gap"]
    assert 900 <= gap["messages"] <= 1000 and gap["last"] - gap["first"] + 1 == gap["messages"]
    (run,) = res["runs"]
    m, gf = run["mold"], run["gaps_filled"]
    assert m["lost"] == 0 and m["unrecoverable"] == 0 and m["recovered_retrans"] == gap["messages"]
    assert m["requests"] >= 1 and m["request_messages"] >= gap["messages"] and run["requests_sent"] == m["requests"]
    assert gf["count"] == 1 and gf["last_ns"] == gf["max_ns"] == gf["mean_ns"] > res["gap_wait_us"] * 1000
    assert run["recovery_ns"] == gf["last_ns"] and run["beyond_wait_ns"] == gf["last_ns"] - 2_000_000
    s = res["summary"]
    assert s["all_filled"] and s["lost_messages"] == gap["messages"]
    assert set(s["recovery_ns"]) == {"min", "median", "max"} and s["beyond_wait_ns"]["min"] > 0
    assert s["baseline_python_client_ns"]["median"] > 0 and s["beyond_wait_over_baseline"] > 0
    assert res["server"]["requests"] >= m["requests"] + 6  # the data plane's and the baseline's (a warm-up + 5)


def test_bench_dataplane_ab_smoke(tmp_path):
    env = {**os.environ, "FH_BENCH_CACHE": str(tmp_path)}
    p = _fh("bench", "dataplane", "--messages", "5000", "--instruments", "20", "--repeats", "1", "--ab", "--json",
            env=env)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    s, ar = res["summary"], res["summary"]["arbitration"]
    assert res["ab"] and s["messages_all_applied"] and s["drops"] == {}
    assert ar["b_packets"] == res["datagrams"] + 1  # every datagram's copy and the end of session
    assert ar["all_duplicates"]
    for k in ("rx_only_cycles_per_b_packet", "full_cycles_per_b_packet", "cycles_per_b_packet", "ns_per_b_packet"):
        assert set(ar[k]) == {"min", "median", "max"}
    run = res["runs"][0]["arbitration"]
    assert run["a_and_b"]["b_line"]["duplicates"] == 5000 and run["a_and_b"]["b_line"]["won"] == 0
    assert "cycles_per_b_packet_from_minima" in ar and "own_cycles_per_packet" in s  # the A-only keys stay
