"""The user surface of fh's own commands (issue 17, first half): `fh --version`, `fh` alone, help with defaults
and examples, `fh decode`'s filters and A/B de-duplication, pictures (book depth bars, the latency histogram),
tables and --json, `fh status --all`, line names from the configuration, and status/stop/metrics telling a user
who cannot read an instance's files so instead of a false state. Real commands on the bundled pcaps and days."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import pwd
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, fh, fh_popen, publisher, run_config, why_no_dataplane

PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"  # 40,000 messages, each on an A and a B line
DAY = ROOT / "pcaps" / "synth-100k.itch"

# the commands this half owns: every option has help (with its default) and every command examples
OWN = [("synth", "itch"), ("book", "dump"), ("book", "show"), ("top",), ("events",), ("stats",), ("decode",),
       ("publish",), ("run",), ("bench", "engine"), ("status",), ("stop",), ("metrics",)]


def _parser(path: tuple[str, ...]):
    import argparse

    from handler.cli.main import build_parser

    p = build_parser()
    for word in path:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[word]
    return p


# ---- fh --version, fh alone, help ---------------------------------------------------------------------------


def test_version_names_the_build():
    import handler
    from handler._native import lib

    p = fh("--version")
    lines = p.stdout.splitlines()
    assert re.fullmatch(rf"fh {re.escape(handler.__version__)} \(git \S+\)", lines[0]), lines[0]
    assert lines[2] == f"segment layout {int(lib.FH_SHM_LAYOUT_VERSION)}, journal layout 1"
    if why_no_dataplane() is None:  # built with DPDK: the version meson found, as pkg-config says
        want = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True, text=True).stdout.strip()
        assert lines[1] == f"DPDK {want}"
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--tags", "--always"], capture_output=True, text=True)
    if git.returncode == 0:  # built from this checkout: its commit
        assert lines[0].split("(git ")[1].startswith(git.stdout.strip())


def test_fh_alone_prints_the_command_list():
    import argparse

    from handler.cli.main import build_parser

    p = fh()
    assert p.returncode == 0 and p.stdout.startswith("usage: fh ") and p.stderr == ""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = re.findall(r"^    (\S+)", p.stdout, re.M)
    assert set(sub.choices) <= set(listed)
    assert "examples:\n  fh synth itch" in p.stdout
    bad = fh("nosuchcommand", check=False)  # an error stays argparse's usage error, exit 2
    assert bad.returncode == 2 and "invalid choice: 'nosuchcommand'" in bad.stderr


@pytest.mark.parametrize("path", OWN, ids=lambda p: " ".join(p))
def test_every_option_has_help_with_its_default_and_every_command_examples(path):
    p = _parser(path)
    text = p.format_help()
    assert p.epilog and p.epilog.startswith("examples:\n"), path
    examples = p.epilog.splitlines()[1:]
    assert examples and all(l.startswith("  fh ") for l in examples)
    assert all(l in text for l in examples)  # printed as written, not re-wrapped
    for a in p._actions:
        if a.dest == "help":
            continue
        assert a.help, f"fh {' '.join(path)} {a.option_strings or a.dest}: no help"
        if a.option_strings and not any(a.default is x for x in (None, False, True)):
            shown = p._get_formatter()._get_help_string(a)
            assert "default" in shown.lower(), f"fh {' '.join(path)} {a.option_strings}: default {a.default} not shown"


def test_help_shows_defaults_and_examples_as_a_user_sees_them():
    p = fh("synth", "itch", "--help")
    flat = " ".join(p.stdout.split())
    assert "--seed SEED random seed: the same seed, the same day (default: 1)" in flat
    assert "--messages MESSAGES messages in the day, prelude included (default: 1000000)" in flat
    assert "\nexamples:\n  fh synth itch day.itch --messages 1000000 --instruments 100\n" in p.stdout


# ---- fh decode -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoded() -> list[dict]:
    """Every copy of every message of the A/B capture, with the line it came on."""
    p = fh("decode", "--pcap", PCAP, "--json", "--both-lines")
    return [json.loads(l) for l in p.stdout.splitlines()]


def test_decode_prints_each_sequence_once_from_two_lines(decoded):
    assert len(decoded) == 80_000 and {d["line"] for d in decoded} == {"233.54.12.111:26477", "233.49.196.111:26477"}
    p = fh("decode", "--pcap", PCAP, "--json")
    rows = [json.loads(l) for l in p.stdout.splitlines()]
    assert [r["sequence"] for r in rows] == list(range(1, 40_001))
    first = {}
    for d in decoded:  # the first copy of each sequence, in capture order, without its line
        first.setdefault(d["sequence"], {k: v for k, v in d.items() if k != "line"})
    assert rows == [first[s] for s in range(1, 40_001)]
    assert p.stderr == (f"fh decode: {PCAP}: 40,000 messages printed; 40,000 copies from the other line skipped "
                        f"(--both-lines prints them)\n")


def test_decode_filters_match_the_unfiltered_output(decoded):
    rows = [d for d in decoded if d["line"] == "233.54.12.111:26477"]  # A carries every message here
    want = [r for r in rows if r["type"] in ("A", "F", "E")]
    got = [json.loads(l) for l in fh("decode", "--pcap", PCAP, "--json", "--type", "A,F,E").stdout.splitlines()]
    assert got == [{k: v for k, v in r.items() if k != "line"} for r in want] and len(got) > 1000
    sym = next(r for r in rows if r["type"] == "R" and r["stock_locate"] == 11)["stock"]
    got = [json.loads(l) for l in fh("decode", "--pcap", PCAP, "--json", "--symbol", sym.lower()).stdout.splitlines()]
    assert got and {r["stock_locate"] for r in got} == {11} and got[0]["type"] == "R"
    assert len(got) == sum(r["stock_locate"] == 11 for r in rows)
    # a symbol's locate is learnt from its directory message even when the range leaves that message out
    got = [json.loads(l) for l in fh("decode", "--pcap", PCAP, "--json", "--symbol", sym, "--seq",
                                     "30000:").stdout.splitlines()]
    assert got and all(r["stock_locate"] == 11 and r["sequence"] >= 30000 for r in got)
    got = [json.loads(l)["sequence"] for l in fh("decode", "--pcap", PCAP, "--json", "--seq", "1000:1010").stdout
           .splitlines()]
    assert got == list(range(1000, 1011))
    p = fh("decode", "--pcap", PCAP, "--limit", "7")
    assert [int(l.split()[0]) for l in p.stdout.splitlines()] == list(range(1, 8))


def test_decode_text_is_readable(tmp_path):
    day = tmp_path / "day.itch"
    fh("synth", "itch", day, "--messages", "20000", "--instruments", "20")
    js = [json.loads(l) for l in fh("decode", "--itch", day, "--json", "--seq", "5:9").stdout.splitlines()]
    text = fh("decode", "--itch", day, "--seq", "5:9").stdout.splitlines()
    assert len(js) == len(text) == 5
    for n, (j, t) in enumerate(zip(js, text), 5):
        f = t.split()
        assert int(f[0]) == n and f[2] == j["type"] and int(f[4]) == j["stock_locate"]
        s, ns = divmod(j["timestamp"], 10**9)
        assert f[1] == f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{ns:09d}"
    add = next(json.loads(l) for l in fh("decode", "--itch", day, "--json", "--type", "A", "--limit", "1").stdout
               .splitlines())
    line = fh("decode", "--itch", day, "--type", "A", "--limit", "1").stdout
    assert f"price={add['price'] // 10000}.{add['price'] % 10000:04d}" in line and f"shares={add['shares']}" in line


@pytest.mark.parametrize("args, msg", [
    (["--type", "Z"], "argument --type: Z: not an ITCH 5.0 message type"),
    (["--type", "a"], "argument --type: a: not an ITCH 5.0 message type"),
    (["--seq", "9:3"], "argument --seq: '9:3': FROM must be 0 or more and not above TO"),
    (["--seq", "99999999999999999999999:"], "a sequence number is at most 18446744073709551615"),
    (["--seq", "x"], "argument --seq: 'x': expected FROM:TO"),
    (["--symbol", "TOOLONGSYM"], "argument --symbol: 'TOOLONGSYM': an ITCH symbol is 1-8 printable ASCII characters"),
    (["--limit", "0"], "argument --limit: expected a number >= 1, got 0"),
])
def test_decode_refuses_bad_filters(args, msg):
    p = fh("decode", "--pcap", PCAP, *args, check=False)
    assert p.returncode == 2 and msg in p.stderr and p.stdout == ""


def _on_a_terminal(*args: str) -> tuple[int, bytes]:
    """Run fh with stderr on a pseudo-terminal (stdout to /dev/null): what a user at a terminal sees on stderr."""
    try:
        master, slave = pty.openpty()
    except OSError as e:  # a chroot with /dev but not /dev/pts mounted, a container without a pts
        pytest.skip(f"no pseudo-terminal here ({e}): mount devpts on /dev/pts to run this")
    proc = fh_popen(*args, env={"TERM": "xterm", "COLUMNS": "100"}, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return proc.wait(60), seen


def test_progress_on_a_terminal_only(tmp_path):
    rc, seen = _on_a_terminal("decode", "--pcap", str(PCAP))
    assert rc == 0 and b"decoding synth-ab-40k.pcap" in seen
    rc, seen = _on_a_terminal("synth", "itch", str(tmp_path / "d.itch"), "--messages", "3000000")
    assert rc == 0 and b"writing " in seen and b"3,000,000 messages" in seen
    p = fh("decode", "--pcap", PCAP, "--limit", "1")  # not a terminal: no bar, no control characters
    assert "\x1b" not in p.stderr and "decoding" not in p.stderr


def test_synth_itch_reports_in_human_units(tmp_path):
    from handler import native

    out = tmp_path / "d.itch"
    p = fh("synth", "itch", out, "--messages", "50000", "--instruments", "30", "--seed", "3")
    assert out.read_bytes() == native.synth_bytes(50000, 30, 3)
    assert re.fullmatch(rf"{re.escape(str(out))}: 50,000 messages, 30 instruments, seed 3, shape uniform, "
                        rf"[\d.]+ (KiB|MiB) in [\d.]+ (s|ms|µs)\n", p.stderr), p.stderr


# ---- a live segment: book depth bars, top, stats, status --all ----------------------------------------------


@pytest.fixture(scope="module")
def live():
    with publisher(DAY) as (name, proc):
        yield name, proc


def test_book_show_draws_depth_bars(live):
    name, _ = live
    with __import__("handler.shm", fromlist=["Reader"]).Reader(name) as r:
        b = r.book(r.locate_of("MSFT"), 6)
    p = fh("book", "MSFT", "--name", name, "--depth", "6")
    lines = p.stdout.splitlines()
    assert lines[0].startswith("MSFT  locate ") and lines[1].split() == ["bids", "orders", "shares", "bid", "|", "ask",
                                                                          "shares", "orders", "asks"]
    top = max(lv[1] for lv in b["bids"] + b["asks"])
    for i, row in enumerate(lines[2:]):
        left, right = row.split("|")
        lf, rf = left.split(), right.split()
        if i < len(b["bids"]):
            shares, price = b["bids"][i][1], b["bids"][i][0]
            assert lf[-2:] == [f"{shares:,}", f"{price // 10000}.{price % 10000:04d}"]
            assert len(lf[0]) == max(1, round(20 * shares / top)) and set(lf[0]) == {"#"}
        if i < len(b["asks"]):
            shares, price = b["asks"][i][1], b["asks"][i][0]
            assert rf[:2] == [f"{price // 10000}.{price % 10000:04d}", f"{shares:,}"]
            assert len(rf[-1]) == max(1, round(20 * shares / top)) and set(rf[-1]) == {"#"}
    assert len(lines) == 2 + max(len(b["bids"]), len(b["asks"]))
    assert sum(l.count("#" * 20) for l in lines[2:]) >= 1  # the largest level fills the width


def test_top_json_is_the_table(live):
    name, _ = live
    doc = json.loads(fh("top", "--name", name, "--once", "--interval", "0.05", "--count", "4", "--json").stdout)
    text = fh("top", "--name", name, "--once", "--interval", "0.05", "--count", "4").stdout.splitlines()
    assert doc["name"] == name and doc["writer"]["state"] == "running" and len(doc["rows"]) == 4
    assert [r["symbol"] for r in doc["rows"]] == [l.split()[0] for l in text[3:]]
    assert [r["updates"] for r in doc["rows"]] == sorted((r["updates"] for r in doc["rows"]), reverse=True)
    for r, l in zip(doc["rows"], text[3:]):
        assert f"{r['bid'] // 10000}.{r['bid'] % 10000:04d}" in l and f"{r['bid_shares']:,}" in l


def test_status_all_lists_this_instance(live, tmp_path, monkeypatch):
    name, proc = live
    p = fh("status", "--all", "--sample", "0", "--json", check=False)
    docs = {d["name"]: d for d in json.loads(p.stdout)["instances"]}
    assert docs[name]["state"] == "running" and docs[name]["pid"] == proc.pid and docs[name]["messages"] == 100_000
    text = fh("status", "--all", "--sample", "0", check=False).stdout.splitlines()
    assert text[0].split() == ["NAME", "STATE", "PID", "UP", "MESSAGES", "BOOKS", "RATE", "SEGMENT"]
    row = next(l.split() for l in text if l.split()[0] == name)
    assert row[1:3] == ["running", str(proc.pid)] and "100,000" in row and row[-1] == f"/dev/shm/fh-{name}"
    assert p.returncode == max([{"running": 0, "stopped": 1, "unreadable": 4}.get(d["state"], 3)
                                for d in docs.values()])


# ---- as a user who may not read the instance's files -------------------------------------------------------

def _as_nobody(argv: list[str], env: dict | None = None) -> tuple[int, str, str]:
    """fh's main(argv) in a child that has become nobody. (In-process after a fork: this test environment's
    Python and editable build are not readable by nobody, so everything the command imports is imported here
    first, by running it once as root.)"""
    from handler.cli import main as cli

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(["status", *argv[1:]] if argv[0] == "stop" else argv)  # (not fh stop: root would stop it)
        except SystemExit:  # argparse's usage errors
            pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            os.environ.update(env or {})
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = cli.main(argv)
                except SystemExit as e:  # argparse's usage errors
                    rc = e.code
            os.write(w, json.dumps([rc, out.getvalue(), err.getvalue()]).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return tuple(json.loads(data))


def _why_not_as_nobody() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the test reads as nobody what root wrote"
    for a in (ROOT, *ROOT.parents):  # the editable build is checked on import: nobody must reach the checkout
        if not os.stat(a).st_mode & 0o001:
            return (f"the checkout lies inside {a} (mode {os.stat(a).st_mode & 0o777:04o}), which other users cannot "
                    f"enter, so nobody cannot import fh: clone fh where others may read it (e.g. /opt/fh) to run this")
    return None


needs_root = pytest.mark.skipif(_why_not_as_nobody() is not None, reason=str(_why_not_as_nobody()))


@needs_root
def test_unreadable_segment_is_said_not_absent(live):
    name, proc = live
    seg = f"/dev/shm/fh-{name}"
    assert os.stat(seg).st_mode & 0o777 == 0o640 and os.stat(seg).st_uid == 0
    want = (f"fh: cannot read {seg}: permission denied (owner root, group root, mode 0640); run as root or join "
            f"group root (usermod -aG root $USER, then log in again)\n")
    for argv in (["status", "--name", name, "--sample", "0"], ["metrics", "--name", name, "--once"],
                 ["stop", "--name", name]):
        rc, out, err = _as_nobody(argv)
        assert (rc, out, err) == (4, "", want), argv
    assert proc.poll() is None  # fh stop as nobody did not stop it, and did not say it was not running
    rc, out, _ = _as_nobody(["status", "--all", "--sample", "0", "--json"])
    doc = next(d for d in json.loads(out)["instances"] if d["name"] == name)
    assert rc == 4 and doc == {"name": name, "state": "unreadable", "error": want[4:-1]}


@needs_root
def test_an_output_file_nobody_may_write_is_a_usage_error():
    """fh synth itch and fh pcap synth into a directory the user may not write said "fh: open X: Permission denied"
    (from the C writer), with no way out named; a directory that is not there, "No such file or directory"."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="fh17a-"))
    try:
        os.chmod(top, 0o755)
        _nobody_writes_no_output(top)
        hidden = top / "hidden"
        hidden.mkdir(mode=0o700)
        rc, _, err = _as_nobody(["synth", "itch", str(hidden / "d.itch"), "--messages", "1000"])
        assert rc == 2 and f"cannot write {hidden}/d.itch: permission denied" in err, err  # not "no directory"
    finally:
        shutil.rmtree(top)


def _nobody_writes_no_output(tmp_path: Path) -> None:
    for cmd, out in ((["synth", "itch"], tmp_path / "d.itch"), (["pcap", "synth"], tmp_path / "d.pcap")):
        argv = [*cmd, str(out), "--messages", "1000", "--instruments", "4"]
        rc, _, err = _as_nobody(argv)  # (root first, in _as_nobody: so the file is there, root's, 0644)
        assert rc == 2 and err.strip().splitlines()[-1].endswith(
            f"cannot write {out}: permission denied; write it in a directory you may write to, or run as root"), err
        out.unlink()
        rc, _, err = _as_nobody([*cmd, str(tmp_path / "no" / "d"), "--messages", "1000", "--instruments", "4"])
        assert rc == 2 and err.strip().splitlines()[-1].endswith(
            f"cannot write {tmp_path}/no/d: there is no directory {tmp_path}/no; create it first (mkdir -p "
            f"{tmp_path}/no) or give another path"), err
    # no file there (root's run of it fails too: too few messages), so the directory is what nobody may not write
    rc, _, err = _as_nobody(["synth", "itch", str(tmp_path / "d.itch"), "--messages", "1", "--instruments", "4"])
    assert rc == 2 and f"cannot write {tmp_path}/d.itch: permission denied" in err, err
    assert not (tmp_path / "d.itch").exists()


@needs_root
def test_unreadable_run_directory_is_named():
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="fh17a-"))
    try:
        os.chmod(top, 0o755)
        closed = top / "run"
        closed.mkdir(mode=0o700)
        name = f"t17a{uuid.uuid4().hex[:6]}"
        (closed / f"{name}.pid").write_text("1\n")
        rc, out, err = _as_nobody(["status", "--name", name, "--sample", "0"], {"FH_RUN_DIR": str(closed)})
        assert rc == 4 and out == ""
        assert err == (f"fh: cannot read {closed}/{name}.pid (inside {closed}, which this user may not enter): "
                       f"permission denied (owner root, group root, mode 0700); run as root\n")
    finally:
        shutil.rmtree(top)


# ---- the data plane's segment: line names and the latency histogram -----------------------------------------

@pytest.fixture(scope="module")
def dp_segment():
    from handler import process, replay

    if why_no_dataplane():
        pytest.skip(why_no_dataplane())
    name = f"t17a-{uuid.uuid4().hex[:8]}"
    segment = f"/dev/shm/fh-{name}"
    js = process.run_dataplane(replay.eal_args(name, f"net_pcap0,rx_pcap={PCAP}"), segment,
                               replay.pcap_lines(PCAP), keep=True)
    try:
        yield name, segment, js
    finally:
        process.remove_segment(segment)


@pytest.mark.dpdk
def test_stats_names_lines_as_the_configuration(dp_segment, tmp_path):
    name, segment, js = dp_segment
    cfg = tmp_path / "fh.toml"
    cfg.write_text(run_config(name, PCAP, lines=("east", "west")))
    doc = json.loads(fh("stats", "--name", segment, "--config", cfg, "--json").stdout)
    assert [(l["name"], l["won"]) for l in doc["dataplane"]["lines"]] == [("east", 40_000), ("west", 0)]
    doc = json.loads(fh("stats", "--name", segment, "--json").stdout)  # no configuration: A, B as fh metrics says
    assert [l["name"] for l in doc["dataplane"]["lines"]] == ["A", "B"]
    text = fh("stats", "--name", segment, "--config", cfg).stdout
    rows = {l.split()[0]: l.split() for l in text.splitlines() if l.split()}
    assert rows["east"][1:4] == ["feed", rows["east"][2], f"{js['lines'][0]['datagrams']:,}"]
    assert rows["west"][5] == "0" and rows["east"][5] == "40,000"
    lat = re.search(r"^latency   rx->publish of ([\d,]+) messages: p50 (\S+ \S+)  p99 (\S+ \S+)", text, re.M)
    assert lat and lat.group(1) == "40,000" and lat.group(2).endswith(("ns", "µs", "ms"))
    p = fh("stats", "--name", segment, "--config", tmp_path / "none.toml", check=False)  # said, whatever the writer
    assert p.returncode == 2 and "none.toml: no such file" in p.stderr


@pytest.mark.dpdk
def test_stats_latency_draws_the_histogram(dp_segment):
    from handler import shm
    from handler.ui import fmt_ns

    name, segment, js = dp_segment
    doc = json.loads(fh("stats", "--name", segment, "--latency", "--json").stdout)
    assert doc["count"] == 40_000 == sum(c for _, _, c in doc["buckets"])
    assert all(shm.lat_lower_ns(0) <= lo <= hi for lo, hi, _ in doc["buckets"])
    assert 0 < doc["p50"] <= doc["p99"] <= doc["p99.9"] <= doc["max"]
    lines = fh("stats", "--name", segment, "--latency").stdout.splitlines()
    assert lines[1] == "rx->publish latency of 40,000 messages"
    assert lines[-1] == (f"p50 {fmt_ns(doc['p50'])}  p99 {fmt_ns(doc['p99'])}  p99.9 {fmt_ns(doc['p99.9'])}  "
                         f"max {fmt_ns(doc['max'])}")
    body = lines[3:-1]
    counts = [int(re.search(r"\s([\d,]+)\s+[\d.]+%", l).group(1).replace(",", "")) for l in body]
    assert sum(counts) == 40_000 and len(body) <= 24
    assert max(counts) == counts[[l.count("#") for l in body].index(40)]  # the fullest bucket has the full bar
    marked = " ".join(l for l in body if l.rstrip().endswith(("p50", "p99", "p99.9", "max")))
    assert all(q in marked.split() for q in ("p50", "p99", "p99.9", "max"))


def test_stats_latency_of_a_writer_without_a_data_plane(live):
    name, proc = live
    p = fh("stats", "--name", name, "--latency", check=False)
    assert p.returncode == 2 and f"no rx->publish latency: its writer (pid {proc.pid}) is not a data plane" in p.stderr
