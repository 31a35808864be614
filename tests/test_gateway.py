"""fh gateway against real nats-server processes (no mock): a three-node cluster on loopback with JetStream
R3. A subscriber on one node receives every BBO published through another; a node killed mid-stream does
not stop the stream; a JetStream replay from the start equals the live sequence; a frozen server makes the
gateway conflate and count, never wait; no server is a one-line error."""

import asyncio
import json
import os
import shutil
import signal
import sys
import time

import pytest

from conftest import ROOT, fh, publisher
from handler import native

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None,
                                reason="nats-server is not installed (scripts/setup.sh installs it: apt-get install nats-server)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from handler.gateway.natsrv import start_cluster

    c = start_cluster(3, tmp_path_factory.mktemp("nats"))
    yield c
    c.stop()


def ring_events(name: str, kind: int) -> list[dict]:
    """Every event of a type that the segment's ring holds, as the gateway should publish it."""
    from handler._native import lib
    from handler.shm import Reader

    out = []
    with Reader(name) as r:
        nxt = r.oldest()
        assert nxt == 1, "the ring has wrapped: give the publisher more --events"
        while True:
            arr, nxt, lost = r.read_events(nxt)
            assert not lost
            if not len(arr):
                return out
            for ev in arr[arr["type"] == kind]:
                sym = r.symbol_of(int(ev["locate"]))
                if kind == lib.FH_EV_BBO:
                    out.append((sym, int(ev["seq"]), int(ev["itch_ts"]), int(ev["c"]), int(ev["a"]), int(ev["d"]), int(ev["b"])))
                else:
                    out.append((sym, int(ev["seq"]), int(ev["itch_ts"]), int(ev["c"]), int(ev["a"]), int(ev["b"])))


def bbo_tuple(subject: str, d: dict) -> tuple:
    return (subject.split(".")[2], d["seq"], d["ts"], d["bid"], d["bid_shares"], d["ask"], d["ask_shares"])


class Sub:
    """A real subscriber on one node."""

    def __init__(self, url: str, subject: str):
        self.url, self.subject, self.msgs = url, subject, []

    async def __aenter__(self):
        import nats

        self.nc = await nats.connect(self.url, max_reconnect_attempts=-1)

        async def cb(m):
            self.msgs.append((m.subject, json.loads(m.data)))

        await self.nc.subscribe(self.subject, cb=cb, pending_msgs_limit=10_000_000, pending_bytes_limit=-1)
        await self.nc.flush()
        return self

    async def settle(self, quiet: float = 1.0):
        n = -1
        while n != len(self.msgs):
            n = len(self.msgs)
            await asyncio.sleep(quiet)

    async def __aexit__(self, *exc):
        await self.nc.drain()


def test_every_bbo_through_another_node(cluster, tmp_path):
    from handler._native import lib

    day = tmp_path / "day.itch"
    native.synth_file(day, 30_000, 30, seed=5151)
    with publisher(day, "--events", str(1 << 20)) as (name, _):
        want_bbo = ring_events(name, lib.FH_EV_BBO)
        want_trades = ring_events(name, lib.FH_EV_TRADE)

        async def main():
            async with Sub(cluster.urls[0], f"fh.{name}.>") as sub:
                p = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "handler", "gateway", "--name", name, "--server", cluster.urls[1],
                    "--from-start", "--idle-timeout", "1", "--stream-replicas", "3", "--json",
                    env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE)
                out, err = await p.communicate()
                assert p.returncode == 0, err.decode()
                await sub.settle()
                return json.loads(out), sub.msgs

        res, msgs = asyncio.run(main())
    got_bbo = [bbo_tuple(s, d) for s, d in msgs if s.endswith(".bbo")]
    assert len(want_bbo) > 5000
    assert got_bbo == want_bbo
    got_trades = [(s.split(".")[2], d["seq"], d["ts"], d["price"], d["shares"], d["match"]) for s, d in msgs if s.endswith(".trade")]
    assert got_trades == want_trades
    books = [d for s, d in msgs if s.endswith(".book")]
    assert books and all(d["bids"] or d["asks"] for d in books)
    status = [d for s, d in msgs if s == f"fh.{name}.status"]
    assert status[0]["event"] == "start" and status[-1]["event"] == "stop"
    assert status[-1]["counters"]["bbo"] == len(want_bbo)
    c = res["counters"]
    assert c["bbo"] == len(want_bbo) and c["trades"] == len(want_trades)
    assert c["bbo_conflated"] == c["trades_dropped"] == c["overrun_events"] == c["publish_errors"] == 0
    assert all(isinstance(d["pub_ns"], int) and d["pub_ns"] <= d["gw_ns"] for s, d in msgs if s.endswith(".bbo"))
    # a late joiner on the third node: examples/nats_subscriber.py replays the stream from the start
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "examples" / "nats_subscriber.py"), "--server", cluster.urls[2],
                        "--feed", name, "--replay", "--count", str(len(want_bbo)), "--seconds", "60"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    replay = [json.loads(line) for line in r.stdout.splitlines()]
    assert [bbo_tuple(d.pop("subject"), d) for d in replay] == want_bbo


def test_node_killed_mid_stream_and_jetstream_replay(tmp_path):
    """A cluster of its own (a node is killed). The stream's leader is moved off the node to be killed first,
    so that what the test checks is the stream carrying on, not the election of a new leader."""
    import nats
    from nats.js.api import DeliverPolicy, StreamConfig

    from handler.gateway.gateway import Gateway
    from handler.gateway.natsrv import start_cluster
    from handler.gateway.settings import Gateway as Settings

    day = tmp_path / "day.itch"
    native.synth_file(day, 60_000, 50, seed=6262)  # ~32 k BBOs: killed after 5 k
    with start_cluster(3, tmp_path / "nats") as c, publisher(day, "--events", str(1 << 20)) as (name, _):
        stream = f"FH_{name}"

        async def main():
            nc = await nats.connect(c.urls[0])
            js = nc.jetstream(timeout=15)
            deadline = time.monotonic() + 30
            while True:
                try:
                    await js.add_stream(StreamConfig(name=stream, subjects=[f"fh.{name}.>"], num_replicas=3,
                                                     max_age=86400.0, storage="file"))
                    break
                except Exception:
                    assert time.monotonic() < deadline, "JetStream did not come up"
                    await asyncio.sleep(0.25)
            for _ in range(60):  # a loaded host answers JetStream API requests slowly: retry, do not fail
                try:
                    info = await js.stream_info(stream)
                    if info.cluster.leader != "n3" and len([r for r in info.cluster.replicas or [] if r.current]) == 2:
                        break
                    if info.cluster.leader == "n3":
                        await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
                except Exception:
                    pass
                await asyncio.sleep(0.5)
            assert (await js.stream_info(stream)).cluster.leader != "n3"

            s = Settings(servers=(c.urls[1],), stream_replicas=3, book_interval_ms=50)
            gw = Gateway(name, s, name, start="oldest")
            async with Sub(c.urls[0], f"fh.{name}.*.bbo") as sub:
                await gw.connect()
                run = asyncio.create_task(gw.run(idle_timeout=1.5))
                while len(sub.msgs) < 5000:
                    await asyncio.sleep(0.01)
                c.nodes[2].kill()  # n3, mid-stream
                killed_at = len(sub.msgs)
                res = await run
                await sub.settle()
            live = [bbo_tuple(s, d) for s, d in sub.msgs]
            # late joiner: the whole stream from the start, through JetStream (on the surviving n1). If the killed
            # node led the JetStream meta group, a new leader is elected first (5-7 s here), and the API requests
            # sent meanwhile go unanswered: short attempts, retried, find the new leader within a second of its
            # election. With the 15 s of `js`, a request sent just after the election could still wait out its
            # whole timeout, twice (subscribed 31-51 s after the kill, against 5-8 s with 2 s attempts).
            jsr = nc.jetstream(timeout=2)
            replay = []
            deadline = time.monotonic() + 90
            while True:
                try:
                    psub = await jsr.subscribe(f"fh.{name}.*.bbo", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
                    break
                except Exception:
                    assert time.monotonic() < deadline, "no consumer could be created on the surviving nodes"
                    await asyncio.sleep(1)
            while len(replay) < len(live):
                try:
                    m = await psub.next_msg(timeout=5)
                except Exception:
                    break
                replay.append(bbo_tuple(m.subject, json.loads(m.data)))
            for _ in range(30):
                try:
                    info = await jsr.stream_info(stream)
                    break
                except Exception:
                    await asyncio.sleep(1)
            await nc.close()
            return res, live, replay, killed_at, info

        res, live, replay, killed_at, info = asyncio.run(main())
        want = ring_events(name, __import__("handler._native", fromlist=["lib"]).lib.FH_EV_BBO)
    assert killed_at < len(want) // 2, "the node was killed too late to be mid-stream"
    assert live == want  # the subscriber's node and the gateway's node never went away
    assert replay == live
    assert res["counters"]["bbo"] == len(want)
    assert info.state.messages >= len(want)


def test_frozen_server_conflates_and_counts(tmp_path):
    """A NATS server that stops reading (SIGSTOP): the gateway keeps following the ring at its own pace,
    conflates BBOs, drops trades, counts both, and exits on time."""
    from handler.gateway.gateway import Gateway
    from handler.gateway.natsrv import start_cluster
    from handler.gateway.settings import Gateway as Settings

    day = tmp_path / "day.itch"
    native.synth_file(day, 150_000, 50, seed=7373)
    with start_cluster(1, tmp_path / "nats") as c, publisher(day, "--events", str(1 << 20)) as (name, _):
        async def main():
            gw = Gateway(name, Settings(servers=tuple(c.urls), stream=False, max_pending_kb=64), name, start="oldest")
            await gw.connect()
            c.nodes[0].proc.send_signal(signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                res = await asyncio.wait_for(gw.run(idle_timeout=0.5), 60)
                return res, time.monotonic() - t0
            finally:
                c.nodes[0].proc.send_signal(signal.SIGCONT)

        res, took = asyncio.run(main())
    k = res["counters"]
    assert k["events"] > 50_000 and k["overrun_events"] == 0
    assert k["bbo_conflated"] > 0 and k["trades_dropped"] > 0
    assert k["bbo"] + k["bbo_conflated"] < k["events"]
    assert took < 30


def test_no_server_is_one_line(tmp_path):
    from handler.gateway.natsrv import free_port

    day = tmp_path / "day.itch"
    native.synth_file(day, 5000, 5, seed=1)
    with publisher(day) as (name, _):
        r = fh("gateway", "--name", name, "--server", f"nats://127.0.0.1:{free_port()}", check=False, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no NATS server at nats://127.0.0.1:" in lines[0] and "nats-server" in lines[0], r.stderr
    r = fh("gateway", "--name", "fh-no-such-instance-19", "--server", "nats://127.0.0.1:4222", check=False, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("url", ["notaurl", "nats://:abc", "nats://h:99999", "http://h:4222"])
def test_bad_server_url_is_one_line(url):
    """--server notaurl was an IndexError, nats://:abc a ValueError (tracebacks): now the check [gateway] servers
    has, before anything is opened."""
    r = fh("gateway", "--name", "fh-no-such-instance-19", "--server", url, check=False, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"argument --server: {url!r} must be a NATS URL" in r.stderr and "nats://10.0.0.1:4222" in r.stderr


def test_gateway_config_section(tmp_path):
    from handler.config import ConfigError, load

    base = '[instance]\nname = "gw"\n[feed]\nlines = [{name = "A", group = "233.54.12.111", port = 26477}]\n[nic]\nvdev = "net_pcap0"\n'
    f = tmp_path / "fh.toml"
    f.write_text(base + '[gateway]\nservers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]\nconflate_bbo_ms = 5\nstream_replicas = 3\n')
    g = load(f).gateway
    assert g.servers == ("nats://10.0.0.1:4222", "nats://10.0.0.2:4222") and g.conflate_bbo_ms == 5 and g.stream_replicas == 3
    assert g.spin_us == 50
    f.write_text(base)
    assert load(f).gateway.servers == ("nats://127.0.0.1:4222",)
    for bad, key in (('servers = ["10.0.0.1"]', "gateway.servers"), ("book_depth = 0", "gateway.book_depth"),
                     ('feed = "a.b"', "gateway.feed"), ("colour = 1", "gateway.colour"), ("spin_us = -1", "gateway.spin_us"),
                     ('servers = ["nats://h:99999"]', "gateway.servers")):
        f.write_text(base + "[gateway]\n" + bad + "\n")
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load(f)


def test_stale_and_recovered_books_on_status(cluster, tmp_path):
    """A book marked stale (a gap the data plane could not fill) and then recovered: the gateway says so on
    fh.<feed>.status at once, in order with the book's BBO changes."""
    from handler.gateway.gateway import Gateway
    from handler.gateway.settings import Gateway as Settings
    from handler.segments import writer_path

    name = f"gwst-{os.getpid()}"
    data = native.synth_bytes(5000, 5, seed=12)
    seg = native.Segment(writer_path(name, native.segment_footprint(1 << 16, 1 << 16)), name, max_levels=1 << 16,
                         event_capacity=1 << 16)
    try:
        eng = native.Engine(native.EngineConfig.for_input(len(data)), segment=seg)
        eng.apply_blocks(data)
        loc = eng.locates()[0]
        sym = eng.info(loc)["symbol"]
        eng.set_status(loc, True)
        eng.set_status(loc, False)

        async def main():
            async with Sub(cluster.urls[0], f"fh.{name}.status") as sub:
                gw = Gateway(name, Settings(servers=(cluster.urls[1],), stream=False), name, start="oldest")
                await gw.connect()
                await gw.run(idle_timeout=0.5)
                await sub.settle(0.5)
                return [d for _, d in sub.msgs]

        msgs = asyncio.run(main())
    finally:
        seg.close(unlink=True)
    events = [(d["event"], d.get("symbol")) for d in msgs if "event" in d]
    assert events == [("start", None), ("stale", sym), ("recovered", sym), ("stop", None)]


def test_c_formatter_writes_what_python_writes(tmp_path):
    """fh_gw_format (fh/gwfmt.h), the gateway's fast path, against its Python formatting: the PUB commands of
    every BBO change and trade of a published day, byte for byte (gw_ns pinned, as both take it per batch)."""
    import numpy as np

    from handler.gateway import gateway as G
    from handler.gateway.gateway import Gateway
    from handler.gateway.settings import Gateway as Settings

    day = tmp_path / "day.itch"
    native.synth_file(day, 30_000, 30, seed=4343)
    with publisher(day, "--events", str(1 << 20)) as (name, _):
        gw = Gateway(name, Settings(servers=("nats://127.0.0.1:1",), stream=False), name, start="oldest")
        parts, nxt = [], gw.r.oldest()
        while True:
            a, nxt, lost = gw.r.read_events(nxt, gw.r.EVENT_BATCH)
            assert lost == 0
            if not len(a):
                break
            parts.append(a)
        arr = np.empty(sum(len(p) for p in parts), parts[0].dtype)  # the ring's layout (concatenate would pack it)
        i = 0
        for p in parts:
            arr[i:i + len(p)] = p
            i += len(p)
        assert len(arr) > 5000 and arr.dtype.itemsize == G.EVENT_SIZE
        sent: list[bytes] = []

        async def capture(cmds, n=0):
            sent.append(b"".join(cmds))
            return True

        gw._send = capture
        gw._backlogged = lambda: False  # no server here: nothing waits to be sent
        real_time_ns = G.time.time_ns
        G.time.time_ns = lambda: 1_700_000_000_123_456_789
        used = []
        real_c = gw._batch_c

        async def counted(arr, pub):
            used.append(await real_c(arr, pub))
            return used[-1]

        gw._batch_c = counted
        try:
            for chunk in np.array_split(arr, 7):
                asyncio.run(gw._batch(chunk))
            assert used and all(used), f"the C path was not taken: {used}"
            fast, sent[:] = b"".join(sent), []
            async def no_c(arr, pub):
                return False
            gw._batch_c = no_c
            for chunk in np.array_split(arr, 7):
                asyncio.run(gw._batch(chunk))
            slow = b"".join(sent)
        finally:
            G.time.time_ns = real_time_ns
        gw.r.close()
    assert fast.count(b"PUB ") > 5000 and b'"pub_ns":' in fast
    assert fast == slow


@pytest.mark.parametrize("long_feed", [False, True])
def test_c_pump_writes_what_python_writes(tmp_path, long_feed):
    """fh_gw_pump (fh/gwfmt.h), the gateway's follow loop in C, against the Python path: reading the ring itself,
    in calls cut short by a small buffer, it writes the PUB commands of every BBO change and trade byte for byte
    as the Python formatting does, consumes every event, marks the changed books and stops at nothing else.
    long_feed: subject prefixes too long for the C slots: every event goes through the Python path from the pump."""
    import numpy as np

    from handler.gateway import gateway as G
    from handler.gateway.gateway import Gateway
    from handler.gateway.settings import Gateway as Settings

    day = tmp_path / "day.itch"
    native.synth_file(day, 30_000, 30, seed=4344)
    with publisher(day, "--events", str(1 << 20)) as (name, _):
        feed = "f" * 130 if long_feed else name
        gw = Gateway(name, Settings(servers=("nats://127.0.0.1:1",), stream=False), feed, start="oldest")
        sent: list[bytes] = []

        async def capture(cmds, n=0):
            sent.append(b"".join(cmds))
            return True

        gw._send = capture
        gw._backlogged = lambda: False
        gw._pump_cap = 4096  # many calls, each stopped by a full buffer
        gw._p.gw_ns = 1_700_000_000_123_456_789
        gw._p.next = first = gw.r.oldest()
        real_time_ns = G.time.time_ns
        G.time.time_ns = lambda: 1_700_000_000_123_456_789  # the Python path's gw_ns
        calls = 0
        try:
            while True:
                calls += 1
                before = gw._p.events
                asyncio.run(gw._pump())
                if gw._p.events == before:
                    break
        finally:
            G.time.time_ns = real_time_ns
        fast, sent[:] = b"".join(sent), []
        head = gw.r.head
        assert gw._p.next == head + 1 and gw.counters["events"] == head - first + 1 and gw.counters["overrun_events"] == 0
        dirty = set(np.flatnonzero(gw._dirty_map).tolist()) | gw._dirty_books  # C's marks, and the Python path's

        G.time.time_ns = lambda: 1_700_000_000_123_456_789
        gw._dirty_books.clear()

        async def no_c(arr, pub):
            return False

        gw._batch_c = no_c
        try:
            nxt = first
            while True:
                a, nxt, lost = gw.r.read_events(nxt, gw.r.EVENT_BATCH)
                if not len(a):
                    break
                asyncio.run(gw._batch(a))
        finally:
            G.time.time_ns = real_time_ns
        slow = b"".join(sent)
        gw.r.close()
    assert (calls > 10 or long_feed) and fast.count(b"PUB ") > 5000 and b'"pub_ns":' in fast
    assert (b"PUB fh." + b"f" * 130 in fast) == long_feed
    assert gw._last_seq == head
    assert fast == slow
    assert dirty == gw._dirty_books


def test_follower_wait_and_clock(tmp_path):
    """fh_gw_wait (the follower's wait: adaptive spin, then the ring's futex): returns at once when the head is
    past `seen`, times out with nothing new, and is woken by the writer's publish from its futex sleep, each
    counted; a spin that catches nothing shrinks to none. TscClock: after a refresh, a TSC read converts to the
    wall time read with it within 20 us (the segment's own tsc_hz, off by ~100 ppm on a loaded VM, drifts
    that much in 0.2 s)."""
    import threading

    from handler._native import ffi, lib
    from handler.gateway.gateway import TscClock, clock_pair
    from handler.segments import writer_path
    from handler.shm import Reader

    name = f"gwwait-{os.getpid()}"
    data = native.synth_bytes(2000, 3, seed=3)
    half = native.blocks_prefix(data, 500)
    seg = native.Segment(writer_path(name, native.segment_footprint(1 << 16, 1 << 16)), name, max_levels=1 << 16,
                         event_capacity=1 << 16)
    try:
        eng = native.Engine(native.EngineConfig.for_input(len(data)), segment=seg)
        eng.apply_blocks(data[:half])
        with Reader(name) as r:
            w = ffi.new("fh_gw_wait_t *")
            w.max_spin_ns = w.spin_ns = 20_000
            head = r.head
            assert head > 0 and lib.fh_gw_wait(r._r, head - 1, 1_000_000, w) == head and w.ready == 1
            assert lib.fh_gw_wait(r._r, head, 5_000_000, w) == head
            assert w.timeouts == 1 and w.sleeps == 1 and w.spin_hits == 0 and w.spin_ns == 10_000  # halved
            got = []
            t = threading.Thread(target=lambda: got.append(lib.fh_gw_wait(r._r, head, 5_000_000_000, w)))
            t.start()
            time.sleep(0.2)  # asleep on the futex by now
            eng.apply_blocks(data[half:])
            t.join(5)
            assert not t.is_alive() and got and got[0] > head
            assert w.sleeps == 2 and w.timeouts == 1 and w.waits == 3
            if r.tsc_hz and clock_pair():
                clk = TscClock(r.tsc_hz)
                clk.REFRESH_S = 0.2
                time.sleep(0.25)
                assert clk.refresh(time.monotonic())
                tsc0, ns0, per = clk.cal
                time.sleep(0.2)
                tsc, ns = clock_pair()
                assert abs(ns0 + (tsc - tsc0) * per - ns) < 20_000
    finally:
        seg.close(unlink=True)


def test_take_dirty():
    """fh_gw_take_dirty: the marked locates, in order, each unmarked as it is taken (the loop takes the marks
    the follower thread's fh_gw_pump makes, without a lock)."""
    import numpy as np

    from handler._native import ffi, lib

    m = np.zeros(65536, np.uint8)
    m[[0, 7, 300, 65535]] = 1
    out = np.zeros(65536, np.uint16)
    n = lib.fh_gw_take_dirty(ffi.from_buffer("uint8_t[]", m), len(m), ffi.from_buffer("uint16_t[]", out))
    assert out[:n].tolist() == [0, 7, 300, 65535] and not m.any()
    assert lib.fh_gw_take_dirty(ffi.from_buffer("uint8_t[]", m), len(m), ffi.from_buffer("uint16_t[]", out)) == 0


@pytest.mark.parametrize("source,depth,cap,long_feed", [("synth", 10, 0, False), ("synth", 64, 0, False),
                                                        ("synth", 10, 4000, False), ("synth", 10, 0, True),
                                                        ("real", 10, 0, False)])
def test_c_books_write_what_python_writes(tmp_path, source, depth, cap, long_feed):
    """The book tick (Gateway._books through fh_gw_books) against the Python formatter (_book_py) on a published
    day: every locate marked dirty (most hold no instrument: skipped), the PUB commands of every book byte for byte.
    cap: a buffer too small for one tick: each tick sends what fits and leaves the rest dirty. long_feed: subject
    prefixes too long for the C slots: those books go through _book_py from the tick."""
    import numpy as np

    from conftest import real_itch_files, why_no_real
    from handler._native import ffi
    from handler.gateway import gateway as G
    from handler.gateway.gateway import Gateway
    from handler.gateway.settings import Gateway as Settings

    if source == "real":
        if why_no_real():
            pytest.skip(why_no_real())
        day = [p for p in real_itch_files() if "0930" in p.name][0]
    else:
        day = tmp_path / "day.itch"
        native.synth_file(day, 40_000, 40, seed=4345)
    GW = 1_700_000_000_123_456_789
    with publisher(day, "--events", str(1 << 20)) as (name, _):
        gw = Gateway(name, Settings(servers=("nats://127.0.0.1:1",), stream=False, book_depth=depth),
                     "f" * 130 if long_feed else name)
        sent: list[tuple[bytes, int]] = []

        async def capture(cmds, n=0):
            sent.append((b"".join(cmds), n))
            return True

        gw._send = capture
        gw._backlogged = lambda: False
        gw._last_seq = gw.r.head
        if cap:  # prefixes made beforehand: a tick stops at a full buffer, not at a missing prefix
            assert gw._c_prefixes(gw.r.locates().astype(np.int64))
            gw._cbuf = bytearray(cap)
            gw._cout = ffi.from_buffer(gw._cbuf)
        everything = set(range(65536))
        gw._dirty_books = set(everything)
        real_time_ns = G.time.time_ns
        G.time.time_ns = lambda: GW
        try:
            ticks = 0
            while gw._dirty_books:
                ticks += 1
                asyncio.run(gw._books())
                assert ticks < 1000
            fast = b"".join(d for d, _ in sent)
            slow = [gw._book_py(loc, GW) for loc in sorted(everything)]
        finally:
            G.time.time_ns = real_time_ns
        slow = [c for c in slow if c is not None]
        symbols = {gw.r.symbol_of(loc) for loc in range(65536) if gw._csubj_len[loc]}
        gw.r.close()
    assert len(slow) >= (5 if source == "real" else 40)
    assert fast == b"".join(slow)
    assert sum(n for _, n in sent) == len(slow) == gw.counters["books"]
    assert (ticks > 1) == bool(cap), (ticks, len(fast), len(slow))
    assert (len(symbols) == 0) == long_feed and (long_feed or len(symbols) == len(slow))
    levels = 0
    for cmd in slow:  # the frames themselves: NATS framing, and JSON whose levels are best first
        head, body, tail = cmd.split(b"\r\n")
        assert tail == b"" and head.startswith(b"PUB fh.") and head.endswith(b".book %d" % len(body))
        d = json.loads(body)
        assert d["seq"] == gw._last_seq and d["gw_ns"] == GW and d["status"] == "live"
        assert d["trading_state"] in ("T", "H", "P", "Q", " ", "\x00")
        assert len(d["bids"]) <= depth and len(d["asks"]) <= depth
        assert [b[0] for b in d["bids"]] == sorted((b[0] for b in d["bids"]), reverse=True)
        assert [a[0] for a in d["asks"]] == sorted(a[0] for a in d["asks"])
        levels += len(d["bids"]) + len(d["asks"])
    assert levels > len(slow)


def test_follower_error_reaches_the_loop(cluster, tmp_path):
    """An error in the follower thread is raised by run() (at once, not after an idle timeout): a gateway
    whose follower died must not go on waiting as if the ring were quiet."""
    from handler.gateway.gateway import Gateway
    from handler.gateway.settings import Gateway as Settings

    day = tmp_path / "day.itch"
    native.synth_file(day, 5000, 5, seed=8)
    with publisher(day, "--events", str(1 << 16)) as (name, _):
        gw = Gateway(name, Settings(servers=(cluster.urls[0],), stream=False), name, start="oldest")

        def broken(k):
            raise ValueError("pump broke")

        gw._pump_once = broken

        async def main():
            t0 = time.monotonic()
            with pytest.raises(ValueError, match="pump broke"):
                await asyncio.wait_for(gw.run(idle_timeout=30), 20)
            return time.monotonic() - t0

        assert asyncio.run(main()) < 10
