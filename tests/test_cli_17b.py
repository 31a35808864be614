"""The user surface of the data-plane, host, bench, record, replication, history and gateway commands (issue 17,
second half): help with defaults and an example everywhere, fh replay's --name/--keep-segment/--mbps/--maxsleep and
its tcpreplay-style rate line, the paced sender's lateness beyond its histogram, tables and --json, and the bench
charts. Real commands on the bundled capture and generated days."""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, fh, fh_popen, why_no_replicate
from handler.cli.main import build_parser, main
from handler.net import sender
from handler.segments import wake_path

PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"
FRAMES, MESSAGES = 1712, 40_000

# the commands this half owns, as paths through the parser
COMMANDS = [("replay",), ("verify",), ("pcap",), ("pcap", "synth"), ("pcap", "inspect"), ("retransmit-server",),
            ("plan",), ("check",), ("ports",), ("bench", "dataplane"), ("bench", "recovery"), ("record",),
            ("promote",), ("replicate",), ("replicate", "status"), ("replicate", "devices"), ("soak",), ("gateway",),
            ("history",), ("query",)]


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return parser


def _capture_bytes(path: Path) -> tuple[int, int]:
    """(frames, bytes of the frames as captured) of a classic little-endian pcap, read here independently."""
    data = path.read_bytes()
    pos, n, total = 24, 0, 0
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        total += incl
        n += 1
        pos += 16 + incl
    return n, total


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    return struct.unpack(">II", head[16:24])


# -- help ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_option_has_help_with_its_default_and_every_command_an_example(path):
    p = _subparser(build_parser(), path)
    text = p.format_help()
    assert re.search(r"^examples:\n  fh ", text, re.M), f"fh {' '.join(path)}: no example in its help"
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or a.help == argparse.SUPPRESS:
            continue
        name = "/".join(a.option_strings) or a.dest
        assert a.help, f"fh {' '.join(path)} {name}: no help text"
        if a.option_strings and a.nargs != 0 and a.default not in (None, argparse.SUPPRESS) and a.default is not False:
            shown = str(a.default)
            assert f"(default: {shown})" in " ".join(text.split()), f"fh {' '.join(path)} {name}: default {shown} not shown"


def test_bench_engine_has_plot_and_shows_defaults():
    text = " ".join(_subparser(build_parser(), ("bench", "engine")).format_help().split())
    assert "--plot FILE.png" in text and "pip install 'fh[plot]'" in text


# -- fh replay -------------------------------------------------------------------------------------------------

def test_keep_segment_needs_a_name():
    p = fh("replay", PCAP, "--keep-segment", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "--keep-segment" in p.stderr and "--name NAME" in p.stderr


def test_pacing_options_refused_with_their_reason():
    for args, want in ((["--mbps", "0"], "above 0"), (["--mbps", "100", "--pps", "5"], "give one of them"),
                       (["--maxsleep", "5"], "only a paced replay waits"), (["--maxsleep", "-1", "--pps", "5"],
                                                                             "milliseconds, above 0")):
        p = fh("replay", PCAP, *args, check=False)
        assert p.returncode == 2 and want in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)


def test_mbps_and_maxsleep_schedules():
    cap = sender.read_frames(PCAP)
    n, nbytes = _capture_bytes(PCAP)
    assert len(cap.frames) == n == FRAMES
    offs, period = sender.schedule(cap, sender.parse_pace(mbps=100))
    # each frame leaves once the previous ones' bits have gone at 100 Mbps: 80 ns a byte
    assert offs[0] == 0 and offs[1] == round(len(cap.frames[0]) * 80) and period == round(nbytes * 80)
    assert offs[-1] == round((nbytes - len(cap.frames[-1])) * 80)
    # recorded times, with no wait longer than 0.01 ms: the schedule is every gap capped
    rec, _ = sender.schedule(cap, sender.parse_pace("recorded"))
    capped, _ = sender.schedule(cap, sender.parse_pace("recorded", maxsleep_ms=0.01))
    gaps = [b - a for a, b in zip(rec, rec[1:])]
    assert max(gaps) > 10_000, "the capture has gaps longer than the cap: the test would prove nothing"
    assert capped[-1] == pytest.approx(sum(min(g, 10_000) for g in gaps), abs=len(gaps))
    assert str(sender.parse_pace("x10", maxsleep_ms=5)) == "x10, maxsleep 5 ms"
    assert str(sender.parse_pace(mbps=250)) == "250 Mbps"


def test_lateness_beyond_the_histogram_is_not_printed_as_a_measurement():
    hist = [0] * sender.LATE_BUCKETS
    hist[sender.late_index(1_500)] += 980          # 1.5 µs late
    hist[sender.late_index(40_000_000)] += 20      # 40 ms late: past the histogram's 16.8 ms
    late = sender._late_summary(hist, 40_000_123)
    assert late["p50"] == sender.late_upper(sender.late_index(1_500)) and 1_500 <= late["p50"] < 1_600
    assert late["p99"] is None and late["p99.9"] is None and late["beyond"] == 20 and late["max"] == 40_000_123
    text = sender.late_text(late)
    assert "p99, p99.9 > 16.78 ms (beyond the histogram)" in text and "max 40.00 ms" in text
    assert "16777215" not in text and "16,777,215" not in text
    # within the histogram every bucket bound holds its values, 6.25 % wide at most
    for v in (0, 63, 64, 1000, 65_535, 1_000_000, (1 << 24) - 1):
        i = sender.late_index(v)
        assert (sender.late_upper(i - 1) if i else -1) < v <= sender.late_upper(i) <= max(v, v * 1.0625 + 1)


@pytest.mark.dpdk
def test_replay_keeps_a_named_segment_and_ends_with_a_rate_line():
    name = f"t17b-{uuid.uuid4().hex[:6]}"
    seg = Path(f"/dev/shm/fh-{name}")
    try:
        p = fh("replay", PCAP, "--name", name, "--keep-segment")
        out = p.stdout
        assert f"packets {FRAMES:,} ({FRAMES:,} at the NIC, 0 missed), messages applied {MESSAGES:,} in " in out
        assert "latency rx->publish: p50 " in out and re.search(r"p99 [\d.,]+ (ns|µs|ms)", out)
        rate = [l for l in out.splitlines() if l.startswith("rate: ")]
        assert len(rate) == 1 and re.fullmatch(
            rf"rate: {FRAMES:,} packets \(2\.44 MiB\) in [\d.,]+ (ns|µs|ms|s): [\d.]+ [kMG]?bps, [\d.]+ [kM]? ?pkt/s, "
            rf"[\d.]+ [kM]? ?msg/s", rate[0]), rate
        assert f"rm /dev/shm/fh-{name} /dev/shm/fh-{name}.wake" in out
        assert seg.exists()
        st = json.loads(fh("stats", "--name", name, "--json").stdout)
        assert st["name"] == name and st["counters"]["messages"] == MESSAGES
        ref = {b["symbol"]: b for b in map(json.loads, fh("book", "dump", "--pcap", PCAP, "--depth", "10")
                                            .stdout.splitlines())}
        got = json.loads(fh("book", "AAPL", "--name", name, "--json").stdout)
        assert got == {k: ref["AAPL"][k] for k in ("locate", "symbol", "bids", "asks")}
        # again, as JSON: the same figures raw, the rate from the same packets and bytes
        d = json.loads(fh("replay", PCAP, "--name", name, "--keep-segment", "--json").stdout)
        n, nbytes = _capture_bytes(PCAP)
        r = d["rate"]
        assert d["segment"] == str(seg) and r["packets"] == n and r["bytes"] == nbytes == d["bytes"]
        assert r["messages"] == d["messages_applied"] == MESSAGES and r["elapsed_s"] > 0
        assert r["mbps"] == pytest.approx(nbytes * 8 / r["elapsed_s"] / 1e6, rel=1e-3)
        assert r["pps"] == pytest.approx(n / r["elapsed_s"], rel=1e-3)
    finally:
        for f in (seg, Path(wake_path(seg))):
            f.unlink(missing_ok=True)
    p = fh("replay", PCAP, "--name", name)  # without --keep-segment nothing is left behind
    assert "segment kept" not in p.stdout and not seg.exists() and not Path(wake_path(seg)).exists()


@pytest.mark.dpdk
@pytest.mark.netns
@pytest.mark.slow
def test_paced_by_line_rate_with_maxsleep(tmp_path):
    p = fh("replay", PCAP, "--mbps", "400", "--maxsleep", "1", "--quiet", "--json")
    d = json.loads(p.stdout)
    s = d["sender"]
    n, nbytes = _capture_bytes(PCAP)
    assert s["pace"] == "400 Mbps, maxsleep 1 ms" and s["sent"] == n and s["bytes"] == nbytes
    # the schedule is the line rate's: every byte 20 ns at 400 Mbps (no frame needs more than the 1 ms cap)
    assert s["scheduled_s"] == pytest.approx(nbytes * 20 / 1e9, abs=1e-6)
    assert d["messages_applied"] == MESSAGES and d["rate"]["bytes"] == nbytes
    late = s["late_ns"]
    assert late["count"] == n and late["max"] >= (late["p50"] or 0)
    text = fh("replay", PCAP, "--mbps", "400", "--quiet").stdout
    assert "sender (400 Mbps, 1 loop(s)): 1,712 of 1,712 frames in " in text and "frames late by p50 " in text
    assert re.search(r"^rate: 1,712 packets \(2\.44 MiB\) in ", text, re.M)


# -- verify, pcap inspect ----------------------------------------------------------------------------------------

@pytest.mark.dpdk
def test_verify_json_ok_and_stale(tmp_path):
    d = json.loads(fh("verify", PCAP, "--json").stdout)
    assert d["verdict"] == "OK" and d["books"] == d["reference_books"] > 0 and d["differences"] == []
    assert d["reference"]["applied"] == MESSAGES and d["stats"]["messages_applied"] == MESSAGES
    plan = tmp_path / "plan.toml"
    plan.write_text('[[fault]]\nkind = "drop"\nline = "both"\nat = 100\ncount = 3\n')
    faulty = tmp_path / "faulty.pcap"
    fh("pcap", "synth", faulty, "--messages", "20000", "--instruments", "20", "--faults", plan)
    p = fh("verify", faulty, "--json", check=False)
    d = json.loads(p.stdout)
    assert p.returncode == 1 and d["verdict"] == "STALE" and d["feed_state"] == "stale"
    assert "no line carried" in d["stale_reason"] and d["reference"]["lost"] > 0
    t = fh("verify", faulty, check=False).stdout
    assert t.splitlines()[-1].startswith("STALE: ") and "every book is marked stale" in t


def test_pcap_inspect_tables_and_json():
    out = fh("pcap", "inspect", PCAP).stdout
    lines = out.splitlines()
    assert lines[0] == f"{PCAP}: {FRAMES:,} frames, {FRAMES:,} UDP datagrams, none skipped"
    dest = lines[lines.index("destination           datagrams") + 1:][:2]
    assert sorted(l.split()[0] for l in dest) == ["233.49.196.111:26477", "233.54.12.111:26477"]
    assert all(l.split()[1] == "856" for l in dest)
    assert re.search(r"^FHSYNTH001 +1\.\.40,000 +80,000$", out, re.M)
    types = {l.split()[0]: int(l.split()[1].replace(",", "")) for l in lines[lines.index(
        [x for x in lines if x.startswith("type ")][0]) + 1:]}
    d = json.loads(fh("pcap", "inspect", PCAP, "--json").stdout)
    assert d["frames"] == d["datagrams"] == FRAMES and d["types"] == types and sum(types.values()) == 2 * MESSAGES
    assert d["sessions"]["FHSYNTH001"] == [1, MESSAGES, 2 * MESSAGES] and d["gaps"] == []


# -- host: plan, check -----------------------------------------------------------------------------------------

TWO = ROOT / "tests" / "fixtures" / "hosts" / "two-socket-32c"


def test_check_table_puts_each_fix_under_its_finding():
    p = fh("check", "--root", TWO, "--pci", "0000:17:00.0", check=False)
    lines = p.stdout.splitlines()
    assert re.match(r"level +item +finding$", lines[1])
    col = lines[1].index("finding")
    fails = [i for i, l in enumerate(lines) if re.match(r"FAIL +nic ", l)]
    assert len(fails) == 1 and lines[fails[0] + 1][:col].strip() == "" and lines[fails[0] + 1][col:].startswith("fix: ")
    d = json.loads(fh("check", "--root", TWO, "--pci", "0000:17:00.0", "--json", check=False).stdout)
    assert d["status"] == p.returncode == 2
    assert len([l for l in lines[2:-1] if l[:col].strip()]) == len(d["results"])  # one row a result, fixes below


def test_plan_table():
    p = fh("plan", "--root", TWO, "--pci", "0000:17:00.0", check=False)
    lines = p.stdout.splitlines()
    assert re.match(r"item +chosen$", lines[1]) and [l.split()[0] for l in lines[2:6]] == ["nic", "cores",
                                                                                            "hugepages", "eal"]
    d = json.loads(fh("plan", "--root", TWO, "--pci", "0000:17:00.0", "--json", check=False).stdout)
    assert " ".join(d["eal_args"]) in p.stdout


# -- bench charts ----------------------------------------------------------------------------------------------

def test_bench_engine_plot(tmp_path, capsys):
    png = tmp_path / "engine.png"
    assert main(["bench", "engine", "--messages", "20000", "--instruments", "50", "--repeats", "1",
                 "--no-itch-book", "--shape", "uniform", "--plot", str(png), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["messages"] > 0 and _png_size(png) == (1000, 500) and png.stat().st_size > 10_000


def test_bench_plot_refused_before_the_bench_runs(tmp_path):
    p = fh("bench", "engine", "--messages", "20000", "--plot", tmp_path / "nowhere" / "x.png", check=False)
    assert p.returncode == 2 and "no directory" in p.stderr and p.stdout == ""
    p = fh("bench", "engine", "--messages", "20000", "--plot", tmp_path / "x.svg", check=False)
    assert p.returncode == 2 and "ending in .png" in p.stderr
    # matplotlib missing: one line naming the extra to install
    code = ("import sys; sys.modules['matplotlib'] = None; from handler.cli.main import main; "
            f"sys.exit(main(['bench', 'engine', '--messages', '1000', '--plot', {str(tmp_path / 'x.png')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and p.stderr.strip() == "fh: --plot needs matplotlib: pip install 'fh[plot]'", p.stderr


@pytest.mark.dpdk
@pytest.mark.slow
def test_bench_dataplane_plot(tmp_path):
    png = tmp_path / "dp.png"
    p = fh("bench", "dataplane", "--messages", "20000", "--instruments", "50", "--repeats", "1", "--idle",
           "backoff", "--plot", png, "--json")
    d = json.loads(p.stdout)
    assert d["summary"]["messages_all_applied"] and _png_size(png) == (1000, 500)
    assert f"chart: {png} (1000x500 PNG)" in p.stderr


# -- replication devices ---------------------------------------------------------------------------------------

def test_replicate_devices_table():
    if why_no_replicate():
        pytest.skip(why_no_replicate())
    out = fh("replicate", "devices", "--provider", "tcp").stdout.splitlines()
    devs = json.loads(fh("replicate", "devices", "--provider", "tcp", "--json").stdout)
    assert out[0].split() == ["provider", "domain", "fabric", "mr_mode", "cq", "data"]
    assert len(out) == len(devs) + 1 and all(l.split()[:2] == [d["provider"], d["domain"]] for l, d in zip(out[1:], devs))


@pytest.mark.dpdk
def test_replicate_status_table_after_a_replicated_replay():
    """A real primary and standby (fh-replicate over the tcp provider) ship a replayed day; both status files read
    back as tables whose figures are the JSON's, in human units."""
    import test_replicate as T

    if why_no_replicate():
        pytest.skip(why_no_replicate())
    with T.replicated_replay(PCAP) as (tag, sb, _, _, _):
        for path, role, what in ((sb.status, "standby", "applied"), (T._primary_status(tag), "primary", "shipped")):
            st = json.loads(fh("replicate", "status", "--name", path, "--json").stdout)
            rows = {l.split()[0]: l.split(None, 1)[1] for l in
                    fh("replicate", "status", "--name", path).stdout.splitlines()[1:]}
            assert rows["role"] == role == st["role"] and rows["state"].startswith(f"{st['state']} (pid {st['pid']}")
            assert rows[what] == f"{st['frames']:,} records, {st['messages']:,} messages" and st["messages"] == MESSAGES
            assert rows["provider"] == "tcp" and rows["epoch"] == str(st["epoch"])
            assert rows["lag"].startswith(f"{st['lag_messages']:,} messages, ")


@pytest.mark.dpdk
def test_replay_never_touches_a_running_instance_of_its_name(tmp_path):
    """fh replay --name NAME while an instance NAME runs (here fh publish --hold): one line saying so, and the
    running instance's segment is left alone."""
    name = f"t17b-{uuid.uuid4().hex[:6]}"
    ready = tmp_path / "ready"
    pub = fh_popen("publish", "--itch", ROOT / "pcaps" / "synth-100k.itch", "--name", name, "--hold", "--ready-file",
                   ready, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if ready.exists() or pub.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), "fh publish did not start"
        p = fh("replay", PCAP, "--name", name, "--keep-segment", check=False)
        assert p.returncode == 2 and p.stderr == (f"fh: segment /dev/shm/fh-{name} is held by another writer (pid "
                                                  f"{pub.pid}): stop that instance (kill {pub.pid}) or give this "
                                                  "replay another --name\n")
        st = json.loads(fh("stats", "--name", name, "--json").stdout)
        assert st["writer"]["state"] == "running" and st["writer"]["pid"] == pub.pid
    finally:
        pub.terminate()
        pub.wait(10)
