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
ignored. The witness keeps its record in memory: a restart forgets who it heard, which costs a standby asking then at
most one failover timeout (above).

Keyed (--key-file, the same secret as [replication] witness_key_file on both hosts): every datagram is the 64 bytes
above with magic "FHW2", then a 32-byte HMAC-SHA256 tag over those 64 bytes (96 in all), answers too. A keyed witness
counts and ignores an unkeyed datagram or a wrong tag (bad_auth), and a beat whose nonce is not greater than the last
one accepted from its sender (IP:PORT) under that pair, or a primary's beat whose nonce is not greater than the last
primary beat of that pair and epoch from any sender (replayed: a captured beat sent again from another port): the
beaters' nonces start from the wall clock and increase. An unkeyed witness takes a keyed datagram for a malformed one.
A key is rotated in service: --key-file given again (the next key; a later file not written yet is skipped), a
datagram taken under any key and a query answered under its own, SIGHUP reading the files again (fh-replicate re-reads
its key at SIGHUP too): add the next key, move the pair's hosts to it, drop the old one (docs/replication.md).

That replay record survives a restart only with --state PATH (keyed only: unkeyed, anyone can forge a beat, so there
is no replay to refuse). Without it a restarted witness forgets the last nonces and every authentic beat captured
before could be sent again once and count as the primary heard (a dead primary kept "alive", no failover). With it the
witness saves the record (per pair: each sender's last nonce, role and epoch, and Pair.top) to PATH, replaced
atomically and durably (a temp file in the same directory, fsync, os.replace, fsync of the directory; mode 600: it
names the pairs and hosts), every SAVE_S (0.5 s, a loop timer on a fixed schedule, not per datagram) when beats
changed it, in a forked child (a copy-on-write snapshot: the loop answers on while it writes; Saver), and at
SIGTERM/SIGINT, in line once that child is done; at start it loads PATH, whose nonces are floors only: a beat at or
below one is replayed, but a loaded sender is not "heard" (a restarted witness still answers "not heard, up N ms"
until a real beat comes). What it leaves: after a crash (kill -9, a power cut) the beats accepted since the last save,
0.5 s of them (5 a sender at the default heartbeat_ms of 100), plus however late the loop runs its timer and what the
save takes (at most 6 beats, 0.6 s, in 40 kills before saves ran in a child: bench/witness_state.py), were not saved
and can each be replayed once after the restart, in order: spaced out, they hold a failover for that many failover
timeouts at most (without --state: for as long as the captured beats last). A save that fails at run time (a full
disk) is counted (state_errors), said once a minute at most and tried again at the next tick; the witness keeps
answering.

Off every hot path: plain asyncio, one process (and with --state, a short-lived child for each save)."""
from __future__ import annotations

import asyncio
import glob
import hashlib
import hmac
import ipaddress
import json
import os
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from . import sdnotify
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
SAVE_S = 0.5  # --state: the replay record saved at most this often while beats change it (the window a crash leaves)
STATE_VERSION = 1
STATE_MAX_BYTES = 16 << 20  # a state file at its bounds (4096 pairs of 8 senders and 8 epochs) is ~4 MB
LOG_EVERY_NS = 60_000_000_000  # a failing save is said once a minute at most


class WitnessError(FhError):
    pass


@dataclass
class Host:
    role: int
    epoch: int
    heard_ns: int | None  # None: loaded from --state, a replay floor only, not heard since this witness started
    beats: int = 0
    nonce: int = 0  # keyed: the last beat's nonce accepted (a beat not above it is a replay)
    key: int = -1  # keyed: the index of the key its last beat was signed with (-1: none since the keys were read)


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


MAX_KEYS = 4  # --key-file given at most this often (a rotation needs two: the key in use and the next)


def load_keys(paths: list[str]) -> tuple[tuple[bytes, ...], list[str]]:
    """--key-file, once or more: (the keys, the paths skipped). The first must be a key file (load_key's rules); a
    later one that does not exist is skipped (the next key of a rotation, not written yet), any other fault is one
    line as load_key says it."""
    if len(paths) > MAX_KEYS:
        raise KeyFileError(f"{paths[MAX_KEYS]}: more than {MAX_KEYS} key files (a rotation needs two: the key in use "
                           "and the next)")
    keys, skipped = [], []
    for i, p in enumerate(paths):
        if i and not os.path.lexists(p):
            skipped.append(p)
            continue
        keys.append(load_key(p))
    return tuple(keys), skipped


class StateFileError(WitnessError):
    pass


REMOVE = "remove it to start with an empty record (beats captured before can then be replayed once each)"


def _pair_ok(name) -> bool:  # as a datagram's pair id: 1-31 printable ASCII
    return isinstance(name, str) and 0 < len(name) < 32 and name.isascii() and name.isprintable()


def _uint(v, bits: int) -> bool:
    return type(v) is int and 0 <= v < 1 << bits


def _check_state(d) -> str | None:
    """What is wrong with a parsed state file (None: nothing): the shape state() writes, within the record's bounds."""
    if not isinstance(d, dict) or set(d) != {"version", "pairs"}:
        return "not an object of version and pairs"
    if d["version"] != STATE_VERSION:
        return f"version {d['version']!r}, this fh writes {STATE_VERSION}"
    pairs = d["pairs"]
    if not isinstance(pairs, dict) or len(pairs) > MAX_PAIRS:
        return f"pairs: not an object of at most {MAX_PAIRS} pairs"
    for name, p in pairs.items():
        if not _pair_ok(name):
            return f"pair {name!r}: not a pair id (1-31 printable characters)"
        if not isinstance(p, dict) or set(p) != {"hosts", "top"}:
            return f"pair {name}: not an object of hosts and top"
        hosts, top = p["hosts"], p["top"]
        if not isinstance(hosts, dict) or len(hosts) > MAX_HOSTS:
            return f"pair {name}: hosts: not an object of at most {MAX_HOSTS} senders"
        for ip, h in hosts.items():
            a, sep, port = ip.rpartition(":")
            if not sep or not port.isdigit() or not a or len(ip) > 64:
                return f"pair {name}: sender {ip!r}: not IP:PORT"
            if not (isinstance(h, list) and len(h) == 3 and h[0] in (PRIMARY, STANDBY) and _uint(h[1], 32)
                    and _uint(h[2], 64)):
                return f"pair {name}: sender {ip}: not [role 1 or 2, epoch, nonce]"
        if not isinstance(top, list) or len(top) > MAX_EPOCHS:
            return f"pair {name}: top: not a list of at most {MAX_EPOCHS} [epoch, nonce]"
        if not all(isinstance(t, list) and len(t) == 2 and _uint(t[0], 32) and _uint(t[1], 64) for t in top):
            return f"pair {name}: top: not a list of [epoch, nonce]"
        if len({t[0] for t in top}) != len(top):
            return f"pair {name}: top: an epoch twice"
    return None


def read_state(path: str) -> dict | None:
    """--state PATH's replay record (checked: _check_state), None if there is no such file; else one line: the file,
    what is wrong and the fix. Like a key file, it must be this user's and not open to group or others: floors planted
    by someone else (a huge nonce) would make the witness refuse every real beat, a live primary then looking dead."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # none yet (a directory that cannot hold one: said at the write)
        return None
    except OSError as e:
        raise StateFileError(f"{path}: {e.strerror}: give a path this user can read and write") from None
    if not stat.S_ISREG(st.st_mode):
        raise StateFileError(f"{path}: not a regular file (the witness's replay record, written by fh witness "
                             f"--state): give the path of a file")
    if st.st_uid != os.geteuid():
        raise StateFileError(f"{path}: owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}): chown it to "
                             f"the user running fh witness, or {REMOVE}")
    if st.st_mode & 0o077:
        raise StateFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):o}, open to group or others (it names the pairs "
                             f"and hosts): chmod 600 {path}")
    try:
        with open(path, "rb") as f:
            raw = f.read(STATE_MAX_BYTES + 1)
    except OSError as e:
        raise StateFileError(f"{path}: {e.strerror}: {REMOVE}") from None
    if len(raw) > STATE_MAX_BYTES:
        why = f"more than {STATE_MAX_BYTES} bytes"
    else:
        try:
            d = json.loads(raw)
            why = _check_state(d)
        except (ValueError, RecursionError) as e:  # not UTF-8, not JSON
            why = f"not JSON ({str(e).splitlines()[0]})" if raw.strip() else "empty"
    if why:
        raise StateFileError(f"{path}: not a witness replay record: {why}: {REMOVE}")
    return d


def write_state(path: str, state: dict) -> None:
    """The record to path, atomically and durably: a temp file in its directory (mode 600, from mkstemp), fsync, then
    os.replace and an fsync of the directory, so that a power cut leaves the old record or the new one, whole. OSError
    as it comes (the caller says it)."""
    d, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w") as f:  # dumps, one C call: json.dump's chunk by chunk writes took 2.7 times as long
            f.write(json.dumps(state, separators=(",", ":")))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def remove_temps(path: str) -> None:
    """The temp files of saves to path that a kill mid-write left (write_state's mkstemp names): path's only."""
    d, base = os.path.split(os.path.abspath(path))
    for t in glob.glob(os.path.join(glob.escape(d), glob.escape(f".{base}.") + "*.tmp")):
        try:
            os.unlink(t)
        except OSError:
            pass


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


def check_keys(data: bytes, keys: tuple[bytes, ...]) -> tuple[int, bytes, int]:
    """check() under each of keys in turn (a key being rotated: the one in use and the next): (AUTH_OK, the 64 bytes,
    the index of the key whose tag it carries), else as check() says, index -1. No keys: unkeyed."""
    if not keys:
        ok, body = check(data, None)
        return ok, body, -1
    ok, body = check(data, keys[0])
    if ok != AUTH_BAD or len(data) != MSG.size + TAG_LEN:
        return ok, body, 0 if ok == AUTH_OK else -1
    body, t = data[:MSG.size], data[MSG.size:]
    for i, k in enumerate(keys[1:], 1):
        if hmac.compare_digest(tag(k, body), t):
            return AUTH_OK, body, i
    return AUTH_BAD, b"", -1


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

    def __init__(self, now_ns: int | None = None, log=None, key: bytes | None = None,
                 keys: tuple[bytes, ...] = ()):
        self.started_ns = time.monotonic_ns() if now_ns is None else now_ns
        self.pairs: OrderedDict[str, Pair] = OrderedDict()  # the least recently beaten first
        self.stats = {"beats": 0, "queries": 0, "answers": 0, "malformed": 0, "unknown_pair": 0, "errors": 0,
                      "bad_auth": 0, "replayed": 0}
        self.log = log or (lambda s: None)
        self.keys: tuple[bytes, ...] = ()  # none: unkeyed (FHW1); more than one while a key is rotated
        self.by_key: list[int] = []  # keyed: datagrams whose tag verified under each key
        self.rekey(tuple(keys) if keys else (key,) if key is not None else ())
        self.stats["state_errors"] = 0  # --state: saves that failed (the record kept in memory, retried)
        self.dirty = False  # keyed: the replay record changed since it was last saved (--state)

    @property
    def key(self) -> bytes | None:
        """The first key (None: unkeyed)."""
        return self.keys[0] if self.keys else None

    def rekey(self, keys: tuple[bytes, ...]) -> None:
        """The keys datagrams are verified under (each in turn; the same bytes twice count once): a key is rotated by
        adding the next one, moving the pair's hosts to it, then dropping the old one. Keyed stays keyed."""
        keys = tuple(dict.fromkeys(keys))
        if keys != self.keys:
            self.keys, self.by_key = keys, [0] * len(keys)
            for p in self.pairs.values():
                for h in p.hosts.values():
                    h.key = -1

    def handle(self, data: bytes, addr, now_ns: int | None = None) -> bytes | None:
        """One datagram from addr (ip, port): the answer to send back, or None. Keyed, the answer is signed with the
        key the query was."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        ok, body, ix = check_keys(data, self.keys)  # the tag computed once a datagram (a key a try)
        if ok == AUTH_BAD:
            self.stats["bad_auth"] += 1
            return None
        key = self.keys[ix] if ix >= 0 else None
        m = _fields(body, key) if ok == AUTH_OK else None
        if m is None or m["type"] == ANSWER or (m["type"] == BEAT and m["role"] not in (PRIMARY, STANDBY)):
            self.stats["malformed"] += 1
            return None
        if ix >= 0:
            self.by_key[ix] += 1
        if m["type"] == BEAT:
            self._beat(m, f"{addr[0]}:{addr[1]}", now, ix)
            return None
        self.stats["queries"] += 1
        p = self.pairs.get(m["pair"])
        # a sender loaded from --state is a replay floor only: not heard by this witness (it answers its uptime)
        prim = [h for h in p.hosts.values() if h.role == PRIMARY and h.heard_ns is not None] if p else []
        if p is None:
            self.stats["unknown_pair"] += 1
        self.stats["answers"] += 1
        if prim:
            last = max(prim, key=lambda h: h.heard_ns)  # any primary of the pair heard counts: the safe side
            return pack(ANSWER, m["pair"], flags=HEARD, epoch=last.epoch, nonce=m["nonce"],
                        age_ms=max(0, now - last.heard_ns) // 1_000_000, key=key)
        return pack(ANSWER, m["pair"], nonce=m["nonce"], age_ms=max(0, now - self.started_ns) // 1_000_000, key=key)

    def _beat(self, m: dict, ip: str, now: int, ix: int = -1) -> None:
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
        if h is None or h.heard_ns is None:  # new, or a floor loaded from --state: heard now
            if h is None:
                if len(p.hosts) >= MAX_HOSTS:  # the longest silent goes, a loaded floor never heard first
                    del p.hosts[min(p.hosts, key=lambda k: -1 if p.hosts[k].heard_ns is None else p.hosts[k].heard_ns)]
                h = p.hosts[ip] = Host(m["role"], m["epoch"], now)
            self.log(f"pair {m['pair']}: {ip} heard, {_role(m['role'])} at epoch {m['epoch']}")
        elif (h.role, h.epoch) != (m["role"], m["epoch"]):
            self.log(f"pair {m['pair']}: {ip} is {_role(m['role'])} at epoch {m['epoch']} now "
                     f"({_role(h.role)} at epoch {h.epoch} before)")
        if len(self.keys) > 1 and h.key != ix:  # a key being rotated: who has moved to which (said once a move)
            self.log(f"pair {m['pair']}: {ip} signs with key {ix + 1} of {len(self.keys)}"
                     + (f" now (key {h.key + 1} before)" if h.key >= 0 else ""))
        h.role, h.epoch, h.heard_ns, h.nonce, h.key = m["role"], m["epoch"], now, m["nonce"], ix
        if self.key is not None and m["role"] == PRIMARY:
            p.top[m["epoch"]] = m["nonce"]  # above the epoch's last (checked above)
            if len(p.top) > MAX_EPOCHS:
                del p.top[min(p.top)]
        h.beats += 1
        if self.key is not None:
            self.dirty = True

    def table(self, now_ns: int | None = None) -> dict:
        """The senders heard since this witness started, by pair (the floors loaded from --state are not)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        t = {name: {ip: {"role": _role(h.role), "epoch": h.epoch, "age_ms": (now - h.heard_ns) // 1_000_000,
                         "beats": h.beats} for ip, h in p.hosts.items() if h.heard_ns is not None}
             for name, p in self.pairs.items()}
        return {name: hosts for name, hosts in t.items() if hosts}

    def state(self) -> dict:
        """The replay record (--state): per pair, the least recently beaten first, each sender's last nonce, role and
        epoch, and the newest primary nonce per epoch. No times: monotonic ones mean nothing after a restart."""
        return {"version": STATE_VERSION,
                "pairs": {name: {"hosts": {ip: [h.role, h.epoch, h.nonce] for ip, h in p.hosts.items()},
                                 "top": [[e, n] for e, n in p.top.items()]} for name, p in self.pairs.items()}}

    def load(self, state: dict) -> None:
        """A record from state() (read_state checked it) as replay floors: its senders not heard (heard_ns None)."""
        self.pairs.clear()
        for name, d in state["pairs"].items():
            p = self.pairs[name] = Pair()
            p.hosts = {ip: Host(role, epoch, None, nonce=nonce) for ip, (role, epoch, nonce) in d["hosts"].items()}
            p.top = {e: n for e, n in d["top"]}
        self.dirty = False


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


async def serve(sock: socket.socket, w: Witness, stop: asyncio.Event, saver=None) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(w), sock=sock)
    tick = asyncio.create_task(_save_every(saver)) if saver else None
    try:
        await stop.wait()
    finally:
        transport.close()
        if tick:
            tick.cancel()


async def _save_every(saver) -> None:
    """--state: the record saved every SAVE_S when beats changed it (a timer: a flood of beats costs no more saves).
    On a fixed schedule, not SAVE_S after the last save ended: the crash window stays SAVE_S, not SAVE_S plus a save."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        due = max(due + SAVE_S, loop.time())  # a loop late past a tick skips it rather than saving twice in a row
        await asyncio.sleep(due - loop.time())
        saver.save()


class Saver:
    """--state PATH for a keyed Witness: save() writes its record if changed; a failure is counted (state_errors),
    said once a minute at most, and the record is dirty again, so the next tick tries again.

    background (fh witness): a tick's save runs in a forked child (a copy-on-write snapshot of the record, as Redis's
    BGSAVE does), so the loop answers on while the record is encoded, written and fsynced: a save at the record's
    bounds (3.2 MB) took the loop 80 ms in line, a fork takes it ~1-3 ms (bench/witness_state.py). The child is
    reaped at the next tick (a tick that finds it still writing waits for the one after; the crash window grows by
    what a save takes) and at exit, where the last save is made in line once the child is done."""

    def __init__(self, w: Witness, path: str, background: bool = False):
        self.w, self.path, self.said_ns, self.background = w, path, None, background
        self.child: int | None = None  # the pid of a save in progress (background)

    def save(self, final: bool = False) -> bool:
        """final: at exit (in line, after waiting for a save in progress), a failure said whenever (the last word on
        what a restart will refuse). False: a save failed (this one, or the background one reaped now)."""
        ok = True
        if self.child is not None:
            done = self._reap(block=final)
            if done is None:  # still writing: this tick's changes go with the next tick's save
                return True
            ok = done
        if not self.w.dirty:
            return ok
        if self.background and not final:
            try:
                pid = os.fork()
            except OSError:  # no memory or process for a child: this once, in line
                pid = None
            if pid == 0:
                os._exit(_child_save(self.path, self.w))
            if pid is not None:
                self.child, self.w.dirty = pid, False
                return ok
        try:
            write_state(self.path, self.w.state())
        except OSError as e:
            self._failed(e.strerror, final)
            return False
        self.w.dirty = False
        return ok

    def _reap(self, block: bool) -> bool | None:
        """The background save's outcome: True saved, False failed (said, the record dirty again), None running."""
        pid, status = os.waitpid(self.child, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        self.child = None
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            return True
        self.w.dirty = True
        remove_temps(self.path)
        self._failed(os.strerror(code) if 0 < code < 255 else "the saving child's error, above" if code == 255
                     else f"the saving child killed by signal {-code}", False)
        return False

    def _failed(self, why: str, final: bool) -> None:
        self.w.stats["state_errors"] += 1
        now = time.monotonic_ns()
        if final or self.said_ns is None or now - self.said_ns >= LOG_EVERY_NS:
            self.said_ns = now
            self.w.log(f"--state {self.path}: not saved ({why}; {self.w.stats['state_errors']} failed saves so far): "
                       + ("at exit: the beats since the last save can be replayed once after a restart" if final
                          else f"still answering, from the record in memory; retried every {SAVE_S:g} s"))


def _child_save(path: str, w: Witness) -> int:
    """In the forked child: the record written; its exit status (0, errno, 255 for anything else). A SIGTERM or
    SIGINT for the whole group (systemd's stop) does not cut the write short: the parent waits for it, then saves.
    Every descriptor but stdio closed first: a witness restarted after a kill -9 must not find its port still held
    by the child of the one before."""
    try:
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        write_state(path, w.state())
        return 0
    except OSError as e:
        return e.errno if e.errno and 0 < e.errno < 255 else 255
    except BaseException:
        import traceback
        traceback.print_exc()
        return 255
    finally:
        sys.stderr.flush()


def open_state(path: str, w: Witness, saved: dict | None, background: bool = False) -> Saver:
    """--state at start: the record read (read_state: None, no file yet) loaded into w, and written back at once, so
    that a directory that cannot be written fails now, in one line, before listening, not at the first save."""
    if saved is not None:
        w.load(saved)
    remove_temps(path)
    try:
        write_state(path, w.state())
    except OSError as e:
        d = os.path.dirname(os.path.abspath(path))
        raise StateFileError(f"{path}: cannot write in {d} ({e.strerror}): a directory this user can write "
                             f"(e.g. /var/lib/fh, mode 700)") from None
    return Saver(w, path, background)


def cmd_witness(a) -> int:
    state = a.state
    if state and not a.key_file:
        raise FhError(f"--state {state}: only with --key-file: it keeps the replay record of keyed beats (their "
                      f"nonces) across a restart, and unkeyed anyone can forge a beat anyway")

    def log(s: str) -> None:
        print(f"fh witness: {s}", file=sys.stderr, flush=True)

    sdnotify.take()  # not for the saving children
    early_hup: list[int] = []  # a SIGHUP before the loop handles it (fh reload --witness as it starts): taken up then
    signal.signal(signal.SIGHUP, lambda *_: early_hup.append(1))
    try:
        keys, skipped = load_keys(a.key_file) if a.key_file else ((), [])
        key = keys[0] if keys else None
        w = Witness(log=log, keys=keys)
        saved = read_state(state) if state else None  # before binding: a bad file is said without touching the port
        sock = bind(a.listen)
    except KeyFileError as e:
        raise FhError(f"--key-file {e}") from None
    except StateFileError as e:
        raise FhError(f"--state {e}") from None
    except WitnessError as e:
        raise FhError(str(e)) from None
    saver = None
    if state:
        try:  # bound: a second witness on the port fails above, without writing over the first's record
            saver = open_state(state, w, saved, background=True)
        except StateFileError as e:
            sock.close()
            raise FhError(f"--state {e}") from None
    if saver:
        n = sum(len(p.hosts) for p in w.pairs.values())
        kept = (f"its replay record saved to {state} every {SAVE_S:g} s while beats change it and at exit (loaded: "
                f"{len(w.pairs)} pairs, {n} senders: floors, not heard)")
    elif key:
        kept = "its record is in memory only: a restart forgets the beats' nonces (--state PATH keeps them)"
    else:
        kept = "its record is in memory only: a restart forgets it"
    from .process import boot_s

    status = {"pid": os.getpid(), "boot_s": boot_s(), "listen": a.listen, "reloads": 0, "reload_ok": None,
              "said": ""}
    if a.status:
        try:  # before READY=1: a reload (fh reload --witness) finds the file from then on
            write_state(a.status, status)
        except OSError as e:
            sock.close()
            raise FhError(f"--status {a.status}: cannot write in {os.path.dirname(os.path.abspath(a.status))} "
                          f"({e.strerror}): a directory this user can write (the unit's RuntimeDirectory, "
                          f"/run/fh-witness)") from None
    log(f"listening on {a.listen} (UDP{', keyed: HMAC-SHA256' if key else ''}{_keys_said(keys, skipped)}; {kept})")

    def reread() -> None:
        """SIGHUP: the key files read again (a rotation: the next key added, or the old one dropped), all or none;
        the outcome in --status (fh reload --witness waits for it)."""
        ok = True
        if not keys:
            said = "SIGHUP: unkeyed (no --key-file): nothing to read again"
        else:
            try:
                new, gone = load_keys(a.key_file)
                w.rekey(new)
                said = (f"SIGHUP: --key-file read again: {len(w.keys)} key{'s' if len(w.keys) > 1 else ''} in use"
                        + "".join(f", {p}: no such file, skipped" for p in gone))
            except KeyFileError as e:
                ok, said = False, f"SIGHUP: --key-file {e}: the keys in use stay"
        log(said)
        if a.status:
            status.update(reloads=status["reloads"] + 1, reload_ok=ok, said=said)
            try:
                write_state(a.status, status)
            except OSError as e:  # (fh reload --witness times out and says to read this line)
                log(f"--status {a.status}: not written ({e.strerror}): fh reload --witness cannot see this reload")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reread)
        if early_hup:
            reread()
        # Type=notify (fh-witness.service): systemd holds `systemctl reload` until now, when SIGHUP is handled
        sdnotify.notify("READY=1", f"STATUS=listening on {a.listen}")
        await serve(sock, w, stop, saver)

    asyncio.run(main())
    if saver:
        saver.save(final=True)
    print(json.dumps({**w.stats, "pairs": w.table(), **({"by_key": w.by_key} if w.keys else {})}), flush=True)
    return 0


def _keys_said(keys: tuple[bytes, ...], skipped: list[str]) -> str:
    """A start or SIGHUP line's word on the keys when there is more than one --key-file."""
    if len(keys) <= 1 and not skipped:
        return ""
    return (f", {len(keys)} keys, a datagram taken under any and answered under its own" if len(keys) > 1 else "") \
        + "".join(f", {p}: no such file, skipped (the next key, not written yet)" for p in skipped)


def register(sub, positive=None, nonneg=None) -> None:
    from .ui import HelpFormatter, examples

    p = sub.add_parser("witness", help="a third host that tells a dead primary from a cut replication link",
                       formatter_class=HelpFormatter,
                       description="Answer a standby asking whether the primary of its pair still beats here, so that "
                                   "a cut replication link does not make two primaries ([replication] witness, "
                                   "docs/replication.md). Stops at SIGTERM/SIGINT with one JSON line of counts; "
                                   "SIGHUP reads the key files again (a key rotation).",
                       epilog=examples("fh witness --listen 0.0.0.0:7410",
                                       "fh witness --listen 0.0.0.0:7410 --key-file /etc/fh/witness.key",
                                       "fh witness --listen 0.0.0.0:7410 --key-file /etc/fh/witness.key "
                                       "--state /var/lib/fh/witness.state",
                                       "fh witness --listen 0.0.0.0:7410 --key-file /etc/fh/witness.key "
                                       "--key-file /etc/fh/witness.next.key --state /var/lib/fh/witness.state"))
    p.add_argument("--listen", required=True, metavar="ADDR:PORT", help="the UDP address to answer on")
    p.add_argument("--key-file", metavar="PATH", action="append",
                   help="a shared secret (at least 32 bytes, mode 600; the same as [replication] witness_key_file on "
                        "both hosts): datagrams signed with HMAC-SHA256, unsigned or replayed ones counted and ignored. "
                        f"Given again (at most {MAX_KEYS}), each key is taken and an answer signed with the query's: "
                        "a key is rotated by adding the next (a later file that does not exist yet is skipped), "
                        "moving the pair's hosts to it, then dropping the old; SIGHUP reads the files again")
    p.add_argument("--state", metavar="PATH",
                   help="keyed only: keep the replay record (the beats' last nonces) in this file (mode 600, replaced "
                        f"atomically every {SAVE_S:g} s while beats change it, and at exit), so that beats captured "
                        "before a restart are refused after it, e.g. /var/lib/fh/witness.state")
    p.add_argument("--status", metavar="PATH",
                   help="write this process's pid and the outcome of each SIGHUP to PATH (JSON), so that `fh reload "
                        "--witness PATH` (the unit's ExecReload) waits for a reload to be done and fails when the key "
                        "files were refused, e.g. /run/fh-witness/status.json")
    p.set_defaults(func=cmd_witness)


def reload(status: str, timeout: float = 30.0) -> tuple[int, str]:
    """SIGHUP to the fh witness whose --status is `status` (fh-witness.service's ExecReload), then wait until it
    has taken it up: (exit status, one line). 0 once its key files are read again (or it is unkeyed: nothing to
    read); 1 when it refused them (the keys in use stay: it says why), when no witness runs there, or when `timeout`
    seconds pass first, so that `systemctl reload` and the Ansible handler behind it fail where the reload did not
    take. (Before, ExecReload was a shell's kill: systemctl reload returned before the witness had read anything, and
    a host moved to the next key at once could have its beats refused meanwhile.)"""
    from .process import pid_is

    def read() -> dict | None:
        try:
            with open(status) as f:
                doc = json.load(f)
            # what fh witness --status writes: its pid and when it started (boot_s), so that a pid reused by another
            # process is never signalled (a file without boot_s, or pid 1, sent SIGHUP to whatever ran there)
            ok = (isinstance(doc, dict) and type(doc.get("pid")) is int and doc["pid"] > 1
                  and type(doc.get("boot_s")) in (int, float) and type(doc.get("reloads", 0)) is int)
            return doc if ok else None
        except (OSError, ValueError):
            return None

    doc = read()
    if doc is None:
        why = "no such file" if not os.path.exists(status) else "not an fh witness status file"
        return 1, (f"{status}: {why}: no fh witness runs with --status {status} (systemctl start fh-witness, or "
                   f"fh witness --listen ADDR:PORT --status {status})")
    pid, n0 = doc["pid"], doc.get("reloads", 0)
    if not pid_is(pid, doc.get("boot_s")):
        return 1, (f"fh witness (pid {pid}, {status}) is not running: nothing to reload; start it (systemctl start "
                   f"fh-witness)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return 1, f"fh witness (pid {pid}) is gone"
    except PermissionError:
        return 1, f"fh witness (pid {pid}): not allowed to signal it: run this as its user ({status}'s owner) or root"
    deadline = time.monotonic() + timeout
    while True:
        doc = read()
        if doc and doc["pid"] == pid and doc.get("reloads", 0) > n0:
            said = str(doc.get("said", "")).removeprefix("SIGHUP: ")
            return (0, f"fh witness (pid {pid}) reloaded: {said}") if doc.get("reload_ok") else \
                (1, f"fh witness (pid {pid}) refused the reload: {said}")
        if doc and doc["pid"] != pid:
            return 1, (f"fh witness (pid {pid}) was replaced by pid {doc['pid']} meanwhile: a new one reads its keys "
                       "at start")
        if time.monotonic() >= deadline:
            return 1, (f"fh witness (pid {pid}) did not take the SIGHUP up within {timeout:g} s (its log says why: "
                       f"journalctl -u fh-witness)")
        time.sleep(0.02)
