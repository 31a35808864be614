"""Smoke tests of two benchmarks: `fh bench recovery` (live, needs root: a gap lost on both lines is filled
through the retransmission server) and `fh bench dataplane --ab` (the cost of B copies) on tiny inputs. The
figures themselves are not asserted: they are timings on a shared machine (bench/recovery.md,
bench/dataplane.md)."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest

from handler import process

pytestmark = [pytest.mark.dpdk, pytest.mark.slow]  # without root it checks the one-line skip of the benchmark


def _fh(*args, env=None, timeout=300):
    return subprocess.run(process.fh_argv(*args), capture_output=True, text=True, timeout=timeout, cwd=process.ROOT,
                          env=env)


def _report_rows(print_report, res: dict) -> dict[str, list[str]]:
    """A benchmark's text report of res (its --json) as {label: [best, median]}: the rows of its best/median
    tables that end where their header ends (columns aligned, as ui.print_table lays them out); the first of a
    label."""
    out = io.StringIO()
    print_report(res, out)
    rows, width = {}, None
    for line in out.getvalue().splitlines():
        if line.split() == ["best", "median"]:
            width = len(line)
        elif width is not None and len(line) == width and len(parts := line.rsplit(None, 2)) == 3:
            rows.setdefault(parts[0].strip(), parts[1:])
    return rows


@pytest.mark.solo  # a live feed on a veth pair that must lose nothing but the gap it makes
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
    from handler.bench import recovery

    rows = _report_rows(recovery.print_report, res)
    ms = lambda mm: [f"{mm['min'] / 1e6:.3f}", f"{mm['median'] / 1e6:.3f}"]  # noqa: E731
    assert rows["gap open, first sign to filled (ms)"] == ms(s["recovery_ns"])
    assert rows["beyond the wait (ms)"] == ms(s["beyond_wait_ns"])
    assert rows["Python client <-> server, loopback (ms)"] == ms(s["baseline_python_client_ns"])


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
    from handler.bench import dataplane

    rows = _report_rows(dataplane.print_report, res)
    cyc = lambda mm: [f"{mm['min']:,.0f}", f"{mm['median']:,.0f}"]  # noqa: E731
    assert rows["full cycles/packet"] == cyc(s["full_cycles_per_packet"])
    assert rows["own cycles/packet, at most (target <= 50)"] == cyc(s["own_cycles_per_packet"])
    assert rows["own cycles/packet, at least (vs mold path*)"] == cyc(s["own_cycles_per_packet_vs_mold_path"])
    assert s["target_by"] == "clock" and s["target_met"] in (True, False, None)  # no --callgrind
    assert rows["arbitration cycles/B packet"] == cyc(ar["cycles_per_b_packet"])
    assert rows["engine ns/message (apply_blocks)"] == [f"{s['engine_ns_per_msg'][k]:.2f}" for k in ("min", "median")]


def test_dataplane_target_is_judged_by_callgrind_when_counted_and_by_the_clock_only_within_its_bounds():
    """The clock gives the data plane's own cycles only as bounds (beyond the block loop: at most; beyond the
    Python-driven mold path: at least), so it can say met or not met only when both sit on one side of the
    target; with --callgrind's count the target is judged by its instructions, whatever the clock says."""
    from handler.bench import dataplane

    def summary(at_most, at_least):
        return {"own_cycles_per_packet": {"median": at_most}, "own_cycles_per_packet_vs_mold_path": {"median": at_least}}

    def cg(own, exact=None):
        return {"instructions_per_packet": {"own_total": own, "own_total_exact": exact or own}}

    cases = [((40, -300), None, True, "clock"), ((400, 60), None, False, "clock"), ((400, -30), None, None, "clock"),
             ((-227, -900), cg(43.9), True, "callgrind"), ((30, 10), cg(105.7), False, "callgrind"),
             # two noisy medians inverted (the lower bound above the upper one) straddle the target: unresolved
             ((48, 52), None, None, "clock"),
             # the verdict is taken on the unrounded count: 50.04 shows as 50.0 and is not within 50
             ((30, 10), cg(50.0, 50.04), False, "callgrind"), ((30, 10), cg(50.0, 49.96), True, "callgrind")]
    for (hi, lo), counted, met, by in cases:
        s = summary(hi, lo)
        v = dataplane.judge_target(s, counted)
        assert (v["target_met"], v["target_by"]) == (met, by), (hi, lo, counted)
        assert v["own_cycles_per_packet_bounds"] == {"at_least": min(lo, hi), "at_most": max(lo, hi)}
        line = dataplane.target_line({**s, **v})
        word = {True: ": met", False: ": NOT met", None: ": unresolved"}[met]
        assert word in line and (("instructions" in line) == (by == "callgrind")), line
    assert "105.7 instructions" in dataplane.target_line({**summary(30, 10), **dataplane.judge_target(summary(30, 10), cg(105.7))})


def test_callgrind_pass_gives_the_engine_its_staged_run(tmp_path):
    """`fh bench dataplane --callgrind`'s attribution: the data plane's consumer stages each datagram
    (c_stage_datagram) and fh_engine_batch_end applies what is left of the run at the burst's end (its call of
    staged_flush, taken from callgrind's call arcs); both are the engine's, and fh_engine_batch_end keeps only its
    test and the readers' wake. Counted, not timed: instructions are exact."""
    import shutil

    from handler import native
    from handler.bench import dataplane
    from handler.net import pcapgen

    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (scripts/setup.sh installs it)")
    pcap = tmp_path / "a.pcap"
    info = pcapgen.synth_pcap(pcap, native.synth_bytes(3000, 20, 7), [pcapgen.Line(*pcapgen.DEFAULT_A)], mtu=340)
    raw: dict = {}
    res = dataplane.callgrind_pass(pcap, raw=raw, exit_idle_ms=1)
    assert res["messages"] == 3000 and res["packets"] >= info["datagrams"]
    arcs = raw["full"]["arcs"]
    flushed = arcs[("fh_engine_batch_end", "staged_flush")]
    assert flushed > 0 and ("apply_next", "c_stage_datagram") in arcs  # the run: staged, and ended by the burst
    per_packet = res["instructions_per_packet"]
    engine_per_msg = res["instructions_per_message"]["engine"]
    assert 100 < engine_per_msg < 1000  # the books' work, all of it (a private engine's is ~150-250)
    assert per_packet["own"]["fh_engine_batch_end (+ fh_seg_wake)"] < 20  # its own part only
    assert per_packet["own"]["fh_engine_batch_end (+ fh_seg_wake)"] * res["packets"] < flushed


def test_callgrind_instruments_the_data_planes_loops_only_and_counts_them_as_a_whole_run_does(tmp_path):
    """`fh bench dataplane --callgrind` runs fh-dataplane under `valgrind --instr-atstart=no`, and dp_run turns
    instrumentation on around its loops (callgrind's client requests): start-up and shut-down (EAL, ports, the
    engine writing every page of its tables) are not instrumented, and the loops count what a run instrumented
    throughout counts for them, to the instruction where nothing depends on timing (the engine, sequencing)."""
    import shutil

    from handler import native
    from handler.bench import dataplane
    from handler.net import pcapgen

    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (scripts/setup.sh installs it)")
    pcap = tmp_path / "a.pcap"
    pcapgen.synth_pcap(pcap, native.synth_bytes(3000, 20, 7), [pcapgen.Line(*pcapgen.DEFAULT_A)], mtu=340)
    late = dataplane._callgrind_run(pcap, "full", str(tmp_path), exit_idle_ms=1)
    whole = dataplane._callgrind_run(pcap, "full", str(tmp_path), exit_idle_ms=1, late=False)
    assert late["packets"] == whole["packets"] > 0 and late["messages"] == whole["messages"] == 3000
    # only the loops: dp_run holds nearly every instruction counted, and the whole run counts 5x more and more
    assert late["incl"]["dp_run"] >= 0.95 * late["self"]["*total*"]
    assert whole["self"]["*total*"] > 5 * late["self"]["*total*"]
    assert "fh_engine_create_on" not in late["incl"] and "fh_engine_create_on" in whole["incl"]
    # the loops' work counted alike
    assert dataplane._engine(late) == dataplane._engine(whole)
    mold = lambda r: sum(r["self"].get(fn, 0) for fn in dataplane._MOLD_FUNCS)  # noqa: E731
    assert mold(late) == mold(whole) > 0


def test_arbitration_callgrind_keeps_the_staged_run_out_of_the_b_copies_cost(tmp_path):
    """`fh bench dataplane --ab --callgrind`'s B-packet figures: the staged consumer applies the run partly inside
    MoldUDP64's calls and the rest in fh_engine_batch_end, and a burst of the A+B capture holds half as many A
    datagrams as one of the A-only capture, so the two runs split the same engine work differently between those
    two functions. Their rows must not carry that difference: fh_engine_batch_end's is its test and wake only,
    MoldUDP64's is the duplicate path (each B copy is only counted), and what the rows leave out is the engine's.
    Counted, not timed."""
    import shutil

    from handler import native
    from handler.bench import dataplane
    from handler.net import pcapgen

    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (scripts/setup.sh installs it)")
    day = native.synth_bytes(3000, 20, 7)
    a, ab = tmp_path / "a.pcap", tmp_path / "ab.pcap"
    pcapgen.synth_pcap(a, day, dataplane._lines(False), mtu=340)
    info = pcapgen.synth_pcap(ab, day, dataplane._lines(True), mtu=340)
    raw: dict = {}
    dataplane.callgrind_pass(a, ab=True, raw=raw, exit_idle_ms=1)
    res = dataplane.arbitration_callgrind(ab, raw, exit_idle_ms=1)
    assert res["messages_applied"] == {"a_only": 3000, "a_and_b": 3000}
    assert res["b_packets"] >= info["datagrams"] // 2
    per = res["instructions_per_b_packet"]
    own = per["own"]
    assert own["fh_engine_batch_end (less the staged run)"] < 5  # before the fix: the A run's bigger flushes, ~+200
    assert 20 < own["MoldUDP64 (fh_mold_feed_apply + _poll, less the engine)"] < 200  # before: negative
    engine = per["engine (its entry points and the staged run)"]
    assert abs(engine) < 0.2 * per["own_total"]  # a B copy applies nothing; only the runs' steps move


def test_bench_recovery_refuses_a_bad_rate_before_anything_runs():
    """--pps 0, -1, nan or inf were refused only after the day had been generated, its captures written and the
    lab's namespace set up: now argparse refuses them, exit 2, before anything runs."""
    for v in ("0", "-1", "nan", "inf", "abc"):
        r = _fh("bench", "recovery", f"--pps={v}", timeout=30)
        assert r.returncode == 2 and "argument --pps: expected" in r.stderr.splitlines()[-1], (v, r.stderr)
