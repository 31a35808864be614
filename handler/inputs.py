"""Input files, told apart by their content rather than their names: a NASDAQ ITCH 5.0 daily file (2-byte
length blocks), a classic pcap (any of its four magics), a pcapng, and the gzip of any of them. A command that
wants one kind gets a path it can open (a gzipped input is inflated once into a temporary file, removed at
exit), or a one-line error naming the file, what it seems to be and what to give instead.
"""

from __future__ import annotations

import atexit
import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from .errors import InputError  # noqa: F401  (raised by require(): one line, names the fix)
from .filekind import not_regular

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 4096




def _itch_len(type_byte: int) -> int:
    from . import native

    return native.itch_spec_length(type_byte)


def _looks_itch(head: bytes) -> bool:
    """The first blocks (up to 8) frame consistently, the first is an ITCH 5.0 message of its type's exact
    length and at least half of them are (a damaged message further on still lets the file be read and its
    damage reported, and so does a file cut off mid-message)."""
    off = n = good = 0
    first_ok = False
    while off + 2 <= len(head) and n < 8:
        size = int.from_bytes(head[off:off + 2], "big")
        if off + 2 + size > len(head):
            break  # cut off by the sniff window
        if size == 0:
            return False
        ok = _itch_len(head[off + 2]) == size
        first_ok = first_ok or (n == 0 and ok)
        good += ok
        off += 2 + size
        n += 1
    return n > 0 and first_ok and 2 * good >= n


def _kind_of(head: bytes) -> str:
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    if _looks_itch(head):
        return "itch"
    return "unknown"


def _gunzip_head(path: Path) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read(SNIFF_BYTES)


def regular_file(path: str | os.PathLike, what: str = "a file", option: str | None = None) -> Path:
    """path, when it names a regular file (or a link to one); else an InputError naming what it is and that
    `what` is wanted, with `option` ("--config") before the path when given. Checked before a file is opened: a
    FIFO with no writer would block its reader forever, and a directory or device would fail late or be read
    as something it is not."""
    p = Path(path)
    where = f"{option} {path}" if option else f"{path}"
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{where}: no such file; check the path") from None
    except OSError as e:
        raise InputError(f"{where}: cannot read it: {e.strerror or e}") from None
    kind = not_regular(st.st_mode)
    if kind:
        raise InputError(f"{where}: not a regular file ({kind}); give {what}")
    return p


def journal_files(path: str | os.PathLike, option: str = "--journal") -> list[Path]:
    """fh record's journal files at path, a directory of them or one of them, in order (journal.journal_files);
    an InputError when there are none there, or when path is neither a directory nor a regular file (a FIFO
    would block the reader)."""
    from . import journal as J

    want = f"fh record's journal directory (its --dir) or one of its *{J.SUFFIX} files"
    if Path(path).is_dir():
        files = J.journal_files(path)
        if not files:
            raise InputError(f"{option} {path}: no journal files (*{J.SUFFIX}) in this directory; give {want}")
        for f in files:
            regular_file(f, want, option)
        return files
    return [regular_file(path, want, option)]


def sniff(path: str | os.PathLike) -> str:
    """What the file holds: "itch", "pcap", "pcapng", "gzip:itch", "gzip:pcap", "gzip:pcapng", "gzip:unknown",
    "empty" or "unknown". Raises InputError when it is missing or unreadable, or not a regular file."""
    p = regular_file(path)
    try:
        with open(p, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as e:
        raise InputError(f"{path}: cannot read it: {e.strerror or e}") from None
    if not head:
        return "empty"
    if head[:2] == GZIP_MAGIC:
        try:
            inner = _gunzip_head(p)
        except (OSError, EOFError, zlib.error):
            return "gzip:unknown"
        return "gzip:" + _kind_of(inner)
    return _kind_of(head[:SNIFF_BYTES])


_DESCRIBE = {
    "itch": "an ITCH 5.0 daily file",
    "pcap": "a pcap capture",
    "pcapng": "a pcapng capture",
    "empty": "empty",
    "unknown": "neither an ITCH 5.0 daily file nor a capture",
    "gzip:itch": "a gzipped ITCH 5.0 daily file",
    "gzip:pcap": "a gzipped pcap capture",
    "gzip:pcapng": "a gzipped pcapng capture",
    "gzip:unknown": "gzip of something that is neither an ITCH 5.0 daily file nor a capture",
}


def describe(kind: str) -> str:
    """What a sniff() kind is, in words ("a pcapng capture")."""
    return _DESCRIBE.get(kind, kind)


def describe_against(kind: str, want: str) -> str:
    """What a file of a sniff() kind is, said against what was wanted (`want` in words): "a pcapng capture, not a
    pcap capture"; a file of no known kind only "neither an ITCH 5.0 daily file nor a capture", which says already
    what it is not."""
    return describe(kind) if kind.endswith("unknown") else f"{describe(kind)}, not {want}"


_temps: list[str] = []


@atexit.register
def _cleanup() -> None:
    for t in _temps:
        try:
            os.unlink(t)
        except OSError:
            pass


def _inflate(p: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f"fh-{p.stem}-", suffix=".raw")
    _temps.append(tmp)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(p, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{p}: the gzip stream is damaged ({e}); fetch the file again") from None
    return Path(tmp)


# what to do with a file of the other kind, for a command with no option that takes it
_OTHER_KIND_FIX = {
    "itch": "this command reads daily files only; a capture is read by fh replay PCAP (into a segment: --name NAME "
            "--keep-segment), fh decode --pcap and fh book dump --pcap",
    "pcap": "this command reads captures only; make one of a daily file with fh pcap synth OUT.pcap --itch FILE",
}


def require(path: str | os.PathLike, want: str, option: str, other: str | None = None) -> Path:
    """The path to read for `option` (e.g. "--itch"), which takes `want` ("itch" or "pcap"): the file itself,
    or its inflated copy when it is gzipped. Anything else is an InputError naming what it seems to be. `other`
    is the command's option that takes the other kind ("--pcap" beside --itch), None when it has none: a file of
    that kind is then told where it can go instead."""
    kind = sniff(path)
    if kind == want:
        return Path(path)
    if kind == "gzip:" + want:
        return _inflate(Path(path))
    fix = {
        "pcapng": "convert it to pcap first (editcap -F pcap IN OUT)",
        "gzip:pcapng": "inflate it and convert it to pcap first (editcap -F pcap IN OUT)",
        "empty": "give a file with data in it",
    }.get(kind)
    if fix is None:
        base = kind.removeprefix("gzip:")
        if base in ("itch", "pcap") and base != want:
            fix = f"give it as {other} instead" if other else _OTHER_KIND_FIX[want]
        else:
            fix = f"give {'an ITCH 5.0 daily file (NASDAQ format, gzipped or not)' if want == 'itch' else 'a pcap of MoldUDP64 datagrams (gzipped or not)'}"
    raise InputError(f"{option} {path}: this file is {describe_against(kind, _DESCRIBE[want])}: {fix}")
