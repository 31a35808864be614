"""Feed integrity through the real data plane (fh-dataplane on net_pcap; with a retransmission server on a
veth pair where a test needs one): adversarial captures of our own, each ending with books equal to the
reference (handler.replay.Sequencer: the data plane's rules in Python) or every affected book stale with
counters naming why; and random interleavings of real and corrupt datagrams on two lines checked against
the invariant "a book is either equal to the reference for the messages applied, or marked stale"."""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from conftest import ROOT, ab_lines, fh, why_no_af_packet, why_no_netns
from test_recovery import _mac, _run, _segment, _server_lab
from handler import native, process, replay
from handler.net import pcapgen, sender

pytestmark = pytest.mark.dpdk  # the real data plane (skipped by conftest where DPDK is not built)

SESSION = pcapgen.DEFAULT_SESSION.encode().ljust(10)


@pytest.fixture(scope="module")
def day():
    return native.synth_bytes(8000, 10, 23)


@pytest.fixture(scope="module")
def grams(day):
    """The day's datagrams: [(first sequence, messages)], and the sequence after the last."""
    out, seq = [], 1
    for _, msgs in pcapgen.packetize(day):
        out.append((seq, msgs))
        seq += len(msgs)
    return out, seq


@pytest.fixture(scope="module")
def clean_books(grams, tmp_path_factory):
    pcap = tmp_path_factory.mktemp("integrity") / "clean.pcap"
    _write(pcap, _clean(grams))
    return replay.reference_books(pcap)[0]


def _dgram(seq: int, msgs: list[bytes], session: bytes = SESSION, count: int | None = None) -> bytes:
    return pcapgen.mold_datagram(session, seq, msgs, count)


def _clean(grams, skip: int = 0) -> list[tuple[int, bytes]]:
    """(line, payload) in order: A then B for each datagram (from datagram `skip`), then end of session."""
    g, nxt = grams
    frames = []
    for seq, msgs in g[skip:]:
        frames += [(0, _dgram(seq, msgs)), (1, _dgram(seq, msgs))]
    return frames + [(0, _dgram(nxt, [], count=0xFFFF)), (1, _dgram(nxt, [], count=0xFFFF))]


def _write(path, frames) -> None:
    framers = [pcapgen.Framer(l) for l in ab_lines()]
    w = pcapgen.PcapWriter(path)
    for i, (line, payload) in enumerate(frames):
        w.write(pcapgen.BASE_EPOCH_NS + i * 1000, framers[line].frame(payload))
    w.close()


def _check(pcap, tmp_path, extra=()):
    """Replay; check the invariant book by book; return (stats, books, status, the reference's sequencing)."""
    stats, seg = _run(pcap, tmp_path, extra=extra)
    books, status, events, _, dp = _segment(seg)
    want, counters = replay.reference_books(pcap)
    info = counters["sequencing"]
    got = {b["locate"]: b for b in books}
    exp = {b["locate"]: b for b in want}
    for loc in set(got) | set(exp):
        assert got.get(loc) == exp.get(loc) or status.get(loc) == "stale", f"locate {loc}: wrong and not stale"
    if not info["stale"]:  # nothing missing: the very books of the reference, all live
        assert books == want and set(status.values()) <= {"live"}
        assert stats["feed"]["state"] in ("live", "ended")
    else:  # something missing: the data plane says so
        assert stats["feed"]["state"] == "stale" and set(status.values()) == {"stale"}
    m = stats["mold"]
    assert m["unrecoverable"] <= m["gaps"]
    assert m["applied"] == stats["messages_applied"] == stats["latency_ns"]["count"]
    assert m["gap_messages"] == m["recovered_lines"] + m["recovered_retrans"] + m["lost"]
    return stats, books, status, info


def _at(grams, frac: float) -> int:
    return int(len(grams[0]) * frac)


def test_random_payload_datagrams_are_refused(grams, clean_books, tmp_path):
    rng = random.Random(1)
    frames = _clean(grams)
    k = 2 * _at(grams, 0.3)
    junk = [(0, bytes(rng.randrange(256) for _ in range(n))) for n in [0, 1, 19, 20, 21, 22, 40, 300]
            + [rng.randrange(1, 1400) for _ in range(40)]]
    frames[k:k] = junk
    pcap = tmp_path / "junk.pcap"
    _write(pcap, frames)
    stats, books, _, _ = _check(pcap, tmp_path)
    assert books == clean_books
    m = stats["mold"]
    assert m["malformed"] + m["bogus_session"] + m["suspect"] == len(junk)  # each refused and counted
    assert m["session_changes"] == 0 and stats["feed"]["session"] == "FHSYNTH001"
    assert stats["feed"]["state"] == "ended"


def test_a_datagram_of_another_session_does_not_take_the_feed(grams, clean_books, tmp_path):
    frames = _clean(grams)
    k = _at(grams, 0.3)
    seq, msgs = grams[0][k]
    frames[2 * k:2 * k] = [(0, _dgram(seq, msgs, b"HIJACK0001")), (0, _dgram(seq + 5, [], b"\xff\xfeHIJACK23", 0))]
    pcap = tmp_path / "hijack.pcap"
    _write(pcap, frames)
    stats, books, status, _ = _check(pcap, tmp_path)
    assert books == clean_books and set(status.values()) == {"live"}
    m = stats["mold"]
    assert m["bogus_session"] == 2 and m["session_changes"] == 0 and m["lost"] == 0
    assert stats["feed"]["session"] == "FHSYNTH001" and stats["feed"]["state"] == "ended"
    assert replay.reference_books(pcap)[1]["sequencing"]["bogus_session"] == 2


def test_far_jumps_are_suspect_and_cost_nothing(grams, clean_books, tmp_path):
    """10^12 ahead (data and heartbeat) on A, 10^8 ahead on B: each ignored, nothing held, the feed live."""
    frames = _clean(grams)
    g = grams[0]
    k, j = _at(grams, 0.3), _at(grams, 0.6)
    seq, msgs = g[k]
    frames[2 * j:2 * j] = [(1, _dgram(seq + 10**8, g[j][1])), (1, _dgram(seq + 10**8, [], count=0))]
    frames[2 * k:2 * k] = [(0, _dgram(seq + 10**12, msgs)), (0, _dgram(seq + 10**12, [], count=0))]
    pcap = tmp_path / "jumps.pcap"
    _write(pcap, frames)
    t0 = time.monotonic()
    stats, books, status, _ = _check(pcap, tmp_path)
    assert time.monotonic() - t0 < 60  # it used to spin for minutes
    assert books == clean_books and set(status.values()) == {"live"}
    m = stats["mold"]
    assert m["suspect"] == 4 and m["gaps"] == 0 and m["lost"] == 0 and m["hold_full"] == 0
    assert stats["feed"]["state"] == "ended"


def test_late_join_without_server_is_stale_and_says_so(grams, tmp_path):
    frames = _clean(grams, skip=40)
    joined = grams[0][40][0]
    pcap = tmp_path / "late.pcap"
    _write(pcap, frames)
    stats, books, status, info = _check(pcap, tmp_path)
    assert info["late_joins"] == [(joined, joined - 1)] and info["stale"]
    m = stats["mold"]
    assert m["joined_at"] == joined and m["join_lost"] == joined - 1 and stats["feed"]["state"] == "stale"
    assert stats["mold"]["lost"] == joined - 1 and stats["mold"]["gaps"] == 1
    assert books and set(status.values()) == {"stale"}
    p = fh("verify", pcap, check=False)
    assert p.returncode == 1 and f"joined late at {joined}; 1..{joined - 1} missing" in p.stdout, p.stdout


def test_corrupt_block_lengths_on_a_only(grams, clean_books, tmp_path):
    """From 30% of the day, 20 of A's copies misframed (a block one longer and the next one shorter: the
    datagram adds up, the messages do not; or one length past the end), B intact: B's copies win."""
    frames = _clean(grams)
    k = _at(grams, 0.3)
    for i in range(k, k + 20):
        seq, msgs = grams[0][i]
        if i % 2:
            body = struct.pack(">H", len(msgs[0]) + 1) + msgs[0] + msgs[1][:1] \
                + struct.pack(">H", len(msgs[1]) - 1) + msgs[1][1:] \
                + b"".join(struct.pack(">H", len(m)) + m for m in msgs[2:])
            p = SESSION + struct.pack(">QH", seq, len(msgs)) + body
        else:
            p = bytearray(_dgram(seq, msgs))
            p[20:22] = struct.pack(">H", 0xFFF0)
            p = bytes(p)
        assert frames[2 * i][0] == 0
        frames[2 * i] = (0, p)
    pcap = tmp_path / "lengths.pcap"
    _write(pcap, frames)
    stats, books, status, _ = _check(pcap, tmp_path)
    assert books == clean_books and set(status.values()) == {"live"}
    assert stats["mold"]["malformed"] == 20 and stats["mold"]["lost"] == 0


def test_truncated_and_overrunning_datagrams_on_a(grams, clean_books, tmp_path):
    frames = _clean(grams)
    k = _at(grams, 0.5)
    for n, i in enumerate(range(k, k + 20)):
        seq, msgs = grams[0][i]
        p = _dgram(seq, msgs)
        p = p[:-1 - n % 7] if n % 2 else p[:18] + struct.pack(">H", len(msgs) + 1) + p[20:]
        frames[2 * i] = (0, p)
    frames.insert(2 * k, (0, _dgram(grams[0][k][0], [], count=0) + b"xx"))  # a heartbeat with a body
    pcap = tmp_path / "truncated.pcap"
    _write(pcap, frames)
    stats, books, status, _ = _check(pcap, tmp_path)
    assert books == clean_books and set(status.values()) == {"live"}
    assert stats["mold"]["malformed"] == 21


def test_both_copies_corrupt_is_a_real_gap(grams, tmp_path):
    frames = _clean(grams)
    k = _at(grams, 0.4)
    seq, msgs = grams[0][k]
    bad = _dgram(seq, msgs)[:-3]
    frames[2 * k], frames[2 * k + 1] = (0, bad), (1, bad)
    pcap = tmp_path / "both.pcap"
    _write(pcap, frames)
    stats, books, status, info = _check(pcap, tmp_path, extra=["--gap-wait-us", "500"])
    assert info["missing"] == [(seq, seq + len(msgs) - 1)]
    m = stats["mold"]
    assert m["malformed"] == 2 and m["lost"] == len(msgs) and m["unrecoverable"] == 1 == m["gaps"]


def test_sigint_is_answered_quickly_under_a_flood_of_jumps(grams, tmp_path):
    """A capture of real datagrams mixed with 10^12 jumps, fed again and again through a FIFO: SIGINT ends the
    data plane (loop left, statistics printed) well within a second; the loop's own share is bounded at
    50 ms of draining."""
    import tempfile
    import threading

    g = grams[0]
    frames = []
    for i, (seq, msgs) in enumerate(g):
        frames.append((0, _dgram(seq, msgs)))
        frames.append((1, _dgram(seq + 10**12 + i * 10**9, msgs)))
        frames.append((1, _dgram(seq + 10**12, [], count=0)))
    pcap = tmp_path / "flood.pcap"
    _write(pcap, frames)
    name = f"int-{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="fh-int-")
    fifo = os.path.join(tmp, "loop.pcap")
    os.mkfifo(fifo)
    cmd = process.dataplane_cmd(replay.eal_args(name, f"net_pcap0,rx_pcap={fifo}"), f"/dev/shm/fh-{name}",
                               replay.pcap_lines(pcap), exit_idle_ms=0, keep=False)
    dp = process.Dataplane(cmd)
    n, end = replay.pcap_extent(pcap)
    feed = replay._FifoFeed(fifo, str(pcap), 10**6, end, dp)
    try:
        dp.wait_running()
        t_end = time.monotonic() + 20
        while feed.done < 4 * end and time.monotonic() < t_end:  # the flood under way
            time.sleep(0.05)
        assert feed.done >= 4 * end
        t0 = time.monotonic()
        dp.p.send_signal(signal.SIGINT)
        while not any(l.startswith("{") for l in dp._out) and time.monotonic() - t0 < 10:
            time.sleep(0.002)
        answered = time.monotonic() - t0  # the loop left, the queues drained, the statistics printed
        dp.p.wait(10)
        took = time.monotonic() - t0
        stats = dp.wait(5)
    finally:
        dp.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"SIGINT under a flood: statistics after {answered * 1000:.0f} ms, exit after {took * 1000:.0f} ms")
    assert answered < 0.5 and took < 1.0  # generous bounds for a shared machine; the drain itself stops at 50 ms
    assert stats["mold"]["suspect"] > 0 and stats["mold"]["lost"] == 0


# -- with a retransmission server (veth pair into a network namespace) ------------------------------------------

def test_late_join_is_recovered_from_the_server(grams, clean_books, tmp_path):
    """The capture begins at datagram 40: the data plane asks the server for 1..N-1 in chunks (here of 200
    messages) while it holds what comes, and ends with the clean day's books, live."""
    why = why_no_netns() or why_no_af_packet()
    if why:
        pytest.skip(why)
    clean = tmp_path / "clean.pcap"
    _write(clean, _clean(grams))
    late = tmp_path / "late.pcap"
    _write(late, _clean(grams, skip=40))
    joined = grams[0][40][0]
    name = f"int-{uuid.uuid4().hex[:8]}"
    with _server_lab(clean) as (lab, retrans):
        eal = replay.eal_args(name, f"net_pcap0,rx_pcap={late}") + ["--vdev", f"net_af_packet0,iface={lab.dp_if}"]
        lines = [(*l, "net_pcap0") for l in replay.pcap_lines(late)]
        stats, seg = _run(late, tmp_path, extra=[*retrans, "--retrans-dev", "net_af_packet0", "--request-max", "200",
                                                  "--exit-idle-ms", "1500"], lines=lines, eal=eal)
    books, status, _, _, _ = _segment(seg)
    assert books == clean_books and set(status.values()) == {"live"}
    f, m = stats["feed"], stats["mold"]
    assert m["joined_at"] == joined and m["join_lost"] == 0 and f["state"] == "ended"
    assert m["recovered_retrans"] == joined - 1 and m["lost"] == 0
    assert m["request_messages"] >= joined - 1 and m["requests"] >= (joined - 1 + 199) // 200
    assert m["applied"] == stats["messages_applied"] == grams[1] - 1


ROGUE = textwrap.dedent("""
    import socket, struct, sys
    from handler import native
    from handler.net import pcapgen
    msgs = [bytes(m) for _, m in native.iter_blocks(native.synth_bytes(8000, 10, 23))]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.77.0.1", 18000))
    while True:
        req, addr = s.recvfrom(64)
        sess, seq, count = struct.unpack(">10sQH", req[:20])
        body = msgs[seq - 1:seq - 1 + min(count, 20)]
        s.sendto(pcapgen.mold_datagram(b"ROGUE00001", seq, body), addr)
""")


def _gap_on_both_lines(grams, tmp_path):
    """A clean capture with the datagram at 30% of the day lost on both lines: (pcap, its first sequence, its
    messages, a fresh instance name)."""
    frames = _clean(grams)
    k = _at(grams, 0.3)
    del frames[2 * k:2 * k + 2]  # datagram k lost on both lines
    pcap = tmp_path / "gap.pcap"
    _write(pcap, frames)
    seq, msgs = grams[0][k]
    return pcap, seq, msgs, f"int-{uuid.uuid4().hex[:8]}"


def _gap_asked_of(script: str, addrs: tuple[str, ...], grams, tmp_path):
    """The capture of _gap_on_both_lines through the data plane (net_pcap), its retransmission requests going over
    a veth pair (net_af_packet) to SCRIPT, a Python server run in the lab's namespace on ADDRS, at most 2 retries
    20 ms apart. Checks that the books equal the reference's for the datagrams the capture holds; returns (the
    data plane's statistics, each book's status, the lost messages, the server's stdout and stderr)."""
    why = why_no_netns() or why_no_af_packet()
    if why:
        pytest.skip(why)
    pcap, seq, msgs, name = _gap_on_both_lines(grams, tmp_path)
    with sender.Lab(uuid.uuid4().hex[:6]) as lab:
        for a in addrs:
            subprocess.run([*sender.netns_argv(lab.ns), "ip", "addr", "add", a, "dev", lab.ns_if], check=True)
        srv = subprocess.Popen(lab.exec_argv([sys.executable, "-c", script]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            time.sleep(1.0)
            retrans = ["--retrans-server", "10.77.0.1:18000", "--retrans-mac", _mac(lab), "--src-ip", "10.77.0.2",
                       "--igmp", "off"]
            eal = replay.eal_args(name, f"net_pcap0,rx_pcap={pcap}") + ["--vdev",
                                                                         f"net_af_packet0,iface={lab.dp_if}"]
            lines = [(*l, "net_pcap0") for l in replay.pcap_lines(pcap)]
            stats, seg = _run(pcap, tmp_path, lines=lines, eal=eal,
                              extra=[*retrans, "--retrans-dev", "net_af_packet0", "--request-timeout-ms", "20",
                                     "--request-retries", "2", "--exit-idle-ms", "1500"])
        finally:
            srv.kill()
            out, err = srv.communicate(timeout=10)
    books, status, _, _, _ = _segment(seg)
    want, c = replay.reference_books(pcap, lines=[l[:2] for l in lines])
    assert books == want and c["sequencing"]["missing"] == [(seq, seq + len(msgs) - 1)]
    return stats, status, msgs, out, err


def test_replies_of_another_session_are_ignored(grams, tmp_path):
    """A server that answers every request with the right messages under another session's name: the replies
    are ignored (old_session), the gap runs out of retries and is given up, every book stale."""
    stats, status, msgs, _, _ = _gap_asked_of(ROGUE, ("10.77.0.1/24",), grams, tmp_path)
    m = stats["mold"]
    assert m["old_session"] >= 1 and m["recovered_retrans"] == 0 and m["request_timeouts"] == 1
    assert m["lost"] == len(msgs) and stats["feed"]["state"] == "stale" and set(status.values()) == {"stale"}


IMPOSTOR = textwrap.dedent("""
    import socket, struct, sys
    from handler import native
    from handler.net import pcapgen
    msgs = [bytes(m) for _, m in native.iter_blocks(native.synth_bytes(8000, 10, 23))]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.77.0.1", 18000))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.bind(("10.77.0.3", 18000))  # the server's port, another address
    while True:
        req, addr = s.recvfrom(64)
        sess, seq, count = struct.unpack(">10sQH", req[:20])
        body = msgs[seq - 1:seq - 1 + min(count, 20)]
        out.sendto(pcapgen.mold_datagram(sess, seq, body), addr)
        print("sent", flush=True)
""")


def test_replies_from_another_source_are_ignored(grams, tmp_path):
    """The request reaches the server, but the right replies (the feed's session, the sequences asked for) come
    from another address than --retrans-server's: the retransmission line takes its server's address only, so
    they are dropped before MoldUDP64 and counted (drops.other_group); the gap runs out of retries and is given
    up, every book stale. Without the source filter these replies would recover the gap."""
    stats, status, msgs, out, err = _gap_asked_of(IMPOSTOR, ("10.77.0.1/24", "10.77.0.3/24"), grams, tmp_path)
    sent = out.split().count("sent")
    assert sent >= 1, f"the impostor answered nothing: {err}"
    m = stats["mold"]
    assert stats["drops"]["other_group"] >= sent  # every reply dropped at the line filter, counted
    assert m["old_session"] == 0 and m["recovered_retrans"] == 0 and m["request_timeouts"] == 1
    assert m["lost"] == len(msgs) and stats["feed"]["state"] == "stale" and set(status.values()) == {"stale"}


# -- property: random interleavings of real and corrupt datagrams on two lines -----------------------------------

def _corrupt(p: bytes, rng: random.Random) -> bytes:
    seq, count = struct.unpack_from(">QH", p, 10)
    kind = rng.randrange(8)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if kind == 1:  # another session, well framed (a name of its own: a second line never confirms it)
        return b"STRAY" + str(rng.randrange(10**5)).zfill(5).encode() + p[10:]
    if kind == 2:  # far ahead
        return p[:10] + struct.pack(">Q", seq + rng.randrange(10**9, 10**12)) + p[18:]
    if kind == 3:  # a heartbeat from the future
        return p[:10] + struct.pack(">QH", seq + rng.randrange(10**9, 10**12), 0)
    if kind == 4:  # truncated
        return p[:max(0, len(p) - rng.randrange(1, 30))]
    if kind == 5:  # count overrun
        return p[:18] + struct.pack(">H", count + rng.randrange(1, 5)) + p[20:]
    if kind == 6:  # a block length off by one, the datagram still adding up
        n = struct.unpack_from(">H", p, 20)[0]
        return p[:20] + struct.pack(">H", n - 1) + p[22:22 + n - 1] + b"\x00" + p[22 + n:] if n > 1 else p[:-1]
    return p[:20] + bytes(rng.randrange(256) for _ in range(len(p) - 20))  # random body behind a good header


@pytest.mark.parametrize("seed", range(5))
def test_random_interleavings_keep_books_equal_or_stale(grams, seed, tmp_path):
    rng = random.Random(seed)
    g, nxt = grams
    frames = []
    for seq, msgs in g:
        pair = []
        for line in (0, 1):
            p = _dgram(seq, msgs)
            r = rng.random()
            if r < 0.05:
                p = _corrupt(p, rng)
            elif r < 0.07:
                continue  # lost on this line
            pair.append((line, p))
        if len(pair) == 2 and rng.random() < 0.2:
            pair.reverse()
        frames += pair
        if rng.random() < 0.03:
            frames.append((rng.randrange(2), _corrupt(_dgram(seq, msgs), rng)))
    for i in range(len(frames) - 1):  # local reorderings
        if rng.random() < 0.02:
            frames[i], frames[i + 1] = frames[i + 1], frames[i]
    frames += [(0, _dgram(nxt, [], count=0xFFFF)), (1, _dgram(nxt, [], count=0xFFFF))]
    pcap = tmp_path / f"random{seed}.pcap"
    _write(pcap, frames)
    stats, books, status, info = _check(pcap, tmp_path, extra=["--gap-wait-us", "20000"])
    assert stats["feed"]["session"] == "FHSYNTH001" and stats["mold"]["session_changes"] == 0


def test_counters_are_the_same_run_after_run(grams, tmp_path):
    """A capture with holes on both lines, holes on one, duplicates and strays, replayed twice at top speed:
    every MoldUDP64 counter is the same (holes are counted, not periods of recovery)."""
    rng = random.Random(7)
    g, nxt = grams
    frames = []
    for i, (seq, msgs) in enumerate(g):
        for line in (0, 1):
            if i % 37 == 5 or (i % 23 == 3 and line == rng.randrange(2)):
                continue  # lost on both lines, or on one
            frames.append((line, _dgram(seq, msgs)))
        if i % 41 == 9:
            frames.append((0, _corrupt(_dgram(seq, msgs), rng)))
    frames += [(0, _dgram(nxt, [], count=0xFFFF)), (1, _dgram(nxt, [], count=0xFFFF))]
    pcap = tmp_path / "twice.pcap"
    _write(pcap, frames)
    runs = [_check(pcap, tmp_path, extra=["--gap-wait-us", "20000"])[0]["mold"] for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0]["gaps"] >= runs[0]["unrecoverable"] > 0 and runs[0]["lost"] > 0
