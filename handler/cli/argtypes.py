"""argparse types shared by the command modules of handler/cli (whole numbers in a range, output files): a
module of its own, which imports nothing else of the package, so that every command module can use them without
an import cycle (handler/cli/main.py registers the others)."""

from __future__ import annotations

import argparse
import os
import stat


def _whole(text: str, low: int, high: int | None = None) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected a number >= {low}, got {v}")
    if high is not None and v > high:
        raise argparse.ArgumentTypeError(f"expected a number from {low} to {high}, got {v}")
    return v


U64_MAX = (1 << 64) - 1  # a uint64_t's largest


def _bounded(low: int, high: int):
    """An argparse type: a whole number from low to high (the range the C side takes: a value beyond it
    would not fit its field, or is refused there)."""
    def parse(text: str) -> int:
        return _whole(text, low, high)
    return parse


def _positive(text: str) -> int:
    return _whole(text, 1)


def _nonneg(text: str) -> int:
    return _whole(text, 0)


def _cpu(text: str) -> int:
    """An argparse type: an online CPU (fh bench --cpu -1 was a ValueError from sched_setaffinity, a CPU past the
    host's an OverflowError or an EINVAL: tracebacks). Online, not this process's affinity: an isolated core, the
    one to measure on, lies outside the default affinity, and pinning to it works."""
    from ..config import online_cpus  # (in the function: this module imports nothing of the package at load)
    from ..host.topology import format_cpulist

    v = _whole(text, 0)
    online = online_cpus()
    if v not in online:
        raise argparse.ArgumentTypeError(f"CPU {v} is not an online CPU of this host ({format_cpulist(online)})")
    return v


def _given(what: str):
    """An argparse type: a path or a name that is not empty (--itch "" was taken for no --itch at all, and the
    command fell through to another source with None: a traceback); `what` names what to give."""
    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"an empty value; give {what}")
        return text
    return parse


def _out_file(example: str):
    """An argparse type: an output file to write, a name that is not empty (the C writer opened "." for "") and
    not a directory; `example` (day.itch) shows one."""
    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"an empty file name; give the file to write, e.g. {example}")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text} is a directory; give the file to write in it, e.g. "
                                             f"{os.path.join(text, example)}")
        d = os.path.dirname(os.path.abspath(text))
        try:  # (the C writer said "open X: No such file or directory", or "Permission denied")
            there: bool | None = stat.S_ISDIR(os.stat(d).st_mode)
        except PermissionError:  # a directory on the way that this user may not enter
            there = None
        except OSError:
            there = False
        if there is False:
            raise argparse.ArgumentTypeError(f"cannot write {text}: there is no directory {d}; create it first "
                                             f"(mkdir -p {d}) or give another path")
        if there is None or (not os.access(d, os.W_OK | os.X_OK) if not os.path.exists(text)
                             else not os.access(text, os.W_OK)):
            raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied; write it in a directory "
                                             f"you may write to, or run as root")
        return text
    return parse


def _yyyymmdd(text: str) -> str:
    """An argparse type: a day as YYYYMMDD, a real date (fh record --day, fh snapshot-fetch --day: it names files and
    goes into 32-bit header fields, where "abc", 2026 or 99999999999 were tracebacks or wrong files)."""
    import datetime

    try:
        datetime.datetime.strptime(text, "%Y%m%d")
        ok = len(text) == 8 and text.isdigit()
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected a date as YYYYMMDD, e.g. 20240315, got {text!r}")
    return text

