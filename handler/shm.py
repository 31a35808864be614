"""Readers of an fh shared-memory segment (native/include/fh/shm.h): books, levels, events and stats.

A Reader joins a segment read-only twice over: through the C reader (native/src/shm_reader.c wraps the
`static inline` functions of fh/shm.h) for what needs the seqlock and event protocols, and as a read-only
mmap of the same file under numpy views (`books`, `level_keys`, `level_aggs`, `events`, `header`,
`stats_region`) that copy nothing and cannot be written through. The views are raw: a book read through
them may be torn while the writer changes it; `snapshot`, `book_dump`, `stats` and `events` are the
consistent reads.

Errors are exception classes (ShmError and below) whose message is one line naming the cause and the fix.
"""

from __future__ import annotations

import mmap
import os
import stat
import time
from collections import namedtuple
from datetime import datetime, timezone
from typing import Iterator

import numpy as np

from ._native import ffi, lib
from .errors import FhError

DEFAULT_DIR = "/dev/shm"
PRICE_SCALE = 10_000  # ITCH prices: 1/10000 dollar

# fh_shm_book_t.status
EMPTY, LIVE, STALE = lib.FH_BOOK_EMPTY, lib.FH_BOOK_LIVE, lib.FH_BOOK_STALE
STATUS_NAMES = {EMPTY: "empty", LIVE: "live", STALE: "stale"}
# fh_shm_event_t.type
EVENT_NAMES = {lib.FH_EV_BBO: "bbo", lib.FH_EV_TRADE: "trade", lib.FH_EV_STATE: "state",
               lib.FH_EV_STALE: "stale", lib.FH_EV_RECOVERED: "recovered"}
TRADING_STATES = {"T": "trading", "H": "halted", "P": "paused", "Q": "quotation only"}
WRITER_STATES = {1: "running", 2: "stopped"}


# ---- errors ---------------------------------------------------------------------------------------------


class ShmError(FhError):
    """A segment cannot be read as asked; the message (one line) names the cause and the fix."""


class NoSegment(ShmError):
    pass


class NotASegment(ShmError):
    pass


class LayoutMismatch(ShmError):
    pass


class WriterDead(ShmError):
    pass


class BookBusy(ShmError):
    pass


class UnknownInstrument(ShmError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


# ---- layout: numpy dtypes mirroring fh/shm.h, checked against the C compiler's offsets ----------------


def _struct(fields: list[tuple[str, object, int]], itemsize: int) -> np.dtype:
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": itemsize})


SIDE_DTYPE = _struct([("off", "<u4", 0), ("n", "<u4", 4)], 8)
BOOK_DTYPE = _struct([
    ("seq", "<u4", 0), ("locate", "<u4", 4), ("trading_state", "S1", 8), ("status", "u1", 9), ("flags", "u1", 10),
    ("symbol_len", "u1", 11), ("cls", ("u1", (2,)), 12), ("ladder", "<u2", 14), ("side", (SIDE_DTYPE, (2,)), 16),
    ("symbol", "S8", 32),
    ("last_price", "<i8", 40), ("last_shares", "<u4", 48), ("updates", "<u4", 52), ("itch_ts", "<u8", 56),
], 64)
AGG_DTYPE = _struct([("shares", "<u8", 0), ("orders", "<u4", 8), ("next_free", "<u4", 12)], 16)
# layout 5: a side's price ladder (fh_shm_lside_t): a window of LADDER_W ticks, its levels in slots
LADDER_W = lib.FH_SHM_LADDER_W
LSIDE_DTYPE = _struct([
    ("lo", "<u4", 0), ("best", "<u4", 4), ("nl", "<u4", 8), ("tick", "<u4", 12), ("mul", "<u4", 16),
    ("sh", "<u4", 20), ("wslot", "<u8", 24), ("occ", ("<u8", (LADDER_W // 64,)), 32),
], 64)
EVENT_DTYPE = _struct([
    ("seq", "<u8", 0), ("type", "u1", 8), ("trading_state", "S1", 9), ("status", "u1", 10), ("locate", "<u4", 12),
    ("itch_ts", "<u8", 16), ("rx_tsc", "<u8", 24), ("pub_tsc", "<u8", 32), ("a", "<u8", 40), ("b", "<u8", 48),
    ("c", "<i8", 56), ("d", "<i8", 64),
], 128)
HDR_DTYPE = _struct([
    ("magic", "<u8", 0), ("layout_version", "<u4", 8), ("hdr_size", "<u4", 12), ("size", "<u8", 16),
    ("books_off", "<u8", 24), ("lkey_off", "<u8", 32), ("lagg_off", "<u8", 40), ("events_off", "<u8", 48),
    ("stats_off", "<u8", 56), ("max_levels", "<u4", 64), ("event_capacity", "<u4", 68), ("depth", "<u4", 72),
    ("writer_pid", "<u4", 76), ("start_ns", "<u8", 80), ("tsc_hz", "<u8", 88), ("name", "S32", 96),
    ("nbooks", "<u4", 128), ("key_bits", "<u4", 132), ("price_exp", "<i4", 136),
    ("ladder_off", "<u8", 144), ("lslot_off", "<u8", 152), ("ladder_bits", "<u4", 160), ("ladder_books", "<u4", 164),
    ("heartbeat_ns", "<u8", 192), ("writer_state", "<u4", 200),
    ("standby", "<u4", 204), ("behind_msgs", "<u8", 208), ("head", "<u8", 256),
], 320)
def _off(t: str, f: str) -> int:
    return ffi.offsetof(t, f)


DP_LINE_DTYPE = _struct([(f, "<u8", _off("fh_shm_dp_line_t", f)) for f in
                         ("datagrams", "messages", "won", "duplicates", "late", "lost", "silent_ns")] +
                        [(f, "<u4", _off("fh_shm_dp_line_t", f)) for f in ("state", "kind")],
                        ffi.sizeof("fh_shm_dp_line_t"))
_NDROP, _NMOLD, _NLINE, _NAME = (lib.FH_SHM_DP_MAX_DROPS, lib.FH_SHM_DP_MAX_MOLD, lib.FH_SHM_DP_MAX_LINES,
                                 lib.FH_SHM_DP_NAME)
LAT_BUCKETS = lib.FH_SHM_LAT_BUCKETS
_DP = "fh_shm_dp_stats_t"
DP_DTYPE = _struct([
    ("present", "<u4", _off(_DP, "present")), ("ndrops", "<u4", _off(_DP, "ndrops")),
    ("nmold", "<u4", _off(_DP, "nmold")), ("nlines", "<u4", _off(_DP, "nlines")),
    ("packets", "<u8", _off(_DP, "packets")), ("bytes", "<u8", _off(_DP, "bytes")),
    ("next_seq", "<u8", _off(_DP, "next_seq")), ("feed_state", "<u4", _off(_DP, "feed_state")),
    ("held", "<u4", _off(_DP, "held")), ("outstanding", "<u4", _off(_DP, "outstanding")),
    ("session", "S12", _off(_DP, "session")),
    ("drops", ("<u8", (_NDROP,)), _off(_DP, "drops")), ("mold", ("<u8", (_NMOLD,)), _off(_DP, "mold")),
    ("line", (DP_LINE_DTYPE, (_NLINE,)), _off(_DP, "line")),
    ("drop_name", (f"S{_NAME}", (_NDROP,)), _off(_DP, "drop_name")),
    ("mold_name", (f"S{_NAME}", (_NMOLD,)), _off(_DP, "mold_name")),
    ("lat_count", "<u8", _off(_DP, "lat_count")),
    ("lat_bucket", ("<u8", (LAT_BUCKETS,)), _off(_DP, "lat_bucket")),
], ffi.sizeof(_DP))
LINE_STATES = {lib.FH_SHM_LINE_DOWN: "down", lib.FH_SHM_LINE_LIVE: "live", lib.FH_SHM_LINE_STALE: "stale"}
FEED_STATES = {lib.FH_SHM_FEED_WAITING: "waiting", lib.FH_SHM_FEED_LIVE: "live",
               lib.FH_SHM_FEED_RECOVERING: "recovering", lib.FH_SHM_FEED_STALE: "stale",
               lib.FH_SHM_FEED_ENDED: "ended"}
STATS_DTYPE = _struct([
    ("seq", "<u4", 0), ("count", "<u4", 4), ("counter", ("<u8", (lib.FH_SHM_MAX_COUNTERS,)), 8),
    ("type_count", ("<u8", (256,)), 8 + 8 * lib.FH_SHM_MAX_COUNTERS),
    ("dp", DP_DTYPE, ffi.offsetof("fh_shm_stats_t", "dp")),
], ffi.sizeof("fh_shm_stats_t"))


def _line(l) -> dict:
    silent = int(l["silent_ns"])
    return {"kind": "retransmission" if int(l["kind"]) == lib.FH_SHM_LINE_RETRANS else "feed",
            "state": LINE_STATES.get(int(l["state"]), str(int(l["state"]))),
            **{k: int(l[k]) for k in ("datagrams", "messages", "won", "duplicates", "late", "lost")},
            "silent_ms": None if silent == 2**64 - 1 else silent / 1e6}


def lat_upper_ns(i: int) -> int:
    """Inclusive upper bound, in ns, of latency bucket i: fh/shm.h's fh_shm_lat_upper itself (the one definition
    of the histogram), called through cffi. Exact below 64, then 16 sub-buckets per power of two; the last
    bucket also holds everything above it."""
    return int(lib.fh_shm_lat_upper(i))


def key_prices(keys: np.ndarray, side: int, key_bits: int) -> np.ndarray:
    """The prices (int64) of level keys (fh/shm.h fh_shm_key_price): 32-bit keys hold an unsigned price, 64-bit
    keys a signed one with its sign bit flipped; asks (side 1) are complemented."""
    k = ~keys if side else keys
    if key_bits == 32:
        return k.astype(np.int64)
    return (k ^ np.uint64(1 << 63)).view(np.int64)


def window_levels(ladders: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every level that the windows of the ladder sides `ladders` (LSIDE_DTYPE records of one side, layout 5) hold:
    (the record's index, the slot, the price as int64). An occupied slot i of a window [lo, lo + LADDER_W) of tick
    indexes holds index lo + ((i - lo) mod LADDER_W), the price's tick index (price / tick, complemented for asks);
    a record with no level or no tick holds none. Torn records are the caller's to refuse (or retry)."""
    bits = np.unpackbits(ladders["occ"].view(np.uint8).reshape(len(ladders), -1), axis=1, bitorder="little")
    g, slot = np.nonzero(bits.astype(bool) & ((ladders["nl"] > 0) & (ladders["tick"] > 0))[:, None])
    lo = ladders["lo"][g].astype(np.int64)
    kx = (lo + ((slot - lo) & (LADDER_W - 1))) & 0xFFFFFFFF
    q = (~kx & 0xFFFFFFFF) if side else kx
    return g, slot, (q * ladders["tick"][g].astype(np.int64)) & 0xFFFFFFFF


def lat_lower_ns(i: int) -> int:
    """Inclusive lower bound, in ns, of latency bucket i."""
    return i if i < 64 else lat_upper_ns(i - 1) + 1


LAT_UPPER_NS = np.array([lat_upper_ns(i) for i in range(LAT_BUCKETS)], dtype=np.uint64)


def lat_percentile(buckets, q: float) -> int:
    """The q-quantile (0 < q <= 1) of a latency histogram, in ns: the upper bound of the bucket where the
    cumulative count reaches round(q * count) (at least 1), as fh-dataplane computes its own; 0 if empty."""
    b = np.asarray(buckets, dtype=np.uint64)
    total = int(b.sum())
    if not total:
        return 0
    want = max(1, int(q * total + 0.5))
    i = int(np.searchsorted(np.cumsum(b), want))
    return int(LAT_UPPER_NS[min(i, LAT_BUCKETS - 1)])
# fh_shm_level_t is (price i64, shares u64, orders u32, pad), in the order of the canonical dump, [price, shares,
# orders], so that a level reads as it prints.
LEVEL_DTYPE = _struct([("price", "<i8", 0), ("shares", "<u8", 8), ("orders", "<u4", 16)], 24)
SNAPSHOT_MAX_DEPTH = 64
_SNAP_BIDS = ffi.offsetof("fh_shm_snapshot_t", "bids")
_SNAP_ASKS = ffi.offsetof("fh_shm_snapshot_t", "asks")


def _check_layout() -> None:
    """Every numpy field sits where the C compiler put it, with its size (the cffi module was compiled
    against fh/shm.h, and cffi verified its declarations there)."""
    pairs = [(BOOK_DTYPE, "fh_shm_book_t"), (AGG_DTYPE, "fh_shm_agg_t"), (EVENT_DTYPE, "fh_shm_event_t"),
             (HDR_DTYPE, "fh_shm_hdr_t"), (STATS_DTYPE, "fh_shm_stats_t"), (LEVEL_DTYPE, "fh_shm_level_t"),
             (SIDE_DTYPE, "fh_shm_side_t"), (DP_DTYPE, "fh_shm_dp_stats_t"), (DP_LINE_DTYPE, "fh_shm_dp_line_t"),
             (LSIDE_DTYPE, "fh_shm_lside_t")]
    for dt, ctype in pairs:
        if dt.itemsize != ffi.sizeof(ctype):
            raise ImportError(f"{ctype}: numpy {dt.itemsize} bytes, C {ffi.sizeof(ctype)}")
        cfields = dict(ffi.typeof(ctype).fields)
        for name, (fdt, off) in dt.fields.items():
            cf = cfields[name]
            if (off, fdt.itemsize) != (cf.offset, ffi.sizeof(cf.type)):
                raise ImportError(f"{ctype}.{name}: numpy offset {off} size {fdt.itemsize}, "
                                  f"C offset {cf.offset} size {ffi.sizeof(cf.type)}")
    if ffi.offsetof("fh_shm_snapshot_t", "nbids") != BOOK_DTYPE.itemsize:
        raise ImportError("fh_shm_snapshot_t: the book is not its first 64 bytes")


_check_layout()


# ---- paths, time ----------------------------------------------------------------------------------------


def segment_path(path_or_name: str | os.PathLike) -> str:
    """A bare instance name maps to its segment, fh-NAME in a hugetlbfs mount or /dev/shm (handler.segments);
    anything with a slash is a path."""
    from .segments import reader_path

    s = os.fspath(path_or_name)
    return s if "/" in s else reader_path(s)


def _instance_hint(path: str) -> str:
    base = os.path.basename(path)
    if os.path.dirname(path) == DEFAULT_DIR and base.startswith("fh-"):
        name = base[3:]
        return f"is fh running with instance name {name}? (fh publish / fh run)"
    return "is fh running with this segment? (fh publish / fh run)"


def utc_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def age_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _rows(levels: np.ndarray) -> list[list[int]]:
    return [list(t) for t in levels.tolist()]


# ---- results --------------------------------------------------------------------------------------------


class Snapshot:
    """A consistent copy of one book: `bids` and `asks` are numpy arrays of LEVEL_DTYPE (price, shares, orders),
    best first, viewing this snapshot's own memory; the book's fields are attributes."""

    __slots__ = ("_p", "bids", "asks", "retries")

    def __init__(self, p, bids: np.ndarray, asks: np.ndarray, retries: int):
        self._p, self.bids, self.asks, self.retries = p, bids, asks, retries

    locate = property(lambda self: self._p.book.locate)
    seq = property(lambda self: self._p.book.seq)
    symbol = property(lambda self: ffi.unpack(self._p.book.symbol, min(self._p.book.symbol_len, 8)).decode("latin-1"))
    trading_state = property(lambda self: self._p.book.trading_state.decode("latin-1"))
    status = property(lambda self: STATUS_NAMES.get(self._p.book.status, str(self._p.book.status)))
    last_price = property(lambda self: self._p.book.last_price)
    last_shares = property(lambda self: self._p.book.last_shares)
    itch_ts = property(lambda self: self._p.book.itch_ts)
    updates = property(lambda self: self._p.book.updates)
    levels = property(lambda self: (self._p.nlevels[0], self._p.nlevels[1]))  # window and deep (layout 5)

    @property
    def last_trade(self) -> tuple[int, int] | None:
        b = self._p.book
        return (b.last_price, b.last_shares) if b.last_shares else None

    def dump(self) -> dict:
        """The canonical dump row (as `fh book dump`)."""
        return {"locate": self.locate, "symbol": self.symbol, "bids": _rows(self.bids), "asks": _rows(self.asks)}

    def __repr__(self) -> str:
        return (f"Snapshot({self.symbol!r}, locate={self.locate}, {self.status}, state={self.trading_state!r}, "
                f"bids={self.bids.tolist()}, asks={self.asks.tolist()})")


class Overrun(namedtuple("Overrun", "lost next")):
    """Yielded by Reader.events in place of events that were overwritten before they were read: `lost` of
    them; reading goes on at `next`, the oldest event still in the ring. Resynchronise from the books."""

    def to_dict(self) -> dict:
        return {"type": "overrun", "lost": self.lost, "next": self.next}


WriterStatus = namedtuple("WriterStatus", "state pid alive heartbeat_ns heartbeat_age started_ns replaced")
STANDBY_STATES = {lib.FH_SHM_STANDBY_NO: None, lib.FH_SHM_STANDBY_CURRENT: "current",
                  lib.FH_SHM_STANDBY_BEHIND: "behind", lib.FH_SHM_STANDBY_NO_LINES: "no-lines"}
WriterStatus.__doc__ = """state: 'running', 'stopped' (cleanly) or 'dead' (gone without stopping); alive: the
writer still holds the segment's lock; heartbeat_age: seconds since its last sign of life; replaced: the
path now holds another segment (a new writer) or none, while this reader still maps the old one."""


# ---- the reader -----------------------------------------------------------------------------------------


class Reader:
    """A read-only view of one segment. `Reader("X")` joins /dev/shm/fh-X; `Reader("/path")` that file.

    Raises NoSegment, NotASegment or LayoutMismatch. snapshot() and book reads may run in several threads
    (each call copies into its own buffer); read_events() and events() share one batch buffer per Reader."""

    EVENT_BATCH = 256

    def __init__(self, path_or_name: str | os.PathLike, wait_s: float = 1.0):
        self.path = segment_path(path_or_name)
        self._r = None
        self._mm = None
        fd, size = self._open_checked(wait_s)
        try:
            self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
            self._ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        r = ffi.new("fh_shm_reader_t *")
        rc = lib.fh_shm_reader_join(r, os.fsencode(self.path))
        if rc:
            self._mm.close()
            self._mm = None
            self._raise_join(-rc)
        self._r = r
        self._build_views()
        self._symbols: dict[str, int] = {}
        self._sym_bytes: dict[str, tuple[int, bytes]] = {}
        self._evbuf = ffi.new("fh_shm_event_t[]", self.EVENT_BATCH)
        self._evarr = np.frombuffer(ffi.buffer(self._evbuf), EVENT_DTYPE)
        self._next = ffi.new("uint64_t *")
        self._rc = ffi.new("int *")

    # -- joining

    def _open_checked(self, wait_s: float) -> tuple[int, int]:
        """Open the file and classify it from its header before the C join (whose -EPROTO covers a foreign
        file, a wrong version and a segment still being created alike)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO: no wait for a writer
            except FileNotFoundError:
                raise NoSegment(f"no segment at {self.path}: {_instance_hint(self.path)}") from None
            except PermissionError:
                st = os.stat(self.path)
                raise ShmError(f"cannot read {self.path}: permission denied (owner uid {st.st_uid}, group gid "
                               f"{st.st_gid}, mode {st.st_mode & 0o777:o}): run as the writer's user or in its "
                               f"group") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a directory opens read-only, then fails its read with no name
                os.close(fd)
                raise NotASegment(f"{self.path} is {'a directory' if stat.S_ISDIR(st.st_mode) else 'no regular file'}, "
                                  f"not an fh segment: give an instance name or a segment's path")
            size = st.st_size
            head = os.pread(fd, HDR_DTYPE.itemsize, 0)
            if len(head) == HDR_DTYPE.itemsize:
                h = np.frombuffer(head, HDR_DTYPE)[0]
                if int(h["magic"]) == lib.FH_SHM_MAGIC:
                    break
                if int(h["magic"]) != 0:
                    os.close(fd)
                    raise NotASegment(f"{self.path} is not an fh segment (magic 0x{int(h['magic']):016x}): check "
                                      f"the instance name or path")
            # empty, short or without magic yet: a writer may be creating it
            os.close(fd)
            if time.monotonic() >= deadline:
                raise NotASegment(f"{self.path} is not an fh segment ({size} bytes, no magic): a writer that "
                                  f"died while creating it leaves this; start fh again with that name")
            time.sleep(0.02)
        version = int(h["layout_version"])
        if version != lib.FH_SHM_LAYOUT_VERSION:
            os.close(fd)
            raise LayoutMismatch(f"segment {self.path} has layout version {version}, this fh reads "
                                 f"{lib.FH_SHM_LAYOUT_VERSION}: upgrade the reader or the writer")
        problem = self._check_header(h, size)
        if problem:
            os.close(fd)
            raise LayoutMismatch(f"segment {self.path} has a broken header ({problem}): the writer and this "
                                 f"reader disagree on the layout; upgrade one of them")
        return fd, int(h["size"])

    @staticmethod
    def _check_header(h, file_size: int) -> str | None:
        size = int(h["size"])
        if size > file_size:
            return f"size {size} > file {file_size}"
        if int(h["hdr_size"]) != HDR_DTYPE.itemsize:
            return f"hdr_size {int(h['hdr_size'])}, expected {HDR_DTYPE.itemsize}"
        cap = int(h["event_capacity"])
        if cap == 0 or cap & (cap - 1):
            return f"event_capacity {cap} is not a power of two"
        if int(h["key_bits"]) not in (32, 64):
            return f"key_bits {int(h['key_bits'])}, expected 32 or 64"
        if int(h["ladder_bits"]) != lib.FH_SHM_LADDER_BITS or int(h["ladder_books"]) > 65534:
            return f"ladder_bits {int(h['ladder_bits'])}, ladder_books {int(h['ladder_books'])}"
        nlad = 2 * (int(h["ladder_books"]) + 1)
        regions = [("books", "books_off", int(h["nbooks"]) * BOOK_DTYPE.itemsize),
                   ("level keys", "lkey_off", int(h["max_levels"]) * int(h["key_bits"]) // 8),
                   ("level aggregates", "lagg_off", int(h["max_levels"]) * AGG_DTYPE.itemsize),
                   ("events", "events_off", cap * EVENT_DTYPE.itemsize),
                   ("stats", "stats_off", STATS_DTYPE.itemsize),
                   ("ladders", "ladder_off", nlad * LSIDE_DTYPE.itemsize),
                   ("ladder slots", "lslot_off", nlad * LADDER_W * AGG_DTYPE.itemsize)]
        for what, key, nbytes in regions:
            off = int(h[key])
            if off < HDR_DTYPE.itemsize or off + nbytes > size or off % 64:
                return f"{what} at {off}, {nbytes} bytes, in a segment of {size}"
        return None

    def _raise_join(self, err: int) -> None:
        import errno

        if err == errno.ENOENT:
            raise NoSegment(f"no segment at {self.path}: {_instance_hint(self.path)}")
        if err == errno.EPROTO:
            raise NotASegment(f"{self.path} changed while joining (replaced by a new writer?): try again")
        if err == errno.EAGAIN:
            raise NoSegment(f"{self.path} is still being created by its writer: try again in a moment")
        raise ShmError(f"cannot join {self.path}: {os.strerror(err)}")

    def _build_views(self) -> None:
        mm = self._mm
        self.header = np.frombuffer(mm, HDR_DTYPE, 1, 0)[0]  # a read-only record over the live header
        h = self.header
        self.max_levels = int(h["max_levels"])
        self.event_capacity = int(h["event_capacity"])
        self.depth = int(h["depth"])
        self.writer_pid = int(h["writer_pid"])
        self.name = bytes(h["name"]).decode("utf-8", "replace")
        self.start_ns = int(h["start_ns"])
        self.tsc_hz = int(h["tsc_hz"])
        self.size = int(h["size"])
        self.nbooks = int(h["nbooks"])
        self.key_bits = int(h["key_bits"])
        self.price_exp = int(h["price_exp"])  # a price p is p * 10**price_exp of the currency
        self.books = np.frombuffer(mm, BOOK_DTYPE, self.nbooks, int(h["books_off"]))
        self.level_keys = np.frombuffer(mm, np.dtype(f"<u{self.key_bits // 8}"), self.max_levels,
                                        int(h["lkey_off"]))
        self.level_aggs = np.frombuffer(mm, AGG_DTYPE, self.max_levels, int(h["lagg_off"]))
        # layout 5: book b's ladders are ladders[2 * b.ladder + side], their slots ladder_slots[same]
        self.ladder_books = int(h["ladder_books"])
        nlad = 2 * (self.ladder_books + 1)
        self.ladders = np.frombuffer(mm, LSIDE_DTYPE, nlad, int(h["ladder_off"]))
        self.ladder_slots = np.frombuffer(mm, AGG_DTYPE, nlad * LADDER_W, int(h["lslot_off"])).reshape(nlad, LADDER_W)
        self.events_ring = np.frombuffer(mm, EVENT_DTYPE, self.event_capacity, int(h["events_off"]))
        self.stats_region = np.frombuffer(mm, STATS_DTYPE, 1, int(h["stats_off"]))[0]
        # the C join mapped the same file: both must agree on where things are
        r = self._r
        base = ffi.cast("const uint8_t *", r.base)
        for ptr, key in ((r.books, "books_off"), (r.lkey, "lkey_off"), (r.lagg, "lagg_off"),
                         (r.events, "events_off"), (r.stats, "stats_off"), (r.lside, "ladder_off"),
                         (r.lslot, "lslot_off")):
            if ffi.cast("const uint8_t *", ptr) - base != int(h[key]):
                raise LayoutMismatch(f"{self.path} changed while joining (replaced by a new writer?): try again")
        if (r.hdr.start_ns, r.hdr.writer_pid) != (self.start_ns, self.writer_pid):
            raise NotASegment(f"{self.path} was replaced by a new writer while joining: try again")

    def close(self) -> None:
        """Leave the segment. Views handed out (books, snapshots' arrays are copies and stay valid) keep the
        read-only mapping alive until they are dropped."""
        if self._r is not None:
            lib.fh_shm_reader_leave(self._r)
            self._r = None
        for name in ("header", "books", "level_keys", "level_aggs", "ladders", "ladder_slots", "events_ring",
                     "stats_region"):
            self.__dict__.pop(name, None)
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # views are still held elsewhere: the mapping goes with the last of them
                pass
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _joined(self):
        if self._r is None:
            raise ShmError(f"reader of {self.path} is closed")
        return self._r

    # -- instruments

    def locates(self) -> np.ndarray:
        """Locates that hold a published instrument, ascending (the writer's [instruments] publish filter leaves
        the others out: FH_BOOK_F_UNPUBLISHED)."""
        b = self.books
        return np.flatnonzero((b["status"] != EMPTY) & ((b["flags"] & lib.FH_BOOK_F_UNPUBLISHED) == 0))

    def symbol_of(self, locate: int) -> str:
        b = self.books[locate]
        return bytes(b["symbol"])[: int(b["symbol_len"])].decode("latin-1")

    def _scan_symbols(self) -> None:
        locs = self.locates()
        recs = self.books[locs]
        self._symbols = {bytes(s)[:n].decode("latin-1"): int(loc)
                         for loc, s, n in zip(locs, recs["symbol"], recs["symbol_len"])}

    def locate_of(self, symbol: str | int) -> int:
        """The locate of a symbol (cached; rescanned on a miss, since instruments appear during the day); an
        int is taken as a locate. Raises UnknownInstrument."""
        if isinstance(symbol, (int, np.integer)):
            if not 0 <= symbol < self.nbooks:
                raise UnknownInstrument(f"locate {symbol} is out of range 0..{self.nbooks - 1}")
            return int(symbol)
        loc = self._symbols.get(symbol)
        if loc is None or self.books[loc]["status"] == EMPTY:
            self._scan_symbols()
            loc = self._symbols.get(symbol)
            if loc is None:
                raise UnknownInstrument(f"no instrument {symbol!r} in {self.path} ({len(self._symbols)} "
                                        f"instruments): check the symbol (case matters)")
        return loc

    # -- books

    def snapshot(self, locate_or_symbol: int | str, depth: int | None = None) -> Snapshot:
        """A consistent copy of the top `depth` (default: the segment's configured depth; at most 64) levels
        of each side, taken by the C reader under the book's seqlock."""
        if type(locate_or_symbol) is int:
            loc, want = locate_or_symbol, None
        else:
            want = self._sym_bytes.get(locate_or_symbol)
            if want is None:
                loc = self.locate_of(locate_or_symbol)
                want = self._sym_bytes[locate_or_symbol] = (loc, locate_or_symbol.encode("latin-1"))
            loc = want[0]
        p = ffi.new("fh_shm_snapshot_t *")
        try:
            rc = lib.fh_shm_reader_snapshot(self._r, loc, self.depth if depth is None else depth, p)
        except (OverflowError, TypeError):  # a locate outside 0..65535, a depth < 0, a closed reader
            rc = -1
        if rc < 0:
            self._snapshot_failed(locate_or_symbol, loc, depth, rc)
        if want is not None and ffi.unpack(p.book.symbol, p.book.symbol_len) != want[1]:
            # the cached locate now holds another instrument (the writer started a new day): look again
            self._sym_bytes.pop(locate_or_symbol, None)
            self._symbols.pop(locate_or_symbol, None)
            return self.snapshot(self.locate_of(locate_or_symbol), depth)
        buf = ffi.buffer(p)
        return Snapshot(p, np.frombuffer(buf, LEVEL_DTYPE, p.nbids, _SNAP_BIDS),
                        np.frombuffer(buf, LEVEL_DTYPE, p.nasks, _SNAP_ASKS), rc)

    def _snapshot_failed(self, key, loc: int, depth: int | None, rc: int):
        if self._r is None:
            raise ShmError(f"reader of {self.path} is closed")
        if depth is not None and (type(depth) is not int or depth < 0):
            raise ValueError(f"depth must be a whole number >= 0, not {depth!r}")
        if not 0 <= loc < self.nbooks:
            raise UnknownInstrument(f"locate {loc} is out of range 0..{self.nbooks - 1}")
        if rc == lib.FH_SHM_READER_BUSY:
            st = self.writer_status()
            if st.state == "dead":
                raise WriterDead(self.dead_text(st) + f"; book {loc} was left mid-change")
            raise BookBusy(f"book {loc} of {self.path} has been changing for over 0.2 s: is writer pid "
                           f"{st.pid} stopped (SIGSTOP, debugger)?")
        if type(key) is not int:  # the instrument left its cached locate: look again
            self._sym_bytes.pop(key, None)
            self._symbols.pop(key, None)
            self.locate_of(key)  # raises UnknownInstrument if it is gone
            raise BookBusy(f"{key} moved while being read; try again")
        raise UnknownInstrument(f"no instrument at locate {loc} in {self.path}")

    def book(self, locate_or_symbol: int | str, depth: int | None = None) -> dict:
        """A snapshot as a dict: the book's fields and levels as [price, shares, orders] lists. depth None:
        every level."""
        loc = self.locate_of(locate_or_symbol)
        info, bids, asks = self._read_book(loc, depth)
        return {**info, "bids": bids, "asks": asks}

    def book_dump(self, locate: int | str, depth: int | None = None) -> dict:
        """The canonical dump row of one book, as `fh book dump` prints it: {"locate", "symbol", "bids",
        "asks"}, levels [price, shares, orders], best first. depth None: every level."""
        loc = self.locate_of(locate)
        info, bids, asks = self._read_book(loc, depth)
        return {"locate": loc, "symbol": info["symbol"], "bids": bids, "asks": asks}

    def dump(self, depth: int | None = None) -> list[dict]:
        """The canonical dump of the segment: every book with a level on either side, by locate."""
        out = []
        for loc in self.locates():
            row = self.book_dump(int(loc), depth)
            if row["bids"] or row["asks"]:
                out.append(row)
        return out

    @staticmethod
    def _info(loc: int, b, levels) -> dict:
        return {
            "locate": loc,
            "symbol": bytes(b["symbol"])[: int(b["symbol_len"])].decode("latin-1"),
            "status": STATUS_NAMES.get(int(b["status"]), str(int(b["status"]))),
            # the writer skipped a message of it for want of room (order_capacity, level_capacity): stale for good
            "incomplete": bool(int(b["flags"]) & lib.FH_BOOK_F_INCOMPLETE),
            "trading_state": bytes(b["trading_state"]).decode("latin-1") or " ",
            "last_trade": [int(b["last_price"]), int(b["last_shares"])] if b["last_shares"] else None,
            "itch_ts": int(b["itch_ts"]),
            "updates": int(b["updates"]),
            "levels": [int(levels[0]), int(levels[1])],  # window and deep run (layout 5)
        }

    def _read_book(self, loc: int, depth: int | None) -> tuple[dict, list, list]:
        if depth is not None and depth <= SNAPSHOT_MAX_DEPTH:
            s = self.snapshot(loc, depth)
            b = np.frombuffer(ffi.buffer(s._p, BOOK_DTYPE.itemsize), BOOK_DTYPE)[0]
            return self._info(loc, b, s.levels), _rows(s.bids), _rows(s.asks)
        return self._read_deep(loc, depth)

    def _read_deep(self, loc: int, depth: int | None) -> tuple[dict, list, list]:
        """Deeper than a C snapshot goes: the same seqlock read, over the numpy views. (x86 keeps loads in
        order, and every step here is an opaque call, so the two reads of seq bracket the copies.)"""
        rec = self.books[loc : loc + 1]
        t0 = None
        while True:
            s1 = int(rec["seq"][0])
            if s1 & 1:
                t0 = self._busy_wait(loc, t0)
                continue
            b = rec.copy()[0]
            sides, counts = [], []
            for s in (0, 1):
                off, n = int(b["side"][s]["off"]), int(b["side"][s]["n"])
                if off > self.max_levels or n > self.max_levels - off:
                    n = 0  # torn
                k = n if depth is None else min(depth, n)
                keys = self.level_keys[off + n - k : off + n][::-1].copy()
                aggs = self.level_aggs[off + n - k : off + n][::-1].copy()
                prices = key_prices(keys, s, self.key_bits)
                wp, wa = self._window(b, s)  # the ladder's levels, merged with the deep run's best first
                prices, aggs = np.concatenate([wp, prices]), np.concatenate([wa[["shares", "orders"]],
                                                                             aggs[["shares", "orders"]]])
                order = np.argsort(prices if s else -prices, kind="stable")
                if depth is not None:
                    order = order[:depth]
                sides.append([[int(p), int(sh), int(o)] for p, sh, o in
                              zip(prices[order], aggs["shares"][order], aggs["orders"][order])])
                counts.append(n + len(wp))
            if int(rec["seq"][0]) == s1:
                break
        if b["status"] == EMPTY or b["flags"] & lib.FH_BOOK_F_UNPUBLISHED:
            raise UnknownInstrument(f"no instrument at locate {loc} in {self.path}"
                                    + (" (it is not among the instruments the writer publishes)"
                                       if b["status"] != EMPTY else ""))
        return self._info(loc, b, counts), sides[0], sides[1]

    def _window(self, b, s: int) -> tuple[np.ndarray, np.ndarray]:
        """The levels of side s of book record b that its price ladder holds (layout 5), best first: their prices
        (int64) and aggregates, read from the raw views (the caller's seqlock check rejects a torn read). A level
        on the book's tick inside the window [lo, lo + LADDER_W) of tick indexes (price / tick, complemented for
        asks) is in slot index % LADDER_W; every other level is in the deep run."""
        lad = 2 * int(b["ladder"]) + s
        none = np.zeros(0, np.int64), np.zeros(0, AGG_DTYPE)
        if self.key_bits != 32 or int(b["ladder"]) > self.ladder_books:
            return none
        L = self.ladders[lad : lad + 1].copy()
        lo, best, nl, tick = (int(L[0][f]) for f in ("lo", "best", "nl", "tick"))
        if not nl or nl > LADDER_W or not tick or (best - lo) & 0xFFFFFFFF >= LADDER_W:
            return none  # empty, or torn
        _, slots, prices = window_levels(L, s)
        order = np.argsort(prices if s else -prices, kind="stable")  # best first
        return prices[order], self.ladder_slots[lad][slots[order]].copy()

    def _busy_wait(self, loc: int, t0: float | None) -> float:
        now = time.monotonic()
        if t0 is None:
            return now
        if now - t0 > 0.2:
            self._snapshot_failed(loc, loc, None, lib.FH_SHM_READER_BUSY)
        time.sleep(0)
        return t0

    # -- events

    @property
    def head(self) -> int:
        """Sequence of the last event published (0: none yet)."""
        return lib.fh_shm_reader_head(self._joined())

    def oldest(self) -> int:
        """Sequence of the oldest event still in the ring (one slot of margin for the one being written)."""
        head = self.head
        return max(1, head - self.event_capacity + 2)

    def read_events(self, next_seq: int, max_events: int = EVENT_BATCH) -> tuple[np.ndarray, int, int]:
        """Up to max_events events from next_seq: (a structured array of EVENT_DTYPE, a copy; the next
        sequence to ask for; events lost to an overrun before the first of them, else 0). Stops early at an
        overrun, so a loss is always reported before the events that follow it."""
        r = self._joined()
        self._next[0] = next_seq
        n = lib.fh_shm_reader_events(r, self._next, self._evbuf, min(max_events, self.EVENT_BATCH), self._rc)
        lost = 0
        if n == 0 and self._rc[0] == lib.FH_SHM_EV_OVERRUN:
            lost = self._next[0] - next_seq
        return self._evarr[:n].copy(), int(self._next[0]), int(lost)

    def event_dict(self, ev) -> dict:
        t = int(ev["type"])
        loc = int(ev["locate"])
        d = {"seq": int(ev["seq"]), "type": EVENT_NAMES.get(t, str(t)), "locate": loc,
             "symbol": self._symbol_cached(loc), "itch_ts": int(ev["itch_ts"])}
        if t == lib.FH_EV_BBO:
            d.update(bid_price=int(ev["c"]), bid_shares=int(ev["a"]), ask_price=int(ev["d"]), ask_shares=int(ev["b"]))
        elif t == lib.FH_EV_TRADE:
            d.update(price=int(ev["c"]), shares=int(ev["a"]), match=int(ev["b"]))
        elif t == lib.FH_EV_STATE:
            d.update(trading_state=bytes(ev["trading_state"]).decode("latin-1"))
        else:
            d.update(status=STATUS_NAMES.get(int(ev["status"]), str(int(ev["status"]))))
        if ev["rx_tsc"] and self.tsc_hz:
            d["rx_to_pub_ns"] = int((int(ev["pub_tsc"]) - int(ev["rx_tsc"])) * 1e9 / self.tsc_hz)
        return d

    def _symbol_cached(self, loc: int) -> str:
        cache = self.__dict__.setdefault("_sym_by_loc", {})
        s = cache.get(loc)
        if s is None:
            s = cache[loc] = self.symbol_of(loc)
        return s

    def events(self, start: int | None = None, follow: bool = False, timeout: float | None = None,
               raw: bool = False) -> Iterator[dict | Overrun]:
        """Events from sequence `start` (default: the next one published, as fh/shm.h advises; use
        oldest() for what the ring still holds), as dicts (raw: numpy records). An Overrun marker stands in
        for events lost to the ring's wrap, and reading goes on at the oldest one left. Without follow, stops
        once caught up; with follow, waits for more (on the futex of its wake page, segments.wake_path), until `timeout` seconds
        pass with none, or the writer stops or dies."""
        nxt = self.head + 1 if start is None else max(1, int(start))
        last_event = time.monotonic()
        while True:
            arr, nxt2, lost = self.read_events(nxt)
            if lost:
                yield Overrun(lost, nxt2)
            for ev in arr:
                yield ev if raw else self.event_dict(ev)
            if len(arr) or lost:
                nxt = nxt2
                last_event = time.monotonic()
                continue
            if not follow:
                return
            wait = 0.2
            if timeout is not None:
                left = timeout - (time.monotonic() - last_event)
                if left <= 0:
                    return
                wait = min(wait, left)
            head = lib.fh_shm_reader_wait(self._r, nxt - 1, max(1, int(wait * 1e9)))  # 0 would wait forever
            if head < nxt and lib.fh_shm_reader_writer_state(self._r) != 1:
                return  # stopped cleanly: nothing more will come
            if head < nxt and not self._writer_alive():
                return

    # -- stats and the writer

    def stats(self, types: bool = True, sections: bool = False) -> dict:
        """The writer's counters by name (handler.native.COUNTER_NAMES), read under the stats seqlock, and
        (types) message counts by ITCH type as type_X (non-zero ones).

        sections: also the data plane's section, read in the same consistent copy (dataplane_stats): keys
        "dataplane" (True when a data plane published it; engine-only writers leave it out and all zero),
        "packets", "bytes", "drops" {cause: n}, "mold" {counter: n, ..., "next_seq": n}, "feed" {state, session,
        next_seq, held, outstanding}, "lines" [{kind, state, datagrams, messages, won, duplicates, late, lost,
        silent_ms}], "latency" {count, p50, p99, p99.9, max (ns), buckets [(upper_ns, n) non-zero]}."""
        if sections:
            return self._stats_copy(types)
        from .native import COUNTER_NAMES

        r = self._joined()
        cap = lib.FH_SHM_MAX_COUNTERS
        c = ffi.new("uint64_t[]", cap)
        t = ffi.new("uint64_t[]", 256) if types else ffi.NULL
        n = lib.fh_shm_reader_stats(r, c, cap, t)
        if n < 0:
            raise BookBusy(f"the stats of {self.path} have been changing for over 0.2 s: is writer pid "
                           f"{self.writer_pid} stopped?")
        out = {(COUNTER_NAMES[i] if i < len(COUNTER_NAMES) else f"counter_{i}"): int(c[i]) for i in range(n)}
        if types:
            for i in range(256):
                if t[i]:
                    out[f"type_{chr(i)}"] = int(t[i])
        return out

    def stats_copy(self) -> np.void:
        """A consistent copy (one seqlock read) of the whole stats region, as a STATS_DTYPE record."""
        r = self._joined()
        buf = ffi.new("fh_shm_stats_t *")
        if lib.fh_shm_stats_copy(r, buf) < 0:
            raise BookBusy(f"the stats of {self.path} have been changing for over 0.2 s: is writer pid "
                           f"{self.writer_pid} stopped?")
        return np.frombuffer(ffi.buffer(buf), STATS_DTYPE)[0].copy()

    def dataplane_stats(self, rec: np.void | None = None) -> dict:
        """The data plane's section of the stats region (see stats(sections=True)); all zero and "dataplane":
        False when no data plane wrote the segment."""
        d = (self.stats_copy() if rec is None else rec)["dp"]
        nd, nm, nl = (min(int(d["ndrops"]), _NDROP), min(int(d["nmold"]), _NMOLD), min(int(d["nlines"]), _NLINE))
        b = np.asarray(d["lat_bucket"], dtype=np.uint64)
        mold = {bytes(d["mold_name"][i]).decode("ascii", "replace"): int(d["mold"][i]) for i in range(nm)}
        mold["next_seq"] = int(d["next_seq"])
        nz = np.flatnonzero(b)
        return {
            "dataplane": bool(d["present"]),
            "packets": int(d["packets"]), "bytes": int(d["bytes"]),
            "drops": {bytes(d["drop_name"][i]).decode("ascii", "replace"): int(d["drops"][i]) for i in range(nd)},
            "mold": mold,
            "feed": {"state": FEED_STATES.get(int(d["feed_state"]), str(int(d["feed_state"]))),
                     "session": bytes(d["session"]).rstrip(b"\0").decode("ascii", "replace"),
                     "next_seq": int(d["next_seq"]), "held": int(d["held"]), "outstanding": int(d["outstanding"])},
            "lines": [_line(d["line"][i]) for i in range(nl)],
            "latency": {"count": int(d["lat_count"]), "p50": lat_percentile(b, 0.5), "p99": lat_percentile(b, 0.99),
                        "p99.9": lat_percentile(b, 0.999), "max": lat_percentile(b, 1.0),
                        "buckets": [(int(LAT_UPPER_NS[i]), int(b[i])) for i in nz]},
        }

    def _stats_copy(self, types: bool) -> dict:
        from .native import COUNTER_NAMES

        rec = self.stats_copy()
        n = min(int(rec["count"]), lib.FH_SHM_MAX_COUNTERS)
        out: dict = {(COUNTER_NAMES[i] if i < len(COUNTER_NAMES) else f"counter_{i}"): int(rec["counter"][i])
                     for i in range(n)}
        if types:
            t = rec["type_count"]
            for i in np.flatnonzero(t):
                out[f"type_{chr(i)}"] = int(t[i])
        out.update(self.dataplane_stats(rec))
        return out

    def _writer_alive(self) -> bool:
        return lib.fh_shm_reader_writer_alive(os.fsencode(self.path)) == 1 and self._same_file()

    def _same_file(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self._ino
        except FileNotFoundError:
            return False

    def writer_status(self) -> WriterStatus:
        r = self._joined()
        hb = lib.fh_shm_reader_heartbeat_ns(r)
        ws = lib.fh_shm_reader_writer_state(r)
        same = self._same_file()
        alive = same and lib.fh_shm_reader_writer_alive(os.fsencode(self.path)) == 1
        if ws == 2:
            state = "stopped"
        elif alive:
            state = "running"
        else:
            state = "dead"
        return WriterStatus(state, self.writer_pid, alive, hb, max(0.0, time.time() - hb / 1e9), self.start_ns,
                            not same)

    def standby(self) -> tuple[str | None, int]:
        """How current a standby's books are against its own feed lines (fh_shm_hdr_t.standby): (None, 0) for a
        writer that is not a standby (a primary, a replay), else ("current", 0), ("behind", messages its lines have
        delivered that its journal has not given yet: the books are its primary's as of an earlier point, filling
        in order) or ("no-lines", 0: its lines have delivered nothing yet, so it cannot tell)."""
        behind = ffi.new("uint64_t *")
        st = lib.fh_shm_reader_standby(self._joined(), behind)
        return STANDBY_STATES.get(st, f"state {st}"), int(behind[0])

    def dead_text(self, st: WriterStatus) -> str:
        """The one-line WriterDead message for status st."""
        text = (f"writer pid {st.pid} of {self.path} is gone; last heartbeat {utc_text(st.heartbeat_ns)} "
                f"({age_text(st.heartbeat_age)} ago); the books are as it left them")
        if st.replaced:
            text += " (the path now holds another segment: join again)"
        return text

    def check_writer(self) -> WriterStatus:
        """The writer's status; raises WriterDead if it died without stopping."""
        st = self.writer_status()
        if st.state == "dead":
            raise WriterDead(self.dead_text(st))
        return st
