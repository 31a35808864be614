"""Where a day's history comes from, and the loop that writes it.

A source yields Chunks (handler.history.columns) in sequence; HistoryWriter turns them into Parquet. The
sources:

* ItchFileSource: a daily ITCH file (the offline builder, `fh history --itch`).
* PcapSource: the MoldUDP64 datagrams of a capture, sequenced (first copy of a sequence number wins, as
  the data plane's A/B arbitration does), with each message's capture time as its receive time.
* JournalFollower: the applied-message journal (fh/journal.h): a running instance's ring (`fh history
  --follow NAME`, or `--journal RING`) or fh record's files (`--journal DIR`). Every message the data plane
  applied, in sequence, with its MoldUDP64 sequence number: every table, as the offline build makes it.
* SegmentFollower: a running instance's segment, followed through its event ring (`fh history --follow`
  when the instance writes no journal): trades, BBO changes and book snapshots; no order events (the ring
  does not carry them).
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import time
from pathlib import Path

import numpy as np

from .columns import ItchColumns
from .writer import HOUR_NS, HistoryError, HistoryWriter, remove_stale_temporaries


def date_from_name(path: str | os.PathLike) -> str | None:
    """The trading date in a daily file's name: 20191230_... or NASDAQ's own 12302019.NASDAQ_ITCH50."""
    name = Path(path).name
    m = re.search(r"(?<!\d)(20\d\d)(0[1-9]|1[0-2])([0-3]\d)(?!\d)", name)
    if m:
        return f"{m[1]}-{m[2]}-{m[3]}"
    m = re.search(r"(?<!\d)(0[1-9]|1[0-2])([0-3]\d)(20\d\d)(?!\d)", name)
    if m:
        return f"{m[3]}-{m[1]}-{m[2]}"
    return None


class ItchFileSource:
    """A daily ITCH file, mapped."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = open(self.path, "rb")
        size = os.fstat(self._f.fileno()).st_size
        self.data = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.nbytes = size
        self.seq = self.recv = None
        self.counters: dict[str, int] = {}

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            try:
                self.data.close()
            except BufferError:  # a view of it lives on (a build that failed holds one in its traceback): it is
                pass             # unmapped when the last goes; the error that ended the build is the one to show
        self._f.close()


class PcapSource:
    """The sequenced messages of a capture's MoldUDP64 datagrams, as one run of daily-file blocks."""

    def __init__(self, path: str | os.PathLike):
        from .._native import ffi, lib
        from ..net.pcapfile import PcapReader

        self.path = Path(path)
        reader = PcapReader(self.path)
        sessions: dict[bytes, int] = {}
        grams = []
        c = {"datagrams": 0, "duplicate_messages": 0, "gap_messages": 0, "malformed_datagrams": 0,
             "unsequenced_messages": 0}
        offs = np.zeros(4096, np.uint32)
        used = ffi.new("size_t *")
        for d in reader.datagrams():
            c["datagrams"] += 1
            p = d.payload
            if len(p) < 20:
                c["malformed_datagrams"] += 1
                continue
            session, seq, count = struct.unpack_from(">10sQH", p)
            if count in (0, 0xFFFF):
                continue
            body = p[20:]
            n = lib.fh_blocks_index(body, len(body), ffi.from_buffer("uint32_t[]", offs), min(count, len(offs)), used)
            if n != count:
                c["malformed_datagrams"] += 1
            if n == 0:
                continue
            if seq == 0:
                c["unsequenced_messages"] += n
                continue
            s = sessions.setdefault(session, len(sessions))
            grams.append((s, seq, n, body[: used[0]], offs[:n].copy(), d.ts_ns))
        grams.sort(key=lambda g: (g[0], g[1]))  # stable: among copies of a sequence, the first captured wins
        parts, seqs, recvs = [], [], []
        nxt = {}
        for s, seq, n, body, off, ts in grams:
            want = nxt.get(s, seq)
            if seq > want:
                c["gap_messages"] += seq - want
            skip = max(0, want - seq)
            if skip >= n:
                c["duplicate_messages"] += n
                continue
            c["duplicate_messages"] += skip
            start = int(off[skip]) - 2
            parts.append(body[start:])
            seqs.append(np.arange(seq + skip, seq + n, dtype=np.uint64))
            recvs.append(np.full(n - skip, ts, np.int64))
            nxt[s] = seq + n
        c.update({f"pcap_{k}": v for k, v in reader.counters.items() if v})
        if reader.bad_record_at:
            c["pcap_bad_record_at"] = reader.bad_record_at
        self.data = b"".join(parts)
        self.nbytes = len(self.data)
        self.seq = np.concatenate(seqs) if seqs else np.zeros(0, np.uint64)
        self.recv = np.concatenate(recvs) if recvs else np.zeros(0, np.int64)
        self.counters = c

    def close(self) -> None:
        pass


def build_day(src, root: str | os.PathLike, date: str, depth: int = 10, snapshot_every_s: float = 300.0,
              replace: bool = False, progress=None, portable: bool = False) -> dict:
    """Write one day from an ItchFileSource or PcapSource. Returns a summary (rows, files, counters, rate)."""
    root = Path(root)
    stale = remove_stale_temporaries(root)
    cols = ItchColumns(max(src.nbytes, 1), depth=depth, snapshot_every_ns=int(snapshot_every_s * 1e9))
    w = None
    try:
        w = HistoryWriter(root, date, cols.symbols, replace=replace, portable=portable)
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        gen = cols.feed(src.data, src.seq, src.recv)
        consumed = 0
        while True:
            try:
                ch = next(gen)
            except StopIteration as stop:
                consumed = stop.value or 0
                break
            w.add(ch)
            if len(ch.ts):
                w.flush_before(int(ch.ts[-1]) // HOUR_NS)
            if progress:
                progress(cols.counters)
        for ch in cols.finish():
            w.add(ch)
        decode_cpu, decoded = time.thread_time() - m0, time.perf_counter() - t0
        eng = cols.engine_counters()
        trailing = src.nbytes - consumed
        counters = {**{k: v for k, v in eng.items() if v}, **src.counters, **cols.counters,
                    "side_ref_out_of_range": cols.sides.out_of_range, "stale_temporaries_removed": stale}
        if trailing:
            counters["truncated_bytes"] = trailing
        w.close(counters)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    except BaseException:
        if w is not None:
            w.abandon()
        raise
    finally:
        cols.close()
    return {"date": w.date, "root": str(root), "messages": cols.counters["messages"], "rows": w.rows,
            "files": len(w.files), "bytes": w.bytes, "seconds": round(elapsed, 3),
            "messages_per_s": round(cols.counters["messages"] / elapsed) if elapsed > 0 else None,
            "cpu_seconds": round(cpu, 3),
            "decode_cpu_seconds": round(decode_cpu, 3), "write_cpu_seconds": round(w.write_cpu_s, 3),
            "write_cpu_by_stage": {k: round(v, 3) for k, v in sorted(w.stage_cpu.items())},
            # the stages' overlap: the source decoded by `decoded_seconds` (of which it waited `writer_wait_seconds`
            # for writers that were behind); the writers finished `tail_seconds` after it
            "decoded_seconds": round(decoded, 3), "writer_wait_seconds": round(w.wait_s, 3),
            "tail_seconds": round(elapsed - decoded, 3),
            "counters": counters}


class JournalFollower:
    """Every applied message from the journal, through the same columns and writer as the offline build.

    ring: a handler.journal.JournalRing to follow live (until its writer stops, `timeout` seconds pass with
    nothing new, or stop()); or records: an iterable of handler.journal.Record (fh record's files). recv_ns is
    when the follower read the record (the journal carries no receive time). Holes are counted, never hidden:
    LOST and MISSED records (`lost_messages`), sequences skipped (`gap_messages`), a ring that went over the
    follower (`overruns`). Files are written per hour as the day passes, and every `flush_every_s` for the
    current hour (one more part file each time)."""

    BATCH_BYTES = 4 << 20

    def __init__(self, root: str | os.PathLike, date: str, *, ring=None, records=None, depth: int = 10,
                 snapshot_every_s: float = 300.0, flush_every_s: float = 10.0, replace: bool = False,
                 nbytes: int | None = None, portable: bool = False):
        from .. import native

        self.root = Path(root)
        self.ring, self.records = ring, records
        self.stale = remove_stale_temporaries(self.root)
        self.cols = ItchColumns(nbytes or native.EngineConfig.orders * 38, depth=depth,
                                snapshot_every_ns=int(snapshot_every_s * 1e9))
        try:
            self.w = HistoryWriter(self.root, date, self.cols.symbols, replace=replace, portable=portable)
        except BaseException:
            self.cols.close()
            raise
        self.flush_every = flush_every_s
        self.counters = {"records": 0, "lost_messages": 0, "gap_messages": 0, "overruns": 0, "sessions": 0}
        self._parts: list[bytes] = []
        self._seqs: list[np.ndarray] = []
        self._recvs: list[np.ndarray] = []
        self._bytes = 0
        self._next: dict[str, int] = {}

    def _take(self, r, now_ns: int) -> None:
        from .. import journal as J

        self.counters["records"] += 1
        if r.kind in (J.LOST, J.MISSED):
            self.counters["lost_messages"] += r.arg
            if r.seq:
                self._next[r.session] = max(self._next.get(r.session, 0), r.seq + r.arg)
            return
        if r.kind != J.MSGS or not r.count:
            return
        if r.session not in self._next:
            self.counters["sessions"] += 1
        if r.seq:
            want = self._next.get(r.session, r.seq)
            if r.seq > want:
                self.counters["gap_messages"] += r.seq - want
            self._next[r.session] = r.seq + r.count
            self._seqs.append(np.arange(r.seq, r.seq + r.count, dtype=np.uint64))
        else:
            self._next.setdefault(r.session, 0)
            self._seqs.append(np.zeros(r.count, np.uint64))
        self._parts.append(r.body)
        self._recvs.append(np.full(r.count, now_ns, np.int64))
        self._bytes += len(r.body)

    def _feed(self) -> None:
        if not self._parts:
            return
        data = b"".join(self._parts)
        seq, recv = np.concatenate(self._seqs), np.concatenate(self._recvs)
        self._parts, self._seqs, self._recvs, self._bytes = [], [], [], 0
        gen = self.cols.feed(data, seq, recv)
        while True:
            try:
                ch = next(gen)
            except StopIteration as stop:
                left = len(data) - (stop.value or 0)
                if left:  # a record's blocks are whole: only a damaged record leaves bytes
                    self.counters["truncated_bytes"] = self.counters.get("truncated_bytes", 0) + left
                break
            self.w.add(ch)
            if len(ch.ts):
                self.w.flush_before(int(ch.ts[-1]) // HOUR_NS)

    def run(self, timeout: float | None = None, stop=lambda: False) -> dict:
        from .. import journal as J

        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if self.records is not None:
                for r in self.records:
                    self._take(r, 0)
                    if self._bytes >= self.BATCH_BYTES:
                        self._feed()
                self._feed()
            else:
                self._follow(timeout, stop)
            for ch in self.cols.finish():
                self.w.add(ch)
            eng = self.cols.engine_counters()
            counters = {**{k: v for k, v in eng.items() if v}, **self.counters, **self.cols.counters,
                        "side_ref_out_of_range": self.cols.sides.out_of_range, "stale_temporaries_removed": self.stale}
            self.w.close(counters)
        except BaseException:
            self.w.abandon()
            raise
        finally:
            self.cols.close()
            if self.ring is not None:
                self.ring.close()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = self.cols.counters["messages"]
        return {"date": self.w.date, "root": str(self.root), "source": "journal", "messages": n, "rows": self.w.rows,
                "files": len(self.w.files), "bytes": self.w.bytes, "seconds": round(elapsed, 3),
                "messages_per_s": round(n / elapsed) if elapsed > 0 else None, "cpu_seconds": round(cpu, 3),
                "counters": counters}

    def _follow(self, timeout: float | None, stop) -> None:
        from .. import journal as J

        ring = self.ring
        pos = ring.oldest()
        last_new = last_flush = time.monotonic()
        while not stop():
            st, nxt, rec = ring.read(pos)
            if st == J.OK:
                self._take(rec, time.time_ns())
                pos = nxt
                if self._bytes < self.BATCH_BYTES:
                    continue
            elif st == J.OVERRUN:
                self.counters["overruns"] += 1
                pos = nxt
                continue
            elif st == J.CORRUPT:
                raise HistoryError(f"{ring.path}: position {pos} is not on a record: the journal is damaged "
                                   f"or was created again under the follower; start fh history again")
            now = time.monotonic()
            fed = bool(self._parts)
            self._feed()
            if fed:
                last_new = now
            if now - last_flush >= self.flush_every:
                self.w.flush_all()
                last_flush = now
            if st == J.OK:
                continue
            if timeout is not None and now - last_new > timeout:
                break
            if not ring.writer_alive() and ring.head() <= pos:
                break
            time.sleep(0.005)
        self._feed()


class SegmentFollower:
    """A running instance's segment, followed through its event ring: trades and BBO changes as they are
    published, top-`depth` snapshots of the books that changed every `snapshot_every_s`, written every
    `flush_every_s` as new part files of the current hour. seq is the event's sequence in the ring (the
    message sequence is not in the event; the journal will bring it), recv_ns the time the follower read it.
    An overrun (the follower fell a ring behind) is counted, never hidden."""

    def __init__(self, segment: str, root: str | os.PathLike, date: str, depth: int = 10,
                 snapshot_every_s: float = 60.0, flush_every_s: float = 10.0, replace: bool = False,
                 portable: bool = False):
        from ..shm import Reader

        self.r = Reader(segment)
        self.root = Path(root)
        self.symbols = np.zeros(65536, "S8")
        self.w = HistoryWriter(self.root, date, self.symbols, replace=replace, portable=portable)
        self.depth = depth
        self.snap_every = snapshot_every_s
        self.flush_every = flush_every_s
        self.counters = {"events": 0, "trades": 0, "bbo": 0, "snapshots": 0, "overrun_events": 0,
                         "missed_at_start": 0}
        self.changed: set[int] = set()

    def _symbol(self, loc: int) -> None:
        if not self.symbols[loc]:
            self.symbols[loc] = self.r.symbol_of(loc).encode("latin-1")[:8]

    def _take(self, ev: np.ndarray, now_ns: int) -> None:
        from .._native import lib
        from .columns import Chunk

        if not len(ev):
            return
        for loc in np.unique(ev["locate"]).tolist():
            self._symbol(loc)
            self.changed.add(loc)
        ch = Chunk(0, ev["seq"], ev["itch_ts"], None)
        recv = np.full(len(ev), now_ns, np.int64)
        for name, t in (("trades", lib.FH_EV_TRADE), ("bbo", lib.FH_EV_BBO)):
            m = ev["type"] == t
            if not m.any():
                continue
            e = ev[m]
            cols = {"seq": e["seq"], "ts": e["itch_ts"], "recv": recv[m], "locate": e["locate"]}
            if name == "trades":
                cols.update(price=e["c"].astype(np.int64), shares=e["a"].astype(np.int64),
                            match=e["b"].astype(np.int64), aggressor=np.zeros(len(e), "S1"),
                            type=np.zeros(len(e), "S1"))
            else:
                cols.update(bid_price=e["c"].astype(np.int64), bid_shares=e["a"].astype(np.int64),
                            ask_price=e["d"].astype(np.int64), ask_shares=e["b"].astype(np.int64))
            ch.tables[name] = cols
            self.counters[name] += int(m.sum())
        self.counters["events"] += len(ev)
        self.w.add(ch)

    def _snapshot(self, last_seq: int, last_ts: int) -> None:
        from .columns import Chunk

        rows = []
        for loc in sorted(self.changed):
            try:
                s = self.r.snapshot(loc, self.depth)
            except Exception:  # an unpublished or vanished book: nothing to record
                continue
            d = s.dump()
            rows.append((loc, d["bids"], d["asks"]))
        self.changed.clear()
        if not rows:
            return
        n = len(rows)
        tbl = {"seq": np.full(n, last_seq, np.uint64), "ts": np.full(n, last_ts, np.uint64),
               "recv": np.full(n, time.time_ns(), np.int64),
               "locate": np.array([r[0] for r in rows], np.uint16), "kind": np.full(n, b"interval", "S8")}
        for name, k in (("bid", 1), ("ask", 2)):
            lv = [r[k] for r in rows]
            tbl[f"{name}_n"] = np.array([len(x) for x in lv], np.int64)
            flat = np.array([lvl for x in lv for lvl in x], np.int64).reshape(-1, 3)
            tbl[f"{name}_price"], tbl[f"{name}_shares"], tbl[f"{name}_orders"] = flat[:, 0], flat[:, 1], flat[:, 2]
        ch = Chunk(0, tbl["seq"], tbl["ts"], None)
        ch.tables["books"] = tbl
        self.counters["snapshots"] += n
        self.w.add(ch)

    def run(self, start: int | None = None, timeout: float | None = None, stop=lambda: False) -> dict:
        """Follow until the writer stops, `timeout` seconds pass with no event, or stop() is true."""
        nxt = self.r.oldest() if start is None else start
        if start is None and nxt > 1:  # events the ring had already overwritten: counted, never hidden
            self.counters["missed_at_start"] = nxt - 1
        last_flush = last_snap = last_event = time.monotonic()
        last_seq = last_ts = 0
        while not stop():
            arr, nxt2, lost = self.r.read_events(nxt, self.r.EVENT_BATCH)
            now = time.monotonic()
            if lost:
                self.counters["overrun_events"] += lost
            if len(arr):
                self._take(arr, time.time_ns())
                last_seq, last_ts = int(arr["seq"][-1]), int(arr["itch_ts"][-1])
                last_event = now
            nxt = nxt2
            if now - last_snap >= self.snap_every:
                self._snapshot(last_seq, last_ts)
                last_snap = now
            if now - last_flush >= self.flush_every:
                self.w.flush_all()
                last_flush = now
            if len(arr) or lost:
                continue
            if timeout is not None and now - last_event > timeout:
                break
            if self.r.writer_status().state != "running":
                break
            time.sleep(0.01)
        self._snapshot(last_seq, last_ts)
        self.w.close(self.counters)
        self.r.close()
        return {"date": self.w.date, "root": str(self.root), "rows": self.w.rows, "files": len(self.w.files),
                "counters": self.counters}

