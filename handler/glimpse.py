"""GLIMPSE-style snapshots over SoupBinTCP (docs/recovery.md): `fh snapshot-server` serves the book of a
recorded day at a given point as NASDAQ's GLIMPSE 5.0 does (the state as ITCH 5.0 messages, then the snapshot
message 'G' carrying the MoldUDP64 sequence to resume from), and `fetch` / `fh snapshot-fetch` take one with
the C client (native/include/fh/glimpse.h, the one the data plane uses) into an engine and a snapshot file
that `fh-dataplane --restore` loads.

The served state is built by an engine (the shadow engine's code: the C book engine) from a capture, from the
journal files (newest sound snapshot at or before the point + the journal up to it) or from one snapshot
file; its every live order becomes an Add Order ('A'), each book a Stock Directory ('R') and a Stock Trading
Action ('H'), after a System Event ('S', start of messages).
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .errors import FhError
from . import native

HDR = struct.Struct("<QII10s6xQIIQIIQQII32sII")  # fh_snap_hdr_t (native/src/book.c), 128 bytes
BOOK = np.dtype([("locate", "<u2"), ("symbol_len", "u1"), ("state", "S1"), ("status", "u1"), ("flags", "u1"),
                 ("pad", "V2"), ("symbol", "S8"), ("last_price", "<u4"), ("last_shares", "<u4"),
                 ("itch_ts", "<u8"), ("updates", "<u4"), ("pad1", "<u4")])
ORDER = np.dtype([("ref", "<u8"), ("price", "<u4"), ("shares", "<u4"), ("locate", "<u2"), ("side", "u1"),
                  ("pad", "V5")])
# A SoupBinTCP sequenced-data packet carrying one ITCH 5.0 Add Order (36 bytes): 39 bytes, big-endian fields.
ADD_PKT = np.dtype([("len", ">u2"), ("ptype", "S1"), ("mtype", "S1"), ("locate", ">u2"), ("track", ">u2"),
                    ("ts_hi", ">u2"), ("ts_lo", ">u4"), ("ref", ">u8"), ("side", "S1"), ("shares", ">u4"),
                    ("stock", "S8"), ("price", ">u4")])
assert BOOK.itemsize == 40 and ORDER.itemsize == 24 and ADD_PKT.itemsize == 39 and HDR.size == 128


class GlimpseError(FhError, RuntimeError):
    """A snapshot that could not be served or fetched, in one line with the cause and the fix."""


def soup(ptype: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">H", len(payload) + 1) + ptype + payload


def _ts6(ns: int) -> bytes:
    return struct.pack(">HI", (ns >> 32) & 0xFFFF, ns & 0xFFFFFFFF)


def read_snapshot(path: str | os.PathLike) -> tuple[dict, np.ndarray, np.ndarray]:
    """(meta, books, orders) of a snapshot file, checked whole by the C loader first."""
    meta = native.snapshot_meta(path)
    data = Path(path).read_bytes()
    h = HDR.unpack_from(data, 0)
    nbooks, ncounters, norders = h[8], h[9], h[10]
    off = 128 + 8 * ncounters + 8 * 256
    books = np.frombuffer(data, BOOK, nbooks, off)
    orders = np.frombuffer(data, ORDER, norders, off + nbooks * BOOK.itemsize)
    return meta, books, orders


def state_stream(books: np.ndarray, orders: np.ndarray) -> tuple[bytes, int]:
    """The snapshot's SoupBinTCP sequenced packets (without the 'G' message): a system event, then per book its
    directory and trading state, then every live order as an Add. Returns (bytes, message count)."""
    parts = [soup(b"S", b"S" + struct.pack(">HH", 0, 0) + _ts6(0) + b"O")]  # start of messages
    sym = {}
    for b in books:
        loc = int(b["locate"])
        s = bytes(b["symbol"])[: int(b["symbol_len"])].ljust(8)
        sym[loc] = s
        ts = _ts6(int(b["itch_ts"]))
        # R: stock directory (39): market category, financial status, round lot 100, round lots only N, issue
        # classification, subtype, authenticity P, short sale threshold, IPO flag, LULD tier, ETP flag, factor,
        # inverse: neutral values (the book engine keeps the symbol only)
        r = (b"R" + struct.pack(">HH", loc, 0) + ts + s + b"Q" + b"N" + struct.pack(">I", 100) + b"N" + b"C" +
             b"  " + b"P" + b" " + b" " + b" " + b" " + struct.pack(">I", 0) + b"N")
        state = bytes(b["state"]) or b"T"
        hmsg = b"H" + struct.pack(">HH", loc, 0) + ts + s + state + b" " + b"    "
        parts += [soup(b"S", r), soup(b"S", hmsg)]
    n = 1 + 2 * len(books)
    if len(orders):
        pk = np.zeros(len(orders), ADD_PKT)
        pk["len"], pk["ptype"], pk["mtype"] = 37, b"S", b"A"
        pk["locate"] = orders["locate"]
        ts = {int(b["locate"]): int(b["itch_ts"]) for b in books}
        tsv = np.array([ts.get(int(l), 0) for l in orders["locate"]], dtype=np.uint64) if ts else 0
        pk["ts_hi"] = (tsv >> np.uint64(32)) & np.uint64(0xFFFF)
        pk["ts_lo"] = tsv & np.uint64(0xFFFFFFFF)
        pk["ref"] = orders["ref"]
        pk["side"] = np.where(orders["side"] == 0, b"B", b"S")
        pk["shares"] = orders["shares"]
        table = np.array([sym.get(l, b"        ") for l in range(int(orders["locate"].max()) + 1)], dtype="S8")
        pk["stock"] = table[orders["locate"]]
        pk["price"] = orders["price"]
        parts.append(pk.tobytes())
        n += len(orders)
    return b"".join(parts), n


def snapshot_message(next_seq: int) -> bytes:
    """GLIMPSE 5.0's snapshot message: 'G', the sequence as Alpha 20 (ASCII digits, space-padded)."""
    return b"G" + str(next_seq).encode().ljust(20)


# ---- the served state -------------------------------------------------------------------------------------

def _session_of(pcap_sessions: dict, session: str | None) -> bytes:
    if session is not None:
        key = session.encode("latin-1").ljust(10)
        if key not in pcap_sessions:
            raise GlimpseError(f"session {session!r} is not in the capture (it has "
                               f"{', '.join(s.decode().strip() for s in pcap_sessions)}): pick one with --session")
        return key
    if len(pcap_sessions) != 1:
        raise GlimpseError(f"the capture has {len(pcap_sessions)} sessions: pick one with --session")
    return next(iter(pcap_sessions))


def engine_from_pcap(pcap: str | os.PathLike, at: int | None, session: str | None = None):
    """An engine holding the capture's messages of one session before sequence `at` (None: all). Returns
    (engine, session, next_seq)."""
    from .net.retransmit import Store

    from .replay import capture_cut

    st = Store.from_pcap(pcap)
    cut = capture_cut(pcap, st.reader, "the state served is that of the frames before it")
    if cut:
        print(f"fh snapshot-server: {cut}", file=sys.stderr)
    key = _session_of(st.sessions, session)
    msgs = st.sessions[key]
    last = max(msgs) if msgs else 0
    nxt = last + 1 if at is None else at
    if nxt < 1 or nxt > last + 1:
        raise GlimpseError(f"--at {at}: the capture's session {key.decode().strip()} holds sequences 1..{last}; "
                           f"pick a point in 1..{last + 1}")
    e = native.Engine()
    for s in range(1, nxt):
        m = msgs.get(s)
        if m is None:
            raise GlimpseError(f"the capture lacks sequence {s} of session {key.decode().strip()} (lost on every "
                               "line): no consistent state at or after it; pick an earlier --at")
        e.apply(m)
    return e, key.decode("latin-1"), nxt


def engine_from_itch(path: str | os.PathLike, at: int | None, session: str | None = None):
    """An engine holding a NASDAQ daily ITCH file's messages before `at` (the file's k-th message is sequence k,
    as the day's MoldUDP64 stream numbers it). Returns (engine, session, next_seq); session defaults to
    ITCH50FILE (a daily file names none)."""
    from .inputs import require

    data = require(path, "itch", "--itch").read_bytes()
    n, off, ends = 0, 0, len(data)
    while off + 2 <= ends and (at is None or n < at - 1):  # the byte offset of message `at` (whole blocks only)
        ln = int.from_bytes(data[off:off + 2], "big")
        if off + 2 + ln > ends:
            break
        off += 2 + ln
        n += 1
    if at is None and off < ends:  # stopped at a block cut off, not at the end
        print(f"fh snapshot-server: {path}: truncated: its last message is cut off (at byte {off:,} of {ends:,}); the "
              f"state served is that of the messages before it", file=sys.stderr)
    total = n if at is not None and n < at - 1 else n + sum(1 for _ in native.iter_blocks(data[off:]))
    nxt = total + 1 if at is None else at
    if nxt < 1 or nxt > total + 1:
        raise GlimpseError(f"--at {at}: {path} holds messages 1..{total}; pick a point in 1..{total + 1}")
    e = native.Engine(native.EngineConfig.for_input(off))
    e.apply_blocks(data[:off])
    return e, (session or "ITCH50FILE")[:10].ljust(10), nxt


def engine_from_journal(directory: str | os.PathLike, snapshots: str | os.PathLike | None, at: int | None):
    """The recorded state before sequence `at` (None: the end): the newest sound snapshot at or before it, then
    the journal files' records up to it. Returns (engine, session, next_seq)."""
    from . import journal as J
    from .snapshot import list_snapshots

    d = Path(directory)
    files = J.journal_files(d) if d.is_dir() else []
    if not files:
        raise GlimpseError(f"{d}: no journal files (fh record --dir {d} writes them)")
    h, _, _ = J.read_journal_file(files[-1], tolerate_tail=True)
    session = h.session
    e = native.Engine()
    start = 1
    for p in reversed(list_snapshots(snapshots if snapshots else d / "snapshots")):
        try:
            m = native.snapshot_meta(p)
            if m["session"] != session or (at is not None and m["next_seq"] > at):
                continue
            e.snapshot_load(p)
            start = m["next_seq"]
            break
        except native.NativeError as err:
            print(f"fh snapshot-server: refused {err}; trying the previous snapshot", file=sys.stderr)
    nxt = start
    for r in J.journal_records(d):
        if r.session != session or r.kind != J.MSGS or not r.seq:
            if r.session == session and r.kind in (J.LOST, J.MISSED) and r.seq < (at or 1 << 62) and \
                    r.seq + r.arg > nxt:
                raise GlimpseError(f"{d}: the journal lost sequences {r.seq}..{r.seq + r.arg - 1}: no consistent "
                                   "state after them; pick an earlier --at")
            continue
        if r.seq + r.count <= nxt:
            continue
        if at is not None and r.seq >= at:
            break
        if r.seq > nxt:
            raise GlimpseError(f"{d}: the journal has no sequences {nxt}..{r.seq - 1}: no consistent state after them")
        ms = r.messages()[nxt - r.seq:]
        if at is not None:
            ms = ms[: max(0, at - nxt)]
        for m in ms:
            e.apply(m)
        nxt += len(ms)
    if at is not None and nxt != at:
        raise GlimpseError(f"--at {at}: the recorded day of session {session.strip()} ends at sequence {nxt - 1}; "
                           f"pick a point in {start}..{nxt}")
    return e, session, nxt


def served_state(engine, session: str, next_seq: int) -> tuple[bytes, int, dict]:
    """(packets, message count, meta) of an engine's state through a temporary snapshot file."""
    with tempfile.TemporaryDirectory(prefix="fh-glimpse-") as td:
        p = Path(td) / "state.snap"
        engine.snapshot_save(p, session, next_seq)
        return stream_of_snapshot(p)


def stream_of_snapshot(path) -> tuple[bytes, int, dict]:
    meta, books, orders = read_snapshot(path)
    data, n = state_stream(books, orders)
    return data, n, meta


# ---- the server ---------------------------------------------------------------------------------------------

class Server:
    """A SoupBinTCP server that answers each login with the same snapshot. Faults for tests and labs:
    ("silent", N): stop sending (heartbeats too) after N messages, the connection left open;
    ("close", N): close the connection after N messages; ("garbage", N): a packet of length 0 after N."""

    def __init__(self, listen: tuple[str, int], user: str, password: str, session: str, stream: bytes,
                 count: int, next_seq: int, fault: tuple[str, int] | None = None, heartbeat_s: float = 1.0,
                 idle_timeout_s: float = 15.0, log=sys.stderr):
        self.user, self.password = user, password
        self.session = session.encode("latin-1")[:10].ljust(10)
        self.stream, self.count, self.next_seq = stream, count, next_seq
        self.fault, self.hb, self.idle = fault, heartbeat_s, idle_timeout_s
        self.log = log
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(listen)
        except OSError as e:
            raise GlimpseError(f"--listen {listen[0]}:{listen[1]}: {e.strerror}; pick a free port") from None
        self.sock.listen(16)
        self.addr = self.sock.getsockname()
        self.stats = {"connections": 0, "logins": 0, "rejected": 0, "served": 0, "client_heartbeats": 0,
                      "client_timeouts": 0, "logouts": 0, "malformed": 0}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _count(self, k: str) -> None:
        with self._lock:
            self.stats[k] += 1

    def serve_forever(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self._count("connections")
            threading.Thread(target=self._client, args=(c, peer), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def _read_packet(self, c: socket.socket, buf: bytearray, deadline: float) -> tuple[bytes, bytes] | None:
        while True:
            if len(buf) >= 2:
                n = struct.unpack_from(">H", buf)[0]
                if n == 0:
                    raise ValueError("a packet of length 0")
                if len(buf) >= 2 + n:
                    t, p = bytes(buf[2:3]), bytes(buf[3:2 + n])
                    del buf[:2 + n]
                    return t, p
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            c.settimeout(min(left, 0.2))
            try:
                got = c.recv(65536)
            except socket.timeout:
                if self._stop.is_set():
                    return None
                continue
            if not got:
                raise ConnectionError("closed")
            buf += got

    def _client(self, c: socket.socket, peer) -> None:
        buf = bytearray()
        try:
            pk = self._read_packet(c, buf, time.monotonic() + self.idle)
            if pk is None:
                self._count("client_timeouts")
                return
            t, p = pk
            if t != b"L" or len(p) != 46:
                self._count("malformed")
                return
            user, pw, sess = p[:6].decode("latin-1").rstrip(), p[6:16].decode("latin-1").rstrip(), p[16:26]
            if user != self.user or pw != self.password:
                self._count("rejected")
                print(f"fh snapshot-server: {peer[0]}:{peer[1]}: login of {user!r} rejected (not authorized)",
                      file=self.log, flush=True)
                c.sendall(soup(b"J", b"A"))
                return
            if sess.strip() and sess != self.session:
                self._count("rejected")
                print(f"fh snapshot-server: {peer[0]}:{peer[1]}: session {sess.decode().strip()!r} is not served "
                      f"({self.session.decode().strip()})", file=self.log, flush=True)
                c.sendall(soup(b"J", b"S"))
                return
            self._count("logins")
            c.settimeout(self.idle)  # a client that reads nothing for this long is gone (not 0.2 s: it applies)
            c.sendall(soup(b"A", self.session + b"1".rjust(20)))
            self._send_snapshot(c)
            self._after(c, buf)
        except (OSError, ValueError, ConnectionError):
            pass
        finally:
            c.close()

    def _send_snapshot(self, c: socket.socket) -> None:
        data = self.stream
        limit = None
        if self.fault:
            limit = self.fault[1]
        if limit is None or limit >= self.count:
            c.sendall(data)
            c.sendall(soup(b"S", snapshot_message(self.next_seq)))
            self._count("served")
            return
        # the first `limit` messages (packets are walked: their lengths differ)
        off = 0
        for _ in range(limit):
            off += 2 + struct.unpack_from(">H", data, off)[0]
        c.sendall(data[:off])
        kind = self.fault[0]
        if kind == "close":
            c.shutdown(socket.SHUT_RDWR)
            raise ConnectionError("fault: closed")
        if kind == "garbage":
            c.sendall(b"\x00\x00S")
            raise ConnectionError("fault: garbage")
        # silent: keep the connection, send nothing more
        while not self._stop.wait(0.2):
            try:
                c.settimeout(0.01)
                if c.recv(65536) == b"":
                    return
            except socket.timeout:
                continue

    def _after(self, c: socket.socket, buf: bytearray) -> None:
        """After the snapshot: heartbeats until the client logs out, leaves or goes silent."""
        last_rx = time.monotonic()
        last_tx = time.monotonic()
        while not self._stop.is_set():
            try:
                pk = self._read_packet(c, buf, time.monotonic() + 0.2)
            except ConnectionError:
                return
            now = time.monotonic()
            if pk is not None:
                last_rx = now
                if pk[0] == b"O":
                    self._count("logouts")
                    return
                if pk[0] == b"R":
                    self._count("client_heartbeats")
            elif now - last_rx > self.idle:
                self._count("client_timeouts")
                return
            if now - last_tx >= self.hb:
                c.sendall(soup(b"H"))
                last_tx = now


# ---- the client ---------------------------------------------------------------------------------------------

def password_from(file: str | None, env: str | None = "FH_SNAPSHOT_PASSWORD", what: str = "--password-file") -> str:
    if file:
        try:
            pw = Path(file).read_text().strip()
            if not pw:  # (it sent an empty password and reported "login rejected")
                raise GlimpseError(f"{what} {file}: empty; its first line must be the password")
            return pw
        except OSError as e:
            raise GlimpseError(f"{what} {file}: {e.strerror}; give a readable file holding the password") from None
        except UnicodeDecodeError:  # (a binary file was a traceback)
            raise GlimpseError(f"{what} {file}: not text (a password is up to 10 ASCII characters); give the file "
                               "holding the password") from None
    pw = os.environ.get(env or "", "")
    if not pw:
        raise GlimpseError(f"no snapshot password: give {what} FILE or set the environment variable {env}")
    return pw


def check_credentials(user: str, password: str) -> None:
    """SoupBinTCP's login fields: a username of 1-6 and a password of up to 10 ASCII characters (space-padded on
    the wire, so that neither may end in a space). A server given longer ones could never be logged in to."""
    if not 1 <= len(user) <= 6 or not user.isascii() or not user.isprintable() or user != user.rstrip():
        raise GlimpseError(f"snapshot username {user!r}: SoupBinTCP's is 1 to 6 ASCII characters, not ending in a "
                           "space")
    if len(password) > 10 or not password.isascii() or not password.isprintable() or password != password.rstrip():
        raise GlimpseError("the snapshot password: SoupBinTCP's is up to 10 ASCII characters, not ending in a space "
                           f"(this one: {len(password)} characters)")


def fetch(server: str, user: str, password: str, session: str | None = None, *, connect_timeout_ms: int = 2000,
          idle_timeout_ms: int = 15000, total_timeout_ms: int = 600000, retries: int = 0,
          retry_delay_ms: int = 1000, engine: native.Engine | None = None) -> tuple[native.Engine, dict]:
    """A snapshot from a SoupBinTCP/GLIMPSE server into an engine, with the C client the data plane uses.
    Returns (engine, info: session, next_seq, messages, counters); GlimpseError (one line) if it fails."""
    ffi, lib = native.ffi, native.lib
    cfg = ffi.new("fh_glimpse_cfg_t *")
    if lib.fh_glimpse_parse_addr(cfg, server.encode()):
        raise GlimpseError(f"{native._errmsg()}")
    check_credentials(user, password)
    cfg.user = user.encode("latin-1")
    cfg.password = password.encode("latin-1")
    cfg.connect_timeout_ms, cfg.idle_timeout_ms, cfg.total_timeout_ms = connect_timeout_ms, idle_timeout_ms, \
        total_timeout_ms
    cfg.retries, cfg.retry_delay_ms = retries, retry_delay_ms
    e = engine or native.Engine()
    g = lib.fh_glimpse_create(cfg, e._e)
    if g == ffi.NULL:
        raise GlimpseError(native._errmsg())
    g = ffi.gc(g, lib.fh_glimpse_destroy)
    t0 = time.perf_counter()
    if lib.fh_glimpse_start(g, session.encode("latin-1")[:10].ljust(10) if session else ffi.NULL):
        raise GlimpseError(ffi.string(lib.fh_glimpse_error(g)).decode())
    while True:
        st = lib.fh_glimpse_poll(g)
        if st in (lib.FH_GLIMPSE_DONE, lib.FH_GLIMPSE_FAILED):
            break
        time.sleep(0.0005)
    counters = {ffi.string(lib.fh_glimpse_counter_name(i)).decode(): int(g.counters[i]) for i in range(lib.FH_G_COUNT)}
    if st == lib.FH_GLIMPSE_FAILED:
        err = GlimpseError(ffi.string(lib.fh_glimpse_error(g)).decode())
        err.counters = counters
        raise err
    info = {"session": ffi.unpack(g.session, 10).decode("latin-1"), "next_seq": int(g.end_seq),
            "messages": counters["messages"], "seconds": round(time.perf_counter() - t0, 3), "counters": counters}
    return e, info


def fetch_to_file(out: str | os.PathLike, server: str, user: str, password: str, session: str | None = None,
                  day: int = 0, **kw) -> dict:
    """fetch, then the engine's state saved as a snapshot file (fh-dataplane --restore loads it)."""
    e, info = fetch(server, user, password, session, **kw)
    meta = e.snapshot_save(out, info["session"], info["next_seq"], day)
    return {**info, "path": str(out), "orders": meta["orders"], "books": meta["books"]}


# ---- CLI ----------------------------------------------------------------------------------------------------

def _parse_fault(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    kind, _, n = text.partition(":")
    if kind not in ("silent", "close", "garbage") or not n.isdigit():
        raise GlimpseError(f"--fault {text!r}: expected silent:N, close:N or garbage:N (after N messages)")
    return kind, int(n)


def cmd_server(args) -> int:
    from .net.retransmit import parse_addr

    fault = _parse_fault(args.fault)
    password = password_from(args.password_file)
    check_credentials(args.user, password)  # before the day is read: a login no client could give
    if args.pcap:
        e, session, nxt = engine_from_pcap(args.pcap, args.at, args.session)
        stream, count, meta = served_state(e, session, nxt)
    elif args.itch:
        e, session, nxt = engine_from_itch(args.itch, args.at, args.session)
        stream, count, meta = served_state(e, session, nxt)
    elif args.journal:
        e, session, nxt = engine_from_journal(args.journal, args.snapshots, args.at)
        stream, count, meta = served_state(e, session, nxt)
    else:
        stream, count, meta = stream_of_snapshot(args.snapshot)
        session, nxt = meta["session"], meta["next_seq"]
        if args.at is not None and args.at != nxt:
            raise GlimpseError(f"--at {args.at}: the snapshot {args.snapshot} is of sequence {nxt}; leave --at out")
    if meta["flags"] & 1:
        print("fh snapshot-server: warning: the state was built across lost messages (stale books): served as is",
              file=sys.stderr)
    srv = Server(parse_addr(args.listen), args.user, password, session, stream, count, nxt, fault,
                 args.heartbeat_ms / 1000, args.idle_timeout_ms / 1000)
    info = {"listen": f"{srv.addr[0]}:{srv.addr[1]}", "session": session.strip(), "next_seq": nxt,
            "messages": count, "orders": meta["orders"], "books": meta["books"], "bytes": len(stream)}
    print(f"fh snapshot-server: serving session {session.strip()} as of sequence {nxt - 1} ({meta['books']} books, "
          f"{meta['orders']} orders, {count} messages, {len(stream)} bytes) on {info['listen']}",
          file=sys.stderr, flush=True)
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.rename(args.ready_file)
    import signal

    signal.signal(signal.SIGTERM, lambda *a: srv.close())
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
    print(json.dumps({**info, **srv.stats}) if args.json else
          "fh snapshot-server: " + ", ".join(f"{k} {v}" for k, v in srv.stats.items()), flush=True)
    return 0


def _session_arg(text: str) -> str:
    """An argparse type: --session, a MoldUDP64 session of 1 to 10 printable ASCII characters (a longer one was
    cut to 10 without a word, one outside latin-1 a traceback)."""
    import argparse

    if not 1 <= len(text) <= 10 or not text.isascii() or not text.isprintable() or text != text.strip():
        raise argparse.ArgumentTypeError(f"expected a MoldUDP64 session: 1 to 10 ASCII characters, e.g. 000012345A, "
                                         f"got {text!r}")
    return text


def cmd_fetch(args) -> int:
    password = password_from(args.password_file)
    check_credentials(args.user, password)  # before connecting: a login no server could accept
    try:
        got = fetch_to_file(args.out, args.server, args.user, password, args.session, args.day or 0,
                            connect_timeout_ms=args.connect_timeout_ms, idle_timeout_ms=args.idle_timeout_ms,
                            total_timeout_ms=args.total_timeout_ms, retries=args.retries)
    except GlimpseError as e:
        if args.json and hasattr(e, "counters"):
            print(json.dumps({"error": str(e), "counters": e.counters}))
        raise
    if args.json:
        print(json.dumps(got))
    else:
        print(f"fh snapshot-fetch: {got['path']}: session {got['session'].strip()}, complete to sequence "
              f"{got['next_seq'] - 1}, {got['books']} books, {got['orders']} orders ({got['messages']} messages in "
              f"{got['seconds']} s)")
    return 0


def register(sub, positive, nonneg) -> None:
    from .cli.argtypes import _bounded, _given, _out_file, _yyyymmdd
    from .ui import add_json_flag
    s = sub.add_parser("snapshot-server", help="serve a recorded day's book at a point over SoupBinTCP, as NASDAQ "
                                               "GLIMPSE 5.0 does (docs/recovery.md)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--pcap", metavar="PCAP", type=_given("a MoldUDP64 capture"),
                     help="a MoldUDP64 capture of the day")
    src.add_argument("--itch", metavar="FILE", type=_given("a daily ITCH 5.0 file"),
                     help="a NASDAQ daily ITCH 5.0 file (message k is sequence k)")
    src.add_argument("--journal", metavar="DIR", type=_given("fh record's journal directory"),
                     help="fh record's journal files (and DIR/snapshots)")
    src.add_argument("--snapshot", metavar="FILE", help="one snapshot file, served at its own sequence")
    s.add_argument("--snapshots", metavar="DIR", type=_given("the snapshots directory"),
                   help="with --journal: where its snapshots are (DIR/snapshots)")
    s.add_argument("--at", type=positive, metavar="SEQ",
                   help="serve the state before this sequence (the 'G' message's); default: the whole day")
    s.add_argument("--session", help="with --pcap: the MoldUDP64 session (when the capture has several); with --itch: the "
                   "session to serve it as (default ITCH50FILE)")
    s.add_argument("--listen", default="127.0.0.1:26500", metavar="ADDR:PORT", help="port 0: any free port")
    s.add_argument("--user", required=True, help="the SoupBinTCP username clients must give (up to 6 characters)")
    s.add_argument("--password-file", metavar="FILE",
                   help="the password clients must give (default: $FH_SNAPSHOT_PASSWORD)")
    s.add_argument("--heartbeat-ms", type=positive, default=1000)
    s.add_argument("--idle-timeout-ms", type=positive, default=15000, help="a silent client is dropped after this")
    s.add_argument("--fault", metavar="KIND:N", help="for tests: silent:N, close:N or garbage:N after N messages")
    s.add_argument("--ready-file", metavar="PATH", help="write the listening address and state here as JSON when ready")
    add_json_flag(s, "fh snapshot-server")
    s.set_defaults(func=cmd_server)

    f = sub.add_parser("snapshot-fetch", help="take a snapshot from a SoupBinTCP/GLIMPSE server into a snapshot file "
                                              "(fh-dataplane --restore loads it)")
    f.add_argument("--server", required=True, metavar="ADDR:PORT")
    f.add_argument("--user", required=True)
    f.add_argument("--password-file", metavar="FILE", help="default: $FH_SNAPSHOT_PASSWORD")
    f.add_argument("--session", type=_session_arg, help="the MoldUDP64 session wanted (default: the server's)")
    f.add_argument("--out", required=True, metavar="FILE", type=_out_file("day.snap"))
    f.add_argument("--day", type=lambda t: int(_yyyymmdd(t)), metavar="YYYYMMDD")
    # the bounds of [feed.snapshot]'s keys (handler/config.py): a value past the C client's 32-bit fields was an
    # OverflowError traceback
    f.add_argument("--connect-timeout-ms", type=_bounded(1, 600_000), default=2000)
    f.add_argument("--idle-timeout-ms", type=_bounded(10, 600_000), default=15000)
    f.add_argument("--total-timeout-ms", type=_bounded(100, 86_400_000), default=600000)
    f.add_argument("--retries", type=_bounded(0, 100), default=0)
    add_json_flag(f, "fh snapshot-fetch")
    f.set_defaults(func=cmd_fetch)


# ---- fh run ---------------------------------------------------------------------------------------------------

def dataplane_args(cfg) -> list[str]:
    """fh-dataplane's --snapshot-source for [feed.snapshot] (used under on_unrecoverable = "snapshot"); the
    password goes by its file or its environment variable, never on the command line."""
    s = cfg.snapshot
    spec = (f"{s.server[0]}:{s.server[1]},user={s.user},connect-ms={s.connect_timeout_ms},idle-ms={s.idle_timeout_ms},"
            f"timeout-ms={s.total_timeout_ms},retries={s.retries},retry-ms={s.retry_delay_ms},")
    spec += f"password-file={os.path.abspath(s.password_file)}" if s.password_file else f"password-env={s.password_env}"
    return ["--snapshot-source", spec]


def restart_from_service(cfg, log=sys.stderr) -> list[str]:
    """fh run with [feed.snapshot] and no recorded state for today: the book from the snapshot service, saved
    as RUN_DIR/NAME.glimpse.snap, becomes the data plane's start (--restore); the feed goes on after the 'G'
    message's sequence (what lies between is asked of the retransmission server as any gap is). [] when
    at_start is false. A failure is one line (ConfigError) and the run does not start."""
    from . import config, supervise

    s = cfg.snapshot
    if not s.at_start:
        return []
    password = config.snapshot_password(cfg)
    out = supervise.writable_run_dir() / f"{cfg.name}.glimpse.snap"
    server = f"{s.server[0]}:{s.server[1]}"
    try:
        got = fetch_to_file(out, server, s.user, password, None, int(time.strftime("%Y%m%d", time.gmtime())),
                            connect_timeout_ms=s.connect_timeout_ms, idle_timeout_ms=s.idle_timeout_ms,
                            total_timeout_ms=s.total_timeout_ms, retries=s.retries, retry_delay_ms=s.retry_delay_ms)
    except GlimpseError as e:
        raise config.ConfigError(f"fh run: {cfg.name}: no snapshot to start from: {e} (feed.snapshot.at_start = false "
                                 "starts with empty books instead)") from None
    print(f"fh run: {cfg.name}: starting from the snapshot service {server}: session {got['session'].strip()}, "
          f"complete to sequence {got['next_seq'] - 1}, {got['books']} books, {got['orders']} orders "
          f"({got['messages']} messages in {got['seconds']} s)", file=log, flush=True)
    return ["--restore", str(out)]
