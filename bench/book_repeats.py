#!/usr/bin/env python3
"""What BBO conflation per datagram could save, at most (bench/engine.md section 30): in a daily ITCH file, the share of
book-changing messages (A F D X E C U) whose book appears again later in the same window of W of them (a datagram of W
messages, or a block of the engine's walk). Conflating each book's BBO events to one a window drops at most that
share of them (a repeat saves an event only when both messages moved the top).

    .venv/bin/python bench/book_repeats.py DAY [DAY ...] [--windows 4,10,32,47]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from handler.native import iter_blocks  # noqa: E402

BOOK_TYPES = frozenset(b"AFDXECU")


def locates(path: str) -> np.ndarray:
    """Stock locates of the book-changing messages, in order (a cut-off last message is ignored, and so is a
    message too short to hold its locate)."""
    out = [m[1] << 8 | m[2] for _, m in iter_blocks(Path(path).read_bytes()) if len(m) >= 3 and m[0] in BOOK_TYPES]
    return np.array(out, dtype=np.uint32)


def repeat_share(loc: np.ndarray, window: int) -> float:
    """Messages whose book appears again later in their window of `window` (whole windows only), of all in them."""
    m = len(loc) // window * window
    if m == 0:
        return 0.0
    s = np.sort(loc[:m].reshape(-1, window), axis=1)
    return float((s[:, 1:] == s[:, :-1]).sum()) / m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("days", nargs="+")
    p.add_argument("--windows", default="4,10,32,47")
    a = p.parse_args(argv)
    windows = [int(w) for w in a.windows.split(",")]
    print("day\tbook messages\tbooks\t" + "\t".join(f"W={w}" for w in windows))
    for day in a.days:
        loc = locates(day)
        shares = [f"{100 * repeat_share(loc, w):.1f} %" for w in windows]
        print(f"{day}\t{len(loc)}\t{len(set(loc.tolist()))}\t" + "\t".join(shares))
    return 0


if __name__ == "__main__":
    sys.exit(main())
