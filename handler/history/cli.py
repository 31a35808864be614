"""`fh history` (build a day's Parquet) and `fh query` (DuckDB over it)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .common import HistoryError

QUERIES = ("trades", "quotes", "bars", "vwap", "spread", "depth", "movers")


def default_root() -> str:
    return os.environ.get("FH_HISTORY", "history")


def cmd_history(a) -> int:
    from .source import (ItchFileSource, JournalFollower, PcapSource, SegmentFollower, build_day, check_input_error,
                         date_from_name)

    if a.follow or a.journal:
        import datetime as dt

        from .. import journal as J

        date = a.date or dt.date.today().isoformat()
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        opts = dict(depth=a.depth, snapshot_every_s=a.snapshot_every, flush_every_s=a.flush_every, replace=a.replace,
                    portable=a.portable)
        ring_path = a.journal or f"/dev/shm/fh-{a.follow}.journal"
        if a.journal and not _is_ring(a.journal):  # fh record's files: a recorded day
            files = J.journal_files(a.journal)
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
                raise HistoryError(f"no journal at {ring_path} and no segment at {segment_path(a.follow)}: is fh running "
                                   f"with instance name {a.follow}? (fh run, with --journal for every table)")
            print(f"fh history: {a.follow} writes no journal ({ring_path}): following its event ring instead "
                  f"(trades, BBO, books; no order events, event sequence numbers); run it with --journal for all",
                  file=sys.stderr)
            f = SegmentFollower(a.follow, a.out, date, **opts)
            res = f.run(timeout=a.idle_timeout, stop=lambda: bool(stop))
    else:
        path = a.itch or a.pcap
        check_input_error(path)
        date = a.date or date_from_name(path)
        if date is None:
            raise HistoryError(f"{path}: no date in the file name (YYYYMMDD or MMDDYYYY); pass --date YYYY-MM-DD")
        src = ItchFileSource(path) if a.itch else PcapSource(path)
        try:
            res = build_day(src, a.out, date, depth=a.depth, snapshot_every_s=a.snapshot_every, replace=a.replace,
                            portable=a.portable)
        finally:
            src.close()
    if a.json:
        print(json.dumps(res))
    else:
        rate = f", {res['messages_per_s']} messages/s" if res.get("messages_per_s") else ""
        print(f"fh history: {res['root']} {res['date']}: "
              + ", ".join(f"{k} {v}" for k, v in res["rows"].items()) + f" rows in {res['files']} files{rate}",
              file=sys.stderr)
    return 0


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
    p = argparse.ArgumentParser(prog=f"fh query {what}" if what in QUERIES else "fh query SQL")
    p.add_argument("--root", default=a.root, help="the history tree (default $FH_HISTORY or ./history)")
    p.add_argument("--format", choices=("table", "csv", "json"), default=a.format)
    if what in QUERIES:
        if what in ("trades", "quotes", "bars"):
            p.add_argument("symbol")
        elif what in ("vwap", "spread", "depth"):
            p.add_argument("symbol", nargs="?")
        p.add_argument("--date", help="YYYY-MM-DD (default: the one day held)")
        p.add_argument("--from", dest="start", metavar="HH:MM[:SS]", help="exchange time, inclusive")
        p.add_argument("--to", dest="end", metavar="HH:MM[:SS]", help="exchange time, exclusive")
        if what in ("trades", "quotes"):
            p.add_argument("--limit", type=int, default=1_000_000)
        if what == "bars":
            p.add_argument("--interval", default="1m", help="bar length: 500ms, 30s, 5m, 1h ... (default 1m)")
        if what == "movers":
            p.add_argument("--top", type=int, default=10)
    b = p.parse_args(a.rest)
    root = Path(b.root)
    con = query.connect(root)
    if what in QUERIES:
        b.date = query.need_day(root, b.date)
        sql, params, view = query.sql_for(what, b)
        query._need_view(con, view, root)
    else:
        sql, params = what, []
    cols, rows = query.run_sql(con, sql, params)
    query.render(cols, rows, b.format, sys.stdout)
    return 0


def register(sub) -> None:
    h = sub.add_parser("history", help="write a day as Parquet (trades, bbo, orders, book snapshots) for DuckDB, Spark, Trino",
                       description="Build the day's history: hive-partitioned Parquet (zstd) under --out; see docs/history.md")
    src = h.add_mutually_exclusive_group(required=True)
    src.add_argument("--itch", metavar="FILE", help="a daily ITCH 5.0 file")
    src.add_argument("--pcap", metavar="FILE", help="a capture of MoldUDP64 datagrams (sequenced, first copy wins)")
    src.add_argument("--follow", metavar="NAME", help="a running instance: its journal /dev/shm/fh-NAME.journal (every "
                     "table), or without one its segment's event ring (trades, bbo, books; no orders)")
    src.add_argument("--journal", metavar="PATH", help="a journal ring (followed live) or fh record's journal files "
                     "(a directory or a file: a recorded day)")
    h.add_argument("--out", default=default_root(), help="the history tree (default $FH_HISTORY or ./history)")
    h.add_argument("--date", help="the trading date, YYYY-MM-DD (default: from the file name; today with --follow)")
    h.add_argument("--depth", type=int, default=10, help="levels per side in book snapshots (default 10)")
    h.add_argument("--snapshot-every", type=float, default=300.0, metavar="SECONDS",
                   help="book snapshots of the changed books every this many seconds of exchange time "
                        "(default 300; 0: only the end-of-day one)")
    h.add_argument("--flush-every", type=float, default=10.0, metavar="SECONDS", help="--follow/--journal RING: write files this often")
    h.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="--follow/--journal RING: stop after this long with nothing new (default: until the writer stops)")
    h.add_argument("--replace", action="store_true", help="write a day the history already holds again")
    h.add_argument("--portable", action="store_true",
                   help="no byte-stream-split on integer columns, for Parquet readers older than format 2.11 "
                        "(Spark 3, parquet-java < 1.14); about 7%% bigger")
    h.add_argument("--json", action="store_true", help="print the summary as JSON")
    h.set_defaults(func=cmd_history)

    q = sub.add_parser("query", help="SQL over the history through DuckDB, or: " + ", ".join(QUERIES),
                       description="fh query \"SELECT ...\" | fh query {%s} ... (each with --help)" % ",".join(QUERIES))
    q.add_argument("what", metavar="SQL|QUERY", help="an SQL statement over the views trades, bbo, orders, books; or a query name")
    q.add_argument("rest", nargs=argparse.REMAINDER, help="the query's arguments")
    q.add_argument("--root", default=default_root(), help=argparse.SUPPRESS)
    q.add_argument("--format", choices=("table", "csv", "json"), default="table", help=argparse.SUPPRESS)
    q.set_defaults(func=cmd_query)
