"""The history tree: Parquet files (zstd) in hive partitions, one file per table and hour, written atomically.

    ROOT/TABLE/date=YYYY-MM-DD/hour=HH/part-SSSSSSSSSSSS.parquet      (S: the first sequence number in it)
    ROOT/TABLE/date=YYYY-MM-DD/hour=HH/part-SSSSSSSSSSSS.KK.parquet   (a partition of more than FILE_ROWS rows:
                                                                        file KK of its symbol ranges)
    ROOT/_manifest/YYYY-MM-DD.json                                       (written last: the day is complete)

Rows of a file are sorted by (symbol, seq), so each row group's min/max statistics on `symbol` let a
reader skip all but the few row groups of one symbol. A partition of more than FILE_ROWS rows is cut, at
symbol changes, into files of consecutive symbol ranges that are encoded at once on several threads: one
symbol's rows of a partition are in one file, and the last hour of a day is not encoded on one thread
after everything else. A file is written to a hidden `.part-*.parquet.tmp`
beside its final name, fsynced and renamed: readers (and globs on *.parquet) never see half a file, and a
killed writer leaves at most a temporary file that the next run removes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._native import ffi, lib
from .columns import Chunk
from .common import TABLES, HistoryError

# orders: which message types carry each numeric field (null in the others)
ORDER_FIELD_TYPES = {"new_ref": b"U", "match": b"EC", "price": b"AFCU", "shares": b"AFECXU"}
_HAS_FIELD = {k: np.isin(np.arange(256), np.frombuffer(v, np.uint8)).astype(np.uint8)
              for k, v in ORDER_FIELD_TYPES.items()}
# columns never null (Parquet `required`: no definition levels to write, 6% of the encoding of `orders`)
REQUIRED = {"symbol", "ts_ns", "seq", "locate"}
REQUIRED_TABLE = {"orders": {"type", "ref"}, "trades": {"price", "shares", "match"},
                  "bbo": {"bid_price", "bid_shares", "ask_price", "ask_shares"}}
# a one-byte code column: empty (0) or a space is null
_NULL_CODES = np.zeros(256, np.uint8)
_NULL_CODES[[0, 32]] = 1
# Parquet encodings: delta for the columns that rise within a symbol (and `locate`, constant along a symbol's
# rows: its deltas are zero, 3% less encoding time of `orders` than a dictionary and a little smaller),
# dictionary for the few-valued ones
DELTA = ("ts_ns", "seq", "recv_ns", "new_ref", "match", "locate")
# min/max statistics only where a reader's filter can skip a row group: a symbol's rows are together, time and
# sequence rise within it; `ref`, `match` and `type` span nearly their whole range in every row group (they
# cost 3% of the encoding of `orders` and skipped nothing)
STATS = ("symbol", "ts_ns", "seq", "recv_ns", "locate", "kind")
HOUR_NS = 3_600_000_000_000
ROW_GROUP_ROWS = 1 << 16
WRITERS = 2       # threads that each sort a partition (and encode its first file)
ENCODERS = 2      # threads that encode a big partition's other files meanwhile
FILE_ROWS = 1 << 20
# byte-stream-split (each byte of the values in a stream of its own, which zstd then takes well) where it beat
# dictionary and delta on a 20 M-message day: the order references (they jump within a symbol), the BBO's
# prices and sizes, the book levels (for a list column: its values)
BYTE_STREAM_SPLIT = ("ref", "bid_price", "bid_shares", "ask_price", "ask_shares", "bid_orders", "ask_orders")
# zstd level 3: about 1% smaller than level 1 on orders and bbo for a few percent more encoding time (zstd is
# a small part of it); 6 gained 0.4% more for 15% more; the book levels with byte-stream-split at level 3
# are 38% smaller than plain at level 1
ZSTD_LEVEL = 3
ZSTD_LEVEL_LISTS = 3
# orders at level 2: 15% less encoding time than 3 for 0.3% more bytes (an hour of the 20 M day: 236 against
# 277 ns a row, 10.82 against 10.79 bytes); bbo at level 1: 23% less (161 -> 124 ns a row) for 3.5% more bytes
# (8.26 -> 8.55 a row), which the day's size still affords (it stays below gzip of the raw day, bench/history.md)
ZSTD_LEVEL_TABLE = {"orders": 2, "bbo": 1}


def day_dirs(root: Path, date: str) -> list[Path]:
    return [root / t / f"date={date}" for t in TABLES]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def row_groups(loc_sorted: np.ndarray, target: int = ROW_GROUP_ROWS) -> list[tuple[int, int]]:
    """Row groups of rows sorted by symbol, cut only where the symbol changes: whole symbols packed up to
    `target` rows, a symbol with more rows on its own in groups of `target`. A row group's min/max statistics on
    `symbol` then name only the symbols it holds, so a reader of one symbol reads its rows and few others."""
    n = len(loc_sorted)
    if n == 0:
        return []
    runs = np.concatenate(([0], np.flatnonzero(loc_sorted[1:] != loc_sorted[:-1]) + 1))  # where each symbol starts
    out, start = [], 0
    while n - start > target:
        # the last symbol start that keeps the group within target; none past start: the symbol alone, cut
        k = int(np.searchsorted(runs, start + target, "right")) - 1
        cut = int(runs[k]) if runs[k] > start else start + target
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


def _local_symbols(col: pa.DictionaryArray) -> pa.DictionaryArray:
    """A slice of the file's symbol column with a dictionary of its own symbols only: Arrow writes a
    dictionary column's whole dictionary into every row group (8,000 symbols a group otherwise). The file's
    dictionary is in row order (see _symbols), so a slice's symbols are one run of it."""
    idx = col.indices.to_numpy()
    if len(idx) == 0:
        return col
    lo, hi = int(idx[0]), int(idx[-1])
    return pa.DictionaryArray.from_arrays(pa.array(idx - lo, pa.int32()), col.dictionary.slice(lo, hi - lo + 1))


def write_atomic(table: pa.Table, path: Path, groups: list[tuple[int, int]] | None = None,
                 portable: bool = False, level: int | None = None) -> None:
    """table sorted by symbol (its `symbol` column from _symbols), written in `groups` (row_groups).
    portable: no byte-stream-split on integers (Parquet format 2.11, 2024: parquet-java 1.14 / Spark 4 and
    later read it), dictionary encoding there instead, for older readers; about 7% bigger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    names = table.column_names
    lists = {n for n in names if pa.types.is_list(table.schema.field(n).type)}
    leaf = lambda n: f"{n}.list.element" if n in lists else n  # noqa: E731 (a list's values: its leaf column)
    enc = {n: "DELTA_BINARY_PACKED" for n in DELTA if n in names}
    if not portable:
        enc.update({leaf(n): "BYTE_STREAM_SPLIT" for n in BYTE_STREAM_SPLIT if n in names})
    dicts = [n for n in names if n not in enc and n not in lists]
    stats = [n for n in STATS if n in names]  # min/max where readers filter: the rest would only cost time
    levels = {leaf(n): ZSTD_LEVEL_LISTS if n in lists else level or ZSTD_LEVEL for n in names}
    if groups is None:
        groups = [(0, table.num_rows)]
    isym = names.index("symbol")
    # write_batch_size: a row group in one batch (Arrow's default, 1,024 values, costs 6 to 8% more on orders)
    with pq.ParquetWriter(tmp, table.schema, compression="zstd", compression_level=levels, write_statistics=stats,
                          use_dictionary=dicts, column_encoding=enc or None,
                          write_batch_size=max(ROW_GROUP_ROWS, max((b - a for a, b in groups), default=1))) as w:
        for a, b in groups:
            part = table.slice(a, b - a)
            if pa.types.is_dictionary(part.schema.field(isym).type):
                part = part.set_column(isym, part.schema.field(isym), _local_symbols(part.column(isym).combine_chunks()))
            w.write_table(part, row_group_size=max(1, b - a))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def _dictionary(inv: np.ndarray, words: list[str | None]) -> pa.Array:
    """A dictionary-encoded string column (readers see plain strings; Parquet stores it dictionary-encoded
    either way, and building it this way avoids materialising a string per row). None words: null rows."""
    isnull = np.array([w is None for w in words], bool)
    mask = isnull[inv] if isnull.any() else None
    words = [w if w is not None else "" for w in words]
    inv = inv if inv.dtype == np.int32 else inv.astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(inv, mask=mask), pa.array(words, pa.string()))


def _u8(a: np.ndarray):
    return ffi.from_buffer("uint8_t[]", a)


def _codes(a: np.ndarray) -> pa.DictionaryArray:
    """A one-byte S1 column -> Arrow dictionary of strings (empty or a space: null), in one C pass
    (fh_hist_codes): the indices and the validity bitmap made straight into the buffers Arrow takes."""
    v = np.ascontiguousarray(a).view(np.uint8)
    n = len(v)
    idx, valid, words = np.empty(n, np.int32), np.empty((n + 7) // 8, np.uint8), np.empty(256, np.uint8)
    nulls = ffi.new("uint64_t *")
    k = lib.fh_hist_codes(_u8(v), n, _u8(_NULL_CODES), _u8(words), ffi.from_buffer("int32_t[]", idx), _u8(valid), nulls)
    nn = int(nulls[0])
    ind = pa.Array.from_buffers(pa.int32(), n, [pa.py_buffer(valid) if nn else None, pa.py_buffer(idx)], null_count=nn)
    return pa.DictionaryArray.from_arrays(ind, pa.array([chr(c) for c in words[:k].tolist()], pa.string()))


def _int64(v: np.ndarray, typ: np.ndarray | None = None, has: np.ndarray | None = None) -> pa.Array:
    """int64 numpy -> Arrow (no copy); with typ and has: null where has[typ] is 0 (a validity bitmap made in C,
    fh_hist_valid, instead of a boolean mask Arrow would pack)."""
    v = v if v.dtype == np.int64 else v.astype(np.int64)
    if typ is None:
        return pa.array(v, pa.int64())
    valid = np.empty((len(v) + 7) // 8, np.uint8)
    nn = int(lib.fh_hist_valid(_u8(typ), len(v), _u8(has), _u8(valid)))
    return pa.Array.from_buffers(pa.int64(), len(v), [pa.py_buffer(valid) if nn else None, pa.py_buffer(v)], null_count=nn)


def _strs(a: np.ndarray) -> pa.Array:
    """S-typed numpy -> Arrow strings; empty (or, for one byte, a space) -> null."""
    if a.dtype.itemsize == 1:
        return _codes(a)
    kind = {2: np.uint16, 4: np.uint32, 8: np.uint64}.get(a.dtype.itemsize)
    if kind is not None and a.dtype.itemsize > 2:  # mostly empty (mpid): the distinct values of the others only
        v = np.ascontiguousarray(a).view(kind)
        nz = np.flatnonzero(v)
        if len(nz) < len(v) // 2:
            uniq, inv_nz = np.unique(v[nz], return_inverse=True)
            inv = np.zeros(len(v), np.int64)
            inv[nz] = inv_nz + 1
            words = [None] + [u.decode("latin-1").rstrip(" ") or None for u in uniq.view(a.dtype)]
            return _dictionary(inv, words)
    if kind is not None:  # distinct values by their bytes as an integer: a fast unique
        uniq, inv = np.unique(np.ascontiguousarray(a).view(kind), return_inverse=True)
        uniq = uniq.view(a.dtype)
    else:
        uniq, inv = np.unique(a, return_inverse=True)
    return _dictionary(inv, [u.decode("latin-1").rstrip(" ") or None for u in uniq])


class _Names:
    """Every locate's symbol as one Arrow string array (a locate without a directory entry: 'locate:N'),
    made again only when the directory changed: a file's symbol dictionary is then a take(), not a string
    per symbol in Python."""

    def __init__(self, symtab: np.ndarray):
        self.symtab = symtab
        self.key = None
        self.arr = None
        self.lock = threading.Lock()

    def get(self) -> pa.Array:
        with self.lock:
            key = hash(self.symtab.tobytes())
            if key != self.key:
                words = [w.decode("latin-1").rstrip(" ") for w in self.symtab.tolist()]
                self.arr = pa.array([w or f"locate:{i}" for i, w in enumerate(words)], pa.string())
                self.key = key
            return self.arr


def _symbols(names: _Names, loc: np.ndarray) -> pa.Array:
    """Symbols of locates grouped by locate (sorted rows), as a dictionary column whose dictionary is in row
    order: the i-th run of a locate is entry i."""
    start = np.concatenate(([True], loc[1:] != loc[:-1])) if len(loc) else np.zeros(0, bool)
    inv = np.cumsum(start, dtype=np.int32) - 1
    uniq = loc[start].astype(np.int64)
    return pa.DictionaryArray.from_arrays(pa.array(inv, pa.int32()), names.get().take(pa.array(uniq)))


def _with_required(name: str, cols: dict[str, pa.Array]) -> pa.Table:
    """The partition's table, its never-null columns marked so (REQUIRED): Parquet writes no definition levels
    for them. A column holds a null only where the writer made it nullable."""
    req = REQUIRED | REQUIRED_TABLE.get(name, set())
    fields = [pa.field(k, a.type, nullable=k not in req or a.null_count > 0) for k, a in cols.items()]
    return pa.Table.from_arrays(list(cols.values()), schema=pa.schema(fields))


class HistoryWriter:
    """Collects Chunks and writes each table's rows, hour by hour, under ROOT for one date.

    The source decides the order of calls: add() chunks in sequence, flush_before(hour) once no more rows of
    earlier hours can come, close() at the end. symbols: locate -> 8-byte symbol (numpy S8[65536])."""

    def __init__(self, root: str | os.PathLike, date: str, symbols: np.ndarray, replace: bool = False,
                 row_group_rows: int | None = None, portable: bool = False, file_rows: int | None = None):
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            raise HistoryError(f"date {date!r} is not YYYY-MM-DD; pass --date 2019-12-30 for example") from None
        self.root = Path(root)
        self.date = day.isoformat()
        self.symbols = symbols
        self._names = _Names(symbols)
        self.row_group_rows = row_group_rows or ROW_GROUP_ROWS
        self.file_rows = file_rows or FILE_ROWS
        self.portable = portable
        existing = [d for d in day_dirs(self.root, self.date) if d.exists()]
        manifest = self.root / "_manifest" / f"{self.date}.json"
        if (existing or manifest.exists()) and not replace:
            raise HistoryError(f"{self.root}: the history already holds {self.date}; pass --replace to write it again")
        for d in existing:
            shutil.rmtree(d)
        if manifest.exists():
            manifest.unlink()
        self.buffers: dict[tuple[str, int], list[dict[str, np.ndarray]]] = {}
        self.files: list[str] = []
        # WRITERS threads encode partitions beside the decoder (numpy sorts, Arrow's encoders and zstd run
        # without the GIL); at most WRITERS + 1 partitions wait, so memory stays bounded
        self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="fh-history-write")
        self._encoders = ThreadPoolExecutor(ENCODERS, thread_name_prefix="fh-history-encode")
        self._jobs: deque = deque()
        self._lock = threading.Lock()
        self._taken: set[Path] = set()
        self.write_cpu_s = 0.0  # CPU time of the worker threads (sorting, Arrow arrays, Parquet encoding, zstd)
        # of which per table: "TABLE.table" (the partition sorted, its Arrow arrays) and "TABLE.encode" (Parquet
        # encoders and zstd), thread CPU seconds
        self.stage_cpu: dict[str, float] = {}
        self.wait_s = 0.0       # wall time the source's thread waited for the writers (they were behind)
        self.rows = {t: 0 for t in TABLES}
        self.bytes = 0
        # per file: (table, path, first seq, last seq, its rows came in non-decreasing seq): see seq_order()
        self._spans: list[tuple[str, str, int, int, bool]] = []

    def add(self, ch: Chunk) -> None:
        for name, cols in ch.tables.items():
            hours = (cols["ts"] // np.uint64(HOUR_NS)).astype(np.int64)
            if len(hours) == 0:
                continue
            if hours[0] == hours[-1]:
                self.buffers.setdefault((name, int(hours[0])), []).append(cols)
                continue
            for h in np.unique(hours):
                m = hours == h
                self.buffers.setdefault((name, int(h)), []).append({k: v[m] for k, v in cols.items()})

    def flush_before(self, hour: int) -> None:
        """Write the partitions of the hours before `hour`: on a worker thread (sorting, encoding and zstd
        run there without the GIL, beside the decoder), at most two behind, so memory stays bounded."""
        for key in sorted(k for k in self.buffers if k[1] < hour):
            if len(self._jobs) > WRITERS:
                t0 = time.perf_counter()
                while len(self._jobs) > WRITERS:
                    self._jobs.popleft().result()
                self.wait_s += time.perf_counter() - t0
            self._jobs.append(self._pool.submit(self._write, *key, self.buffers.pop(key)))

    def flush_all(self) -> None:
        self.flush_before(1 << 62)
        self.wait()

    def wait(self) -> None:
        while self._jobs:
            self._jobs.popleft().result()

    def abandon(self) -> None:
        """After a failure: let the writes under way finish (each is atomic), write nothing more."""
        self.buffers.clear()
        for j in self._jobs:
            j.cancel()
        self._pool.shutdown(wait=True)
        self._encoders.shutdown(wait=True)

    def close(self, counters: dict | None = None) -> None:
        self.flush_all()
        self._pool.shutdown(wait=True)
        self._encoders.shutdown(wait=True)
        write_json_atomic({"date": self.date, "rows": self.rows, "files": self.files, "bytes": self.bytes,
                           "seq_order": self.seq_order(), "counters": counters or {}},
                          self.root / "_manifest" / f"{self.date}.json")

    def seq_order(self) -> dict[str, bool]:
        """Per table: whether the day's rows of any one symbol, read file after file in path order (as DuckDB
        reads a glob, keeping the order) and in each file's row order, come in sequence order. Each file's
        rows are sorted by (symbol, arrival) (pa.Table sorted in _table), so it holds when the rows arrived in
        non-decreasing seq and each file's seqs lie at or below the next file's: then `fh query` needs no sort
        for one symbol. A new session (seq from 1 again) or an hour written twice makes it false."""
        out = {}
        for t in TABLES:
            spans = sorted((p, a, b, ok) for n, p, a, b, ok in self._spans if n == t)
            out[t] = bool(spans) and all(ok for *_, ok in spans) and all(
                spans[i][2] <= spans[i + 1][1] for i in range(len(spans) - 1))
        return out

    # -- one partition

    def _table(self, name: str, parts: list[dict[str, np.ndarray]]) -> tuple[pa.Table, bool]:
        """The partition's rows sorted by (symbol, arrival), and whether they arrived in non-decreasing seq."""
        seqs = [p["seq"] for p in parts if len(p["seq"])]
        ascending = all(bool((q[1:] >= q[:-1]).all()) for q in seqs) and all(
            int(seqs[i][-1]) <= int(seqs[i + 1][0]) for i in range(len(seqs) - 1))
        loc = np.ascontiguousarray(np.concatenate([p["locate"] for p in parts]), np.uint16)
        rank = np.empty(65536, np.uint16)
        rank[np.argsort(self.symbols, kind="stable")] = np.arange(65536)
        # rows arrive in the order they were applied (sequence order): a stable counting sort by symbol keeps
        # it; dest[i]: row i's sorted place (fh_hist_sort_dest: 4 against 25 ns a row for numpy's argsort and
        # the inverse permutation)
        n_rows = len(loc)
        dest = np.empty(n_rows, np.int64)
        lib.fh_hist_sort_dest(ffi.from_buffer("uint16_t[]", rank), ffi.from_buffer("uint16_t[]", loc), n_rows,
                              ffi.new("uint64_t[]", 65536), ffi.from_buffer("int64_t[]", dest))
        sloc = np.empty_like(loc)
        sloc[dest] = loc
        if name == "books":  # few rows, and lists: concatenated, then gathered
            order = np.empty(n_rows, np.intp)
            order[dest] = np.arange(n_rows)
            cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            srt = lambda k: cols[k][order]  # noqa: E731
        else:
            # each part's rows scattered straight to their sorted places: no concatenated copy of every column
            # first (40% less time than concatenate + gather on an hour of orders)

            def srt(k: str) -> np.ndarray:
                out = np.empty(n_rows, np.result_type(*[p[k].dtype for p in parts]))
                base = 0
                for p in parts:
                    m = len(p[k])
                    out[dest[base:base + m]] = p[k]
                    base += m
                return out

        i64 = lambda v: v.view(np.int64) if v.dtype == np.uint64 else v.astype(np.int64)  # noqa: E731
        out: dict[str, pa.Array] = {
            "symbol": _symbols(self._names, sloc),
            "ts_ns": pa.array(i64(srt("ts")), pa.int64()),
            "seq": pa.array(i64(srt("seq")), pa.int64()),
            "recv_ns": pa.array(i64(srt("recv")), pa.int64()) if "recv" in parts[0] else pa.nulls(n_rows, pa.int64()),
            "locate": pa.array(sloc.astype(np.int32), pa.int32()),
        }
        if name == "books":
            out["kind"] = _strs(cols["kind"][order])
            for side in ("bid", "ask"):
                n = cols[f"{side}_n"]
                starts = np.concatenate(([0], np.cumsum(n)))
                # re-lay the flattened levels in the sorted row order
                k = n[order]
                offs = np.concatenate(([0], np.cumsum(k))).astype(np.int32)
                idx = np.repeat(starts[:-1][order], k) + (np.arange(int(k.sum())) - np.repeat(offs[:-1], k))
                for f in ("price", "shares", "orders"):
                    out[f"{side}_{f}"] = pa.ListArray.from_arrays(pa.array(offs), pa.array(cols[f"{side}_{f}"][idx], pa.int64()))
            return _with_required(name, out), ascending
        typ = srt("type").view(np.uint8) if "type" in parts[0] else None
        for k in parts[0]:
            if k in ("seq", "ts", "recv", "locate"):
                continue
            v = typ.view("S1") if k == "type" else srt(k)
            if v.dtype.kind == "S":
                out[k] = _strs(v)
            elif name == "orders" and k in ORDER_FIELD_TYPES:  # a field the message type does not have: null
                out[k] = _int64(v, typ, _HAS_FIELD[k])
            else:
                out[k] = _int64(v)
        return _with_required(name, out), ascending

    def _write(self, name: str, hour: int, parts: list[dict[str, np.ndarray]]) -> None:
        t0 = time.thread_time()
        try:
            self._write_one(name, hour, parts)
        finally:
            with self._lock:
                self.write_cpu_s += time.thread_time() - t0

    def _encode(self, name: str, table: pa.Table, path: Path, groups: list[tuple[int, int]], level: int | None) -> int:
        """One file of a partition (an encoder thread's job): its rows in `groups`, written atomically."""
        t0 = time.thread_time()
        try:
            a, b = groups[0][0], groups[-1][1]
            write_atomic(table.slice(a, b - a), path, [(x - a, y - a) for x, y in groups], self.portable, level)
            return path.stat().st_size
        finally:
            with self._lock:
                self.write_cpu_s += time.thread_time() - t0
                self._stage(f"{name}.encode", time.thread_time() - t0)

    def _stage(self, key: str, seconds: float) -> None:
        """(under self._lock)"""
        self.stage_cpu[key] = self.stage_cpu.get(key, 0.0) + seconds

    def _paths(self, name: str, hour: int, first: int, k: int) -> list[Path]:
        """k unused file names for a partition starting at sequence `first` (a live follower's second flush of
        an hour gets part-S-N...)."""
        d = self.root / name / f"date={self.date}" / f"hour={hour:02d}"
        n = 0
        with self._lock:
            while True:
                stem = f"part-{first:012d}" + (f"-{n}" if n else "")
                paths = [d / f"{stem}.parquet"] if k == 1 else [d / f"{stem}.{i:02d}.parquet" for i in range(k)]
                if not any(p.exists() or p in self._taken for p in paths):
                    self._taken.update(paths)
                    return paths
                n += 1

    def _write_one(self, name: str, hour: int, parts: list[dict[str, np.ndarray]]) -> None:
        t0 = time.thread_time()
        table, ascending = self._table(name, parts)
        t1 = time.thread_time()
        first = int(min(int(p["seq"].min()) for p in parts if len(p["seq"])))
        last = int(max(int(p["seq"].max()) for p in parts if len(p["seq"])))
        loc = table.column("locate").to_numpy()
        groups = row_groups(loc, self.row_group_rows)
        files = file_groups(groups, loc, self.file_rows)
        paths = self._paths(name, hour, first, len(files))
        # the other files on the encoder threads, the first here meanwhile
        level = ZSTD_LEVEL_TABLE.get(name)
        jobs = [self._encoders.submit(self._encode, name, table, p, g, level) for p, g in zip(paths[1:], files[1:])]
        t2 = time.thread_time()
        write_atomic(table.slice(0, files[0][-1][1] if files[0] else 0), paths[0], files[0], self.portable, level)
        t3 = time.thread_time()
        sizes = [paths[0].stat().st_size] + [j.result() for j in jobs]
        with self._lock:
            self._stage(f"{name}.table", t1 - t0)
            self._stage(f"{name}.encode", t3 - t2)
            self.files.extend(str(p.relative_to(self.root)) for p in paths)
            # one span a partition: its files hold disjoint symbols, so one symbol's rows are in one of them
            self._spans.append((name, str(paths[0].relative_to(self.root / name)), first, last, ascending))
            self.rows[name] += table.num_rows
            self.bytes += sum(sizes)


def file_groups(groups: list[tuple[int, int]], loc_sorted: np.ndarray, file_rows: int = FILE_ROWS) \
        -> list[list[tuple[int, int]]]:
    """Consecutive row groups (row_groups) packed into files of about file_rows rows, cut only where the symbol
    changes: the files of a big partition, each a range of whole symbols (a symbol of more rows than file_rows
    makes its file that much bigger). Read in path order they are the partition's rows in (symbol, seq) order."""
    files: list[list[tuple[int, int]]] = [[]]
    rows = 0
    for a, b in groups:
        if files[-1] and rows + (b - a) > file_rows and loc_sorted[a - 1] != loc_sorted[a]:
            files.append([])
            rows = 0
        files[-1].append((a, b))
        rows += b - a
    return files


def remove_stale_temporaries(root: Path) -> int:
    """Temporary files a killed writer left (never visible to readers): removed, counted."""
    n = 0
    if root.exists():
        for p in root.rglob(".*.tmp"):
            p.unlink()
            n += 1
    return n
