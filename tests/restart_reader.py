"""A reader process for tests/test_restart.py: it follows an instance's segment for the whole test, across
kills and restarts of its writer (a replaced segment is joined again: one "generation" per writer), and checks
every book it reads and every event it follows:

- a book read live must equal the reference's state of that instrument after some prefix of the day's
  messages (the states are given, hashed, in STATES): a live book that depends on missing messages would not;
- in each generation, an event of a book that had a stale notice and no recovered notice after it must carry
  the stale flag, and a recovered notice must come after the stale one.

    python tests/restart_reader.py SEGMENT STATES.pickle OUT.json [DEPTH]

It stops on SIGTERM and writes its findings to OUT.json: reads (live and stale), generations (writer pid, the
stale notices before the first other event, recovered notices, events, overruns) and violations (at most 50
described, all counted).
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from handler import shm  # noqa: E402

STOP = []


def state_key(bids, asks) -> int:
    return hash((tuple(map(tuple, bids)), tuple(map(tuple, asks))))


def main() -> int:
    segment, states_path, out_path = sys.argv[1:4]
    depth = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    with open(states_path, "rb") as f:
        allowed: dict[int, set[int]] = pickle.load(f)
    signal.signal(signal.SIGTERM, lambda s, fr: STOP.append(s))
    r = None
    gens: list[dict] = []
    violations: list[str] = []
    nviol = 0
    reads = {"live": 0, "stale": 0}

    def bad(text: str) -> None:
        nonlocal nviol
        nviol += 1
        if len(violations) < 50:
            violations.append(text)

    g = None
    nxt = 0
    while not STOP:
        if r is not None:
            try:
                if r.writer_status().replaced:
                    r.close()
                    r = None
            except shm.ShmError:
                r.close()
                r = None
        if r is None:
            try:
                r = shm.Reader(segment, wait_s=0)
            except shm.ShmError:
                time.sleep(0.002)
                continue
            g = {"writer_pid": r.writer_pid, "stale_first": 0, "other_seen": False, "recovered": 0, "events": 0,
                 "overruns": 0, "live_reads": 0, "stale_reads": 0, "stale": set(), "first_read_stale": None}
            gens.append(g)
            nxt = r.oldest()
        while True:  # the events so far
            arr, nxt, lost = r.read_events(nxt)
            g["overruns"] += lost
            if not len(arr):
                break
            for ev in arr:
                t, loc, st = int(ev["type"]), int(ev["locate"]), int(ev["status"])
                g["events"] += 1
                if t == shm.lib.FH_EV_STALE:
                    g["stale"].add(loc)
                    if not g["other_seen"]:
                        g["stale_first"] += 1
                elif t == shm.lib.FH_EV_RECOVERED:
                    if loc not in g["stale"]:
                        bad(f"writer {g['writer_pid']}: recovered notice of locate {loc} without a stale one")
                    g["stale"].discard(loc)
                    g["recovered"] += 1
                else:
                    g["other_seen"] = True
                    if loc in g["stale"] and st != shm.STALE:
                        bad(f"writer {g['writer_pid']}: event {shm.EVENT_NAMES.get(t, t)} of locate {loc} "
                            f"after its stale notice carries status {st}, not stale")
        first = True
        for loc in r.locates():  # every book
            loc = int(loc)
            try:
                b = r.book(loc, depth)
            except shm.ShmError:
                continue
            if b["status"] == "live":
                reads["live"] += 1
                g["live_reads"] += 1
                if state_key(b["bids"], b["asks"]) not in allowed.get(loc, ()):
                    bad(f"writer {g['writer_pid']}: live book of locate {loc} ({b['symbol']}) is no state of the "
                        f"day's prefixes: bids {b['bids'][:3]} asks {b['asks'][:3]}")
            elif b["status"] == "stale":
                reads["stale"] += 1
                g["stale_reads"] += 1
            if first and g["first_read_stale"] is None:
                g["first_read_stale"] = b["status"] == "stale"
            first = False
        time.sleep(0.002)
    for x in gens:
        x["stale"] = sorted(x["stale"])
    with open(out_path, "w") as f:
        json.dump({"reads": reads, "generations": gens, "violations": violations, "violation_count": nviol}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
