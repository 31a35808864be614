"""fh gateway: a segment's event ring and books, published to NATS.

Subjects (FEED: [gateway] feed, default the instance name; SYM: the symbol with '.', '*', '>' and spaces
made '_', since those are special in NATS subjects):

    fh.FEED.SYM.bbo      every BBO change (or the latest per symbol every conflate_bbo_ms)
    fh.FEED.SYM.trade    every trade
    fh.FEED.SYM.book     top-N levels of each changed book, at most once per book_interval_ms
    fh.FEED.status       every status_interval_ms, and at once on a stale / recovered book

Payloads are JSON objects. Each carries `seq` (the event's sequence in the ring; for .book the last event
applied), `ts` (exchange time, ns since midnight), `pub_ns` (the data plane's publish stamp, as
CLOCK_REALTIME ns: the event's TSC stamp turned into wall-clock time with the segment's tsc_hz) and `gw_ns`
(when the gateway handed it to NATS).

The data plane never waits for the gateway (readers follow the ring by sequence). The gateway itself never
waits for NATS: past max_pending_kb of backlog (a slow or unreachable server), BBO changes conflate to the
latest per symbol and trades are dropped, each counted; a gateway that falls a whole ring behind counts the
events it lost (overrun) and goes on from the oldest one left. The counters travel in every status message.

A JetStream stream FH_FEED over fh.FEED.> (replicas from the config) keeps the day so far for late joiners.

Threads: a follower thread of the gateway's own waits for new events (fh_gw_wait: an adaptive spin, then the
ring's futex), runs the C follow loop (fh_gw_pump) into one of two buffers of at most FOLLOW_CAP bytes (the
latency budget of a hand-off: about 300 events, 60 us of formatting) and hands the filled buffer to the event
loop (call_soon_threadsafe, once per wake), which writes it straight to the connection's socket when nats-py has
nothing queued ahead of it. Both C calls run without the GIL. While conflating (by configuration, or a backlog
to NATS) the follower only waits, and the loop reads the events itself (the Python path).
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import threading
import time
from dataclasses import asdict

import numpy as np

from .._native import ffi, lib
from .settings import Gateway as Settings
from ..errors import InputError

FOLLOW_CAP = 64 << 10  # bytes of PUB commands a hand-off holds at most (the follower's buffers)
SUBJ_STRIDE = 128  # bytes a locate's subject prefix may take in the C formatter (longer: the Python path)
EVENT_SIZE = ffi.sizeof("fh_shm_event_t")

_BAD = re.compile(r"[.*> \t\x00]")


class GatewayError(InputError):
    """A user-facing error (one line)."""


def subject_token(symbol: str) -> str:
    return _BAD.sub("_", symbol) or "_"


def clock_pair() -> tuple[int, int] | None:
    """(TSC, CLOCK_REALTIME ns) read together (fh_gw_clock_pair), or None without a TSC."""
    t, n = ffi.new("uint64_t *"), ffi.new("int64_t *")
    return (int(t[0]), int(n[0])) if lib.fh_gw_clock_pair(t, n) >= 0 else None


class TscClock:
    """The events' TSC stamps as CLOCK_REALTIME ns: realtime_ns = ns0 + (tsc - tsc0) * ns_per_tick, from the
    latest (TSC, realtime) pair. The rate starts as the segment's tsc_hz (its writer's 20 ms calibration, which
    a preemption on a loaded host puts off by up to a few hundred ppm: as many microseconds a second) and is
    then measured between the first pair and the latest, a baseline that grows with the run (refresh())."""

    REFRESH_S = 1.0

    def __init__(self, tsc_hz: int):
        self.first = self.last = clock_pair() if tsc_hz else None
        self.per = 1e9 / tsc_hz if tsc_hz else 0.0
        self.at = time.monotonic()

    @property
    def cal(self) -> tuple[int, int, float] | None:
        return None if self.last is None else (self.last[0], self.last[1], self.per)

    def refresh(self, now: float) -> bool:
        """A new pair, and the rate over the whole baseline, once REFRESH_S has passed; True if it changed."""
        if self.last is None or now - self.at < self.REFRESH_S:
            return False
        pair = clock_pair()
        self.at = now
        if pair is None or pair[0] <= self.first[0]:
            return False
        self.last = pair
        self.per = (pair[1] - self.first[1]) / (pair[0] - self.first[0])
        return True


class Gateway:
    STALL_S = 0.25  # how long a slow NATS is waited for before the gateway conflates (_slow)
    DIRECT_WRITE = True  # False: every hand-off through nats-py's queue and flusher task (measured in bench/)

    def __init__(self, segment: str, settings: Settings, feed: str, start: str = "head", log=None):
        from ..shm import Reader

        self.r = Reader(segment)
        self.s = settings
        self.feed = feed
        self.prefix = f"fh.{feed}."
        self.start = start
        self.log = log or (lambda text: None)
        self.counters = {"events": 0, "bbo": 0, "trades": 0, "books": 0, "status": 0, "bbo_conflated": 0,
                         "trades_dropped": 0, "books_dropped": 0, "publish_errors": 0, "overrun_events": 0,
                         "disconnects": 0, "reconnects": 0}
        self.clock = TscClock(self.r.tsc_hz)
        self.cal = self.clock.cal
        self._subj: dict[int, str] = {}
        # the C formatter's subject prefixes: SUBJ_STRIDE bytes per locate, the length beside (0: not yet made)
        self._csubj = np.zeros(65536 * SUBJ_STRIDE, np.uint8)
        self._csubj_len = np.zeros(65536, np.uint8)
        self._cbuf = bytearray(1 << 22)
        self._cdone = ffi.new("size_t *")
        self._cn = ffi.new("uint64_t[2]")
        self._pending_bbo: dict[int, bytes] = {}
        self._dirty_books: set[int] = set()
        # the C follow loop (fh_gw_pump): reads the ring from p.next and formats every BBO change and trade
        # into _cbuf in one call; it marks changed books in _dirty_map
        self._dirty_map = np.zeros(65536, np.uint8)
        self._p = ffi.new("fh_gw_pump_t *")
        self._pkeep = [ffi.from_buffer(self._csubj), ffi.from_buffer(self._csubj_len), ffi.from_buffer(self._dirty_map)]
        self._p.subj, self._p.subj_len, self._p.dirty = self._pkeep
        self._dirty_out = np.zeros(65536, np.uint16)
        self._dirty_out_p = ffi.from_buffer("uint16_t[]", self._dirty_out)
        self._p.stride = SUBJ_STRIDE
        if self.cal is not None:
            self._p.tsc0, self._p.ns0, self._p.ns_per_tick = self.cal
        self._cout = ffi.from_buffer(self._cbuf)
        # a hand-off: at most FOLLOW_CAP bytes (latency), and a quarter of the backlog allowed (the two buffers in
        # flight never take the client past max_pending_kb alone)
        self._pump_cap = max(4096, min(FOLLOW_CAP, settings.max_pending_kb * 256))
        self._bufs = [bytearray(FOLLOW_CAP), bytearray(FOLLOW_CAP)]
        self._bufp = [ffi.from_buffer(b) for b in self._bufs]
        self._wait = ffi.new("fh_gw_wait_t *")
        self._wait.max_spin_ns = settings.spin_us * 1000
        # the follower thread and the loop: items in _inbox (the loop is kicked once per wake), buffers back
        # through _free, the Python path's turn through _resume
        self._inbox: collections.deque = collections.deque()
        self._free = threading.Semaphore(len(self._bufs))
        self._resume = threading.Event()
        self._mode = "c"  # "c": the follower pumps; "py": it only waits, the loop reads (conflation)
        self._quit = False
        self._kicked = False
        self._waiter: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.follower = {"thread_cpu_s": 0.0, "handoffs": 0}
        self._handoff = np.zeros(1 << 16, np.int64)  # the latest hand-offs' gw_ns -> socket write, ns
        self._nhandoff = 0
        self._stall_since: float | None = None
        self._last_seq = 0
        self._last_ts = 0
        self._closing = False
        self.nc = None

    # -- NATS

    async def connect(self):
        import nats
        from nats.errors import NoServersError

        async def on_error(e):
            self.log(f"nats: {e}")

        async def on_disc():
            if not self._closing:
                self.counters["disconnects"] += 1

        async def on_reconn():
            self.counters["reconnects"] += 1

        why = await self._reachable()
        try:
            if why is None:  # once connected, it reconnects (to any node of the cluster) for ever
                self.nc = await asyncio.wait_for(
                    nats.connect(servers=list(self.s.servers), name=f"fh-gateway-{self.feed}", connect_timeout=2,
                                 skip_subject_validation=True,
                                 max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                                 pending_size=self.s.max_pending_kb * 1024 * 2, error_cb=on_error,
                                 disconnected_cb=on_disc, reconnected_cb=on_reconn), 15)
        except (NoServersError, OSError, asyncio.TimeoutError) as e:
            why = str(e) or type(e).__name__
        if self.nc is None:
            raise GatewayError(f"no NATS server at {', '.join(self.s.servers)} ({why}); start nats-server or set "
                               "[gateway] servers / --server") from None
        if self.s.stream:
            await self.ensure_stream()

    async def _reachable(self) -> str | None:
        """None if some server accepts a TCP connection, else why not (the client would retry for ever)."""
        why = "no server given"
        for url in self.s.servers:
            host, _, port = url.split("://", 1)[1].partition(":")
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port or 4222)), 2)
                w.close()
                return None
            except (OSError, asyncio.TimeoutError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        return why

    async def ensure_stream(self):
        from nats.js.api import StreamConfig
        from nats.js.errors import BadRequestError

        js = self.nc.jetstream()
        cfg = StreamConfig(name=self.stream_name, subjects=[f"fh.{self.feed}.>"], num_replicas=self.s.stream_replicas,
                           max_age=float(self.s.stream_max_age_s), storage="file")
        deadline = time.monotonic() + 20  # a cluster that has just started elects its JetStream leader first
        while True:
            try:
                try:
                    await js.add_stream(cfg)
                except BadRequestError as e:
                    if "already in use" not in str(e):
                        raise
                    await js.update_stream(cfg)
                return
            except Exception as e:
                if time.monotonic() > deadline:
                    why = str(e) or type(e).__name__
                    raise GatewayError(f"JetStream stream {self.stream_name}: {why}; enable JetStream on the servers "
                                       "(nats-server -js), lower [gateway] stream_replicas to the cluster's size, "
                                       "or set [gateway] stream = false") from None
                await asyncio.sleep(0.25)

    @property
    def stream_name(self) -> str:
        return "FH_" + re.sub(r"[^A-Za-z0-9_-]", "_", self.feed)

    def _slow(self, now: float) -> bool:
        """True while NATS takes the data more slowly than the gateway makes it (over a quarter of
        max_pending_kb waits in the client) for less than STALL_S: the gateway then waits for the client's
        writer rather than conflate at once (the ring holds what comes meanwhile). Longer than that, it goes
        on and conflates past max_pending_kb, as for a server that is gone."""
        if self.nc.pending_data_size <= self.s.max_pending_kb * 256:
            self._stall_since = None
            return False
        if self._stall_since is None:
            self._stall_since = now
        return now - self._stall_since < self.STALL_S

    def _backlogged(self) -> bool:
        return self.nc.pending_data_size > self.s.max_pending_kb * 1024 or not self.nc.is_connected

    async def _pub(self, subject: str, payload: bytes) -> bool:
        try:
            await self.nc.publish(subject, payload)
            return True
        except Exception:  # the outbound buffer is full while reconnecting, or the connection is closing
            self.counters["publish_errors"] += 1
            return False

    async def _send(self, cmds: list[bytes], n: int = 0) -> bool:
        """Hand a run of PUB commands to the client in one piece. nats-py's publish() costs ~2.5 us a
        message in Python; its command queue takes the batch for ~0.5 us a message. The queue is the
        client's own (it flushes it, buffers it across a reconnect, and counts it in pending_data_size)."""
        if not cmds:
            return True
        try:
            if self.nc.is_closed:
                raise ConnectionError("closed")
            nc = self.nc
            await nc._send_command(b"".join(cmds))
            nc.stats["out_msgs"] += n
            if nc._flush_queue is not None and nc._flush_queue.empty():  # kick the client's flusher, as publish() does
                await nc._flush_pending()
            return True
        except Exception:
            self.counters["publish_errors"] += n or len(cmds)
            return False

    # -- events

    def _symbol_subject(self, loc: int) -> bytes:
        s = self._subj.get(loc)
        if s is None:
            s = self._subj[loc] = (self.prefix + subject_token(self.r.symbol_of(loc)) + ".").encode()
        return s

    def _c_prefixes(self, locs: np.ndarray) -> bool:
        """Make the C formatter's subject prefixes of these locates; False if one does not fit a slot."""
        for loc in np.unique(locs[self._csubj_len[locs] == 0]).tolist():
            b = self._symbol_subject(loc)
            if len(b) > SUBJ_STRIDE - 1:
                return False
            self._csubj[loc * SUBJ_STRIDE:loc * SUBJ_STRIDE + len(b)] = np.frombuffer(b, np.uint8)
            self._csubj_len[loc] = len(b)
        return True

    async def _batch_c(self, arr: np.ndarray, pub: np.ndarray) -> bool:
        """The batch's PUB commands formatted in C (fh/gwfmt.h), byte for byte as _batch writes them, for a
        batch with nothing held back and no stale/recovered event. False: nothing done, take the Python path."""
        t = arr["type"]
        ev = (t == lib.FH_EV_BBO) | (t == lib.FH_EV_TRADE)
        if (~ev & (t != lib.FH_EV_STATE)).any():
            return False
        locs = arr["locate"].astype(np.int64)
        if not self._c_prefixes(locs[ev]):
            return False
        self._dirty_books.update(np.unique(locs[ev | (t == lib.FH_EV_STATE)]).tolist())
        gw = time.time_ns()
        k = self.counters
        start, n = 0, len(arr)
        base = ffi.from_buffer("fh_shm_event_t[]", arr)
        cpub = ffi.from_buffer("int64_t[]", pub)
        out = ffi.from_buffer(self._cbuf)
        while start < n:
            self._cn[0] = self._cn[1] = 0
            w = lib.fh_gw_format(base + start, n - start, cpub + start, gw, ffi.from_buffer(self._csubj),
                                 ffi.from_buffer(self._csubj_len), SUBJ_STRIDE, out, len(self._cbuf), self._cdone,
                                 self._cn, self._cn + 1)
            nb, nt = int(self._cn[0]), int(self._cn[1])
            if await self._send([bytes(self._cbuf[:w])], nb + nt):
                k["bbo"] += nb
                k["trades"] += nt
            start += int(self._cdone[0])
        self._last_seq, self._last_ts = int(arr["seq"][-1]), int(arr["itch_ts"][-1])
        return True

    def _pump_once(self, k: int) -> tuple:
        """One fh_gw_pump call into buffer k (any thread: the C call drops the GIL). A symbol whose subject prefix
        is not made yet is made here and the call repeated. Returns the hand-off: ("buf", k, bytes written,
        BBOs, trades, stop, stop_locate, last_seq, last_ts, events, lost, gw_ns of the first call); stop FH_GW_NEED_PREFIX means a
        prefix too long for the C slots (the loop takes the next events through the Python path)."""
        p = self._p
        b0, t0, e0, l0 = p.nbbo, p.ntrade, p.events, p.lost
        w, out, gw = 0, self._bufp[k], 0
        while True:
            w += lib.fh_gw_pump(self.r._r, p, out + w, self._pump_cap - w)
            gw = gw or p.call_gw_ns
            if p.stop != lib.FH_GW_NEED_PREFIX or not self._c_prefixes(np.array([p.stop_locate], np.int64)):
                break
        return ("buf", k, w, p.nbbo - b0, p.ntrade - t0, p.stop, p.stop_locate, p.last_seq, p.last_ts,
                p.events - e0, p.lost - l0, gw)

    async def _take(self, item: tuple) -> int:
        """A hand-off from _pump_once, on the loop: its PUB commands to NATS, then its stale / recovered notice on
        .status, or the events behind a too-long prefix through the Python path. Returns the events consumed."""
        _, k, w, nb, nt, stop, loc, last_seq, last_ts, ev, lost, gw = item
        c = self.counters
        data = bytes(memoryview(self._bufs[k])[:w]) if w else b""
        self._free.release()  # copied: the follower may fill it again
        if w and await self._deliver(data, nb + nt):
            c["bbo"] += nb
            c["trades"] += nt
            h = self._handoff
            h[self._nhandoff & (len(h) - 1)] = time.time_ns() - gw  # the gateway's own latency: pump to socket
            self._nhandoff += 1
        c["events"] += ev
        c["overrun_events"] += lost
        if ev:
            self._last_seq, self._last_ts = last_seq, last_ts
        if stop in (lib.FH_GW_STALE, lib.FH_GW_RECOVERED):
            await self._status({"event": "stale" if stop == lib.FH_GW_STALE else "recovered",
                                "symbol": self.r.symbol_of(loc), "seq": last_seq, "ts": last_ts})
        elif stop == lib.FH_GW_NEED_PREFIX:  # too long for a slot: this batch through Python
            ev += await self._read_python()
        return ev + lost

    async def _read_python(self) -> int:
        """Up to a batch of events from p.next through the Python path (_batch: conflation, long subjects).
        Only while the follower does not pump."""
        p = self._p
        arr, nxt, lost = self.r.read_events(p.next, self.r.EVENT_BATCH)
        p.next = nxt
        self.counters["overrun_events"] += lost
        if len(arr):
            p.last_seq, p.last_ts = int(arr["seq"][-1]), int(arr["itch_ts"][-1])
            await self._batch(arr)
        self.counters["events"] += len(arr)
        return len(arr) + lost

    async def _pump(self) -> int:
        """Every new event of the ring through the C follow loop, on the loop itself (what the follower thread
        does, without the thread): returns the events consumed."""
        got = 0
        while True:
            self._free.acquire()
            item = self._pump_once(0)
            got += await self._take(item)
            if item[5] in (lib.FH_GW_CAUGHT_UP, lib.FH_GW_FULL):
                return got

    async def _deliver(self, data: bytes, n: int) -> bool:
        """A run of PUB commands to NATS with the least latency: straight into the socket's transport when the
        client is connected, has nothing queued ahead (order) and its transport has nothing unsent (a slow
        server: then the client's own queue, whose size _backlogged watches); else through _send."""
        nc = self.nc
        tr = getattr(getattr(getattr(nc, "_transport", None), "_io_writer", None), "transport", None)
        if (self.DIRECT_WRITE and tr is not None and nc.is_connected and not nc._pending
                and tr.get_write_buffer_size() == 0):
            try:
                tr.write(data)
                nc.stats["out_msgs"] += n
                nc.stats["out_bytes"] += len(data)
                return True
            except Exception:
                pass
        return await self._send([data], n)

    async def _batch(self, arr: np.ndarray) -> None:
        """A batch of events, in order. Columns become Python lists once per batch (a numpy field read per
        event would cost more than the publish); the backlog is checked once per batch."""
        tsc = arr["pub_tsc"]
        if self.cal is not None:
            tsc0, ns0, per = self.cal
            rel = ((tsc.astype(np.int64) - np.int64(tsc0)).astype(np.float64) * per).astype(np.int64) + np.int64(ns0)
            pubs = np.where(tsc > 0, rel, 0).astype(np.int64)
        else:
            pubs = np.zeros(len(arr), np.int64)
        held = bool(self.s.conflate_bbo_ms) or self._backlogged()
        if (not held and len(arr) and arr.flags.c_contiguous and arr.dtype.itemsize == EVENT_SIZE
                and await self._batch_c(arr, pubs)):
            return
        pub = pubs.tolist()
        types = arr["type"].tolist()
        locs = arr["locate"].tolist()
        seqs = arr["seq"].tolist()
        tss = arr["itch_ts"].tolist()
        a, b, c, d = arr["a"].tolist(), arr["b"].tolist(), arr["c"].tolist(), arr["d"].tolist()
        gw = time.time_ns()
        out: list[bytes] = []  # PUB commands of the batch, handed to the client in one piece
        subj = self._subj
        pending = self._pending_bbo
        dirty = self._dirty_books
        BBO, TRADE = lib.FH_EV_BBO, lib.FH_EV_TRADE
        k = self.counters
        nbbo = ntrade = 0
        for i, t in enumerate(types):
            loc = locs[i]
            if t == BBO or t == TRADE:
                dirty.add(loc)
                base = subj.get(loc)
                if base is None:
                    base = self._symbol_subject(loc)
                p = pub[i] or "null"
                if t == BBO:
                    body = '{"seq":%d,"ts":%d,"bid":%d,"bid_shares":%d,"ask":%d,"ask_shares":%d,"pub_ns":%s' % (
                        seqs[i], tss[i], c[i], a[i], d[i], b[i], p)
                    if held:
                        if loc in pending:
                            k["bbo_conflated"] += 1
                        pending[loc] = body
                        continue
                    data = (body + ',"gw_ns":%d}' % gw).encode()
                    out.append(b"PUB %sbbo %d\r\n%s\r\n" % (base, len(data), data))
                    nbbo += 1
                else:
                    if held and self._backlogged():
                        k["trades_dropped"] += 1
                        continue
                    data = ('{"seq":%d,"ts":%d,"price":%d,"shares":%d,"match":%d,"pub_ns":%s,"gw_ns":%d}' % (
                        seqs[i], tss[i], c[i], a[i], b[i], p, gw)).encode()
                    out.append(b"PUB %strade %d\r\n%s\r\n" % (base, len(data), data))
                    ntrade += 1
            elif t == lib.FH_EV_STALE or t == lib.FH_EV_RECOVERED:  # what came before goes first
                if await self._send(out, nbbo + ntrade):
                    k["bbo"] += nbbo
                    k["trades"] += ntrade
                out, nbbo, ntrade = [], 0, 0
                await self._status({"event": "stale" if t == lib.FH_EV_STALE else "recovered",
                                    "symbol": self.r.symbol_of(loc), "seq": seqs[i], "ts": tss[i]})
            elif t == lib.FH_EV_STATE:
                dirty.add(loc)
        if await self._send(out, nbbo + ntrade):
            k["bbo"] += nbbo
            k["trades"] += ntrade
        if len(seqs):
            self._last_seq, self._last_ts = seqs[-1], tss[-1]

    async def _flush_bbo(self) -> None:
        if not self._pending_bbo or self._backlogged():
            return
        pending, self._pending_bbo = self._pending_bbo, {}
        for loc, body in pending.items():
            if await self._pub(self._symbol_subject(loc).decode() + "bbo", (body + f',"gw_ns":{time.time_ns()}}}').encode()):
                self.counters["bbo"] += 1

    async def _books(self) -> None:
        """The book tick: each dirty book's top book_depth levels as a .book message, formatted in C
        (fh_gw_books, byte for byte as _book_py); a prefix too long for the C slots goes through _book_py."""
        n = lib.fh_gw_take_dirty(self._pkeep[2], len(self._dirty_map), self._dirty_out_p)  # the follower marks on
        if n:
            self._dirty_books.update(self._dirty_out[:n].tolist())
        if not self._dirty_books:
            return
        if self._backlogged():
            self.counters["books_dropped"] += len(self._dirty_books)  # they stay dirty: the next tick sends them
            return
        dirty, self._dirty_books = self._dirty_books, set()
        gw = time.time_ns()
        locs = np.array(sorted(dirty), np.uint16)
        lp = ffi.from_buffer("uint16_t[]", locs)
        out, nb, i = [], 0, 0
        while i < len(locs):  # _cbuf is free here: _batch_c, on this loop too, copies out of it before it awaits
            self._cn[0] = 0
            w = lib.fh_gw_books(self.r._r, lp + i, len(locs) - i, self.s.book_depth, self._last_seq, gw,
                                self._pkeep[0], self._pkeep[1], SUBJ_STRIDE, self._cout, len(self._cbuf),
                                self._cdone, self._cn)
            if w:
                out.append(bytes(self._cbuf[:w]))
            nb += int(self._cn[0])
            i += int(self._cdone[0])
            if i == len(locs):
                break
            loc = int(locs[i])
            if self._csubj_len[loc]:  # out is full: the rest stay dirty for the next tick
                self._dirty_books.update(locs[i:].tolist())
                break
            try:
                made = self._c_prefixes(np.array([loc], np.int64))
            except Exception:  # gone since its snapshot
                made, i = True, i + 1
            if not made:  # too long for a slot
                cmd = self._book_py(loc, gw)
                if cmd:
                    out.append(cmd)
                    nb += 1
                i += 1
        if await self._send(out, nb):
            self.counters["books"] += nb

    def _book_py(self, loc: int, gw: int) -> bytes | None:
        """One book's PUB command, formatted in Python (what fh_gw_books writes); None if the book is gone or
        not published."""
        try:
            snap = self.r.snapshot(loc, self.s.book_depth)
        except Exception:  # gone, or not published
            return None
        bids = ",".join("[%d,%d,%d]" % t for t in snap.bids.tolist())
        asks = ",".join("[%d,%d,%d]" % t for t in snap.asks.tolist())
        data = ('{"seq":%d,"ts":%d,"bids":[%s],"asks":[%s],"status":"%s","trading_state":"%s","gw_ns":%d}' % (
            self._last_seq, snap.itch_ts, bids, asks, snap.status, snap.trading_state, gw)).encode()
        return b"PUB %sbook %d\r\n%s\r\n" % (self._symbol_subject(loc), len(data), data)

    async def _status(self, extra: dict | None = None) -> None:
        st = self.r.writer_status()
        msg = {"writer": st.state, "head": self.r.head, "last_seq": self._last_seq, "gw_ns": time.time_ns(),
               "counters": dict(self.counters)}
        try:
            dp = self.r.dataplane_stats()
            if dp and dp.get("lines"):
                msg["lines"] = dp["lines"]
        except Exception:
            pass
        if extra:
            msg.update(extra)
        if await self._pub(f"fh.{self.feed}.status", json.dumps(msg, separators=(",", ":"), default=str).encode()):
            self.counters["status"] += 1

    # -- the follower thread

    def _post(self, item: tuple) -> None:
        """From the follower: an item for the loop; the loop is kicked once until it has looked at its inbox."""
        self._inbox.append(item)
        if not self._kicked:
            self._kicked = True
            self._loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _follow(self) -> None:
        """The follower thread: wait (fh_gw_wait), pump into a free buffer, hand it over; while the loop
        conflates ("py"), only wait and hand over the turn, then wait for the loop to have read."""
        p, r, w = self._p, self.r._r, self._wait
        c0 = time.thread_time()
        k = 0
        try:
            while not self._quit:
                if self.clock.refresh(time.monotonic()):  # between pumps: the C loop reads these fields
                    self.cal = cal = self.clock.cal
                    p.tsc0, p.ns0, p.ns_per_tick = cal
                if self._mode != "c":
                    if lib.fh_gw_wait(r, p.next - 1, 50_000_000, w) >= p.next and not self._quit:
                        self._resume.clear()
                        self._post(("py",))
                        self._resume.wait()
                    elif lib.fh_shm_reader_writer_state(r) == 2:
                        time.sleep(0.01)
                    continue
                if not self._free.acquire(timeout=0.05):
                    continue
                if (lib.fh_gw_wait(r, p.next - 1, 50_000_000, w) < p.next or self._mode != "c" or self._quit):
                    self._free.release()
                    if lib.fh_shm_reader_writer_state(r) == 2:
                        time.sleep(0.01)
                    continue
                item = self._pump_once(k)
                k ^= 1
                if item[5] == lib.FH_GW_NEED_PREFIX:  # the loop reads the next events itself: wait for it
                    self._resume.clear()
                    self._post(item)
                    self._resume.wait()
                else:
                    self._post(item)
                self.follower["handoffs"] += 1
        except Exception as e:  # the loop raises it: a follower that died must not leave a gateway that waits
            self._post(("error", e))
        finally:
            self.follower["thread_cpu_s"] = time.thread_time() - c0

    # -- the loop

    def _want_mode(self) -> str:
        return "py" if self.s.conflate_bbo_ms or self._backlogged() else "c"

    async def run(self, idle_timeout: float | None = None, stop: asyncio.Event | None = None) -> dict:
        if self.nc is None:
            await self.connect()
        loop = self._loop = asyncio.get_running_loop()
        p = self._p
        p.next = self.r.oldest() if self.start == "oldest" else self.r.head + 1
        book_every = self.s.book_interval_ms / 1000
        bbo_every = self.s.conflate_bbo_ms / 1000
        status_every = self.s.status_interval_ms / 1000
        tick = min(book_every, status_every, bbo_every or 0.05, 0.05)
        now = time.monotonic()
        last_book = last_status = last_bbo = last_event = last_check = now
        await self._status({"event": "start"})
        c0 = time.thread_time()

        def on_tick():
            self._kick()
            ticker[0] = loop.call_later(tick, on_tick)

        ticker = [loop.call_later(tick, on_tick)]
        stopper = asyncio.ensure_future(stop.wait()) if stop else None
        if stopper:
            stopper.add_done_callback(lambda _: self._kick())
        self._mode = self._want_mode()
        follower = threading.Thread(target=self._follow, name=f"fh-gw-{self.feed}"[:15], daemon=True)
        follower.start()
        try:
            while not (stop and stop.is_set()):
                if not self._inbox:
                    self._waiter = loop.create_future()
                    await self._waiter
                    self._waiter = None
                self._kicked = False  # before reading the inbox: an item posted from now on kicks again
                while self._inbox:
                    while self._slow(time.monotonic()):  # a slow NATS: wait for its writer (the ring holds the rest)
                        await asyncio.sleep(0.001)
                    item = self._inbox.popleft()
                    if item[0] == "buf":
                        got = await self._take(item)
                        if item[5] == lib.FH_GW_NEED_PREFIX:
                            self._resume.set()
                    elif item[0] == "py":  # the follower waits while the loop reads (a few batches at most)
                        got = 0
                        for _ in range(8):
                            n = await self._read_python()
                            got += n
                            if n < self.r.EVENT_BATCH:
                                break
                        self._mode = self._want_mode()
                        self._resume.set()
                    else:  # "error": the follower thread raised
                        raise item[1]
                    if got:
                        last_event = time.monotonic()
                if self._mode == "c" and self._want_mode() == "py":
                    self._mode = "py"  # the follower hands over the turn after the buffers it has filled
                elif self._mode == "py" and not self._inbox and self._want_mode() == "c":
                    self._mode = "c"
                now = time.monotonic()
                if bbo_every == 0 or now - last_bbo >= bbo_every:
                    await self._flush_bbo()
                    last_bbo = now
                if now - last_book >= book_every:
                    await self._books()
                    last_book = now
                if now - last_status >= status_every:
                    await self._status()
                    last_status = now
                if self._inbox:
                    continue
                if idle_timeout is not None and now - last_event > idle_timeout:
                    break
                if now - last_check >= tick:  # a stat and a lock probe: once a tick, not once a wake
                    last_check = now
                    if self.r.writer_status().state != "running" and self.r.head < p.next and not self._inbox:
                        break
        finally:
            self._quit = True
            self._resume.set()
            ticker[0].cancel()
            if stopper:
                stopper.cancel()
            await loop.run_in_executor(None, follower.join)
        while self._inbox:  # what the follower handed over last
            item = self._inbox.popleft()
            if item[0] == "buf":
                await self._take(item)
        self.follower["loop_thread_cpu_s"] = time.thread_time() - c0
        w = self._wait
        self.follower.update(waits=w.waits, ready=w.ready, spin_hits=w.spin_hits, sleeps=w.sleeps,
                             timeouts=w.timeouts, spun_ms=round(w.spun_ns / 1e6, 3))
        h = self._handoff[:min(self._nhandoff, len(self._handoff))]
        if len(h):
            q = np.percentile(h, [50, 99, 99.9]) / 1e3
            self.follower["handoff_us"] = {"p50": round(float(q[0]), 1), "p99": round(float(q[1]), 1),
                                           "p999": round(float(q[2]), 1), "max": round(float(h.max()) / 1e3, 1),
                                           "n": int(len(h))}
        await self._flush_bbo()
        await self._books()
        await self._status({"event": "stop"})
        self._closing = True
        try:  # what is buffered goes out if the server takes it within a few seconds; never wait longer
            await asyncio.wait_for(self.nc.flush(timeout=5), 6)
            await asyncio.wait_for(self.nc.drain(), 5)
        except Exception:
            self.counters["unsent_bytes_at_exit"] = self.nc.pending_data_size
            try:
                await asyncio.wait_for(self.nc.close(), 2)
            except Exception:
                pass
        self.r.close()
        return {"feed": self.feed, "counters": self.counters, "settings": asdict(self.s), "follower": self.follower}
