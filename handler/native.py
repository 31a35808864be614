"""The C core through cffi: the book engine, the ITCH decoder and the day generator.

Errors from C arrive as NativeError carrying the C side's message (its cause; _errmsg leaves out the C function
and line it starts with); this module is the one place where they become Python exceptions.
"""

from __future__ import annotations

import mmap
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ._native import ffi, lib
from .errors import FhError, InputError

BID, ASK = 0, 1


class NativeError(FhError, RuntimeError):
    """A call into the C core failed; the message is the core's own."""


def _errmsg() -> str:
    """The C core's last error, as a user reads it: without the `function:line: ` it starts with (the C core's
    own diagnostics, not the user's business: the C programs print them whole)."""
    return _ERR_WHERE.sub("", ffi.string(lib.fh_errmsg()).decode(errors="replace"), count=1)


_ERR_WHERE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*:[0-9]+: ")


def _counter_names() -> list[str]:
    names, i = [], 0
    while (p := lib.fh_counter_name(i)) != ffi.NULL:
        names.append(ffi.string(p).decode())
        i += 1
    return names


COUNTER_NAMES = _counter_names()


@dataclass(frozen=True)
class EngineConfig:
    """Capacities of a book engine; memory is allocated once, from these."""

    instruments: int = 65535
    orders: int = 8 << 20
    levels: int = 4 << 20

    @classmethod
    def for_input(cls, nbytes: int) -> "EngineConfig":
        """Capacities that an input of nbytes cannot exceed (every add takes at least 38 bytes), capped at the
        defaults: small inputs get small engines."""
        adds = nbytes // 38 + 1
        return cls(orders=min(cls.orders, max(1024, adds)), levels=min(cls.levels, max(4096, 4 * adds)))


def segment_footprint(max_levels: int = 4 << 20, event_capacity: int = 1 << 16, depth: int = 10,
                      ladder_books: int = lib.FH_SEG_LADDER_BOOKS) -> int:
    """Bytes of a segment with these capacities (0 if they are invalid)."""
    c = ffi.new("fh_seg_cfg_t *", (ffi.NULL, ffi.NULL, max_levels, event_capacity, depth, -1, ladder_books))
    return lib.fh_seg_footprint(c)


class Segment:
    """The writer's side of a shared-memory segment (native/include/fh/seg.h): created, locked and mapped
    here; readers join it with handler.shm. Close it (or let it be collected) to mark the writer stopped."""

    def __init__(self, path: str | os.PathLike, name: str = "fh", max_levels: int = 4 << 20,
                 event_capacity: int = 1 << 16, depth: int = 10, gid: int = -1,
                 ladder_books: int = lib.FH_SEG_LADDER_BOOKS):
        self._s = None
        self.path = os.fspath(path)
        self._keep = (ffi.new("char[]", os.fsencode(self.path)), ffi.new("char[]", name.encode()))
        # ladder_books: the first books created get a price ladder (fh/seg.h; 0: every level in the sorted arrays)
        c = ffi.new("fh_seg_cfg_t *", (self._keep[0], self._keep[1], max_levels, event_capacity, depth, gid,
                                       ladder_books))
        self.size = lib.fh_seg_footprint(c)
        s = lib.fh_seg_create(c)
        if s == ffi.NULL:
            raise NativeError(_errmsg())
        self._s = s

    def heartbeat(self) -> None:
        lib.fh_seg_heartbeat(self._s)

    def close(self, unlink: bool = False) -> None:
        if self._s is not None:
            lib.fh_seg_close(self._s, int(unlink))
            self._s = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(unlink=True)

    def __del__(self):
        self.close()


class Engine:
    """One C book engine (native/include/fh/book.h). Not thread-safe. With a Segment, it keeps its books
    there and publishes every change to its readers; without one, in private memory."""

    def __init__(self, cfg: EngineConfig | None = None, segment: Segment | None = None):
        self.cfg = cfg or EngineConfig()
        c = ffi.new("fh_engine_cfg_t *", (self.cfg.instruments, self.cfg.orders, self.cfg.levels))
        self.footprint = lib.fh_engine_footprint(c)
        self.segment = segment
        e = lib.fh_engine_create_on(c, segment._s) if segment else lib.fh_engine_create(c)
        if e == ffi.NULL:
            raise NativeError(_errmsg())
        self._e = ffi.gc(e, lib.fh_engine_destroy)
        self._books = None  # the engine as a feed's consumer, made by apply_mold when first needed

    def close(self) -> None:
        """Destroy the engine now (it applies what it has staged first), not when it is collected: before the
        Segment it publishes into is closed, which unmaps the books it would write."""
        if self._e is not None:
            ffi.release(self._e)
            self._e = None

    def set_publish(self, on: bool) -> None:
        lib.fh_engine_set_publish(self._e, on)

    def publish_stats(self) -> None:
        lib.fh_engine_publish_stats(self._e)

    def set_status(self, locate: int, stale: bool) -> None:
        if lib.fh_engine_set_status(self._e, locate, 2 if stale else 1, ffi.NULL):
            raise ValueError(f"locate {locate} has no book")

    def reset(self) -> None:
        lib.fh_engine_reset(self._e)

    def snapshot_save(self, path: str | os.PathLike, session: str, next_seq: int, day: int = 0,
                      flags: int = 0) -> dict:
        """The engine's whole state to path (written to path.tmp, fsynced, renamed): fh/book.h."""
        m = ffi.new("fh_snapshot_meta_t *")
        m.session = session.encode("latin-1")[:10].ljust(10)
        m.next_seq, m.day, m.flags, m.created_ns = next_seq, day, flags, time.time_ns()
        if lib.fh_engine_snapshot_save(self._e, m, os.fsencode(path)):
            raise NativeError(_errmsg())
        return snapshot_meta(path)

    def snapshot_load(self, path: str | os.PathLike) -> dict:
        """Replace the state with the snapshot at path, checked whole first; NativeError (one line) if refused."""
        m = ffi.new("fh_snapshot_meta_t *")
        if lib.fh_engine_snapshot_load(self._e, os.fsencode(path), m):
            raise NativeError(_errmsg())
        return _meta(m)

    def apply(self, msg: bytes) -> None:
        lib.fh_engine_apply(self._e, ffi.from_buffer(msg), len(msg))

    def apply_blocks(self, data) -> int:
        """Apply 2-byte-length blocks (a daily file); returns the bytes consumed (less than len on a truncated
        tail, which is counted)."""
        return lib.fh_engine_apply_blocks(self._e, ffi.from_buffer(data), len(data))

    def apply_mold(self, payload) -> int:
        """One MoldUDP64 datagram without sequencing, through the MoldUDP64 layer into this engine
        (fh_mold_apply_unsequenced): its message count (0 heartbeat, 0xFFFF end of session), or -1 if
        malformed, counted in the engine's mold_malformed (the blocks before the fault are applied)."""
        if self._books is None:
            self._books = ffi.new("fh_feed_consumer_t *")
            lib.fh_engine_consumer(self._e, self._books)
            self._malformed = lib.fh_engine_counter_slot(self._e, COUNTER_NAMES.index("mold_malformed"))
        lib.fh_engine_batch_begin(self._e, 0)
        n = lib.fh_mold_apply_unsequenced(ffi.from_buffer(payload), len(payload), self._books, self._malformed)
        lib.fh_engine_batch_end(self._e)
        return n

    def apply_file(self, path: str | os.PathLike) -> int:
        """Apply a whole daily file, mapped rather than read. Returns the bytes consumed."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return 0
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return self.apply_blocks(m)

    def apply_pcap(self, path: str | os.PathLike, lines: list[tuple[str, int]] | None = None,
                   max_ahead: int | None = None, confirm: int | None = None) -> dict[str, int]:
        """Apply the MoldUDP64 datagrams of a pcap in capture order, sequenced as the data plane does (the
        first copy of each sequence number wins across lines; sequence 0 is applied unsequenced). lines:
        the (destination, port) flows to take (default: every UDP flow, in order of appearance). Returns
        the reader's and the sequencer's counters."""
        from .net.pcapfile import PcapReader

        feed = ffi.new("fh_mold_feed_t *")
        cfg = ffi.new("fh_mold_cfg_t *")
        lib.fh_mold_cfg_defaults(cfg, 1)
        cfg.hold = 0  # offline, in capture order: a gap is given up at once (no timer runs here)
        cfg.msg_len = lib.fh_itch_len  # the data plane's integrity rules: framing, sessions, jumps
        if max_ahead is not None:  # (0: trust any jump, e.g. a capture of a few datagrams from mid-session)
            cfg.max_ahead = max_ahead
        if confirm is not None:
            cfg.confirm = confirm
        if lib.fh_mold_feed_init(feed, cfg):
            raise NativeError(_errmsg())
        books = ffi.new("fh_feed_consumer_t *")
        lib.fh_engine_consumer(self._e, books)
        lib.fh_mold_feed_set_consumer(feed, books)
        index: dict[tuple[str, int], int] = {k: i for i, k in enumerate(lines)} if lines is not None else {}
        reader = PcapReader(path)
        for d in reader.datagrams():
            key = (d.dst, d.dport)
            line = index.get(key)
            if line is None:
                if lines is not None:
                    continue
                line = index[key] = len(index)
            lib.fh_mold_feed_apply(feed, ffi.from_buffer(d.payload), len(d.payload), min(line, 15), 0)
        out = dict(reader.counters)
        i = 0
        while (p := lib.fh_mold_counter_name(i)) != ffi.NULL:
            out[f"mold_{ffi.string(p).decode()}"] = int(feed.counters[i])
            i += 1
        return out

    @property
    def live_orders(self) -> int:
        return lib.fh_engine_live_orders(self._e)

    @property
    def spilled(self) -> int:
        """Live orders in the spill table: lapped in their home slot by a newer reference (or above 2^42 - 1)."""
        return lib.fh_engine_spilled(self._e)

    @property
    def levels_peak(self) -> int:
        return lib.fh_engine_levels_used(self._e)

    def counters(self) -> dict[str, int]:
        """Anomaly counters by name (all of them) and message counts by type as type_X (non-zero ones)."""
        c = ffi.new("uint64_t[]", len(COUNTER_NAMES))
        lib.fh_engine_counters(self._e, c)
        out = {name: int(c[i]) for i, name in enumerate(COUNTER_NAMES)}
        t = lib.fh_engine_type_counts(self._e)
        for i in range(256):
            if t[i]:
                out[f"type_{chr(i)}"] = int(t[i])
        return out

    def locates(self) -> list[int]:
        n = lib.fh_engine_locates(self._e, ffi.NULL, 0)
        buf = ffi.new("uint16_t[]", max(n, 1))
        lib.fh_engine_locates(self._e, buf, n)
        return list(buf[0:n])

    def info(self, locate: int) -> dict | None:
        bi = ffi.new("fh_book_info_t *")
        if lib.fh_engine_book_info(self._e, locate, bi):
            return None
        return {
            "locate": bi.locate,
            "symbol": ffi.unpack(bi.symbol, bi.symbol_len).decode("latin-1"),
            "trading_state": bi.trading_state.decode("latin-1"),
            "status": "stale" if bi.status == 2 else "live",
            "levels": (bi.levels[0], bi.levels[1]),
            "last_trade": (bi.last_price, bi.last_shares) if bi.last_shares else None,
            "updates": bi.updates,
        }

    def levels(self, locate: int, side: int, depth: int | None = None) -> list[list[int]]:
        info = self.info(locate)
        if info is None:
            return []
        n = info["levels"][side] if depth is None else min(depth, info["levels"][side])
        if n == 0:
            return []
        buf = ffi.new("fh_level_t[]", n)
        n = lib.fh_engine_levels(self._e, locate, side, buf, n)
        return [[buf[i].price, buf[i].shares, buf[i].orders] for i in range(n)]

    def book(self, locate: int, depth: int | None = None) -> dict | None:
        info = self.info(locate)
        if info is None:
            return None
        return {
            "locate": locate,
            "symbol": info["symbol"],
            "bids": self.levels(locate, BID, depth),
            "asks": self.levels(locate, ASK, depth),
        }

    def dump(self, depth: int | None = None) -> list[dict]:
        """The canonical dump (docs/book-semantics.md): non-empty books, by locate."""
        out = []
        for loc in self.locates():
            info = self.info(loc)
            if info["levels"][0] or info["levels"][1]:
                out.append(self.book(loc, depth))
        return out


def itch_json(msg: bytes) -> str | None:
    """One message as a JSON object (docs/decode-format.md), or None if short or of an unknown type."""
    out = ffi.new("char[]", lib.FH_ITCH_JSON_MAX)
    n = lib.fh_itch_to_json(ffi.from_buffer(msg), len(msg), out, lib.FH_ITCH_JSON_MAX)
    return ffi.unpack(out, n).decode("ascii") if n > 0 else None


def itch_spec_length(type_byte: int) -> int:
    return lib.fh_itch_len[type_byte]


def itch_scan(data) -> tuple[int, int]:
    """Parse-only pass over daily-file blocks: (messages, checksum)."""
    s = ffi.new("uint64_t *")
    n = lib.fh_itch_scan(ffi.from_buffer(data), len(data), s)
    return n, s[0]


def synth_min_messages(instruments: int) -> int:
    return lib.fh_synth_min_messages(instruments)


SYNTH_SHAPES = {"uniform": 0, "real": 1, "real-late": 2}  # fh/synth.h: FH_SYNTH_SHAPE_*


def _synth_cfg(messages: int, instruments: int, seed: int, anomaly_ppm: int, shape: str = "uniform"):
    if not 1 <= instruments <= 65535:
        raise InputError(f"instruments must be 1..65535, not {instruments}")
    low = synth_min_messages(instruments)
    if messages < low:
        raise InputError(f"{instruments} instruments need at least {low} messages (the prelude alone), not {messages}")
    for what, v, bits in (("messages", messages, 64), ("seed", seed, 64), ("anomaly_ppm", anomaly_ppm, 32)):
        if not 0 <= v < 1 << bits:  # (cffi's OverflowError was a traceback)
            raise InputError(f"{what} {v} is out of range (at most {(1 << bits) - 1})")
    if shape not in SYNTH_SHAPES:
        raise InputError(f"shape must be one of {', '.join(SYNTH_SHAPES)}, not {shape!r}")
    return ffi.new("fh_synth_cfg_t *", (messages, instruments, seed, anomaly_ppm, SYNTH_SHAPES[shape]))


SYNTH_BYTES_A_MESSAGE = 31  # a generated day's size a message, about (synth.c sizes its buffer by it; 29-32 measured)


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _synth_room(messages: int, instruments: int, have: int | None, where: str, fix: str, copies: int = 1) -> None:
    """InputError when `copies` of a day of `messages` cannot fit in `have` bytes (a day grows ~31 bytes a message: a
    count typed with a few digits too many ran until the disk was full, or the host ran out of memory). `where`
    says what `have` is, with {} for the amount."""
    from .ui import fmt_bytes, fmt_int

    one = messages * SYNTH_BYTES_A_MESSAGE + instruments * 70
    if have is not None and copies * one > have:
        fit = max(0, (have // copies - instruments * 70) // SYNTH_BYTES_A_MESSAGE)
        twice = f" ({copies} copies of it while it is made)" if copies > 1 else ""
        raise InputError(f"a day of {fmt_int(messages)} messages takes about {fmt_bytes(one)}{twice}; "
                         f"{where.format(fmt_bytes(have))}: give fewer --messages (about {fmt_int(fit)} fit){fix}")


def synth_bytes(messages: int, instruments: int, seed: int = 1, anomaly_ppm: int = 0, shape: str = "uniform") -> bytes:
    """A generated day in the daily file format (shape: "uniform", "real" or "real-late", fh/synth.h)."""
    cfg = _synth_cfg(messages, instruments, seed, anomaly_ppm, shape)
    avail = _mem_available()  # the generator's buffer and the copy returned here
    _synth_room(messages, instruments, avail, "this host has {} of memory available", "", copies=2)
    out, n = ffi.new("uint8_t **"), ffi.new("size_t *")
    if lib.fh_synth_buffer(cfg, out, n):
        raise NativeError(_errmsg())
    try:
        return ffi.unpack(ffi.cast("char *", out[0]), n[0])
    finally:
        lib.fh_synth_free(out[0])


def synth_file(path: str | os.PathLike, messages: int, instruments: int, seed: int = 1, anomaly_ppm: int = 0,
               shape: str = "uniform") -> None:
    cfg = _synth_cfg(messages, instruments, seed, anomaly_ppm, shape)
    d = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(d)
        free = st.f_bavail * st.f_frsize if st.f_blocks else None  # (no blocks: /proc, /sys: its own error says it)
        if free is not None and os.path.isfile(path):  # (replaced: its room comes back)
            free += os.path.getsize(path)
    except OSError:  # (a directory that is not there: the generator's own error names it)
        free = None
    _synth_room(messages, instruments, free, f"{d} has {{}} free", " or write it on a larger file system")
    if lib.fh_synth_file(cfg, os.fsencode(Path(path))):
        raise NativeError(_errmsg())


def blocks_prefix(data, max_bytes: int) -> int:
    """Length of the longest run of whole blocks at the start of data that fits in max_bytes."""
    return lib.fh_blocks_prefix(ffi.from_buffer(data), len(data), max_bytes)


def iter_blocks(data) -> Iterator[tuple[int, memoryview]]:
    """(offset, message) for each 2-byte-length block; stops at a truncated tail (offset == len otherwise)."""
    mv = memoryview(data)
    off, end = 0, len(mv)
    while end - off >= 2:
        n = (mv[off] << 8) | mv[off + 1]
        if n > end - off - 2:
            break
        yield off, mv[off + 2 : off + 2 + n]
        off += 2 + n


def _meta(m) -> dict:
    return {"session": ffi.unpack(m.session, 10).decode("latin-1"), "next_seq": m.next_seq, "day": m.day,
            "flags": m.flags, "created_ns": m.created_ns, "orders": m.orders, "books": m.books}


def snapshot_meta(path: str | os.PathLike) -> dict:
    """Check a snapshot file whole (header, sizes, CRCs) without loading it; NativeError (one line) if unsound."""
    m = ffi.new("fh_snapshot_meta_t *")
    if lib.fh_engine_snapshot_load(ffi.NULL, os.fsencode(path), m):
        raise NativeError(_errmsg())
    return _meta(m)


def journal_file_apply(engine: "Engine | None", path: str | os.PathLike, after: int = 0) -> dict:
    """Read a journal file in C (fh_jfile_apply, fh/journal_file.h) and apply its MSGS records to engine (None:
    check only): the records wholly before sequence `after` stepped over unread, one that straddles it applied
    from `after` on, every record after them checked (length, CRC-32) and applied in one pass. Returns the
    header's session, day, part and first_seq, and stepped, records, msgs_records, holes, messages, end_seq (the
    sequence after the last sequenced record; 0: none), bytes. NativeError with handler/journal.py's own one
    line when the file is truncated or damaged (the records before the fault are applied by then)."""
    r = ffi.new("fh_jfile_result_t *")
    if lib.fh_jfile_apply(engine._e if engine is not None else ffi.NULL, os.fsencode(path), after, r):
        raise NativeError(_errmsg())
    return {"session": ffi.unpack(r.session, 10).decode("latin-1"), "day": r.day, "part": r.part,
            "first_seq": r.first_seq, "stepped": r.stepped, "records": r.records, "msgs_records": r.msgs_records,
            "holes": r.holes, "messages": r.messages, "end_seq": r.end_seq, "bytes": r.bytes}
