"""The `fh` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from ..errors import FhError, main_guard
from ..ui import HelpFormatter, add_json_flag, bar, examples, fmt_int, fmt_ns, print_json, print_table
from .argtypes import U64_MAX, _bounded, _cpu, _given, _nonneg, _out_file, _positive
from .host import seconds


def _itch(path: str, other: str | None = "--pcap") -> Path:
    """--itch FILE: an ITCH 5.0 daily file, gzipped or not (checked by content: handler/inputs.py); `other`: the
    command's option for a capture (None: it has none)."""
    from .. import inputs

    return inputs.require(path, "itch", "--itch", other)


def _pcap(path: str, option: str = "--pcap") -> Path:
    from .. import inputs

    return inputs.require(path, "pcap", option, "--itch")


def _journal(path: str) -> list[Path]:
    """--journal PATH: fh record's journal files (a directory of them, or one), checked: none there, or a path that
    is neither a directory nor a regular file, is an InputError (handler/inputs.py)."""
    from .. import inputs

    return inputs.journal_files(path, "--journal")


def _use_fh_help(parser: argparse.ArgumentParser) -> None:
    """Give every parser of the tree that kept argparse's plain formatter fh's (defaults shown, epilogs kept)."""
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _use_fh_help(child)


def version_info() -> dict:
    """What `fh --version` prints: the package version, the build's `git describe` and DPDK version (written
    by meson into handler/_build_info.py; "unknown" when fh was not built from a git checkout, None where
    DPDK was not found), and the layout versions of the shared-memory segment and the journal."""
    from .. import __version__

    try:
        from .. import _build_info

        git, dpdk = _build_info.GIT_DESCRIBE or "unknown", _build_info.DPDK_VERSION or None
    except ImportError:  # a source tree used without a build
        git, dpdk = "unknown", None
    try:
        from .._native import lib

        layout = int(lib.FH_SHM_LAYOUT_VERSION)
    except ImportError:
        layout = None
    from ..journal import LAYOUT_VERSION as journal_layout

    return {"version": __version__, "git": git, "dpdk": dpdk, "segment_layout": layout,
            "journal_layout": journal_layout, "python": sys.version.split()[0]}


def version_text() -> str:
    v = version_info()
    return (f"fh {v['version']} (git {v['git']})\n"
            f"DPDK {v['dpdk'] or 'none: fh-dataplane and fh ports were not built (apt-get install libdpdk-dev)'}\n"
            f"segment layout {v['segment_layout'] if v['segment_layout'] is not None else 'unknown (not built)'}, "
            f"journal layout {v['journal_layout']}\n"
            f"Python {v['python']}")


class _Version(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit(0)


def _print_counters(counters: dict[str, int], file=sys.stderr) -> None:
    shown = {k: v for k, v in counters.items() if v}
    print("counters: " + (", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "none"), file=file)


# ---- fh synth itch ------------------------------------------------------------------------------------


def cmd_synth_itch(a) -> int:
    import threading
    import time

    from .. import native
    from ..ui import fmt_bytes, fmt_seconds, is_tty, progress

    t0 = time.perf_counter()
    if not is_tty(sys.stderr):
        native.synth_file(a.out, a.messages, a.instruments, a.seed, a.anomaly_ppm, a.shape)
    else:  # the C generator writes the file in one call (the GIL released): follow its size from a thread
        done = threading.Event()
        with progress(None, f"writing {a.out} (MiB)") as prog:
            def watch() -> None:
                seen = 0
                while not done.wait(0.2):
                    try:
                        size = os.path.getsize(a.out)
                    except OSError:
                        continue
                    prog.advance(max(0, size - seen) >> 20)
                    seen += (max(0, size - seen) >> 20) << 20
            th = threading.Thread(target=watch, daemon=True)
            th.start()
            try:
                native.synth_file(a.out, a.messages, a.instruments, a.seed, a.anomaly_ppm, a.shape)
            finally:
                done.set()
                th.join()
    size = os.path.getsize(a.out)
    print(f"{a.out}: {fmt_int(a.messages)} messages, {a.instruments} instruments, seed {a.seed}, shape {a.shape}, "
          f"{fmt_bytes(size)} in {fmt_seconds(time.perf_counter() - t0)}", file=sys.stderr)
    return 0


# ---- fh book dump ---------------------------------------------------------------------------------------


def _dump_reference(a) -> tuple[list[dict], dict]:
    from .. import reference

    if getattr(a, "journal", None):  # fh record's files: the messages in the order they were applied
        from ..journal import journal_messages

        _journal(a.journal)
        ref = reference.ReferenceBook()
        for _, _, m in journal_messages(a.journal):
            ref.apply(m)
        return ref.books(a.depth), dict(ref.counters)
    if a.pcap:  # sequenced as the C engine and the data plane do
        from ..replay import reference_books

        return reference_books(_pcap(a.pcap), depth=a.depth)
    ref = reference.ReferenceBook()
    ref.apply_daily_file(str(_itch(a.itch)))
    return ref.books(a.depth), dict(ref.counters)


def _dump_c(a) -> tuple[list[dict], dict]:
    from .. import native

    if getattr(a, "snapshots", None):  # a restart's state: the newest sound snapshot + the journal after it
        from ..snapshot import restore

        eng = native.Engine()
        got = restore(eng, a.snapshots, a.journal)
        snap = got["snapshot"]
        print(f"fh book dump: snapshot {snap['path'] if snap else 'none'} (complete to sequence "
              f"{snap['next_seq'] - 1 if snap else 0}), then {got['journal_messages']} journaled messages",
              file=sys.stderr)
        return eng.dump(a.depth), eng.counters()
    if getattr(a, "journal", None):
        from ..journal import MSGS, journal_records

        eng = native.Engine(native.EngineConfig.for_input(sum(f.stat().st_size for f in _journal(a.journal))))
        for r in journal_records(a.journal):
            if r.kind == MSGS:
                eng.apply_blocks(r.body)
        return eng.dump(a.depth), eng.counters()
    path = _itch(a.itch) if a.itch else _pcap(a.pcap)
    eng = native.Engine(native.EngineConfig.for_input(path.stat().st_size))
    extra = {}
    if a.itch:
        eng.apply_file(path)
    else:
        extra = eng.apply_pcap(path)
    return eng.dump(a.depth), {**eng.counters(), **{f"pcap_{k}": v for k, v in extra.items()}}


def _check_snapshots(a) -> None:
    """--snapshots DIR: a directory (empty: no snapshot yet, the journal from its start), with --journal (the
    records after the snapshot) and the C engine (the reference model loads no snapshot)."""
    if a.snapshots is None:
        return
    if not a.journal:
        raise FhError(f"--snapshots {a.snapshots}: give fh record's journal with it (--journal DIR): the books start "
                      f"from a snapshot and the journal after it, not from --itch or --pcap")
    if a.engine != "c":
        raise FhError(f"--snapshots {a.snapshots}: the reference engine loads no snapshot; leave out --engine "
                      f"reference (or --snapshots, to build the books from the whole journal)")
    if not os.path.isdir(a.snapshots):
        why = "not a directory" if os.path.exists(a.snapshots) else "no such directory"
        raise FhError(f"--snapshots {a.snapshots}: {why}; give the directory fh record writes its snapshots into "
                      f"(its --snapshots, by default DIR/snapshots of its --dir DIR)")


def cmd_book_dump(a) -> int:
    _check_snapshots(a)
    books, counters = (_dump_reference if a.engine == "reference" else _dump_c)(a)
    out = sys.stdout
    for b in books:
        out.write(json.dumps(b) + "\n")
    if a.stats:
        _print_counters(counters)
    for line in _dump_losses(a, counters):
        print(line, file=sys.stderr)
    return 0


def _dump_losses(a, counters: dict) -> list[str]:
    """One stderr line for each way the input lost messages that the books therefore lack: a daily file or
    capture cut off, sequences no line of a capture carried. Counted either way (--stats), but not silent."""
    out = []
    if a.itch and counters.get("truncated"):
        out.append(f"fh book dump: {a.itch}: truncated: its last message is cut off; the books hold the messages "
                   f"before it")
    bad = malformed_text(counters)
    if bad:
        out.append(f"fh book dump: {a.itch or a.pcap or getattr(a, 'journal', None)}: {bad}")
    if a.pcap:
        from ..replay import capture_cut

        seq = counters.get("sequencing") or {}
        cut = capture_cut(a.pcap, {"truncated_file": counters.get("pcap_truncated_file"),
                                   "frames": counters.get("pcap_frames", 0)}, "the books hold the frames before it")
        if cut:
            out.append(f"fh book dump: {cut}")
        frames = counters.get("pcap_frames", 0)
        grams = counters.get("pcap_datagrams", 0 if not frames else None)  # (the reference's counters: frames only)
        if not cut and grams == 0:  # it printed nothing and exited 0, as if the books were empty
            out.append(f"fh book dump: {no_datagram_text(a.pcap, frames)}; no book to dump")
        lost = counters.get("pcap_mold_lost", 0) or seq.get("lost", 0)
        if lost:
            out.append(f"fh book dump: {a.pcap}: {lost:,} messages missing: sequence numbers no line of the capture "
                       f"carried (a data plane would mark every book stale); the books lack them")
    return out


MALFORMED = ("unknown_type", "short_message", "long_message")  # docs/book-semantics.md, "Message checks"


def malformed_text(counters: dict) -> str | None:
    """What a command says of messages that are not ITCH 5.0 as framed (a damaged or foreign file: a real day has
    none), from an engine's counters; None when there were none. A garbled file said only "truncated"."""
    n = {k: counters.get(k, 0) for k in MALFORMED if counters.get(k, 0)}
    if not n:
        return None
    return (f"{fmt_int(sum(n.values()))} malformed messages (" + ", ".join(f"{k} {fmt_int(v)}" for k, v in n.items())
            + "): skipped, a long one applied by its known fields (docs/book-semantics.md); the input may be damaged "
              "or not ITCH 5.0, and the books may be wrong: --stats gives every counter")


def no_datagram_text(path, frames: int) -> str:
    """What fh decode and fh book dump say of a capture without a UDP datagram (as fh replay refuses it: "the
    capture holds no UDP datagram"), e.g. only a pcap file header."""
    why = "no frame after its file header" if not frames else f"none of its {fmt_int(frames)} frames is UDP/IPv4"
    return f"{path}: the capture holds no UDP datagram ({why})"


# ---- fh decode ------------------------------------------------------------------------------------------

# ITCH 5.0 message types and the short names the text output shows (docs/decode-format.md has the fields)
ITCH_TYPES = {"S": "system_event", "R": "stock_directory", "H": "trading_action", "Y": "reg_sho", "L": "participant",
              "V": "mwcb_levels", "W": "mwcb_status", "K": "ipo_quoting", "J": "luld_collar", "h": "op_halt",
              "A": "add", "F": "add_mpid", "E": "executed", "C": "executed_price", "X": "cancel", "D": "delete",
              "U": "replace", "P": "trade", "Q": "cross_trade", "B": "broken_trade", "I": "noii", "N": "rpii",
              "O": "dlcr"}


def _types(text: str) -> frozenset[int]:
    """--type A,F,E: ITCH message type letters (case matters: H is a trading action, h an operational halt)."""
    got = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in got if t not in ITCH_TYPES]
    if bad or not got:
        raise argparse.ArgumentTypeError(
            f"{','.join(bad) or repr(text)}: not an ITCH 5.0 message type; give letters from "
            f"{' '.join(ITCH_TYPES)}, comma-separated (case matters)")
    return frozenset(ord(t) for t in got)


def _seq_range(text: str) -> tuple[int, int]:
    """--seq FROM:TO (both included), FROM: (to the end), :TO, or N (that one)."""
    lo, sep, hi = text.partition(":")
    try:
        a = int(lo.replace("_", "")) if lo.strip() else 1
        b = (int(hi.replace("_", "")) if hi.strip() else (1 << 64) - 1) if sep else a
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FROM:TO, FROM:, :TO or N (sequence numbers)") from None
    if max(a, b) > U64_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: a sequence number is at most {U64_MAX} (MoldUDP64's 64 bits)")
    if a < 0 or b < a:
        raise argparse.ArgumentTypeError(f"{text!r}: FROM must be 0 or more and not above TO")
    return a, b


def _symbols(text: str) -> tuple[frozenset[str], frozenset[int]]:
    """--symbol AAPL,MSFT or a stock locate (13): (symbols, locates)."""
    got = [t.strip() for t in text.split(",") if t.strip()]
    if not got:
        raise argparse.ArgumentTypeError("expected symbols (or stock locates), comma-separated")
    bad = [t for t in got if not t.isdigit() and (len(t) > 8 or not t.isascii() or not t.isprintable())]
    if bad:
        raise argparse.ArgumentTypeError(f"{bad[0]!r}: an ITCH symbol is 1-8 printable ASCII characters")
    return (frozenset(t.upper() for t in got if not t.isdigit()), frozenset(int(t) for t in got if t.isdigit()))


class SeenRanges:
    """Which sequence numbers of one session have been printed: sorted, disjoint half-open ranges, merged as
    they grow (a handful in practice: one, plus one per gap that neither line filled)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def unseen(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of [lo, hi) not seen yet."""
        return self.claim(lo, hi, mark=False)

    def claim(self, lo: int, hi: int, mark: bool = True) -> list[tuple[int, int]]:
        """Mark [lo, hi) as seen; return its parts that were not seen before."""
        import bisect

        s, e = self.starts, self.ends
        i = bisect.bisect_left(e, lo)  # the first range that ends at or after lo (touching ranges merge)
        j, cur, new, nlo, nhi = i, lo, [], lo, hi
        while j < len(s) and s[j] <= hi:
            if s[j] > cur:
                new.append((cur, s[j]))
            cur = max(cur, e[j])
            nlo, nhi = min(nlo, s[j]), max(nhi, e[j])
            j += 1
        if cur < hi:
            new.append((cur, hi))
        if mark:
            s[i:j], e[i:j] = [nlo], [nhi]
        return new


def _price_text(key: str, v) -> str:
    if key.startswith("level_"):  # Price(8) of the MWCB levels
        return f"{v // 10**8}.{v % 10**8:08d}"
    if key.endswith(("price", "collar")):
        return _dollars(v)
    return str(v)


def decode_text(d: dict, seq: int | None) -> str:
    """One decoded message (fh decode's JSON object) as one readable line: sequence, time, type, locate, stock,
    then every other field as key=value (prices in dollars)."""
    d = dict(d)
    t = d.pop("type")
    loc, ts = d.pop("stock_locate"), d.pop("timestamp")
    d.pop("tracking_number", None)
    d.pop("session", None)
    d.pop("sequence", None)
    stock = d.pop("stock", "")
    rest = " ".join(f"{k}={_price_text(k, v)}" for k, v in d.items())
    head = f"{seq:>10} " if seq is not None else ""
    return f"{head}{_clock(ts)} {t} {ITCH_TYPES.get(t, '?'):<14} {loc:>5} {stock:<8} {rest}".rstrip()


class _Decoder:
    """fh decode's filters, A/B de-duplication, output and counts."""

    def __init__(self, a, out) -> None:
        from .. import native

        self.native = native
        self.a, self.out = a, out
        self.types = a.type
        self.symbols, self.locates = a.symbol if a.symbol else (None, set())
        self.locates = set(self.locates)
        self.lo, self.hi = a.seq if a.seq else (0, (1 << 64) - 1)
        self.limit = a.limit
        self.printed = self.bad = self.filtered = self.duplicates = 0
        self.named: set[str] = set()  # the --symbol symbols a stock directory message (R) read has named

    def done(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def learn(self, msg) -> None:
        """Every message passes here first, wanted or not: a stock directory message (R) of a wanted symbol
        gives its locate."""
        if self.symbols and len(msg) >= 19 and msg[0] == 0x52:
            sym = bytes(msg[11:19]).decode("latin-1").rstrip(" ")
            if sym in self.symbols:
                self.locates.add((msg[1] << 8) | msg[2])
                self.named.add(sym)

    def wanted(self, msg, seq: int | None) -> bool:
        if self.symbols is not None or self.locates:
            if len(msg) < 3 or ((msg[1] << 8) | msg[2]) not in self.locates:
                return False
        if self.types is not None and (not len(msg) or msg[0] not in self.types):
            return False
        return seq is None or self.lo <= seq <= self.hi

    def emit(self, msg, where: str, seq: int | None, tail: dict | None = None) -> None:
        self.learn(msg)
        if not self.wanted(msg, seq):
            self.filtered += 1
            return
        native = self.native
        text = native.itch_json(bytes(msg))
        if text is None:
            self.bad += 1
            kind = "unknown message type" if len(msg) and native.itch_spec_length(msg[0]) == 0 else "short message"
            first = f"0x{msg[0]:02x}" if len(msg) else "none"
            print(f"fh decode: {where}: {kind} (type byte {first}, {len(msg)} bytes), skipped", file=sys.stderr)
            return
        if self.a.json:
            extra = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in (tail or {}).items())
            self.out.write(text[:-1] + extra + "}\n" if extra else text + "\n")
        else:
            line = decode_text(json.loads(text), seq)
            if tail and "line" in tail:
                line += f"  line={tail['line']}"
            self.out.write(line + "\n")
        self.printed += 1

    def summary(self, what: str) -> None:
        """One line on stderr when anything was left out: what was printed, and why the rest was not."""
        parts = []
        if self.duplicates:
            parts.append(f"{fmt_int(self.duplicates)} copies from the other line skipped (--both-lines prints them)")
        if self.filtered:
            parts.append(f"{fmt_int(self.filtered)} not matching the filters")
        if parts and self.limit is not None and self.printed >= self.limit:
            parts.append(f"stopped at --limit {self.limit}")
        unnamed = sorted((self.symbols or set()) - self.named)
        if unnamed:  # (NOSUCH printed nothing, and said only "N not matching the filters")
            parts.append(f"no stock directory message (R) read names {', '.join(unnamed)} (check the symbol, "
                         f"or give its stock locate)")
        if parts:
            print(f"fh decode: {what}: {fmt_int(self.printed)} messages printed; " + "; ".join(parts),
                  file=sys.stderr)


def cmd_decode(a) -> int:
    import struct

    from .. import native
    from ..ui import progress

    if a.both_lines and not a.pcap:
        raise FhError("--both-lines: only with --pcap (a capture's lines carry copies; a daily file or journal holds "
                      "each message once)")
    dec = _Decoder(a, sys.stdout)
    if a.itch:
        path = _itch(a.itch)
        data = path.read_bytes()
        end = done_at = 0
        with progress(len(data), f"decoding {path.name}") as prog:
            for n, (off, msg) in enumerate(native.iter_blocks(data), 1):
                end = off + 2 + len(msg)
                if n & 0xFFFF == 0:
                    prog.advance(end - done_at)
                    done_at = end
                if n < dec.lo:
                    dec.learn(msg)
                    dec.filtered += 1
                    continue
                if n > dec.hi or dec.done():  # positions only grow: nothing after this is wanted
                    break
                dec.emit(msg, f"{path}: offset {off}", n)
            else:
                if end != len(data):
                    print(f"fh decode: {path}: truncated: the block at offset {end} runs past the end of the file "
                          f"({len(data) - end} trailing bytes)", file=sys.stderr)
                    dec.summary(str(path))
                    return 1
        dec.summary(str(path))
        return 1 if dec.bad else 0
    if a.journal:  # fh record's files (docs/journal.md)
        from itertools import chain

        from ..journal import NotAJournalFile, journal_messages

        skipped = 0
        for f in _journal(a.journal):
            if dec.done():
                break
            got = journal_messages(f)
            try:  # (the file is read, its header checked, at the first message)
                first = next(got, None)
            except NotAJournalFile as e:  # in a directory: another program's file, said and stepped over
                if not os.path.isdir(a.journal):
                    raise
                skipped += 1
                print(f"fh decode: warning: {e}; skipped", file=sys.stderr)
                continue
            for session, seq, msg in chain([first] if first is not None else [], got):
                if dec.done():
                    break
                dec.emit(msg, f"{a.journal}: session {session.strip()} sequence {seq}", seq,
                         {"session": session.rstrip(" "), "sequence": seq})
        dec.summary(str(a.journal))
        return 1 if dec.bad or skipped else 0

    from ..net.pcapfile import PcapReader

    path = _pcap(a.pcap)
    reader = PcapReader(path)
    malformed = 0
    seen: dict[bytes, dict[tuple[str, int], SeenRanges]] = {}  # session -> line -> the sequences it carried
    # capture overhead per datagram for the progress bar: record header 16, Ethernet 14, IPv4 20, UDP 8
    with progress(path.stat().st_size, f"decoding {path.name}") as prog:
        moved = 0
        for n, d in enumerate(reader.datagrams(), 1):
            moved += len(d.payload) + 58
            if n & 0x3FF == 0:
                prog.advance(moved)
                moved = 0
            if dec.done():
                break
            where = f"{a.pcap}: datagram {n} ({d.dst}:{d.dport})"
            if len(d.payload) < 20:
                malformed += 1
                print(f"fh decode: {where}: {len(d.payload)} bytes, shorter than a MoldUDP64 header",
                      file=sys.stderr)
                continue
            session_raw, sequence, count = struct.unpack_from(">10sQH", d.payload)
            if sequence >> 62:  # as the data plane and the reference: malformed (its messages' numbers would wrap)
                malformed += 1
                print(f"fh decode: {where}: sequence {sequence:,} is in the top quarter of the 64-bit range: "
                      f"malformed (the data plane refuses it)", file=sys.stderr)
                continue
            if count in (0, 0xFFFF):  # heartbeat, end of session
                continue
            msgs = []
            for _, msg in native.iter_blocks(d.payload[20:]):
                msgs.append(msg)
                if len(msgs) == count:
                    break
            if len(msgs) != count:
                malformed += 1
                print(f"fh decode: {where}: MoldUDP64 count says {count} messages, {len(msgs)} fit", file=sys.stderr)
            session = session_raw.decode("latin-1").rstrip(" ")
            if a.both_lines:
                fresh = [(sequence, sequence + len(msgs))]
            else:  # A/B: a sequence number another line already carried is a copy (counted, not printed); a
                # repeat on the same line (a sample capture's constant sequence, a duplicate fault) is printed
                lines = seen.setdefault(session_raw, {})
                fresh = [(sequence, sequence + len(msgs))]
                for line, other in lines.items():
                    if line != (d.dst, d.dport):
                        fresh = [part for lo, hi in fresh for part in other.unseen(lo, hi)]
                lines.setdefault((d.dst, d.dport), SeenRanges()).claim(sequence, sequence + len(msgs))
            k = 0
            for i, msg in enumerate(msgs):
                if dec.done():
                    break
                s = sequence + i
                while k < len(fresh) and fresh[k][1] <= s:
                    k += 1
                if not (k < len(fresh) and fresh[k][0] <= s):
                    if dec.lo <= s <= dec.hi:
                        dec.duplicates += 1
                    continue
                if not dec.lo <= s <= dec.hi:
                    dec.learn(msg)
                    dec.filtered += 1
                    continue
                tail = {"session": session, "sequence": s}
                if a.both_lines:
                    tail["line"] = f"{d.dst}:{d.dport}"
                dec.emit(msg, f"{where} message {i}", s, tail)
    dec.summary(str(a.pcap))
    c = reader.counters
    damaged = {k: c.get(k, 0) for k in ("truncated_frame", "bad_ip_header", "bad_udp_length") if c.get(k)}
    if damaged or c.get("ip_fragment"):  # frames whose datagrams were left out: damage, or fragments
        print(f"fh decode: {a.pcap}: frames left out: "
              + ", ".join(f"{k} {fmt_int(v)}" for k, v in {**damaged, "ip_fragment": c.get("ip_fragment", 0)}.items()
                          if v)
              + (" (IPv4 fragments are not reassembled)" if c.get("ip_fragment") else ""), file=sys.stderr)
    elif c.get("frames") and not c.get("datagrams"):  # e.g. another link type's frames, or no IPv4 at all
        print(f"fh decode: {a.pcap}: none of its {fmt_int(c['frames'])} frames is a UDP/IPv4 datagram ("
              + ", ".join(f"{k} {fmt_int(c[k])}" for k in ("not_ipv4", "not_udp") if c.get(k)) + ")",
              file=sys.stderr)
    elif not c.get("frames") and not c.get("truncated_file") and not c.get("bad_record"):  # only a file header
        print(f"fh decode: {no_datagram_text(a.pcap, 0)}; nothing to decode", file=sys.stderr)
    if c.get("bad_record"):
        from ..replay import capture_cut

        cut = capture_cut(a.pcap, {**c, "bad_record_at": reader.bad_record_at}, "the messages before it are decoded")
        print(f"fh decode: {cut}", file=sys.stderr)
        return 1
    if c.get("truncated_file"):
        print(f"fh decode: {a.pcap}: truncated: the last record is cut off", file=sys.stderr)
        return 1
    return 1 if dec.bad or malformed or damaged else 0


# ---- fh publish ---------------------------------------------------------------------------------------


def default_segment_path(name: str, max_levels: int = 4 << 20, events: int = 1 << 16) -> str:
    from ..native import segment_footprint
    from ..segments import writer_path

    return writer_path(name, segment_footprint(max_levels, events))


def cmd_publish(a) -> int:
    """Apply a daily ITCH file into a shared segment that readers follow (for tests, demos and labs; the
    data plane publishes live feeds the same way)."""
    import signal
    import time

    from .. import native

    path = _itch(a.itch, other=None)  # (no --pcap: a capture goes to fh replay)
    if a.segment and os.path.isdir(a.segment):
        raise FhError(f"--segment {a.segment}: a directory; give the segment's file, e.g. "
                      f"{os.path.join(a.segment, 'fh-' + a.name)}")
    seg_path = a.segment or default_segment_path(a.name, a.max_levels, a.events)
    data = path.read_bytes()
    seg = native.Segment(seg_path, a.name, max_levels=a.max_levels, event_capacity=a.events, depth=a.depth)
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        eng = native.Engine(native.EngineConfig.for_input(len(data)), segment=seg)
        print(f"fh publish: {seg_path}: applying {path} ({len(data)} bytes)", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        for _ in range(a.loop):
            eng.reset()
            off = 0
            while off < len(data) and not stop:
                n = native.blocks_prefix(memoryview(data)[off:], a.chunk) if a.pace else len(data) - off
                if n == 0:
                    break
                used = eng.apply_blocks(memoryview(data)[off:off + n])
                off += used
                if used < n:  # a cut-off last block
                    break
                if a.pace:
                    eng.publish_stats()
                    time.sleep(a.pace)
            if stop:
                break
        eng.publish_stats()
        secs = time.perf_counter() - t0
        c = eng.counters()
        print(f"fh publish: {c['messages']} messages in {secs:.2f} s; {len(eng.locates())} books; "
              f"{eng.live_orders} live orders", file=sys.stderr, flush=True)
        from ..process import capacity_lines

        for line in capacity_lines(c, {"order_capacity": "its order table is sized from the file, so this is fh's "
                                                         "defect: report it",
                                       "level_capacity": "raise --max-levels",
                                       "instrument_capacity": "the file names more instruments than a segment holds "
                                                              "(65,535)"}):
            print(f"fh publish: {line}", file=sys.stderr, flush=True)
        bad = malformed_text(c)
        if bad:
            print(f"fh publish: {path}: {bad}", file=sys.stderr, flush=True)
        if not stop and off < len(data):
            print(f"fh publish: {path}: truncated: its last message is cut off (at byte {off:,} of "
                  f"{len(data):,}); the books hold the messages before it", file=sys.stderr, flush=True)
        if a.ready_file:
            Path(a.ready_file).write_text(str(os.getpid()))
        while a.hold and not stop:
            seg.heartbeat()
            time.sleep(0.2)
    finally:
        seg.close(unlink=not a.keep)
    return 0


# ---- readers of a segment: fh book SYMBOL, fh top, fh events, fh stats ---------------------------------

EXIT_WRITER_DEAD = 3


@contextmanager
def _segment(a, *, ctrl_c_ends: bool = True):
    """The segment --name names (an instance name or a path), joined for a with block and closed after it: a
    ShmError in joining or reading becomes a one-line FhError; Ctrl-C (fh book --watch, fh top, fh events
    --follow) ends the block quietly where ctrl_c_ends, the command then returning 0."""
    from .. import shm

    try:
        r = shm.Reader(a.name)
    except shm.ShmError as e:
        raise FhError(str(e)) from None
    try:
        yield r
    except shm.ShmError as e:
        raise FhError(str(e)) from None
    except KeyboardInterrupt:
        if not ctrl_c_ends:
            raise
    finally:
        r.close()


def _warn_if_dead(r) -> bool:
    st = r.writer_status()
    if st.state == "dead":
        print(f"fh: warning: {r.dead_text(st)}", file=sys.stderr)
        return True
    return False


def _dollars(price: int) -> str:
    return f"{price // 10000}.{price % 10000:04d}"


def _clock(ns: int) -> str:
    """An ITCH timestamp (ns since midnight) as HH:MM:SS.nnnnnnnnn."""
    s, frac = divmod(ns, 1_000_000_000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:09d}"


def _book_head(b: dict) -> str:
    from ..shm import TRADING_STATES

    state = TRADING_STATES.get(b["trading_state"], repr(b["trading_state"]))
    last = (f"last {_dollars(b['last_trade'][0])} x {fmt_int(b['last_trade'][1])}" if b["last_trade"]
            else "no trade yet")
    status = f"{b['status']} (incomplete: the writer ran out of room for it)" if b.get("incomplete") else b["status"]
    return (f"{b['symbol']}  locate {b['locate']}  {status}  {state}  {last}  levels {b['levels'][0]} x "
            f"{b['levels'][1]}  updates {fmt_int(b['updates'])}  at {_clock(b['itch_ts'])}")


BOOK_BAR_WIDTH = 20


def print_book(b: dict, out=None) -> None:
    """A book as fh book shows it: a head line, then one row per level, bids on the left and asks on the right,
    each with a bar of its shares (one scale for both sides: the largest level shown) growing outwards."""
    out = out if out is not None else sys.stdout
    out.write(_book_head(b) + "\n")
    bids, asks = b["bids"], b["asks"]
    top = max([lv[1] for lv in bids + asks], default=0)
    rows = []
    for i in range(max(len(bids), len(asks))):
        bid = bids[i] if i < len(bids) else None
        ask = asks[i] if i < len(asks) else None
        rows.append([bar(bid[1], top, BOOK_BAR_WIDTH).rjust(BOOK_BAR_WIDTH) if bid else "",
                     fmt_int(bid[2]) if bid else "", fmt_int(bid[1]) if bid else "",
                     _dollars(bid[0]) if bid else "", "|",
                     _dollars(ask[0]) if ask else "", fmt_int(ask[1]) if ask else "",
                     fmt_int(ask[2]) if ask else "", bar(ask[1], top, BOOK_BAR_WIDTH) if ask else ""])
    if not rows:
        rows.append(["", "", "", "(empty)", "|", "(empty)", "", "", ""])
    print_table(["bids", "orders", "shares", "bid", "|", "ask", "shares", "orders", "asks"], rows,
                right=[True, True, True, True, False, False, True, True, False], out=out)


def cmd_book_show(a) -> int:
    import time

    from .. import shm

    with _segment(a) as r:
        depth = a.depth or r.depth
        try:
            loc = r.locate_of(a.symbol)
        except shm.UnknownInstrument:
            if not a.symbol.isdigit():
                raise
            loc = int(a.symbol)
        dead = _warn_if_dead(r)
        seen = None
        clear = a.watch and sys.stdout.isatty()
        while True:
            b = r.book(loc, depth)
            if (b["updates"], b["status"], b["trading_state"]) != seen:
                if a.json:  # the canonical dump line; with --watch one per change (JSON Lines)
                    doc = {"locate": b["locate"], "symbol": b["symbol"], "bids": b["bids"], "asks": b["asks"]}
                    print_json([doc], lines=True) if a.watch else print_json(doc)
                else:
                    if clear:
                        sys.stdout.write("\x1b[H\x1b[2J")
                    print_book(b)
                    if a.watch and not clear:
                        sys.stdout.write("\n")
                sys.stdout.flush()
                seen = (b["updates"], b["status"], b["trading_state"])
            if not a.watch:
                return EXIT_WRITER_DEAD if dead and a.strict else 0
            time.sleep(a.interval)
            if not dead and r.writer_status().state != "running":
                dead = _warn_if_dead(r)
                if not dead:
                    print("fh: the writer stopped; the book is final", file=sys.stderr)
                    return 0
    return 0  # Ctrl-C


def _top_rows(r, prev, prev_t: float, count: int) -> tuple[list[dict], object, float]:
    """The `count` busiest books by updates/s since the sample (prev, prev_t), and a new sample."""
    import time

    import numpy as np

    from .. import shm

    now = time.monotonic()
    locs = r.locates()  # published instruments only
    upd = r.books["updates"][locs].astype(np.int64)
    if prev is None:
        rate = np.zeros(len(locs))
    else:
        d = (upd - prev[locs]) % (1 << 32)
        d = np.where(d > (1 << 31), upd, d)  # a book that started over (a new day)
        rate = d / max(now - prev_t, 1e-9)
    rows = []
    for i in np.lexsort((locs, -upd, -rate))[:count]:  # busiest first, then most updates, then by locate
        s = r.snapshot(int(locs[i]), 1)
        bid = s.bids[0] if len(s.bids) else None
        ask = s.asks[0] if len(s.asks) else None
        rows.append({"symbol": s.symbol, "locate": int(locs[i]), "status": s.status, "state": s.trading_state,
                     "bid_shares": None if bid is None else int(bid["shares"]),
                     "bid": None if bid is None else int(bid["price"]),
                     "ask": None if ask is None else int(ask["price"]),
                     "ask_shares": None if ask is None else int(ask["shares"]),
                     "last_trade": s.last_trade, "updates": int(upd[i]), "rate": float(rate[i])})
    sample = np.zeros(r.nbooks, np.int64)
    sample[locs] = upd
    return rows, sample, now


def _top_head(r) -> tuple[str, dict]:
    import time

    from ..shm import age_text, utc_text

    st = r.writer_status()
    n = int((r.books["status"] != 0).sum())
    head = (f"fh top: {r.name or '?'} ({r.path})  writer pid {st.pid} {st.state}, heartbeat "
            f"{age_text(st.heartbeat_age)} ago  {fmt_int(n)} instruments  events {fmt_int(r.head)}  "
            f"{utc_text(time.time_ns())}")
    doc = {"name": r.name, "segment": r.path, "time_ns": time.time_ns(),
           "writer": {"pid": st.pid, "state": st.state, "heartbeat_age_s": round(st.heartbeat_age, 3)},
           "instruments": n, "events_head": r.head}
    return head, doc


def print_top(r, rows: list[dict], out=None) -> None:
    """One frame of fh top: a head line, a blank line, then the table (busiest first)."""
    out = out if out is not None else sys.stdout
    head, _ = _top_head(r)
    out.write(head + "\n\n")

    def num(v, f=fmt_int) -> str:
        return "-" if v is None else f(v)

    table = []
    for x in rows:
        flag = "" if x["status"] == "live" else x["status"]
        flag += "" if x["state"] == "T" else f"{' ' if flag else ''}state {x['state']}"
        lt = x["last_trade"] or (None, None)
        table.append([x["symbol"], num(x["bid_shares"]), num(x["bid"], _dollars), num(x["ask"], _dollars),
                      num(x["ask_shares"]), num(lt[0], _dollars), num(lt[1]), fmt_int(round(x["rate"])), flag])
    print_table(["SYMBOL", "BIDSZ", "BID", "ASK", "ASKSZ", "LAST", "LASTSZ", "UPD/S", ""], table,
                right=[False, True, True, True, True, True, True, True, False], out=out)


def cmd_top(a) -> int:
    import time

    with _segment(a) as r:
        dead = _warn_if_dead(r)
        tty = sys.stdout.isatty() and not a.once and not a.json
        _, prev, t = _top_rows(r, None, 0.0, 0)
        while True:
            time.sleep(a.interval)
            rows, prev, t = _top_rows(r, prev, t, a.count)
            if a.json:  # one document a frame: with --once a single document, else JSON Lines
                _, doc = _top_head(r)
                doc["rows"] = [{**x, "last_trade": list(x["last_trade"]) if x["last_trade"] else None}
                               for x in rows]
                print_json([doc], lines=True) if not a.once else print_json(doc)
            else:
                if tty:
                    sys.stdout.write("\x1b[H\x1b[2J")
                print_top(r, rows)
                if not tty and not a.once:
                    sys.stdout.write("\n")
            sys.stdout.flush()
            if a.once:
                return 0
            if not dead:
                dead = _warn_if_dead(r)
    return 0  # Ctrl-C


def _event_text(e: dict) -> str:
    t = e["type"]
    head = f"{e['seq']:>10} {_clock(e['itch_ts'])} {e['symbol']:<8} {t:<9}"
    if t == "bbo":
        bid = f"{e['bid_shares']} @ {_dollars(e['bid_price'])}" if e["bid_shares"] else "-"
        ask = f"{e['ask_shares']} @ {_dollars(e['ask_price'])}" if e["ask_shares"] else "-"
        return f"{head} bid {bid}  ask {ask}"
    if t == "trade":
        return f"{head} {e['shares']} @ {_dollars(e['price'])}  match {e['match']}"
    if t == "state":
        return f"{head} trading state {e['trading_state']}"
    return f"{head} book {e['status']}"


def cmd_events(a) -> int:
    from .. import shm

    with _segment(a) as r:
        dead = _warn_if_dead(r)
        if a.start is not None:
            start = a.start
        elif a.follow:
            start = r.head + 1
        else:
            start = max(r.oldest(), r.head - (a.count or 20) + 1)
        limit = a.count if a.count else (None if a.follow else 20)
        n = 0
        out = sys.stdout
        for e in r.events(start, follow=a.follow and not dead):
            if isinstance(e, shm.Overrun):
                if a.json:
                    print_json([e.to_dict()], out, lines=True)
                else:
                    out.write(f"-- overrun: {e.lost} events lost; going on at {e.next} (resynchronise from the "
                              f"books)\n")
                continue
            if a.json:  # JSON Lines, one compact document an event
                print_json([e], out, lines=True)
            else:
                out.write(_event_text(e) + "\n")
            if a.follow:
                out.flush()
            n += 1
            if limit is not None and n >= limit:
                break
        if not a.follow and n == 0 and a.start is not None and a.start > r.head:  # not silent: nothing that far yet
            print(f"fh events: nothing from {a.start:,}: the newest event is {r.head:,} (--follow waits for more)",
                  file=sys.stderr)
        if a.follow and n != limit:
            st = r.writer_status()
            if st.state == "dead":
                print(f"fh: {r.dead_text(st)}", file=sys.stderr)
                return EXIT_WRITER_DEAD
            if st.state == "stopped":
                print(f"fh: the writer (pid {st.pid}) stopped; no more events", file=sys.stderr)
        return 0
    return 0  # Ctrl-C


LATENCY_MAX_ROWS = 24


def latency_rows(buckets) -> list[tuple[int, int, int]]:
    """The rx->publish histogram (fh/shm.h's per-bucket counts, every bucket) as (lower ns, upper ns, count) rows
    for a picture: every bucket from the first non-empty one to the last, or, when that is more than
    LATENCY_MAX_ROWS, the buckets merged by power of two (each holds 16 of them above 64 ns)."""
    from ..shm import lat_lower_ns, lat_upper_ns

    counts = [int(c) for c in buckets]
    nz = [i for i, c in enumerate(counts) if c]
    if not nz:
        return []
    first, last = nz[0], nz[-1]
    if last - first + 1 <= LATENCY_MAX_ROWS:
        return [(lat_lower_ns(i), lat_upper_ns(i), counts[i]) for i in range(first, last + 1)]
    rows: list[list[int]] = []
    key_of = (lambda i: max(i, 1).bit_length())  # one row per power of two
    prev = None
    for i in range(first, last + 1):
        k = key_of(lat_upper_ns(i))
        if k != prev:
            rows.append([lat_lower_ns(i), lat_upper_ns(i), 0])
            prev = k
        rows[-1][1] = lat_upper_ns(i)
        rows[-1][2] += counts[i]
    return [tuple(r) for r in rows]


def print_latency(lat: dict, rows: list[tuple[int, int, int]], out=None) -> None:
    """The histogram as bars, one line a bucket (its bounds in human units and its count), the bucket holding
    each percentile marked, then the percentiles."""
    out = out if out is not None else sys.stdout
    if not rows:
        out.write("rx->publish latency: no messages measured yet\n")
        return
    top = max(c for _, _, c in rows)
    marks = {}
    for q in ("p50", "p99", "p99.9", "max"):
        for k, (lo, hi, _) in enumerate(rows):
            if lo <= lat[q] <= hi:
                marks.setdefault(k, []).append(q)
    table = [[fmt_ns(lo), fmt_ns(hi), bar(c, top, 40), fmt_int(c), f"{100 * c / lat['count']:.2f}%" if lat["count"]
              else "-", " ".join(marks.get(k, []))] for k, (lo, hi, c) in enumerate(rows)]
    print_table(["from", "to", "", "messages", "share", ""], table, right=[True, True, False, True, True, False],
                out=out, title=f"rx->publish latency of {fmt_int(lat['count'])} messages")
    out.write(f"p50 {fmt_ns(lat['p50'])}  p99 {fmt_ns(lat['p99'])}  p99.9 {fmt_ns(lat['p99.9'])}  "
              f"max {fmt_ns(lat['max'])}\n")


def _configured_line_names(a, r) -> list[str] | None:
    """The feed lines' names from --config, else from the configuration of the instance fh run started on this
    segment (its pidfile record); None when neither names them."""
    if getattr(a, "config", None):
        from .. import config

        try:
            return [l.name for l in config.load(a.config).lines]
        except config.ConfigError as e:
            raise FhError(str(e)) from None
    try:
        from ..supervise import lookup

        _, rec, _ = lookup(r.name)
    except (FhError, OSError):
        return None
    lines = (rec or {}).get("lines") or []
    if (rec or {}).get("segment") not in (None, r.path):
        return None  # that pidfile is for another segment of the same name
    return [l["name"] for l in lines if isinstance(l, dict) and l.get("name")] or None


def cmd_stats(a) -> int:
    from .. import shm
    from ..metrics import line_names
    from ..native import COUNTER_NAMES

    if a.config:  # read first, whatever the writer: a configuration that cannot name the lines is said, not ignored
        _configured_line_names(a, None)
    with _segment(a, ctrl_c_ends=False) as r:
        st = r.writer_status()
        rec = r.stats_copy()
        counters = r.stats()
        names = set(COUNTER_NAMES)
        plain = {k: v for k, v in counters.items() if not k.startswith("type_")}
        types = {k[5:]: v for k, v in counters.items() if k.startswith("type_")}
        status = r.books["status"]
        live, stale = int((status == shm.LIVE).sum()), int((status == shm.STALE).sum())
        writer = {"state": st.state, "pid": st.pid, "alive": st.alive, "heartbeat_ns": st.heartbeat_ns,
                  "heartbeat_utc": shm.utc_text(st.heartbeat_ns), "heartbeat_age_s": round(st.heartbeat_age, 3),
                  "started_utc": shm.utc_text(st.started_ns), "replaced": st.replaced}
        head = r.head
        dp = r.dataplane_stats(rec)
        if not dp.pop("dataplane"):
            dp = None  # an engine-only writer (fh publish): no data plane section
        else:
            for l, n in zip(dp["lines"], line_names(dp["lines"], _configured_line_names(a, r))):
                l["name"] = n
        if a.latency:
            if dp is None:
                raise FhError(f"{r.path}: no rx->publish latency: its writer (pid {st.pid}) is not a data plane "
                              f"(fh publish writes books only); use the segment of fh run or fh replay")
            lat = dp["latency"]
            rows = latency_rows(rec["dp"]["lat_bucket"])
            if a.json:
                print_json({"segment": r.path, "name": r.name, "count": lat["count"],
                            **{q: lat[q] for q in ("p50", "p99", "p99.9", "max")},
                            "buckets": [[lo, hi, c] for lo, hi, c in
                                        ((shm.lat_lower_ns(i), shm.lat_upper_ns(i), int(c))
                                         for i, c in enumerate(rec["dp"]["lat_bucket"])) if c]})
            else:
                print(f"segment   {r.path}  instance {r.name!r}  writer pid {st.pid} {st.state}")
                print_latency(lat, rows)
        elif a.json:
            if dp is not None:
                dp["latency"]["buckets"] = [list(b) for b in dp["latency"]["buckets"]]
            print_json({"segment": r.path, "name": r.name, "layout_version": int(r.header["layout_version"]),
                        "size": r.size, "writer": writer,
                        "events": {"head": head, "capacity": r.event_capacity, "oldest": r.oldest()},
                        "books": {"instruments": live + stale, "live": live, "stale": stale,
                                  "max_levels": r.max_levels, "depth": r.depth},
                        "counters": plain, "types": types, "dataplane": dp})
        else:
            from ..ui import fmt_bytes

            print(f"segment   {r.path}  instance {r.name!r}  layout {int(r.header['layout_version'])}  "
                  f"{fmt_bytes(r.size)}")
            print(f"writer    pid {st.pid} {st.state}; started {writer['started_utc']}; last heartbeat "
                  f"{writer['heartbeat_utc']} ({shm.age_text(st.heartbeat_age)} ago)")
            print(f"events    head {fmt_int(head)}  capacity {fmt_int(r.event_capacity)}  oldest {fmt_int(r.oldest())}")
            print(f"books     {fmt_int(live + stale)} instruments ({fmt_int(live)} live, {fmt_int(stale)} stale)  "
                  f"levels {fmt_int(r.max_levels)}  depth {r.depth}")
            print("types     " + (" ".join(f"{k}={fmt_int(v)}" for k, v in sorted(types.items())) or "none"))
            if dp is None:
                print("dataplane none (engine-only writer)")
            else:
                lat = dp["latency"]
                f = dp["feed"]
                print(f"dataplane packets {fmt_int(dp['packets'])}  bytes {fmt_bytes(dp['bytes'])}")
                print("drops     " + (" ".join(f"{k}={fmt_int(v)}" for k, v in dp["drops"].items() if v) or "none"))
                print("mold      " + " ".join(f"{k}={fmt_int(v)}" for k, v in dp["mold"].items()))
                print(f"feed      {f['state']}  session {f['session'] or '-'}  next sequence {fmt_int(f['next_seq'])}"
                      f"  held {fmt_int(f['held'])}  outstanding {fmt_int(f['outstanding'])}")
                print(f"latency   rx->publish of {fmt_int(lat['count'])} messages: p50 {fmt_ns(lat['p50'])}  "
                      f"p99 {fmt_ns(lat['p99'])}  p99.9 {fmt_ns(lat['p99.9'])}  max {fmt_ns(lat['max'])}  "
                      f"(fh stats --latency: the histogram)")
            print()
            print_table(["counter", "value", ""], [[k, fmt_int(v), "" if k in names else "(unnamed)"]
                                                   for k, v in plain.items()],
                        right=[False, True, False])
            if dp is not None and dp["lines"]:
                print()
                print_table(["line", "kind", "state", "datagrams", "messages", "won", "duplicates", "late", "lost",
                             "silent"],
                            [[l["name"], l["kind"], l["state"], fmt_int(l["datagrams"]), fmt_int(l["messages"]),
                              fmt_int(l["won"]), fmt_int(l["duplicates"]), fmt_int(l["late"]), fmt_int(l["lost"]),
                              "never heard" if l["silent_ms"] is None else fmt_ns(l["silent_ms"] * 1e6)]
                             for l in dp["lines"]],
                            right=[False, False, False, True, True, True, True, True, True, True])
        if st.state == "dead":
            print(f"fh: warning: {r.dead_text(st)}", file=sys.stderr)
            return EXIT_WRITER_DEAD
        return 0


def _register_readers(sub, book_sub) -> None:
    name_help = "instance name (segment fh-NAME in /dev/shm or a hugetlbfs mount) or a segment path"

    bsh = book_sub.add_parser(
        "show", help="one live book from a segment, with depth bars (also: fh book SYMBOL)",
        description="One instrument's book from a running instance's segment: bids and asks level by level, each "
                    "with a bar of its shares.",
        epilog=examples("fh book AAPL --name demo", "fh book show AAPL --name demo --depth 5 --watch",
                        "fh book 13 --name demo --json          # by stock locate; the canonical dump line"))
    bsh.add_argument("symbol", metavar="SYMBOL", help="a symbol (or a stock locate)")
    bsh.add_argument("--name", default="fh", help=name_help)
    bsh.add_argument("--depth", type=_positive, default=None, help="levels per side (default: the segment's)")
    bsh.add_argument("--watch", action="store_true", help="redraw as the book changes, until Ctrl-C")
    bsh.add_argument("--interval", type=seconds(zero=False), default=0.5, metavar="SECONDS",
                     help="poll period with --watch")
    add_json_flag(bsh, "fh book show")
    bsh.add_argument("--strict", action="store_true", help="exit 3 if the writer is dead")
    bsh.set_defaults(func=cmd_book_show)

    t = sub.add_parser("top", help="the most active instruments of a segment, live",
                       description="The busiest books of a running instance by updates a second, refreshed every "
                                   "--interval until Ctrl-C.",
                       epilog=examples("fh top --name demo", "fh top --name demo --count 5 --once",
                                       "fh top --name demo --once --json"))
    t.add_argument("--name", default="fh", help=name_help)
    t.add_argument("--count", type=_positive, default=20, help="rows")
    t.add_argument("--interval", type=seconds(zero=False), default=1.0, metavar="SECONDS", help="between refreshes")
    t.add_argument("--once", action="store_true", help="print one frame (after one interval) and exit")
    add_json_flag(t, "fh top")
    t.set_defaults(func=cmd_top)

    e = sub.add_parser("events", help="the event stream of a segment: BBO changes, trades, states",
                       epilog=examples("fh events --name demo                  # the last 20",
                                       "fh events --name demo --follow --json  # JSON Lines as they come",
                                       "fh events --name demo --from 1 --count 100"))
    e.add_argument("--name", default="fh", help=name_help)
    e.add_argument("--follow", "-f", action="store_true", help="wait for new events (until Ctrl-C or the writer ends)")
    e.add_argument("--count", "-n", type=_positive, default=None,
                   help="print this many (default: the last 20; with --follow, no limit)")
    e.add_argument("--from", dest="start", type=_bounded(1, U64_MAX), default=None, metavar="SEQ",
                   help="start at this sequence (1: the first; an overrun is reported if it is gone; default: the "
                        "last --count, or the next with --follow)")
    add_json_flag(e, "fh events")
    e.set_defaults(func=cmd_events)

    st = sub.add_parser("stats", help="a segment's counters, writer, lines and rx->publish latency",
                        description="A segment's counters, writer status, event head and, for a data plane, its "
                                    "drops, MoldUDP64 counters, lines (named as in the configuration) and "
                                    "rx->publish latency; --latency draws that histogram.",
                        epilog=examples("fh stats --name demo", "fh stats --name demo --latency",
                                        "fh stats --name /dev/shm/fh-demo --config fh.toml --json"))
    st.add_argument("--name", default="fh", help=name_help)
    st.add_argument("--config", metavar="FH_TOML", type=_given("an fh.toml"),
                    help="name the lines as this configuration does (default: as the "
                         "instance's fh run was configured, else A, B, ...)")
    st.add_argument("--latency", action="store_true", help="draw the rx->publish latency histogram (one bar per "
                                                           "bucket) with p50/p99/p99.9/max")
    add_json_flag(st, "fh stats")
    st.set_defaults(func=cmd_stats)


# ---- fh run --------------------------------------------------------------------------------------------


def cmd_run(a) -> int:
    from ..run import run

    return run(a.config, a.keep_segment, a.json)


# ---- fh bench engine ----------------------------------------------------------------------------------


def cmd_bench_engine(a) -> int:
    from ..bench.engine import bench_engine

    return bench_engine(a)


# ---- parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fh", formatter_class=HelpFormatter,
        description="fh: a kernel-bypass MoldUDP64 / NASDAQ TotalView-ITCH 5.0 feed handler. `fh COMMAND --help` "
                    "shows a command's options, their defaults and examples.",
        epilog=examples("fh synth itch day.itch --messages 1000000     # a synthetic day",
                        "fh decode --itch day.itch --type A,E --symbol AAPL --limit 20",
                        "fh publish --itch day.itch --name demo --hold &  fh book AAPL --name demo",
                        "fh run --config examples/fh.toml              # the data plane",
                        "fh status --all                               # every instance on this host"))
    p.add_argument("--version", action=_Version, help="print fh's version, the build's git describe, its DPDK "
                                                      "version and the segment layout version, and exit")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("synth", help="generate deterministic test data",
                       epilog=examples("fh synth itch day.itch --messages 1000000 --instruments 100"))
    ss = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    si = ss.add_parser("itch", help="a synthetic ITCH 5.0 day in the NASDAQ daily file format",
                       description="A deterministic, realistic synthetic trading day (fh/synth.h) in NASDAQ's daily "
                                   "file format: the same arguments give the same bytes. A progress bar shows on a "
                                   "terminal.",
                       epilog=examples("fh synth itch day.itch --messages 1000000 --instruments 100",
                                       "fh synth itch real.itch --messages 20000000 --instruments 8000 --shape real",
                                       "fh synth itch dirty.itch --messages 100000 --anomaly-ppm 500 --seed 7"))
    si.add_argument("out", type=_out_file("day.itch"), help="output file")
    si.add_argument("--messages", type=_bounded(1, U64_MAX), default=1_000_000,
                    help="messages in the day, prelude included")
    si.add_argument("--instruments", type=_positive, default=100, help="instruments (1-65535)")
    si.add_argument("--seed", type=_bounded(0, U64_MAX), default=1, help="random seed: the same seed, the same day")
    si.add_argument("--anomaly-ppm", type=_bounded(0, 1_000_000), default=0,
                    help="inject about this many anomalies per million messages (default 0: a clean day)")
    si.add_argument("--shape", choices=("uniform", "real", "real-late"), default="uniform",
                    help="real: a real day's reference range (to ~184 M, interleaved), orders resting from the open "
                         "to the close, deep books; real-late: the same with a real feed's reference steps, the body "
                         "a window late in the day (fh/synth.h); default uniform")
    si.set_defaults(func=cmd_synth_itch)

    b = sub.add_parser("book", help="order books: fh book SYMBOL (a live one), fh book dump (offline)",
                       description="fh book SYMBOL [...] is short for fh book show SYMBOL [...]",
                       epilog=examples("fh book AAPL --name demo", "fh book dump --itch day.itch --depth 5"))
    bs = b.add_subparsers(dest="what", required=True, metavar="WHAT")
    bd = bs.add_parser("dump", help="build the books of a file offline and print them as JSON lines",
                       description="Every book of a day built offline, one JSON line per instrument with a non-empty "
                                   "book (the canonical dump format, README.md).",
                       epilog=examples("fh book dump --itch day.itch --depth 5",
                                       "fh book dump --pcap pcaps/synth-ab-40k.pcap --engine reference",
                                       "fh book dump --snapshots rec/snapshots --journal rec --stats"))
    src = bd.add_mutually_exclusive_group(required=True)
    src.add_argument("--itch", metavar="FILE", type=_given("a daily ITCH 5.0 file"),
                     help="a daily ITCH 5.0 file (2-byte length framing), gzipped or not")
    src.add_argument("--pcap", metavar="FILE", type=_given("a MoldUDP64 capture"),
                     help="a pcap of MoldUDP64 datagrams, gzipped or not")
    src.add_argument("--journal", metavar="FILE", type=_given("fh record's journal files"),
                     help="journal files of fh record (a file or a directory)")
    bd.add_argument("--snapshots", metavar="DIR", type=_given("fh record's snapshots directory"),
                    help="start from the newest sound snapshot here (fh record "
                         "--snapshot-every), then apply --journal after it")
    bd.add_argument("--depth", type=_positive, default=None, help="levels per side (default: all)")
    bd.add_argument("--engine", choices=("c", "reference"), default="c",
                    help="c: the book engine; reference: the pure-Python oracle (slow)")
    bd.add_argument("--stats", action="store_true", help="print the counters on stderr")
    bd.set_defaults(func=cmd_book_dump)
    _register_readers(sub, bs)

    d = sub.add_parser(
        "decode", help="print ITCH messages, filtered by type, symbol and sequence",
        description="Every ITCH 5.0 message of a daily file, a pcap or fh record's journal, one line each: its "
                    "sequence, time, type, locate, stock and fields (prices in dollars); --json prints JSON Lines "
                    "with every field of the spec (docs/decode-format.md). From a pcap with an A and a B line each "
                    "sequence number is printed once (the first copy), the other copies counted on stderr. A "
                    "progress bar shows on a terminal.",
        epilog=examples("fh decode --itch day.itch --limit 20",
                        "fh decode --itch day.itch --type A,F,E --symbol AAPL,MSFT",
                        "fh decode --pcap pcaps/synth-ab-40k.pcap --seq 1000:1010 --json",
                        "fh decode --pcap pcaps/synth-ab-40k.pcap --seq 1000:1001 --both-lines"))
    dsrc = d.add_mutually_exclusive_group(required=True)
    dsrc.add_argument("--itch", metavar="FILE", type=_given("a daily ITCH 5.0 file"),
                      help="a daily ITCH 5.0 file, gzipped or not (a message's sequence "
                           "is its position in the file, from 1)")
    dsrc.add_argument("--pcap", metavar="FILE", type=_given("a MoldUDP64 capture"),
                      help="a pcap of MoldUDP64 datagrams, gzipped or not")
    dsrc.add_argument("--journal", metavar="FILE", type=_given("fh record's journal files"),
                      help="journal files of fh record (a file or a directory)")
    d.add_argument("--type", type=_types, default=None, metavar="T[,T...]",
                   help="only these message types, e.g. A,F,E (case matters: H trading action, h operational halt; "
                        "default: all)")
    d.add_argument("--symbol", type=_symbols, default=None, metavar="SYM[,SYM...]",
                   help="only messages of these instruments (symbols, learnt from the stock directory messages, or "
                        "stock locates; default: all)")
    d.add_argument("--seq", type=_seq_range, default=None, metavar="FROM:TO",
                   help="only sequence numbers FROM to TO, both included (FROM:, :TO or N also; default: all)")
    d.add_argument("--limit", type=_positive, default=None, metavar="N", help="stop after N messages (default: all)")
    d.add_argument("--both-lines", action="store_true",
                   help="from a pcap, print every copy of a message (each line's), with the line it came on")
    add_json_flag(d, "fh decode")
    d.set_defaults(func=cmd_decode)

    pb = sub.add_parser("publish", help="apply a daily ITCH file into a shared-memory segment for readers",
                        description="Apply a day into the segment of instance NAME, as the data plane does with a "
                                    "live feed, for readers (fh book, top, events, stats, C programs) to follow.",
                        epilog=examples("fh publish --itch day.itch --name demo --hold",
                                        "fh publish --itch day.itch --name demo --pace 0.01 --loop 10"))
    pb.add_argument("--itch", metavar="FILE", required=True, type=_given("a daily ITCH 5.0 file"),
                    help="a daily ITCH 5.0 file, gzipped or not")
    pb.add_argument("--name", default="fh", help="instance name (segment fh-NAME in hugetlbfs or /dev/shm)")
    pb.add_argument("--segment", metavar="PATH",
                    help="segment file (default: fh-NAME in a hugetlbfs mount with room for it, else /dev/shm)")
    pb.add_argument("--depth", type=_bounded(1, 64), default=10, help="top-N levels readers show by default (1-64)")
    pb.add_argument("--events", type=_bounded(64, 1 << 26), default=1 << 16,
                    help="event ring capacity (a power of two, 64-67108864)")
    pb.add_argument("--max-levels", type=_bounded(8, 1 << 30), default=4 << 20,
                    help="price levels the segment holds (8-1073741824)")
    pb.add_argument("--pace", type=seconds(), default=0.0, metavar="SECONDS",
                    help="sleep this long after every chunk (default: full speed, one pass)")
    pb.add_argument("--chunk", type=_bounded(1, U64_MAX), default=64 << 10, metavar="BYTES",
                    help="chunk size with --pace")
    pb.add_argument("--loop", type=_positive, default=1, help="apply the day this many times (reset between)")
    pb.add_argument("--hold", action="store_true", help="keep the segment (and heartbeat) until SIGINT/SIGTERM")
    pb.add_argument("--keep", action="store_true", help="leave the segment file behind on exit")
    pb.add_argument("--ready-file", metavar="PATH", help="write the pid here once the day is applied")
    pb.set_defaults(func=cmd_publish)

    rn = sub.add_parser("run", help="run the data plane from a configuration file (docs/config.md)",
                        description="Run the data plane of one instance from its configuration, supervised (one "
                                    "instance per name: a pidfile), until it stops or fh stop.",
                        epilog=examples("fh run --config examples/fh.toml",
                                        "fh run --config fh.toml --keep-segment --json"))
    rn.add_argument("--config", required=True, metavar="FILE", type=_given("an fh.toml"),
                    help="the instance's fh.toml (docs/config.md)")
    rn.add_argument("--keep-segment", action="store_true", help="leave the segment behind when it stops")
    add_json_flag(rn, "fh run")
    rn.set_defaults(func=cmd_run)

    from .dataplane import register as register_dataplane

    register_dataplane(sub, _positive, _nonneg)
    from .host import register as register_host

    register_host(sub, _positive, _nonneg)
    from .ops import register as register_ops

    register_ops(sub, _positive, _nonneg)
    __import__("handler.history.cli", fromlist=["register"]).register(sub)  # fh history, fh query
    __import__("handler.gateway.cli", fromlist=["register"]).register(sub)  # fh gateway
    __import__("handler.soak", fromlist=["register"]).register(sub, _positive, _nonneg)
    __import__("handler.record", fromlist=["register"]).register(sub, _positive, _nonneg)
    __import__("handler.replicate", fromlist=["register"]).register(sub, _positive, _nonneg)
    __import__("handler.witness", fromlist=["register"]).register(sub)  # fh witness
    __import__("handler.glimpse", fromlist=["register"]).register(sub, _positive, _nonneg)  # fh snapshot-server, fh snapshot-fetch

    from ..bench import add_day_options
    from ..process import sigterm_as_interrupt

    be = sub.add_parser("bench", help="benchmarks", epilog=examples("fh bench engine --messages 2000000"))
    bes = be.add_subparsers(dest="what", required=True, metavar="WHAT")
    beng = bes.add_parser("engine", help="the C book engine on one core, against a parse-only pass and itch-book",
                          description="The C book engine's speed on one pinned core, against a parse-only pass and "
                                      "itch-book in the same run (bench/README.md).",
                          epilog=examples("fh bench engine --messages 2000000 --shape uniform --repeats 3",
                                          "fh bench engine --messages 2000000 --callgrind",
                                          "fh bench engine --itch day.itch --no-itch-book --json"))
    add_day_options(beng, _positive, messages=20_000_000, instruments=8000)
    beng.add_argument("--shape", choices=("uniform", "real", "real-late", "both", "all"), default="all",
                      help="day shape of the generated day (fh synth itch --shape); all: the three one after the "
                           "other, both: uniform and real; default all")
    beng.add_argument("--itch", metavar="FILE", type=_given("a daily ITCH 5.0 file"),
                      help="use this daily file instead of generating a day")
    beng.add_argument("--repeats", type=_positive, default=5, help="runs of each measurement (min and median are reported)")
    beng.add_argument("--cpu", type=_cpu, default=None, help="pin to this CPU (default: the last one)")
    beng.add_argument("--no-itch-book", action="store_true", help="skip the itch-book comparison")
    beng.add_argument("--callgrind", action="store_true",
                      help="also count instructions a message under callgrind: the engine, the engine publishing and "
                           "the parse-only pass, against the targets (needs valgrind; about 5 s a million messages)")
    add_json_flag(beng, "fh bench engine")
    __import__("handler.bench.plot", fromlist=["add_plot_flag"]).add_plot_flag(beng)  # --plot FILE.png
    beng.set_defaults(func=sigterm_as_interrupt(cmd_bench_engine))
    from ..bench.dataplane import register as register_bench_dataplane
    from ..bench.recovery import register as register_bench_recovery

    register_bench_dataplane(bes, _positive, _nonneg)
    register_bench_recovery(bes, _positive, _nonneg)
    from ..bench.restart import register as register_bench_restart  # fh bench restart

    register_bench_restart(bes, _positive, _nonneg)
    __import__("handler.bench.latency", fromlist=["register"]).register(bes, _positive, _nonneg)  # fh bench latency
    _use_fh_help(p)
    return p


BOOK_COMMANDS = ("dump", "show")

# Files that commands registered from outside handler/cli open as given (fh snapshot-server and snapshot-fetch,
# handler/glimpse.py): checked before the command runs, as inputs.require checks --itch and --pcap, since a FIFO
# there would block the read forever and a directory fail late. (commands, dest, option, what it must be)
READ_FILES = [(("snapshot-server", "snapshot-fetch"), "password_file", "--password-file",
               "the file holding the password"),
              (("snapshot-server",), "snapshot", "--snapshot", "a snapshot file of fh record")]


def main(argv: list[str] | None = None) -> int:
    """fh's entry point: FhError and the OS errors fh can explain end as one line `fh: ...` and exit status 2,
    Ctrl-C as 130, anything else (a bug) with its traceback and a request to report it (errors.main_guard)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] == "book" and argv[1] not in (*BOOK_COMMANDS, "-h", "--help"):
        argv.insert(1, "show")  # fh book SYMBOL: a live book

    def run() -> int:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.cmd is None:  # `fh` alone: the command list, as kubectl does (asking for nothing is not an error)
            parser.print_help()
            return 0
        for commands, dest, option, what in READ_FILES:
            if args.cmd in commands and getattr(args, dest, None):
                from .. import inputs

                inputs.regular_file(getattr(args, dest), what, option)
        return args.func(args)

    return main_guard(run)
