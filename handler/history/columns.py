"""A day's ITCH messages as columns: the C engine applies them (books, BBO, trades with the engine's own
semantics) while the C decoder (fh/hist.h) fills the order messages' columns, a chunk at a time.

No Python object is made per message. The message index comes from the C core (fh_blocks_index); each
event the engine publishes is tied back to the message that caused it by stamping the message's ordinal
into the ITCH timestamp field of a private copy of the chunk before it is applied (the engine uses the
timestamp only to stamp events), so an event's itch_ts *is* the ordinal of its message and the real
timestamp, sequence number and receive time are looked up in the chunk's columns.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .. import native
from .._native import ffi, lib

CHUNK_MESSAGES = 1 << 18       # per apply: at most 2 events a message, so the ring below never wraps in one
EVENT_RING = 1 << 20


@dataclass
class Chunk:
    """The columns of one applied chunk. Message columns are per message (index = ordinal - first);
    tables are dicts of numpy columns ready for the writer."""

    first: int                           # ordinal of the chunk's first message (0-based over the source)
    seq: np.ndarray                      # uint64 sequence numbers (MoldUDP64 / position in the day, 1-based)
    ts: np.ndarray                       # uint64 exchange timestamp, ns since midnight
    recv: np.ndarray | None              # int64 local receive time (ns since the epoch) or None offline
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class SideMap:
    """Order reference -> side of the book it rests on (0 unknown, b'B', b'S'), dense by reference (a day's
    references are a compact range), kept by the C decoder (fh/hist.h): the first side given for a
    reference wins, as in the engine, where a second add of a live reference is a duplicate_ref; a replace
    gives its new reference the side of the original. References past `limit` stay unknown (counted)."""

    def __init__(self, state, limit: int = 1 << 31):
        self.st = state
        self.a = np.zeros(1 << 20, np.uint8)
        self.st.ref_limit = limit
        self._point()

    def _point(self) -> None:
        self._cbuf = ffi.from_buffer("uint8_t[]", self.a)
        self.st.sides = self._cbuf
        self.st.sides_cap = len(self.a)

    @property
    def out_of_range(self) -> int:
        return int(self.st.out_of_range)

    def grow(self, top: int) -> None:
        n = len(self.a)
        while n <= top:
            n *= 2
        b = np.zeros(min(n, self.st.ref_limit + 1), np.uint8)
        b[: len(self.a)] = self.a
        self.a = b
        self._point()


class ItchColumns:
    """Applies a day's messages with the C engine on a private segment and yields Chunks of columns.

    feed(data, seq=None, recv=None): data in the daily-file format (2-byte-length blocks); seq: the
    sequence number of each message (default: its position in the day, 1-based); recv: receive times.
    snapshot_every_ns: take top-`depth` book snapshots at these exchange-time boundaries (0: none), plus
    one of every non-empty book at the end (`finish`)."""

    def __init__(self, nbytes: int, depth: int = 10, snapshot_every_ns: int = 0):
        cfg = native.EngineConfig.for_input(nbytes)
        fd, self.seg_path = tempfile.mkstemp(prefix="fh-history-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.close(fd)
        os.unlink(self.seg_path)
        self.seg = native.Segment(self.seg_path, "history", max_levels=cfg.levels, event_capacity=EVENT_RING,
                                  depth=depth)
        self.eng = native.Engine(cfg, segment=self.seg)
        from ..shm import Reader

        self.reader = Reader(self.seg_path)
        # private to this process and mapped by both sides now: no name in /dev/shm, so that a killed
        # fh history leaves nothing behind (its 100s of MB would otherwise stay until reboot)
        from ..segments import wake_path

        for p in (self.seg_path, wake_path(self.seg_path)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self.ring = self.reader.events_ring
        self._ring_c = ffi.from_buffer("fh_shm_event_t[]", self.ring)
        self._evout = None
        self.mask = self.reader.event_capacity - 1
        self.depth = depth
        self.every = snapshot_every_ns
        self.next_snap = snapshot_every_ns if snapshot_every_ns else None
        self.head = 0
        self.ordinal = 0
        self.symbols = np.zeros(65536, "S8")
        self._st = ffi.new("fh_hist_state_t *")
        self._st.symbols = self._symbuf = ffi.from_buffer("uint8_t[]", self.symbols)
        self.sides = SideMap(self._st)
        self.last_updates = np.zeros(65536, np.uint64)
        self.last_seq = 0
        self.last_ts = 0
        self.counters = {"messages": 0, "trades": 0, "bbo": 0, "orders": 0, "snapshots": 0}
        self._offs = np.zeros(CHUNK_MESSAGES, np.uint32)
        self._used = ffi.new("size_t *")
        self._cols = ffi.new("fh_hist_cols_t *")

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.eng = None
        if self.seg is not None:
            self.seg.close(unlink=True)
            self.seg = None

    # -- the message index

    def _index(self, mv, limit: int) -> tuple[np.ndarray, int]:
        n = lib.fh_blocks_index(ffi.from_buffer(mv), len(mv), ffi.from_buffer("uint32_t[]", self._offs), min(limit, CHUNK_MESSAGES),
                                self._used)
        return self._offs[:n].astype(np.int64), int(self._used[0])

    def feed(self, data, seq: np.ndarray | None = None, recv: np.ndarray | None = None):
        """Apply data; yields a Chunk per applied chunk. Returns (by StopIteration) the bytes consumed."""
        mv = memoryview(data).cast("B")
        pos, k = 0, 0
        while pos < len(mv):
            off, used = self._index(mv[pos:], CHUNK_MESSAGES)
            n = len(off)
            if n == 0:
                break
            buf = np.frombuffer(mv[pos:pos + used], np.uint8).copy()
            dec = self._decode(buf, off)
            ts = dec["ts"]
            sq = (np.arange(self.ordinal + 1, self.ordinal + n + 1, dtype=np.uint64) if seq is None
                  else np.asarray(seq[k:k + n], np.uint64))
            rc = None if recv is None else np.asarray(recv[k:k + n], np.int64)
            base_ord = self.ordinal
            # cut the chunk at each snapshot boundary, so that a snapshot sees the books as they were then:
            # the first message at or past a boundary is where the running maximum of the timestamps reaches it
            tsmax = np.maximum.accumulate(ts) if self.next_snap is not None else None
            i = 0
            while i < n:
                j = n
                if tsmax is not None:
                    j = max(i, int(np.searchsorted(tsmax, np.uint64(self.next_snap), "left")))
                    if j == i:  # the books as they were at the boundary, then on to the boundary after ts[i]
                        yield from self._snapshots(self.next_snap)
                        self.next_snap = (int(tsmax[i]) // self.every + 1) * self.every
                        continue
                yield self._apply(buf, off, dec, base_ord, i, j, used, sq, rc)
                i = j
            pos += used
            k += n
        return pos

    _OUT = {"ts": np.uint64, "locate": np.uint16, "type": np.uint8, "o_idx": np.uint32, "o_ref": np.int64,
            "o_new_ref": np.int64, "o_shares": np.int64, "o_price": np.int64, "o_match": np.int64, "o_side": "S1",
            "o_printable": "S1", "o_mpid": "S4", "o_ts": np.uint64, "o_locate": np.uint16, "o_type": "S1"}
    _CTYPE = {np.dtype(np.uint64): "uint64_t[]", np.dtype(np.uint16): "uint16_t[]", np.dtype(np.uint32): "uint32_t[]",
              np.dtype(np.int64): "int64_t[]"}

    def _decode(self, buf: np.ndarray, off: np.ndarray) -> dict[str, np.ndarray]:
        """fh_hist_decode over the chunk: header columns, order rows, ordinals stamped into buf. The columns are
        new arrays each chunk, handed on as they are (no copy): the writer keeps them until their hour is written."""
        n = len(off)
        offs = self._offs  # off came from here: still the chunk's index
        c = self._cols
        o = {k: np.empty(n, t) for k, t in self._OUT.items()}
        keep = []
        for k, v in o.items():
            keep.append(ffi.from_buffer(self._CTYPE.get(v.dtype, "uint8_t[]"), v))
            setattr(c, k, keep[-1])
        c.o_rows = 0
        cbuf = ffi.from_buffer("uint8_t[]", buf)
        coff = ffi.from_buffer("uint32_t[]", offs)
        i = 0
        while True:
            i = lib.fh_hist_decode(self._st, cbuf, coff, n, i, self.ordinal, c)
            if i >= n:
                break
            self.sides.grow(int(self._st.need))
        r = int(c.o_rows)
        for k in o:
            setattr(c, k, ffi.NULL)
        dec = {k: o[k] for k in ("ts", "locate", "type")}
        dec.update({k: o[k][:r] for k in o if k.startswith("o_")})
        return dec

    def _apply(self, buf, off, dec, base_ord: int, i: int, j: int, used: int, sq, rc) -> Chunk:
        """Apply messages i .. j-1 of the chunk (ordinals base_ord + i ...) and gather their rows."""
        start = int(off[i]) - 2
        stop = int(off[j]) - 2 if j < len(off) else used
        consumed = self.eng.apply_blocks(buf[start:stop])
        assert consumed == stop - start, (consumed, stop - start)
        n = j - i
        first = base_ord + i
        self.ordinal = first + n
        self.counters["messages"] += n
        ts = dec["ts"][i:j]
        self.last_seq = int(sq[j - 1])
        nz = np.flatnonzero(ts)
        self.last_ts = int(ts[nz[-1]]) if len(nz) else self.last_ts
        ch = Chunk(first, sq[i:j], ts, None if rc is None else rc[i:j])
        self._events(ch, buf, off[i:j], dec["type"][i:j])
        oi = dec["o_idx"]
        a, b = (int(x) for x in np.searchsorted(oi, [i, j]))
        if b > a:
            mi = oi[a:b].astype(np.int64) - i
            cols = {"seq": ch.seq[mi], "ts": dec["o_ts"][a:b], "locate": dec["o_locate"][a:b], "type": dec["o_type"][a:b],
                    "ref": dec["o_ref"][a:b], "new_ref": dec["o_new_ref"][a:b], "side": dec["o_side"][a:b],
                    "shares": dec["o_shares"][a:b], "price": dec["o_price"][a:b], "match": dec["o_match"][a:b],
                    "printable": dec["o_printable"][a:b], "mpid": dec["o_mpid"][a:b]}
            if ch.recv is not None:
                cols["recv"] = ch.recv[mi]
            ch.tables["orders"] = cols
            self.counters["orders"] += b - a
        return ch

    # -- events: trades and BBO changes

    def _events(self, ch: Chunk, buf, off, typ) -> None:
        """The chunk's trades and BBO changes from the ring, as columns, in one C pass (fh_hist_events)."""
        head = self.reader.head
        n = head - self.head
        if n > self.reader.event_capacity:
            raise RuntimeError(f"history: {n} events in one chunk overran a ring of {self.reader.event_capacity}")
        if n == 0:
            return
        e = self._ev_cols(n)
        off = np.ascontiguousarray(off, np.uint32)
        typ = np.ascontiguousarray(typ, np.uint8)
        recv = None if ch.recv is None else np.ascontiguousarray(ch.recv, np.int64)
        seq = np.ascontiguousarray(ch.seq, np.uint64)
        ts = np.ascontiguousarray(ch.ts, np.uint64)
        rc = lib.fh_hist_events(self._st, self._ring_c, self.mask, self.head + 1, head, ch.first, len(seq),
                                ffi.from_buffer("uint64_t[]", seq), ffi.from_buffer("uint64_t[]", ts),
                                ffi.NULL if recv is None else ffi.from_buffer("int64_t[]", recv),
                                ffi.from_buffer("uint8_t[]", typ), ffi.from_buffer("uint8_t[]", buf),
                                ffi.from_buffer("uint32_t[]", off), e)
        if rc != 0:
            raise RuntimeError("history: an event names a message outside the chunk just applied")
        self.head = head
        o = self._evout
        nt, nb = int(e.t_rows), int(e.b_rows)

        def take(prefix: str, names: dict[str, str], rows: int) -> dict[str, np.ndarray]:
            cols = {out: o[prefix + src][:rows].copy() for out, src in names.items()
                    if ch.recv is not None or out != "recv"}
            return cols

        if nt:
            t = take("t_", {"seq": "seq", "ts": "ts", "locate": "locate", "recv": "recv", "price": "price",
                            "shares": "shares", "match": "match", "aggressor": "aggressor", "type": "type"}, nt)
            t["aggressor"], t["type"] = t["aggressor"].view("S1"), t["type"].view("S1")
            ch.tables["trades"] = t
            self.counters["trades"] += nt
        if nb:
            ch.tables["bbo"] = take("b_", {"seq": "seq", "ts": "ts", "locate": "locate", "recv": "recv",
                                           "bid_price": "bid_price", "bid_shares": "bid_shares",
                                           "ask_price": "ask_price", "ask_shares": "ask_shares"}, nb)
            self.counters["bbo"] += nb

    def _ev_cols(self, n: int):
        """fh_hist_ev_cols_t over arrays with room for n rows each (kept, grown when a run needs more)."""
        if self._evout is None or len(self._evout["t_seq"]) < n:
            cap = max(n, 1 << 16)
            u64, i64 = ("t_seq", "t_ts", "b_seq", "b_ts"), ("t_recv", "t_price", "t_shares", "t_match", "b_recv",
                                                           "b_bid_price", "b_bid_shares", "b_ask_price", "b_ask_shares")
            o = {k: np.zeros(cap, np.uint64) for k in u64}
            o.update({k: np.zeros(cap, np.int64) for k in i64})
            o.update({k: np.zeros(cap, np.uint16) for k in ("t_locate", "b_locate")})
            o.update({k: np.zeros(cap, np.uint8) for k in ("t_type", "t_aggressor")})
            c = ffi.new("fh_hist_ev_cols_t *")
            keep = []
            for k, v in o.items():
                ct = {np.dtype(np.uint64): "uint64_t[]", np.dtype(np.int64): "int64_t[]",
                      np.dtype(np.uint16): "uint16_t[]", np.dtype(np.uint8): "uint8_t[]"}[v.dtype]
                keep.append(ffi.from_buffer(ct, v))
                setattr(c, k, keep[-1])
            self._evout, self._evc, self._evkeep = o, c, keep
        return self._evc

    # -- book snapshots

    def _snapshots(self, at_ns: int, every_book: bool = False):
        """A snapshot of each book changed since the last one (every non-empty book if every_book), stamped
        at_ns. Yields one Chunk holding the `books` table (nothing if none)."""
        from ..shm import window_levels

        books = self.reader.books
        upd = books["updates"].astype(np.uint64)
        shown = (books["status"] != 0) & ((books["flags"] & lib.FH_BOOK_F_UNPUBLISHED) == 0)
        side = books["side"]
        r = self.reader
        # layout 5: a side's levels are its ladder's window (ladders[2 * ladder + side]) and its deep run
        lad = np.minimum(books["ladder"].astype(np.int64), r.ladder_books)
        if every_book:
            nl = r.ladders["nl"]
            locs = np.nonzero(shown & ((side[:, 0]["n"] > 0) | (side[:, 1]["n"] > 0) | (nl[2 * lad] > 0) |
                                       (nl[2 * lad + 1] > 0)))[0]
        else:
            locs = np.nonzero(shown & (upd != self.last_updates))[0]
        self.last_updates = upd
        if not len(locs):
            return
        n = len(locs)
        self.counters["snapshots"] += n
        tbl = {"seq": np.full(n, self.last_seq, np.uint64), "ts": np.full(n, at_ns, np.uint64),
               "locate": locs.astype(np.uint16), "kind": np.full(n, b"close" if every_book else b"interval", "S8")}
        keys, aggs = r.level_keys, r.level_aggs
        lad = lad[locs]
        for s, name in ((0, "bid"), (1, "ask")):
            # the top `depth` levels of each book's deep run, best first: the run of a side ends with its best level
            off = side[locs, s]["off"].astype(np.int64)
            cnt = side[locs, s]["n"].astype(np.int64)
            k = np.minimum(cnt, self.depth)
            first = np.cumsum(k) - k
            j = np.arange(int(k.sum())) - np.repeat(first, k)
            flat = np.repeat(off + cnt - 1, k) - j
            kk = keys[flat]
            grp = np.repeat(np.arange(n), k)
            price = (~kk if s else kk).astype(np.int64)
            shares = aggs["shares"][flat].astype(np.int64)
            orders = aggs["orders"][flat].astype(np.int64)
            # the window's levels (the writer is this process's engine: nothing torn)
            g, sl, wprice = window_levels(r.ladders[2 * lad + s], s)
            wagg = r.ladder_slots[2 * lad[g] + s, sl]
            grp = np.concatenate([grp, g])
            price = np.concatenate([price, wprice])
            shares = np.concatenate([shares, wagg["shares"].astype(np.int64)])
            orders = np.concatenate([orders, wagg["orders"].astype(np.int64)])
            # merged best first within each book (bids: highest price; asks: lowest), the top `depth` kept
            order = np.lexsort((price if s else -price, grp))
            grp = grp[order]
            start = np.searchsorted(grp, np.arange(n))
            keep = order[np.arange(len(grp)) - start[grp] < self.depth]
            tbl[f"{name}_n"] = np.bincount(grp[np.arange(len(grp)) - start[grp] < self.depth], minlength=n).astype(
                np.int64)
            tbl[f"{name}_price"] = price[keep]
            tbl[f"{name}_shares"] = shares[keep]
            tbl[f"{name}_orders"] = orders[keep]
        ch = Chunk(self.ordinal, np.zeros(0, np.uint64), np.zeros(0, np.uint64), None)
        ch.tables["books"] = tbl
        yield ch

    def finish(self):
        """The end-of-day snapshot of every non-empty book (kind 'close'), at the last message's time."""
        yield from self._snapshots(self.last_ts, every_book=True)

    def engine_counters(self) -> dict[str, int]:
        return self.eng.counters()
