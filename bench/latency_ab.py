#!/usr/bin/env python3
"""Paired rounds of `fh bench latency`: two variants (a data plane binary, extra arguments, or both) run in
interleaved rounds, A then B in odd rounds and B then A in even ones, and compared round by round. What the
latency sections of bench/latency.md report: per rate, the medians of the rounds' lone-datagram p50 / p99 / p99.9,
every message's p99, the lone share, the empty poll's period and the hiccup scan's loop period on the poll core right
before the run (how fast the core was, whatever the variant) for each variant, the median of the per-round ratios
(B / A), in how many rounds B was lower and higher, and a two-sided sign test's p on that split. Run as root, with
the segment's directory ready (a hugetlbfs mount for the figures of bench/latency.md), nothing else running:

    .venv/bin/python bench/latency_ab.py --rounds 10 --out /tmp/ab \\
        --a base --a-bin /tmp/fh-dataplane.before --b new --b-bin build/cp311/native/dataplane/fh-dataplane \\
        -- --realtime --rates 100k,1M --segment-dir /tmp/huge
    .venv/bin/python bench/latency_ab.py --rounds 10 --a warm --b cold --b-args "--warm-us 0" -- --realtime ...
    .venv/bin/python bench/latency_ab.py --summarize /tmp/ab --a base --b new     # the table again

Each round's `fh bench latency --json` is kept as OUT/NAME.ROUND.json (stderr beside it), so a series can be
summarised again or extended. A variant's binary goes to fh as FH_DATAPLANE.

Two builds differ in more than their change: the code's placement moves a lone datagram's latency by 5-15 % on its
own (bench/latency.md, "Code placement"). Compare builds with a control (the same change in two placements, or the
base against itself rebuilt with an unrelated shift) before reading a ratio as the change's; a switch of one binary
(`--warm-us`) needs none.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path


# (label, how a run's row gives it)
METRICS = (
    ("lone p50 ns", lambda r: r["latency_one_frame_ns"]["p50"]),
    ("lone p99 ns", lambda r: r["latency_one_frame_ns"]["p99"]),
    ("lone p99.9 ns", lambda r: r["latency_one_frame_ns"]["p99.9"]),
    ("every p99 ns", lambda r: r["latency_ns"]["p99"]),
    ("lone share", lambda r: r["one_frame_share"]),
    ("empty poll ns", lambda r: (r.get("dataplane") or {}).get("empty_poll_ns")),
    # the hiccup scan's TSC loop on the poll core right before the run: how fast the core was then, whatever the
    # variant (a binary against itself: its rank correlation with the lone p50 0.53 at 100 k, 0.79 at 1 M)
    ("scan loop ns", lambda r: ((r.get("machine") or {}).get("scan") or {}).get("loop_ns")),
)


def load_series(out: Path, name: str) -> dict[int, dict[int, dict]]:
    """{round: {rate: run row}} of OUT/NAME.ROUND.json (a file that is not JSON, as a round that failed, is left
    out)."""
    series: dict[int, dict[int, dict]] = {}
    for f in out.glob(f"{name}.*.json"):
        tail = f.name[len(name) + 1:-len(".json")]
        if not tail.isdigit():
            continue
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        series[int(tail)] = {int(r["rate"]): r for r in doc.get("runs", [])}
    return series


def sign_test(lower: int, higher: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven between lower and higher (ties left out)
    if B were as likely to be lower as higher in each round."""
    n = lower + higher
    if n == 0:
        return 1.0
    k = min(lower, higher)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(a: dict[int, dict[int, dict]], b: dict[int, dict[int, dict]]) -> dict[int, list[dict]]:
    """Per rate, per metric: the rounds both variants have, the medians of each, the median of the per-round
    ratios b / a (rounds where a is 0 left out of it) and the rounds where b was lower and higher."""
    out: dict[int, list[dict]] = {}
    rates = sorted({rate for rows in a.values() for rate in rows} & {rate for rows in b.values() for rate in rows})
    for rate in rates:
        rounds = sorted(i for i in set(a) & set(b) if rate in a[i] and rate in b[i])
        rows = []
        for label, get in METRICS:
            pairs = [(get(a[i][rate]), get(b[i][rate])) for i in rounds]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if not pairs:
                continue
            ratios = [y / x for x, y in pairs if x]
            lower, higher = sum(1 for x, y in pairs if y < x), sum(1 for x, y in pairs if y > x)
            rows.append({
                "metric": label,
                "rounds": len(pairs),
                "a": statistics.median(x for x, _ in pairs),
                "b": statistics.median(y for _, y in pairs),
                "ratio": statistics.median(ratios) if ratios else None,
                "b_lower": lower,
                "b_higher": higher,
                "sign_p": sign_test(lower, higher),
            })
        out[rate] = rows
    return out


def render(table: dict[int, list[dict]], na: str, nb: str) -> str:
    def num(v):
        if v is None:
            return "-"
        if isinstance(v, float) and v < 10:
            return f"{v:.3f}"
        return f"{v:,.1f}" if isinstance(v, float) and v != int(v) else f"{v:,.0f}"

    lines = []
    for rate, rows in table.items():
        n = max((r["rounds"] for r in rows), default=0)
        lines.append(f"{rate:,} msg/s: {n} paired rounds")
        lines.append(f"  {'':14s} {na:>12s} {nb:>12s}  {nb}/{na} (median of ratios)  {nb} lower / higher  sign test p")
        for r in rows:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
            lines.append(f"  {r['metric']:14s} {num(r['a']):>12s} {num(r['b']):>12s}  {ratio:>27s}  "
                         f"{r['b_lower']:>3d} / {r['b_higher']:<3d}  {r['sign_p']:.3f}")
    return "\n".join(lines)


def run_round(fh: str, out: Path, name: str, i: int, binary: str | None, args: list[str], common: list[str]) -> bool:
    env = dict(os.environ)
    if binary:
        env["FH_DATAPLANE"] = binary
    with open(out / f"{name}.{i}.json", "w") as so, open(out / f"{name}.{i}.err", "w") as se:
        p = subprocess.run([fh, "bench", "latency", *common, *args, "--json"], stdout=so, stderr=se, env=env,
                           check=False)
    return p.returncode == 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    common: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, common = argv[:k], argv[k + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="paired rounds (default 10)")
    p.add_argument("--out", type=Path, default=Path("/tmp/fh-latency-ab"), help="where each round's JSON is kept")
    p.add_argument("--a", default="a", help="variant A's name (default a)")
    p.add_argument("--b", default="b", help="variant B's name (default b)")
    p.add_argument("--a-bin", help="variant A's fh-dataplane (default: fh's own)")
    p.add_argument("--b-bin", help="variant B's fh-dataplane (default: fh's own)")
    p.add_argument("--a-args", default="", help="variant A's extra `fh bench latency` arguments")
    p.add_argument("--b-args", default="", help="variant B's extra `fh bench latency` arguments")
    p.add_argument("--first", type=int, default=1, help="the first round's number (to extend a series)")
    p.add_argument("--summarize", type=Path, metavar="DIR", help="only summarise the rounds kept in DIR")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--fh", help="the fh command (default: the one beside this python, the venv's)")
    a = p.parse_args(argv)
    if a.a == a.b or not all(n and "/" not in n and "." not in n for n in (a.a, a.b)):
        p.error("--a and --b must be two different names without '/' or '.'")
    for b in (a.a_bin, a.b_bin):
        if b and not os.access(b, os.X_OK):
            p.error(f"{b} is not an executable file")
    if a.summarize is None:
        if a.rounds < 1:
            p.error("--rounds must be at least 1")
        fh = a.fh or str(Path(sys.executable).with_name("fh"))
        if not os.access(fh, os.X_OK):
            p.error(f"no fh at {fh}; run this with the venv's python (bash scripts/setup.sh) or name it with --fh")
        a.out.mkdir(parents=True, exist_ok=True)
        variants = {"A": (a.a, a.a_bin, shlex.split(a.a_args)), "B": (a.b, a.b_bin, shlex.split(a.b_args))}
        for i in range(a.first, a.first + a.rounds):
            for v in ("AB" if i % 2 else "BA"):
                name, binary, extra = variants[v]
                if not run_round(fh, a.out, name, i, binary, extra, common):
                    print(f"latency_ab: round {i} of {name} failed: {a.out / f'{name}.{i}.err'}", file=sys.stderr)
    out = a.summarize or a.out
    table = compare(load_series(out, a.a), load_series(out, a.b))
    if not table:
        print(f"latency_ab: no paired rounds of {a.a} and {a.b} in {out}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps({"a": a.a, "b": a.b, "rates": {str(k): v for k, v in table.items()}}, indent=1))
    else:
        print(render(table, a.a, a.b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
