"""bench/book_repeats.py (bench/engine.md section 30): the share of book-changing messages whose book comes again later
in the same window, counted on days whose answer is known, and on a generated day by the command."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys

from conftest import ROOT
from handler import native

SCRIPT = ROOT / "bench" / "book_repeats.py"
spec = importlib.util.spec_from_file_location("book_repeats", SCRIPT)
br = importlib.util.module_from_spec(spec)
spec.loader.exec_module(br)


def _day(tmp_path, kinds_locates) -> str:
    out = bytearray()
    for t, loc in kinds_locates:
        m = bytes([ord(t)]) + struct.pack(">H", loc) + bytes(16)  # any length: only type and locate are read
        out += struct.pack(">H", len(m)) + m
    p = tmp_path / "day.itch"
    p.write_bytes(bytes(out))
    return str(p)


def test_repeats_counted_per_window(tmp_path):
    # book-changing messages on books 1 1 2 3 | 4 4 4 5; S and P (not book-changing) are skipped wherever they fall
    day = _day(tmp_path, [("S", 0), ("A", 1), ("D", 1), ("P", 1), ("X", 2), ("U", 3), ("E", 4), ("C", 4), ("F", 4),
                          ("A", 5), ("A", 6)])
    loc = br.locates(day)
    assert loc.tolist() == [1, 1, 2, 3, 4, 4, 4, 5, 6]
    assert br.repeat_share(loc, 4) == 3 / 8  # the last window (6 alone) is not whole: left out
    assert br.repeat_share(loc, 1) == 0.0
    assert br.repeat_share(loc, 9) == 3 / 9
    assert br.repeat_share(loc, 10) == 0.0  # no whole window


def test_cut_off_last_message_ignored(tmp_path):
    day = _day(tmp_path, [("A", 1), ("A", 1)])
    with open(day, "ab") as f:
        f.write(struct.pack(">H", 36) + b"A\x00\x01")  # its 36 bytes never come
    assert br.locates(day).tolist() == [1, 1]


def test_command_on_a_generated_day(tmp_path):
    day = tmp_path / "d.itch"
    day.write_bytes(native.synth_bytes(20_000, 3, 1))
    p = subprocess.run([sys.executable, str(SCRIPT), str(day), "--windows", "1,32"], capture_output=True, text=True,
                       check=True)
    head, row = p.stdout.strip().splitlines()
    assert head.split("\t")[-2:] == ["W=1", "W=32"]
    cells = row.split("\t")
    assert cells[0] == str(day) and int(cells[2]) == 3 and cells[3] == "0.0 %"
    assert float(cells[4].rstrip(" %")) > 80  # three books: nearly every message shares its window's book
