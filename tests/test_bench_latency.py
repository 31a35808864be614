"""fh bench latency at a tiny rate with the back-off idle strategy (no core spinning): the sender's, the data
plane's and the kernel's counts add up, and the rx->publish histogram agrees with the percentiles reported.
Nothing about time is asserted. Also the rate and packing arithmetic, and the hiccup scan's own output."""

from __future__ import annotations

import argparse
import json
import os
import subprocess

import pytest

from conftest import fh
from handler.bench import latency
from handler.shm import lat_percentile, LAT_UPPER_NS


def test_all_received_counts_messages_not_frames_where_two_lines_carry_them():
    lost = dict.fromkeys(("not_sent", "frames_not_sent", "packet_ring_full_frames", "dataplane_drops",
                          "gap_messages", "not_applied"), 0)
    assert latency._all_received(lost, 1) and latency._all_received(lost, 2)
    ring = {**lost, "packet_ring_full_frames": 3, "gap_messages": 12}
    assert not latency._all_received(ring, 1)  # one line: the frames' messages are gone
    assert latency._all_received(ring, 2)  # A and B: the other line carried them (nothing not applied)
    for k in ("not_sent", "not_applied", "dataplane_drops"):
        assert not latency._all_received({**ring, k: 1}, 2), k


def test_parse_rates():
    assert latency.parse_rates("100k,1M,5M") == [100_000, 1_000_000, 5_000_000]
    assert latency.parse_rates(" 2k , 1.5M,750") == [2000, 1_500_000, 750]
    for bad in ("", "fast", "0", "2G", "1M,,5M", "-5k"):
        with pytest.raises(latency.LatencyBenchError, match="--rates"):
            latency.parse_rates(bad)


def test_packing_follows_the_window():
    a = argparse.Namespace(per_packet=None, window_us=4.0)
    assert [latency.per_packet(a, r) for r in (2000, 100_000, 250_000, 1_000_000, 5_000_000)] == [1, 1, 1, 4, 20]
    a.per_packet = 7
    assert latency.per_packet(a, 5_000_000) == 7


def test_segment_placed_as_fh_run_places_one(tmp_path):
    """The run's segment: in a hugetlbfs mount with free hugepages for it (as fh run places an instance's, shm.dir
    auto), else /dev/shm, or where --segment-dir says; its page size is the mount's. A root shaped like /proc and /sys
    (tests/test_segments.py's), never mocked."""
    from handler import native

    mnt = tmp_path / "huge"
    mnt.mkdir()
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "mounts").write_text(f"tmpfs /dev/shm tmpfs rw 0 0\n"
                                              f"hugetlbfs {mnt} hugetlbfs rw,relatime,pagesize=2M 0 0\n")
    free = tmp_path / "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
    free.parent.mkdir(parents=True)
    size = native.segment_footprint(latency.SEG_LEVELS, latency.SEG_EVENTS)
    assert size > 0
    root = str(tmp_path)
    free.write_text(f"{-(-size // (2 << 20))}\n")  # room for exactly one
    assert latency.segment_path("lat-1", "auto", root) == f"{mnt}/fh-lat-1"
    assert latency.segment_pages(f"{mnt}/fh-lat-1", root) == 2 << 20
    free.write_text(f"{size // (2 << 20) - 1}\n")  # too few free pages: /dev/shm and its base pages
    assert latency.segment_path("lat-1", "auto", root) == "/dev/shm/fh-lat-1"
    assert latency.segment_pages("/dev/shm/fh-lat-1", root) == os.sysconf("SC_PAGE_SIZE")
    assert latency.segment_path("lat-1", str(tmp_path), root) == f"{tmp_path}/fh-lat-1"


def test_dpdk_memory_follows_the_free_hugepages(tmp_path):
    """--dpdk-memory auto: DPDK's mbufs and rings on hugepages (as fh run takes them with memory.hugepages = true)
    when the free 2 MB pages hold them beside the segment's, else ordinary pages; huge without them is refused in one
    line that says how many to reserve."""
    from handler.bench import latency as L

    def meminfo(free: int, size: int = 2048):
        p = tmp_path / f"meminfo-{free}-{size}"
        p.write_text(f"MemTotal:       24000000 kB\nHugePages_Total:    {free}\nHugePages_Free:     {free}\n"
                     f"Hugepagesize:       {size} kB\n")
        return str(p)

    need = (L.DPDK_MB + L.SEG_HUGE_MB) // 2
    assert L.dpdk_memory("auto", meminfo(need)) == "huge"
    assert L.dpdk_memory("auto", meminfo(need - 1)) == "base"
    assert L.dpdk_memory("auto", meminfo(4, 1 << 20)) == "base"  # 1 GB default pages: not the 2 MB ones counted
    assert L.dpdk_memory("base", meminfo(need)) == "base" and L.dpdk_memory("huge", meminfo(need)) == "huge"
    with pytest.raises(L.LatencyBenchError, match=rf"--dpdk-memory huge: DPDK takes {L.DPDK_MB} MB of 2 MB hugepages, "
                       rf"and this host has 2 MB free: reserve them \(echo {need} > /proc/sys/vm/nr_hugepages\)"):
        L.dpdk_memory("huge", meminfo(1))
    assert L.dpdk_memory("auto", str(tmp_path / "none")) == "base"


def test_bad_segment_dir_refused(tmp_path):
    p = fh("bench", "latency", "--segment-dir", str(tmp_path / "nowhere"), "--rates", "1k", check=False)
    assert p.returncode != 0
    assert "--segment-dir" in p.stderr and "not a writable directory" in p.stderr


def test_target_judged_on_every_message_and_on_the_datagrams_that_arrived_alone():
    def run(rate, every, alone, count=100):
        return {"rate": rate, "all_received": True, "latency_ns": dict(zip(("p99", "p99.9"), every)),
                "latency_one_frame_ns": {"count": count, **dict(zip(("p99", "p99.9"), alone))}}

    t = latency._target([run(100_000, (500, 900), (400, 800)), run(1_000_000, (4922, 18116), (1230, 2165))])
    assert (t["p99_met"], t["p99.9_met"], t["met"]) == (False, False, False)
    assert t["one_frame"] == {"p99_met": False, "p99.9_met": True}
    t = latency._target([run(1_000_000, (999, 4999), (800, 900))])
    assert t["met"] and t["one_frame"] == {"p99_met": True, "p99.9_met": True}
    assert latency._target([run(1_000_000, (999, 4999), (0, 0), count=0)])["one_frame"] is None  # none alone
    assert latency._target([run(100_000, (1, 1), (1, 1))])["met"] is None  # 1 M msg/s not run


def test_bad_rates_refused_on_the_command_line():
    p = fh("bench", "latency", "--rates", "1M,lots", check=False)
    assert p.returncode == 2 and "--rates" in p.stderr and "lots" in p.stderr


def test_hiccup_scan_reports_itself():
    prog = latency.find_bench_program("fh-hiccups", "FH_HICCUPS")
    cpu = max(os.sched_getaffinity(0))
    out = json.loads(subprocess.run([prog, "--cpu", str(cpu), "--seconds", "0.05", "--threshold-ns", "500"],
                                    capture_output=True, text=True, check=True).stdout)
    t = out["tsc_read"]
    assert out["cpu"] == cpu and out["threshold_ns"] == 500 and out["tsc_hz"] > 0
    assert 0 < t["cycles_min"] <= t["cycles_p50"] and t["cycles_min"] <= t["cycles_mean"]
    g = out["gaps"]
    assert sum(c for _, c in g["buckets"]) == g["count"]
    assert all(upper >= 500 for upper, _ in g["buckets"])  # nothing under the threshold is a gap
    assert g["count"] == 0 or g["p50"] <= g["p99"] and g["p50"] >= 500
    assert 0 <= g["lost_share"] <= 1 and out["loops"] > 0
    bad = subprocess.run([prog, "--cpu", str(cpu), "--seconds", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--seconds" in bad.stderr


@pytest.mark.solo  # a paced feed on pinned cores: every message must arrive
@pytest.mark.dpdk
@pytest.mark.netns
@pytest.mark.slow
def test_tiny_rate_counts_add_up(tmp_path, monkeypatch):
    monkeypatch.setenv("FH_BENCH_CACHE", str(tmp_path))
    rate, seconds = 2000, 2
    p = fh("bench", "latency", "--rates", "2k", "--seconds", seconds, "--idle", "backoff", "--scan-seconds", "0.1",
           "--instruments", "20", "--warm-us", "300", "--json")
    res = json.loads(p.stdout)
    assert res["rates"] == [rate] and res["idle"] == "backoff" and len(res["runs"]) == 1 and res["warm_us"] == 300
    r = res["runs"][0]
    s, recv, lost = r["sender"], r["received"], r["lost"]
    # the sender: every frame of the first rate x seconds messages, packed one a datagram at this rate (4 µs window)
    assert s["messages"] == s["sent_messages"] == rate * seconds and s["frames"] == s["sent"] == rate * seconds
    assert s["errors"] == {} and s["late_ns"]["count"] == s["frames"]
    # the kernel handed every frame over and the data plane applied every message sent, in sequence
    assert r["link"]["unseen"] == 0 and r["link"]["rx_packets"] >= s["sent"]
    assert recv["messages_applied"] == s["sent_messages"] and recv["datagrams"] == s["sent"]
    assert all(v == 0 for v in lost.values()) and r["all_received"]
    # the data plane dropped nothing of ours: only the kernel's own frames on the veth (IGMP, ARP), if any
    assert set(r["drops"]) <= {"not_ipv4", "not_udp"} and r["foreign_frames"] == sum(r["drops"].values())
    assert r["dataplane"]["messages_per_datagram"] == 1.0 and r["dataplane"]["feed"] == "live"
    # --warm-us reached the data plane; its empty polls (500 µs between frames) were counted, each a period
    assert r["dataplane"]["warm_us"] == 300 and r["dataplane"]["empty_polls"] > 0 and r["dataplane"]["empty_poll_ns"] > 0
    # the histogram: every applied message once, and the percentiles of the final statistics within its buckets
    lat, h = r["latency_ns"], r["histogram"]
    assert lat["count"] == h["count"] == sum(c for _, c in h["buckets"]) == recv["messages_applied"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    uppers = set(int(u) for u in LAT_UPPER_NS)
    assert all(u in uppers for u, _ in h["buckets"])
    counts = [0] * len(LAT_UPPER_NS)
    for u, c in h["buckets"]:
        counts[list(LAT_UPPER_NS).index(u)] = c
    for q, key in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9"), (1.0, "max")):
        assert lat_percentile(counts, q) == h[key]
        # the segment's histogram re-buckets the data plane's tick buckets by their upper bounds: never below,
        # at most one ns bucket (6.25 %) above
        assert lat[key] <= h[key] <= lat[key] * 1.0625 + 1, (key, lat, h)
    m = r["machine"]
    assert 0 <= m["measured_messages_above"] <= recv["messages_applied"]
    assert m["scan"]["cpu"] == res["core"] and m["during_run"]["seconds"] > 0
    assert res["target"]["met"] is None and "one_frame" not in res["target"]  # 1M msg/s was not run
    assert res["segment_dir"] == "auto" and r["segment"]["dir"] and r["segment"]["page_size"] >= 4096
    assert res["dpdk_memory"] in ("huge", "base")  # auto, resolved by the host's free hugepages
    # the messages of datagrams that arrived alone: some of them (a frame every 500 µs), none beyond the whole
    one = r["latency_one_frame_ns"]
    assert 0 < one["count"] <= lat["count"] and r["one_frame_share"] == round(one["count"] / lat["count"], 6)
    assert 0 < one["p50"] <= one["p99"] <= one["p99.9"] <= one["max"] <= lat["max"]
    assert r["sent_behind_another"] == s["sent"] - s["send_calls"] >= 0


@pytest.mark.solo  # a paced feed on pinned cores: every message must arrive
@pytest.mark.dpdk
@pytest.mark.netns
@pytest.mark.slow
def test_a_capture_is_sent_as_captured():
    """The bundled A/B capture: both lines sent as captured, the B copies carrying no message of their own (the
    schedule counts each message once) and counted by the data plane as duplicates."""
    from conftest import ROOT

    cap = ROOT / "pcaps" / "synth-ab-40k.pcap"
    p = fh("bench", "latency", "--rates", "20k", "--seconds", 1, "--idle", "backoff", "--scan-seconds", "0.1",
           "--pcap", cap, "--json")
    res = json.loads(p.stdout)
    r = res["runs"][0]
    s = r["sender"]
    assert len(res["source"]["lines"]) == 2
    # whole frames up to the 20,000th message; every A frame's B copy follows it in the capture
    assert s["sent"] == s["frames"] and 20_000 <= s["sent_messages"] == s["messages"] < 20_100
    assert r["received"]["messages_applied"] == s["sent_messages"] and r["all_received"]
    assert r["received"]["packets"] >= s["sent"]
