"""contrib/wireshark/fh_itch50.lua (Wireshark's own ITCH dissector reads 5.0 as an older version): tshark with
the script decodes every message of the bundled and the real captures with the same fields and values as
`fh decode`, marks malformed framing, and leaves datagrams of other protocols alone."""
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, fh, real_itch_pcaps

LUA = ROOT / "contrib" / "wireshark" / "fh_itch50.lua"
SEP = "\x1f"  # between the occurrences of one field in a frame

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed (apt-get install tshark)")


def _field_names() -> list[str]:
    """Every field the script declares (fh_itch50.NAME), read from the script itself."""
    return sorted(set(re.findall(r'"fh_itch50\.([a-z0-9_]+)"', LUA.read_text())) - {"short", "unknown", "framing"})


def _tshark(pcap: Path, names: list[str], *extra: str) -> list[dict[str, list[str]]]:
    cmd = ["tshark", "-X", f"lua_script:{LUA}", "-r", str(pcap), "-Y", "fh_itch50", "-T", "fields",
           "-E", "occurrence=a", "-E", f"aggregator={SEP}", "-E", "separator=/t", *extra]
    for n in names:
        cmd += ["-e", f"fh_itch50.{n}"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    rows = []
    for line in p.stdout.splitlines():
        cols = line.split("\t")
        rows.append({n: (c.split(SEP) if c else []) for n, c in zip(names, cols)})
    return rows


def _compare(pcap: Path) -> int:
    """Frame by frame, field by field: tshark's values in message order against fh decode's. Returns the
    number of messages compared."""
    names = _field_names()
    frames = _tshark(pcap, names)
    decoded = [json.loads(l) for l in fh("decode", "--pcap", pcap, "--json", "--both-lines").stdout.splitlines()]
    per_frame = [len(fr["type"]) for fr in frames]
    assert sum(per_frame) == len(decoded), f"{pcap.name}: tshark saw {sum(per_frame)} messages, fh decode {len(decoded)}"
    i = 0
    for k, fr in enumerate(frames):
        msgs = decoded[i:i + per_frame[k]]
        i += per_frame[k]
        for n in names:
            if n in ("mold_sequence", "count", "datagram", "length", "session"):
                continue
            want = [str(m[n]) for m in msgs if n in m]
            assert fr[n] == want, f"{pcap.name} frame {k + 1} field {n}: tshark {fr[n]} != fh decode {want}"
    return len(decoded)


def test_bundled_capture_matches_fh_decode():
    assert _compare(ROOT / "pcaps" / "synth-ab-40k.pcap") > 10_000


@pytest.mark.parametrize("pcap", real_itch_pcaps(), ids=lambda p: p.name.split("__")[-1])
def test_real_captures_match_fh_decode(pcap):
    assert _compare(pcap) > 0


def test_every_message_type_is_declared():
    """The script's table has the 23 types of ITCH 5.0 with fh's lengths (handler.native.itch_spec_length)."""
    from handler import native
    text = LUA.read_text()
    table = dict(re.findall(r"^\s+([A-Za-z]) = \{(\d+), \{", text, re.M))
    lens = {chr(t): n for t in range(256) if (n := native.itch_spec_length(t))}
    assert {k: int(v) for k, v in table.items()} == lens


def _pcap(path: Path, payloads: list[bytes], dport: int = 26477) -> None:
    """A classic pcap of UDP/IPv4 datagrams (checksums zero) to 233.54.12.111:dport."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, pl in enumerate(payloads):
        udp = struct.pack("!HHHH", 40000, dport, 8 + len(pl), 0) + pl
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 1, 17, 0, bytes([10, 0, 0, 1]),
                         bytes([233, 54, 12, 111])) + udp
        eth = b"\x01\x00\x5e\x36\x0c\x6f" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", i, 0, len(eth), len(eth)) + eth)
    path.write_bytes(b"".join(out))


def _mold(seq: int, msgs: list[bytes], count: int | None = None) -> bytes:
    body = b"".join(struct.pack("!H", len(m)) + m for m in msgs)
    return b"TESTSESS01" + struct.pack("!QH", seq, len(msgs) if count is None else count) + body


def test_malformed_framing_is_flagged_and_heartbeats_named(tmp_path):
    delete = b"D" + struct.pack("!HH", 7, 0) + (1000).to_bytes(6, "big") + struct.pack("!Q", 42)
    short = b"D" + struct.pack("!HH", 7, 0) + (1000).to_bytes(6, "big")  # 11 bytes: D needs 19
    pcap = tmp_path / "bad.pcap"
    _pcap(pcap, [_mold(5, [delete]), _mold(6, [], count=0), _mold(6, [], count=0xFFFF),
                 _mold(6, [delete], count=3), _mold(7, [short])])
    rows = _tshark(pcap, ["datagram", "type", "order_reference_number"])
    assert [r["datagram"] for r in rows] == [["data"], ["heartbeat"], ["end of session"], ["data"], ["data"]]
    assert rows[0]["order_reference_number"] == ["42"]
    p = subprocess.run(["tshark", "-X", f"lua_script:{LUA}", "-r", str(pcap), "-T", "fields", "-e",
                        "_ws.expert.message"], capture_output=True, text=True, check=True)
    experts = p.stdout.splitlines()
    assert "Blocks do not match the message count" in experts[3]
    assert "Message shorter than its type" in experts[4]


def test_other_udp_is_left_alone(tmp_path):
    """On a port other than the configured one, only an exact MoldUDP64 + ITCH 5.0 framing is claimed."""
    pcap = tmp_path / "other.pcap"
    delete = b"D" + struct.pack("!HH", 7, 0) + (1000).to_bytes(6, "big") + struct.pack("!Q", 42)
    _pcap(pcap, [b"x" * 40, _mold(5, [delete]) + b"junk", _mold(5, [delete])], dport=5353 + 1)
    p = subprocess.run(["tshark", "-X", f"lua_script:{LUA}", "-r", str(pcap), "-T", "fields", "-e", "frame.number",
                        "-e", "fh_itch50.type"], capture_output=True, text=True, check=True)
    got = [l.split("\t") for l in p.stdout.splitlines()]
    assert [g[1] for g in got] == ["", "", "D"]
