"""Readers of the shared-memory segment (handler.shm, fh book SYMBOL / top / events / stats) against a live
writer (`fh publish`) in a subprocess."""

from __future__ import annotations

import json
import mmap
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, _unique, fh, fh_popen, publisher, stop_process
from handler.segments import remove as _remove_segment
from handler import shm
from handler._native import lib

DAY = ROOT / "pcaps" / "synth-100k.itch"




@pytest.fixture(scope="module")
def live():
    """One writer holding the bundled day for the read-only tests of this module."""
    with publisher(DAY) as (name, _):
        yield name


@pytest.fixture(scope="module")
def big_day(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("shm") / "big.itch"
    fh("synth", "itch", p, "--messages", "300000", "--instruments", "60", "--seed", "5")
    return p


def _dump(day: Path, depth: int | None) -> list[dict]:
    args = ["book", "dump", "--itch", day] + (["--depth", str(depth)] if depth else [])
    return [json.loads(line) for line in fh(*args).stdout.splitlines()]


# ---- books -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 5, 10, None])
def test_books_equal_offline_dump(live, depth):
    want = _dump(DAY, depth)
    with shm.Reader(live) as r:
        assert r.dump(depth) == want
        assert len(r.locates()) >= len(want) > 0
        for row in want:
            if depth is None:
                continue
            s = r.snapshot(row["locate"], depth)
            assert s.symbol == row["symbol"] and s.locate == row["locate"] and s.status == "live"
            assert s.dump() == row
            assert s.bids.dtype.names == ("price", "shares", "orders")
            assert r.snapshot(row["symbol"], depth).dump() == row
            assert r.book_dump(row["symbol"], depth) == row


def test_snapshot_fields(live):
    with shm.Reader(live) as r:
        loc = r.locate_of("AAPL")
        s = r.snapshot("AAPL")
        assert len(s.bids) == min(r.depth, s.levels[0]) and len(s.asks) == min(r.depth, s.levels[1])
        assert s.trading_state == "T" and s.retries == 0 and s.updates > 0 and s.itch_ts > 0
        assert s.last_trade is not None and s.last_trade == (s.last_price, s.last_shares)
        assert list(s.bids["price"]) == sorted(s.bids["price"], reverse=True)
        assert list(s.asks["price"]) == sorted(s.asks["price"])
        b = r.book("AAPL")
        assert b["locate"] == loc and b["levels"] == list(s.levels) and len(b["bids"]) == s.levels[0]
        assert r.symbol_of(loc) == "AAPL"
        with pytest.raises(shm.UnknownInstrument, match="no instrument 'NOPE'"):
            r.snapshot("NOPE")
        with pytest.raises(shm.UnknownInstrument):
            r.snapshot(70000)
        empty = int(np.flatnonzero(r.books["status"] == shm.EMPTY)[0])
        with pytest.raises(shm.UnknownInstrument, match=f"no instrument at locate {empty}"):
            r.snapshot(empty)
        with pytest.raises(ValueError):
            r.snapshot(loc, -1)


def test_views_are_readonly_views_of_the_segment(live):
    with shm.Reader(live) as r:
        whole = np.frombuffer(r._mm, np.uint8)
        for name in ("books", "level_keys", "level_aggs", "ladders", "ladder_slots", "events_ring"):
            a = getattr(r, name)
            assert np.shares_memory(a, whole), name
            assert not a.flags.owndata and not a.flags.writeable, name
            base = a
            while not isinstance(base, mmap.mmap):  # array -> memoryview -> the mmap, no copy in between
                base = base.base if isinstance(base, np.ndarray) else base.obj
            assert base is r._mm
        assert len(r.books) == r.nbooks == 65536 and r.books.dtype.itemsize == 64 and r.events_ring.dtype.itemsize == 128
        assert (r.key_bits, r.price_exp) == (32, -4)
        assert len(r.level_keys) == len(r.level_aggs) == r.max_levels
        with pytest.raises(ValueError):
            r.books["last_price"][1] = 1
        with pytest.raises(ValueError):
            r.level_keys[0] = 1
        with pytest.raises(TypeError):
            r._mm[0] = 1
        # the raw views agree with the consistent reads (the writer is idle): the best bid is the ladder window's
        # best (tick index `best`, slot best % LADDER_W) or the deep run's top, whichever is higher
        assert r.ladder_books == lib.FH_SEG_LADDER_BOOKS and len(r.ladders) == 2 * (r.ladder_books + 1)
        assert r.ladder_slots.shape == (len(r.ladders), shm.LADDER_W)
        loc = r.locate_of("AAPL")
        b = r.books[loc]
        side = b["side"][0]
        lad = r.ladders[2 * int(b["ladder"])]
        assert int(b["ladder"]) < r.ladder_books and int(lad["nl"]) > 0 and int(lad["tick"]) == 100
        cands = [(int(lad["best"]) * 100, int(r.ladder_slots[2 * int(b["ladder"]), int(lad["best"]) % shm.LADDER_W]["shares"]))]
        if int(side["n"]):
            top = int(side["off"]) + int(side["n"]) - 1
            cands.append((int(r.level_keys[top]), int(r.level_aggs[top]["shares"])))
        s = r.snapshot(loc, 1)
        assert max(cands) == (int(s.bids[0]["price"]), int(s.bids[0]["shares"]))
        assert s.levels[0] == int(side["n"]) + int(lad["nl"])
        assert r.header["magic"] == 0x31304D4853484646 and r.header["layout_version"] == 5
        assert r.name == live and r.writer_pid > 0


def test_stats(live):
    from handler import native

    eng = native.Engine(native.EngineConfig.for_input(DAY.stat().st_size))
    eng.apply_file(DAY)
    with shm.Reader(live) as r:
        assert r.stats() == eng.counters()
        assert list(r.stats(types=False)) == native.COUNTER_NAMES
        st = r.writer_status()
        assert st.state == "running" and st.alive and not st.replaced and st.heartbeat_age < 5
        assert r.check_writer().state == "running"


# ---- events ----------------------------------------------------------------------------------------------


def test_events_from_the_start(live):
    with shm.Reader(live) as r:
        head = r.head
        assert 0 < head < r.event_capacity  # the whole day is still in the ring
        evs = list(r.events(start=r.oldest()))
        assert not any(isinstance(e, shm.Overrun) for e in evs)
        assert [e["seq"] for e in evs] == list(range(1, head + 1))
        types = {e["type"] for e in evs}
        assert {"bbo", "trade", "state"} <= types
        locs = set(r.locates().tolist())
        assert all(e["locate"] in locs and e["symbol"] == r.symbol_of(e["locate"]) for e in evs)
        # the last BBO event of a book is its top of book now
        last = {}
        for e in evs:
            if e["type"] == "bbo":
                last[e["locate"]] = e
        for loc, e in last.items():
            s = r.snapshot(loc, 1)
            assert e["bid_price"] == (int(s.bids[0]["price"]) if len(s.bids) else 0)
            assert e["ask_shares"] == (int(s.asks[0]["shares"]) if len(s.asks) else 0)
        trade = next(e for e in evs if e["type"] == "trade")
        assert trade["shares"] > 0 and trade["price"] > 0
        assert list(r.events()) == []  # new events only: none while the writer idles
        arr, nxt, lost = r.read_events(1, 10)
        assert arr.dtype == shm.EVENT_DTYPE and list(arr["seq"]) == list(range(1, 11)) and nxt == 11 and lost == 0


@pytest.mark.slow
def test_events_overrun(big_day):
    with publisher(big_day, "--events", "64") as (name, _):
        with shm.Reader(name) as r:
            head = r.head
            assert head > 10 * r.event_capacity
            evs = list(r.events(start=1))
            first = evs[0]
            assert isinstance(first, shm.Overrun)
            assert first.next == head - r.event_capacity + 2 and first.lost == first.next - 1
            rest = evs[1:]
            assert not any(isinstance(e, shm.Overrun) for e in rest)
            assert [e["seq"] for e in rest] == list(range(first.next, head + 1))
            p = fh("events", "--name", name, "--from", "1", "--count", "3", "--json")
            lines = [json.loads(x) for x in p.stdout.splitlines()]
            assert lines[0] == {"type": "overrun", "lost": first.lost, "next": first.next}
            assert [x["seq"] for x in lines[1:]] == [first.next, first.next + 1, first.next + 2]


@pytest.mark.slow
def test_events_follow_a_live_writer():
    """A reader that keeps up with a writer sees every event once, in order: no overrun is reported while
    it waits at the head (the C wrapper guards fh_shm_event_next against the slot being written)."""
    name = _unique()
    path = shm.segment_path(name)
    proc = fh_popen("publish", "--itch", DAY, "--name", name, "--hold", "--pace", "0.002", "--chunk", "16384",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = shm.Reader(name)
                break
            except (shm.NoSegment, shm.NotASegment):
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.005)
        with r:
            seqs, overruns = [], []
            for e in r.events(start=1, follow=True, timeout=1.5):
                if isinstance(e, shm.Overrun):
                    overruns.append(e)
                    continue
                seqs.append(e["seq"])
                if len(seqs) % 500 == 0:  # consistent snapshots while the writer works
                    for loc in r.locates()[:5]:
                        s = r.snapshot(int(loc), 10)
                        assert list(s.bids["price"]) == sorted(s.bids["price"], reverse=True)
                        assert list(s.asks["price"]) == sorted(s.asks["price"])
            assert overruns == []
            assert seqs == list(range(1, r.head + 1)) and len(seqs) > 1000
    finally:
        stop_process(proc)
        proc.stderr.close()
        _remove_segment(path)


# ---- the command line ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_book(live):
    want = {row["symbol"]: row for row in _dump(DAY, 10)}
    p = fh("book", "AAPL", "--name", live)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("AAPL  locate 1  live  trading  last ") and p.stderr == ""
    best_bid, best_ask = want["AAPL"]["bids"][0], want["AAPL"]["asks"][0]
    assert re.search(rf"{best_bid[0] / 10000:.4f}\s+\|\s+{best_ask[0] / 10000:.4f}", lines[2]), lines[2]
    assert lines[2].lstrip().startswith("#") and lines[2].rstrip().endswith("#")  # depth bars, plain off a terminal
    assert len(lines) == 2 + max(len(want["AAPL"]["bids"]), len(want["AAPL"]["asks"]))
    for sym in ("AAPL", "MSFT"):
        p = fh("book", sym, "--name", live, "--json")
        assert json.loads(p.stdout) == want[sym]
    p = fh("book", "--name", live, "MSFT", "--json", "--depth", "2")
    assert json.loads(p.stdout) == {**want["MSFT"], "bids": want["MSFT"]["bids"][:2], "asks": want["MSFT"]["asks"][:2]}
    assert json.loads(fh("book", "show", "1", "--name", live, "--json").stdout)["symbol"] == "AAPL"
    # fh book dump is still the offline dump
    assert fh("book", "dump", "--itch", DAY, "--depth", "10").stdout.splitlines()[0] == json.dumps(want["AAPL"])
    p = fh("book", "NOPE", "--name", live, check=False)
    assert p.returncode == 2 and p.stderr.startswith("fh: no instrument 'NOPE'") and len(p.stderr.splitlines()) == 1


@pytest.mark.slow
def test_cli_top_events_stats(live):
    p = fh("top", "--name", live, "--once", "--interval", "0.05", "--count", "5")
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"fh top: {live} ") and "running" in lines[0]
    assert lines[2].split() == ["SYMBOL", "BIDSZ", "BID", "ASK", "ASKSZ", "LAST", "LASTSZ", "UPD/S"]
    assert len(lines) == 3 + 5
    with shm.Reader(live) as r:  # idle writer: rates are 0, so the books with the most updates come first
        upd = sorted(((int(r.books[loc]["updates"]), r.symbol_of(int(loc))) for loc in r.locates()), reverse=True)
        assert [x.split()[0] for x in lines[3:]] == [s for _, s in upd[:5]]
        head = r.head

    p = fh("events", "--name", live, "--count", "5")
    lines = p.stdout.splitlines()
    assert [int(x.split()[0]) for x in lines] == list(range(head - 4, head + 1))
    p = fh("events", "--name", live, "--count", "5", "--json", "--from", "1")
    assert [json.loads(x)["seq"] for x in p.stdout.splitlines()] == [1, 2, 3, 4, 5]
    p = fh("events", "--name", live, "--from", str(head + 10))  # past the newest: said, not an empty silence
    assert p.stdout == "" and p.stderr.strip() == (f"fh events: nothing from {head + 10:,}: the newest event is "
                                                   f"{head:,} (--follow waits for more)")

    p = fh("stats", "--name", live, "--json")
    st = json.loads(p.stdout)
    assert st["writer"]["state"] == "running" and st["counters"]["messages"] == 100_000
    assert st["events"]["head"] == head and st["books"]["live"] == st["books"]["instruments"] > 0
    assert st["name"] == live and st["layout_version"] == 5
    p = fh("stats", "--name", live)
    assert "messages" in p.stdout and "running" in p.stdout and p.stderr == ""


# ---- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", [["stats"], ["book", "AAPL"], ["top", "--once"], ["events"]])
def test_no_segment(cmd):
    name = _unique()
    p = fh(*cmd, "--name", name, check=False)
    assert p.returncode == 2
    assert p.stderr == (f"fh: no segment at /dev/shm/fh-{name}: is fh running with instance name {name}? "
                        f"(fh publish / fh run)\n")
    with pytest.raises(shm.NoSegment):
        shm.Reader(name)


@pytest.mark.parametrize("version", [7, 4])  # 4: the layout before the price ladders
def test_layout_mismatch_and_foreign_files(tmp_path, version):
    fake = tmp_path / "fake-segment"
    hdr = np.zeros(1, shm.HDR_DTYPE)
    hdr["magic"] = 0x31304D4853484646
    hdr["layout_version"] = version
    fake.write_bytes(hdr.tobytes() + bytes(4096))
    with pytest.raises(shm.LayoutMismatch, match=f"layout version {version}, this fh reads 5: upgrade the reader or the "):
        shm.Reader(str(fake))
    p = fh("stats", "--name", fake, check=False)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and f"layout version {version}" in p.stderr

    hdr["layout_version"] = 5  # the current one
    hdr["size"] = 1 << 30  # larger than the file
    fake.write_bytes(hdr.tobytes() + bytes(4096))
    with pytest.raises(shm.LayoutMismatch, match="broken header"):
        shm.Reader(str(fake))

    other = tmp_path / "other"
    other.write_bytes(b"not a segment at all" * 100)
    with pytest.raises(shm.NotASegment, match="is not an fh segment"):
        shm.Reader(str(other))
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(8192))
    with pytest.raises(shm.NotASegment, match="no magic"):
        shm.Reader(str(zeros), wait_s=0.05)


@pytest.mark.slow
def test_dead_writer():
    with publisher(DAY) as (name, proc):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        p = fh("stats", "--name", name, check=False)
        assert p.returncode == 3
        err = p.stderr.strip()
        assert len(err.splitlines()) == 1
        assert err.startswith(f"fh: warning: writer pid {proc.pid} of /dev/shm/fh-{name} is gone; last heartbeat 20")
        assert "UTC (" in err and err.endswith("ago); the books are as it left them")
        assert "dead" in p.stdout and "messages" in p.stdout
        st = json.loads(fh("stats", "--name", name, "--json", check=False).stdout)
        assert st["writer"]["state"] == "dead" and st["writer"]["pid"] == proc.pid
        # the books are still there: a warning, and the book
        p = fh("book", "AAPL", "--name", name, check=False)
        assert p.returncode == 0 and p.stdout.startswith("AAPL") and "is gone" in p.stderr
        with shm.Reader(name) as r:
            with pytest.raises(shm.WriterDead, match=f"writer pid {proc.pid} of .* is gone; last heartbeat"):
                r.check_writer()
            assert r.writer_status().state == "dead" and not r.writer_status().alive
            assert r.snapshot("AAPL").symbol == "AAPL"


@pytest.mark.slow
def test_stopped_writer_and_replaced_segment():
    """A writer that exits cleanly (--keep leaves the segment) is stopped, not dead; a reader of a segment
    whose path now holds another writer's says so."""
    with publisher(DAY, "--keep", hold=False) as (name, proc):
        proc.wait(30)
        with shm.Reader(name) as r:
            st = r.writer_status()
            assert st.state == "stopped" and not st.alive and not st.replaced
            p = fh("stats", "--name", name, "--json")
            assert json.loads(p.stdout)["writer"]["state"] == "stopped"
            with publisher(DAY, name=name) as (_, proc2):  # the stale segment is replaced
                st = r.writer_status()
                assert st.replaced and st.state == "stopped"
                with shm.Reader(name) as r2:
                    assert r2.writer_status().state == "running" and r2.writer_pid == proc2.pid


def test_second_writer_refused(live):
    with shm.Reader(live) as r:
        pid = r.writer_pid
    p = fh("publish", "--itch", DAY, "--name", live, check=False)
    assert p.returncode == 2
    assert f"held by another writer (pid {pid})" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    with shm.Reader(live) as r:
        assert r.writer_status().state == "running"
