"""`fh history` (build a day's Parquet) and `fh query` (DuckDB over it)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .common import QUERIES, HistoryError


def default_root() -> str:
    return os.environ.get("FH_HISTORY", "history")


def cmd_history(a) -> int:
    from .source import ItchFileSource, JournalFollower, PcapSource, SegmentFollower, build_day, date_from_name

    _check_out(a.out)

    losses: list[str] = []  # (the day's file only: fh history --itch / --pcap)
    if a.follow or a.journal:
        import datetime as dt

        from .. import journal as J

        date = a.date or dt.date.today().isoformat()
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        opts = dict(depth=a.depth, snapshot_every_s=a.snapshot_every, flush_every_s=a.flush_every, replace=a.replace,
                    portable=a.portable)
        ring_path = a.journal or J.ring_path(_instance_of(a.follow))
        if a.journal and not _is_ring(a.journal):  # fh record's files: a recorded day
            from ..inputs import journal_files

            files = journal_files(a.journal, "--journal")  # none there, or a FIFO: one line
            if not a.date and files and date_from_name(files[0]):
                date = date_from_name(files[0])
            f = JournalFollower(a.out, date, records=J.journal_records(a.journal),
                                nbytes=sum(p.stat().st_size for p in files), **opts)
            res = f.run()
        elif a.journal or os.path.exists(ring_path):
            f = JournalFollower(a.out, date, ring=J.JournalRing(ring_path), **opts)
            res = f.run(timeout=a.idle_timeout, stop=lambda: bool(stop))
        else:
            from ..shm import segment_path

            if not os.path.exists(segment_path(a.follow)):
                raise HistoryError(f"no journal at {ring_path} and no segment at {segment_path(a.follow)}: is fh "
                                   f"running with instance name {_instance_of(a.follow)}? (fh run, with --journal for "
                                   "every table)")
            print(f"fh history: {a.follow} writes no journal ({ring_path}): following its event ring instead "
                  f"(trades, BBO, books; no order events, event sequence numbers); run it with --journal for all",
                  file=sys.stderr)
            f = SegmentFollower(a.follow, a.out, date, **opts)
            res = f.run(timeout=a.idle_timeout, stop=lambda: bool(stop))
            missed = res.get("counters", {}).get("missed_at_start", 0)
            if missed:
                print(f"fh history: {a.follow}: events 1..{missed} were overwritten in its event ring before fh "
                      f"history started following (counted as missed_at_start): the history begins at event "
                      f"{missed + 1}; run the instance with a journal for the whole day", file=sys.stderr)
    else:
        from .. import inputs

        path = a.itch or a.pcap
        # what the file holds, as every command checks it (a capture, garbage or an empty file given as --itch
        # made junk or empty tables); a gzipped one is inflated
        data = (inputs.require(path, "itch", "--itch", "--pcap") if a.itch
                else inputs.require(path, "pcap", "--pcap", "--itch"))
        date = a.date or date_from_name(path)
        if date is None:
            raise HistoryError(f"{path}: no date in the file name (YYYYMMDD or MMDDYYYY); pass --date YYYY-MM-DD")
        src = ItchFileSource(data) if a.itch else PcapSource(data)
        try:
            res = build_day(src, a.out, date, depth=a.depth, snapshot_every_s=a.snapshot_every, replace=a.replace,
                            portable=a.portable)
        finally:
            src.close()
        losses = _input_losses(path, bool(a.itch), res.get("counters", {}))
    if a.json:
        from ..ui import print_json

        print_json(res)
    else:
        from ..ui import fmt_rate

        rate = f", {fmt_rate(res['messages_per_s'])}" if res.get("messages_per_s") else ""
        print(f"fh history: {res['root']} {res['date']}: "
              + ", ".join(f"{k} {v:,}" for k, v in res["rows"].items()) + f" rows in {res['files']:,} files{rate}",
              file=sys.stderr)
    for line in losses:
        print(f"fh history: {line}", file=sys.stderr)
    return 0


def _input_losses(path: str, itch: bool, c: dict) -> list[str]:
    """What the day's file lost, as fh book dump says it (a cut-off or damaged end, malformed messages): counted in
    --json's counters, but not silent."""
    from ..cli.main import malformed_text
    from ..replay import capture_cut

    out = []
    if itch and c.get("truncated_bytes"):
        out.append(f"{path}: truncated: its last message is cut off ({c['truncated_bytes']:,} bytes after the last "
                   f"whole one); the history holds the messages before it")
    if not itch:
        cut = capture_cut(path, {"truncated_file": c.get("pcap_truncated_file"), "bad_record": c.get("pcap_bad_record"),
                                 "bad_record_at": c.get("pcap_bad_record_at"), "frames": c.get("pcap_frames", 0)},
                          "the history holds the frames before it")
        if cut:
            out.append(cut)
    bad = malformed_text(c)
    if bad:
        out.append(f"{path}: {bad.replace('the books may be wrong', 'its tables may be wrong')}")
    return out


def _instance_of(follow: str) -> str:
    """--follow NAME or a segment's path (/dev/shm/fh-NAME, a hugetlbfs mount's fh-NAME): the instance name, whose
    journal ring is /dev/shm/fh-NAME.journal (a path made /dev/shm/fh-/dev/shm/fh-NAME.journal)."""
    if "/" not in follow:
        return follow
    base = os.path.basename(follow.rstrip("/"))
    return base[3:] if base.startswith("fh-") else base


def _check_out(out: str) -> None:
    """--out: the history tree, a directory (made when missing). A file there, or where a directory on the way to
    it should be, is one line here rather than an error of the writer's thread part-way through the day."""
    p = Path(out)
    for q in (p, *p.parents):
        if q.exists() or q.is_symlink():
            if not q.is_dir():
                where = "" if q == p else f" ({q} on the way to it is a file)"
                raise HistoryError(f"--out {out}: not a directory{where}; give a directory for the history tree (it "
                                   f"is made when missing)")
            return


def _is_ring(path: str) -> bool:
    """A journal ring (fh/journal.h) rather than fh record's files (a directory, or a .fhj file)."""
    from .. import journal as J

    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(8) == J.MAGIC.to_bytes(8, "little")


def cmd_query(a) -> int:
    from . import query

    what = a.what
    from ..cli.argtypes import _bounded
    from ..ui import HelpFormatter, add_json_flag, examples

    I64_MAX = (1 << 63) - 1  # DuckDB's LIMIT is a BIGINT
    ex = {"trades": "fh query trades AAPL --from 09:30 --to 10:00", "quotes": "fh query quotes AAPL --limit 100",
          "bars": "fh query bars AAPL --interval 5m", "vwap": "fh query vwap --format csv",
          "spread": "fh query spread MSFT", "depth": "fh query depth AAPL", "movers": "fh query movers --top 20"}
    p = argparse.ArgumentParser(prog=f"fh query {what}" if what in QUERIES else "fh query SQL",
                                formatter_class=HelpFormatter,
                                epilog=examples(ex.get(what, "fh query \"SELECT symbol, count(*) FROM trades GROUP BY "
                                                             "1 ORDER BY 2 DESC LIMIT 10\"")))
    p.add_argument("--root", default=a.root, help="the history tree ($FH_HISTORY or ./history)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="json" if a.json else a.format,
                   help="how rows are printed (json: JSON Lines, one object a row)")
    add_json_flag(p, "fh history, fh query")
    if what in QUERIES:
        if what in ("trades", "quotes", "bars"):
            p.add_argument("symbol", help="a symbol, e.g. AAPL")
        elif what in ("vwap", "spread", "depth"):
            p.add_argument("symbol", nargs="?", help="a symbol (default: every one)")
        p.add_argument("--date", help="YYYY-MM-DD (default: the one day held)")
        p.add_argument("--from", dest="start", metavar="HH:MM[:SS]", help="exchange time, inclusive")
        p.add_argument("--to", dest="end", metavar="HH:MM[:SS]", help="exchange time, exclusive")
        if what in ("trades", "quotes"):  # (a negative one reached DuckDB: "LIMIT/OFFSET cannot be negative")
            p.add_argument("--limit", type=_bounded(0, I64_MAX), default=1_000_000, help="at most this many rows")
        if what == "bars":
            p.add_argument("--interval", default="1m", help="bar length: 500ms, 30s, 5m, 1h ...")
        if what == "movers":
            p.add_argument("--top", type=_bounded(0, I64_MAX), default=10, help="this many instruments each way")
    b = p.parse_args(a.rest)
    if b.json:
        b.format = "json"
    root = Path(b.root)
    con = query.connect(root)
    if what in QUERIES:
        if b.start and b.end and query.clock_ns(b.start) >= query.clock_ns(b.end):
            raise HistoryError(f"--from {b.start} is not before --to {b.end}: the range is from FROM (inclusive) to "
                               f"TO (exclusive); give a FROM earlier than TO")
        b.date = query.need_day(root, b.date)
        sql, params, view = query.sql_for(what, b, query.seq_ordered(root, b.date))
        query._need_view(con, view, root)
    else:
        sql, params = what, []
        query.need_tables(con, root)
    cols, rows = query.run_sql(con, sql, params)
    query.render(cols, rows, b.format, sys.stdout)
    if what in QUERIES and not rows and getattr(b, "symbol", None) and not query.has_symbol(con, view, b.date,
                                                                                          b.symbol):
        print(f"fh query: {b.symbol} has no rows in {view} of {root} on {b.date} (symbols are as the feed spells "
              f"them, e.g. AAPL; list them with fh query \"SELECT DISTINCT symbol FROM {view}\" --root {root})",
              file=sys.stderr)
    return 0


def register(sub) -> None:
    from ..cli.host import seconds
    from ..cli.argtypes import _bounded, _given
    from ..ui import HelpFormatter, add_json_flag, examples

    h = sub.add_parser("history", help="write a day as Parquet (trades, bbo, orders, book snapshots) for DuckDB, Spark, Trino",
                       formatter_class=HelpFormatter,
                       description="Build the day's history: hive-partitioned Parquet (zstd) under --out; see docs/history.md",
                       epilog=examples("fh history --itch 01302019.NASDAQ_ITCH50.gz --out history",
                                       "fh history --pcap day.pcap --date 2019-01-30",
                                       "fh history --follow nasdaq --out /var/lib/fh/history"))
    src = h.add_mutually_exclusive_group(required=True)
    src.add_argument("--itch", metavar="FILE", type=_given("a daily ITCH 5.0 file"),
                     help="a daily ITCH 5.0 file, gzipped or not")
    src.add_argument("--pcap", metavar="FILE", type=_given("a MoldUDP64 capture"),
                     help="a capture of MoldUDP64 datagrams, gzipped or not (sequenced, "
                          "first copy wins)")
    src.add_argument("--follow", metavar="NAME", type=_given("a running instance's name"),
                     help="a running instance: its journal /dev/shm/fh-NAME.journal (every "
                          "table), or without one its segment's event ring (trades, bbo, books; no orders)")
    src.add_argument("--journal", metavar="PATH", type=_given("a journal ring or fh record's journal files"),
                     help="a journal ring (followed live) or fh record's journal files "
                          "(a directory or a file: a recorded day)")
    h.add_argument("--out", default=default_root(), help="the history tree ($FH_HISTORY when set)")
    h.add_argument("--date", help="the trading date, YYYY-MM-DD (default: from the file name; today with --follow)")
    h.add_argument("--depth", type=_bounded(1, 64), default=10, help="levels per side in book snapshots (1-64)")
    h.add_argument("--snapshot-every", type=seconds(86_400), default=300.0, metavar="SECONDS",
                   help="book snapshots of the changed books every this many seconds of exchange time "
                        "(0: only the end-of-day one)")
    h.add_argument("--flush-every", type=seconds(zero=False), default=10.0, metavar="SECONDS",
                   help="--follow/--journal RING: write files this often")
    h.add_argument("--idle-timeout", type=seconds(86_400, zero=False), default=None, metavar="SECONDS",
                   help="--follow/--journal RING: stop after this long with nothing new (default: until the writer stops)")
    h.add_argument("--replace", action="store_true", help="write a day the history already holds again")
    h.add_argument("--portable", action="store_true",
                   help="no byte-stream-split on integer columns, for Parquet readers older than format 2.11 "
                        "(Spark 3, parquet-java < 1.14); about 7%% bigger")
    add_json_flag(h, "fh history")
    h.set_defaults(func=cmd_history)

    q = sub.add_parser("query", help="SQL over the history through DuckDB, or: " + ", ".join(QUERIES),
                       formatter_class=HelpFormatter,
                       description="fh query \"SELECT ...\" | fh query {%s} ... (each with --help); --root DIR "
                                   "and --format table|csv|json (--json: json) go after the query" % ",".join(QUERIES),
                       epilog=examples("fh query trades AAPL --from 09:30 --to 09:35",
                                       "fh query bars AAPL --interval 5m --format csv",
                                       "fh query \"SELECT count(*) FROM trades\" --root history"))
    q.add_argument("what", metavar="SQL|QUERY", help="an SQL statement over the views trades, bbo, orders, books; or a query name")
    q.add_argument("rest", nargs=argparse.REMAINDER, help="the query's arguments")
    q.add_argument("--root", default=default_root(), help=argparse.SUPPRESS)
    q.add_argument("--format", choices=("table", "csv", "json"), default="table", help=argparse.SUPPRESS)
    add_json_flag(q, "fh history, fh query")  # --format json, as every command with a table has
    q.set_defaults(func=cmd_query)
