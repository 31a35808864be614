"""How fh prints: human units, tables, JSON, bars and progress, in one place.

Every command prints through these so that the same quantity reads the same everywhere: a latency is
"850 ns", "12.4 µs" or "3.10 ms", a count has thousands separators, a rate is "1.25 M msg/s" or "812.3 Mbps".
Tables use `rich` when the stream is a terminal and plain, aligned, greppable text when it is not (a pipe, a
file, a test), so scripts never see colour codes or box characters. `--json` prints one JSON document whose
schema each command documents in docs/cli.md; numbers in it stay raw (ns, messages, bytes), never formatted.
"""
from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence, TextIO

__all__ = ["is_tty", "fmt_int", "fmt_ns", "fmt_seconds", "fmt_rate", "fmt_bps", "fmt_bytes", "bar",
           "print_table", "print_json", "add_json_flag", "progress", "HelpFormatter", "examples"]


def is_tty(stream: TextIO | None = None) -> bool:
    """True when `stream` (stdout by default) is an interactive terminal and NO_COLOR / TERM=dumb do not say
    otherwise: the only case where output is decorated."""
    s = stream if stream is not None else sys.stdout
    try:
        tty = s.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def fmt_int(n: int | float | None) -> str:
    """1234567 -> '1,234,567'; None -> '-'."""
    if n is None:
        return "-"
    return f"{int(n):,}"


def fmt_ns(ns: int | float | None) -> str:
    """A duration given in nanoseconds in the unit a person reads: '850 ns', '12.4 µs', '3.10 ms', '2.35 s'."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "-"
    a = abs(ns)
    if a < 1_000:
        return f"{ns:,.0f} ns"
    if a < 1_000_000:
        return f"{ns / 1e3:,.{1 if a < 100_000 else 0}f} µs"
    if a < 1_000_000_000:
        return f"{ns / 1e6:,.{2 if a < 100_000_000 else 0}f} ms"
    return fmt_seconds(ns / 1e9)


def fmt_seconds(s: float | None) -> str:
    """'43.2 ms', '0.42 s', '12.3 s', '4 min 05 s', '2 h 03 min' (below 0.1 s as fmt_ns)."""
    if s is None:
        return "-"
    if s < 0.1 and s != 0:
        return fmt_ns(s * 1e9)
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


_SI = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def fmt_rate(per_s: float | None, unit: str = "msg") -> str:
    """A rate with an SI prefix: '1.25 M msg/s', '830 k pkt/s', '12 msg/s'."""
    if per_s is None:
        return "-"
    for scale, p in _SI:
        if abs(per_s) >= scale:
            return f"{per_s / scale:.{2 if per_s / scale < 10 else 1}f} {p} {unit}/s"
    return f"{per_s:.0f} {unit}/s"


def fmt_bps(bits_per_s: float | None) -> str:
    """Line rate in bits a second: '812.3 Mbps', '9.87 Gbps'."""
    if bits_per_s is None:
        return "-"
    for scale, p in _SI:
        if abs(bits_per_s) >= scale:
            return f"{bits_per_s / scale:.{2 if bits_per_s / scale < 10 else 1}f} {p}bps"
    return f"{bits_per_s:.0f} bps"


def fmt_bytes(n: int | float | None) -> str:
    """Binary units: '512 B', '1.5 KiB', '240.3 MiB', '1.02 GiB'."""
    if n is None:
        return "-"
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.{2 if v < 10 else 1}f} {unit}"
        v /= 1024
    raise AssertionError("unreachable")


_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(value: float, top: float, width: int = 30, ascii_only: bool | None = None) -> str:
    """A horizontal bar `width` cells long at full scale (`top`), with eighth-cell resolution on a terminal and
    '#' cells otherwise. Never wider than `width`; a non-zero value gets at least a sliver."""
    if ascii_only is None:
        ascii_only = not is_tty()
    if top <= 0 or value <= 0:
        return ""
    frac = min(1.0, value / top)
    if ascii_only:
        return "#" * max(1, round(frac * width))
    eighths = max(1, round(frac * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _plain_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool], out: TextIO,
                 title: str | None) -> None:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    if title:
        out.write(title + "\n")
    for r in cells:
        parts = [(r[i].rjust(widths[i]) if right[i] else r[i].ljust(widths[i])) for i in range(len(columns))]
        out.write("  ".join(parts).rstrip() + "\n")


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
                right: Sequence[bool] | None = None, out: TextIO | None = None, wrap_last: bool = False) -> None:
    """Print rows under column headers. Cells are printed as given (format numbers with fmt_* first). Columns
    whose every cell is a number, or as `right` says, are right-aligned. A terminal gets a rich table; anything
    else a plain one: header line, then one line per row, columns separated by two spaces. wrap_last: on a
    terminal, the last column (prose: a finding, a fix) wraps instead of being cut."""
    out = out if out is not None else sys.stdout
    rows = [list(r) for r in rows]
    if right is None:
        right = [bool(rows) and all(isinstance(r[i], (int, float)) or _numeric(r[i]) for r in rows)
                 for i in range(len(columns))]
    if not is_tty(out):
        _plain_table(columns, rows, right, out, title)
        return
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for i, (c, r) in enumerate(zip(columns, right)):
        t.add_column(str(c), justify="right" if r else "left", no_wrap=not (wrap_last and i == len(columns) - 1))
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    Console(file=out, highlight=False).print(t)


def _numeric(v: Any) -> bool:
    if not isinstance(v, str) or not v:
        return False
    head = v.split(" ", 1)[0].replace(",", "").replace("%", "")
    try:
        float(head)
    except ValueError:
        return False
    return True


def _default(o: Any) -> Any:
    # numpy scalars and arrays, paths, bytes: what commands hand over without converting
    if hasattr(o, "item") and callable(o.item) and getattr(o, "ndim", 1) == 0:
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (bytes, bytearray)):
        return o.decode("ascii", "replace")
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def print_json(obj: Any, out: TextIO | None = None, *, lines: bool = False, flush: bool = False) -> None:
    """One JSON document (indented on a terminal, compact otherwise), or with lines=True one compact document
    per item of `obj` (JSON Lines, for streams such as decode and events). flush: each line is flushed as it
    is written (a stream someone follows while it runs, such as fh soak's loops)."""
    out = out if out is not None else sys.stdout
    if lines:
        for item in obj:
            out.write(json.dumps(item, default=_default, separators=(",", ":")) + "\n")
            if flush:
                out.flush()
        return
    indent = 2 if is_tty(out) else None
    out.write(json.dumps(obj, default=_default, indent=indent) + "\n")


def add_json_flag(parser, schema: str) -> None:
    """The one way a command offers --json: `schema` names the section of docs/cli.md that documents it."""
    parser.add_argument("--json", action="store_true",
                        help=f"print JSON instead of text (schema: docs/cli.md, '{schema}')")


@contextmanager
def progress(total: int | None, what: str, *, out: TextIO | None = None) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal (nothing otherwise). Yields an object whose
    .advance(n) moves it; cheap enough to call per batch, not per message."""
    out = out if out is not None else sys.stderr

    class _Quiet:
        def advance(self, n: int = 1) -> None:
            pass

    if not is_tty(out):
        yield _Quiet()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(file=out), transient=True) as p:
        task = p.add_task(what, total=total)

        class _Bar:
            def advance(self, n: int = 1) -> None:
                p.advance(task, n)

        yield _Bar()


import argparse as _argparse


class HelpFormatter(_argparse.ArgumentDefaultsHelpFormatter):
    """`fh` help: every option's default shown after its help ("(default: 1500)"; none for flags and options
    without a default); descriptions wrapped, the examples epilog (ui.examples) kept line by line."""

    def _fill_text(self, text, width, indent):
        if text.startswith("examples:\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if ("%(default)" in h or "default" in h.lower() or d is None or d is False or d is _argparse.SUPPRESS
                or action.nargs == 0):
            return h  # flags, options without a default, and help that already says its default
        return super()._get_help_string(action)


def examples(*lines: str) -> str:
    """An epilog of examples, one command a line: `add_parser(..., epilog=ui.examples("fh replay day.pcap"))`."""
    return "examples:\n" + "".join(f"  {x}\n" for x in lines)
