"""DuckDB over the history tree: raw SQL and the everyday questions.

Views: trades, bbo, orders, books (one per table that has files), each with the hive keys `date` (DATE) and
`hour` (INTEGER) and a `time` column (TIMESTAMP, exchange local time: the date plus ts_ns). Prices are in
ITCH units (1/10000 of a dollar) in the files; the subcommands show dollars.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from .common import QUERIES, TABLES, HistoryError


def days(root: Path) -> list[str]:
    m = root / "_manifest"
    return sorted(p.stem for p in m.glob("*.json")) if m.is_dir() else []


def connect(root: str | Path):
    import duckdb

    root = Path(root)
    if not root.is_dir():
        raise HistoryError(f"{root}: no history here; build one with fh history --itch FILE --out {root}")
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    # a program that keeps the connection reads each file's footer (row-group statistics) once
    con.execute("SET parquet_metadata_cache = true")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")  # the default, relied on by sql_for: said here
    for t in TABLES:
        if not any((root / t).glob("date=*/hour=*/*.parquet")):
            continue
        glob = str(root / t / "*" / "*" / "*.parquet").replace("'", "''")
        con.execute(f"""CREATE VIEW {t} AS SELECT *, make_timestamp(epoch_us(CAST(date AS TIMESTAMP)) + ts_ns // 1000) AS time
                        FROM read_parquet('{glob}', hive_partitioning = true,
                                          hive_types = {{'date': DATE, 'hour': INTEGER}})""")
    return con


def need_tables(con, root: Path) -> None:
    """For SQL: at least one view. In a directory with no Parquet file of any table (empty, or a first day
    whose writer was killed) DuckDB said "Catalog Error: Table with name trades does not exist!"."""
    if not con.execute(f"SELECT count(*) FROM duckdb_views() WHERE view_name IN ({', '.join('?' * len(TABLES))})",
                       list(TABLES)).fetchone()[0]:
        raise HistoryError(f"{root}: no history here (no Parquet file of {', '.join(TABLES)}); build one with "
                           f"fh history --itch FILE --out {root}")


def need_day(root: Path, date: str | None) -> str:
    held = days(root)
    if date is None:
        if len(held) == 1:
            return held[0]
        if not held:
            raise HistoryError(f"{root}: no complete day in the history; build one with fh history --itch FILE --out {root}")
        raise HistoryError(f"{root} holds {len(held)} days ({held[0]} .. {held[-1]}): pass --date")
    try:
        date = dt.date.fromisoformat(date).isoformat()
    except ValueError:
        raise HistoryError(f"date {date!r} is not YYYY-MM-DD") from None
    if date not in held:
        near = f"days held: {', '.join(held[-5:])}" if held else "no day held yet"
        raise HistoryError(f"{root}: no history for {date} ({near}); build it with fh history --itch FILE --date {date}")
    return date


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?$")


def clock_ns(text: str) -> int:
    """HH:MM[:SS[.fff]] (exchange time) -> ns since midnight."""
    m = _CLOCK.match(text)
    if not m or int(m[1]) > 23 or int(m[2]) > 59 or (m[3] and int(m[3]) > 59):
        raise HistoryError(f"time {text!r} is not HH:MM[:SS[.fraction]]; for example 09:30 or 15:59:59.5")
    ns = (int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)) * 10**9
    if m[4]:
        ns += int(m[4][1:].ljust(9, "0"))
    return ns


_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h)$")


def interval_us(text: str) -> int:
    m = _INTERVAL.match(text)
    if not m or int(m[1]) == 0:
        raise HistoryError(f"interval {text!r} is not a count and a unit (ms, s, m, h); for example 1m or 30s")
    return int(m[1]) * {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}[m[2]]


def _range(a) -> tuple[str, list]:
    where, args = ["date = ?"], [a.date]
    if getattr(a, "symbol", None):
        where.append("symbol = ?")
        args.append(a.symbol)
    if getattr(a, "start", None):
        where.append("ts_ns >= ?")
        args.append(clock_ns(a.start))
        h = clock_ns(a.start) // 3_600_000_000_000
        where.append("hour >= ?")  # lets DuckDB skip whole hour partitions
        args.append(h)
    if getattr(a, "end", None):
        where.append("ts_ns < ?")
        args.append(clock_ns(a.end))
        where.append("hour <= ?")
        args.append(clock_ns(a.end) // 3_600_000_000_000)
    return " AND ".join(where), args


def _need_view(con, t: str, root: Path) -> None:
    if not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [t]).fetchone()[0]:
        raise HistoryError(f"{root}: the history has no {t} table yet")


def has_symbol(con, view: str, date: str, symbol: str) -> bool:
    """Whether the view holds any row of the symbol on the date (whatever the time range): a query that found no
    rows says when the symbol itself is not in the history (a typo, lower case)."""
    return con.execute(f"SELECT 1 FROM {view} WHERE date = ? AND symbol = ? LIMIT 1", [date, symbol]).fetchone() \
        is not None


def seq_ordered(root: Path, date: str) -> dict[str, bool]:
    """Per table, whether the writer found one symbol's rows of the day in sequence order when read file after
    file (the manifest's seq_order, HistoryWriter.seq_order); absent (an older tree): every table false."""
    try:
        return json.loads((Path(root) / "_manifest" / f"{date}.json").read_text()).get("seq_order") or {}
    except (OSError, ValueError):
        return {}


def sql_for(what: str, a, ordered: dict[str, bool] | None = None) -> tuple[str, list, str]:
    """(SQL, parameters, the view it needs) for a subcommand. ordered: seq_ordered() of the day; where it
    holds, one symbol's rows are asked for without ORDER BY seq: DuckDB reads the files in path order and keeps
    it (preserve_insertion_order), which is then sequence order, and the sort (most of the time of a
    symbol-hour of rows) is saved."""
    where, args = _range(a)
    ordered = ordered or {}

    def by_seq(table: str) -> str:
        return "" if getattr(a, "symbol", None) and ordered.get(table) else "ORDER BY seq"

    if what == "trades":
        return (f"""SELECT time, symbol, seq, price / 1e4 AS price, shares, aggressor, match FROM trades
                    WHERE {where} {by_seq("trades")} LIMIT {int(a.limit)}""", args, "trades")
    if what == "quotes":
        return (f"""SELECT time, symbol, seq, bid_price / 1e4 AS bid, bid_shares, ask_price / 1e4 AS ask, ask_shares
                    FROM bbo WHERE {where} {by_seq("bbo")} LIMIT {int(a.limit)}""", args, "bbo")
    if what == "bars":
        us = interval_us(a.interval)
        return (f"""SELECT make_timestamp(epoch_us(CAST(date AS TIMESTAMP)) + (ts_ns // 1000) // {us} * {us}) AS bar,
                    symbol, arg_min(price, seq) / 1e4 AS open, max(price) / 1e4 AS high, min(price) / 1e4 AS low,
                    arg_max(price, seq) / 1e4 AS close, sum(shares) AS volume, count(*) AS trades,
                    round(sum(price * shares) / sum(shares) / 1e4, 4) AS vwap
                    FROM trades WHERE {where} GROUP BY ALL ORDER BY symbol, bar""", args, "trades")
    if what == "vwap":
        return (f"""SELECT symbol, round(sum(price * shares) / sum(shares) / 1e4, 4) AS vwap, sum(shares) AS volume,
                    count(*) AS trades FROM trades WHERE {where} GROUP BY symbol ORDER BY symbol""", args, "trades")
    if what == "spread":
        return (f"""SELECT symbol, count(*) AS quotes,
                    round(avg(ask_price - bid_price) / 1e4, 4) AS mean_spread,
                    median(ask_price - bid_price) / 1e4 AS median_spread,
                    min(ask_price - bid_price) / 1e4 AS min_spread, max(ask_price - bid_price) / 1e4 AS max_spread,
                    round(avg(bid_shares), 1) AS mean_bid_shares, round(avg(ask_shares), 1) AS mean_ask_shares
                    FROM bbo WHERE {where} AND bid_price > 0 AND ask_price > 0 GROUP BY symbol ORDER BY symbol""",
                args, "bbo")
    if what == "depth":
        return (f"""SELECT symbol, count(*) AS snapshots, round(avg(len(bid_price)), 2) AS mean_bid_levels,
                    round(avg(len(ask_price)), 2) AS mean_ask_levels,
                    round(avg(list_sum(bid_shares)), 1) AS mean_bid_shares, round(avg(list_sum(ask_shares)), 1) AS mean_ask_shares
                    FROM books WHERE {where} GROUP BY symbol ORDER BY symbol""", args, "books")
    if what == "movers":
        return (f"""SELECT symbol, arg_min(price, seq) / 1e4 AS first, arg_max(price, seq) / 1e4 AS last,
                    round(100.0 * (arg_max(price, seq) - arg_min(price, seq)) / arg_min(price, seq), 3) AS change_pct,
                    sum(shares) AS volume FROM trades WHERE {where} GROUP BY symbol HAVING arg_min(price, seq) > 0
                    ORDER BY abs(change_pct) DESC, symbol LIMIT {int(a.top)}""", args, "trades")
    raise HistoryError(f"unknown query {what!r}")


def run_sql(con, sql: str, params: list | None = None):
    import duckdb

    try:
        cur = con.execute(sql, params or [])
        if cur is None:  # nothing to run: "", blanks, or only comments (DuckDB returns no result at all)
            shown = f" ({sql.strip()[:40]!r} holds none)" if sql.strip() else ""
            raise HistoryError(f"no SQL statement given to fh query{shown}: give one, e.g. fh query \"SELECT "
                               f"count(*) FROM trades\", or a query name ({', '.join(QUERIES)})")
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HistoryError(f"query failed: {first}") from None


def _cell(v):
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, float):
        return round(v, 6)
    return v


def render(cols: list[str], rows: list[tuple], fmt: str, out) -> None:
    if fmt == "json":
        for r in rows:
            out.write(json.dumps({c: _cell(v) for c, v in zip(cols, r)}) + "\n")
        return
    if fmt == "csv":
        import csv

        w = csv.writer(out)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if v is None else _cell(v) for v in r])
        return
    text = [[str(c) for c in cols]] + [["" if v is None else str(_cell(v)) for v in r] for r in rows]
    widths = [max(len(t[i]) for t in text) for i in range(len(cols))]
    for k, t in enumerate(text):
        out.write("  ".join(s.rjust(w) if k and _num(s) else s.ljust(w) for s, w in zip(t, widths)).rstrip() + "\n")
        if k == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
