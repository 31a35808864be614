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


def test_a_capture_of_no_datagram_and_an_unknown_symbol_are_said(tmp_path):
    """A capture that is only a pcap file header gave fh decode and fh book dump exit 0 and no output at all (fh
    replay refuses it: "the capture holds no UDP datagram"); --symbol NOSUCH only "N not matching the filters"."""
    head = tmp_path / "h.pcap"
    head.write_bytes((ROOT / "pcaps" / "synth-ab-40k.pcap").read_bytes()[:24])
    want = f"{head}: the capture holds no UDP datagram (no frame after its file header)"
    p = fh("decode", "--pcap", head)
    assert p.stdout == "" and p.stderr.strip().splitlines() == [f"fh decode: {want}; nothing to decode"]
    for engine in ("c", "reference"):
        p = fh("book", "dump", "--pcap", head, "--engine", engine)
        assert p.stdout == "" and p.stderr.strip().splitlines() == [f"fh book dump: {want}; no book to dump"]
    assert "no UDP datagram" not in fh("book", "dump", "--pcap", ROOT / "pcaps" / "synth-ab-40k.pcap").stderr
    itch = ROOT / "pcaps" / "synth-100k.itch"
    p = fh("decode", "--itch", itch, "--symbol", "NOSUCH")
    assert p.stdout == "" and p.stderr.strip().splitlines() == [
        f"fh decode: {itch}: 0 messages printed; 100,000 not matching the filters; no stock directory message (R) "
        f"read names NOSUCH (check the symbol, or give its stock locate)"]
    p = fh("decode", "--itch", itch, "--symbol", "AAPL", "--limit", "1")
    assert p.stdout and "stock directory" not in p.stderr


def _journal_dir(d):
    from handler import journal as J

    w = J.JournalFileWriter(d, day="20261203", fsync="none")
    msgs = [bytes(m) for _, m in native.iter_blocks(native.synth_bytes(50, 5, 5))]
    body = b"".join(len(m).to_bytes(2, "big") + m for m in msgs)
    w.write([J.Record(J.MSGS, "TESTJF0001", 1, len(msgs), len(body), body)])
    w.close()
    return d


def test_a_file_that_is_not_a_journal_is_named_in_hex_with_the_fix(tmp_path):
    """A junk *.fhj said "not an fh journal file (magic b'\\xa0r...')", a Python bytes repr and no fix; in a
    directory it stopped the decoding of every good file. Now the bytes in hex and what the file should be, and in
    a directory fh decode skips it with a warning (exit 1); fh book dump, whose books would lack it, refuses."""
    d = _journal_dir(tmp_path / "rec")
    junk = d / "junk.fhj"
    junk.write_bytes(b"\xa0r" + bytes(range(6)) + bytes(100))
    text = (f"{junk}: not an fh journal file: it begins with the bytes a0 72 00 01 02 03 04 05, a journal file "
            f"begins with FHJFILE1 (46 48 4a 46 49 4c 45 31); give fh record's *.fhj files (its --dir), or move "
            f"this file out of the journal directory")
    p = fh("decode", "--journal", junk, check=False)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [f"fh: {text}"]
    p = fh("decode", "--journal", d, "--json", check=False)
    assert p.returncode == 1 and len(p.stdout.splitlines()) == 50
    assert p.stderr.strip().splitlines() == [f"fh decode: warning: {text}; skipped"]
    p = fh("book", "dump", "--journal", d, check=False)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [f"fh: {text}"]
    with pytest.raises(native.NativeError) as e:  # the C reader's line is the same
        native.journal_file_apply(None, junk)
    assert str(e.value) == text
