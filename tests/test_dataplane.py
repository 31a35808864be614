"""The real DPDK data plane (fh-dataplane on net_pcap) end to end: captures in, books out of shared memory,
compared with the reference model; bad input counted; start-up errors explained."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess

import pytest

from conftest import dataplane_path, fh, real_itch_pcaps
from handler import process, replay
from handler.net import pcapgen

DATAPLANE = dataplane_path()
pytestmark = pytest.mark.dpdk


@pytest.fixture(scope="module")
def ab_pcap(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "ab.pcap"
    fh("pcap", "synth", out, "--messages", "60000", "--instruments", "30", "--seed", "5")
    return out


def test_generated_ab_pcap_books_equal_reference(ab_pcap):
    stats, got = replay.replay(ab_pcap, want_books=True)
    want, _ = replay.reference_books(ab_pcap)
    assert replay.diff_books(got, want) == []
    assert got == want and len(got) > 10
    assert stats["messages_applied"] == 60000
    assert stats["mold"]["duplicates"] == 60000  # every B copy lost the race to its A copy
    assert stats["mold"]["gaps"] == 0 and stats["mold"]["end_of_session"] == 2
    assert not any(stats["drops"].values())
    assert stats["nic"]["imissed"] == 0
    lat = stats["latency_ns"]
    assert lat["count"] == 60000 and 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert [l["won"] for l in stats["lines"]] == [60000, 0]


def test_b_line_alone_builds_the_same_books(ab_pcap):
    lines = replay.pcap_lines(ab_pcap)
    stats, got = replay.replay(ab_pcap, want_books=True, lines=lines[1:])
    want, _ = replay.reference_books(ab_pcap)
    assert got == want
    assert stats["drops"]["other_group"] == stats["packets"] // 2


@pytest.mark.parametrize("ladder_books", ["0", "7"])
def test_ladder_books_change_nothing_readers_see(ab_pcap, ladder_books):
    """--ladder-books (shm.ladder_books): with no ladders, or ladders for the first 7 books only, the books are the
    reference's, as with the default (every book its own ladder)."""
    stats, got = replay.replay(ab_pcap, want_books=True, extra=["--ladder-books", ladder_books])
    want, _ = replay.reference_books(ab_pcap)
    assert got == want and stats["messages_applied"] == 60000


@pytest.mark.parametrize("warm_us", [None, "0", "1"])
def test_warm_reported_and_books_unchanged(ab_pcap, warm_us):
    """--warm-us N (run.warm_us): idle warming's round, in the final statistics (by default 0, none, under --idle
    backoff, as replays run; 1000 under spin), with the empty polls that followed another and their mean period; the
    books are the reference's whatever it warms (1 µs: a book every empty poll)."""
    stats, got = replay.replay(ab_pcap, want_books=True, extra=["--warm-us", warm_us] if warm_us else [])
    want, _ = replay.reference_books(ab_pcap)
    assert got == want and stats["messages_applied"] == 60000
    assert stats["warm_us"] == (int(warm_us) if warm_us else 0)
    assert stats["empty_polls"] > 0 and 0 < stats["empty_poll_ns"] < 1e9, stats


def test_fh_verify_and_replay_cli(ab_pcap, tmp_path):
    p = fh("verify", ab_pcap)
    assert "OK:" in p.stdout and "equal the reference" in p.stdout
    books = tmp_path / "books.jsonl"
    p = fh("replay", ab_pcap, "--dump-books", books, "--depth", "3")
    assert "latency rx->publish" in p.stdout
    rows = [json.loads(l) for l in books.read_text().splitlines()]
    assert rows and all(len(r["bids"]) <= 3 and len(r["asks"]) <= 3 for r in rows)
    js = json.loads(fh("replay", ab_pcap, "--json").stdout)
    assert js["messages_applied"] == 60000 and js["capture_truncated"] is False


def test_a_cut_off_capture_is_replayed_and_said(ab_pcap, tmp_path):
    """net_pcap stops at a cut-off last record as at the end of the file: fh replay and fh verify say it (one
    line on stderr, capture_truncated in their JSON) and use the frames before it."""
    data = ab_pcap.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) - 123])
    for cmd in ("replay", "verify"):
        p = fh(cmd, cut, "--json")
        said = [l for l in p.stderr.splitlines() if "truncated" in l]
        assert len(said) == 1 and f"fh {cmd}: {cut}: truncated: its last record is cut off" in said[0], p.stderr
        js = json.loads(p.stdout)
        assert js["capture_truncated"] is True
        # the record cut off is the last datagram's B copy: its A copy, before it, carried every message
        assert (js if cmd == "replay" else js["stats"])["messages_applied"] == 60000
    assert json.loads(fh("verify", cut, "--json").stdout)["verdict"] == "OK"


def test_a_damaged_record_header_ends_the_replay_there(ab_pcap, tmp_path):
    """A record header in the middle that claims more than a frame can hold: the frames after it cannot be found,
    so fh replay and fh verify use the frames before it, as they say. net_pcap's libpcap read on past it (1,495
    frames where the survey and the reference model saw 800), and fh verify then failed on books it had said it
    would not compare."""
    data = bytearray(ab_pcap.read_bytes())
    off = 24
    for _ in range(800):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    struct.pack_into("<I", data, off + 8, 1 << 20)  # its incl_len
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    whole = tmp_path / "whole.pcap"
    whole.write_bytes(bytes(data[:off]))  # the frames before it
    applied = json.loads(fh("replay", whole, "--json").stdout)["messages_applied"]
    assert 0 < applied < 60000
    for cmd in ("replay", "verify"):
        p = fh(cmd, bad, "--json")
        said = [l for l in p.stderr.splitlines() if "damaged" in l]
        assert len(said) == 1 and f"fh {cmd}: {bad}: damaged: the record header at byte {off:,}" in said[0], p.stderr
        js = json.loads(p.stdout)
        stats = js if cmd == "replay" else js["stats"]
        assert stats["packets"] == 800
        assert stats["messages_applied"] == applied
    assert json.loads(fh("verify", bad, "--json").stdout)["verdict"] == "OK"


@pytest.mark.parametrize("path", real_itch_pcaps(), ids=lambda p: p.name)
def test_real_pcaps_through_dpdk(path, real):
    """Each capture holds a datagram or two from the middle of a real session (or anonymised ones, sequence 0).
    By default a datagram millions of sequences past its session's start is suspect to the data plane and to
    the reference alike; trusting jumps (--max-ahead 0) its real messages are applied, and the books are
    stale: the capture joined its session late."""
    stats, got = replay.replay(path, want_books=True)
    want, c = replay.reference_books(path)
    assert got == want
    assert stats["mold"]["suspect"] == c["sequencing"]["suspect"]
    if stats["mold"]["suspect"]:
        stats, got = replay.replay(path, want_books=True, extra=["--max-ahead", "0"])
        want, c = replay.reference_books(path, max_ahead=0)
        assert got == want
        info = c["sequencing"]
        assert info["stale"] and info["late_joins"][0][0] == stats["mold"]["joined_at"] > 1
        assert stats["feed"]["state"] == "stale" and stats["mold"]["join_lost"] == stats["mold"]["joined_at"] - 1
    assert stats["messages_applied"] > 0


def _frame(payload: bytes, dst="233.54.12.111", dport=26477, proto=17, frag=0x4000, vlan=None, cut=None) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    l3 = IP(dst=dst, proto=proto, flags=frag >> 13, frag=frag & 0x1FFF)
    l3 = l3 / UDP(dport=dport, sport=1) / Raw(payload) if proto == 17 else l3 / Raw(payload)
    f = bytes(Ether(dst="01:00:5e:36:0c:6f") / (Dot1Q(vlan=vlan) / l3 if vlan else l3))
    return f[:cut] if cut else f


def test_bad_input_is_counted_never_fatal(tmp_path):
    good = pcapgen.mold_datagram(b"FHSYNTH001", 1, [struct.pack(">cHH6sQcI8sI", b"A", 1, 0, b"\0" * 6, 1, b"B", 100,
                                                                  b"TEST    ", 10000)])
    frames = [
        _frame(good),                                  # applied
        _frame(good, vlan=141),                        # duplicate (same sequence), through a VLAN tag
        _frame(good)[:20],                             # truncated frame
        _frame(b"x" * 30, proto=6),                    # not UDP
        _frame(good, dst="233.1.1.1"),                 # another group
        _frame(good, frag=0x2000),                     # IP fragment (MF)
        _frame(b"garbage"),                            # MoldUDP64 shorter than its header
        _frame(b"FHSYNTH001" + struct.pack(">QH", 2, 5) + b"\x00\x30abc"),  # blocks do not fit
        bytes(14) + b"\x08\x06" + bytes(28),           # ARP-ish: not IPv4
    ]
    w = pcapgen.PcapWriter(tmp_path / "bad.pcap")
    for i, f in enumerate(frames):
        w.write(10**9 + i, f)
    w.close()
    stats, books = replay.replay(tmp_path / "bad.pcap", want_books=True, lines=[("233.54.12.111", 26477)])
    d = stats["drops"]
    assert d["truncated_frame"] == 1 and d["not_udp"] == 1 and d["other_group"] == 1 and d["ip_fragment"] == 1
    assert d["not_ipv4"] == 1
    assert stats["mold"]["duplicates"] == 1 and stats["mold"]["malformed"] == 2
    assert books == [{"locate": 1, "symbol": "TEST", "bids": [[10000, 100, 1]], "asks": []}]


def test_no_port_and_bad_arguments_are_explained(tmp_path):
    def dataplane(prefix: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DATAPLANE, "--no-pci", "--no-shconf", "--no-huge", "-m", "128", "--file-prefix", prefix,
                               "-l", str(process.poll_core()), "--log-level", "lib.eal:error", "--", *args],
                              capture_output=True, text=True)

    p = dataplane("fh-noport", "--segment", str(tmp_path / "seg"), "--line", "233.1.1.1:1")
    assert p.returncode == 2
    assert "no DPDK port: bind a NIC to vfio-pci" in p.stderr
    p = dataplane("fh-badarg", "--segment", "x", "--line", "not-an-address")
    assert p.returncode == 2 and "expected IPV4:PORT" in p.stderr
    p = dataplane("fh-badarg", "--segment", "x", "--line", "233.1.1.1:1", "--ladder-books", "65535")
    assert p.returncode == 2 and "--ladder-books must be 0..65534" in p.stderr
    assert [l for l in p.stderr.splitlines() if l.startswith("fh-dataplane")] == [
        "fh-dataplane: --ladder-books must be 0..65534 (books with a price ladder; 0: none), not 65535"]
    p = dataplane("fh-badarg", "--segment", "x", "--line", "233.1.1.1:1", "--warm-us", "10000001")
    assert p.returncode == 2 and [l for l in p.stderr.splitlines() if l.startswith("fh-dataplane")] == [
        "fh-dataplane: --warm-us must be 0..10000000 (µs to warm every book once while idle; 0: none), not 10000001"]
    # EAL refuses a driver that does not exist: with --no-huge given, no hint about hugepages
    p = subprocess.run([DATAPLANE, "--no-pci", "--no-shconf", "--no-huge", "-m", "128", "--file-prefix", "fh-bogus",
                        "-l", str(process.poll_core()), "--vdev", "net_bogus0", "--", "--segment", "x", "--line",
                        "233.1.1.1:1"], capture_output=True, text=True)
    assert p.returncode != 0 and "EAL init failed" in p.stderr and "net_bogus0" in p.stderr, p.stderr
    assert "no hugepages?" not in p.stderr and "EAL's own lines above say why" in p.stderr


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_dissects_our_pcaps(ab_pcap, tmp_path):
    vl = tmp_path / "vlan.pcap"
    fh("pcap", "synth", vl, "--messages", "5000", "--instruments", "5", "--vlan", "141", "--a-only")
    for pcap in (ab_pcap, vl):
        p = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==26477,moldudp64", "-T", "fields",
                            "-e", "moldudp64.sequence", "-e", "moldudp64.count", "-e", "_ws.malformed"],
                           capture_output=True, text=True, check=True)
        rows = [l.split("\t") for l in p.stdout.splitlines()]
        assert rows and not any(r[2] for r in rows if len(r) > 2), "tshark found malformed packets"
        seqs = [int(r[0]) for r in rows if r[1] not in ("", "65535")]
        assert seqs[0] == 1


def test_pcap_inspect(ab_pcap):
    ins = json.loads(fh("pcap", "inspect", ab_pcap, "--json").stdout)
    assert ins["sessions"]["FHSYNTH001"][:2] == [1, 60000]
    assert len(ins["endpoints"]) == 2 and ins["gaps"] == [] and ins["end_of_session"] == 2
