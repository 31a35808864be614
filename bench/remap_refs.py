#!/usr/bin/env python3
"""bench/remap_refs.py IN OUT [--slots N | --streams] [--seed S]: a daily ITCH 5.0 file with its order references
rewritten, to measure what the spread of references over the engine's order table costs (bench/engine.md sections
25 and 26). The messages, books and order lifetimes stay the day's own (fh book dump --stats gives the same output
for both files); only the reference numbers, and so the order slots the engine touches (16 bytes each, the home
slot a permutation of the reference's low 24 bits on a 2 M day: section 26), change:

  (no --slots)  dense: 1, 2, 3, ... in the order the orders are added (A, F, a U's new reference), as on a
                uniform day: consecutive adds take consecutive slots;
  --slots N     compact: each new order takes a free slot chosen at random among the first N (a power of two
                above the day's peak of live orders), its reference slot + 2^26 x (times that slot was taken
                before): N home slots (the first N under reference mod 2^24, four runs of N / 4 under section
                26's), the slots an order table sized to the live orders would touch, none shared by two live
                orders. What a hash table would add (hashing the exchange's reference, probing) is not in it;
  --streams     NASDAQ's: four counters, one for each residue mod 4, which new orders take in the shares and
                steps of a real day's 09:30 (../shared/data/real's 1,000-message slice, bench/engine.md section 26:
                85 % of its new references come from four such counters, 33/29/20/18 % of them, each stepping by
                4 (44 %), 8 (21 %), 12 (13 %), 16 (8 %) or more: the exchange's references of hidden orders fall
                between); each counter starts where the slice's does.

E, C, X, D, U and P follow the references of the orders they name; an order leaves its slot when D, U or
executions and cancels that reach its shares remove it."""
from __future__ import annotations

import argparse
import random
import struct
import sys

Q, I = struct.Struct(">Q"), struct.Struct(">I")
A, F, E, C, X, D, U, P = (ord(c) for c in "AFECXDUP")
# --streams: the four counters of 30 Dec 2019 at 09:30 (their first references, residues 2, 0, 3 and 1), the share
# of new orders each took (217, 196, 132, 120 of 665) and the steps between a counter's consecutive new orders
# (native/src/synth.c's LATE_STEP and LATE_STEP_CUM, for fh synth itch --shape real-late, hold the same counts).
STREAM_START = (5_676_634 - 4, 9_899_132 - 4, 7_508_039 - 4, 7_856_425 - 4)
STREAM_SHARE = (217, 196, 132, 120)
STEPS = (4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 56)
STEP_COUNT = (291, 139, 89, 56, 25, 18, 15, 4, 7, 8, 9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--slots", type=int, help="compact: a power of two above the day's peak of live orders")
    ap.add_argument("--streams", action="store_true", help="NASDAQ's four counters, as a real day's 09:30 shows them")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.slots is not None and a.streams:
        ap.error("--slots and --streams are two modes: give one")
    if a.slots is not None and (a.slots < 1 or a.slots & (a.slots - 1) or a.slots > 1 << 24):
        ap.error(f"--slots {a.slots}: a power of two from 1 to 2^24")
    data = memoryview(open(a.inp, "rb").read())
    out = bytearray(data)
    rng = random.Random(a.seed)
    free = list(range(a.slots or 0))
    rng.shuffle(free)
    gen = [0] * (a.slots or 0)
    live: dict[int, list[int]] = {}  # the exchange's reference -> [new reference, slot, shares left]
    peak, count = 0, 0
    counters = list(STREAM_START)

    def take(old: int, shares: int) -> int:
        nonlocal peak, count
        count += 1
        if a.streams:
            k = rng.choices(range(4), STREAM_SHARE)[0]
            counters[k] += rng.choices(STEPS, STEP_COUNT)[0]
            new, s = counters[k], -1
        elif a.slots is None:
            new, s = count, -1
        else:
            if not free:
                sys.exit(f"remap_refs.py: more than {a.slots:,} live orders: give more --slots")
            i = rng.randrange(len(free))
            free[i], free[-1] = free[-1], free[i]
            s = free.pop()
            new = s + (gen[s] << 26)  # bits 24-25 left 0: under order_home too, one slot for each s
            gen[s] += 1
        live[old] = [new, s, shares]
        peak = max(peak, len(live))
        return new

    def drop(old: int) -> None:
        s = live.pop(old)[1]
        if s >= 0:
            free.append(s)

    pos, n = 0, len(data)
    while pos + 2 <= n:
        m = pos + 2
        t = data[m]
        if t in (A, F):
            Q.pack_into(out, m + 11, take(Q.unpack_from(data, m + 11)[0], I.unpack_from(data, m + 20)[0]))
        elif t in (E, C, X, D, P):
            o = live.get(r := Q.unpack_from(data, m + 11)[0])
            if o is not None:  # (a P's reference is often 0: no order)
                Q.pack_into(out, m + 11, o[0])
                if t == D:
                    drop(r)
                elif t != P:
                    o[2] -= I.unpack_from(data, m + 19)[0]
                    if o[2] <= 0:
                        drop(r)
        elif t == U:
            r = Q.unpack_from(data, m + 11)[0]
            if r in live:
                Q.pack_into(out, m + 11, live[r][0])
                drop(r)
            Q.pack_into(out, m + 19, take(Q.unpack_from(data, m + 19)[0], I.unpack_from(data, m + 27)[0]))
        pos = m + ((data[pos] << 8) | data[pos + 1])
    with open(a.out, "wb") as f:
        f.write(out)
    what = (f"in {a.slots:,} slots, a slot taken at most {max(gen):,} times" if a.slots
            else f"in four counters, up to {max(counters):,}" if a.streams else "dense")
    print(f"remap_refs.py: {a.out}: {count:,} orders, peak {peak:,} live, {what}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
