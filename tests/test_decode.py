"""The C ITCH decoder (fh decode) against two independent decoders: the reference model's, and one in
this file that is driven by the table of docs/decode-format.md itself. Every message of every real file."""

from __future__ import annotations

import json
import re
import struct

import pytest

from conftest import ROOT, fh, real_itch_files, real_itch_pcaps
from handler import native
from handler import reference as ref
from handler.net.pcapfile import PcapReader

KIND_WIDTH = {"a": None, "u16": 2, "u32": 4, "u64": 8, "p4": 4, "p8": 8}


def _spec_from_doc() -> dict[str, list[tuple[str, str, int]]]:
    """{type: [(name, kind, width), ...]} parsed from the table in docs/decode-format.md."""
    text = (ROOT / "docs" / "decode-format.md").read_text()
    spec = {}
    for t, length, body in re.findall(r"^\| (\w) \| (\d+) \| (.+?) \|$", text, re.M):
        fields = [("type", "a", 1), ("stock_locate", "u16", 2), ("tracking_number", "u16", 2),
                  ("timestamp", "u48", 6)]
        for name, kind in re.findall(r"(\w+)\((\w+)\)", body):
            width = int(kind[1:]) if kind.startswith("a") else KIND_WIDTH[kind]
            fields.append((name, kind, width))
        assert sum(f[2] for f in fields) == int(length), f"doc table: widths of {t} do not add up to {length}"
        spec[t] = fields
    return spec


SPEC = _spec_from_doc()


def doc_decode(msg: bytes) -> dict:
    fields = SPEC[chr(msg[0])]
    out, off = {}, 0
    for name, kind, width in fields:
        raw = msg[off:off + width]
        off += width
        out[name] = raw.decode("latin-1").rstrip(" ") if kind.startswith("a") else int.from_bytes(raw, "big")
    return out


def test_doc_table_has_all_23_types():
    assert sorted(SPEC) == sorted("SRHYLVWKJhAFECXDUPQBINO")
    for t, fields in SPEC.items():
        assert native.itch_spec_length(ord(t)) == sum(f[2] for f in fields)


def _check_all(messages: list[bytes]) -> int:
    n = 0
    for m in messages:
        c = json.loads(native.itch_json(m))
        assert c == doc_decode(m), f"C decoder differs from the doc-driven decoder on {m.hex()}"
        r = ref.decode_message(m)
        assert list(c.items()) == list(r.items()), f"C decoder differs from the reference on {m.hex()}"
        n += 1
    return n


@pytest.mark.parametrize("path", real_itch_files(), ids=lambda p: p.name)
def test_real_itch_files_every_field(path, real):
    msgs, trunc = ref.split_daily_file(path.read_bytes())
    assert _check_all(msgs) == len(msgs) > 0


@pytest.mark.parametrize("path", real_itch_pcaps(), ids=lambda p: p.name)
def test_real_pcaps_every_field(path, real):
    total = 0
    for d in PcapReader(path).datagrams():
        total += _check_all(ref.iter_mold(d.payload).messages)
    assert total > 0


@pytest.mark.parametrize("path", real_itch_pcaps(), ids=lambda p: p.name)
def test_fh_decode_pcap_matches_reference(path, real):
    p = fh("decode", "--pcap", path, "--json")
    got = [json.loads(line) for line in p.stdout.splitlines()]
    want = list(ref.decode_pcap(str(path)))
    assert got == want
    assert all(list(g) == list(w) for g, w in zip(got, want)), "key order differs"


def test_fh_decode_itch_truncated_file(real):
    path = real / "itch" / "truncated_16msgs.NASDAQ_ITCH50"
    p = fh("decode", "--itch", path, "--json", check=False)
    assert p.returncode == 1
    assert len(p.stdout.splitlines()) == 16
    assert "truncated" in p.stderr and "offset 497" in p.stderr


def test_fh_decode_multi_message_datagram_sequences(real):
    path = real / "moldudp64" / "Nasdaq.Equities.TotalView.Itch.v5.0__Multiple.Packets.pcap"
    rows = [json.loads(line) for line in fh("decode", "--pcap", path, "--json").stdout.splitlines()]
    seqs = [r["sequence"] for r in rows]
    assert len(rows) > 38
    # within a datagram, sequences are consecutive; a real gap exists between datagrams
    assert any(b - a > 1 for a, b in zip(seqs, seqs[1:]))


def test_fh_decode_bad_blocks_are_reported_not_fatal(tmp_path):
    good = struct.pack(">cHH6sQ", b"D", 1, 0, (5).to_bytes(6, "big"), 42)
    data = b"".join(struct.pack(">H", len(m)) + m for m in (good, b"Zjunk", good[:10], good))
    f = tmp_path / "bad.itch"
    f.write_bytes(data)
    p = fh("decode", "--itch", f, "--json", check=False)
    assert p.returncode == 1
    assert len(p.stdout.splitlines()) == 2
    assert "unknown message type (type byte 0x5a" in p.stderr
    assert "short message (type byte 0x44, 10 bytes)" in p.stderr


def test_fh_decode_says_which_frames_it_left_out(tmp_path):
    """Frames whose datagram cannot be read (a UDP length past the frame, a cut-off frame) are said and make the
    exit status 1; a capture of another link type, none of whose frames is UDP/IPv4, is said too."""
    data = bytearray((ROOT / "pcaps" / "synth-ab-40k.pcap").read_bytes())
    assert struct.unpack_from("<I", data, 20)[0] == 1 and data[24 + 16 + 12:24 + 16 + 14] == b"\x08\x00"
    ip = 24 + 16 + 14
    udp = ip + (data[ip] & 0x0F) * 4
    struct.pack_into(">H", data, udp + 4, 0xFFFF)  # the first frame's UDP length: past the IPv4 payload
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    p = fh("decode", "--pcap", bad, check=False)
    assert p.returncode == 1 and f"fh decode: {bad}: frames left out: bad_udp_length 1" in p.stderr, p.stderr
    struct.pack_into(">H", data, udp + 4, 0)
    struct.pack_into("<I", data, 20, 113)  # Linux cooked capture: every frame read as SLL
    sll = tmp_path / "sll.pcap"
    sll.write_bytes(bytes(data))
    p = fh("decode", "--pcap", sll, check=False)
    assert "fh decode: " + str(sll) + ": none of its " in p.stderr and "is a UDP/IPv4 datagram" in p.stderr, p.stderr
    assert "frames left out" not in fh("decode", "--pcap", ROOT / "pcaps" / "synth-ab-40k.pcap").stderr
    # a sequence number in the top quarter of the 64-bit range: malformed, as the data plane says
    struct.pack_into("<I", data, 20, 1)
    struct.pack_into(">H", data, udp + 4, struct.unpack_from(">H", data, ip + 2)[0] - (udp - ip))
    struct.pack_into(">Q", data, udp + 8 + 10, (1 << 64) - 1)
    seqmax = tmp_path / "seqmax.pcap"
    seqmax.write_bytes(bytes(data))
    p = fh("decode", "--pcap", seqmax, check=False)
    assert p.returncode == 1 and "sequence 18,446,744,073,709,551,615 is in the top quarter" in p.stderr, p.stderr
    assert "not matching the filters" not in p.stderr
    # a damaged record header (the second's length beyond any frame): the frames after it cannot be found
    second = ip - 14 + struct.unpack_from("<I", data, 24 + 8)[0]
    struct.pack_into("<I", data, second + 8, 0x7FFFFFFF)
    dam = tmp_path / "damaged.pcap"
    dam.write_bytes(bytes(data))
    p = fh("decode", "--pcap", dam, check=False)
    assert p.returncode == 1 and f"damaged: the record header at byte {second:,} claims more" in p.stderr, p.stderr
    data[24 + 8:24 + 12] = struct.pack("<I", 0x7FFFFFFF)  # the first: nothing to replay
    dam.write_bytes(bytes(data))
    for cmd in ("replay", "verify"):
        p = fh(cmd, dam, check=False)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "damaged: the record header at byte 24" in p.stderr and f"no UDP datagram before it to {cmd}" in p.stderr


def test_decode_all_types_roundtrip_synthetic():
    """Every type with every byte distinct: C, reference and the doc-driven decoder agree."""
    for t, fields in SPEC.items():
        length = sum(f[2] for f in fields)
        body = bytes((i * 37 + 11) % 94 + 33 for i in range(length - 1))
        m = t.encode() + body
        assert _check_all([m]) == 1
        assert json.loads(native.itch_json(m + b"xyz")) == doc_decode(m)  # long: the known prefix
        assert native.itch_json(m[:-1]) is None
