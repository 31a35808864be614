"""The fh command line end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

import pytest

from conftest import ROOT, fh, real_itch_pcaps
from handler import reference as ref


@pytest.mark.slow
def test_synth_is_deterministic(tmp_path):
    a, b, c = tmp_path / "a.itch", tmp_path / "b.itch", tmp_path / "c.itch"
    fh("synth", "itch", a, "--messages", "20000", "--instruments", "30", "--seed", "7")
    fh("synth", "itch", b, "--messages", "20000", "--instruments", "30", "--seed", "7")
    fh("synth", "itch", c, "--messages", "20000", "--instruments", "30", "--seed", "8")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    msgs, trunc = ref.split_daily_file(a.read_bytes())
    assert len(msgs) == 20000 and trunc is None


def test_synth_shapes(tmp_path):
    """--shape picks the day (fh/synth.h), the same bytes as the library's for that shape, three different days;
    real-late's new references are at their locate's residue mod 4 and span the open's to a late-day window's."""
    from handler import native

    days = {}
    for shape in ("uniform", "real", "real-late"):
        out = tmp_path / f"{shape}.itch"
        fh("synth", "itch", out, "--messages", "20000", "--instruments", "30", "--seed", "4", "--shape", shape)
        days[shape] = out.read_bytes()
        assert days[shape] == native.synth_bytes(20000, 30, 4, shape=shape)
    assert len(set(days.values())) == 3
    msgs, _ = ref.split_daily_file(days["real-late"])
    new = [(int.from_bytes(m[11:19] if m[:1] in b"AF" else m[19:27], "big"), int.from_bytes(m[1:3], "big"))
           for m in msgs if m[:1] in b"AFU"]  # (the new reference, the stock locate)
    assert len(new) > 5000 and all(r % 4 == loc % 4 for r, loc in new)
    assert max(r for r, _ in new) > 150_000_000 and min(r for r, _ in new) < 10_000_000
    p = fh("synth", "itch", tmp_path / "x", "--shape", "late", check=False)
    assert p.returncode == 2 and "real-late" in p.stderr


def test_synth_rejects_bad_arguments(tmp_path):
    p = fh("synth", "itch", tmp_path / "x", "--messages", "10", "--instruments", "1000", check=False)
    assert p.returncode == 2 and "need at least" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = fh("synth", "itch", tmp_path / "x", "--instruments", "70000", check=False)
    assert p.returncode == 2 and "65535" in p.stderr
    p = fh("synth", "itch", tmp_path / "x", "--messages", "-5", check=False)
    assert p.returncode == 2 and ">= 1" in p.stderr


@pytest.mark.slow
def test_book_dump_c_equals_reference(tmp_path):
    day = tmp_path / "d.itch"
    fh("synth", "itch", day, "--messages", "50000", "--instruments", "40", "--seed", "3")
    c = fh("book", "dump", "--itch", day).stdout
    r = fh("book", "dump", "--itch", day, "--engine", "reference").stdout
    assert c == r
    rows = [json.loads(line) for line in c.splitlines()]
    assert [list(row) for row in rows[:1]] == [["locate", "symbol", "bids", "asks"]]
    assert [row["locate"] for row in rows] == sorted(row["locate"] for row in rows)
    for row in rows:
        assert row["bids"] or row["asks"]
        assert [lv[0] for lv in row["bids"]] == sorted((lv[0] for lv in row["bids"]), reverse=True)
        assert [lv[0] for lv in row["asks"]] == sorted(lv[0] for lv in row["asks"])
        if row["bids"] and row["asks"]:
            assert row["bids"][0][0] < row["asks"][0][0], f"crossed book {row}"
    d2 = [json.loads(line) for line in fh("book", "dump", "--itch", day, "--depth", "2").stdout.splitlines()]
    assert all(len(x["bids"]) <= 2 and len(x["asks"]) <= 2 for x in d2)
    assert [x["bids"] for x in d2] == [x["bids"][:2] for x in rows]


@pytest.mark.slow
def test_book_dump_stats_and_errors(tmp_path):
    day = tmp_path / "d.itch"
    fh("synth", "itch", day, "--messages", "5000", "--instruments", "5")
    p = fh("book", "dump", "--itch", day, "--stats")
    assert "counters: " in p.stderr and "messages=5000" in p.stderr
    p = fh("book", "dump", "--itch", tmp_path / "missing.itch", check=False)
    assert p.returncode == 2 and p.stderr.strip() == f"fh: {tmp_path / 'missing.itch'}: no such file; check the path"
    p = fh("book", "dump", "--pcap", day, check=False)  # not a pcap
    assert p.returncode == 2 and "pcap" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("path", real_itch_pcaps()[:4], ids=lambda p: p.name)
def test_book_dump_pcap(path, real):
    c = fh("book", "dump", "--pcap", path).stdout
    r = fh("book", "dump", "--pcap", path, "--engine", "reference").stdout
    assert c == r


@pytest.mark.slow
def test_bundled_day_matches_manifest():
    manifest = json.loads((ROOT / "pcaps" / "manifest.json").read_text())
    for entry in manifest["files"]:
        path = ROOT / "pcaps" / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], f"{path} changed"
        books = fh("book", "dump", f"--{entry['kind']}", path).stdout
        assert hashlib.sha256(books.encode()).hexdigest() == entry["books_sha256"]
        assert len(books.splitlines()) == entry["books"]


@pytest.mark.slow
def test_bench_engine_small_json():
    p = fh("bench", "engine", "--messages", "30000", "--instruments", "20", "--repeats", "2", "--json",
           "--no-itch-book")
    days = json.loads(p.stdout)["days"]  # --shape all, the default
    assert [d["shape"] for d in days] == ["uniform", "real", "real-late"]
    for res in days:
        assert res["messages"] == 30000
        assert res["engine"]["median_ns_per_msg"] > 0 and res["parse_only"]["median_ns_per_msg"] > 0
        assert res["engine"]["anomalies"] == {}
    one = json.loads(fh("bench", "engine", "--messages", "30000", "--instruments", "20", "--repeats", "1", "--json",
                        "--no-itch-book", "--shape", "real").stdout)
    assert one["shape"] == "real" and one["messages"] == 30000
    assert "itch_book" not in one and "itch_book_skipped" not in one  # --no-itch-book: not asked for
    # without --no-itch-book the peer runs, or the result says why it did not
    peer = json.loads(fh("bench", "engine", "--messages", "30000", "--instruments", "20", "--repeats", "1", "--json",
                         "--shape", "uniform").stdout)
    assert ("itch_book" in peer) != ("itch_book_skipped" in peer)
    assert "pip install itch-book" in peer.get("itch_book_skipped", "pip install itch-book")


def test_bench_engine_callgrind_counts_as_a_run_instrumented_throughout(tmp_path):
    """`fh bench engine --callgrind`: instructions a message of the engine, the engine publishing and the parse-only
    pass, instrumented only around the measured call (fh-bench-engine's client requests); a run instrumented from
    the start counts the same."""
    import re
    import shutil
    import subprocess

    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (scripts/setup.sh installs it)")
    day = tmp_path / "d.itch"
    fh("synth", "itch", day, "--messages", "30000", "--instruments", "20", "--seed", "1")
    res = json.loads(fh("bench", "engine", "--itch", day, "--repeats", "1", "--no-itch-book", "--callgrind",
                        "--json").stdout)
    c = res["callgrind"]
    assert c["messages"] == res["messages"] == 30000
    assert 0 < c["parse_only"] < c["engine"] < c["publish"]
    assert abs(c["publishing"] - (c["publish"] - c["engine"])) <= 0.011 and c["publishing"] > 0  # of the counts
    assert c["engine_target_met"] == (c["engine"] <= 100) and c["publishing_target_met"] == (c["publishing"] <= 30)
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                        "--toggle-collect=fh_engine_apply_blocks", c["program"], str(day), "1", "engine"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-500:]
    assert round(int(re.findall(r"Collected : (\d+)", p.stderr)[-1]) / 30000, 2) == c["engine"]
    # the text report of the same figures (the engine timed again in this process; the counts are the ones above,
    # not counted a second time)
    import argparse
    import contextlib
    import io
    import os

    from handler.bench import engine as bench_engine

    a = argparse.Namespace(itch=str(day), repeats=1, no_itch_book=True, callgrind=True, json=False, cpu=None)
    buf, cpus = io.StringIO(), os.sched_getaffinity(0)
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
            mp.setattr(bench_engine, "callgrind_counts", lambda path, program=None: dict(c))
            bench_engine._bench_one(a, None)
    finally:
        os.sched_setaffinity(0, cpus)  # _bench_one pins this process to one CPU
    text = buf.getvalue()
    assert "engine (fh_engine_apply_blocks)" in text and f"{c['engine']:.2f}" in text
    assert "publishing (the difference)" in text and f"{c['publishing']:.2f}" in text
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    assert (f"targets: engine <= 100: {met(c['engine_target_met'])}; publishing <= 30: "
            f"{met(c['publishing_target_met'])}") in text


def test_bench_engine_callgrind_verdicts_are_taken_unrounded_and_a_failure_names_the_programs_own_error(monkeypatch,
                                                                                                         tmp_path):
    """callgrind_counts rounds its figures for the report but judges the targets on the counts: an engine at
    100.004 a message shows as 100.0 and is NOT within 100. A run that fails says the program's own last line,
    not valgrind's summary. (valgrind's runs are stood in for: the counting itself is tested above.)"""
    import subprocess

    from handler.bench import dataplane as bench_dataplane
    from handler.bench import engine as bench_engine
    from handler.errors import FhError

    monkeypatch.setattr(bench_dataplane, "_need_valgrind", lambda: None)
    counts = {"engine": 200_008, "publish": 260_024, "scan": 84_000}  # a day of 2,000 messages
    fail = {}

    def run(cmd, **kw):
        mode = cmd[-1]
        if mode in fail:
            return subprocess.CompletedProcess(cmd, 2, "", f"==7== Callgrind\n{fail[mode]}\n==7== I   refs: 0\n")
        return subprocess.CompletedProcess(cmd, 0, '{"mode": "x", "messages": 2000}\n',
                                           f"==7== Events    : Ir\n==7== Collected : {counts[mode]}\n")

    monkeypatch.setattr(bench_engine.subprocess, "run", run)
    day = tmp_path / "d.itch"
    day.write_bytes(b"")
    c = bench_engine.callgrind_counts(day, program="/bin/true")
    assert (c["engine"], c["publish"], c["publishing"]) == (100.0, 130.01, 30.01)
    assert c["engine_target_met"] is False and c["publishing_target_met"] is False
    counts.update(engine=199_992, publish=260_000)  # 99.996 and 30.004: the engine within, publishing not
    c = bench_engine.callgrind_counts(day, program="/bin/true")
    assert (c["engine"], c["publishing"]) == (100.0, 30.0)
    assert c["engine_target_met"] is True and c["publishing_target_met"] is False
    fail["publish"] = "fh-bench-engine: fh_seg_create:120: cannot size segment: No space left on device"
    with pytest.raises(FhError, match=r"\(publish\) failed \(exit status 2\): fh-bench-engine: fh_seg_create.*No sp"):
        bench_engine.callgrind_counts(day, program="/bin/true")


# ---- bad input: one line naming the cause and the fix, exit 2, never a traceback or a hang ----------------------

DAY = ROOT / "pcaps" / "synth-100k.itch"
PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"


def one_line_error(p, *want: str) -> str:
    """fh's own error: exit 2, no traceback, one line on stderr holding each of want."""
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for w in want:
        assert w in lines[0], lines[0]
    return lines[0]


def usage_error(p, option: str, *want: str) -> str:
    """argparse's usage error: exit 2, no traceback, the usage and then one line `fh CMD: error: argument OPTION:
    ...` holding each of want."""
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    errors = [l for l in p.stderr.splitlines() if ": error: " in l]
    assert errors == p.stderr.strip().splitlines()[-1:], p.stderr
    assert f"error: argument {option}: " in errors[0], errors[0]
    for w in want:
        assert w in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("args, option, want", [
    (["publish", "--itch", DAY, "--name", "fhbad", "--events", "99999999999"], "--events", "from 64 to 67108864"),
    (["publish", "--itch", DAY, "--name", "fhbad", "--max-levels", "99999999999999"], "--max-levels",
     "from 8 to 1073741824"),
    (["publish", "--itch", DAY, "--name", "fhbad", "--depth", "99999999999"], "--depth", "from 1 to 64"),
    (["publish", "--itch", DAY, "--name", "fhbad", "--chunk", "99999999999999999999999", "--pace", "0.01"],
     "--chunk", "99999999999999999999999"),
    (["publish", "--itch", DAY, "--name", "fhbad", "--pace", "-1"], "--pace", "0 to 3600 seconds, got -1"),
    (["publish", "--itch", DAY, "--name", "fhbad", "--pace", "nan"], "--pace", "got nan"),
    (["synth", "itch", "OUT", "--messages", "99999999999999999999"], "--messages", "18446744073709551615"),
    (["synth", "itch", "OUT", "--seed", "99999999999999999999"], "--seed", "from 0 to 18446744073709551615"),
    (["synth", "itch", "OUT", "--anomaly-ppm", "99999999999"], "--anomaly-ppm", "from 0 to 1000000"),
    (["pcap", "synth", "OUT", "--messages", "99999999999999999999"], "--messages", "18446744073709551615"),
    (["pcap", "synth", "OUT", "--seed", "99999999999999999999"], "--seed", "18446744073709551615"),
    (["events", "--name", "fhbad", "--from", "99999999999999999999999"], "--from", "18446744073709551615"),
    (["top", "--name", "fhbad", "--once", "--interval", "-1"], "--interval", "more than 0"),
    (["top", "--name", "fhbad", "--once", "--interval", "nan"], "--interval", "got nan"),
    (["book", "AAPL", "--name", "fhbad", "--watch", "--interval", "inf"], "--interval", "got inf"),
    (["history", "--itch", DAY, "--date", "2020-01-02", "--out", "OUT", "--snapshot-every", "nan"],
     "--snapshot-every", "got nan"),
    (["history", "--itch", DAY, "--date", "2020-01-02", "--out", "OUT", "--depth", "-1"], "--depth", ">= 1"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_numbers_out_of_range_are_usage_errors(args, option, want, tmp_path):
    """A number beyond what the C side's field holds (OverflowError) or that time.sleep refuses (ValueError) was
    a traceback: now argparse's one-line usage error, before anything is written or created."""
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    usage_error(fh(*args, check=False), option, want)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, want", [
    (["stop", "--name", "fhbad", "--timeout", "nan"], "--timeout nan: must be 0 or more seconds"),
    (["status", "--name", "fhbad", "--sample", "nan"], "--sample nan"),
    (["metrics", "--name", "fhbad", "--once", "--interval", "inf"], "--interval inf"),
])
def test_nan_and_inf_seconds_are_refused(args, want):
    """nan passed the `< 0` checks: fh stop --timeout nan sent SIGKILL at once."""
    one_line_error(fh(*args, check=False), want)


def test_journal_paths_that_hold_no_journal_are_named(tmp_path):
    """fh decode and fh book dump --journal: an empty directory gave exit 0 and no output, a FIFO blocked forever;
    --snapshots naming nothing (or a file) was taken for "no snapshot yet", and with --itch it was ignored."""
    empty = tmp_path / "empty"
    empty.mkdir()
    fifo = tmp_path / "j.fhj"
    os.mkfifo(fifo)
    want = "give fh record's journal directory (its --dir) or one of its *.fhj files"
    for cmd in (["decode"], ["book", "dump"], ["book", "dump", "--engine", "reference"]):
        line = one_line_error(fh(*cmd, "--journal", empty, check=False, timeout=120))
        assert line == f"fh: --journal {empty}: no journal files (*.fhj) in this directory; {want}"
        line = one_line_error(fh(*cmd, "--journal", fifo, check=False, timeout=120))
        assert line == f"fh: --journal {fifo}: not a regular file (a FIFO); {want}"
    for snaps, why in [(tmp_path / "none", "no such directory"), (DAY, "not a directory")]:
        one_line_error(fh("book", "dump", "--journal", empty, "--snapshots", snaps, check=False),
                       f"--snapshots {snaps}: {why}; give the directory fh record writes its snapshots into")
    one_line_error(fh("book", "dump", "--itch", DAY, "--snapshots", empty, check=False),
                   f"--snapshots {empty}: give fh record's journal with it (--journal DIR)")
    one_line_error(fh("book", "dump", "--journal", empty, "--snapshots", empty, "--engine", "reference",
                      check=False), "the reference engine loads no snapshot")


def test_snapshot_server_files_that_are_no_regular_files_are_refused(tmp_path):
    """fh snapshot-server and snapshot-fetch read --password-file (and the server --snapshot) as given: a FIFO
    blocked them forever."""
    fifo = tmp_path / "pw"
    os.mkfifo(fifo)
    pw = tmp_path / "pw.txt"
    pw.write_text("secret\n")
    p = fh("snapshot-server", "--itch", DAY, "--user", "fh", "--listen", "127.0.0.1:0", "--password-file", fifo,
           check=False, timeout=120)
    assert one_line_error(p) == f"fh: --password-file {fifo}: not a regular file (a FIFO); give the file holding " \
                                "the password"
    p = fh("snapshot-fetch", "--server", "127.0.0.1:1", "--user", "fh", "--password-file", tmp_path, "--out",
           tmp_path / "s.snap", check=False, timeout=120)
    one_line_error(p, f"--password-file {tmp_path}: not a regular file (a directory)")
    p = fh("snapshot-server", "--snapshot", fifo, "--user", "fh", "--listen", "127.0.0.1:0", "--password-file", pw,
           check=False, timeout=120)
    one_line_error(p, f"--snapshot {fifo}: not a regular file (a FIFO); give a snapshot file of fh record")


def test_a_file_of_the_other_kind_is_sent_where_this_command_can_take_it(tmp_path):
    """"give it as --pcap instead" was said by fh publish, which has no --pcap (and "--itch instead" by fh pcap
    inspect): a command without the other option now says which commands read that kind."""
    line = one_line_error(fh("publish", "--itch", PCAP, "--name", "fhbad", check=False))
    assert "--pcap instead" not in line and "a capture is read by fh replay PCAP" in line
    line = one_line_error(fh("pcap", "inspect", DAY, check=False))
    assert "--itch instead" not in line and "make one of a daily file with fh pcap synth OUT.pcap --itch FILE" in line
    one_line_error(fh("decode", "--itch", PCAP, check=False), "give it as --pcap instead")  # decode has --pcap


def test_an_empty_or_directory_output_name_is_a_usage_error(tmp_path):
    """fh synth itch '' said "open .: Is a directory" (the C writer opened "."), fh pcap synth '' ": No such file"."""
    usage_error(fh("synth", "itch", "", check=False), "out", "an empty file name; give the file to write")
    usage_error(fh("synth", "itch", tmp_path, check=False), "out", f"{tmp_path} is a directory")
    usage_error(fh("pcap", "synth", "", check=False), "OUT", "an empty file name")
    usage_error(fh("pcap", "synth", tmp_path, check=False), "OUT", f"{tmp_path} is a directory")


def test_pcap_synth_refuses_its_input_as_output_and_options_it_would_ignore(tmp_path):
    """fh pcap synth day.itch --itch day.itch overwrote its own input (exit 0); --messages with --itch was ignored
    without a word. Both are one line now, and the day is left as it was."""
    day = tmp_path / "day.itch"
    day.write_bytes(DAY.read_bytes())
    (tmp_path / "link.itch").symlink_to(day)
    for out in (day, tmp_path / "." / "day.itch", tmp_path / "link.itch"):
        one_line_error(fh("pcap", "synth", out, "--itch", day, check=False), f"OUT {out} is the --itch file itself",
                       "give another OUT")
    assert day.read_bytes() == DAY.read_bytes()
    out = tmp_path / "out.pcap"
    one_line_error(fh("pcap", "synth", out, "--itch", day, "--messages", "5", check=False),
                   "--messages describes a generated day", "drop --messages")
    one_line_error(fh("pcap", "synth", out, "--itch", day, "--instruments", "3", "--seed", "2", check=False),
                   "--instruments and --seed describe a generated day", "drop --instruments --seed")
    assert not out.exists()
    assert json.loads(fh("pcap", "synth", out, "--itch", day, "--json").stdout)["messages"] == 100_000
    assert json.loads(fh("pcap", "synth", out, "--messages", "1000", "--json").stdout)["messages"] == 1000


def _cut(src, dst, drop: int):
    data = src.read_bytes()
    dst.write_bytes(data[:len(data) - drop])
    return dst


def test_a_cut_off_input_is_said_on_stderr(tmp_path):
    """A daily file or capture whose last message or record is cut off: what comes before it is used (exit 0),
    and one stderr line says so; a whole file says nothing."""
    itch = _cut(ROOT / "pcaps" / "synth-100k.itch", tmp_path / "cut.itch", 7)
    pcap = _cut(ROOT / "pcaps" / "synth-ab-40k.pcap", tmp_path / "cut.pcap", 301)
    runs = [(["book", "dump", "--itch", itch], "its last message is cut off"),
            (["book", "dump", "--itch", itch, "--engine", "reference"], "its last message is cut off"),
            (["book", "dump", "--pcap", pcap], "its last record is cut off"),
            (["book", "dump", "--pcap", pcap, "--engine", "reference"], "its last record is cut off"),
            (["publish", "--itch", itch, "--name", f"cut{os.getpid()}"], "its last message is cut off"),
            (["publish", "--itch", itch, "--name", f"cut{os.getpid()}", "--pace", "0.001", "--chunk", "200000"],
             "its last message is cut off"),
            (["pcap", "synth", tmp_path / "out.pcap", "--itch", itch], "its last message is cut off")]
    for args, said in runs:
        p = fh(*args)
        lines = [l for l in p.stderr.splitlines() if "truncated" in l]
        path = args[args.index("--itch" if "--itch" in args else "--pcap") + 1]
        assert len(lines) == 1 and said in lines[0] and str(path) in lines[0], (args, p.stderr)
    synth = fh("pcap", "synth", tmp_path / "out.pcap", "--itch", itch, "--json").stdout
    assert json.loads(synth)["messages"] == 99999
    for args in (["book", "dump", "--itch", ROOT / "pcaps" / "synth-100k.itch"],
                 ["book", "dump", "--pcap", ROOT / "pcaps" / "synth-ab-40k.pcap", "--engine", "reference"]):
        assert "truncated" not in fh(*args).stderr


def test_messages_no_line_carried_are_said_by_book_dump(tmp_path):
    """A capture with a gap that no line fills: the books lack its messages, and book dump says how many."""
    plan = tmp_path / "plan.toml"
    plan.write_text('[[fault]]\nline = "both"\nkind = "drop"\nat = 10\ncount = 2\n')
    cap = tmp_path / "gap.pcap"
    fh("pcap", "synth", cap, "--messages", "20000", "--instruments", "20", "--faults", plan)
    for engine in ("c", "reference"):
        p = fh("book", "dump", "--pcap", cap, "--engine", engine)
        lines = [l for l in p.stderr.splitlines() if "messages missing" in l]
        assert len(lines) == 1 and "no line of the capture carried" in lines[0], p.stderr


def test_a_directory_or_fifo_where_a_segment_or_file_goes_is_named(tmp_path):
    """fh stats --name DIR (a directory opens read-only and then fails its read with no name) and a FIFO (whose
    open waited for a writer); fh replay --dump-books DIR (said before the replay, not after it)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, what in ((tmp_path, "is a directory"), (fifo, "is no regular file")):
        p = fh("stats", "--name", path, check=False, timeout=20)
        assert p.returncode == 2 and p.stderr.strip() == (f"fh: {path} {what}, not an fh segment: give an instance "
                                                          "name or a segment's path"), p.stderr
    p = fh("publish", "--itch", ROOT / "pcaps" / "synth-100k.itch", "--segment", tmp_path, check=False, timeout=20)
    assert p.returncode == 2 and p.stderr.strip().startswith(f"fh: --segment {tmp_path}: a directory"), p.stderr
    p = fh("replay", ROOT / "pcaps" / "synth-ab-40k.pcap", "--dump-books", tmp_path, check=False, timeout=20)
    assert p.returncode == 2 and p.stderr.strip() == f"fh: --dump-books {tmp_path}: a directory; give the file to " \
                                                     "write the books to", p.stderr


def test_options_that_do_nothing_with_the_others_given_are_refused():
    p = fh("decode", "--itch", ROOT / "pcaps" / "synth-100k.itch", "--both-lines", check=False)
    assert p.returncode == 2 and p.stderr.strip().startswith("fh: --both-lines: only with --pcap"), p.stderr
    p = fh("replay", ROOT / "pcaps" / "synth-ab-40k.pcap", "--realtime", check=False)
    assert p.returncode == 2 and p.stderr.strip().startswith("fh: --realtime: only with a paced replay"), p.stderr


def test_stats_reads_its_config_first_whatever_the_writer(tmp_path):
    """fh stats --config is read before the segment: once ignored when the writer (fh publish) has no lines."""
    p = fh("stats", "--name", f"nosuch{os.getpid()}", "--config", tmp_path / "none.toml", check=False)
    assert p.returncode == 2 and "none.toml: no such file" in p.stderr, p.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this host")
def test_a_full_device_is_named_and_left_alone():
    """A write that fails (ENOSPC carries no file name) names the output; a device is never removed."""
    p = fh("pcap", "synth", "/dev/full", "--messages", "20000", "--instruments", "10", check=False)
    assert p.returncode == 2 and p.stderr.strip() == ("fh: /dev/full: No space left on device; the device is full; "
                                                      "free space or choose another place"), p.stderr
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


def test_a_day_larger_than_the_room_for_it_is_refused_before_it_is_made(tmp_path):
    """fh synth itch --messages 99999999999999 wrote until the file system was full (70 GB here), and fh soak /
    fh pcap synth said "out of memory for a 3100000000005465-byte buffer": now the size is weighed against the free
    space or the available memory first, and the error names a count that fits."""
    out = tmp_path / "day.itch"
    line = one_line_error(fh("synth", "itch", out, "--messages", "99999999999999", check=False),
                          f"fh: a day of 99,999,999,999,999 messages takes about ", f"; {tmp_path} has ",
                          " free: give fewer --messages (about ", " fit) or write it on a larger file system")
    fit = int(line.split("(about ")[1].split()[0].replace(",", ""))
    assert fit > 0 and not out.exists()
    for cmd in (["soak", "--loops", "1"], ["pcap", "synth", tmp_path / "day.pcap"]):
        one_line_error(fh(*cmd, "--messages", "99999999999999", check=False),
                       "fh: a day of 99,999,999,999,999 messages takes about ", " (2 copies of it while it is made); "
                       "this host has ", " of memory available: give fewer --messages (about ")
    assert not (tmp_path / "day.pcap").exists()
    fh("synth", "itch", out, "--messages", "1000", "--instruments", "10")  # a day that fits is made as before
    assert out.stat().st_size > 1000 * 20
    # a file system with no blocks at all (/proc) is not one that is full: its own error, not "0 B free"
    p = fh("synth", "itch", "/proc/fh-x.itch", "--messages", "1000", "--instruments", "10", check=False)
    assert p.returncode == 2 and "/proc/fh-x.itch" in p.stderr and "free" not in p.stderr, p.stderr


@pytest.mark.parametrize("args, option", [
    (["book", "dump", "--itch", ""], "--itch"), (["book", "dump", "--journal", ""], "--journal"),
    (["book", "dump", "--pcap", ""], "--pcap"), (["decode", "--itch", ""], "--itch"),
    (["decode", "--journal", ""], "--journal"), (["history", "--itch", "", "--out", "OUT"], "--itch"),
    (["history", "--follow", "", "--out", "OUT"], "--follow"),
    (["history", "--journal", "", "--out", "OUT"], "--journal"),
    (["publish", "--itch", ""], "--itch"), (["record", "--journal", "", "--dir", "OUT"], "--journal"),
    (["snapshot-server", "--itch", ""], "--itch"), (["retransmit-server", "--pcap", ""], "--pcap"),
    (["pcap", "synth", "OUT", "--itch", ""], "--itch"), (["bench", "engine", "--itch", ""], "--itch"),
    (["bench", "latency", "--pcap", ""], "--pcap"), (["bench", "engine", "--plot", ""], "--plot"),
    (["run", "--config", ""], "--config"), (["check", "--config", ""], "--config"),
    (["plan", "--config", ""], "--config"),
    (["ports", "--config", ""], "--config"), (["stats", "--config", ""], "--config"),
    (["metrics", "--once", "--config", ""], "--config"), (["metrics", "--once", "--textfile", ""], "--textfile"),
    (["gateway", "--config", ""], "--config"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_an_empty_path_is_a_usage_error(args, option, tmp_path):
    """--itch "" was taken for no --itch: fh book dump, fh decode and fh history fell through to another source with
    None (a traceback), fh bench latency --pcap "" and fh bench --plot "" ran the benchmark without them, and
    --config "" read no configuration (fh run: "fh: : cannot read it (Is a directory)")."""
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    usage_error(fh(*args, check=False, timeout=60), option, "an empty ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, option", [
    (["soak", "--messages", "99999999999999999999999"], "--messages"),
    (["bench", "engine", "--messages", "99999999999999999999999"], "--messages"),
    (["bench", "engine", "--seed", "99999999999999999999999"], "--seed"),
    (["bench", "dataplane", "--seed", "99999999999999999999999"], "--seed"),
    (["bench", "latency", "--messages", "99999999999999999999999"], "--messages"),
])
def test_a_day_beyond_64_bits_is_a_usage_error(args, option):
    """The bench commands' and fh soak's --messages / --seed beyond a uint64_t were cffi's OverflowError (exit 70)."""
    usage_error(fh(*args, check=False), option, "expected a number from ", " to 18446744073709551615")


def test_the_synth_day_config_refuses_what_its_fields_cannot_hold():
    from handler import native
    from handler.errors import InputError

    for kw, want in (({"messages": 1 << 64}, "messages 18446744073709551616 is out of range"),
                     ({"seed": -1}, "seed -1 is out of range"),
                     ({"anomaly_ppm": 1 << 32}, "anomaly_ppm 4294967296 is out of range (at most 4294967295)")):
        with pytest.raises(InputError, match=re.escape(want)):
            native._synth_cfg(**{"messages": 1000, "instruments": 3, "seed": 1, "anomaly_ppm": 0, **kw})


@pytest.mark.parametrize("args, option, want", [
    (["bench", "engine", "--cpu", "-1"], "--cpu", "expected a number >= 0, got -1"),
    (["bench", "engine", "--cpu", "99999999999999999999999"], "--cpu", "is not an online CPU of this host ("),
    (["bench", "dataplane", "--cpu", str(os.cpu_count())], "--cpu", f"CPU {os.cpu_count()} is not an online CPU"),
    (["bench", "latency", "--sender-cpu", "-1"], "--sender-cpu", ">= 0"),
    (["bench", "dataplane", "--mtu", "99999999999999999999999"], "--mtu", "from 128 to 9216"),
    (["bench", "latency", "--mtu", "100"], "--mtu", ">= 128"),
])
def test_bench_cpus_and_mtus_out_of_range_are_usage_errors(args, option, want):
    """fh bench engine --cpu -1 was sched_setaffinity's ValueError, a CPU past the host's an OverflowError, and
    fh bench dataplane --mtu 10^23 an OverflowError: tracebacks (exit 70)."""
    usage_error(fh(*args, check=False), option, want)


def test_a_bench_command_takes_sigterm_as_ctrl_c():
    """fh bench latency stopped by SIGTERM left its network namespace and its segment behind: the bench commands now
    take SIGTERM as ^C while they run (their finally blocks take the lab down), and put the old handler back."""
    import signal
    import threading

    from handler.process import sigterm_as_interrupt

    if threading.current_thread() is not threading.main_thread():  # (a SIGTERM would end the test process)
        pytest.skip("signal handlers are set only in the main thread, and this test runs in another")
    seen = []

    def cmd(a):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            seen.append(a)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        sigterm_as_interrupt(cmd)("args")
    assert seen == ["args"] and signal.getsignal(signal.SIGTERM) is before
