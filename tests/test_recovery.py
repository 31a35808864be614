"""Line reliability through the real data plane: fault plans replayed on net_pcap (no retransmission server:
losses on both lines are given up and the books marked stale) and live over a veth pair with the
retransmission server in the sender's network namespace (the data plane asks for what both lines lost and
ends with the clean stream's books). Also A and B on two ports."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ab_lines, fh_env
from test_faults import _synth  # the fault-plan captures of the fault-plan tests
from handler import native, process, replay
from handler.net import pcapgen, sender
from handler.shm import Reader

pytestmark = pytest.mark.dpdk


@pytest.fixture(scope="module")
def day():
    return native.synth_bytes(20000, 12, 11)


def _seq_of(day, idx):
    return 1 + sum(len(m) for _, m in pcapgen.packetize(day)[:idx])


def _run(pcap, tmp_path, extra=(), lines=None, eal=None, events=1 << 18):
    name = f"rec-{uuid.uuid4().hex[:8]}"
    seg = f"/dev/shm/fh-{name}"
    lines = lines if lines is not None else replay.pcap_lines(pcap)
    eal = eal or replay.eal_args(name, f"net_pcap0,rx_pcap={pcap}")
    stats = process.run_dataplane(eal, seg, lines, exit_idle_ms=300, events=events, extra=list(extra), timeout=120)
    return stats, seg


def _segment(seg):
    r = Reader(seg)
    try:
        books = r.dump()
        status = {b["locate"]: b["status"] for b in (r.book(int(l), 0) for l in r.locates())}
        events, lost, nxt = [], 0, r.oldest()
        while True:
            arr, nxt, l = r.read_events(nxt)
            lost += l
            if not len(arr):
                break
            events += [{**r.event_dict(e), "book_status": int(e["status"])} for e in arr]
        dp = r.dataplane_stats()
    finally:
        r.close()
        process.remove_segment(seg)
    return books, status, events, lost, dp


def test_one_line_faults_are_covered_by_the_other(day, clean_books, tmp_path):
    """A drops and reorders, B duplicates and is late: the first copy wins, later messages are held until
    the other line fills the gap, and nothing is lost or stale."""
    plan = [{"line": "A", "kind": "drop", "at": 10, "count": 3},
            {"line": "A", "kind": "reorder", "at": 40, "count": 2},
            {"line": "B", "kind": "duplicate", "at": 60, "count": 2},
            {"line": "B", "kind": "delay", "at": 80, "count": 2, "delay_us": 200}]
    pcap, inj = _synth(tmp_path, day, plan)
    assert inj["lost_on_all_lines"] == []
    stats, seg = _run(pcap, tmp_path)
    books, status, _, _, dp = _segment(seg)
    assert replay.diff_books(books, clean_books) == [] and books == clean_books
    m = stats["mold"]
    assert m["lost"] == 0 and m["unrecoverable"] == 0 and m["requests"] == 0
    assert m["applied"] == 20000
    assert stats["lines"][1]["won"] >= inj["A"]["dropped"]["messages"]  # B delivered what A lost
    a = stats["lines"][0]  # the line's own health: a reordering counts as skipped, then late
    assert a["lost"] - a["late"] == inj["A"]["dropped"]["messages"] and a["late"] > 0
    assert stats["lines"][0]["won"] + stats["lines"][1]["won"] == 20000
    assert set(status.values()) == {"live"}
    assert stats["feed"]["state"] == "ended" and dp["feed"]["state"] == "ended"


def test_loss_on_both_lines_without_server_marks_every_book_stale(day, messages, tmp_path):
    """No retransmission server: after the wait the gap is given up; every book is stale, with a stale event
    each, and no event after the gap shows a book as live."""
    first = _seq_of(day, 30)
    pcap, inj = _synth(tmp_path, day, [{"line": "both", "kind": "drop", "seq": first, "count": 2}])
    lost = inj["lost_on_all_lines"][0]["messages"]
    stats, seg = _run(pcap, tmp_path, extra=["--gap-wait-us", "500"])
    books, status, events, overrun, dp = _segment(seg)
    assert overrun == 0
    want, _ = replay.reference_books(pcap)  # the stream without the lost messages
    assert books == want
    m = stats["mold"]
    assert m["lost"] == lost and m["unrecoverable"] == 1 and m["gaps"] == 1 and m["gap_messages"] == lost
    assert m["applied"] == 20000 - lost
    assert stats["feed"]["state"] == "stale" and dp["feed"]["state"] == "stale"
    assert status and set(status.values()) == {"stale"}
    stale_events = [e for e in events if e["type"] == "stale"]
    assert sorted(e["locate"] for e in stale_events) == sorted(status)
    # A reader never sees a book changed by a message after the gap without the stale flag.
    gap_ts = int.from_bytes(messages[first - 1][5:11], "big")
    after = [e for e in events if e["type"] not in ("stale", "recovered") and e["itch_ts"] >= gap_ts]
    assert after and all(e["book_status"] == 2 for e in after)  # FH_BOOK_STALE
    first_stale = min(e["seq"] for e in stale_events)
    assert all(e["seq"] > first_stale for e in after)


def test_hold_back_buffer_full_gives_the_gap_up(day, tmp_path):
    first = _seq_of(day, 30)
    pcap, inj = _synth(tmp_path, day, [{"line": "both", "kind": "drop", "seq": first, "count": 1}])
    stats, seg = _run(pcap, tmp_path, extra=["--hold", "64", "--gap-wait-us", "1000000"])
    _, status, _, _, _ = _segment(seg)
    m = stats["mold"]
    assert m["hold_full"] == 1 and m["lost"] == inj["lost_on_all_lines"][0]["messages"]
    assert set(status.values()) == {"stale"}


def test_session_change_mid_stream(day, clean_books, tmp_path):
    pcap, inj = _synth(tmp_path, day, [{"kind": "session_change", "at": 50}])
    stats, seg = _run(pcap, tmp_path)
    books, status, _, _, _ = _segment(seg)
    assert books == clean_books
    assert stats["mold"]["session_changes"] == 1 and stats["mold"]["lost"] == 0
    assert set(status.values()) == {"live"}


def test_a_and_b_on_two_ports(day, clean_books, tmp_path):
    """Line A on one DPDK port, B on another (two net_pcap devices, each with its line's frames)."""
    from scapy.utils import PcapReader as SR, PcapWriter

    pcap = tmp_path / "ab.pcap"
    pcapgen.synth_pcap(pcap, day, ab_lines())
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    (ga, pa), (gb, pb) = replay.pcap_lines(pcap)
    with SR(str(pcap)) as r, PcapWriter(str(a), sync=False) as wa, PcapWriter(str(b), sync=False) as wb:
        for p in r:
            (wa if p["IP"].dst == ga else wb).write(p)
    name = f"rec-{uuid.uuid4().hex[:8]}"
    eal = replay.eal_args(name, f"net_pcap0,rx_pcap={a}") + ["--vdev", f"net_pcap1,rx_pcap={b}"]
    stats, seg = _run(pcap, tmp_path, lines=[(ga, pa, "net_pcap0"), (gb, pb, "net_pcap1")], eal=eal)
    books, _, _, _, _ = _segment(seg)
    assert books == clean_books
    assert stats["ports"] == 2 and stats["messages_applied"] == 20000
    assert stats["lines"][0]["messages"] == stats["lines"][1]["messages"] == 20000
    assert not any(stats["drops"].values())


def test_unknown_line_device_is_explained(day, clean, tmp_path):
    name = f"rec-{uuid.uuid4().hex[:8]}"
    cmd = process.dataplane_cmd(replay.eal_args(name, f"net_pcap0,rx_pcap={clean}"), f"/dev/shm/fh-{name}",
                               [("233.54.12.111", 26477, "net_pcap7")])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no DPDK device 'net_pcap7'" in p.stderr and "net_pcap0" in p.stderr


def test_retransmission_arguments_are_checked(clean):
    name = f"rec-{uuid.uuid4().hex[:8]}"
    base = process.dataplane_cmd(replay.eal_args(name, f"net_pcap0,rx_pcap={clean}"), f"/dev/shm/fh-{name}",
                                [("233.54.12.111", 26477)])
    for extra, msg in [(["--retrans-server", "10.0.0.1:18000"], "needs --src-ip"),
                       (["--retrans-server", "10.0.0.1:18000", "--src-ip", "10.0.0.2"], "needs --retrans-mac"),
                       (["--retrans-server", "nowhere"], "expected IPV4:PORT"),
                       (["--retrans-mac", "zz"], "expected a MAC address"),
                       (["--hold", "1000"], "power of two"),
                       (["--line-stale-ms", "5000", "--line-down-ms", "100"], "must be below")]:
        p = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and msg in p.stderr, (extra, p.stderr)


# -- live: the retransmission server in the sender's namespace ------------------------------------------------

@contextmanager
def _server_lab(clean):
    """A lab (network namespace, veth pair) with `fh retransmit-server` on the clean recording at
    10.77.0.1:18000 inside it; yields (lab, the data plane's retransmission arguments)."""
    tag = uuid.uuid4().hex[:6]
    with sender.Lab(tag) as lab:
        subprocess.run([*sender.netns_argv(lab.ns), "ip", "addr", "add", "10.77.0.1/24", "dev", lab.ns_if], check=True)
        srv = subprocess.Popen(lab.exec_argv(process.fh_argv("retransmit-server", "--pcap", clean, "--listen",
                                                     "10.77.0.1:18000")),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fh_env())
        try:
            _listening(srv)
            yield lab, ["--retrans-server", "10.77.0.1:18000", "--retrans-mac", _mac(lab), "--src-ip", "10.77.0.2",
                        "--igmp", "off"]
        finally:
            srv.terminate()
            srv.communicate(timeout=10)


def _listening(srv: subprocess.Popen, timeout: float = 120) -> None:
    """Until `fh retransmit-server` says it is listening. Not a fixed sleep: on a loaded host its start (the
    interpreter, the capture read) can take seconds, and requests sent before it binds go unanswered until a
    request's retries run out and its gap is given up."""
    import select

    t0, seen = time.monotonic(), b""
    while time.monotonic() - t0 < timeout:
        if select.select([srv.stderr], [], [], 0.1)[0]:
            chunk = os.read(srv.stderr.fileno(), 65536)  # raw: what the text wrapper never buffered
            seen += chunk
            if b"listening on" in seen:
                return
            if not chunk:
                raise AssertionError(f"fh retransmit-server ended ({srv.wait()}): {seen.decode(errors='replace')}")
    raise AssertionError(f"fh retransmit-server did not listen within {timeout} s: {seen.decode(errors='replace')}")


def _mac(lab) -> str:
    out = subprocess.run([*sender.netns_argv(lab.ns), "ip", "-o", "link", "show", lab.ns_if], capture_output=True, text=True,
                         check=True).stdout
    return out.split("link/ether ")[1].split()[0]


def _tail(pcap, out, n: int = 2):
    """A capture of `pcap`'s last n frames (its ends of session). Sent again after the day, as a MoldUDP64 server
    goes on sending after it, they tell a data plane whose af_packet ring dropped the day's tail on a loaded host
    (every datagram after some point, on both lines) where the day ends, so that it asks the server for the rest;
    without them it waits for that tail until its exit_idle and stops short (seen in CI: 12,097 of 20,000)."""
    b = Path(pcap).read_bytes()
    assert b[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "a little-endian pcap"
    off, frames = 24, []
    while off + 16 <= len(b):
        size = int.from_bytes(b[off + 8:off + 12], "little")
        frames.append(b[off:off + 16 + size])
        off += 16 + size
    Path(out).write_bytes(b[:24] + b"".join(frames[-n:]))
    return out


@pytest.mark.netns
@pytest.mark.parametrize("plan_name", ["both_lines", "both_lines_twice_and_a_silent_b"])
def test_live_gap_filled_by_retransmission(day, messages, clean, clean_books, tmp_path, plan_name):
    first = _seq_of(day, 30)
    plan = [{"line": "both", "kind": "drop", "seq": first, "count": 3}]
    if plan_name != "both_lines":
        plan += [{"line": "both", "kind": "drop", "seq": _seq_of(day, 200), "count": 40},
                 {"line": "B", "kind": "silence", "at": 400}]
    pcap, inj = _synth(tmp_path, day, plan)
    lost = sum(r["messages"] for r in inj["lost_on_all_lines"])
    name = f"rec-{uuid.uuid4().hex[:8]}"
    seg = f"/dev/shm/fh-{name}"
    with _server_lab(clean) as (lab, retrans):
        eal = ["--no-pci", "--no-shconf", "--no-huge", "-m", "256", "--file-prefix", f"fh-{name}", "-l",
               str(process.poll_core()), "--log-level", "lib.eal:error", "--no-telemetry", "--vdev",
               f"net_af_packet0,iface={lab.dp_if}"]
        extra = [*retrans, "--src-port", "40000", "--gap-wait-us", "3000"]
        # exit-idle 6 s: on a loaded machine the sender can stall for over a second, and a data plane that stopped
        # there would hold a true prefix of the day (live, not stale), not the day's books
        dp = process.Dataplane(process.dataplane_cmd(eal, seg, replay.pcap_lines(pcap), exit_idle_ms=6000,
                                                   events=1 << 18, extra=extra))
        try:
            time.sleep(0.5)  # the port up
            snd = subprocess.run(lab.sender_argv(pcap, sender.parse_pace("max", 20000)), capture_output=True,
                                 text=True, timeout=120)
            assert snd.returncode == 0, snd.stderr
            tail = _tail(pcap, tmp_path / "tail.pcap")
            for _ in range(3):  # the server's ends of session after the day
                time.sleep(0.3)
                snd = subprocess.run(lab.sender_argv(tail, sender.parse_pace("max", 1000)), capture_output=True,
                                     text=True, timeout=60)
                assert snd.returncode == 0, snd.stderr
            stats = dp.wait(120)
        finally:
            dp.close()
    books, status, events, _, dp_stats = _segment(seg)
    assert stats["feed"]["next_seq"] == len(messages) + 1, "the data plane stopped before the day's end"
    assert replay.diff_books(books, clean_books) == [] and books == clean_books
    m = stats["mold"]
    assert m["lost"] == 0 and m["unrecoverable"] == 0
    # At least what the plan lost on both lines came from the server: more when a loaded machine's kernel also
    # dropped frames of both lines on the veth (af_packet's ring), which the same recovery fills.
    assert m["recovered_retrans"] >= lost and m["requests"] >= len(inj["lost_on_all_lines"])
    assert stats["retransmission"]["requests_sent"] == m["requests"]
    assert stats["arp"]["replies_sent"] >= 1  # the server's kernel asked for our address
    assert set(status.values()) == {"live"} and not [e for e in events if e["type"] == "stale"]
    assert stats["lines"][2]["kind"] == "retransmission" and stats["lines"][2]["won"] == m["recovered_retrans"]
    # gaps counts holes; gaps_filled the periods of recovery that ended with nothing lost (one may span holes)
    assert 1 <= stats["gaps_filled"]["count"] <= m["gaps"] and stats["gaps_filled"]["max_ns"] > 3_000_000  # the wait
    if plan_name != "both_lines":
        assert dp_stats["lines"][1]["messages"] < dp_stats["lines"][0]["messages"]


@pytest.mark.netns
def test_net_pcap_feed_with_the_server_on_a_second_port(day, clean, clean_books, tmp_path):
    """The fault plan replayed from net_pcap at top speed; the requests go out, and the replies come back, on a
    second port (net_af_packet on a veth pair into the server's namespace): the gap is filled while what
    follows it waits in the hold-back buffer."""
    plan = [{"line": "both", "kind": "drop", "seq": _seq_of(day, 30), "count": 3},
            {"line": "both", "kind": "drop", "seq": _seq_of(day, 300), "count": 5},
            {"line": "A", "kind": "drop", "at": 100, "count": 4}]
    pcap, inj = _synth(tmp_path, day, plan)
    lost = sum(r["messages"] for r in inj["lost_on_all_lines"])
    name = f"rec-{uuid.uuid4().hex[:8]}"
    with _server_lab(clean) as (lab, retrans):
        eal = replay.eal_args(name, f"net_pcap0,rx_pcap={pcap}") + ["--vdev", f"net_af_packet0,iface={lab.dp_if}"]
        lines = [(*l, "net_pcap0") for l in replay.pcap_lines(pcap)]
        stats, seg = _run(pcap, tmp_path, extra=[*retrans, "--retrans-dev", "net_af_packet0"], lines=lines, eal=eal)
    books, status, events, _, _ = _segment(seg)
    assert books == clean_books
    m = stats["mold"]
    assert stats["ports"] == 2
    assert m["lost"] == 0 and m["recovered_retrans"] == lost and m["gap_messages"] >= lost
    # each line's own losses: what the plan dropped on it (the both-lines drops included)
    assert stats["lines"][0]["lost"] - stats["lines"][0]["late"] == inj["A"]["dropped"]["messages"]
    assert stats["lines"][1]["lost"] - stats["lines"][1]["late"] == inj["B"]["dropped"]["messages"] == lost
    assert set(status.values()) == {"live"} and not [e for e in events if e["type"] == "stale"]


def test_publish_filter(day, clean, clean_books, tmp_path):
    """--publish: only the named instruments' books are published (events, readers); the others are still
    built, so the published ones equal the reference's."""
    stats, seg = _run(clean, tmp_path, extra=["--publish", "AAPL,MSFT"])
    books, status, events, _, _ = _segment(seg)
    want = [b for b in clean_books if b["symbol"] in ("AAPL", "MSFT")]
    assert len(want) == 2 and books == want
    assert set(status) == {b["locate"] for b in want}
    assert events and {e["locate"] for e in events} <= set(status)
    assert stats["messages_applied"] == 20000


def test_publish_filter_errors(clean, tmp_path):
    name = f"rec-{uuid.uuid4().hex[:8]}"
    base = process.dataplane_cmd(replay.eal_args(name, f"net_pcap0,rx_pcap={clean}"), f"/dev/shm/fh-{name}",
                                [("233.54.12.111", 26477)])
    for extra, msg in [(["--publish", "TOOLONGSYM"], "1 to 8 characters"), (["--publish", " , "], "no symbol"),
                       (["--publish", "@/nonexistent"], "No such file")]:
        p = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and msg in p.stderr, (extra, p.stderr)


def test_line_source_filter(day, clean, clean_books, tmp_path):
    """--line-source: a line taken from another source than the capture's is dropped as other_group; from the
    capture's own source it is taken as ever."""
    from handler.net.pcapfile import PcapReader

    src = next(PcapReader(clean).datagrams()).src
    (ga, pa), (gb, pb) = replay.pcap_lines(clean)
    name = f"rec-{uuid.uuid4().hex[:8]}"
    eal = replay.eal_args(name, f"net_pcap0,rx_pcap={clean}")
    stats, seg = _run(clean, tmp_path, lines=[(ga, pa)], eal=eal, extra=["--line-source", src])
    books, _, _, _, _ = _segment(seg)
    assert books == clean_books and stats["drops"]["other_group"] == stats["packets"] // 2
    name = f"rec-{uuid.uuid4().hex[:8]}"
    eal = replay.eal_args(name, f"net_pcap0,rx_pcap={clean}")
    stats, seg = _run(clean, tmp_path, lines=[(ga, pa)], eal=eal, extra=["--line-source", "10.99.99.99"])
    _segment(seg)
    assert stats["messages_applied"] == 0 and stats["drops"]["other_group"] == stats["packets"]
