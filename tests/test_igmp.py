"""IGMP from the real DPDK data plane: membership reports for each multicast group of the lines at start and
in answer to queries, leaves at stop, in the version the querier speaks (host compatibility mode), captured
with net_pcap's tx_pcap and read back with tshark (and checked here byte by byte). Queries are IGMP, not
drops."""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
import time
import uuid

import pytest

from conftest import dataplane_path
from handler import process
from handler.net import pcapgen

DATAPLANE = dataplane_path()
pytestmark = pytest.mark.dpdk
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark not installed (apt-get install tshark): the captures are read with it")

G1, G2, PORT = "233.54.12.111", "233.49.196.111", 26477
SRC_IP = "10.1.2.3"


def _add(ref: int) -> bytes:
    return struct.pack(">cHH6sQcI8sI", b"A", 1, 0, b"\0" * 6, ref, b"B", 100, b"TEST    ", 10000 + ref)


def _feed(group: str, seq: int):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    o = [int(x) for x in group.split(".")]
    return (Ether(src="02:00:00:00:00:09", dst="01:00:5e:%02x:%02x:%02x" % (o[1] & 0x7F, o[2], o[3]))
            / IP(src="10.0.0.1", dst=group) / UDP(sport=49152, dport=PORT)
            / Raw(pcapgen.mold_datagram(b"FHSYNTH001", seq, [_add(seq)])))


def _igmp(group: str = "0.0.0.0", type_: int = 0x11, mrcode: int = 100, dst: str | None = None, chksum=None):
    """An IGMPv2 message from a querier (a query by default: general unless group is given)."""
    from scapy.layers.igmp import IGMP
    from scapy.layers.inet import IP, IPOption_Router_Alert
    from scapy.layers.l2 import Ether

    dst = dst or ("224.0.0.1" if group == "0.0.0.0" else group)
    o = [int(x) for x in dst.split(".")]
    g = IGMP(type=type_, mrcode=mrcode, gaddr=group)
    if chksum is not None:
        g.chksum = chksum
    return (Ether(src="02:00:00:00:00:fe", dst="01:00:5e:%02x:%02x:%02x" % (o[1] & 0x7F, o[2], o[3]))
            / IP(src="10.0.0.254", dst=dst, ttl=1, options=[IPOption_Router_Alert()]) / g)


def _igmp3(group: str = "0.0.0.0", mrcode: int = 100, qrv: int = 2, qqic: int = 125):
    """An IGMPv3 membership query (12 bytes: with the querier's robustness and query interval), written out by
    hand since scapy's IGMPv3 classes differ between versions."""
    from scapy.layers.inet import IP, IPOption_Router_Alert
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    g = bytes(int(x) for x in group.split("."))
    q = struct.pack("!BBH4sBBH", 0x11, mrcode, 0, g, qrv & 7, qqic, 0)
    q = q[:2] + struct.pack("!H", _csum(q)) + q[4:]
    dst = "224.0.0.1" if group == "0.0.0.0" else group
    o = [int(x) for x in dst.split(".")]
    return (Ether(src="02:00:00:00:00:fe", dst="01:00:5e:%02x:%02x:%02x" % (o[1] & 0x7F, o[2], o[3]))
            / IP(src="10.0.0.254", dst=dst, ttl=1, proto=2, options=[IPOption_Router_Alert()]) / Raw(q))


def _cmd(tmp_path, frames, *extra: str, lines=((G1, PORT), (G2, PORT)), exit_idle: bool = True):
    from scapy.utils import wrpcap

    rx, tx = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(rx), frames)
    name = f"igmp-{uuid.uuid4().hex[:8]}"
    cmd = [DATAPLANE, "--no-pci", "--no-shconf", "--no-huge", "-m", "256", "--file-prefix", f"fh-{name}",
           "-l", str(process.poll_core()), "--log-level", "lib.eal:error", "--log-level", "pmd.net.pcap:error",
           "--vdev", f"net_pcap0,rx_pcap={rx},tx_pcap={tx}", "--",
           "--segment", f"/dev/shm/fh-{name}", "--idle", "backoff",
           "--max-orders", "1024", "--max-levels", "1024", *extra]
    if exit_idle:
        cmd += ["--exit-idle-ms", "200"]
    for g, p in lines:
        cmd += ["--line", f"{g}:{p}"]
    return cmd, tx


def _run(tmp_path, frames, *extra: str, lines=((G1, PORT), (G2, PORT))) -> tuple[dict, object]:
    """Run fh-dataplane over frames (rx_pcap) capturing what it sends (tx_pcap) until the capture has run out;
    return (stats, tx path)."""
    cmd, tx = _cmd(tmp_path, frames, *extra, lines=lines)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), tx


FIELDS = ["igmp.type", "igmp.version", "igmp.maddr", "ip.dst", "ip.ttl", "ip.src", "ip.opt.type", "ip.checksum.status",
          "igmp.checksum.status", "eth.src", "eth.dst", "igmp.record_type", "igmp.num_grp_recs", "_ws.expert"]


def _tshark(path) -> list[dict]:
    # IGMP checksums are always verified by tshark's dissector (it has no preference for it); IP's on request
    p = subprocess.run(["tshark", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-Y", "igmp", "-T", "fields", *sum((["-e", f] for f in FIELDS), [])],
                       capture_output=True, text=True, check=True)
    return [dict(zip(FIELDS, l.split("\t"))) for l in p.stdout.splitlines()]


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _check_frames(path) -> list[bytes]:
    """Our own reading of every frame sent: Ethernet to the group's MAC, IPv4 with Router Alert, TTL 1, both
    checksums correct. Returns the IGMP messages."""
    from scapy.utils import RawPcapReader

    out = []
    for raw, _ in RawPcapReader(str(path)):
        f = bytes(raw)
        assert len(f) >= 60 and f[12:14] == b"\x08\x00"
        ip = f[14:]
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        assert ip[0] >> 4 == 4 and ihl == 24 and ip[20:24] == b"\x94\x04\x00\x00", "no Router Alert option"
        assert ip[8] == 1 and ip[9] == 2 and ip[1] == 0xC0
        assert _csum(ip[:ihl]) == 0, "bad IP header checksum"
        igmp = ip[ihl:total]
        assert _csum(igmp) == 0, "bad IGMP checksum"
        dst = ip[16:20]
        assert f[:6] == bytes([1, 0, 0x5E, dst[1] & 0x7F, dst[2], dst[3]])
        assert f[6] & 1 == 0, "the source MAC must be the port's (unicast) one"
        assert ip[12:16] == bytes(int(x) for x in SRC_IP.split("."))
        out.append(igmp)
    return out


def _queries(v3: bool = False):
    """Traffic with a general query, then a group-specific one for G2 (IGMPv2 queries, or IGMPv3 ones: a v3
    host answers a v2 querier in v2)."""
    gen, grp = (_igmp3(mrcode=100), _igmp3(G2, mrcode=10)) if v3 else (_igmp(mrcode=100), _igmp(G2, mrcode=10))
    return [_feed(G1, 1), _feed(G2, 1), gen, _feed(G1, 2), _feed(G2, 2), grp, _feed(G1, 3)]


def _assert_wire(rows):
    """What tshark says of every IGMP frame we sent: TTL 1, Router Alert, our source, both checksums good."""
    assert rows
    for r in rows:
        assert r["ip.ttl"] == "1" and r["ip.src"] == SRC_IP, r
        assert "148" in r["ip.opt.type"].split(","), "Router Alert option missing"
        assert r["ip.checksum.status"] == "1" and r["igmp.checksum.status"] == "1", r  # 1: good
        assert "Bad checksum" not in r["_ws.expert"]
    assert len({r["eth.src"] for r in rows}) == 1


@needs_tshark
def test_v2_reports_at_start_in_answer_to_queries_and_leaves_at_stop(tmp_path):
    stats, tx = _run(tmp_path, _queries(), "--src-ip", SRC_IP)
    rows = _tshark(tx)
    got = [(r["igmp.type"], r["igmp.maddr"]) for r in rows]
    rep, leave = "0x16", "0x17"
    assert sorted(got[:2]) == sorted([(rep, G1), (rep, G2)]), "one report per group at start"
    assert sorted(got[2:4]) == sorted([(rep, G1), (rep, G2)]), "one report per group after the general query"
    assert got[4:5] == [(rep, G2)], "one report for the queried group after the group-specific query"
    assert sorted(got[5:]) == sorted([(leave, G1), (leave, G2)]), "one leave per group at stop, last"
    _assert_wire(rows)
    for r in rows[:5]:
        assert r["ip.dst"] == r["igmp.maddr"] and r["eth.dst"].startswith("01:00:5e:"), "a report goes to its group"
    for r in rows[5:]:
        assert r["ip.dst"] == "224.0.0.2" and r["eth.dst"] == "01:00:5e:00:00:02", "a leave goes to all routers"
    assert [m[0] for m in _check_frames(tx)] == [0x16] * 5 + [0x17] * 2

    ig = stats["igmp"]
    assert ig["version"] == "v2" and ig["mode"] == "v2" and ig["fallbacks"] == 0 and ig["groups"] == 2
    assert ig["queries"] == 2 and ig["general_queries"] == 1 and ig["group_queries"] == 1
    assert ig["reports_sent"] == 5 and ig["tx_failed"] == 0 and ig["expired"] == 0
    assert ig["leaves_sent"] == 2 and ig["leave_records"] == 2 and ig["leaves_failed"] == 0
    assert ig["frames"] == 2 and stats["nic"]["opackets"] == 7, "the leaves went out before the statistics"
    # IGMP frames are neither drops nor datagrams: every frame is accounted for exactly once
    assert not any(stats["drops"].values()), stats["drops"]
    assert stats["packets"] == 7 == stats["mold"]["datagrams"] + ig["frames"] + sum(stats["drops"].values())
    assert stats["messages_applied"] == 3


@needs_tshark
def test_v3_reports_and_one_leave_report_at_stop(tmp_path):
    stats, tx = _run(tmp_path, _queries(v3=True), "--src-ip", SRC_IP, "--igmp", "v3")
    rows = _tshark(tx)
    assert [r["igmp.type"] for r in rows] == ["0x22"] * 4
    assert all(r["ip.dst"] == "224.0.0.22" and r["eth.dst"] == "01:00:5e:00:00:16" for r in rows)
    _assert_wire(rows)
    # a join (CHANGE_TO_EXCLUDE, 4) for both groups, then current state (MODE_IS_EXCLUDE, 2) as answers, then
    # the leave: one report, CHANGE_TO_INCLUDE (3) with no sources for both groups
    assert [(r["igmp.record_type"], sorted(r["igmp.maddr"].split(","))) for r in rows] == [
        ("4,4", sorted([G1, G2])), ("2,2", sorted([G1, G2])), ("2", [G2]), ("3,3", sorted([G1, G2]))]
    leave = _check_frames(tx)[-1]
    assert struct.unpack("!H", leave[6:8])[0] == 2
    assert [struct.unpack("!BBH4s", leave[8 + 8 * i:16 + 8 * i])[:3] for i in range(2)] == [(3, 0, 0)] * 2
    ig = stats["igmp"]
    assert ig["mode"] == "v3" and ig["fallbacks"] == 0 and ig["general_queries"] == 1 and ig["group_queries"] == 1
    assert ig["reports_sent"] == 3 and ig["records_sent"] == 5
    assert ig["leaves_sent"] == 1 and ig["leave_records"] == 2 and stats["nic"]["opackets"] == 4


@needs_tshark
def test_v3_host_answers_a_v2_querier_in_v2_until_its_timeout(tmp_path):
    # a v2 general query, then a v3 one: the fallback to v2 holds (260 s), so both are answered with v2
    # reports, and the leave at stop is a v2 leave
    frames = [_feed(G1, 1), _igmp(mrcode=100), _feed(G1, 2), _igmp3(mrcode=100), _feed(G2, 3)]
    stats, tx = _run(tmp_path, frames, "--src-ip", SRC_IP, "--igmp", "v3")
    rows = _tshark(tx)
    got = [(r["igmp.type"], r["igmp.maddr"]) for r in rows]
    assert got[0][0] == "0x22" and rows[0]["igmp.record_type"] == "4,4", "joined in v3 (no query heard yet)"
    v2 = sorted([("0x16", G1), ("0x16", G2)])
    assert sorted(got[1:3]) == v2, "the v2 query: v2 reports"
    assert sorted(got[3:5]) == v2, "the v3 query while the v2 querier is present: still v2 reports"
    assert sorted(got[5:]) == sorted([("0x17", G1), ("0x17", G2)]), "v2 leaves"
    assert all(r["ip.dst"] == "224.0.0.2" for r in rows[5:])
    _assert_wire(rows)
    _check_frames(tx)
    ig = stats["igmp"]
    assert ig["version"] == "v3" and ig["mode"] == "v2" and ig["fallbacks"] == 1, ig
    assert ig["queries"] == 2 and ig["reports_sent"] == 5 and ig["leaves_sent"] == 2


@needs_tshark
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_v1_querier_gets_v1_reports_and_no_leave(tmp_path, version):
    frames = [_feed(G1, 1), _igmp(mrcode=0), _feed(G2, 2), _igmp(G1, mrcode=10), _feed(G1, 3)]
    stats, tx = _run(tmp_path, frames, "--src-ip", SRC_IP, "--igmp", version)
    rows = _tshark(tx)
    got = [(r["igmp.type"], r["igmp.maddr"]) for r in rows]
    join = "0x16" if version == "v2" else "0x22"
    assert got[0][0] == join
    v1 = sorted([("0x12", G1), ("0x12", G2)])
    assert sorted(got[-3:-1]) == v1 and got[-1] == ("0x12", G1), \
        "the v1 query: a v1 report per group, and a v2 group query under a v1 querier: v1 too; then no leave"
    assert [r["igmp.version"] for r in rows[-3:]] == ["1"] * 3
    assert all(r["ip.dst"] == r["igmp.maddr"] for r in rows[-3:])
    _assert_wire(rows)
    assert not any(m[0] in (0x17, 0x22) for m in _check_frames(tx)[1:]), "no leave in v1 mode"
    ig = stats["igmp"]
    assert ig["mode"] == "v1" and ig["fallbacks"] == 1
    assert ig["leaves_sent"] == 0 and ig["leaves_suppressed"] == 2 and stats["nic"]["opackets"] == len(rows)


@needs_tshark
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_leaves_on_signal(tmp_path, sig):
    # no --exit-idle-ms: the port stays up after the capture runs out, until the signal
    cmd, tx = _cmd(tmp_path, [_feed(G1, 1), _feed(G2, 2)], "--src-ip", SRC_IP, exit_idle=False)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert p.poll() is None, p.communicate()[1]
        t = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert time.monotonic() - t < 10
    stats = json.loads(out.strip().splitlines()[-1])
    rows = _tshark(tx)
    assert sorted((r["igmp.type"], r["igmp.maddr"]) for r in rows[-2:]) == sorted([("0x17", G1), ("0x17", G2)])
    _assert_wire(rows)
    assert stats["igmp"]["leaves_sent"] == 2 and stats["messages_applied"] == 2


def test_odd_igmp_is_counted_not_answered_not_dropped(tmp_path):
    frames = [
        _feed(G1, 1),
        _igmp("239.9.9.9", mrcode=10),                          # a query for a group we do not take
        _igmp(chksum=0x1234),                                   # a general query with a bad checksum
        _igmp(G1, type_=0x16, mrcode=0),                        # another host's report for our group
        _igmp("224.0.0.2", type_=0x17, mrcode=0, dst="224.0.0.2"),  # a leave
        _feed(G2, 2),
    ]
    stats, tx = _run(tmp_path, frames, "--src-ip", SRC_IP)
    ig = stats["igmp"]
    assert ig["frames"] == 4 and ig["bad"] == 1 and ig["other"] == 2
    assert ig["queries"] == 1 and ig["unknown_group_queries"] == 1
    assert ig["reports_sent"] == 2, "only the two reports at start"
    assert ig["leaves_sent"] == 2 and ig["fallbacks"] == 0 and ig["mode"] == "v2"
    assert [m[0] for m in _check_frames(tx)] == [0x16, 0x16, 0x17, 0x17], "the reports at start, the leaves at stop"
    assert not any(stats["drops"].values())


def test_igmp_off_sends_nothing_and_still_counts(tmp_path):
    stats, tx = _run(tmp_path, _queries(), "--igmp", "off")
    assert stats["igmp"]["version"] == "off" and stats["igmp"]["queries"] == 2
    assert stats["igmp"]["reports_sent"] == 0 and stats["igmp"]["leaves_sent"] == 0
    assert stats["igmp"]["mode"] == "off" and stats["nic"]["opackets"] == 0
    assert _check_frames(tx) == []
    assert not any(stats["drops"].values())


def test_only_multicast_groups_are_joined_once(tmp_path):
    # two lines on one group (different ports) and a unicast line: one group to report
    lines = ((G1, PORT), (G1, PORT + 1), ("10.9.9.9", PORT))
    stats, tx = _run(tmp_path, [_feed(G1, 1), _igmp()], "--src-ip", SRC_IP, lines=lines)
    assert stats["igmp"]["groups"] == 1 and stats["igmp"]["reports_sent"] == 2 and stats["igmp"]["leaves_sent"] == 1
    msgs = _check_frames(tx)
    assert [(m[0], struct.unpack("!4B", m[4:8])) for m in msgs] == [(0x16, (233, 54, 12, 111))] * 2 + [
        (0x17, (233, 54, 12, 111))]


def test_bad_options_are_explained(tmp_path):
    for args, msg in ((["--igmp", "v4"], "--igmp must be v2, v3 or off"),
                      (["--src-ip", "nope"], "expected an IPv4 address"),
                      (["--mode", "fast"], "--mode must be full or rx-only")):
        p = subprocess.run([DATAPLANE, "--no-pci", "--no-shconf", "--no-huge", "-m", "128", "--file-prefix",
                            "fh-igmp-badarg", "-l", str(process.poll_core()), "--log-level", "lib.eal:error", "--",
                            "--segment", str(tmp_path / "seg"), "--line", f"{G1}:{PORT}", *args],
                           capture_output=True, text=True)
        assert p.returncode == 2 and msg in p.stderr, p.stderr


# ---- the other data-plane options of this change (here rather than in test_dataplane.py, which others own) ----


def test_rx_only_mode_counts_and_reports_busy_cycles(tmp_path):
    frames = _queries()
    stats, tx = _run(tmp_path, frames, "--mode", "rx-only")
    assert stats["mode"] == "rx-only" and stats["packets"] == len(frames) == stats["nic"]["ipackets"]
    assert stats["bytes"] == sum(len(bytes(f)) for f in frames)
    assert stats["busy_cycles"] > 0 and stats["busy_bursts"] >= 1 and stats["tsc_hz"] > 0
    assert _check_frames(tx) == [], "rx-only sends nothing"
    full, _ = _run(tmp_path, frames)
    assert full["busy_cycles"] > 0 and full["bytes"] == stats["bytes"] and full["tsc_hz"] == stats["tsc_hz"]


def test_fh_bench_dataplane_smoke(tmp_path):
    import os
    import sys

    env = {**os.environ, "FH_BENCH_CACHE": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "handler", "bench", "dataplane", "--messages", "20000",
                        "--instruments", "50", "--repeats", "1", "--json"], capture_output=True, text=True, env=env,
                       timeout=300, cwd=process.ROOT)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    s = res["summary"]
    assert res["messages"] == 20000 and s["messages_all_applied"] and s["drops"] == {}
    assert s["rx_only_cycles_per_packet"]["min"] > 0 and s["full_cycles_per_packet"]["min"] > 0
    assert s["engine_cycles_per_msg"]["min"] > 0 and "own_cycles_per_packet" in s
    assert s["latency_ns"]["p50"]["min"] > 0
