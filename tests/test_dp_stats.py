"""The data plane's section of the stats region (fh/shm.h fh_shm_dp_stats_t): what fh-dataplane publishes in
shared memory equals its final JSON; fh stats and fh metrics show it; engine-only writers leave it zero."""

from __future__ import annotations

import json
import re
import struct
import uuid

import pytest

from conftest import fh
from handler import process, replay, shm
from handler.net import pcapgen
needs_dp = pytest.mark.dpdk


def test_bucket_scheme():
    n = shm.LAT_BUCKETS
    assert n == 64 + 34 * 16
    assert [shm.lat_upper_ns(i) for i in range(70)][:64] == list(range(64))
    assert shm.lat_upper_ns(64) == 67 and shm.lat_upper_ns(79) == 127 and shm.lat_upper_ns(80) == 135
    for i in range(1, n):
        lo, hi = shm.lat_lower_ns(i), shm.lat_upper_ns(i)
        assert lo == shm.lat_upper_ns(i - 1) + 1 and hi >= lo
        if i >= 64:
            assert (hi - lo + 1) * 16 <= lo  # at most 1/16 of the bucket's value wide
    assert shm.lat_upper_ns(n - 1) == (1 << 40) - 1
    b = [0] * n
    b[10], b[100] = 3, 1
    assert shm.lat_percentile(b, 0.5) == 10 and shm.lat_percentile(b, 0.99) == shm.lat_upper_ns(100)
    assert shm.lat_percentile([0] * n, 0.5) == 0


def _run(pcap, tmp_name, lines=None):
    segment = f"/dev/shm/fh-{tmp_name}"
    lines = lines if lines is not None else replay.pcap_lines(pcap)
    js = process.run_dataplane(replay.eal_args(tmp_name, f"net_pcap0,rx_pcap={pcap}"), segment, lines, keep=True)
    return segment, js


def _check_equal(segment: str, js: dict) -> dict:
    with shm.Reader(segment) as r:
        assert int(r.header["layout_version"]) == 5
        st = r.stats(sections=True)
        plain = r.stats()
    assert st["dataplane"] is True
    assert "drops" not in plain and all(isinstance(v, int) for v in plain.values())  # the flat form is unchanged
    assert st["packets"] == js["packets"] and st["bytes"] == js["bytes"]
    assert st["drops"] == js["drops"]
    mold = dict(st["mold"])
    next_seq = mold.pop("next_seq")
    assert mold == js["mold"]
    assert [{k: v for k, v in l.items() if k != "silent_ms"} for l in st["lines"]] == js["lines"]
    assert st["feed"] == js["feed"]
    assert {k: st[k] for k in plain} == plain
    lat, want = st["latency"], js["latency_ns"]
    assert lat["count"] == want["count"] == js["messages_applied"]
    assert sum(n for _, n in lat["buckets"]) == lat["count"]
    # the shm histogram is the data plane's tick histogram re-bucketed into ns by each bucket's upper bound:
    # a percentile is at most one ns bucket (1/16) above fh-dataplane's own
    for q in ("p50", "p99", "p99.9", "max"):
        assert want[q] <= lat[q] <= want[q] + want[q] // 16 + 1, (q, lat, want)
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    st["next_seq"] = next_seq
    return st


def _samples(text: str) -> list[tuple[str, dict, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        assert m, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        out.append((m.group(1), labels, m.group(3)))
    return out


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory):
    pcap = tmp_path_factory.mktemp("dps") / "ab.pcap"
    fh("pcap", "synth", pcap, "--messages", "20000", "--instruments", "20", "--seed", "7")
    name = f"dps-{uuid.uuid4().hex[:8]}"
    segment, js = _run(pcap, name)
    try:
        yield name, segment, js
    finally:
        process.remove_segment(segment)


@needs_dp
def test_segment_stats_equal_final_json(ab_run):
    name, segment, js = ab_run
    st = _check_equal(segment, js)
    assert st["next_seq"] == 20001  # the last message was 20000
    assert [l["won"] for l in st["lines"]] == [20000, 0]
    assert st["mold"]["duplicates"] == 20000 and not any(st["drops"].values())


@needs_dp
def test_fh_stats_shows_the_dataplane(ab_run):
    name, segment, js = ab_run
    got = json.loads(fh("stats", "--name", segment, "--json").stdout)
    assert got["layout_version"] == 5
    assert got["dataplane"]["drops"] == js["drops"] and got["dataplane"]["packets"] == js["packets"]
    assert got["dataplane"]["latency"]["count"] == js["messages_applied"]
    text = fh("stats", "--name", segment).stdout
    assert "latency" in text and "p99.9" in text and "drops" in text and "mold" in text


@needs_dp
def test_metrics_histogram(ab_run):
    name, segment, js = ab_run
    text = fh("metrics", "--name", segment, "--once").stdout
    assert "# TYPE fh_latency_seconds histogram" in text
    s = _samples(text)
    buckets = [(lab["le"], float(v)) for n, lab, v in s if n == "fh_latency_seconds_bucket"]
    count = [float(v) for n, lab, v in s if n == "fh_latency_seconds_count"]
    total = [float(v) for n, lab, v in s if n == "fh_latency_seconds_sum"]
    assert len(buckets) > 10 and buckets[-1][0] == "+Inf"
    les = [float(le) for le, _ in buckets[:-1]]
    assert les == sorted(les) and len(set(les)) == len(les)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert counts[-1] == count[0] == js["messages_applied"]
    assert total and total[0] > 0
    drops = {lab["cause"]: float(v) for n, lab, v in s if n == "fh_drops_total"}
    assert drops == {k: float(v) for k, v in js["drops"].items()}
    mold = {lab["counter"]: float(v) for n, lab, v in s if n == "fh_mold_total"}
    assert mold == {k: float(v) for k, v in js["mold"].items()}
    assert [float(v) for n, lab, v in s if n == "fh_packets_total"] == [js["packets"]]
    assert [float(v) for n, lab, v in s if n == "fh_bytes_total"] == [js["bytes"]]


@needs_dp
def test_bad_input_drops_in_the_segment(tmp_path):
    from test_dataplane import _frame

    good = pcapgen.mold_datagram(b"FHSYNTH001", 1, [struct.pack(">cHH6sQcI8sI", b"A", 1, 0, b"\0" * 6, 1, b"B", 100,
                                                                  b"TEST    ", 10000)])
    frames = [_frame(good), _frame(good)[:20], _frame(b"x" * 30, proto=6), _frame(good, dst="233.1.1.1"),
              _frame(b"garbage")]
    w = pcapgen.PcapWriter(tmp_path / "bad.pcap")
    for i, f in enumerate(frames):
        w.write(10**9 + i, f)
    w.close()
    name = f"dps-{uuid.uuid4().hex[:8]}"
    segment, js = _run(tmp_path / "bad.pcap", name, lines=[("233.54.12.111", 26477)])
    try:
        st = _check_equal(segment, js)
        assert st["drops"]["truncated_frame"] == 1 and st["drops"]["not_udp"] == 1
        assert st["drops"]["other_group"] == 1 and st["mold"]["malformed"] == 1
        assert st["next_seq"] == 2 and st["latency"]["count"] == 1
    finally:
        process.remove_segment(segment)


@needs_dp
def test_latency_one_stamp_a_burst(tmp_path):
    """The latency histogram takes one TSC read a burst, once the burst is published: every message the burst
    applied goes into the bucket of that burst's rx -> publish, an upper bound of each message's own (fh/shm.h).
    So there are no more non-empty buckets than bursts, although a full burst's datagrams are applied in steps one
    after the other (the engine stages them and applies them 32 messages behind its walk, 32 or more at a time, and
    the rest at the burst's end, reading the publish stamp as each step begins, so these differ within a burst), and
    no event's own rx -> publish stamp is above the histogram's max."""
    from handler import native

    pcap = tmp_path / "a.pcap"
    info = pcapgen.synth_pcap(pcap, native.synth_bytes(3000, 20, 3), [pcapgen.Line(*pcapgen.DEFAULT_A)], mtu=340)
    name = f"dps-{uuid.uuid4().hex[:8]}"
    segment, js = _run(pcap, name)
    try:
        st = _check_equal(segment, js)
        assert js["messages_applied"] == 3000 and info["datagrams"] > 4 * 32  # at least four full bursts
        buckets = st["latency"]["buckets"]
        assert 1 <= len(buckets) <= js["busy_bursts"] < info["datagrams"], (buckets, js["busy_bursts"])
        with shm.Reader(segment) as r:
            evs = [ev for ev in r.events(start=1, raw=True)]
            hz = r.tsc_hz
        assert evs and not any(isinstance(ev, shm.Overrun) for ev in evs)
        by_rx: dict[int, set] = {}
        for ev in evs:
            by_rx.setdefault(int(ev["rx_tsc"]), set()).add(int(ev["pub_tsc"]))
        assert len(by_rx) <= js["busy_bursts"]  # the events of a burst share its rx stamp
        assert max(len(p) for p in by_rx.values()) > 1  # ... and not their datagrams' publish stamps
        own = max(max(p) - rx for rx, p in by_rx.items()) * 1e9 / hz
        assert 0 <= own <= st["latency"]["max"], (own, st["latency"])
    finally:
        process.remove_segment(segment)


@needs_dp
@pytest.mark.parametrize("mtu", [1500, 240])
def test_one_frame_histogram_counts_datagrams_that_arrived_alone(tmp_path, mtu):
    """latency_one_frame_ns counts the messages of bursts of one frame only: a capture of one datagram is one burst of
    one frame (all its messages there, with the same percentiles as latency_ns); net_pcap hands a few datagrams over
    in one burst of as many frames (none there)."""
    from handler import native

    pcap = tmp_path / "a.pcap"
    info = pcapgen.synth_pcap(pcap, native.synth_bytes(20, 2, 3), [pcapgen.Line(*pcapgen.DEFAULT_A)], mtu=mtu,
                              end_of_session=False)
    frames = info["datagrams"]
    assert (frames == 1) == (mtu == 1500) and frames <= 32  # one burst either way
    name = f"dps-{uuid.uuid4().hex[:8]}"
    segment, js = _run(pcap, name)
    try:
        lat, one = js["latency_ns"], js["latency_one_frame_ns"]
        assert js["packets"] == frames and js["busy_bursts"] == 1
        assert lat["count"] == js["messages_applied"] == info["messages"]
        if frames == 1:
            assert one == lat and 0 < one["p50"] <= one["max"]
        else:
            assert one == {"count": 0, "p50": 0, "p99": 0, "p99.9": 0, "max": 0}
    finally:
        process.remove_segment(segment)


@pytest.mark.slow
def test_engine_only_writer_leaves_the_section_zero():
    from test_shm import DAY, publisher

    with publisher(DAY) as (name, _):
        with shm.Reader(name) as r:
            st = r.stats(sections=True)
            assert st["dataplane"] is False and st["packets"] == 0 and st["drops"] == {} and st["mold"] == {
                "next_seq": 0}
            assert st["latency"]["count"] == 0 and st["latency"]["buckets"] == [] and st["latency"]["p99"] == 0
            assert not r.stats_copy()["dp"]["lat_bucket"].any()
        text = fh("metrics", "--name", name, "--once").stdout
        assert "fh_latency_seconds" not in text and "fh_drops_total" not in text
        js = json.loads(fh("stats", "--name", name, "--json").stdout)
        assert js["dataplane"] is None


def test_reader_of_version_1_refused(tmp_path):
    """A segment of layout version 1 gets the layout-version error (and version 5 is what we write)."""
    from test_shm import DAY, publisher

    with publisher(DAY) as (name, _):
        path = shm.segment_path(name)
        raw = bytearray(open(path, "rb").read(4096))
    raw[8:12] = struct.pack("<I", 1)
    fake = tmp_path / "v1"
    fake.write_bytes(bytes(raw) + bytes(1 << 20))
    with pytest.raises(shm.LayoutMismatch, match="layout version 1, this fh reads 5"):
        shm.Reader(str(fake))
