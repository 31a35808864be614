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

Keyed (--key-file, the same secret as [replication] witness_key_file on both hosts): every datagram is the 64 bytes
above with magic "FHW2", then a 32-byte HMAC-SHA256 tag over those 64 bytes (96 in all), answers too. A keyed witness
counts and ignores an unkeyed datagram or a wrong tag (bad_auth), and a beat whose nonce is not greater than the last
one accepted from its sender (IP:PORT) under that pair, or a primary's beat whose nonce is not greater than the last
primary beat of that pair and epoch from any sender (replayed: a captured beat sent again from another port): the
beaters' nonces start from the wall clock and increase. An unkeyed witness takes a keyed datagram for a malformed one.

Off every hot path: plain asyncio, one process."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import stat
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
MAGIC_KEYED = 0x32574846  # "FHW2": the same 64 bytes, then their HMAC-SHA256 tag
TAG_LEN = 32
KEY_MIN = 32  # bytes of secret in a key file at least (HMAC-SHA256's own output size)
KEY_MAX = 1024  # and at most (fh-replicate's WIT_KEY_MAX: both sides read the same files)
BEAT, QUERY, ANSWER = 1, 2, 3
PRIMARY, STANDBY = 1, 2
HEARD = 1  # ANSWER.flags: the pair's primary was heard (else age_ms is this witness's uptime)
MSG = struct.Struct("<IBBHIIQQ32s")
assert MSG.size == 64
MAX_PAIRS = 4096  # a flood of made-up pair ids cannot grow the record past this (the oldest pair goes)
MAX_EPOCHS = 8  # keyed: epochs whose highest primary beat nonce a pair keeps (Pair.top)
MAX_HOSTS = 8  # senders heard per pair (by IP and port: two hosts may share an address; the longest silent goes)


class WitnessError(FhError):
    pass


@dataclass
class Host:
    role: int
    epoch: int
    heard_ns: int
    beats: int = 0
    nonce: int = 0  # keyed: the last beat's nonce accepted (a beat not above it is a replay)


@dataclass
class Pair:
    hosts: dict[str, Host] = field(default_factory=dict)  # by the sender's address, "IP:PORT"
    touched_ns: int = 0
    # keyed: per epoch, the highest nonce of a primary beat accepted from any sender of the pair (a captured beat
    # sent again from another port is refused too); the newest MAX_EPOCHS epochs
    top: dict[int, int] = field(default_factory=dict)


class KeyFileError(WitnessError):
    pass


def load_key(path: str) -> bytes:
    """A key file's secret (its bytes as they are: the same file on both hosts and the witness), else one line: it
    must exist, hold KEY_MIN to KEY_MAX bytes and be readable by its owner only."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file (a file of at least {KEY_MIN} bytes of secret)")
        if st.st_mode & 0o077:
            raise KeyFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):o}, readable by group or others: "
                               f"chmod 600 {path}")
        with open(path, "rb") as f:
            key = f.read(KEY_MAX + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: {e.strerror} (a file of at least {KEY_MIN} bytes of secret, e.g. head -c 32 "
                           f"/dev/urandom > {path}; chmod 600 {path})") from None
    if not KEY_MIN <= len(key) <= KEY_MAX:
        raise KeyFileError(f"{path}: {'more than ' if len(key) > KEY_MAX else ''}{min(len(key), KEY_MAX)} bytes: "
                           f"{KEY_MIN} to {KEY_MAX} bytes of secret (e.g. head -c 32 /dev/urandom > {path}; "
                           f"chmod 600 {path})")
    return key


def tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def pack(type_: int, pair: str | bytes, *, role: int = 0, flags: int = 0, epoch: int = 0, nonce: int = 0,
         age_ms: int = 0, key: bytes | None = None) -> bytes:
    """A datagram; with key, keyed: magic FHW2 and the tag after the 64 bytes."""
    p = pair.encode() if isinstance(pair, str) else pair
    body = MSG.pack(MAGIC_KEYED if key else MAGIC, type_, role, flags, epoch, 0, nonce, age_ms, p)
    return body + tag(key, body) if key else body


AUTH_OK, AUTH_BAD, AUTH_MALFORMED = 0, 1, 2  # check()


def check(data: bytes, key: bytes | None) -> tuple[int, bytes]:
    """(AUTH_OK, the 64 bytes), or why not: unkeyed, a 64-byte FHW1 datagram; keyed, 96 bytes of FHW2 whose tag
    verifies (constant time), an unkeyed datagram or a wrong tag being AUTH_BAD; anything else AUTH_MALFORMED."""
    magic = int.from_bytes(data[:4], "little") if len(data) >= 4 else None
    if key is None:
        return (AUTH_OK, data) if len(data) == MSG.size else (AUTH_MALFORMED, b"")
    if len(data) == MSG.size and magic == MAGIC:
        return AUTH_BAD, b""
    if len(data) != MSG.size + TAG_LEN or magic != MAGIC_KEYED:
        return AUTH_MALFORMED, b""
    body = data[:MSG.size]
    return (AUTH_OK, body) if hmac.compare_digest(tag(key, body), data[MSG.size:]) else (AUTH_BAD, b"")


def unpack(data: bytes, key: bytes | None = None) -> dict | None:
    """A datagram's fields, or None if it is not one of ours (keyed: its tag verified)."""
    ok, body = check(data, key)
    return _fields(body, key) if ok == AUTH_OK else None


def _fields(body: bytes, key: bytes | None) -> dict | None:
    """The 64 bytes' fields (its tag, if keyed, already verified), or None if it is not one of ours."""
    magic, type_, role, flags, epoch, _, nonce, age_ms, pair = MSG.unpack(body)
    if magic != (MAGIC_KEYED if key else MAGIC) or type_ not in (BEAT, QUERY, ANSWER):
        return None
    name, nul, rest = pair.partition(b"\0")
    if not name or not nul or rest.strip(b"\0") or not name.isascii() or not name.decode().isprintable():
        return None
    return {"type": type_, "role": role, "flags": flags, "epoch": epoch, "nonce": nonce, "age_ms": age_ms,
            "pair": name.decode()}


class Witness:
    """The record and the rules, without a socket (the unit tests drive handle() directly)."""

    def __init__(self, now_ns: int | None = None, log=None, key: bytes | None = None):
        self.started_ns = time.monotonic_ns() if now_ns is None else now_ns
        self.pairs: OrderedDict[str, Pair] = OrderedDict()  # the least recently beaten first
        self.stats = {"beats": 0, "queries": 0, "answers": 0, "malformed": 0, "unknown_pair": 0, "errors": 0,
                      "bad_auth": 0, "replayed": 0}
        self.log = log or (lambda s: None)
        self.key = key  # None: unkeyed (FHW1)

    def handle(self, data: bytes, addr, now_ns: int | None = None) -> bytes | None:
        """One datagram from addr (ip, port): the answer to send back, or None."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        ok, body = check(data, self.key)  # the tag computed once a datagram
        if ok == AUTH_BAD:
            self.stats["bad_auth"] += 1
            return None
        m = _fields(body, self.key) if ok == AUTH_OK else None
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
                        age_ms=max(0, now - last.heard_ns) // 1_000_000, key=self.key)
        return pack(ANSWER, m["pair"], nonce=m["nonce"], age_ms=max(0, now - self.started_ns) // 1_000_000,
                    key=self.key)

    def _beat(self, m: dict, ip: str, now: int) -> None:
        p = self.pairs.get(m["pair"])
        if self.key is not None and p is not None and (
                (ip in p.hosts and m["nonce"] <= p.hosts[ip].nonce)
                or (m["role"] == PRIMARY and m["nonce"] <= p.top.get(m["epoch"], -1))):
            # keyed: an authentic beat seen before (captured and sent again, from its sender's address or another)
            # must not make a dead primary alive. A restarted beater starts its nonces at the wall clock in ns, above
            # its earlier beats; the primaries of one epoch are one host (two only in a tie, which the witness then
            # hears one of: the safe side)
            self.stats["replayed"] += 1
            return
        self.stats["beats"] += 1
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
        h.role, h.epoch, h.heard_ns, h.nonce = m["role"], m["epoch"], now, m["nonce"]
        if self.key is not None and m["role"] == PRIMARY:
            p.top[m["epoch"]] = m["nonce"]  # above the epoch's last (checked above)
            if len(p.top) > MAX_EPOCHS:
                del p.top[min(p.top)]
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
        key = load_key(a.key_file) if a.key_file else None
        sock = bind(a.listen)
    except KeyFileError as e:
        raise FhError(f"--key-file {e}") from None
    except WitnessError as e:
        raise FhError(str(e)) from None

    def log(s: str) -> None:
        print(f"fh witness: {s}", file=sys.stderr, flush=True)

    w = Witness(log=log, key=key)
    log(f"listening on {a.listen} (UDP{', keyed: HMAC-SHA256' if key else ''}; its record is in memory only: a "
        f"restart forgets it)")

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
                       epilog=examples("fh witness --listen 0.0.0.0:7410",
                                       "fh witness --listen 0.0.0.0:7410 --key-file /etc/fh/witness.key"))
    p.add_argument("--listen", required=True, metavar="ADDR:PORT", help="the UDP address to answer on")
    p.add_argument("--key-file", metavar="PATH",
                   help="a shared secret (at least 32 bytes, mode 600; the same as [replication] witness_key_file on "
                        "both hosts): datagrams signed with HMAC-SHA256, unsigned or replayed ones counted and ignored")
    p.set_defaults(func=cmd_witness)
