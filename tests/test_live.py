"""Live traffic: a sender in a network namespace the test creates sends a generated day over a veth pair to
the real data plane on net_af_packet, paced; the books it publishes equal the reference model's, and every
frame it saw is accounted for. Also: the pacing arithmetic, and --loop on net_pcap."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from conftest import fh
from handler import replay
from handler.net import pcapgen, sender

MESSAGES = 20000


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("live") / "ab.pcap"
    fh("pcap", "synth", out, "--messages", MESSAGES, "--instruments", "20", "--seed", "7")
    return out


@pytest.fixture(scope="module")
def reference(day):
    return replay.reference_books(day)[0]


def _frames(pcap) -> int:
    return replay.pcap_extent(pcap)[0]


def assert_accounted(stats: dict) -> None:
    """Every frame the data plane took is either a datagram handed to MoldUDP64 or a drop with its cause, and
    none went missing between the veth and the data plane."""
    # ARP and IGMP frames are not drops: the data plane answers them (or notes another host's) and counts them
    control = stats.get("arp", {}).get("frames", 0) + stats.get("igmp", {}).get("frames", 0)
    assert stats["packets"] == sum(stats["drops"].values()) + stats["mold"]["datagrams"] + control, stats
    assert stats["packets"] == stats["nic"]["ipackets"]
    if "link" in stats:
        assert stats["link"]["unseen"] == 0, f"frames lost in the packet ring: {stats['link']}"
        # a frame the veth refused (its peer's backlog full) was sent again: the sender got every one through
        assert stats["link"]["rx_dropped"] <= stats["sender"]["enobufs_retries"]
        assert stats["sender"]["sent"] == stats["sender"]["frames"] and not stats["sender"]["errors"]


# -- pacing arithmetic (no root needed) -----------------------------------------------------------------

def test_parse_pace():
    assert sender.parse_pace("max") == sender.Pace("max")
    assert sender.parse_pace("recorded") == sender.Pace("recorded", 1.0)
    assert sender.parse_pace("x250") == sender.Pace("recorded", 250.0)
    assert sender.parse_pace("X0.5") == sender.Pace("recorded", 0.5)
    assert sender.parse_pace("max", 20000) == sender.Pace("pps", pps=20000.0)
    for bad, pps in (("x0", None), ("fast", None), ("x-3", None), ("recorded", 100), ("max", 0)):
        with pytest.raises(sender.SenderError):
            sender.parse_pace(bad, pps)


def test_schedule():
    cap = sender.Capture("t", [b"a", b"b", b"c", b"d"], [1_000, 3_000, 2_000, 11_000])
    offs, period = sender.schedule(cap, sender.Pace("recorded", 2.0))
    assert offs == [0, 1000, 1000, 5500]          # a clock stepping back is no wait; x2 halves the gaps
    assert period == 5500 + 5500 // 3
    offs, period = sender.schedule(cap, sender.Pace("pps", pps=1000))
    assert offs == [0, 1_000_000, 2_000_000, 3_000_000] and period == 4_000_000
    assert sender.schedule(cap, sender.Pace("max")) == (None, 0)


def test_read_frames_is_byte_exact(day):
    cap = sender.read_frames(day)
    from handler.net.pcapfile import PcapReader

    dgs = list(PcapReader(day).datagrams())
    assert len(cap.frames) == len(dgs) == _frames(day)
    assert all(f.endswith(d.payload) for f, d in zip(cap.frames[:50], dgs[:50]))
    assert cap.ts_ns == [d.ts_ns for d in dgs]


# -- net_pcap --loop ---------------------------------------------------------------------------------------

@pytest.mark.dpdk
def test_net_pcap_loop_through_a_fifo(day, reference):
    stats, got = replay.replay(day, want_books=True, loop=3)
    assert got == reference
    n = _frames(day)
    assert stats["packets"] == 3 * n and stats["loop"] == 3
    assert stats["messages_applied"] == MESSAGES
    # one pass applies each message once; its B copy and both copies of the next two passes are duplicates
    assert stats["mold"]["duplicates"] == MESSAGES + 2 * 2 * MESSAGES
    assert_accounted(stats)


# -- live, over a veth pair --------------------------------------------------------------------------------

@pytest.mark.dpdk
@pytest.mark.netns
def test_live_pps_books_equal_reference(day, reference):
    ticks = []
    stats, got = replay.replay_live(day, sender.Pace("pps", pps=20000), want_books=True,
                                    progress=lambda *a: ticks.append(a))
    assert replay.diff_books(got, reference) == []
    assert got == reference and len(got) > 10
    n = _frames(day)
    s = stats["sender"]
    assert s["sent"] == s["frames"] == n and not s["errors"]
    assert stats["messages_applied"] == MESSAGES
    assert stats["mold"]["duplicates"] == MESSAGES          # every B copy
    assert stats["mold"]["gaps"] == 0 and stats["mold"]["end_of_session"] == 2
    assert stats["mold"]["datagrams"] == n                  # every frame the sender sent arrived, once
    # anything else on the wire is the kernel's, and counted by cause, never lost silently
    extra = stats["packets"] - n
    assert extra >= 0 and sum(stats["drops"].values()) == extra
    assert_accounted(stats)
    # paced at the requested rate: never ahead of the schedule (an absolute one: frames are not sent early),
    # and behind it at the end by less than 50 ms, however busy this box is
    assert s["requested_pps"] == pytest.approx(20000, rel=1e-3)
    assert s["achieved_pps"] <= 20000 * 1.001
    assert s["scheduled_s"] <= s["elapsed_s"] < s["scheduled_s"] + 0.05
    assert ticks and ticks[-1][0] == n


@pytest.mark.dpdk
@pytest.mark.netns
def test_live_loop_and_noise_are_accounted(day, reference, tmp_path):
    """Frames that are not the feed's (ARP, IPv6, TCP, another group) go out with it: each is a drop with
    its cause (ARP is counted apart: the data plane answers the requests for its own address), and the books are still the reference's; a loop repeats the day as duplicates."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Ether

    noise = [bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2")),
             bytes(Ether(dst="33:33:00:00:00:01") / IPv6(dst="ff02::1") / UDP(dport=5353)),
             bytes(Ether(dst="01:00:5e:36:0c:6f") / IP(dst="233.54.12.111") / TCP(dport=26477)),
             bytes(Ether(dst="01:00:5e:01:01:01") / IP(dst="239.1.1.1") / UDP(dport=26477) / (b"x" * 40))]
    cap = sender.read_frames(day)
    out = tmp_path / "noisy.pcap"
    w = pcapgen.PcapWriter(out)
    for i, (ts, f) in enumerate(zip(cap.ts_ns, cap.frames)):
        w.write(ts, f)
        if i % 100 == 0:
            w.write(ts, noise[(i // 100) % len(noise)])
    w.close()
    n_noise = sum(1 for i in range(len(cap.frames)) if i % 100 == 0)
    per = {"arp": 0, "not_ipv4": 0, "not_udp": 0, "other_group": 0}
    for i in range(0, len(cap.frames), 100):
        per[("arp", "not_ipv4", "not_udp", "other_group")[(i // 100) % 4]] += 1

    stats, got = replay.replay_live(out, sender.Pace("pps", pps=50000), loop=2, want_books=True,
                                    lines=replay.pcap_lines(day))
    assert got == reference
    n = len(cap.frames)
    assert stats["sender"]["sent"] == 2 * (n + n_noise)
    assert stats["messages_applied"] == MESSAGES
    assert stats["mold"]["duplicates"] == MESSAGES + 2 * MESSAGES
    assert stats["mold"]["datagrams"] == 2 * n
    extra = stats["packets"] - 2 * (n + n_noise)  # the kernel's own frames, if any
    assert extra >= 0
    d = stats["drops"]
    assert d["not_ipv4"] >= 2 * per["not_ipv4"] and d["not_udp"] >= 2 * per["not_udp"]
    assert d["other_group"] >= 2 * per["other_group"]
    assert stats["arp"]["frames"] >= 2 * per["arp"] and stats["arp"]["replies_sent"] == 0  # not for us
    assert sum(d.values()) + stats["arp"]["frames"] + stats["igmp"]["frames"] == 2 * n_noise + extra
    assert_accounted(stats)


@pytest.mark.dpdk
@pytest.mark.netns
def test_fh_replay_speed_multiplier_cli(day, reference, tmp_path):
    books = tmp_path / "books.jsonl"
    p = fh("replay", day, "--speed", "x10000", "--json", "--dump-books", books)
    stats = json.loads(p.stdout)
    assert [json.loads(l) for l in books.read_text().splitlines()] == reference
    assert stats["messages_applied"] == MESSAGES and stats["mold"]["duplicates"] == MESSAGES
    s = stats["sender"]
    assert s["pace"] == "x10000" and s["sent"] == _frames(day)
    assert s["scheduled_s"] <= s["elapsed_s"] < s["scheduled_s"] + 0.25
    assert_accounted(stats)
    p = fh("replay", day, "--pps", "40000", "--quiet")
    assert "sender (40000 pps" in p.stdout
    assert "lost before the data plane saw them (its packet ring full): 0" in p.stdout
    assert p.stderr == ""


def test_replay_cli_rejects_bad_pacing(day):
    p = fh("replay", day, "--speed", "x10", "--pps", "5", check=False)
    assert p.returncode == 2 and "give one of them" in p.stderr
    p = fh("replay", day, "--speed", "warp", check=False)
    assert p.returncode == 2 and "expected max, recorded or xN" in p.stderr


@pytest.mark.dpdk
@pytest.mark.netns
def test_lab_is_torn_down():
    lab = sender.Lab(f"t{uuid.uuid4().hex[:6]}")
    with lab:
        assert os.path.exists(f"/sys/class/net/{lab.dp_if}")
        assert os.path.exists(f"/run/netns/{lab.ns}") or os.path.exists(f"/var/run/netns/{lab.ns}")
        assert open(f"/proc/sys/net/ipv6/conf/{lab.dp_if}/disable_ipv6").read().strip() == "1"
    assert not os.path.exists(f"/sys/class/net/{lab.dp_if}")
    assert not os.path.exists(f"/run/netns/{lab.ns}")
