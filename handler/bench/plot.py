"""`fh bench engine|dataplane|recovery --plot FILE.png`: the figures of a bench run as a chart, for bench/*.md.

matplotlib (the `plot` extra: pip install 'fh[plot]') draws with its Agg backend, so no display is needed. Every
chart is WIDTH x HEIGHT pixels (FIGSIZE at DPI), whatever it shows, so a page that embeds it keeps its layout.
The numbers drawn are the ones the bench prints (the same result dictionary); nothing is measured here.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import FhError

FIGSIZE = (10.0, 5.0)  # inches
DPI = 100
WIDTH, HEIGHT = round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI)
MISSING = "--plot needs matplotlib: pip install 'fh[plot]'"


def add_plot_flag(parser) -> None:
    """The one --plot option of the bench commands (fh bench engine's parser in cli/main.py calls this too)."""
    from ..cli.argtypes import _out_file

    parser.add_argument("--plot", metavar="FILE.png", default=None, type=_out_file("bench.png"),
                        help=f"also draw the figures as a {WIDTH}x{HEIGHT} PNG chart (matplotlib: "
                             "pip install 'fh[plot]')")


def check(path: str | None) -> None:
    """Before a bench runs: refuse a --plot that could not be written (matplotlib missing, a directory that does not
    exist, not a .png), so that minutes of measuring are not lost to it."""
    if not path:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise FhError(MISSING) from None
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise FhError(f"--plot {path}: the chart is a PNG: give a file name ending in .png")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FhError(f"--plot {path}: no directory {parent}: create it first")
    if not os.access(parent, os.W_OK):
        raise FhError(f"--plot {path}: cannot write in {parent}: permission denied")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise FhError(MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, plt) -> None:
    fig.savefig(path, dpi=DPI, format="png")  # no bbox_inches="tight": the size stays WIDTH x HEIGHT
    plt.close(fig)
    print(f"chart: {path} ({WIDTH}x{HEIGHT} PNG)", file=sys.stderr)


def _label_bars(ax, bars, fmt: str) -> None:
    for b in bars:
        h = b.get_height()
        if h > 0:
            ax.annotate(fmt.format(h), (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")


def engine(result: dict, path: str) -> None:
    """fh bench engine: ns a message (median, min as a tick) and messages a second, per pass and per day."""
    plt = _pyplot()
    days = result["days"] if "days" in result else [result]
    passes = [k for k in ("parse_only", "engine", "itch_book") if any(k in d for d in days)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE)
    width = 0.8 / max(1, len(days))
    for j, d in enumerate(days):
        xs = [i + (j - (len(days) - 1) / 2) * width for i in range(len(passes))]
        med = [d[k]["median_ns_per_msg"] if k in d else 0 for k in passes]
        low = [d[k]["min_ns_per_msg"] if k in d else 0 for k in passes]
        label = f"{d['shape']} day ({d['messages']:,} messages)"
        _label_bars(ax1, ax1.bar(xs, med, width, label=label), "{:.1f}")
        ax1.scatter(xs, low, marker="_", color="black", zorder=3)
        rate = [d[k]["msgs_per_s"] / 1e6 if k in d else 0 for k in passes]
        _label_bars(ax2, ax2.bar(xs, rate, width, label=label), "{:.1f}")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(passes)), [p.replace("_", " ") for p in passes])
        ax.legend(fontsize=8)
    ax1.set_ylabel("ns / message (median; tick: min)")
    ax1.set_title("book engine: time a message")
    ax2.set_ylabel("M messages / s (median)")
    ax2.set_title("throughput")
    fig.tight_layout()
    _save(fig, path, plt)


def dataplane(result: dict, path: str) -> None:
    """fh bench dataplane: cycles a packet by part (median run) and rx->publish latency percentiles."""
    plt = _pyplot()
    s = result["summary"]
    mpp = s["messages_per_packet"]
    rx = s["rx_only_cycles_per_packet"]["median"]
    eng = s["engine_cycles_per_msg"]["median"] * mpp
    own = s["own_cycles_per_packet"]["median"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE)
    # the engine as its block loop, so the rest is the upper bound on the data plane's own (with sequencing)
    parts = [("PMD (rx-only)", rx), (f"engine, block loop ({mpp:g} msg/packet)", eng),
             ("own + sequencing, at most", own)]
    bottom = 0.0
    for label, v in parts:
        ax1.bar(["full pass"], [max(0.0, v)], bottom=bottom, label=f"{label}: {v:,.0f}")
        bottom += max(0.0, v)
    ax1.axhline(s["full_cycles_per_packet"]["median"], color="black", linestyle="--", linewidth=1,
                label=f"measured full: {s['full_cycles_per_packet']['median']:,.0f}")
    ax1.set_ylabel("cycles / packet (median run)")
    ax1.set_title(f"where a packet's cycles go (own target <= {s.get('target_cycles', 50)})")
    ax1.legend(fontsize=8)
    keys = ("p50", "p99", "p99.9", "max")
    lat = [s["latency_ns"][k]["median"] / 1e3 for k in keys]
    _label_bars(ax2, ax2.bar(keys, lat, color="tab:orange"), "{:,.1f}")
    ax2.set_yscale("log")
    ax2.set_ylabel("µs (median run, log scale)")
    ax2.set_title("latency rx -> publish")
    fig.suptitle(f"fh bench dataplane: {result['messages']:,} messages, {result['datagrams']:,} datagrams, "
                 f"{result['repeats']} runs, idle {result['idle']}", fontsize=10)
    fig.tight_layout()
    _save(fig, path, plt)


def recovery(result: dict, path: str) -> None:
    """fh bench recovery: each run's time from the gap's first sign to filled, split at the configured wait."""
    plt = _pyplot()
    runs = result["runs"]
    wait_ms = result["gap_wait_us"] / 1e3
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE)
    xs = [str(i + 1) for i in range(len(runs))]
    beyond = [r["beyond_wait_ns"] / 1e6 for r in runs]
    waited = [(r["recovery_ns"] - r["beyond_wait_ns"]) / 1e6 for r in runs]
    ax1.bar(xs, waited, label=f"waiting for the other line ({wait_ms:g} ms)", color="tab:gray")
    _label_bars(ax1, ax1.bar(xs, beyond, bottom=waited, label="request, server, replies, apply"), "{:.2f}")
    ax1.set_xlabel("run")
    ax1.set_ylabel("ms from the gap's first sign to filled")
    ax1.set_title(f"{result['gap']['messages']:,} messages lost on both lines")
    ax1.legend(fontsize=8)
    s = result["summary"]
    bars = [("beyond the wait", s["beyond_wait_ns"]["median"] / 1e6)]
    if "baseline_python_client_ns" in s:
        bars.append(("Python client round trip", s["baseline_python_client_ns"]["median"] / 1e6))
    _label_bars(ax2, ax2.bar([b[0] for b in bars], [b[1] for b in bars], color="tab:green"), "{:.3f}")
    ax2.set_ylabel("ms (median)")
    ax2.set_title("recovery's own cost against a baseline")
    fig.tight_layout()
    _save(fig, path, plt)
