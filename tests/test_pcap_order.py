"""Captures written by fh are in time order (as a capture card writes them: capinfos' "Strict time order"),
on their trading day's US Eastern clock, with or without a fault plan."""
import datetime as dt
import struct
from pathlib import Path

from handler import native
from handler.net import pcapgen

from conftest import ROOT, ab_lines


def _times(path: Path) -> list[int]:
    b = path.read_bytes()
    assert struct.unpack_from("<I", b)[0] == 0xA1B23C4D  # nanosecond pcap
    off, out = 24, []
    while off < len(b):
        sec, ns, incl, _ = struct.unpack_from("<IIII", b, off)
        out.append(sec * 10**9 + ns)
        off += 16 + incl
    return out


def test_synth_pcap_in_time_order_on_eastern_time(tmp_path):
    day = native.synth_bytes(20_000, 10, 3)
    out = tmp_path / "ab.pcap"
    s = pcapgen.synth_pcap(out, day, ab_lines(), burst_ns=2000)
    t = _times(out)
    assert len(t) == 2 * (s["datagrams"] + 1)
    assert t == sorted(t)
    # the day opens with S 'O' at 03:59:00 Eastern: 08:59:00 UTC in December (EST)
    first = dt.datetime.fromtimestamp(t[0] // 10**9, dt.timezone.utc)
    assert (first.hour, first.minute) == (8, 59)


def test_faulty_pcap_in_time_order(tmp_path):
    from handler import faults
    day = native.synth_bytes(20_000, 10, 3)
    plan = faults.parse_plan({"fault": [{"line": "A", "kind": "reorder", "at": 5, "depth": 3},
                                        {"line": "B", "kind": "delay", "at": 8, "delay_us": 50}]})
    out = tmp_path / "f.pcap"
    pcapgen.synth_faulty_pcap(out, day, ab_lines(), plan, burst_ns=2000)
    t = _times(out)
    assert t == sorted(t)


def test_bundled_pcap_in_time_order():
    t = _times(ROOT / "pcaps" / "synth-ab-40k.pcap")
    assert t == sorted(t)
