"""handler.ui: the units and table shapes every command prints through."""
import io
import json

import numpy as np
import pytest

from handler import ui

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ns,text", [(0, "0 ns"), (850, "850 ns"), (12_400, "12.4 µs"), (123_456, "123 µs"),
                                     (3_100_000, "3.10 ms"), (250_000_000, "250 ms"), (2_350_000_000, "2.35 s"),
                                     (None, "-")])
def test_fmt_ns(ns, text):
    assert ui.fmt_ns(ns) == text


def test_counts_rates_bytes():
    assert ui.fmt_int(1234567) == "1,234,567"
    assert ui.fmt_rate(1_250_000) == "1.25 M msg/s"
    assert ui.fmt_rate(830_000, "pkt") == "830.0 k pkt/s"
    assert ui.fmt_rate(12) == "12 msg/s"
    assert ui.fmt_bps(812_300_000) == "812.3 Mbps"
    assert ui.fmt_bytes(512) == "512 B"
    assert ui.fmt_bytes(1536) == "1.50 KiB"
    assert ui.fmt_bytes(240 * 2**20) == "240.0 MiB"
    assert ui.fmt_seconds(245) == "4 min 05 s"
    assert ui.fmt_seconds(7380) == "2 h 03 min"


def test_plain_table_when_not_a_terminal():
    out = io.StringIO()
    ui.print_table(["line", "packets", "state"], [["A", "1,200", "up"], ["B", "17", "down"]], out=out)
    assert out.getvalue().splitlines() == ["line  packets  state",
                                           "A       1,200  up",
                                           "B          17  down"]


def test_bar_scales_and_never_overflows():
    assert ui.bar(50, 100, 10, ascii_only=True) == "#####"
    assert ui.bar(1, 1000, 10, ascii_only=True) == "#"  # a sliver for any non-zero value
    assert ui.bar(500, 100, 10, ascii_only=True) == "#" * 10
    assert ui.bar(0, 100, 10) == ""
    assert len(ui.bar(33, 100, 10, ascii_only=False)) <= 10


def test_json_takes_numpy_values():
    out = io.StringIO()
    ui.print_json({"n": np.uint64(7), "a": np.arange(3)}, out=out)
    assert json.loads(out.getvalue()) == {"n": 7, "a": [0, 1, 2]}
    out = io.StringIO()
    ui.print_json([{"seq": 1}, {"seq": 2}], out=out, lines=True)
    assert [json.loads(x) for x in out.getvalue().splitlines()] == [{"seq": 1}, {"seq": 2}]
