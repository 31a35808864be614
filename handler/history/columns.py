"""A day's ITCH messages as columns: the C engine applies them (books, BBO, trades with the engine's own
semantics) while numpy gathers the fixed-layout fields of the order messages, a chunk at a time.

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
ORDER_TYPES = b"AFECXDU"

# per message type: (ITCH length) for the order messages and the ones the history keeps
_LEN = {chr(t): lib.fh_itch_len[t] for t in range(256) if lib.fh_itch_len[t]}


def _be(buf: np.ndarray, off: np.ndarray, width: int) -> np.ndarray:
    """Big-endian unsigned integers of `width` bytes at each offset."""
    if width in (2, 4, 8):
        return buf[off[:, None] + np.arange(width)].view(f">u{width}").ravel().astype(np.uint64)
    b = np.zeros((len(off), 8), np.uint8)
    b[:, 8 - width:] = buf[off[:, None] + np.arange(width)]
    return b.view(">u8").ravel().astype(np.uint64)


def _stock(buf: np.ndarray, off: np.ndarray) -> np.ndarray:
    """The 8-byte alpha field at each offset, as numpy S8 (trailing spaces kept; stripped by the caller)."""
    idx = off[:, None] + np.arange(8)
    return buf[idx].copy().view("S8").ravel()


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
    """Order reference -> side of the book it rests on (0 unknown, 1 buy, 2 sell), dense by reference:
    a day's references are a compact range. References past `limit` stay unknown (counted)."""

    def __init__(self, limit: int = 1 << 31):
        self.a = np.zeros(1 << 20, np.uint8)
        self.limit = limit
        self.out_of_range = 0

    def _grow(self, top: int) -> None:
        if top >= len(self.a):
            n = len(self.a)
            while n <= top:
                n *= 2
            b = np.zeros(min(n, self.limit + 1), np.uint8)
            b[: len(self.a)] = self.a
            self.a = b

    def set(self, refs: np.ndarray, sides: np.ndarray) -> None:
        """The first side given for a reference wins, as in the engine, where a second add of a live
        reference is a duplicate_ref and changes nothing. (A reference used again after its order left the
        book would keep its first side: ITCH references are unique in a day, so only a corrupt day has it.)"""
        ok = refs <= self.limit
        self.out_of_range += int((~ok).sum())
        refs, sides = refs[ok].astype(np.int64), sides[ok]
        if len(refs):
            self._grow(int(refs.max()))
            refs, first = np.unique(refs, return_index=True)
            sides = sides[first]
            new = self.a[refs] == 0
            self.a[refs[new]] = sides[new]

    def get(self, refs: np.ndarray) -> np.ndarray:
        out = np.zeros(len(refs), np.uint8)
        ok = refs < len(self.a)
        out[ok] = self.a[refs[ok].astype(np.int64)]
        return out


SIDE_CHAR = np.array([b"", b"B", b"S"], dtype="S1")


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
        self.ring = self.reader.events_ring
        self.mask = self.reader.event_capacity - 1
        self.depth = depth
        self.every = snapshot_every_ns
        self.next_snap = snapshot_every_ns if snapshot_every_ns else None
        self.head = 0
        self.ordinal = 0
        self.sides = SideMap()
        self.symbols = np.zeros(65536, "S8")
        self.last_updates = np.zeros(65536, np.uint64)
        self.last_seq = 0
        self.last_ts = 0
        self.counters = {"messages": 0, "trades": 0, "bbo": 0, "orders": 0, "snapshots": 0}
        self._offs = np.zeros(CHUNK_MESSAGES, np.uint32)
        self._used = ffi.new("size_t *")

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
            if len(off) == 0:
                break
            buf = np.frombuffer(mv[pos:pos + used], np.uint8).copy()
            n = len(off)
            lens = ((buf[off - 2].astype(np.int64) << 8) | buf[off - 1])
            hdr = lens >= 11
            ts = np.zeros(n, np.uint64)
            ts[hdr] = _be(buf, off[hdr] + 5, 6)
            sq = (np.arange(self.ordinal + 1, self.ordinal + n + 1, dtype=np.uint64) if seq is None
                  else np.asarray(seq[k:k + n], np.uint64))
            rc = None if recv is None else np.asarray(recv[k:k + n], np.int64)
            # cut the chunk at each snapshot boundary, so that a snapshot sees the books as they were then:
            # the first message at or past a boundary is where the running maximum of the timestamps reaches it
            tsmax = np.maximum.accumulate(np.where(hdr, ts, 0)) if self.next_snap is not None else None
            i = 0
            while i < n:
                j = n
                if tsmax is not None:
                    j = max(i, int(np.searchsorted(tsmax, np.uint64(self.next_snap), "left")))
                    if j == i:  # the books as they were at the boundary, then on to the boundary after ts[i]
                        yield from self._snapshots(self.next_snap)
                        self.next_snap = (int(tsmax[i]) // self.every + 1) * self.every
                        continue
                base = int(off[i]) - 2
                stop = int(off[j]) - 2 if j < n else used
                yield self._apply(buf[base:stop], off[i:j] - base, lens[i:j], hdr[i:j], ts[i:j], sq[i:j],
                                  None if rc is None else rc[i:j])
                i = j
            pos += used
            k += n
        return pos

    def _apply(self, buf, off, lens, hdr, ts, sq, rc) -> Chunk:
        n = len(off)
        first = self.ordinal
        ordn = np.arange(first, first + n, dtype=np.uint64)
        o = off[hdr]
        v = ordn[hdr]
        for b in range(6):
            buf[o + 5 + b] = ((v >> np.uint64(8 * (5 - b))) & np.uint64(0xFF)).astype(np.uint8)
        typ = np.zeros(n, np.uint8)
        typ[lens > 0] = buf[off[lens > 0]]
        # symbols first: a chunk's R messages name the books its other messages use
        want = np.zeros(256, np.int64)
        for t, ln in _LEN.items():
            want[ord(t)] = ln
        full = (want[typ] > 0) & (lens >= want[typ])  # known type, not short (the engine skips the others, counted)
        isr = full & (typ == ord("R"))
        if isr.any():
            self.symbols[_be(buf, off[isr] + 1, 2).astype(np.int64)] = _stock(buf, off[isr] + 11)
        for t, at in (("A", 24), ("F", 24), ("P", 24), ("H", 11)):  # a book the directory did not announce
            m = full & (typ == ord(t))
            if m.any():
                locs = _be(buf, off[m] + 1, 2).astype(np.int64)
                unnamed = self.symbols[locs] == b""
                if unnamed.any():
                    self.symbols[locs[unnamed]] = _stock(buf, off[m][unnamed] + at)
        locate = np.zeros(n, np.uint16)
        locate[hdr] = _be(buf, off[hdr] + 1, 2).astype(np.uint16)
        # sides of resting orders, before the engine runs (references are unique in a day)
        add = full & ((typ == ord("A")) | (typ == ord("F")))
        if add.any():
            sidech = buf[off[add] + 19]
            self.sides.set(_be(buf, off[add] + 11, 8), np.where(sidech == ord("B"), 1, np.where(sidech == ord("S"), 2, 0)).astype(np.uint8))
        rep = full & (typ == ord("U"))
        if rep.any():  # in order: a replace of a replace in the same chunk takes the side the first gave
            ro, rn = _be(buf, off[rep] + 11, 8), _be(buf, off[rep] + 19, 8)
            for _ in range(64):
                before = self.sides.get(rn)
                self.sides.set(rn, self.sides.get(ro))
                if np.array_equal(before, self.sides.get(rn)):
                    break
        consumed = self.eng.apply_blocks(buf)
        assert consumed == len(buf), (consumed, len(buf))
        self.ordinal += n
        self.counters["messages"] += n
        self.last_seq = int(sq[-1])
        self.last_ts = int(ts[hdr][-1]) if hdr.any() else self.last_ts
        ch = Chunk(first, sq, ts, rc)
        self._events(ch, buf, off, typ)
        self._orders(ch, buf, off, typ, full, locate)
        return ch

    # -- events: trades and BBO changes

    def _events(self, ch: Chunk, buf, off, typ) -> None:
        head = self.reader.head
        if head - self.head > self.reader.event_capacity:
            raise RuntimeError(f"history: {head - self.head} events in one chunk overran a ring of "
                               f"{self.reader.event_capacity}")
        idx = np.arange(self.head + 1, head + 1, dtype=np.uint64) & np.uint64(self.mask)
        ev = self.ring[idx.astype(np.int64)]
        self.head = head
        i = (ev["itch_ts"] - np.uint64(ch.first)).astype(np.int64)
        t = ev["type"]
        common = lambda m: {"seq": ch.seq[i[m]], "ts": ch.ts[i[m]], "locate": ev["locate"][m],
                            **({"recv": ch.recv[i[m]]} if ch.recv is not None else {})}
        tr = t == lib.FH_EV_TRADE
        if tr.any():
            mi = i[tr]
            mt = typ[mi]
            mo = off[mi]
            resting = np.zeros(len(mi), np.uint8)
            isp = mt == ord("P")
            if isp.any():
                pc = buf[mo[isp] + 19]
                resting[isp] = np.where(pc == ord("B"), 1, np.where(pc == ord("S"), 2, 0))
            if (~isp).any():
                resting[~isp] = self.sides.get(_be(buf, mo[~isp] + 11, 8))
            aggressor = np.array([0, 2, 1], np.uint8)[resting]
            ch.tables["trades"] = {**common(tr), "price": ev["c"][tr].astype(np.int64),
                                   "shares": ev["a"][tr].astype(np.int64), "match": ev["b"][tr].astype(np.int64),
                                   "aggressor": SIDE_CHAR[aggressor], "type": mt.view("S1")}
            self.counters["trades"] += int(tr.sum())
        bb = t == lib.FH_EV_BBO
        if bb.any():
            ch.tables["bbo"] = {**common(bb), "bid_price": ev["c"][bb].astype(np.int64),
                                "bid_shares": ev["a"][bb].astype(np.int64), "ask_price": ev["d"][bb].astype(np.int64),
                                "ask_shares": ev["b"][bb].astype(np.int64)}
            self.counters["bbo"] += int(bb.sum())

    # -- order messages, straight from their layouts

    def _orders(self, ch: Chunk, buf, off, typ, full, locate) -> None:
        m = full & np.isin(typ, np.frombuffer(ORDER_TYPES, np.uint8))
        if not m.any():
            return
        o = off[m]
        t = typ[m]
        cnt = len(o)
        ref = _be(buf, o + 11, 8)
        new_ref = np.zeros(cnt, np.uint64)
        shares = np.zeros(cnt, np.int64)
        price = np.zeros(cnt, np.int64)
        match = np.zeros(cnt, np.int64)
        mpid = np.zeros(cnt, "S4")
        printable = np.zeros(cnt, "S1")

        def sel(*types):
            return np.isin(t, np.frombuffer("".join(types).encode(), np.uint8))

        a = sel("A", "F")
        shares[a] = _be(buf, o[a] + 20, 4).astype(np.int64)
        price[a] = _be(buf, o[a] + 32, 4).astype(np.int64)
        f = t == ord("F")
        if f.any():
            mpid[f] = buf[(o[f])[:, None] + 36 + np.arange(4)].copy().view("S4").ravel()
        ec = sel("E", "C")
        shares[ec] = _be(buf, o[ec] + 19, 4).astype(np.int64)
        match[ec] = _be(buf, o[ec] + 23, 8).astype(np.int64)
        c = t == ord("C")
        price[c] = _be(buf, o[c] + 32, 4).astype(np.int64)
        printable[c] = buf[o[c] + 31].view("S1")
        x = t == ord("X")
        shares[x] = _be(buf, o[x] + 19, 4).astype(np.int64)
        u = t == ord("U")
        new_ref[u] = _be(buf, o[u] + 19, 8)
        shares[u] = _be(buf, o[u] + 27, 4).astype(np.int64)
        price[u] = _be(buf, o[u] + 31, 4).astype(np.int64)
        side = self.sides.get(ref)  # E C X D: the side of the resting order
        side[u] = self.sides.get(new_ref[u])
        sc = buf[o[a] + 19]  # A F: the message's own
        side[a] = np.where(sc == ord("B"), 1, np.where(sc == ord("S"), 2, 0))
        mi = np.nonzero(m)[0]
        cols = {"seq": ch.seq[mi], "ts": ch.ts[mi], "locate": locate[m], "type": t.view("S1"),
                "ref": ref.astype(np.int64), "new_ref": new_ref.astype(np.int64), "side": SIDE_CHAR[side],
                "shares": shares, "price": price, "match": match, "printable": printable, "mpid": mpid}
        if ch.recv is not None:
            cols["recv"] = ch.recv[mi]
        ch.tables["orders"] = cols
        self.counters["orders"] += cnt

    # -- book snapshots

    def _snapshots(self, at_ns: int, every_book: bool = False):
        """A snapshot of each book changed since the last one (every non-empty book if every_book), stamped
        at_ns. Yields one Chunk holding the `books` table (nothing if none)."""
        books = self.reader.books
        upd = books["updates"].astype(np.uint64)
        shown = (books["status"] != 0) & ((books["flags"] & lib.FH_BOOK_F_UNPUBLISHED) == 0)
        side = books["side"]
        if every_book:
            locs = np.nonzero(shown & ((side[:, 0]["n"] > 0) | (side[:, 1]["n"] > 0)))[0]
        else:
            locs = np.nonzero(shown & (upd != self.last_updates))[0]
        self.last_updates = upd
        if not len(locs):
            return
        n = len(locs)
        self.counters["snapshots"] += n
        tbl = {"seq": np.full(n, self.last_seq, np.uint64), "ts": np.full(n, at_ns, np.uint64),
               "locate": locs.astype(np.uint16), "kind": np.full(n, b"close" if every_book else b"interval", "S8")}
        keys, aggs = self.reader.level_keys, self.reader.level_aggs
        for s, name in ((0, "bid"), (1, "ask")):
            # the top `depth` levels of each book, best first: the run of a side ends with its best level
            off = side[locs, s]["off"].astype(np.int64)
            cnt = side[locs, s]["n"].astype(np.int64)
            k = np.minimum(cnt, self.depth)
            first = np.cumsum(k) - k
            j = np.arange(int(k.sum())) - np.repeat(first, k)
            flat = np.repeat(off + cnt - 1, k) - j
            kk = keys[flat]
            tbl[f"{name}_n"] = k
            tbl[f"{name}_price"] = (~kk if s else kk).astype(np.int64)
            tbl[f"{name}_shares"] = aggs["shares"][flat].astype(np.int64)
            tbl[f"{name}_orders"] = aggs["orders"][flat].astype(np.int64)
        ch = Chunk(self.ordinal, np.zeros(0, np.uint64), np.zeros(0, np.uint64), None)
        ch.tables["books"] = tbl
        yield ch

    def finish(self):
        """The end-of-day snapshot of every non-empty book (kind 'close'), at the last message's time."""
        yield from self._snapshots(self.last_ts, every_book=True)

    def engine_counters(self) -> dict[str, int]:
        return self.eng.counters()
