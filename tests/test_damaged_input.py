"""Messages that are not ITCH 5.0 as framed (a damaged or foreign file) are said, one stderr line with the counts,
by fh book dump (either engine) and fh publish: a garbled daily file said only "truncated" (or nothing), with the
counts only under --stats."""

from __future__ import annotations

import random
import re

import pytest

from conftest import ROOT, fh

DAY = ROOT / "pcaps" / "synth-100k.itch"
LINE = re.compile(r"^fh (book dump|publish): (\S+): ([\d,]+) malformed messages \((.*)\): skipped, a long one applied "
                  r"by its known fields \(docs/book-semantics.md\); the input may be damaged or not ITCH 5.0, and the "
                  r"books may be wrong: --stats gives every counter$", re.M)


@pytest.fixture(scope="module")
def garbled(tmp_path_factory):
    data = bytearray(DAY.read_bytes())
    rng = random.Random(7)
    for i in rng.sample(range(len(data)), 2000):
        data[i] ^= 0xFF
    path = tmp_path_factory.mktemp("garbled") / "g.itch"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("engine", ["c", "reference"])
def test_book_dump_says_malformed_messages(garbled, engine):
    p = fh("book", "dump", "--itch", garbled, "--engine", engine, "--stats")
    m = LINE.search(p.stderr)
    assert m and m[2] == str(garbled), p.stderr
    counts = dict(kv.split() for kv in m[4].split(", "))
    stats = dict(kv.split("=") for kv in p.stderr.split("counters: ", 1)[1].splitlines()[0].split(", "))
    assert {k: int(v.replace(",", "")) for k, v in counts.items()} == {k: int(stats[k]) for k in counts}
    assert int(m[3].replace(",", "")) == sum(int(v.replace(",", "")) for v in counts.values()) > 0
    assert "malformed" not in fh("book", "dump", "--itch", DAY, "--engine", engine).stderr


def test_publish_says_malformed_messages(garbled, tmp_path):
    p = fh("publish", "--itch", garbled, "--segment", tmp_path / "fh-g")
    assert LINE.search(p.stderr), p.stderr


PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"


@pytest.mark.parametrize("kind", ["itch", "pcap"])
def test_history_says_a_cut_off_file(tmp_path, kind):
    """fh history of a daily file or capture cut off: the summary and then one line saying what was lost (it said
    nothing: truncated_bytes was in --json's counters only)."""
    src = DAY if kind == "itch" else PCAP
    cut = tmp_path / f"t.{kind}"
    cut.write_bytes(src.read_bytes()[:1_000_001])
    p = fh("history", f"--{kind}", cut, "--out", tmp_path / "h", "--date", "2025-12-04")
    last = p.stderr.strip().splitlines()[-1]
    if kind == "itch":
        assert re.fullmatch(rf"fh history: {cut}: truncated: its last message is cut off \([\d,]+ bytes after the "
                            r"last whole one\); the history holds the messages before it", last), p.stderr
    else:
        assert re.fullmatch(rf"fh history: {cut}: truncated: its last record is cut off \(after [\d,]+ whole frames\); "
                            r"the history holds the frames before it", last), p.stderr
    p = fh("history", f"--{kind}", src, "--out", tmp_path / "whole", "--date", "2025-12-04")
    assert len(p.stderr.strip().splitlines()) == 1 and "truncated" not in p.stderr


def test_history_says_malformed_messages(garbled, tmp_path):
    p = fh("history", "--itch", garbled, "--out", tmp_path / "h", "--date", "2025-12-04")
    assert re.search(rf"^fh history: {garbled}: [\d,]+ malformed messages \(.*\): .*its tables may be wrong", p.stderr,
                     re.M), p.stderr


def _first_lines(args: list, until: str, env: dict | None = None) -> list[str]:
    """The stderr lines a server prints up to the one containing `until` (it then serves: stopped here)."""
    import subprocess

    from conftest import fh_popen, stop_process

    p = fh_popen(*args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in p.stderr:
            lines.append(line.rstrip("\n"))
            if until in line or len(lines) > 20:
                break
    finally:
        stop_process(p)
    return lines


@pytest.mark.parametrize("server", ["retransmit", "snapshot-pcap", "snapshot-itch"])
def test_servers_say_a_cut_off_source(tmp_path, server):
    """fh retransmit-server and fh snapshot-server of a cut-off capture or daily file say so before they serve (they
    said nothing: requests past the cut were answered as beyond the session's end)."""
    kind = "itch" if server == "snapshot-itch" else "pcap"
    cut = tmp_path / f"t.{kind}"
    cut.write_bytes((DAY if kind == "itch" else PCAP).read_bytes()[:1_000_001])
    if server == "retransmit":
        args, until, name = ["retransmit-server", "--pcap", cut, "--listen", "127.0.0.1:0"], "listening", server
    else:
        args, until, name = (["snapshot-server", f"--{kind}", cut, "--user", "u", "--listen", "127.0.0.1:0"], "serving",
                             "snapshot")
    lines = _first_lines(args, until, {"FH_SNAPSHOT_PASSWORD": "x"})
    said = [l for l in lines if "truncated" in l]
    assert len(said) == 1 and said[0].startswith(f"fh {name}-server: {cut}: truncated: its last "), lines
    assert until in lines[-1], lines
