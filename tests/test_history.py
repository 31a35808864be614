"""fh history / fh query: the Parquet of a day equals the reference model's trades, BBO sequence and final
books; DuckDB answers with results computed independently; a killed writer leaves no half file; bad input
gives one-line errors."""

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ROOT, fh
from handler import native, reference

DATE = "2026-03-02"


def reference_day(data: bytes, seqs=None) -> dict:
    """Trades (seq, symbol, price, shares, match, aggressor), BBO changes (seq, symbol, bid, bid shares, ask,
    ask shares) and final books, from the pure-Python model, message by message."""
    ref = reference.ReferenceBook()
    trades, bbo, last = [], [], {}
    blocks = list(reference.iter_daily_file(data))
    for i, buf in enumerate(blocks):
        seq = seqs[i] if seqs is not None else i + 1
        t = chr(buf[0]) if buf else ""
        loc, side_rest, mref = None, None, None
        if t in "ECXDU" and len(buf) >= 19:
            mref = int.from_bytes(buf[11:19], "big")
            o = ref.orders.get(mref)
            if o is not None:
                loc, side_rest = o.locate, o.side
        elif t in "AFP" and len(buf) >= 3:
            loc = int.from_bytes(buf[1:3], "big")
        book = ref.instruments.get(loc) if loc is not None else None
        if book is not None:
            book.last_trade = None
        msg = ref.apply(buf)
        if msg is None or loc is None:
            continue
        book = ref.instruments.get(loc)
        if book is None:
            continue
        if t in "ECP" and book.last_trade is not None:
            side = msg["buy_sell_indicator"] if t == "P" else side_rest
            aggr = {"B": "S", "S": "B"}.get(side)
            trades.append((seq, book.symbol, book.last_trade[0], book.last_trade[1], msg["match_number"], aggr))
        bids, asks = book.levels(1)
        top = (bids[0][0] if bids else 0, bids[0][1] if bids else 0, asks[0][0] if asks else 0, asks[0][1] if asks else 0)
        if last.get(loc, (0, 0, 0, 0)) != top:
            last[loc] = top
            bbo.append((seq, book.symbol, top[0], top[1], top[2], top[3]))
    return {"trades": trades, "bbo": bbo, "books": ref.books(10)}


def parquet_day(root: Path) -> dict:
    def read(t):
        return pq.read_table(root / t).to_pylist() if (root / t).exists() else []

    trades = sorted((r["seq"], r["symbol"], r["price"], r["shares"], r["match"], r["aggressor"]) for r in read("trades"))
    rows = sorted(read("bbo"), key=lambda r: r["seq"])
    bbo, last = [], {}
    for r in rows:  # the engine may publish a top-level touch that leaves the BBO as it was: keep changes
        top = (r["bid_price"], r["bid_shares"], r["ask_price"], r["ask_shares"])
        if last.get(r["symbol"], (0, 0, 0, 0)) != top:
            last[r["symbol"]] = top
            bbo.append((r["seq"], r["symbol"], *top))
    books = []
    for r in sorted((r for r in read("books") if r["kind"] == "close"), key=lambda r: r["locate"]):
        books.append({"locate": r["locate"], "symbol": r["symbol"],
                      "bids": [list(x) for x in zip(r["bid_price"], r["bid_shares"], r["bid_orders"])],
                      "asks": [list(x) for x in zip(r["ask_price"], r["ask_shares"], r["ask_orders"])]})
    return {"trades": trades, "bbo": bbo, "books": books}


def assert_same(got: dict, want: dict) -> None:
    for k in ("trades", "bbo"):
        assert len(got[k]) == len(want[k]), (k, len(got[k]), len(want[k]))
        for i, (g, w) in enumerate(zip(got[k], want[k])):
            assert g == w, f"{k} row {i}: parquet {g} != reference {w}"
    assert got["books"] == want["books"]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A held-out generated day (a seed no other test uses), with anomalies, and its history."""
    d = tmp_path_factory.mktemp("hist")
    path = d / "day.itch"
    native.synth_file(path, 60_000, 40, seed=9191, anomaly_ppm=2000)
    root = d / "h"
    res = json.loads(fh("history", "--itch", path, "--date", DATE, "--out", root, "--snapshot-every", "600",
                        "--json").stdout)
    return path, root, res


def test_parquet_equals_reference(day):
    path, root, res = day
    want = reference_day(path.read_bytes())
    got = parquet_day(root)
    assert len(want["trades"]) > 500 and len(want["bbo"]) > 5000 and want["books"]
    assert_same(got, want)
    assert res["rows"]["orders"] > 50_000
    assert (root / "_manifest" / f"{DATE}.json").exists()


def test_layout_partitions_and_sort(day):
    _, root, _ = day
    files = sorted(root.glob("*/date=*/hour=*/*.parquet"))
    assert {f.parts[-4] for f in files} == {"trades", "bbo", "orders", "books"}
    for f in files:
        assert f.parent.name == f"hour={int(f.parent.name[5:]):02d}" and f.parent.parent.name == f"date={DATE}"
        t = pq.read_table(f, columns=["symbol", "seq", "ts_ns"])
        hour = int(f.parent.name[5:])
        assert all(hour * 3600 * 10**9 <= v < (hour + 1) * 3600 * 10**9 for v in t["ts_ns"].to_pylist())
        keys = list(zip(t["symbol"].to_pylist(), t["seq"].to_pylist()))
        assert keys == sorted(keys), f"{f}: not sorted by (symbol, seq)"
        md = pq.ParquetFile(f).metadata
        assert md.row_group(0).column(0).compression == "ZSTD"
        assert md.row_group(0).column(0).statistics.has_min_max
        # never-null columns are `required` (no definition levels); the fields a row may lack stay optional
        sch = pq.ParquetFile(f).schema_arrow
        assert not any(sch.field(k).nullable for k in ("symbol", "ts_ns", "seq", "locate")), f
        if f.parts[-4] == "orders":
            assert not sch.field("ref").nullable and all(sch.field(k).nullable for k in ("price", "side", "new_ref", "mpid"))
    assert not list(root.rglob("*.tmp"))


def test_orders_columns_match_the_messages(day):
    """Every order message is a row with its own fields; fields a type does not carry are null."""
    path, root, _ = day
    rows = {r["seq"]: r for r in pq.read_table(root / "orders").to_pylist()}
    n = 0
    for seq, buf in enumerate(reference.iter_daily_file(path.read_bytes()), 1):
        if not buf or chr(buf[0]) not in "AFECXDU" or reference.check_message(buf) in ("unknown_type", "short_message"):
            assert seq not in rows
            continue
        m = reference.decode_message(buf)
        r = rows[seq]
        n += 1
        assert r["type"] == m["type"] and r["ts_ns"] == m["timestamp"]
        assert r["ref"] == m.get("order_reference_number", m.get("original_order_reference_number"))
        if m["type"] in "AF":
            assert (r["side"], r["shares"], r["price"], r["new_ref"], r["match"]) == (
                {"B": "B", "S": "S"}.get(m["buy_sell_indicator"]), m["shares"], m["price"], None, None)
        elif m["type"] == "U":
            assert (r["new_ref"], r["shares"], r["price"]) == (m["new_order_reference_number"], m["shares"], m["price"])
        elif m["type"] in "EC":
            assert (r["shares"], r["match"]) == (m["executed_shares"], m["match_number"])
        elif m["type"] == "X":
            assert r["shares"] == m["cancelled_shares"] and r["price"] is None
        else:
            assert r["shares"] is None and r["price"] is None
    assert n == len(rows)


def test_real_day_and_pcap_equal_reference(real, tmp_path):
    f = real / "itch" / "20191230_0930_1000msgs.NASDAQ_ITCH50"
    out = tmp_path / "real"
    r = fh("history", "--itch", f, "--out", out, "--json")
    res = json.loads(r.stdout)
    assert res["date"] == "2019-12-30"  # from the file name
    assert_same(parquet_day(out), reference_day(f.read_bytes()))

    pcap = ROOT / "pcaps" / "synth-ab-40k.pcap"
    out2 = tmp_path / "pcap"
    res = json.loads(fh("history", "--pcap", pcap, "--date", DATE, "--out", out2, "--json").stdout)
    from handler.history.source import PcapSource

    src = PcapSource(pcap)
    assert src.counters["duplicate_messages"] > 0  # the B line's copies
    want = reference_day(src.data, src.seq.tolist())
    assert_same(parquet_day(out2), want)
    assert res["rows"]["trades"] == len(want["trades"])
    recv = pq.read_table(out2 / "trades", columns=["recv_ns"])["recv_ns"].to_pylist()
    assert recv and all(v and v > 1_000_000_000 * 10**9 for v in recv)  # capture times, ns since the epoch


def _q(root, *args):
    return [json.loads(line) for line in fh("query", *args, "--root", root, "--format", "json").stdout.splitlines()]


def test_duckdb_queries_known_results(day):
    path, root, _ = day
    want = reference_day(path.read_bytes())
    ts = {}
    for seq, buf in enumerate(reference.iter_daily_file(path.read_bytes()), 1):
        if len(buf) >= 11:
            ts[seq] = int.from_bytes(buf[5:11], "big")
    by_sym = defaultdict(list)
    for seq, sym, price, shares, match, aggr in want["trades"]:
        by_sym[sym].append((seq, price, shares))
    # VWAP and volume per symbol
    got = {r["symbol"]: r for r in _q(root, "vwap")}
    assert set(got) == set(by_sym)
    for sym, tr in by_sym.items():
        vol = sum(s for _, _, s in tr)
        assert got[sym]["volume"] == vol and got[sym]["trades"] == len(tr)
        assert got[sym]["vwap"] == pytest.approx(round(sum(p * s for _, p, s in tr) / vol / 1e4, 4), abs=1e-4)
    # OHLCV bars of the busiest symbol, 15-minute bars
    sym = max(by_sym, key=lambda s: len(by_sym[s]))
    bars = defaultdict(list)
    for seq, p, s in by_sym[sym]:
        bars[ts[seq] // (15 * 60 * 10**9)].append((p, s))
    rows = _q(root, "bars", sym, "--interval", "15m")
    assert len(rows) == len(bars)
    for r, (k, tr) in zip(rows, sorted(bars.items())):
        h, m = divmod(k * 15, 60)
        assert r["bar"] == f"{DATE}T{h:02d}:{m:02d}:00"
        assert (r["open"], r["high"], r["low"], r["close"]) == (tr[0][0] / 1e4, max(p for p, _ in tr) / 1e4,
                                                                min(p for p, _ in tr) / 1e4, tr[-1][0] / 1e4)
        assert r["volume"] == sum(s for _, s in tr) and r["trades"] == len(tr)
    # trades of a symbol in a time range
    lo, hi = ts[by_sym[sym][len(by_sym[sym]) // 3][0]], ts[by_sym[sym][2 * len(by_sym[sym]) // 3][0]]
    fmt = lambda ns: f"{ns // 3600_000_000_000:02d}:{ns // 60_000_000_000 % 60:02d}:{ns // 10**9 % 60:02d}.{ns % 10**9:09d}"
    rows = _q(root, "trades", sym, "--from", fmt(lo), "--to", fmt(hi))
    assert [r["seq"] for r in rows] == [seq for seq, _, _ in by_sym[sym] if lo <= ts[seq] < hi]
    # top movers
    moves = sorted(((round(100.0 * (tr[-1][1] - tr[0][1]) / tr[0][1], 3), s) for s, tr in by_sym.items() if tr[0][1]),
                   key=lambda x: (-abs(x[0]), x[1]))
    rows = _q(root, "movers", "--top", "5")
    assert [(r["change_pct"], r["symbol"]) for r in rows] == moves[:5]
    # quotes and spread: the BBO sequence of the symbol, and its spread statistics
    quotes = _q(root, "quotes", sym)
    assert len(quotes) >= len([b for b in want["bbo"] if b[1] == sym])
    two = [b for b in want["bbo"] if b[1] == sym and b[2] and b[4]]
    sp = _q(root, "spread", sym)[0]
    assert sp["min_spread"] == min(b[4] - b[2] for b in two) / 1e4
    # SQL straight through
    n = _q(root, "SELECT count(*) AS n FROM orders WHERE type = 'A' AND side = 'B'")[0]["n"]
    assert n == sum(1 for buf in reference.iter_daily_file(path.read_bytes())
                    if buf[:1] == b"A" and len(buf) == 36 and buf[19:20] == b"B")


def test_killed_writer_leaves_no_half_file(tmp_path):
    path = tmp_path / "big.itch"
    native.synth_file(path, 3_000_000, 500, seed=4242)
    root = tmp_path / "h"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen([sys.executable, "-m", "handler", "history", "--itch", str(path), "--date", DATE,
                          "--out", str(root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(root.rglob(".*.tmp")) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    assert p.returncode == -signal.SIGKILL, "the writer finished before it could be killed mid-file"
    for f in root.rglob("*.parquet"):
        md = pq.read_metadata(f)  # raises on a truncated file
        assert pq.read_table(f).num_rows == md.num_rows
    assert not (root / "_manifest" / f"{DATE}.json").exists()  # the day is not complete
    r = fh("query", "vwap", "--root", root, check=False)
    assert r.returncode == 2 and "no complete day" in r.stderr
    # a second run replaces it and sweeps the temporaries
    fh("history", "--itch", path, "--date", DATE, "--out", root, "--replace", "--snapshot-every", "0")
    assert not list(root.rglob("*.tmp"))
    assert (root / "_manifest" / f"{DATE}.json").exists()


def _one_line_error(r, *words):
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_one_line(day, tmp_path):
    _, root, _ = day
    _one_line_error(fh("query", "vwap", "--date", "2026-03-03", "--root", root, check=False),
                    "no history for 2026-03-03", "fh history")
    _one_line_error(fh("query", "SELEKT * FROM trades", "--root", root, check=False), "query failed", "syntax error")
    _one_line_error(fh("query", "SELECT * FROM nosuch", "--root", root, check=False), "nosuch")
    _one_line_error(fh("query", "bars", "AAPL", "--interval", "5q", "--root", root, check=False), "interval")
    _one_line_error(fh("query", "trades", "AAPL", "--from", "25:00", "--root", root, check=False), "HH:MM")
    _one_line_error(fh("query", "vwap", "--root", tmp_path / "none", check=False), "no history here")
    _one_line_error(fh("history", "--itch", tmp_path / "missing.itch", "--out", tmp_path / "x", check=False),
                    "no such file")
    f = tmp_path / "nodate.itch"
    native.synth_file(f, 5000, 5, seed=1)
    _one_line_error(fh("history", "--itch", f, "--out", tmp_path / "x", check=False), "--date")
    _one_line_error(fh("history", "--itch", f, "--out", root, "--date", DATE, check=False), "already holds", "--replace")


@pytest.mark.parametrize("sql", ["", "   ", "-- c"])
def test_no_sql_statement_is_one_line(day, sql):
    """fh query '' (or blanks, or only a comment) was an AttributeError on DuckDB's None result (a traceback)."""
    _, root, _ = day
    _one_line_error(fh("query", sql, "--root", root, check=False), "no SQL statement given to fh query",
                    'fh query "SELECT count(*) FROM trades"')


def test_query_arguments_are_checked_before_duckdb(day, tmp_path):
    """--limit -1 and --top -3 reached DuckDB ("LIMIT/OFFSET cannot be negative"); --from after --to gave an empty
    table; an empty history directory was DuckDB's "Table with name trades does not exist!"; a symbol the history
    does not hold an empty table without a word."""
    _, root, _ = day
    for args, option in ((["trades", "AAPL", "--limit", "-1"], "--limit"), (["quotes", "AAPL", "--limit", "x"], "--limit"),
                         (["movers", "--top", "-3"], "--top")):
        r = fh("query", *args, "--root", root, check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "Binder Error" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].endswith(f"error: argument {option}: expected a number >= 0, got "
                                                          f"{args[-1]}" if args[-1] != "x" else
                                                          "error: argument --limit: expected a whole number, got 'x'")
    _one_line_error(fh("query", "trades", "AAPL", "--from", "10:00", "--to", "09:00", "--root", root, check=False),
                    "--from 10:00 is not before --to 09:00", "give a FROM earlier than TO")
    empty = tmp_path / "e"
    empty.mkdir()
    _one_line_error(fh("query", "SELECT 1 FROM trades", "--root", empty, check=False), f"{empty}: no history here",
                    f"fh history --itch FILE --out {empty}")
    _one_line_error(fh("query", "vwap", "--root", empty, check=False), f"{empty}: no complete day",
                    f"fh history --itch FILE --out {empty}")
    r = fh("query", "trades", "NOSUCH", "--root", root, "--date", DATE, "--format", "json")
    assert r.stdout == "" and r.stderr.strip().splitlines() == [
        f"fh query: NOSUCH has no rows in trades of {root} on {DATE} (symbols are as the feed spells them, e.g. AAPL; "
        f"list them with fh query \"SELECT DISTINCT symbol FROM trades\" --root {root})"]
    sym = _q(root, "SELECT symbol FROM trades LIMIT 1")[0]["symbol"]
    r = fh("query", "trades", sym, "--from", "00:00", "--to", "00:01", "--root", root, "--format", "json")
    assert r.stdout == "" and r.stderr == ""  # held, just not in that range: nothing to say
    assert len(_q(root, "movers", "--top", "0")) == 0 and len(_q(root, "trades", sym, "--limit", "2")) == 2


def test_history_checks_what_its_input_holds(tmp_path):
    """fh history --itch took any file: a pcap, a pcapng, garbage or an empty file gave exit 0 and junk or empty
    Parquet (and a gzipped day was read as its compressed bytes). Now the content check every command makes."""
    empty, junk, ng = tmp_path / "empty", tmp_path / "junk", tmp_path / "x.pcapng"
    empty.write_bytes(b"")
    junk.write_bytes(b"garbage garbage garbage\n")
    ng.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(60))
    out = tmp_path / "h"
    for f, why in [(ROOT / "pcaps" / "synth-ab-40k.pcap", "a pcap capture, not an ITCH 5.0 daily file: give it as "
                                                         "--pcap instead"),
                   (ng, "a pcapng capture"), (junk, "neither an ITCH 5.0 daily file nor a capture"),
                   (empty, "empty, not an ITCH 5.0 daily file: give a file with data in it")]:
        _one_line_error(fh("history", "--itch", f, "--date", DATE, "--out", out, check=False), f"--itch {f}: ", why)
    _one_line_error(fh("history", "--pcap", ROOT / "pcaps" / "synth-100k.itch", "--date", DATE, "--out", out,
                       check=False), "an ITCH 5.0 daily file, not a pcap capture: give it as --itch instead")
    assert not out.exists()
    empty_dir = tmp_path / "rec"
    empty_dir.mkdir()
    _one_line_error(fh("history", "--journal", empty_dir, "--out", out, check=False), "no journal files (*.fhj)")


def test_history_of_a_gzipped_day_is_the_day_s(day, tmp_path):
    import gzip

    path, _, res = day
    gz = tmp_path / "day.itch.gz"
    gz.write_bytes(gzip.compress(path.read_bytes(), 1))
    got = json.loads(fh("history", "--itch", gz, "--date", DATE, "--out", tmp_path / "h", "--snapshot-every", "600",
                        "--json").stdout)
    assert got["rows"] == res["rows"] and got["messages"] == res["messages"]


def test_history_out_that_is_a_file_is_one_line(tmp_path):
    """--out naming a file was the writer's NotADirectoryError, hidden by a BufferError from closing the mapped
    day (exit 70)."""
    f = tmp_path / "file"
    f.write_text("x")
    for out, why in [(f, f"--out {f}: not a directory; give a directory for the history tree"),
                     (f / "a" / "b", f"--out {f / 'a' / 'b'}: not a directory ({f} on the way to it is a file)")]:
        _one_line_error(fh("history", "--itch", ROOT / "pcaps" / "synth-100k.itch", "--date", DATE, "--out", out,
                           check=False), why)
    assert f.read_text() == "x"


def test_a_mapped_day_closes_while_a_view_of_it_lives(tmp_path):
    """A build that failed keeps a view of the mapped day in its traceback: close() must not raise BufferError
    over the error that ended it."""
    from handler.history.source import ItchFileSource

    src = ItchFileSource(ROOT / "pcaps" / "synth-100k.itch")
    view = memoryview(src.data)
    src.close()
    assert view[0] == 0
    view.release()


def test_follow_a_segment_equals_offline(tmp_path):
    """fh history --follow: the trades and BBO changes of a published day, from the segment's event ring,
    equal those of the offline build of the same day (the ring carries no order events and no message
    sequence: seq there is the event's)."""
    from conftest import publisher

    day = tmp_path / "day.itch"
    native.synth_file(day, 20_000, 20, seed=8080)
    off = tmp_path / "offline"
    fh("history", "--itch", day, "--date", DATE, "--out", off)
    live = tmp_path / "live"
    with publisher(day, "--events", str(1 << 20)) as (name, _):
        res = json.loads(fh("history", "--follow", name, "--date", DATE, "--out", live, "--idle-timeout", "1",
                            "--snapshot-every", "0.2", "--json", timeout=120).stdout)
    assert res["counters"]["overrun_events"] == 0
    key_t = lambda r: (r["symbol"], r["ts_ns"], r["price"], r["shares"], r["match"])
    key_b = lambda r: (r["symbol"], r["ts_ns"], r["bid_price"], r["bid_shares"], r["ask_price"], r["ask_shares"])
    for t, key in (("trades", key_t), ("bbo", key_b)):
        a = [key(r) for r in pq.read_table(off / t).to_pylist()]
        b = [key(r) for r in pq.read_table(live / t).to_pylist()]
        assert len(a) > 100 and sorted(a) == sorted(b), t
    books = pq.read_table(live / "books").to_pylist()
    assert books and all(r["bid_price"] or r["ask_price"] for r in books)
    assert not (live / "orders").exists()


@pytest.mark.parametrize("cap", [1, 7, 1 << 20])
def test_blocks_index_agrees_with_the_block_walker(cap):
    """fh_blocks_index (C) against handler.native.iter_blocks (Python) on a day with anomalies, a truncated
    tail and caps that cut the run anywhere."""
    import numpy as np

    from handler._native import ffi, lib

    data = native.synth_bytes(20_000, 10, seed=31, anomaly_ppm=5000) + b"\x00\x30\x41\x00"  # a block cut short
    want = [off + 2 for off, _ in native.iter_blocks(data)]
    got, pos = [], 0
    offs = np.zeros(cap, np.uint32)
    used = ffi.new("size_t *")
    while True:
        n = lib.fh_blocks_index(ffi.from_buffer(data[pos:]), len(data) - pos, ffi.from_buffer("uint32_t[]", offs), cap, used)
        if n == 0:
            break
        got += (offs[:n].astype(np.int64) + pos).tolist()
        assert used[0] == int(offs[n - 1]) + ((data[pos + offs[n - 1] - 2] << 8) | data[pos + offs[n - 1] - 1])
        pos += used[0]
    assert got == want and len(want) == 20_000
    assert pos == len(data) - 4  # the truncated block is not indexed


def _table_rows(root: Path, t: str) -> list[tuple]:
    tb = pq.read_table(root / t)
    tb = tb.drop_columns([c for c in ("recv_ns", "date", "hour") if c in tb.column_names])
    return sorted(tuple(str(v) for v in r.values()) for r in tb.to_pylist())


def test_journal_ring_and_files_equal_offline(day, tmp_path):
    """fh history --journal: the applied-message journal (a ring fh-bench-journal wrote through the real tee,
    then fh record's files of it) gives every table, orders and book snapshots included, equal row for row to
    the offline build of the same day (sequence numbers: the MoldUDP64 ones, from 1 as the day's positions)."""
    import uuid

    path, root, _ = day
    found = sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-journal"), key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.fail("no fh-bench-journal under build/cp3*/native/bench: build with `ninja -C build/cp311`")
    ring = f"/dev/shm/fh-test-hist-{uuid.uuid4().hex[:8]}.journal"
    subprocess.run([str(found[-1]), str(path), "on", "--journal", ring, "--mb", "64"], check=True, capture_output=True)
    try:
        live = tmp_path / "live"
        res = json.loads(fh("history", "--journal", ring, "--date", DATE, "--out", live, "--snapshot-every", "600",
                            "--json", timeout=300).stdout)
        rec = tmp_path / "rec"
        fh("record", "--journal", ring, "--dir", rec, "--day", "20260302")
    finally:
        Path(ring).unlink()
        Path(ring + ".record").unlink(missing_ok=True)
    assert res["source"] == "journal" and res["messages"] == 60_000
    assert res["counters"]["lost_messages"] == res["counters"]["gap_messages"] == res["counters"]["overruns"] == 0
    files = tmp_path / "files"
    res2 = json.loads(fh("history", "--journal", rec, "--out", files, "--snapshot-every", "600", "--json").stdout)
    assert res2["date"] == DATE  # from the journal files' names
    for t in ("trades", "bbo", "orders", "books"):
        want = _table_rows(root, t)
        assert len(want) > 100
        assert _table_rows(live, t) == want, t
        assert _table_rows(files, t) == want, t
    assert pq.read_table(live / "orders", columns=["recv_ns"])["recv_ns"].null_count == 0  # when it was read


def test_seq_order_lets_symbol_queries_skip_the_sort(day, tmp_path):
    """The manifest says, per table, whether one symbol's rows come in sequence order file after file; fh query
    then asks for a symbol's trades and quotes without ORDER BY seq (and DuckDB's answer is in seq order, as
    test_duckdb_queries_known_results checks). A day whose sequence starts again (a new session) keeps the sort."""
    import numpy as np

    from handler.history import query
    from handler.history.writer import HOUR_NS, HistoryWriter

    _, root, _ = day
    ordered = query.seq_ordered(root, DATE)
    assert ordered["trades"] and ordered["bbo"] and ordered["orders"]
    a = type("A", (), {"date": DATE, "symbol": "AAPL", "limit": 10})()
    assert "ORDER BY" not in query.sql_for("trades", a, ordered)[0]
    assert "ORDER BY seq" in query.sql_for("trades", a, {})[0]
    a.symbol = None
    assert "ORDER BY seq" in query.sql_for("trades", a, ordered)[0]

    syms = np.zeros(65536, "S8")
    syms[1], syms[2] = b"AAA     ", b"BBB     "

    def trades(seq, hour):
        n = len(seq)
        return {"seq": np.array(seq, np.uint64), "ts": np.full(n, hour * HOUR_NS + 5, np.uint64),
                "locate": np.array([1, 2] * (n // 2), np.uint16), "price": np.arange(n, dtype=np.int64),
                "shares": np.ones(n, np.int64), "match": np.arange(n, dtype=np.int64),
                "aggressor": np.full(n, b"B", "S1"), "type": np.full(n, b"E", "S1")}

    from handler.history.columns import Chunk

    for name, hours in (("one", [(10, [1, 2, 3, 4]), (11, [5, 6, 7, 8])]),
                        ("new-session", [(10, [1, 2, 3, 4]), (11, [1, 2, 3, 4])]),  # seq from 1 again
                        ("unordered", [(10, [3, 4, 1, 2])])):
        w = HistoryWriter(tmp_path / name, DATE, syms)
        for hour, seq in hours:
            ch = Chunk(0, np.array(seq, np.uint64), np.full(len(seq), hour * HOUR_NS, np.uint64), None)
            ch.tables["trades"] = trades(seq, hour)
            w.add(ch)
        w.close()
        got = query.seq_ordered(tmp_path / name, DATE)["trades"]
        assert got == (name == "one"), name


def test_big_partitions_split_into_symbol_range_files(day, tmp_path, monkeypatch):
    """A partition of more than FILE_ROWS rows is written as several files of consecutive symbol ranges, encoded
    at once on several threads: the day still equals the reference, each file is sorted by (symbol, seq), a
    symbol's rows of an hour are in one file, and one symbol's rows still come in sequence order without a sort."""
    from handler.history import query, writer
    from handler.history.source import ItchFileSource, build_day

    path, _, _ = day
    monkeypatch.setattr(writer, "ROW_GROUP_ROWS", 300)
    monkeypatch.setattr(writer, "FILE_ROWS", 1000)
    root = tmp_path / "h"
    src = ItchFileSource(path)
    try:
        res = build_day(src, root, DATE, snapshot_every_s=600)
    finally:
        src.close()
    assert_same(parquet_day(root), reference_day(path.read_bytes()))
    split = 0
    for hour in sorted(root.glob("orders/date=*/hour=*")):
        files = sorted(hour.glob("*.parquet"))
        assert sum(pq.read_metadata(f).num_rows for f in files) > 0
        if len(files) > 1:
            split += 1
            assert [f.name.rsplit(".", 2)[1] for f in files] == [f"{i:02d}" for i in range(len(files))]
        last = None
        for f in files:
            t = pq.read_table(f, columns=["symbol", "seq"])
            keys = list(zip(t["symbol"].to_pylist(), t["seq"].to_pylist()))
            assert keys == sorted(keys), f"{f}: not sorted by (symbol, seq)"
            assert last is None or keys[0][0] > last, f"{f}: symbols overlap the file before"
            last = keys[-1][0]
    assert split >= 3
    assert res["files"] == len(list(root.rglob("*.parquet")))
    ordered = query.seq_ordered(root, DATE)
    assert ordered["orders"] and ordered["bbo"] and ordered["trades"]
    con = query.connect(root)
    for sym, in con.execute("SELECT DISTINCT symbol FROM orders").fetchall()[:10]:
        seqs = [r[0] for r in con.execute("SELECT seq FROM orders WHERE symbol = ?", [sym]).fetchall()]
        assert seqs == sorted(seqs) and len(seqs) > 100, sym


def test_follow_a_segment_counts_the_events_gone_before_it_started(tmp_path):
    """fh history --follow of a segment whose event ring had already wrapped began at the oldest event left and
    said nothing of the ones before it (exit 0, overrun_events 0): they are now counted as missed_at_start and said
    on stderr."""
    day = tmp_path / "day.itch"
    native.synth_file(day, 5_000, 5, seed=8081)
    seg = tmp_path / "fh-wrapped"
    from handler.segments import wake_path

    try:
        fh("publish", "--itch", day, "--segment", seg, "--name", "wrapped", "--events", "64", "--max-levels", "1024",
           "--keep")
        p = fh("history", "--follow", seg, "--date", DATE, "--out", tmp_path / "h", "--idle-timeout", "1", "--json",
               timeout=120)
    finally:
        Path(wake_path(seg)).unlink(missing_ok=True)
    res = json.loads(p.stdout)
    missed = res["counters"]["missed_at_start"]
    assert missed > 0 and res["counters"]["events"] <= 64 and res["counters"]["overrun_events"] == 0
    assert (f"fh history: {seg}: events 1..{missed} were overwritten in its event ring before fh history started "
            f"following (counted as missed_at_start): the history begins at event {missed + 1}") in p.stderr


def test_follow_a_segment_path_names_its_instance(tmp_path):
    """fh history --follow /dev/shm/fh-NAME: the instance NAME and its ring /dev/shm/fh-NAME.journal (the path was
    taken for a name: /dev/shm/fh-/dev/shm/fh-NAME.journal)."""
    p = fh("history", "--follow", "/dev/shm/fh-nosuchfollow", "--out", tmp_path / "h", check=False, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == ("fh: no journal at /dev/shm/fh-nosuchfollow.journal and no segment at "
                                "/dev/shm/fh-nosuchfollow: is fh running with instance name nosuchfollow? (fh run, "
                                "with --journal for every table)"), p.stderr
