"""The user surface's last items (issue 17): progress on a long `fh pcap synth`, counts that are true (messages
applied include those held back and released later; durations with units in fh run / replay / verify) and
`--json` on every command that prints a table. Real commands: net_pcap replays of a capture with losses filled by
the other line and lost on both, `fh run` from a configuration, the parser itself."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import re
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, fh, run_config
from test_cli_17a import _on_a_terminal

# A day of 200,000 messages (about 4,255 datagrams), then: datagrams 100-104 lost on A (B carries them first);
# 200-202 lost on A and 20 s late on B, so that A's next datagrams come first: a gap whose messages are held
# back until B fills it; 400-401 lost on both lines: held back behind it until given up (no retransmission server).
PLAN = """
[[fault]]
line = "A"
kind = "drop"
at = 100
count = 5

[[fault]]
line = "A"
kind = "drop"
at = 200
count = 3

[[fault]]
line = "B"
kind = "delay"
at = 200
count = 3
delay_us = 20000000

[[fault]]
line = "both"
kind = "drop"
at = 400
count = 2
"""
MESSAGES = 200_000
DURATION = r"[\d.,]+ (ns|µs|ms|s)|\d+ min \d\d s|\d+ h \d\d min"  # ui.fmt_seconds


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("faulty")
    plan = d / "plan.toml"
    plan.write_text(PLAN)
    pcap = d / "faulty.pcap"
    inj = json.loads(fh("pcap", "synth", pcap, "--messages", MESSAGES, "--instruments", 50, "--faults", plan,
                        "--json").stdout)
    return pcap, inj


# ---- 1. progress on a long fh pcap synth -------------------------------------------------------------------------


def test_pcap_synth_progress_on_a_terminal_only(tmp_path):
    out = tmp_path / "day.pcap"
    rc, seen = _on_a_terminal("pcap", "synth", str(out), "--messages", "300000", "--instruments", "50")
    assert rc == 0, seen[-500:]
    for stage in (b"generating a day of 300,000 messages", b"packing the day into datagrams",
                  b"writing day.pcap (frames)"):
        assert stage in seen, (stage, seen[-500:])
    frames = json.loads(fh("pcap", "inspect", out, "--json").stdout)["frames"]
    assert f"{frames}/{frames}".encode() in seen  # the writing bar reached the frames the file holds
    assert b"300,000 messages in " in seen  # the summary after the bar
    # not a terminal: no bar, no control characters, the same file
    again = tmp_path / "again.pcap"
    p = fh("pcap", "synth", again, "--messages", "300000", "--instruments", "50")
    assert "\x1b" not in p.stderr and "packing" not in p.stderr and "writing" not in p.stderr
    assert again.read_bytes() == out.read_bytes()


# ---- 2. counts that are true, durations with units ---------------------------------------------------------------


@pytest.mark.dpdk
def test_messages_applied_include_the_held_ones(faulty):
    pcap, inj = faulty
    lost = sum(r["messages"] for r in inj["faults"]["lost_on_all_lines"])
    assert lost > 0
    p = fh("verify", pcap, "--json", check=False)  # STALE (exit 1): the loss on both lines was given up
    d = json.loads(p.stdout)
    s, ref = d["stats"], d["reference"]
    assert p.returncode == 1 and d["verdict"] == "STALE" and d["differences"] == []
    mold = s["mold"]
    assert mold["held"] > 0 and mold["recovered_lines"] > 0 and mold["lost"] == lost  # held, filled, given up
    # one count wherever it is read: the data plane's, the sequencer's, the engine's, the latency histogram's,
    # and the reference model's for the same datagrams
    assert (s["messages_applied"] == mold["applied"] == s["engine"]["messages"] == s["latency_ns"]["count"]
            == ref["applied"] == MESSAGES - lost)
    text = fh("replay", pcap).stdout
    first = text.splitlines()[0]
    assert re.fullmatch(rf"packets [\d,]+ \([\d,]+ at the NIC, 0 missed\), messages applied {MESSAGES - lost:,} "
                        rf"\([\d,]+ of them held back until a gap was filled or given up\) in ({DURATION})", first), first
    a, b = s["lines"]  # named as fh stats and fh status name them (no configuration: A, B)
    assert (f"; lines: A live won {a['won']:,} lost {a['lost']:,}, B live won {b['won']:,} lost {b['lost']:,}\n"
            in text), text


@pytest.mark.dpdk
def test_run_summary_has_its_duration_and_line_names(faulty, tmp_path, run_dir, instance_name):
    pcap, inj = faulty
    lost = sum(r["messages"] for r in inj["faults"]["lost_on_all_lines"])
    cfg = tmp_path / "fh.toml"
    cfg.write_text(run_config(instance_name, pcap, lines=("nasdaq-a", "nasdaq-b")))
    p = fh("run", "--config", cfg, timeout=120)
    first = p.stdout.splitlines()[0]
    assert " in 0 s" not in p.stdout
    assert re.fullmatch(rf"packets [\d,]+ .*, messages applied {MESSAGES - lost:,} \(.* held back .*\) "
                        rf"in ({DURATION})", first), first
    assert "lines: nasdaq-a live won " in p.stdout and ", nasdaq-b live won " in p.stdout
    d = json.loads(fh("run", "--config", cfg, "--json", timeout=120).stdout)
    assert d["messages_applied"] == d["engine"]["messages"] == d["latency_ns"]["count"] == MESSAGES - lost
    assert 0 < d["wall_s"] < 120


def test_durations_are_printed_with_units():
    from handler import process

    stats = {"packets": 10, "nic": {"ipackets": 10, "imissed": 0}, "messages_applied": 1234, "drops": {},
             "latency_ns": {"p50": 900, "p99": 12_400, "p99.9": 3_100_000, "max": 4_000_000, "count": 1234},
             "mold": {"datagrams": 10, "duplicates": 0, "gaps": 0, "gap_messages": 0, "heartbeats": 0,
                      "end_of_session": 1, "held": 0}}
    for wall, text in ((0.0004, "400 µs"), (0.042, "42.00 ms"), (3.5, "3.50 s"), (125, "2 min 05 s")):
        first = process.summary_lines({**stats, "wall_s": wall})[0]
        assert first.endswith(f"messages applied 1,234 in {text}"), first
    assert process.summary_lines(stats)[0].endswith("messages applied 1,234")  # no duration known: none said


# ---- 3. --json wherever there is a table -------------------------------------------------------------------------

# Commands without a table, and so without --json, each with what it prints instead
NO_TABLE = {
    ("synth", "itch"): "one summary line on stderr",
    ("book", "dump"): "JSON Lines already (the canonical book dump)",
    ("publish",): "progress lines on stderr",
    ("retransmit-server",): "a few lines on stderr; --stats-json FILE writes its counters",
    ("stop",): "one line",
    ("reload",): "one line",
    ("metrics",): "the Prometheus text format",
    ("soak",): "JSON Lines already (one record a loop, then a summary)",
    ("witness",): "a server: lines on stderr, its counts in one JSON line at SIGTERM",
}


def _commands(parser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    seen = set()
    for name, child in subs[0].choices.items():
        if id(child) not in seen:
            seen.add(id(child))
            yield from _commands(child, path + (name,))


def _table_printers():
    from handler import ui
    from handler.history import query

    return {ui.print_table, query.render}


def _reaches(fn, targets, seen=None, depth=6) -> bool:
    """Whether `fn` calls one of `targets`, directly or through functions of handler/ it calls (names resolved
    through its module's globals and the imports inside it): what a command prints tables through."""
    seen = set() if seen is None else seen
    if fn in targets:
        return True
    if depth == 0 or id(fn) in seen or not inspect.isfunction(fn) or not fn.__module__.startswith("handler"):
        return False
    seen.add(id(fn))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    names = dict(fn.__globals__)
    pkg = fn.__module__.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), pkg) if node.level else node.module
            for al in node.names:
                try:
                    names[al.asname or al.name] = importlib.import_module(f"{base}.{al.name}")
                except ImportError:
                    names[al.asname or al.name] = getattr(importlib.import_module(base), al.name, None)
        elif isinstance(node, ast.Import):
            for al in node.names:
                names[al.asname or al.name.split(".")[0]] = importlib.import_module(al.name.split(".")[0])
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name):
            target = names.get(f.id)
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            target = getattr(names.get(f.value.id), f.attr, None)
        else:
            continue
        if target is not None and _reaches(target, targets, seen, depth - 1):
            return True
    return False


def test_the_table_finder_finds_tables():
    from handler.cli import dataplane, host, main, ops

    printers = _table_printers()
    for fn in (ops.cmd_status, dataplane.cmd_pcap_inspect, host.cmd_check, main.cmd_stats, main.cmd_top):
        assert _reaches(fn, printers), fn.__name__
    for fn in (main.cmd_synth_itch, ops.cmd_stop):
        assert not _reaches(fn, printers), fn.__name__


def test_every_command_with_a_table_offers_json():
    from handler.cli.main import build_parser

    printers = _table_printers()
    commands = dict(_commands(build_parser()))
    assert set(NO_TABLE) <= set(commands), set(NO_TABLE) - set(commands)
    for path, parser in commands.items():
        opts = {o for a in parser._actions for o in a.option_strings}
        func = parser.get_default("func")
        if path in NO_TABLE:
            assert "--json" not in opts or path == ("book", "dump")
            assert not _reaches(func, printers), f"fh {' '.join(path)} prints a table: it needs --json"
            continue
        assert "--json" in opts, f"fh {' '.join(path)} has no --json"
        # the one way to offer it, naming the section of docs/cli.md that documents its schema
        (act,) = [a for a in parser._actions if "--json" in a.option_strings]
        section = re.search(r"schema: docs/cli.md, '([^']+)'", act.help)
        assert section, act.help
        heads = [l for l in (ROOT / "docs" / "cli.md").read_text().splitlines() if l.startswith("## ")]
        assert any(section.group(1) in h for h in heads), f"docs/cli.md has no section {section.group(1)!r}"


def test_events_json_lines(tmp_path):
    from conftest import publisher

    with publisher(ROOT / "pcaps" / "synth-100k.itch") as (name, _):
        p = fh("events", "--name", name, "--count", "5", "--json")
        text = fh("events", "--name", name, "--count", "5").stdout.splitlines()
    docs = [json.loads(l) for l in p.stdout.splitlines()]
    assert len(docs) == len(text) == 5  # compact JSON Lines, as ui.print_json(lines=True) writes them
    assert p.stdout.splitlines() == [json.dumps(d, separators=(",", ":")) for d in docs]
    assert [d["seq"] for d in docs] == [int(t.split()[0]) for t in text]


def test_query_json_is_its_json_format(tmp_path):
    root = tmp_path / "history"
    built = json.loads(fh("history", "--itch", ROOT / "pcaps" / "synth-100k.itch", "--date", "2026-03-02",
                          "--out", root, "--json").stdout)
    assert built["rows"]["trades"] > 0
    as_format = fh("query", "vwap", "--root", root, "--format", "json").stdout
    assert fh("query", "vwap", "--root", root, "--json").stdout == as_format
    rows = [json.loads(l) for l in as_format.splitlines()]
    assert sum(r["trades"] for r in rows) == built["rows"]["trades"]
    for args in (("--json", "SELECT count(*) AS n FROM trades", "--root", root),
                 ("SELECT count(*) AS n FROM trades", "--root", root, "--json")):
        assert json.loads(fh("query", *args).stdout) == {"n": built["rows"]["trades"]}
