"""The `fh` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import FhError, main_guard


def _itch(path: str) -> Path:
    """--itch FILE: an ITCH 5.0 daily file, gzipped or not (checked by content: handler/inputs.py)."""
    from .. import inputs

    return inputs.require(path, "itch", "--itch")


def _pcap(path: str, option: str = "--pcap") -> Path:
    from .. import inputs

    return inputs.require(path, "pcap", option)


def _whole(text: str, low: int) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected a number >= {low}, got {v}")
    return v


def _positive(text: str) -> int:
    return _whole(text, 1)


def _nonneg(text: str) -> int:
    return _whole(text, 0)


def _print_counters(counters: dict[str, int], file=sys.stderr) -> None:
    shown = {k: v for k, v in counters.items() if v}
    print("counters: " + (", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "none"), file=file)


# ---- fh synth itch ------------------------------------------------------------------------------------


def cmd_synth_itch(a) -> int:
    from .. import native

    native.synth_file(a.out, a.messages, a.instruments, a.seed, a.anomaly_ppm, a.shape)
    size = os.path.getsize(a.out)
    print(f"{a.out}: {a.messages} messages, {a.instruments} instruments, seed {a.seed}, shape {a.shape}, {size} bytes",
          file=sys.stderr)
    return 0


# ---- fh book dump ---------------------------------------------------------------------------------------


def _dump_reference(a) -> tuple[list[dict], dict]:
    from .. import reference

    if getattr(a, "journal", None):  # fh record's files: the messages in the order they were applied
        from ..journal import journal_messages

        ref = reference.ReferenceBook()
        for _, _, m in journal_messages(a.journal):
            ref.apply(m)
        return ref.books(a.depth), dict(ref.counters)
    if a.pcap:  # sequenced as the C engine and the data plane do
        from ..replay import reference_books

        return reference_books(_pcap(a.pcap), depth=a.depth)
    ref = reference.ReferenceBook()
    ref.apply_daily_file(str(_itch(a.itch)))
    return ref.books(a.depth), dict(ref.counters)


def _dump_c(a) -> tuple[list[dict], dict]:
    from .. import native

    if getattr(a, "snapshots", None):  # a restart's state: the newest sound snapshot + the journal after it
        from ..snapshot import restore

        eng = native.Engine()
        got = restore(eng, a.snapshots, a.journal)
        snap = got["snapshot"]
        print(f"fh book dump: snapshot {snap['path'] if snap else 'none'} (complete to sequence "
              f"{snap['next_seq'] - 1 if snap else 0}), then {got['journal_messages']} journaled messages",
              file=sys.stderr)
        return eng.dump(a.depth), eng.counters()
    if getattr(a, "journal", None):
        from ..journal import MSGS, journal_files, journal_records

        eng = native.Engine(native.EngineConfig.for_input(sum(f.stat().st_size for f in journal_files(a.journal))))
        for r in journal_records(a.journal):
            if r.kind == MSGS:
                eng.apply_blocks(r.body)
        return eng.dump(a.depth), eng.counters()
    path = _itch(a.itch) if a.itch else _pcap(a.pcap)
    eng = native.Engine(native.EngineConfig.for_input(path.stat().st_size))
    extra = {}
    if a.itch:
        eng.apply_file(path)
    else:
        extra = eng.apply_pcap(path)
    return eng.dump(a.depth), {**eng.counters(), **{f"pcap_{k}": v for k, v in extra.items()}}


def cmd_book_dump(a) -> int:
    books, counters = (_dump_reference if a.engine == "reference" else _dump_c)(a)
    out = sys.stdout
    for b in books:
        out.write(json.dumps(b) + "\n")
    if a.stats:
        _print_counters(counters)
    return 0


# ---- fh decode ------------------------------------------------------------------------------------------


def cmd_decode(a) -> int:
    from .. import native

    out = sys.stdout
    bad = 0

    def emit(msg, where: str, tail: str = "") -> None:
        nonlocal bad
        text = native.itch_json(bytes(msg))
        if text is None:
            bad += 1
            kind = "unknown message type" if len(msg) and native.itch_spec_length(msg[0]) == 0 else "short message"
            first = f"0x{msg[0]:02x}" if len(msg) else "none"
            print(f"fh decode: {where}: {kind} (type byte {first}, {len(msg)} bytes), skipped", file=sys.stderr)
            return
        out.write(text[:-1] + tail + "}\n" if tail else text + "\n")

    if a.itch:
        path = _itch(a.itch)
        data = path.read_bytes()
        end = 0
        for off, msg in native.iter_blocks(data):
            emit(msg, f"{path}: offset {off}")
            end = off + 2 + len(msg)
        if end != len(data):
            print(f"fh decode: {path}: truncated: the block at offset {end} runs past the end of the file "
                  f"({len(data) - end} trailing bytes)", file=sys.stderr)
            return 1
        return 1 if bad else 0
    if a.journal:  # fh record's files (docs/journal.md)
        from ..journal import journal_messages

        for session, seq, msg in journal_messages(a.journal):
            emit(msg, f"{a.journal}: session {session.strip()} sequence {seq}",
                 f', "session": {json.dumps(session.rstrip(" "))}, "sequence": {seq}')
        return 1 if bad else 0

    import struct

    from ..net.pcapfile import PcapReader

    reader = PcapReader(_pcap(a.pcap))
    malformed = 0
    for n, d in enumerate(reader.datagrams(), 1):
        where = f"{a.pcap}: datagram {n} ({d.dst}:{d.dport})"
        if len(d.payload) < 20:
            malformed += 1
            print(f"fh decode: {where}: {len(d.payload)} bytes, shorter than a MoldUDP64 header", file=sys.stderr)
            continue
        session_raw, sequence, count = struct.unpack_from(">10sQH", d.payload)
        session = json.dumps(session_raw.decode("latin-1").rstrip(" "))
        if count in (0, 0xFFFF):  # heartbeat, end of session
            continue
        i = 0
        for i, (_, msg) in enumerate(native.iter_blocks(d.payload[20:]), 1):
            emit(msg, f"{where} message {i - 1}", f', "session": {session}, "sequence": {sequence + i - 1}')
            if i == count:
                break
        if i != count:
            malformed += 1
            print(f"fh decode: {where}: MoldUDP64 count says {count} messages, {i} fit", file=sys.stderr)
    if reader.counters.get("truncated_file"):
        print(f"fh decode: {a.pcap}: truncated: the last record is cut off", file=sys.stderr)
        return 1
    return 1 if bad or malformed else 0


# ---- fh publish ---------------------------------------------------------------------------------------


def default_segment_path(name: str, max_levels: int = 4 << 20, events: int = 1 << 16) -> str:
    from ..native import segment_footprint
    from ..segments import writer_path

    return writer_path(name, segment_footprint(max_levels, events))


def cmd_publish(a) -> int:
    """Apply a daily ITCH file into a shared segment that readers follow (for tests, demos and labs; the
    data plane publishes live feeds the same way)."""
    import signal
    import time

    from .. import native

    path = _itch(a.itch)
    seg_path = a.segment or default_segment_path(a.name, a.max_levels, a.events)
    data = path.read_bytes()
    seg = native.Segment(seg_path, a.name, max_levels=a.max_levels, event_capacity=a.events, depth=a.depth)
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        eng = native.Engine(native.EngineConfig.for_input(len(data)), segment=seg)
        print(f"fh publish: {seg_path}: applying {path} ({len(data)} bytes)", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        for _ in range(a.loop):
            eng.reset()
            off = 0
            while off < len(data) and not stop:
                n = native.blocks_prefix(memoryview(data)[off:], a.chunk) if a.pace else len(data) - off
                if n == 0:
                    break
                eng.apply_blocks(memoryview(data)[off:off + n])
                off += n
                if a.pace:
                    eng.publish_stats()
                    time.sleep(a.pace)
            if stop:
                break
        eng.publish_stats()
        secs = time.perf_counter() - t0
        c = eng.counters()
        print(f"fh publish: {c['messages']} messages in {secs:.2f} s; {len(eng.locates())} books; "
              f"{eng.live_orders} live orders", file=sys.stderr, flush=True)
        if a.ready_file:
            Path(a.ready_file).write_text(str(os.getpid()))
        while a.hold and not stop:
            seg.heartbeat()
            time.sleep(0.2)
    finally:
        seg.close(unlink=not a.keep)
    return 0


# ---- readers of a segment: fh book SYMBOL, fh top, fh events, fh stats ---------------------------------

EXIT_WRITER_DEAD = 3


def _join(a):
    """Join the segment named by --name (an instance name or a path); its errors become one-line FhErrors."""
    from .. import shm

    try:
        return shm.Reader(a.name)
    except shm.ShmError as e:
        raise FhError(str(e)) from None


def _warn_if_dead(r) -> bool:
    st = r.writer_status()
    if st.state == "dead":
        print(f"fh: warning: {r.dead_text(st)}", file=sys.stderr)
        return True
    return False


def _dollars(price: int) -> str:
    return f"{price // 10000}.{price % 10000:04d}"


def _clock(ns: int) -> str:
    """An ITCH timestamp (ns since midnight) as HH:MM:SS.nnnnnnnnn."""
    s, frac = divmod(ns, 1_000_000_000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:09d}"


def _book_text(b: dict) -> str:
    from ..shm import TRADING_STATES

    state = TRADING_STATES.get(b["trading_state"], repr(b["trading_state"]))
    last = f"last {_dollars(b['last_trade'][0])} x {b['last_trade'][1]}" if b["last_trade"] else "no trade yet"
    lines = [f"{b['symbol']}  locate {b['locate']}  {b['status']}  {state}  {last}  "
             f"levels {b['levels'][0]} x {b['levels'][1]}  updates {b['updates']}  at {_clock(b['itch_ts'])}",
             f"{'orders':>7} {'shares':>10} {'bid':>11} | {'ask':<11} {'shares':>10} {'orders':>7}"]
    bids, asks = b["bids"], b["asks"]
    for i in range(max(len(bids), len(asks), 1)):
        left = f"{bids[i][2]:>7} {bids[i][1]:>10} {_dollars(bids[i][0]):>11}" if i < len(bids) else " " * 30
        right = f"{_dollars(asks[i][0]):<11} {asks[i][1]:>10} {asks[i][2]:>7}" if i < len(asks) else ""
        if not bids and not asks:
            left, right = f"{'(empty)':>30}", ""
        lines.append(f"{left} | {right}".rstrip())
    return "\n".join(lines)


def cmd_book_show(a) -> int:
    import time

    from .. import shm

    r = _join(a)
    try:
        depth = a.depth or r.depth
        try:
            loc = r.locate_of(a.symbol)
        except shm.UnknownInstrument:
            if not a.symbol.isdigit():
                raise
            loc = int(a.symbol)
        dead = _warn_if_dead(r)
        seen = None
        clear = a.watch and sys.stdout.isatty()
        while True:
            b = r.book(loc, depth)
            if (b["updates"], b["status"], b["trading_state"]) != seen:
                if a.json:
                    sys.stdout.write(json.dumps({"locate": b["locate"], "symbol": b["symbol"], "bids": b["bids"],
                                                 "asks": b["asks"]}) + "\n")
                else:
                    sys.stdout.write(("\x1b[H\x1b[2J" if clear else "") + _book_text(b) + "\n"
                                     + ("\n" if a.watch and not clear else ""))
                sys.stdout.flush()
                seen = (b["updates"], b["status"], b["trading_state"])
            if not a.watch:
                return EXIT_WRITER_DEAD if dead and a.strict else 0
            time.sleep(a.interval)
            if not dead and r.writer_status().state != "running":
                dead = _warn_if_dead(r)
                if not dead:
                    print("fh: the writer stopped; the book is final", file=sys.stderr)
                    return 0
    except shm.ShmError as e:
        raise FhError(str(e)) from None
    except KeyboardInterrupt:
        return 0
    finally:
        r.close()


def _top_rows(r, prev, prev_t: float, count: int) -> tuple[list[dict], object, float]:
    """The `count` busiest books by updates/s since the sample (prev, prev_t), and a new sample."""
    import time

    import numpy as np

    from .. import shm

    now = time.monotonic()
    locs = r.locates()  # published instruments only
    upd = r.books["updates"][locs].astype(np.int64)
    if prev is None:
        rate = np.zeros(len(locs))
    else:
        d = (upd - prev[locs]) % (1 << 32)
        d = np.where(d > (1 << 31), upd, d)  # a book that started over (a new day)
        rate = d / max(now - prev_t, 1e-9)
    rows = []
    for i in np.lexsort((locs, -upd, -rate))[:count]:  # busiest first, then most updates, then by locate
        s = r.snapshot(int(locs[i]), 1)
        bid = s.bids[0] if len(s.bids) else None
        ask = s.asks[0] if len(s.asks) else None
        rows.append({"symbol": s.symbol, "locate": int(locs[i]), "status": s.status, "state": s.trading_state,
                     "bid_shares": None if bid is None else int(bid["shares"]),
                     "bid": None if bid is None else int(bid["price"]),
                     "ask": None if ask is None else int(ask["price"]),
                     "ask_shares": None if ask is None else int(ask["shares"]),
                     "last_trade": s.last_trade, "updates": int(upd[i]), "rate": float(rate[i])})
    sample = np.zeros(r.nbooks, np.int64)
    sample[locs] = upd
    return rows, sample, now


def _top_frame(r, rows: list[dict]) -> str:
    import time

    from ..shm import age_text, utc_text

    st = r.writer_status()
    n = int((r.books["status"] != 0).sum())
    head = (f"fh top: {r.name or '?'} ({r.path})  writer pid {st.pid} {st.state}, heartbeat "
            f"{age_text(st.heartbeat_age)} ago  {n} instruments  events {r.head}  {utc_text(time.time_ns())}")
    lines = [head, "", f"{'SYMBOL':<8} {'BIDSZ':>9} {'BID':>11} {'ASK':>11} {'ASKSZ':>9} {'LAST':>11} "
                         f"{'LASTSZ':>8} {'UPD/S':>9}"]

    def num(v, f=str) -> str:
        return "-" if v is None else f(v)

    for x in rows:
        flag = "" if x["status"] == "live" else f"  {x['status']}"
        flag += "" if x["state"] == "T" else f"  state {x['state']}"
        lt = x["last_trade"] or (None, None)
        lines.append(f"{x['symbol']:<8} {num(x['bid_shares']):>9} {num(x['bid'], _dollars):>11} "
                     f"{num(x['ask'], _dollars):>11} {num(x['ask_shares']):>9} {num(lt[0], _dollars):>11} "
                     f"{num(lt[1]):>8} {x['rate']:>9.0f}{flag}")
    return "\n".join(lines)


def cmd_top(a) -> int:
    import time

    from .. import shm

    r = _join(a)
    try:
        dead = _warn_if_dead(r)
        tty = sys.stdout.isatty() and not a.once
        _, prev, t = _top_rows(r, None, 0.0, 0)
        while True:
            time.sleep(a.interval)
            rows, prev, t = _top_rows(r, prev, t, a.count)
            frame = _top_frame(r, rows)
            sys.stdout.write(("\x1b[H\x1b[2J" if tty else "") + frame + "\n" + ("" if tty or a.once else "\n"))
            sys.stdout.flush()
            if a.once:
                return 0
            if not dead:
                dead = _warn_if_dead(r)
    except shm.ShmError as e:
        raise FhError(str(e)) from None
    except KeyboardInterrupt:
        return 0
    finally:
        r.close()


def _event_text(e: dict) -> str:
    t = e["type"]
    head = f"{e['seq']:>10} {_clock(e['itch_ts'])} {e['symbol']:<8} {t:<9}"
    if t == "bbo":
        bid = f"{e['bid_shares']} @ {_dollars(e['bid_price'])}" if e["bid_shares"] else "-"
        ask = f"{e['ask_shares']} @ {_dollars(e['ask_price'])}" if e["ask_shares"] else "-"
        return f"{head} bid {bid}  ask {ask}"
    if t == "trade":
        return f"{head} {e['shares']} @ {_dollars(e['price'])}  match {e['match']}"
    if t == "state":
        return f"{head} trading state {e['trading_state']}"
    return f"{head} book {e['status']}"


def cmd_events(a) -> int:
    from .. import shm

    r = _join(a)
    try:
        dead = _warn_if_dead(r)
        if a.start is not None:
            start = a.start
        elif a.follow:
            start = r.head + 1
        else:
            start = max(r.oldest(), r.head - (a.count or 20) + 1)
        limit = a.count if a.count else (None if a.follow else 20)
        n = 0
        out = sys.stdout
        for e in r.events(start, follow=a.follow and not dead):
            if isinstance(e, shm.Overrun):
                if a.json:
                    out.write(json.dumps(e.to_dict()) + "\n")
                else:
                    out.write(f"-- overrun: {e.lost} events lost; going on at {e.next} (resynchronise from the "
                              f"books)\n")
                continue
            out.write((json.dumps(e) if a.json else _event_text(e)) + "\n")
            if a.follow:
                out.flush()
            n += 1
            if limit is not None and n >= limit:
                break
        if a.follow and n != limit:
            st = r.writer_status()
            if st.state == "dead":
                print(f"fh: {r.dead_text(st)}", file=sys.stderr)
                return EXIT_WRITER_DEAD
            if st.state == "stopped":
                print(f"fh: the writer (pid {st.pid}) stopped; no more events", file=sys.stderr)
        return 0
    except shm.ShmError as e:
        raise FhError(str(e)) from None
    except KeyboardInterrupt:
        return 0
    finally:
        r.close()


def cmd_stats(a) -> int:
    from .. import shm
    from ..native import COUNTER_NAMES

    r = _join(a)
    try:
        st = r.writer_status()
        counters = r.stats()
        names = set(COUNTER_NAMES)
        plain = {k: v for k, v in counters.items() if not k.startswith("type_")}
        types = {k[5:]: v for k, v in counters.items() if k.startswith("type_")}
        status = r.books["status"]
        live, stale = int((status == shm.LIVE).sum()), int((status == shm.STALE).sum())
        writer = {"state": st.state, "pid": st.pid, "alive": st.alive, "heartbeat_ns": st.heartbeat_ns,
                  "heartbeat_utc": shm.utc_text(st.heartbeat_ns), "heartbeat_age_s": round(st.heartbeat_age, 3),
                  "started_utc": shm.utc_text(st.started_ns), "replaced": st.replaced}
        head = r.head
        dp = r.dataplane_stats()
        if not dp.pop("dataplane"):
            dp = None  # an engine-only writer (fh publish): no data plane section
        if a.json:
            if dp is not None:
                dp["latency"]["buckets"] = [list(b) for b in dp["latency"]["buckets"]]
            print(json.dumps({"segment": r.path, "name": r.name, "layout_version": int(r.header["layout_version"]),
                              "size": r.size, "writer": writer,
                              "events": {"head": head, "capacity": r.event_capacity, "oldest": r.oldest()},
                              "books": {"instruments": live + stale, "live": live, "stale": stale,
                                        "max_levels": r.max_levels, "depth": r.depth},
                              "counters": plain, "types": types, "dataplane": dp}))
        else:
            print(f"segment   {r.path}  instance {r.name!r}  layout {int(r.header['layout_version'])}  "
                  f"{r.size / (1 << 20):.0f} MiB")
            print(f"writer    pid {st.pid} {st.state}; started {writer['started_utc']}; last heartbeat "
                  f"{writer['heartbeat_utc']} ({shm.age_text(st.heartbeat_age)} ago)")
            print(f"events    head {head}  capacity {r.event_capacity}  oldest {r.oldest()}")
            print(f"books     {live + stale} instruments ({live} live, {stale} stale)  levels {r.max_levels}  "
                  f"depth {r.depth}")
            width = max(map(len, plain), default=0)
            print("counters")
            for k, v in plain.items():
                mark = "" if k in names else "  (unnamed)"
                print(f"  {k:<{width}} {v:>14}{mark}")
            print("types     " + (" ".join(f"{k}={v}" for k, v in sorted(types.items())) or "none"))
            if dp is None:
                print("dataplane none (engine-only writer)")
            else:
                lat = dp["latency"]
                print(f"dataplane packets {dp['packets']}  bytes {dp['bytes']}")
                print("drops     " + (" ".join(f"{k}={v}" for k, v in dp["drops"].items() if v) or "none"))
                print("mold      " + " ".join(f"{k}={v}" for k, v in dp["mold"].items()))
                f = dp["feed"]
                print(f"feed      {f['state']} session={f['session'] or '-'} next_seq={f['next_seq']} "
                      f"held={f['held']} outstanding={f['outstanding']}")
                print("lines     " + (" ".join(
                    f"{i}:{l['kind']},{l['state']},datagrams={l['datagrams']},won={l['won']},"
                    f"duplicates={l['duplicates']},late={l['late']},lost={l['lost']}"
                    for i, l in enumerate(dp["lines"])) or "none"))
                print(f"latency   rx->publish ns: count {lat['count']}  p50 {lat['p50']}  p99 {lat['p99']}  "
                      f"p99.9 {lat['p99.9']}  max {lat['max']}")
        if st.state == "dead":
            print(f"fh: warning: {r.dead_text(st)}", file=sys.stderr)
            return EXIT_WRITER_DEAD
        return 0
    except shm.ShmError as e:
        raise FhError(str(e)) from None
    finally:
        r.close()


def _register_readers(sub, book_sub) -> None:
    name_help = "instance name (segment /dev/shm/fh-NAME) or a segment path"

    bsh = book_sub.add_parser("show", help="one live book from a segment (also: fh book SYMBOL)")
    bsh.add_argument("symbol", metavar="SYMBOL", help="a symbol (or a stock locate)")
    bsh.add_argument("--name", default="fh", help=name_help)
    bsh.add_argument("--depth", type=_positive, default=None, help="levels per side (default: the segment's)")
    bsh.add_argument("--watch", action="store_true", help="redraw as the book changes, until Ctrl-C")
    bsh.add_argument("--interval", type=float, default=0.5, metavar="SECONDS", help="with --watch")
    bsh.add_argument("--json", action="store_true", help="the canonical dump line (as fh book dump)")
    bsh.add_argument("--strict", action="store_true", help="exit 3 if the writer is dead")
    bsh.set_defaults(func=cmd_book_show)

    t = sub.add_parser("top", help="the most active instruments of a segment, live")
    t.add_argument("--name", default="fh", help=name_help)
    t.add_argument("--count", type=_positive, default=20, help="rows")
    t.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="between refreshes")
    t.add_argument("--once", action="store_true", help="print one frame (after one interval) and exit")
    t.set_defaults(func=cmd_top)

    e = sub.add_parser("events", help="the event stream of a segment: BBO changes, trades, states")
    e.add_argument("--name", default="fh", help=name_help)
    e.add_argument("--follow", "-f", action="store_true", help="wait for new events (until Ctrl-C or the writer ends)")
    e.add_argument("--count", "-n", type=_positive, default=None,
                   help="print this many (default: the last 20; with --follow, no limit)")
    e.add_argument("--from", dest="start", type=_positive, default=None, metavar="SEQ",
                   help="start at this sequence (1: the first; an overrun is reported if it is gone)")
    e.add_argument("--json", action="store_true", help="one JSON object per line")
    e.set_defaults(func=cmd_events)

    st = sub.add_parser("stats", help="a segment's counters, writer status and event head")
    st.add_argument("--name", default="fh", help=name_help)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats)


# ---- fh run --------------------------------------------------------------------------------------------


def cmd_run(a) -> int:
    from ..run import run

    return run(a.config, a.keep_segment, a.json)


# ---- fh bench engine ----------------------------------------------------------------------------------


def cmd_bench_engine(a) -> int:
    from ..bench.engine import bench_engine

    return bench_engine(a)


# ---- parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fh", description="fh: MoldUDP64 / NASDAQ TotalView-ITCH 5.0 feed handler")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="generate deterministic test data")
    ss = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    si = ss.add_parser("itch", help="a synthetic ITCH 5.0 day in the NASDAQ daily file format")
    si.add_argument("out", help="output file")
    si.add_argument("--messages", type=_positive, default=1_000_000)
    si.add_argument("--instruments", type=_positive, default=100)
    si.add_argument("--seed", type=_nonneg, default=1)
    si.add_argument("--anomaly-ppm", type=_nonneg, default=0,
                    help="inject about this many anomalies per million messages (default 0: a clean day)")
    si.add_argument("--shape", choices=("uniform", "real"), default="uniform",
                    help="real: a real day's reference range (to ~184 M, interleaved), orders resting from the open "
                         "to the close, deep books (fh/synth.h); default uniform")
    si.set_defaults(func=cmd_synth_itch)

    b = sub.add_parser("book", help="order books: fh book SYMBOL (a live one), fh book dump (offline)",
                       description="fh book SYMBOL [...] is short for fh book show SYMBOL [...]")
    bs = b.add_subparsers(dest="what", required=True, metavar="WHAT")
    bd = bs.add_parser("dump", help="build the books of a file offline and print them as JSON lines")
    src = bd.add_mutually_exclusive_group(required=True)
    src.add_argument("--itch", metavar="FILE", help="a daily ITCH 5.0 file (2-byte length framing)")
    src.add_argument("--pcap", metavar="FILE", help="a pcap of MoldUDP64 datagrams")
    src.add_argument("--journal", metavar="FILE", help="journal files of fh record (a file or a directory)")
    bd.add_argument("--snapshots", metavar="DIR", help="start from the newest sound snapshot here (fh record "
                                                       "--snapshot-every), then apply --journal after it")
    bd.add_argument("--depth", type=_positive, default=None, help="levels per side (default: all)")
    bd.add_argument("--engine", choices=("c", "reference"), default="c")
    bd.add_argument("--stats", action="store_true", help="print the counters on stderr")
    bd.set_defaults(func=cmd_book_dump)
    _register_readers(sub, bs)

    d = sub.add_parser("decode", help="print every ITCH message as a JSON line")
    dsrc = d.add_mutually_exclusive_group(required=True)
    dsrc.add_argument("--itch", metavar="FILE")
    dsrc.add_argument("--pcap", metavar="FILE")
    dsrc.add_argument("--journal", metavar="FILE", help="journal files of fh record (a file or a directory)")
    d.set_defaults(func=cmd_decode)

    pb = sub.add_parser("publish", help="apply a daily ITCH file into a shared-memory segment for readers")
    pb.add_argument("--itch", metavar="FILE", required=True)
    pb.add_argument("--name", default="fh", help="instance name (segment fh-NAME in hugetlbfs or /dev/shm)")
    pb.add_argument("--segment", metavar="PATH",
                    help="segment file (default: fh-NAME in a hugetlbfs mount with room for it, else /dev/shm)")
    pb.add_argument("--depth", type=_positive, default=10, help="top-N levels readers show by default")
    pb.add_argument("--events", type=_positive, default=1 << 16, help="event ring capacity (a power of two)")
    pb.add_argument("--max-levels", type=_positive, default=4 << 20)
    pb.add_argument("--pace", type=float, default=0.0, metavar="SECONDS",
                    help="sleep this long after every chunk (default: full speed, one pass)")
    pb.add_argument("--chunk", type=_positive, default=64 << 10, metavar="BYTES", help="chunk size with --pace")
    pb.add_argument("--loop", type=_positive, default=1, help="apply the day this many times (reset between)")
    pb.add_argument("--hold", action="store_true", help="keep the segment (and heartbeat) until SIGINT/SIGTERM")
    pb.add_argument("--keep", action="store_true", help="leave the segment file behind on exit")
    pb.add_argument("--ready-file", metavar="PATH", help="write the pid here once the day is applied")
    pb.set_defaults(func=cmd_publish)

    rn = sub.add_parser("run", help="run the data plane from a configuration file (docs/config.md)")
    rn.add_argument("--config", required=True, metavar="FILE")
    rn.add_argument("--keep-segment", action="store_true", help="leave the segment behind when it stops")
    rn.add_argument("--json", action="store_true", help="print the final statistics as one JSON object")
    rn.set_defaults(func=cmd_run)

    from .dataplane import register as register_dataplane

    register_dataplane(sub, _positive, _nonneg)
    from .host import register as register_host

    register_host(sub, _positive, _nonneg)
    from .ops import register as register_ops

    register_ops(sub, _positive, _nonneg)
    __import__("handler.history.cli", fromlist=["register"]).register(sub)  # fh history, fh query
    __import__("handler.gateway.cli", fromlist=["register"]).register(sub)  # fh gateway
    __import__("handler.soak", fromlist=["register"]).register(sub, _positive, _nonneg)
    __import__("handler.record", fromlist=["register"]).register(sub, _positive, _nonneg)
    __import__("handler.replicate", fromlist=["register"]).register(sub, _positive, _nonneg)

    be = sub.add_parser("bench", help="benchmarks")
    bes = be.add_subparsers(dest="what", required=True, metavar="WHAT")
    beng = bes.add_parser("engine", help="the C book engine on one core, against a parse-only pass and itch-book")
    beng.add_argument("--messages", type=_positive, default=20_000_000)
    beng.add_argument("--instruments", type=_positive, default=8000)
    beng.add_argument("--seed", type=_nonneg, default=1)
    beng.add_argument("--shape", choices=("uniform", "real", "both"), default="both",
                      help="day shape of the generated day (fh synth itch --shape); both: one after the other")
    beng.add_argument("--itch", metavar="FILE", help="use this daily file instead of generating a day")
    beng.add_argument("--repeats", type=_positive, default=5)
    beng.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last one)")
    beng.add_argument("--no-itch-book", action="store_true", help="skip the itch-book comparison")
    beng.add_argument("--json", action="store_true", help="print the results as one JSON object")
    __import__("handler.bench.plot", fromlist=["add_plot_flag"]).add_plot_flag(beng)  # --plot FILE.png
    beng.set_defaults(func=cmd_bench_engine)
    from ..bench.dataplane import register as register_bench_dataplane
    from ..bench.recovery import register as register_bench_recovery

    register_bench_dataplane(bes, _positive, _nonneg)
    register_bench_recovery(bes, _positive, _nonneg)
    return p


BOOK_COMMANDS = ("dump", "show")


def main(argv: list[str] | None = None) -> int:
    """fh's entry point: FhError and the OS errors fh can explain end as one line `fh: ...` and exit status 2,
    Ctrl-C as 130, anything else (a bug) with its traceback and a request to report it (errors.main_guard)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] == "book" and argv[1] not in (*BOOK_COMMANDS, "-h", "--help"):
        argv.insert(1, "show")  # fh book SYMBOL: a live book

    def run() -> int:
        args = build_parser().parse_args(argv)
        return args.func(args)

    return main_guard(run)
