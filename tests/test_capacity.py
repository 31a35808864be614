"""An engine table that fills up (orders, price levels, instruments) is said, one line each, with what was skipped,
that the books concerned are incomplete, and the fix: by fh run's (and fh replay's) summary and by fh publish. The
counters themselves are docs/book-semantics.md's."""

from __future__ import annotations

import re

import pytest

from conftest import AB_PCAP, ROOT, fh, run_config
from handler import process

AB_ITCH = ROOT / "pcaps" / "synth-100k.itch"  # the bundled day


def test_capacity_lines():
    fixes = process.CAPACITY_FIX_CONFIG
    assert process.capacity_lines({"level_capacity": 0, "unknown_ref": 5}, fixes) == []
    lines = process.capacity_lines({"order_capacity": 3, "level_capacity": 43_308, "instrument_capacity": 1}, fixes)
    assert lines == [
        "capacity: 3 adds skipped (order_capacity): the order table was full, so the books they were for lack "
        "them (marked stale); raise shm.max_orders (--max-orders)",
        "capacity: 43,308 adds skipped (level_capacity): the price-level memory was full, so the books they were for "
        "lack them (marked stale); raise shm.max_levels (--max-levels)",
        "capacity: 1 messages of new instruments skipped (instrument_capacity): the book table was full, so no book "
        "was made for them; the feed names more instruments than a segment holds (65,535)"]


@pytest.mark.dpdk
def test_run_says_when_the_levels_ran_out(tmp_path, run_dir, instance_name):
    cfg = tmp_path / "fh.toml"
    cfg.write_text(run_config(instance_name, AB_PCAP, extra="[shm]\nmax_levels = 8\n"))
    p = fh("run", "--config", cfg, timeout=120)
    m = re.search(r"^capacity: ([\d,]+) adds skipped \(level_capacity\): the price-level memory was full, so the "
                  r"books they were for lack them \(marked stale\); raise shm.max_levels \(--max-levels\)$", p.stdout,
                  re.M)
    assert m, p.stdout
    assert int(m[1].replace(",", "")) > 0
    ok = tmp_path / "ok.toml"
    ok.write_text(run_config(instance_name, AB_PCAP))
    assert "capacity:" not in fh("run", "--config", ok, timeout=120).stdout


def test_publish_says_when_the_levels_ran_out(tmp_path):
    """...and the books that lost an add are stale and flagged incomplete in the segment (they were called live),
    the others live."""
    seg = tmp_path / "fh-cap"
    try:
        _publish_and_read(seg)
    finally:
        process.remove_segment(str(seg))  # and its wake page in /dev/shm
    p = fh("publish", "--itch", AB_ITCH, "--segment", tmp_path / "fh-ok")
    assert "capacity:" not in p.stderr


def _publish_and_read(seg):
    from handler.shm import Reader

    p = fh("publish", "--itch", AB_ITCH, "--segment", seg, "--max-levels", "8", "--keep")
    assert re.search(r"^fh publish: capacity: [\d,]+ adds skipped \(level_capacity\): the price-level memory was full, "
                     r"so the books they were for lack them \(marked stale\); raise --max-levels$", p.stderr,
                     re.M), p.stderr
    r = Reader(str(seg))
    try:
        books = [r.book(int(loc)) for loc in r.locates()]
    finally:
        r.close()
    hit = [b for b in books if b["incomplete"]]
    assert hit and all(b["status"] == "stale" for b in hit)
    assert all(b["status"] == "live" for b in books if not b["incomplete"])
    assert "stale (incomplete: the writer ran out of room for it)" in fh("book", hit[0]["symbol"], "--name",
                                                                           seg).stdout

