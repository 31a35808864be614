"""fh witness: a third host that tells a dead primary from a cut replication link (docs/replication.md, "A
witness").

Both hosts of a replication pair reach it by UDP, apart from their replication link. The primary's fh-replicate
beats to it every heartbeat_ms (and the standby's, as a standby); a standby whose primary has gone silent for its
failover timeout asks it, before promoting, how long ago it last heard the primary of its pair: it promotes only if
the witness has not heard it for the failover timeout either. A primary alive behind a cut link keeps beating here,
so its standby does not promote (no split brain); a standby that cannot reach the witness does not promote either.

One datagram of 64 bytes, little-endian (fh_wit_msg_t in native/replicate/replicate.c):

    magic u32 "FHW1" | type u8 (1 BEAT, 2 QUERY, 3 ANSWER) | role u8 (1 primary, 2 standby) | flags u16 |
    epoch u32 | pad u32 | nonce u64 | age_ms u64 | pair 32 bytes (NUL-padded)

BEAT: the sender's role and epoch, under its pair id. QUERY: answered with ANSWER, the nonce and pair echoed: the
epoch the pair's primary last said and the ms since its last beat (flags 1), or, none heard, the ms since this
witness started (flags 0): a witness just started does not let a standby promote before it has listened for the
failover timeout. Anything else (a wrong size, magic, type or role, an empty or unterminated pair id) is counted and
ignored. The witness keeps its record in memory only: a restart forgets it, which costs a standby asking then at most
one failover timeout (above).

Off every hot path: plain asyncio, one process."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import socket
import struct
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from .errors import FhError

MAGIC = 0x31574846  # "FHW1"
BEAT, QUERY, ANSWER = 1, 2, 3
PRIMARY, STANDBY = 1, 2
HEARD = 1  # ANSWER.flags: the pair's primary was heard (else age_ms is this witness's uptime)
MSG = struct.Struct("<IBBHIIQQ32s")
assert MSG.size == 64
MAX_PAIRS = 4096  # a flood of made-up pair ids cannot grow the record past this (the oldest pair goes)
MAX_HOSTS = 8  # senders heard per pair (by IP and port: two hosts may share an address; the longest silent goes)


class WitnessError(FhError):
    pass


@dataclass
class Host:
    role: int
    epoch: int
    heard_ns: int
    beats: int = 0


@dataclass
class Pair:
    hosts: dict[str, Host] = field(default_factory=dict)  # by the sender's address, "IP:PORT"
    touched_ns: int = 0


def pack(type_: int, pair: str | bytes, *, role: int = 0, flags: int = 0, epoch: int = 0, nonce: int = 0,
         age_ms: int = 0) -> bytes:
    p = pair.encode() if isinstance(pair, str) else pair
    return MSG.pack(MAGIC, type_, role, flags, epoch, 0, nonce, age_ms, p)


def unpack(data: bytes) -> dict | None:
    """A datagram's fields, or None if it is not one of ours."""
    if len(data) != MSG.size:
        return None
    magic, type_, role, flags, epoch, _, nonce, age_ms, pair = MSG.unpack(data)
    if magic != MAGIC or type_ not in (BEAT, QUERY, ANSWER):
        return None
    name, nul, rest = pair.partition(b"\0")
    if not name or not nul or rest.strip(b"\0") or not name.isascii() or not name.decode().isprintable():
        return None
    return {"type": type_, "role": role, "flags": flags, "epoch": epoch, "nonce": nonce, "age_ms": age_ms,
            "pair": name.decode()}


class Witness:
    """The record and the rules, without a socket (the unit tests drive handle() directly)."""

    def __init__(self, now_ns: int | None = None, log=None):
        self.started_ns = time.monotonic_ns() if now_ns is None else now_ns
        self.pairs: OrderedDict[str, Pair] = OrderedDict()  # the least recently beaten first
        self.stats = {"beats": 0, "queries": 0, "answers": 0, "malformed": 0, "unknown_pair": 0, "errors": 0}
        self.log = log or (lambda s: None)

    def handle(self, data: bytes, addr, now_ns: int | None = None) -> bytes | None:
        """One datagram from addr (ip, port): the answer to send back, or None."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        m = unpack(data)
        if m is None or m["type"] == ANSWER or (m["type"] == BEAT and m["role"] not in (PRIMARY, STANDBY)):
            self.stats["malformed"] += 1
            return None
        if m["type"] == BEAT:
            self._beat(m, f"{addr[0]}:{addr[1]}", now)
            return None
        self.stats["queries"] += 1
        p = self.pairs.get(m["pair"])
        prim = [h for h in p.hosts.values() if h.role == PRIMARY] if p else []
        if p is None:
            self.stats["unknown_pair"] += 1
        self.stats["answers"] += 1
        if prim:
            last = max(prim, key=lambda h: h.heard_ns)  # any primary of the pair heard counts: the safe side
            return pack(ANSWER, m["pair"], flags=HEARD, epoch=last.epoch, nonce=m["nonce"],
                        age_ms=max(0, now - last.heard_ns) // 1_000_000)
        return pack(ANSWER, m["pair"], nonce=m["nonce"], age_ms=max(0, now - self.started_ns) // 1_000_000)

    def _beat(self, m: dict, ip: str, now: int) -> None:
        self.stats["beats"] += 1
        p = self.pairs.get(m["pair"])
        if p is None:
            if len(self.pairs) >= MAX_PAIRS:  # O(1): a flood of made-up ids costs no more than beats
                self.pairs.popitem(last=False)
            p = self.pairs[m["pair"]] = Pair()
        else:
            self.pairs.move_to_end(m["pair"])
        p.touched_ns = now
        h = p.hosts.get(ip)
        if h is None:
            if len(p.hosts) >= MAX_HOSTS:
                del p.hosts[min(p.hosts, key=lambda k: p.hosts[k].heard_ns)]
            h = p.hosts[ip] = Host(m["role"], m["epoch"], now)
            self.log(f"pair {m['pair']}: {ip} heard, {_role(m['role'])} at epoch {m['epoch']}")
        elif (h.role, h.epoch) != (m["role"], m["epoch"]):
            self.log(f"pair {m['pair']}: {ip} is {_role(m['role'])} at epoch {m['epoch']} now "
                     f"({_role(h.role)} at epoch {h.epoch} before)")
        h.role, h.epoch, h.heard_ns = m["role"], m["epoch"], now
        h.beats += 1

    def table(self, now_ns: int | None = None) -> dict:
        now = time.monotonic_ns() if now_ns is None else now_ns
        return {name: {ip: {"role": _role(h.role), "epoch": h.epoch, "age_ms": (now - h.heard_ns) // 1_000_000,
                            "beats": h.beats} for ip, h in p.hosts.items()} for name, p in self.pairs.items()}


def _role(r: int) -> str:
    return {PRIMARY: "primary", STANDBY: "standby"}.get(r, str(r))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, w: Witness):
        self.w = w
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            out = self.w.handle(data, addr)
            if out is not None:
                self.transport.sendto(out, addr)
        except Exception as e:  # never down for one datagram
            self.w.stats["errors"] += 1
            if self.w.stats["errors"] <= 10:
                self.w.log(f"a datagram from {addr}: {type(e).__name__}: {e}")

    def error_received(self, exc):  # an ICMP error for an answer sent: the asker went away
        self.w.stats["errors"] += 1


def parse_listen(v: str) -> tuple[str, int]:
    """ADDR:PORT (an IPv4 address of this host or 0.0.0.0, port 1-65535): (addr, port), else one line."""
    host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise WitnessError(f"--listen {v}: expected ADDR:PORT (port 1-65535), e.g. 0.0.0.0:7410")
    host = host or "0.0.0.0"
    try:
        a = ipaddress.IPv4Address(host)
    except ValueError:
        raise WitnessError(f"--listen {v}: {host} is not an IPv4 address of this host (or 0.0.0.0 for all)") from None
    if a.is_multicast or a == ipaddress.IPv4Address("255.255.255.255"):
        raise WitnessError(f"--listen {v}: an address of this host, or 0.0.0.0 for all")
    return host, int(port)


def bind(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        why = ("the port is in use (another fh witness?)" if e.errno == 98 else
               "not an address of this host" if e.errno == 99 else e.strerror)
        raise WitnessError(f"--listen {listen}: {why}") from None
    s.setblocking(False)
    return s


async def serve(sock: socket.socket, w: Witness, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(w), sock=sock)
    try:
        await stop.wait()
    finally:
        transport.close()


def cmd_witness(a) -> int:
    try:
        sock = bind(a.listen)
    except WitnessError as e:
        raise FhError(str(e)) from None

    def log(s: str) -> None:
        print(f"fh witness: {s}", file=sys.stderr, flush=True)

    w = Witness(log=log)
    log(f"listening on {a.listen} (UDP; its record is in memory only: a restart forgets it)")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        await serve(sock, w, stop)

    asyncio.run(main())
    print(json.dumps({**w.stats, "pairs": w.table()}), flush=True)
    return 0


def register(sub, positive=None, nonneg=None) -> None:
    from .ui import HelpFormatter, examples

    p = sub.add_parser("witness", help="a third host that tells a dead primary from a cut replication link",
                       formatter_class=HelpFormatter,
                       description="Answer a standby asking whether the primary of its pair still beats here, so that "
                                   "a cut replication link does not make two primaries ([replication] witness, "
                                   "docs/replication.md). Stops at SIGTERM/SIGINT with one JSON line of counts.",
                       epilog=examples("fh witness --listen 0.0.0.0:7410"))
    p.add_argument("--listen", required=True, metavar="ADDR:PORT", help="the UDP address to answer on")
    p.set_defaults(func=cmd_witness)
