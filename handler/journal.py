"""The applied-message journal from Python: the shared-memory ring's reader (the layout and protocol of
native/include/fh/journal.h, over a read-only mmap) and the journal files fh record writes (docs/journal.md).

Ring: JournalRing(path).read(pos) returns (status, next position, Record or None), as fh_journal_next does.

Files: one per session and day, rotated by size: a 64-byte header, then records, each a length, a CRC-32
of its payload and the payload (kind, count, sequence, argument, the message blocks). JournalFileWriter
appends; read_journal_file checks every header and CRC and refuses a damaged file with one line that says
where; journal_messages yields the (session, sequence, message) of a file or a directory of them, in order.
"""
from __future__ import annotations

import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .filekind import not_regular

# ---- the ring (fh/journal.h) ---------------------------------------------------------------------------

MAGIC = 0x31304C4E524A4646  # "FFJRNL01"
LAYOUT_VERSION = 1
REC = struct.Struct("<QIBBHQQ10s6x")  # fh_journal_rec_t, 48 bytes
assert REC.size == 48
MIN_CAPACITY = 1 << 18
MAX_BODY = 65536

PAD, MSGS, LOST, HEARTBEAT, END, MISSED, PROMOTED, SNAPSHOT = 0, 1, 2, 3, 4, 5, 6, 7
KIND_NAMES = {MSGS: "msgs", LOST: "lost", HEARTBEAT: "heartbeat", END: "end", MISSED: "missed", PROMOTED: "promoted",
              SNAPSHOT: "snapshot"}

NONE, OK, OVERRUN, CORRUPT = 0, 1, 2, 3

# fh_journal_hdr_t offsets
_H_IDENT = struct.Struct("<QIIQQQII Q32s")
_OFF_RESERVE, _OFF_HEAD = 128, 136
_OFF_HEARTBEAT, _OFF_STATE, _OFF_RECORDS = 192, 200, 208
HDR_SIZE = 256


class JournalError(InputError):
    pass


@dataclass
class Record:
    kind: int
    session: str
    seq: int
    count: int
    arg: int
    body: bytes  # MSGS: the message blocks (u16 BE length + message), arg bytes

    def messages(self) -> list[bytes]:
        """The messages of a MSGS record, in sequence order."""
        out, o, b = [], 0, self.body
        while len(out) < self.count and o + 2 <= len(b):
            n = (b[o] << 8) | b[o + 1]
            if o + 2 + n > len(b):
                break
            out.append(bytes(b[o + 2:o + 2 + n]))
            o += 2 + n
        return out


def _session(raw: bytes) -> str:
    return raw.decode("latin-1")


class JournalRing:
    """A follower's read-only view of /dev/shm/fh-NAME.journal."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # (a FIFO blocked the open forever)
        except FileNotFoundError:
            raise JournalError(f"no journal at {self.path}: is the data plane running with --journal "
                               f"(fh run with [journal] in fh.toml)?") from None
        try:
            st = os.fstat(fd)
            kind = not_regular(st.st_mode)
            if kind:
                raise JournalError(f"{self.path}: {kind}, not a journal ring: give the data plane's ring "
                                   "(/dev/shm/fh-NAME.journal, or --name NAME)")
            size = st.st_size
            if size < HDR_SIZE:
                raise JournalError(f"{self.path}: {size} bytes, too short for a journal header")
            self.m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        (magic, version, hdr_size, total, data_off, capacity, pid, _pad, start_ns,
         name) = _H_IDENT.unpack_from(self.m, 0)
        if magic == 0:
            raise JournalError(f"{self.path}: its writer is still creating it: try again")
        if magic != MAGIC or version != LAYOUT_VERSION or hdr_size != HDR_SIZE:
            raise JournalError(f"{self.path}: not an fh journal of layout version {LAYOUT_VERSION} "
                               f"(magic {magic:#x}, version {version}): was it written by another fh version?")
        if capacity < MIN_CAPACITY or capacity & (capacity - 1) or data_off + capacity > size or total > size:
            raise JournalError(f"{self.path}: its header's sizes do not fit the file")
        self.capacity, self.mask, self.data_off = capacity, capacity - 1, data_off
        self.writer_pid, self.start_ns = pid, start_ns
        self.name = name.split(b"\0", 1)[0].decode()

    def close(self) -> None:
        self.m.close()

    def _u64(self, off: int) -> int:
        return struct.unpack_from("<Q", self.m, off)[0]

    def head(self) -> int:
        return self._u64(_OFF_HEAD)

    def reserve(self) -> int:
        return self._u64(_OFF_RESERVE)

    def oldest(self) -> int:
        h = self.head()
        return (h - 1) & ~self.mask if h else 0

    def status(self) -> dict:
        return {"path": self.path, "name": self.name, "writer_pid": self.writer_pid, "capacity": self.capacity,
                "head": self.head(), "records": self._u64(_OFF_RECORDS),
                "heartbeat_ns": self._u64(_OFF_HEARTBEAT),
                "writer_state": struct.unpack_from("<I", self.m, _OFF_STATE)[0],
                "writer_alive": self.writer_alive()}

    def writer_alive(self) -> bool:
        return writer_alive(self.path)

    def read(self, pos: int) -> tuple[int, int, Record | None]:
        """The record at pos: (OK, the position after it, the record), (NONE, pos, None) when nothing is
        new, (OVERRUN, where to go on, None) when the writer went over it, (CORRUPT, pos, None) when pos is
        not on a record."""
        cap, m, base = self.capacity, self.m, self.data_off
        while True:
            if pos >= self.head():
                return NONE, pos, None
            off = pos & self.mask
            if cap - off < REC.size:
                pos += cap - off
                continue
            rpos, size, kind, _, count, seq, arg, session = REC.unpack_from(m, base + off)
            sane = rpos == pos and REC.size <= size <= cap - off and not size & 7 and size - REC.size <= MAX_BODY
            body = bytes(m[base + off + REC.size:base + off + REC.size + min(arg, size - REC.size)]) \
                if sane and kind == MSGS else b""
            if self.reserve() - pos > cap:
                lap = self.head() & ~self.mask
                return OVERRUN, (lap if lap > pos else (pos & ~self.mask) + cap), None
            if not sane:
                return CORRUPT, pos, None
            pos += size
            if kind == PAD:
                continue
            return OK, pos, Record(kind, _session(session), seq, count, arg, body)


# ---- journal files (docs/journal.md) ---------------------------------------------------------------------

FILE_MAGIC = b"FHJFILE1"
FILE_VERSION = 1
FILE_HDR = struct.Struct("<8sII10s2xIIQQ8x")  # magic, version, header size, session, day, part, first seq,
FILE_HDR_SIZE = 64                              # created ns, reserved; then the CRC-32 of the first 60 bytes
assert FILE_HDR.size == 60
REC_HEAD = struct.Struct("<II")  # payload length, CRC-32 of the payload
PAYLOAD = struct.Struct("<BBHIQQ")  # kind, 0, count, 0, seq, arg; then the blocks (MSGS)
SUFFIX = ".fhj"


class JournalFileError(JournalError):
    pass


class NotAJournalFile(JournalFileError):
    """A file whose first 8 bytes are not FILE_MAGIC: not a journal file at all (rather than a damaged one)."""


def not_a_journal_text(where: str, magic: bytes) -> str:
    """The one line for a file that does not begin as a journal file does (was "magic b'\\xa0r...'", a Python
    bytes repr and no fix); the C reader (native/src/journal_file.c) says the same."""
    return (f"{where}: not an fh journal file: it begins with the bytes {magic.hex(' ') or '(none)'}, a journal "
            f"file begins with {FILE_MAGIC.decode()} ({FILE_MAGIC.hex(' ')}); give fh record's *.fhj files (its "
            f"--dir), or move this file out of the journal directory")


def file_name(day: str, session: str, part: int) -> str:
    return f"{day}-{session.strip() or '_'}-{part:04d}{SUFFIX}"


@dataclass
class FileHeader:
    session: str
    day: int
    part: int
    first_seq: int
    created_ns: int


def _pack_header(h: FileHeader) -> bytes:
    raw = FILE_HDR.pack(FILE_MAGIC, FILE_VERSION, FILE_HDR_SIZE, h.session.encode("latin-1"), h.day, h.part,
                        h.first_seq, h.created_ns)
    return raw + struct.pack("<I", zlib.crc32(raw))


def _unpack_header(raw: bytes, where: str) -> FileHeader:
    if len(raw) < FILE_HDR_SIZE:
        raise JournalFileError(f"{where}: {len(raw)} bytes, shorter than a journal file header (64): truncated")
    magic, version, hsize, session, day, part, first, created = FILE_HDR.unpack_from(raw)
    if magic != FILE_MAGIC:
        raise NotAJournalFile(not_a_journal_text(where, magic))
    if version != FILE_VERSION or hsize != FILE_HDR_SIZE:
        raise JournalFileError(f"{where}: journal file version {version}, this fh reads {FILE_VERSION}")
    if struct.unpack_from("<I", raw, 60)[0] != zlib.crc32(raw[:60]):
        raise JournalFileError(f"{where}: its header's CRC does not match: the file is damaged")
    return FileHeader(session.decode("latin-1"), day, part, first, created)


def encode_record(r: Record) -> bytes:
    payload = PAYLOAD.pack(r.kind, 0, r.count, 0, r.seq, r.arg) + (r.body if r.kind == MSGS else b"")
    return REC_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def read_journal_file(path: str | os.PathLike, *, tolerate_tail: bool = False,
                      after: int = 0) -> tuple[FileHeader, list[Record], int]:
    """Header, records and the length of the valid prefix. A damaged record is refused with a
    JournalFileError naming its offset; with tolerate_tail, a torn last record (a write the writer did not
    finish: a short length or payload at the end) ends the list instead (the recorder's own resume).
    after: the sequenced MSGS/LOST/MISSED records wholly before this sequence (a restart's snapshot holds
    them) are stepped over unread: neither checked nor returned."""
    p = Path(path)
    data = p.read_bytes()
    h = _unpack_header(data[:FILE_HDR_SIZE], str(p))
    recs: list[Record] = []
    off = FILE_HDR_SIZE
    while after and off + REC_HEAD.size + PAYLOAD.size <= len(data):  # the records before `after`
        n = REC_HEAD.unpack_from(data, off)[0]
        kind, _, count, _, seq, arg = PAYLOAD.unpack_from(data, off + REC_HEAD.size)
        if n < PAYLOAD.size or off + REC_HEAD.size + n > len(data) or not seq or kind not in (MSGS, LOST, MISSED) \
                or seq + (count if kind == MSGS else arg) > after:
            break
        off += REC_HEAD.size + n
    while off < len(data):
        if off + REC_HEAD.size > len(data) or off + REC_HEAD.size + REC_HEAD.unpack_from(data, off)[0] > len(data):
            if tolerate_tail:
                break
            raise JournalFileError(f"{p}: truncated: the record at offset {off} runs past the end of the file "
                                   f"({len(data) - off} trailing bytes)")
        n, crc = REC_HEAD.unpack_from(data, off)
        payload = data[off + REC_HEAD.size:off + REC_HEAD.size + n]
        if n < PAYLOAD.size or zlib.crc32(payload) != crc:
            if tolerate_tail and off + REC_HEAD.size + n == len(data):
                break
            raise JournalFileError(f"{p}: the record at offset {off} fails its CRC: the file is damaged "
                                   f"(the records before it are sound)")
        kind, _, count, _, seq, arg = PAYLOAD.unpack_from(payload)
        recs.append(Record(kind, h.session, seq, count, arg, payload[PAYLOAD.size:]))
        off += REC_HEAD.size + n
    return h, recs, off


def journal_files(path: str | os.PathLike) -> list[Path]:
    """A file, or the journal files of a directory (recursively) in name order: day, session, part."""
    p = Path(path)
    if p.is_dir():
        found = sorted(p.rglob(f"*{SUFFIX}"), key=lambda f: f.name)
        for f in found:  # a FIFO named *.fhj blocked every reader of the directory (fh run's restart) forever
            kind = not_regular(f.stat().st_mode)
            if kind:
                raise JournalFileError(f"{f}: {kind}, not a journal file, in the journal directory {p}: move it out")
        return found
    if not p.exists():
        raise JournalFileError(f"{p}: no such file or directory")
    return [p]


def journal_records(path: str | os.PathLike):
    for f in journal_files(path):
        _, recs, _ = read_journal_file(f)
        yield from recs


def journal_messages(path: str | os.PathLike):
    """(session, sequence, message) of every message journaled, in order; LOST/MISSED holes are skipped
    (see journal_records for them)."""
    for r in journal_records(path):
        if r.kind == MSGS:
            for i, m in enumerate(r.messages()):
                yield r.session, (r.seq + i if r.seq else 0), m


class JournalFileWriter:
    """Appends records to DIR/DAY/DAY-SESSION-PART.fhj: a new file for each session and day, and when the
    current one passes rotate_bytes. fsync: 'always' (after every write call), 'interval' (at most every
    fsync_ms), 'none' (leave it to the kernel); files are fsynced when closed or rotated either way."""

    def __init__(self, directory: str | os.PathLike, *, rotate_bytes: int = 1 << 30, fsync: str = "interval",
                 fsync_ms: int = 1000, day: str | None = None):
        if fsync not in ("always", "interval", "none"):
            raise ValueError(f"fsync policy {fsync!r}: must be always, interval or none")
        self.dir = Path(directory)
        self.rotate_bytes, self.fsync, self.fsync_ms = rotate_bytes, fsync, fsync_ms
        self.day_fixed = day
        self.f = None
        self.path: Path | None = None
        self.session: str | None = None
        self.day: str | None = None
        self.part = 0
        self.size = 0
        self.last_sync = time.monotonic()
        self.files_written = 0
        self.bytes_written = 0

    def _today(self) -> str:
        return self.day_fixed or time.strftime("%Y%m%d", time.gmtime())

    def open_for(self, session: str, first_seq: int) -> None:
        day = self._today()
        if self.f is not None and session == self.session and day == self.day and self.size < self.rotate_bytes:
            return
        if self.f is not None and (session != self.session or day != self.day):
            self.part = 0
        self.close()
        d = self.dir / day
        d.mkdir(parents=True, exist_ok=True)
        part = self.part
        while (d / file_name(day, session, part)).exists():
            part += 1
        self.path = d / file_name(day, session, part)
        self.f = open(self.path, "xb")
        hdr = _pack_header(FileHeader(session, int(day), part, first_seq, time.time_ns()))
        self.f.write(hdr)
        self.session, self.day, self.part, self.size = session, day, part, len(hdr)
        self.files_written += 1

    def write(self, recs: list[Record]) -> None:
        """Records of one session, in order."""
        if not recs:
            return
        self.open_for(recs[0].session, recs[0].seq)
        buf = b"".join(encode_record(r) for r in recs)
        self.f.write(buf)
        self.size += len(buf)
        self.bytes_written += len(buf)
        if self.fsync == "always":
            self.sync()
        elif self.fsync == "interval" and (time.monotonic() - self.last_sync) * 1000 >= self.fsync_ms:
            self.sync()

    def sync(self) -> None:
        if self.f is not None:
            self.f.flush()
            os.fsync(self.f.fileno())
        self.last_sync = time.monotonic()

    def close(self) -> None:
        if self.f is not None:
            self.sync()
            self.f.close()
            self.f = None


# ---- status (fh status): the ring and its recorder ---------------------------------------------------------

def writer_alive(path: str) -> bool:
    """Whether a writer holds the journal ring at PATH open: the data plane holds its lock from creating the ring
    until it closes its journal, which it does before its process exits."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def ring_written_by(path: str, pid: int) -> bool:
    """Whether the journal ring at PATH is there and was created by process PID (a follower started beside a
    data plane waits for that data plane's own ring, not a previous run's)."""
    try:
        r = JournalRing(path)
    except (JournalError, OSError):
        return False
    try:
        return r.writer_pid == pid
    finally:
        r.close()


def ring_path(name: str) -> str:
    return f"/dev/shm/fh-{name}.journal"


def recorder_state_path(ring: str) -> str:
    """Where fh record publishes its progress for fh status: beside the ring."""
    return ring + ".record"


def status(name: str) -> dict | None:
    """The journal of instance name (None when it has none): position, records, writer, and its recorder's
    lag and last snapshot when fh record follows it."""
    path = ring_path(name)
    if not os.path.exists(path):
        return None
    try:
        r = JournalRing(path)
    except JournalError as e:
        return {"path": path, "error": str(e)}
    try:
        out = r.status()
    finally:
        r.close()
    out["heartbeat_age_s"] = round(max(0, time.time_ns() - out["heartbeat_ns"]) / 1e9, 3)
    rec = None
    try:
        import json

        with open(recorder_state_path(path)) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        pass
    if rec:
        rec["lag_bytes"] = max(0, out["head"] - rec.get("ring_position", 0))
        rec["age_s"] = round(time.time() - rec.get("time", 0), 3)
        alive = False
        try:
            os.kill(int(rec.get("pid", 0)), 0)
            alive = True
        except (OSError, ValueError):
            pass
        rec["alive"] = alive
    out["recorder"] = rec
    return out
