"""`fh retransmit-server`: a MoldUDP64 re-request server that answers from a recorded capture.

It loads the messages of a capture by session and sequence number (the first copy of each sequence wins,
across lines, as the data plane sequences them), listens on UDP, and answers each request packet

    session (10 ASCII bytes) | sequence number (u64 BE) | requested message count (u16 BE)   = 20 bytes

with standard downstream packets (MoldUDP64 header + message blocks) carrying the requested messages from
that sequence on, unicast to the address that sent the request, and to no other. A response carries at most
`max_count` messages (however many were asked for) and each datagram fits the MTU, so one request may be
answered by several datagrams; the client asks again for what is still missing, as with the exchange's servers.

What is not answered (the MoldUDP64 specification defines a response only to a valid request; NASDAQ's
servers send nothing otherwise, and so does this one), each counted:
  - malformed: not exactly 20 bytes, or a requested count of 0 or 0xFFFF;
  - unknown session: no message of that session was recorded;
  - out of range: a sequence of 0 or beyond the last recorded one of the session, or one the capture lacks
    (lost on every line when it was recorded).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from ..errors import FhError

REQUEST_LEN = 20
IP_UDP = 28
MOLD_HDR = 20


class RetransmitError(FhError, ValueError):
    """A user-facing error (bad address, unreadable capture)."""


class Store:
    """Messages by session and sequence: the first copy of each sequence wins."""

    def __init__(self):
        self.sessions: dict[bytes, dict[int, bytes]] = {}
        self.reader: dict = {}  # from_pcap: the capture reader's counters (and bad_record_at), for replay.capture_cut

    @classmethod
    def from_pcap(cls, path: str | Path) -> "Store":
        from .pcapfile import PcapReader
        from ..reference import iter_mold

        if not Path(path).is_file():
            raise RetransmitError(f"{path}: no such capture; check the path")
        st = cls()
        reader = PcapReader(path)
        for d in reader.datagrams():
            dg = iter_mold(d.payload)
            h = dg.header
            if h is None or h.count in (0, 0xFFFF) or h.sequence == 0:
                continue
            sess = st.sessions.setdefault(h.session.encode("latin-1").ljust(10), {})
            for i, m in enumerate(dg.messages):
                sess.setdefault(h.sequence + i, m)
        st.reader = {**reader.counters, "bad_record_at": reader.bad_record_at}
        return st

    def summary(self) -> dict:
        return {s.decode("latin-1").rstrip(): {"first": min(m), "last": max(m), "messages": len(m)}
                for s, m in self.sessions.items() if m}


def parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise RetransmitError(f"--listen {text!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:26478")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class RetransmitServer:
    """Answers requests on a bound UDP socket until stop(). Use start() for a thread, or serve_forever()."""

    def __init__(self, store: Store, listen: tuple[str, int] = ("127.0.0.1", 0), max_count: int = 1000,
                 mtu: int = 1500, stats_json: str | Path | None = None):
        if mtu - IP_UDP - MOLD_HDR < 64:
            raise RetransmitError(f"--mtu {mtu}: too small for a MoldUDP64 datagram")
        self.store, self.max_count, self.mtu = store, max_count, mtu
        self.room = mtu - IP_UDP - MOLD_HDR
        self.stats_json = Path(stats_json) if stats_json else None
        fam = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            self.sock.bind(listen)
        except OSError as e:
            self.sock.close()
            raise RetransmitError(f"cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from None
        self.address = self.sock.getsockname()[:2]
        self.counters = {"requests": 0, "answered": 0, "messages_sent": 0, "datagrams_sent": 0, "capped": 0,
                         "refused": 0, "malformed": 0, "unknown_session": 0, "out_of_range": 0, "send_errors": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one request
    def answer(self, req: bytes) -> list[bytes]:
        """The datagrams that answer this request (empty: not answered); counts it."""
        c = self.counters
        c["requests"] += 1
        if len(req) != REQUEST_LEN:
            c["malformed"] += 1
            c["refused"] += 1
            return []
        session, seq, count = struct.unpack(">10sQH", req)
        if count in (0, 0xFFFF):
            c["malformed"] += 1
            c["refused"] += 1
            return []
        msgs = self.store.sessions.get(session)
        if not msgs:
            c["unknown_session"] += 1
            c["refused"] += 1
            return []
        if seq not in msgs:
            c["out_of_range"] += 1
            c["refused"] += 1
            return []
        if count > self.max_count:
            c["capped"] += 1
        n = min(count, self.max_count)
        out: list[bytes] = []
        cur: list[bytes] = []
        first, size, s = seq, 0, seq
        while s < seq + n and s in msgs:  # stops at the end of the recording or at a sequence it lacks
            m = msgs[s]
            if cur and size + 2 + len(m) > self.room:
                out.append(_datagram(session, first, cur))
                cur, size, first = [], 0, s
            cur.append(m)
            size += 2 + len(m)
            s += 1
        if cur:
            out.append(_datagram(session, first, cur))
        c["answered"] += 1
        c["messages_sent"] += s - seq
        c["datagrams_sent"] += len(out)
        return out

    # -- the loop
    def serve_forever(self) -> None:
        last_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self.sock], [], [], 0.1)
                if r:
                    try:
                        req, addr = self.sock.recvfrom(2048)
                    except OSError:
                        continue
                    for dg in self.answer(req):
                        try:
                            self.sock.sendto(dg, addr)  # only ever to the address that asked
                        except OSError:
                            self.counters["send_errors"] += 1
                if self.stats_json and time.monotonic() - last_stats >= 1.0:
                    self.write_stats()
                    last_stats = time.monotonic()
        finally:
            self.sock.close()
            if self.stats_json:
                self.write_stats()

    def write_stats(self) -> None:
        tmp = self.stats_json.with_name(self.stats_json.name + ".tmp")
        tmp.write_text(json.dumps({**self.counters, "listen": f"{self.address[0]}:{self.address[1]}"}) + "\n")
        os.replace(tmp, self.stats_json)

    def start(self) -> "RetransmitServer":
        self._thread = threading.Thread(target=self.serve_forever, name="fh-retransmit", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return dict(self.counters)


def _datagram(session: bytes, seq: int, msgs: list[bytes]) -> bytes:
    return session + struct.pack(">QH", seq, len(msgs)) + b"".join(struct.pack(">H", len(m)) + m for m in msgs)


def request(session: str | bytes, seq: int, count: int) -> bytes:
    """A MoldUDP64 request packet."""
    s = session.encode("ascii") if isinstance(session, str) else session
    return s.ljust(10)[:10] + struct.pack(">QH", seq, count)


def serve_cli(a) -> int:
    store = Store.from_pcap(a.pcap)
    if not store.sessions:
        raise RetransmitError(f"{a.pcap}: no MoldUDP64 messages in this capture")
    from ..replay import capture_cut

    cut = capture_cut(a.pcap, store.reader, "it answers for the frames before it")
    if cut:  # (it said nothing: a request past the cut is answered as beyond the session's end)
        print(f"fh retransmit-server: {cut}", file=sys.stderr)
    srv = RetransmitServer(store, parse_addr(a.listen), a.max_count, a.mtu, a.stats_json)
    host, port = srv.address
    for s, r in store.summary().items():
        print(f"fh retransmit-server: session {s}: sequences {r['first']}..{r['last']} ({r['messages']} messages)",
              file=sys.stderr)
    print(f"fh retransmit-server: listening on {host}:{port} (max {a.max_count} messages per request, MTU {a.mtu})",
          file=sys.stderr, flush=True)

    def on_signal(signum, frame):
        srv._stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    if a.ready_file:
        Path(a.ready_file).write_text(f"{host}:{port}\n")
    try:
        srv.serve_forever()
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    c = srv.counters
    print(f"fh retransmit-server: {c['requests']} requests, {c['messages_sent']} messages sent in "
          f"{c['datagrams_sent']} datagrams, {c['refused']} refused (malformed {c['malformed']}, unknown session "
          f"{c['unknown_session']}, out of range {c['out_of_range']}), {c['capped']} capped")
    return 0
