"""Snapshots of the engine's whole state (fh_engine_snapshot_save/load, native/include/fh/book.h) kept
beside the journal files: the shadow engine that fh record feeds from the journal writes them, a restart
loads the newest sound one and applies the journal after it (docs/journal.md).

Names: DAY-SESSION-NEXTSEQ.snap (NEXTSEQ: the first sequence the snapshot does not hold, 12 digits), so
name order is time order within a session. Retention by count.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import journal as J
from . import native
from .filekind import not_regular

SUFFIX = ".snap"


def snapshot_name(day: str, session: str, next_seq: int) -> str:
    return f"{day}-{session.strip() or '_'}-{next_seq:012d}{SUFFIX}"


def list_snapshots(directory: str | Path) -> list[Path]:
    """Snapshot files, oldest first (by name: day, session, sequence)."""
    d = Path(directory)
    found = sorted(d.glob(f"*{SUFFIX}")) if d.is_dir() else []
    for p in found:  # a FIFO named *.snap blocked the snapshot reader (fh run's restart) forever
        kind = not_regular(p.stat().st_mode)
        if kind:
            raise J.JournalFileError(f"{p}: {kind}, not a snapshot file, in the snapshot directory {d}: move it out")
    return found


def prune(directory: str | Path, keep: int) -> list[Path]:
    """Keep the newest `keep` snapshots; returns the ones removed. Temporary files of an interrupted save go too."""
    removed = []
    for p in list_snapshots(directory)[:-keep] if keep > 0 else []:
        p.unlink()
        removed.append(p)
    for t in Path(directory).glob(f"*{SUFFIX}.tmp"):
        t.unlink()
        removed.append(t)
    return removed


class Shadow:
    """A second engine fed from the journal: its state is the data plane's as of the last record applied,
    and it is saved without pausing anyone."""

    def __init__(self, directory: str | Path, *, every: int, keep: int, day: str,
                 cfg: native.EngineConfig | None = None, log=sys.stderr):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.every, self.keep, self.day, self.log = every, keep, day, log
        self.engine = native.Engine(cfg or native.EngineConfig())
        self.session: str | None = None
        self.next = 0
        self.since = 0
        self.saved: list[dict] = []

    def apply(self, r: J.Record) -> None:
        if r.kind == J.MSGS:
            self.engine.apply_blocks(r.body)
            self.since += r.count
        elif r.kind in (J.LOST, J.MISSED):  # the books may have missed anything: stale, as the data plane's
            for loc in self.engine.locates():
                self.engine.set_status(loc, True)
            native.lib.fh_engine_set_new_book_status(self.engine._e, 2)
        if r.seq and r.kind in (J.MSGS, J.LOST, J.MISSED):
            self.session = r.session
            self.next = r.seq + (r.count if r.kind == J.MSGS else r.arg)
        elif r.session != self.session and r.kind in (J.HEARTBEAT, J.END):
            self.session = r.session

    def due(self) -> bool:
        return self.every > 0 and self.since >= self.every and self.session is not None

    def save(self) -> dict:
        import time

        path = self.dir / snapshot_name(self.day, self.session, self.next)
        t0 = time.perf_counter()
        meta = self.engine.snapshot_save(path, self.session, self.next, int(self.day))
        meta.update(path=str(path), bytes=path.stat().st_size, write_s=round(time.perf_counter() - t0, 4))
        self.saved.append(meta)
        self.since = 0
        prune(self.dir, self.keep)
        return meta


def restore(engine: native.Engine, snapshots: str | Path | None, journal: str | Path | None, *,
            session: str | None = None, day: int | None = None, log=sys.stderr) -> dict:
    """Load the newest sound snapshot (of `session` and `day` when given) into engine, then apply the
    journal files' records of its session after it. A snapshot that is refused (damaged, truncated, another
    day or session) is named in one line on log and the previous one is tried; with none, the journal is
    applied from its start. Returns what was used."""
    used = None
    if journal and (session is None or day is None):  # by default, the day and session the journal ends in
        files = J.journal_files(journal)
        if files:  # its header says (the records are read once, below)
            h = _head(files[-1])
            session = h.session if session is None else session
            day = h.day if day is None else day
    for p in reversed(list_snapshots(snapshots) if snapshots else []):
        try:
            m = native.snapshot_meta(p)
            if session is not None and m["session"] != session:
                raise native.NativeError(f"snapshot {p}: of session {m['session'].strip()}, not "
                                         f"{session.strip()}")
            if day is not None and m["day"] != day:
                raise native.NativeError(f"snapshot {p}: of day {m['day']}, not {day}")
            engine.snapshot_load(p)
        except native.NativeError as e:
            print(f"fh: refused {e}; trying the previous snapshot", file=log)
            continue
        used = {**m, "path": str(p)}
        break
    start_session, nxt = (used["session"], used["next_seq"]) if used else (None, 0)
    applied = 0
    end = None  # (session, next sequence) after the last record of the journal
    if journal:
        skipping = used is not None
        files = J.journal_files(journal)
        heads = [_head(f) for f in files]
        if used:  # a file wholly before the snapshot is not read: the next file of its session starts at or before it
            keep = [not (i + 1 < len(files) and heads[i + 1].session == start_session and heads[i + 1].first_seq <= nxt)
                    for i in range(len(files))]
            files = [f for f, k in zip(files, keep) if k]
            heads = [h for h, k in zip(heads, keep) if k]
        # Each file in C (fh_jfile_apply): every record's length and CRC checked, the MSGS records' messages
        # applied in one pass; in the files of the snapshot's session what it holds is stepped over unread.
        # Until the first record of the snapshot's session, the files of earlier sessions are only checked.
        for f, h in zip(files, heads):
            mine = used is not None and h.session == start_session
            quiet = skipping and h.session != start_session
            try:
                got = native.journal_file_apply(None if quiet else engine, f, nxt if mine else 0)
            except native.NativeError as e:
                raise J.JournalFileError(str(e)) from None
            if got["end_seq"]:
                end = (h.session, got["end_seq"])
            if skipping and got["records"] and h.session == start_session:
                skipping = False
            if not quiet:
                applied += got["messages"]
    return {"snapshot": used, "journal_messages": applied, "journal_end": end}


def _head(path: Path) -> J.FileHeader:
    with open(path, "rb") as f:
        return J._unpack_header(f.read(J.FILE_HDR_SIZE), str(path))


def restart_snapshot(directory: str | Path, day: str, log=sys.stderr) -> tuple[Path, dict] | None:
    """For fh run: the state of today's recorded journal (newest sound snapshot under DIR/snapshots + the
    journal files of DIR after it) saved as one snapshot, DIR/restart.snap, for fh-dataplane --restore.
    None when DIR holds nothing of `day` (a new day starts empty)."""
    d = Path(directory)
    files = [f for f in J.journal_files(d) if f.name.startswith(day)] if d.is_dir() else []
    snaps = [p for p in list_snapshots(d / "snapshots") if p.name.startswith(day)]
    if not files and not snaps:
        return None
    e, got = _restore_sized(snaps, files, d, day, log)
    if got["snapshot"] is None and not got["journal_messages"]:
        return None
    last = got["journal_end"]
    session, nxt = last if last else (got["snapshot"]["session"], got["snapshot"]["next_seq"])
    if got["snapshot"] and got["snapshot"]["next_seq"] > nxt:
        session, nxt = got["snapshot"]["session"], got["snapshot"]["next_seq"]
    out = d / "restart.snap"
    meta = e.snapshot_save(out, session, nxt, int(day))
    return out, {**got, "restart": meta}


def _restore_sized(snaps: list[Path], files: list[Path], d: Path, day: str, log) -> tuple[native.Engine, dict]:
    """restore() into an engine sized for the state (_restart_capacity); when that was too small (a snapshot
    refused for its capacity, or the journal's orders or levels not held: order references index the order
    table, so a count is not enough), again into the default engine."""
    import io

    cfg = _restart_capacity(snaps, files)
    buf = io.StringIO()
    e = native.Engine(cfg)
    got = restore(e, d / "snapshots", d if files else None, day=int(day), log=buf)
    c = e.counters()
    if cfg != native.EngineConfig() and ("raise max_" in buf.getvalue() or c["order_capacity"] or c["level_capacity"]):
        e = native.Engine()
        return e, restore(e, d / "snapshots", d if files else None, day=int(day), log=log)
    log.write(buf.getvalue())
    return e, got


def _restart_capacity(snaps: list[Path], files: list[Path]) -> native.EngineConfig:
    """An engine just large enough for the restart's state: the largest snapshot's orders plus every add the
    journal files could hold (an add takes at least 38 bytes), capped at the defaults. Creating the default
    engine (8 M orders) alone takes most of a second; a restart's state is usually far smaller. Levels never
    outnumber live orders, but the level arena needs room beyond them (as EngineConfig.for_input gives)."""
    orders = 0
    for p in snaps:
        try:
            orders = max(orders, native.snapshot_meta(p)["orders"])
        except native.NativeError:
            pass  # restore() names it when it refuses it
    n = orders + sum(f.stat().st_size for f in files) // 38 + 1
    dflt = native.EngineConfig()
    return native.EngineConfig(orders=min(dflt.orders, max(1024, n)), levels=min(dflt.levels, max(4096, 4 * n)))
