"""fh record: follow an instance's journal ring and write the day's messages to disk (docs/journal.md).

A follower off the isolated cores: it reads /dev/shm/fh-NAME.journal as any follower does (it never slows
the data plane), and appends what it reads to journal files, one per session and day, rotated by size,
fsynced by the policy asked for. Restarted, it goes on from the last sequence its files hold: from the
ring when the ring still has it, otherwise it writes the hole as a LOST record and says which sequences
are missing (to be filled by retransmission). A torn last record (the recorder killed mid-write) is cut
off first, with a note.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import journal as J


def _next_after(r: J.Record, cur: int) -> int:
    if r.kind == J.MSGS:
        return r.seq + r.count if r.seq else cur
    if r.kind in (J.LOST, J.MISSED):
        return r.seq + r.arg
    return cur  # marks (heartbeat, end) come in order: they do not move the sequence


def resume_state(directory: Path) -> tuple[str | None, int, list[str]]:
    """(session, next sequence, notes) from the newest journal file under directory; a torn tail is cut."""
    notes: list[str] = []
    files = J.journal_files(directory) if directory.exists() else []
    if not files:
        return None, 0, notes
    last = files[-1]
    if last.stat().st_size < J.FILE_HDR_SIZE:
        # killed between creating a file and writing its header: it holds nothing; go on from the one before it
        # (and write this one again)
        notes.append(f"{last}: removed an empty file ({last.stat().st_size} bytes) left by an interrupted rotation")
        last.unlink()
        session, nxt, more = resume_state(directory)
        return session, nxt, notes + more
    try:
        h, recs, valid = J.read_journal_file(last, tolerate_tail=True)
    except J.JournalFileError as e:
        raise J.JournalFileError(f"{e}; move the file aside to record anew") from None
    size = last.stat().st_size
    if valid < size:
        with open(last, "r+b") as f:
            f.truncate(valid)
        notes.append(f"{last}: cut a torn last record ({size - valid} bytes) left by an interrupted write")
    nxt = h.first_seq
    for r in recs:
        nxt = _next_after(r, nxt)
    return h.session, nxt, notes


def _trim(r: J.Record, nxt: int) -> J.Record | None:
    """The part of r at or after sequence nxt (None: nothing)."""
    if r.kind == J.MSGS and r.seq:
        if r.seq + r.count <= nxt:
            return None
        if r.seq >= nxt:
            return r
        msgs = r.messages()[nxt - r.seq:]
        body = b"".join(len(m).to_bytes(2, "big") + m for m in msgs)
        return J.Record(J.MSGS, r.session, nxt, len(msgs), len(body), body)
    if r.kind in (J.LOST, J.MISSED):
        if r.seq + r.arg <= nxt:
            return None
        if r.seq >= nxt:
            return r
        return J.Record(r.kind, r.session, nxt, 0, r.seq + r.arg - nxt, b"")
    if r.kind == J.HEARTBEAT and r.seq < nxt:
        return None
    return r


class Recorder:
    def __init__(self, ring: J.JournalRing, out: J.JournalFileWriter, directory: Path, *, log=sys.stderr,
                 shadow=None):
        self.ring, self.out, self.dir, self.log, self.shadow = ring, out, directory, log, shadow
        self.session, self.next, notes = resume_state(directory)
        for n in notes:
            self.note(n)
        self.pos = ring.oldest()
        self.records = self.messages = self.overruns = self.holes = self.hole_messages = 0
        self.started = self.session is not None
        self._shadowed = 0
        self.pending: list[J.Record] = []
        if shadow is not None:  # bring the shadow engine to where the files end: newest snapshot + files after it
            from .snapshot import restore

            got = restore(shadow.engine, shadow.dir, directory if J.journal_files(directory) else None, log=log)
            if got["snapshot"] or got["journal_messages"]:
                self.note(f"shadow engine: snapshot {got['snapshot']['path'] if got['snapshot'] else 'none'} "
                          f"and {got['journal_messages']} journaled messages after it")
            shadow.session, shadow.next = self.session, self.next

    def note(self, text: str) -> None:
        print(f"fh record: {text}", file=self.log, flush=True)

    def _hole(self, session: str, first: int, upto: int, why: str) -> None:
        if upto <= first:
            return
        self.note(f"sequences {first}..{upto - 1} of session {session.strip()} are not in the journal ring "
                  f"({why}): written as a hole; fill them from the feed's retransmission server")
        self.pending.append(J.Record(J.LOST, session, first, 0, upto - first, b""))
        self.holes += 1
        self.hole_messages += upto - first

    def _take(self, r: J.Record) -> None:
        if r.kind == J.MSGS and r.seq == 0:  # unsequenced
            self.pending.append(r)
            self.messages += r.count
            if self.shadow is not None:
                self.shadow.apply(r)
                self._shadowed = len(self.pending)
            return
        if self.session is not None and r.session == self.session:
            t = _trim(r, self.next)
            if t is None:
                return
            first = t.seq
            if t.kind in (J.MSGS, J.LOST, J.MISSED) and first > self.next:
                self._hole(r.session, self.next, first, self._why)
            r = t
        else:  # a new session (or the first one seen)
            self._flush()
            self.session = r.session
            self.next = r.seq if r.kind in (J.MSGS, J.LOST, J.MISSED) else r.seq
        self.pending.append(r)
        self.next = _next_after(r, self.next)
        if r.kind == J.MSGS:
            self.messages += r.count
        self._why = "the recorder was overrun"
        if self.shadow is not None:
            for x in self.pending[self._shadowed:]:
                self.shadow.apply(x)
            self._shadowed = len(self.pending)
            if self.shadow.due():
                self._flush()  # the journal on disk reaches the snapshot's sequence first
                m = self.shadow.save()
                self.note(f"snapshot {m['path']}: {m['orders']} orders, {m['books']} books, {m['bytes']} bytes "
                          f"in {m['write_s']} s")

    def publish_state(self, force: bool = False) -> None:
        """Progress for fh status, beside the ring (at most twice a second)."""
        now = time.time()
        if not force and now - getattr(self, "_published", 0) < 0.5:
            return
        self._published = now
        snap = self.shadow.saved[-1] if self.shadow is not None and self.shadow.saved else None
        state = {"pid": os.getpid(), "time": now, "dir": str(self.dir), "ring_position": self.pos,
                 "session": (self.session or "").strip(), "next_seq": self.next, "messages": self.messages,
                 "holes": self.holes, "overruns": self.overruns,
                 "last_snapshot": {k: snap[k] for k in ("path", "next_seq", "bytes", "created_ns")} if snap else None}
        p = J.recorder_state_path(self.ring.path)
        try:
            with open(p + ".tmp", "w") as f:
                json.dump(state, f)
            os.replace(p + ".tmp", p)
        except OSError:
            pass  # status is best effort; the files are what matters

    def _flush(self) -> None:
        batch: list[J.Record] = []
        for r in self.pending:
            if batch and r.session != batch[0].session:
                self.out.write(batch)
                batch = []
            batch.append(r)
        if batch:
            self.out.write(batch)
        self.records += len(self.pending)
        self.pending = []
        self._shadowed = 0

    def run(self, *, idle_exit_s: float | None = None, poll_s: float = 0.005, stop=lambda: False) -> dict:
        self._why = "gone from the ring before the recorder started"
        idle_since = time.monotonic()
        while not stop():
            st, pos, r = self.ring.read(self.pos)
            if st == J.OK:
                self.pos = pos
                self._take(r)
                if len(self.pending) >= 1024:
                    self._flush()
                idle_since = time.monotonic()
                continue
            if st == J.OVERRUN:
                self.overruns += 1
                self._why = "the recorder was overrun"
                self.pos = pos
                continue
            if st == J.CORRUPT:
                raise J.JournalError(f"{self.ring.path}: position {self.pos} is not on a record of the ring")
            self._flush()
            self.out.sync() if self.out.fsync != "none" else None
            self.publish_state()
            if not self.ring.writer_alive() and self.pos >= self.ring.head():
                break  # the writer is gone and everything is on disk
            if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
            time.sleep(poll_s)
        self._flush()
        self.out.close()
        if self.shadow is not None and self.shadow.since and self.shadow.session is not None and self.shadow.every:
            m = self.shadow.save()  # the state at the end, for a restart
            self.note(f"snapshot {m['path']}: {m['orders']} orders, {m['books']} books, {m['bytes']} bytes")
        self.publish_state(force=True)
        return {"snapshots": [m["path"] for m in self.shadow.saved] if self.shadow else [],
                "records": self.records, "messages": self.messages, "session": (self.session or "").strip(),
                "next_seq": self.next, "overruns": self.overruns, "holes": self.holes,
                "hole_messages": self.hole_messages, "files_written": self.out.files_written,
                "bytes_written": self.out.bytes_written, "ring_position": self.pos}


def cmd_record(a) -> int:
    import signal

    if os.path.exists(a.dir) and not os.path.isdir(a.dir):
        raise J.JournalError(f"--dir {a.dir}: not a directory: give the directory the journal files go into (it is "
                             "created when missing)")
    path = a.journal or f"/dev/shm/fh-{a.name}.journal"
    ring = J.JournalRing(path)
    directory = Path(a.dir)
    out = J.JournalFileWriter(directory, rotate_bytes=a.rotate_mb << 20, fsync=a.fsync, fsync_ms=a.fsync_ms,
                              day=a.day)
    shadow = None
    if a.snapshot_every:
        from .snapshot import Shadow

        shadow = Shadow(a.snapshots or directory / "snapshots", every=a.snapshot_every, keep=a.snapshot_keep,
                        day=a.day or time.strftime("%Y%m%d", time.gmtime()))
    rec = Recorder(ring, out, directory, shadow=shadow)
    if rec.started:
        rec.note(f"resuming session {rec.session.strip()} at sequence {rec.next}")
    stopping = []
    signal.signal(signal.SIGTERM, lambda s, f: stopping.append(s))
    signal.signal(signal.SIGINT, lambda s, f: stopping.append(s))
    summary = rec.run(idle_exit_s=a.idle_exit_s, stop=lambda: bool(stopping))
    ring.close()
    print(json.dumps(summary) if a.json else
          f"fh record: {summary['messages']:,} messages in {summary['records']:,} records to {directory} "
          f"(session {summary['session']}, next sequence {summary['next_seq']:,}; {summary['holes']:,} holes, "
          f"{summary['overruns']:,} overruns)")
    return 0


def register(sub, positive, nonneg) -> None:
    from .cli.argtypes import _given, _yyyymmdd
    from .cli.host import seconds
    from .ui import HelpFormatter, add_json_flag, examples

    r = sub.add_parser("record", help="follow an instance's journal ring and write the day's messages to disk",
                       formatter_class=HelpFormatter,
                       description="Follow the journal ring of a running instance (fh-dataplane --journal) and write "
                                   "every applied message to checksummed files per session and day; with "
                                   "--snapshot-every, a shadow engine saves consistent snapshots for a restart "
                                   "(docs/journal.md).",
                       epilog=examples("fh record --name nasdaq --dir /var/lib/fh/journal",
                                       "fh record --name nasdaq --dir /var/lib/fh/journal --snapshot-every 5000000",
                                       "fh book dump --journal /var/lib/fh/journal --snapshots "
                                       "/var/lib/fh/journal/snapshots"))
    src = r.add_mutually_exclusive_group()
    src.add_argument("--name", default="fh", help="instance name: the journal /dev/shm/fh-NAME.journal")
    src.add_argument("--journal", metavar="PATH", type=_given("the journal ring file"),
                     help="the journal ring file (instead of --name)")
    r.add_argument("--dir", required=True, metavar="DIR", help="where the journal files go (DIR/DAY/...)")
    r.add_argument("--rotate-mb", type=positive, default=1024, help="start a new file past this size (MiB)")
    r.add_argument("--fsync", choices=("always", "interval", "none"), default="interval",
                   help="always: after every write; interval: every --fsync-ms; none: the kernel's choice")
    r.add_argument("--fsync-ms", type=nonneg, default=1000, help="with --fsync interval: milliseconds between fsyncs")
    r.add_argument("--day", metavar="YYYYMMDD", type=_yyyymmdd,
                   help="the day the files are named for (default: today, UTC)")
    r.add_argument("--idle-exit-s", type=seconds(7 * 86400, zero=False), default=None,
                   help="stop after this long with nothing new (default: when the writer is gone)")
    r.add_argument("--snapshot-every", type=nonneg, default=0, metavar="MESSAGES",
                   help="a shadow engine applies the journal and saves its whole state every this many messages "
                        "(and at the end); 0: no snapshots")
    r.add_argument("--snapshots", metavar="DIR", type=_given("the directory for snapshots"),
                   help="where snapshots go (default: DIR/snapshots)")
    r.add_argument("--snapshot-keep", type=positive, default=3, help="snapshots kept (the newest)")
    add_json_flag(r, "fh record")
    r.set_defaults(func=cmd_record)
