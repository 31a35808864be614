"""`fh pcap synth` and `fh pcap inspect`: MoldUDP64 captures of an ITCH day, and what is inside one.

Datagrams pack consecutive messages up to the MTU (bursts share a datagram, as the exchange's do), carry
the capture time of their first message's ITCH timestamp, and go out on an A and a B line (distinct
multicast groups) with the B copy a few microseconds behind. Frame headers come from scapy; the packer
patches lengths and the IPv4 checksum itself so that millions of messages pack in seconds.
"""

from __future__ import annotations

import contextlib
import heapq
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import native
from ..errors import InputError

MTU = 1500
IP_UDP = 28
MOLD_HDR = 20
DEFAULT_A = ("233.54.12.111", 26477)
DEFAULT_B = ("233.49.196.111", 26477)
DEFAULT_SESSION = "FHSYNTH001"
# The capture's trading day: ITCH timestamps count nanoseconds since midnight US Eastern time, so a capture's
# clock starts at 2025-12-04 00:00:00 America/New_York (EST, UTC-5) = 05:00:00 UTC.
BASE_EPOCH_NS = (1_764_806_400 + 5 * 3600) * 10**9


@dataclass
class Line:
    group: str
    port: int
    src: str = "10.0.0.1"
    vlan: int | None = None
    delay_ns: int = 0


def _template(line: Line) -> bytes:
    """Ethernet (+VLAN) + IPv4 + UDP headers for this line, from scapy, with lengths to patch."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    octets = [int(x) for x in line.group.split(".")]
    mac = "01:00:5e:%02x:%02x:%02x" % (octets[1] & 0x7F, octets[2], octets[3])
    eth = Ether(src="02:00:00:00:00:01", dst=mac)
    l3 = IP(src=line.src, dst=line.group, ttl=16, id=0, flags="DF") / UDP(sport=49152, dport=line.port, chksum=0)
    frame = eth / Dot1Q(vlan=line.vlan) / l3 if line.vlan is not None else eth / l3
    return bytes(frame)


def _ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class PcapWriter:
    """Classic pcap, nanosecond timestamps (magic a1b23c4d), Ethernet."""

    def __init__(self, path: str | Path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))

    def write(self, ts_ns: int, frame: bytes) -> None:
        self.f.write(struct.pack("<IIII", ts_ns // 10**9, ts_ns % 10**9, len(frame), len(frame)) + frame)

    def close(self) -> None:
        self.f.close()


class Framer:
    def __init__(self, line: Line):
        self.tpl = bytearray(_template(line))
        self.ip_off = len(self.tpl) - IP_UDP
        self.ident = 0

    def frame(self, payload: bytes) -> bytes:
        t = self.tpl
        ip = self.ip_off
        total = IP_UDP + len(payload)
        self.ident = (self.ident + 1) & 0xFFFF
        struct.pack_into("!HH", t, ip + 2, total, self.ident)
        struct.pack_into("!H", t, ip + 10, 0)
        struct.pack_into("!H", t, ip + 10, _ip_checksum(bytes(t[ip:ip + 20])))
        struct.pack_into("!H", t, ip + 24, 8 + len(payload))
        return bytes(t) + payload


class _NoBar:
    def advance(self, n: int = 1) -> None:
        pass


def _bar(progress, total: int | None, what: str):
    """progress: None (nothing shown) or a factory as handler.ui.progress (total, what) -> context manager."""
    return contextlib.nullcontext(_NoBar()) if progress is None else progress(total, what)


def packetize(data: bytes, mtu: int = MTU, burst_ns: int | None = None,
              progress=None) -> list[tuple[int, list[bytes]]]:
    """Group a day's messages into datagrams: consecutive messages up to the MTU, or (with burst_ns) only
    those within burst_ns of the datagram's first one. Returns (ITCH timestamp of the first message,
    messages) per datagram. progress: as handler.ui.progress, a bar over the day's bytes."""
    with _bar(progress, len(data), "packing the day into datagrams (bytes)") as bar:
        return _packetize(data, mtu, burst_ns, bar)


def _packetize(data: bytes, mtu: int, burst_ns: int | None, bar) -> list[tuple[int, list[bytes]]]:
    room = mtu - IP_UDP - MOLD_HDR
    out: list[tuple[int, list[bytes]]] = []
    cur: list[bytes] = []
    size = 0
    t0 = 0
    done = 0
    for k, (off, m) in enumerate(native.iter_blocks(data), 1):
        if k & 0xFFFF == 0:
            bar.advance(off - done)
            done = off
        m = bytes(m)
        ts = int.from_bytes(m[5:11], "big") if len(m) >= 11 else t0
        if cur and (size + 2 + len(m) > room or (burst_ns is not None and ts - t0 > burst_ns)):
            out.append((t0, cur))
            cur, size = [], 0
        if not cur:
            t0 = ts
        cur.append(m)
        size += 2 + len(m)
    if cur:
        out.append((t0, cur))
    bar.advance(len(data) - done)
    return out


def mold_datagram(session: bytes, seq: int, messages: list[bytes], count: int | None = None) -> bytes:
    n = len(messages) if count is None else count
    return session + struct.pack(">QH", seq, n) + b"".join(struct.pack(">H", len(m)) + m for m in messages)


def synth_pcap(out: str | Path, data: bytes, lines: list[Line], session: str = DEFAULT_SESSION,
               mtu: int = MTU, end_of_session: bool = True, burst_ns: int | None = None, progress=None) -> dict:
    """Write the day in `data` (daily file format) as MoldUDP64 on every line. Returns a summary. progress: as
    handler.ui.progress (fh pcap synth passes it on a terminal): a bar while packing, one while writing."""
    sess = session.encode("ascii").ljust(10)[:10]
    grams = packetize(data, mtu, burst_ns, progress)
    payloads = []  # (ITCH time, payload) of every datagram, the same on every line
    seq = 1
    for ts, msgs in grams:
        payloads.append((ts, mold_datagram(sess, seq, msgs)))
        seq += len(msgs)
    if end_of_session:
        last = grams[-1][0] if grams else 0
        payloads.append((last + 1000, mold_datagram(sess, seq, [], 0xFFFF)))

    def line_frames(li: int):
        l, f = lines[li], Framer(lines[li])
        for ts, payload in payloads:
            yield BASE_EPOCH_NS + ts + l.delay_ns, li, payload, f

    # Each line's times never decrease (ITCH timestamps do not), so merging the lines by time writes the capture
    # in time order, as a capture card would (the B copy of a datagram may follow A's next one).
    w = PcapWriter(out)
    with _bar(progress, len(payloads) * len(lines), f"writing {Path(out).name} (frames)") as bar:
        for k, (t, _, payload, f) in enumerate(heapq.merge(*(line_frames(li) for li in range(len(lines))),
                                                          key=lambda x: x[:2]), 1):
            w.write(t, f.frame(payload))
            if k & 0x3FF == 0:
                bar.advance(0x400)
        bar.advance(len(payloads) * len(lines) & 0x3FF)
    w.close()
    return {"datagrams": len(grams), "messages": seq - 1, "lines": len(lines), "next_sequence": seq}


def synth_faulty_pcap(out: str | Path, data: bytes, lines: list[Line], plan, session: str = DEFAULT_SESSION,
                      mtu: int = MTU, burst_ns: int | None = None, progress=None) -> tuple[dict, dict]:
    """synth_pcap with a fault plan (handler.faults) applied to each line's datagrams before framing. Returns
    the summary and the injected faults. Lines are A, B in that order (at most two). progress: as synth_pcap."""
    from .. import faults

    if isinstance(plan, (str, Path)):
        plan = faults.load_plan(plan)
    grams = packetize(data, mtu, burst_ns, progress)
    if not grams:
        raise InputError("no messages to write")
    per_line, injected = faults.apply_plan(grams, plan, session, len(lines))
    framers = [Framer(l) for l in lines]
    w = PcapWriter(out)
    written = 0
    order = faults.emission_order(per_line)
    # in time order once each line's delay is added (a stable sort keeps the plan's order among equal times)
    timed = sorted(((it.t + lines[li].delay_ns, n, li, it) for n, (li, it) in enumerate(order)), key=lambda x: x[:2])
    with _bar(progress, len(timed), f"writing {Path(out).name} (frames)") as bar:
        for t, _, li, it in timed:
            w.write(BASE_EPOCH_NS + t, framers[li].frame(it.payload()))
            written += 1
            if written & 0x3FF == 0:
                bar.advance(0x400)
        bar.advance(written & 0x3FF)
    w.close()
    return ({"datagrams": len(grams), "messages": injected["messages"], "lines": len(lines), "frames": written},
            injected)


@dataclass
class Inspection:
    packets: int = 0
    datagrams: int = 0
    endpoints: Counter = field(default_factory=Counter)
    sessions: dict = field(default_factory=dict)  # session -> [first seq, last seq, messages]
    gaps: list = field(default_factory=list)      # (session, expected, got)
    types: Counter = field(default_factory=Counter)
    heartbeats: int = 0
    end_of_session: int = 0
    malformed: int = 0
    reader: dict = field(default_factory=dict)


def inspect_pcap(path: str | Path) -> Inspection:
    from .pcapfile import PcapReader
    from ..reference import iter_mold

    ins = Inspection()
    r = PcapReader(path)
    expect: dict[tuple, int] = {}
    for d in r.datagrams():
        ins.datagrams += 1
        key = (d.dst, d.dport)
        ins.endpoints[f"{d.dst}:{d.dport}"] += 1
        dg = iter_mold(d.payload)
        if dg.header is None or dg.malformed:
            ins.malformed += 1
            continue
        h = dg.header
        if h.count == 0:
            ins.heartbeats += 1
            continue
        if h.count == 0xFFFF:
            ins.end_of_session += 1
            continue
        s = ins.sessions.setdefault(h.session, [h.sequence, h.sequence, 0])
        s[0] = min(s[0], h.sequence)
        s[1] = max(s[1], h.sequence + len(dg.messages) - 1)
        s[2] += len(dg.messages)
        nxt = expect.get((key, h.session))
        if nxt is not None and h.sequence > nxt:
            ins.gaps.append((h.session, f"{d.dst}:{d.dport}", nxt, h.sequence))
        expect[(key, h.session)] = max(nxt or 0, h.sequence + len(dg.messages))
        for m in dg.messages:
            ins.types[chr(m[0]) if m else "?"] += 1
    ins.packets = r.counters.get("frames", ins.datagrams)
    ins.reader = {k: v for k, v in r.counters.items() if v}
    return ins
