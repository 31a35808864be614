#!/usr/bin/env python3
"""Seed corpora for the fuzz targets of native/fuzz, in the input format each target documents at its top.

    python3 scripts/fuzz_seeds.py OUTDIR [--real DIR]

writes OUTDIR/{net,mold,feed,book,shm}/ from the project's pcaps/ (the generated A/B day and ITCH file) and,
when present, the real NASDAQ captures and ITCH slices in DIR (default ../shared/data/real; skipped with a
note when absent). Deterministic: the same inputs give the same files. Only scripts/fuzz.sh needs it; the
seeds are not kept in the repository (native/fuzz/regress/ keeps the few small inputs that matter)."""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX = 4096  # libFuzzer's default -max_len: longer seeds would be cut


def frames(path: Path):
    """(frame bytes) of a classic pcap, any byte order and timestamp resolution; stops at a cut record."""
    b = path.read_bytes()
    if len(b) < 24:
        return
    magic = b[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    if magic not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return
    if struct.unpack_from(order + "I", b, 20)[0] & 0xFFFF != 1:  # Ethernet only
        return
    off = 24
    while off + 16 <= len(b):
        incl = struct.unpack_from(order + "IIII", b, off)[2]
        if off + 16 + incl > len(b):
            return
        yield b[off + 16:off + 16 + incl]
        off += 16 + incl


def udp(frame: bytes):
    """(dst ip u32, dst port, payload) of an Ethernet/VLAN/IPv4/UDP frame, or None."""
    off, t = 12, int.from_bytes(frame[12:14], "big")
    while t in (0x8100, 0x88A8, 0x9100) and len(frame) >= off + 6:
        off += 4
        t = int.from_bytes(frame[off:off + 2], "big")
    off += 2
    if t != 0x0800 or len(frame) < off + 28 or frame[off + 9] != 17:
        return None
    ihl = (frame[off] & 15) * 4
    u = off + ihl
    ulen = int.from_bytes(frame[u + 4:u + 6], "big")
    return (int.from_bytes(frame[off + 16:off + 20], "big"), int.from_bytes(frame[u + 2:u + 4], "big"),
            frame[u + 8:u + ulen])


def blocks(data: bytes):
    off = 0
    while off + 2 <= len(data):
        n = int.from_bytes(data[off:off + 2], "big")
        if off + 2 + n > len(data):
            return
        yield data[off:off + 2 + n]
        off += 2 + n


def chunks(data: bytes, limit: int, count: int):
    """Up to count runs of whole blocks, each at most limit bytes, from the start of data."""
    out, cur = [], b""
    for b in blocks(data):
        if len(cur) + len(b) > limit:
            out.append(cur)
            cur = b""
            if len(out) == count:
                return out
        cur += b
    if cur and len(out) < count:
        out.append(cur)
    return out


class Corpus:
    def __init__(self, root: Path):
        self.root = root
        self.n: dict[str, int] = {}

    def add(self, target: str, data: bytes):
        d = self.root / target
        d.mkdir(parents=True, exist_ok=True)
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data[:MAX])
        self.n[target] = self.n.get(target, 0) + 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    a = ap.parse_args()
    c = Corpus(a.outdir)

    pcaps = sorted((ROOT / "pcaps").glob("*.pcap"))
    itch = sorted((ROOT / "pcaps").glob("*.itch"))
    if a.real.is_dir():
        pcaps += sorted((a.real / "moldudp64").glob("*.pcap"))
        itch += sorted((a.real / "itch").glob("*NASDAQ_ITCH50"))
    else:
        print(f"fuzz_seeds: {a.real} is absent: seeds from pcaps/ only", file=sys.stderr)

    for p in pcaps:
        fr = list(frames(p))
        lines = {}
        # net: one line (the frame's own flow, any source) then the frame; and with no line at all
        for f in fr[:24]:
            u = udp(f)
            if u:
                c.add("net", bytes([1]) + struct.pack(">IHI", u[0], u[1], 0) + f)
                lines.setdefault((u[0], u[1]), len(lines))
            c.add("net", bytes([0]) + f)
        # mold: the datagrams themselves
        dgs = [(u[0], u[1], u[2]) for u in map(udp, fr) if u]
        for _, _, pl in dgs[:24]:
            c.add("mold", pl)
        # feed: a configuration (hold 16, requests, the retransmission line) then the capture's datagrams as
        # raw-datagram operations on the line of their flow (0 or 1), a timer poll after every few
        cfgs = (bytes([0x16, 2, 10, 1, 8, 4, 50]), bytes([0x02, 0, 1, 0, 1, 1, 0]), bytes([0x1b, 1, 5, 2, 16, 2, 20]))
        for ci, cfg in enumerate(cfgs):
            prog = bytearray(cfg)
            for i, (dst, port, pl) in enumerate(dgs[ci * 8:]):
                op = lines.get((dst, port), 0) % 2
                step = bytes([op]) + struct.pack(">H", len(pl)) + pl + bytes([3])
                if len(prog) + len(step) + 4 > MAX:
                    break
                prog += step
                if i % 3 == 2:
                    prog += bytes([6]) + struct.pack(">H", 40)
            c.add("feed", bytes(prog))

    for p in itch:
        for ch in chunks(p.read_bytes(), MAX, 6):
            c.add("book", ch)
        tail = p.read_bytes()[-MAX:]  # the end: a truncated last message in the real truncated slice
        c.add("book", tail)

    # feed: programs of well-formed datagrams (operations 3-5) from the target's own message table
    for seed in range(8):
        prog = bytearray([0x16 | (seed & 9), 2, 10, 1, 8, 4, 50])
        seq = 1
        for i in range(40):
            line = (i + seed) % 2 if i % 9 else 2
            cnt = 1 + (i * 7 + seed) % 5
            skip = 1 if (i + seed) % 11 == 0 else 0
            prog += bytes([3 + line, cnt << 2]) + struct.pack(">H", (seq + skip - 1) % 1024)
            prog += bytes((i * 13 + k * 5 + seed) % 40 for k in range(cnt)) + bytes([2])
            seq += cnt
            if i % 4 == 3:
                prog += bytes([6]) + struct.pack(">H", 20 + seed)
        prog += bytes([7, 3, 0, 3, 5, 0, 16])  # a snapshot answer, if one was asked for
        c.add("feed", bytes(prog))

    # shm: the pristine segment; cut at the header, in the books, before the stats; a few patches
    c.add("shm", b"\x00")
    for cut in (0, 64, 255, 4096, 4096 + 65536 * 64, 5000000):
        c.add("shm", b"\x01" + struct.pack(">I", cut))
    for sel, off, val in ((0x07, 8, b"\xff" * 8), (0x47, 64 * 3 + 4, b"\xff\xff\xff\x7f"),
                          (0x87, 0, b"\x00" * 8), (0x03, 24, b"\xff" * 4), (0x0f, 120, b"\xff" * 16)):
        c.add("shm", b"\x00" + bytes([sel]) + struct.pack(">I", off) + val)

    for t in ("net", "mold", "feed", "book", "shm"):
        print(f"fuzz_seeds: {t}: {c.n.get(t, 0)} seeds in {a.outdir / t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
