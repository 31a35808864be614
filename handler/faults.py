"""Fault plans for `fh pcap synth --faults PLAN`: drops, duplicates, reorderings, delays, a silent line and a
session change, applied deterministically to the per-line datagram lists of a day (docs/fault-plans.md).

A plan is a TOML (or JSON) file with a list of faults:

    [[fault]]
    line = "A"            # "A", "B" or "both"
    kind = "drop"         # drop | duplicate | reorder | delay | silence | session_change
    at = 120              # data datagram index, 0-based (or seq = N: the datagram carrying sequence N)
    count = 2             # datagrams (default 1)

`apply_plan` takes the datagrams of `pcapgen.packetize` (before framing) and returns each line's datagrams in
emission order plus the "injected" summary: what each line lost, repeated, reordered and delayed, the sequence
ranges lost on every line (the gaps only a retransmission can fill), silent periods, and the session change.
No randomness: the same plan on the same day gives the same pcap, byte for byte.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import FhError

KINDS = ("drop", "duplicate", "reorder", "delay", "silence", "session_change")
LINE_NAMES = ("A", "B")
END_OF_SESSION = 0xFFFF
DEFAULT_SESSION_GAP_US = 1000


class FaultPlanError(FhError, ValueError):
    """A plan that cannot be applied; the message names the fault and the key."""


@dataclass
class Fault:
    kind: str
    line: str = "both"
    at: int | None = None
    seq: int | None = None
    count: int | None = None
    depth: int = 1
    delay_us: int = 0
    session: str | None = None
    gap_us: int = DEFAULT_SESSION_GAP_US
    n: int = 0  # position in the plan, for error messages


@dataclass
class Item:
    """One datagram on one line, before framing. `t` orders emission (ITCH ns of the day, plus fault delays);
    `k` breaks ties between lines so that a clean day keeps the A_i, B_i, A_i+1 ... order of synth_pcap."""
    t: int
    k: float
    session: bytes
    seq: int
    msgs: list
    count: int | None = None  # None: len(msgs); END_OF_SESSION for the end-of-session datagram
    idx: int = -1             # data datagram index in the day, -1 for control datagrams

    @property
    def n_msgs(self) -> int:
        return len(self.msgs)

    def payload(self) -> bytes:
        n = len(self.msgs) if self.count is None else self.count
        return self.session + struct.pack(">QH", self.seq, n) + b"".join(struct.pack(">H", len(m)) + m for m in self.msgs)


def _session_bytes(name: str) -> bytes:
    try:
        b = name.encode("ascii")
    except UnicodeEncodeError:
        raise FaultPlanError(f"session {name!r}: must be ASCII") from None
    if not 1 <= len(b) <= 10:
        raise FaultPlanError(f"session {name!r}: 1 to 10 ASCII characters")
    return b.ljust(10)


def next_session_name(name: str) -> str:
    """FHSYNTH001 -> FHSYNTH002: the trailing number incremented (kept to 10 characters), else a trailing 2."""
    name = name.rstrip()
    digits = len(name) - len(name.rstrip("0123456789"))
    if digits:
        n = int(name[-digits:]) + 1
        return (name[:-digits] + str(n).zfill(digits))[-10:]
    return (name[:9] + "2")[:10]


# ---------------------------------------------------------------------------------------------------- the plan

def _int(f: dict, key: str, n: int, default=None, minimum: int = 0):
    v = f.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise FaultPlanError(f"fault {n} ({f.get('kind', '?')}): {key} must be an integer >= {minimum}, not {v!r}")
    return v


def parse_plan(obj) -> list[Fault]:
    """A plan from its parsed TOML/JSON: {"fault": [...]} (or "faults", or a bare list)."""
    if isinstance(obj, dict):
        unknown = set(obj) - {"fault", "faults", "description"}
        if unknown:
            raise FaultPlanError(f"plan: unknown top-level key(s) {sorted(unknown)}; faults go in [[fault]] tables")
        items = obj.get("fault", obj.get("faults", []))
    else:
        items = obj
    if not isinstance(items, list):
        raise FaultPlanError("plan: expected a list of [[fault]] tables")
    out = []
    allowed = {"kind", "line", "at", "seq", "count", "depth", "delay_us", "session", "gap_us", "note"}
    for n, f in enumerate(items, 1):
        if not isinstance(f, dict):
            raise FaultPlanError(f"fault {n}: expected a table, not {f!r}")
        kind = f.get("kind")
        if kind not in KINDS:
            raise FaultPlanError(f"fault {n}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
        bad = set(f) - allowed
        if bad:
            raise FaultPlanError(f"fault {n} ({kind}): unknown key(s) {sorted(bad)}")
        line = f.get("line", "both")
        if line not in (*LINE_NAMES, "both"):
            raise FaultPlanError(f"fault {n} ({kind}): line must be \"A\", \"B\" or \"both\", not {line!r}")
        if kind == "session_change" and line != "both":
            raise FaultPlanError(f"fault {n} (session_change): a session changes on every line; leave out line")
        at, seq = _int(f, "at", n), _int(f, "seq", n, minimum=1)
        if (at is None) == (seq is None):
            raise FaultPlanError(f"fault {n} ({kind}): give exactly one of at (datagram index) or seq (sequence number)")
        fault = Fault(kind=kind, line=line, at=at, seq=seq, count=_int(f, "count", n, minimum=1),
                      depth=_int(f, "depth", n, 1, minimum=1), delay_us=_int(f, "delay_us", n, 0),
                      session=f.get("session"), gap_us=_int(f, "gap_us", n, DEFAULT_SESSION_GAP_US), n=n)
        if kind == "delay" and not fault.delay_us:
            raise FaultPlanError(f"fault {n} (delay): delay_us must be > 0")
        if fault.session is not None:
            _session_bytes(str(fault.session))
        out.append(fault)
    if sum(f.kind == "session_change" for f in out) > 1:
        raise FaultPlanError("plan: at most one session_change")
    return out


def load_plan(path: str | Path) -> list[Fault]:
    from .inputs import InputError, regular_file

    p = Path(path)
    if not p.exists():
        raise FaultPlanError(f"{path}: no such fault plan; check the path")
    what = "a fault plan (TOML or JSON, docs/fault-plans.md)"
    try:
        regular_file(p, what)  # a directory; a FIFO, whose read would block
        text = p.read_text()
    except InputError as e:
        raise FaultPlanError(str(e)) from None
    except UnicodeDecodeError as e:  # a capture or another binary file given as the plan
        raise FaultPlanError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); give "
                             f"{what}") from None
    try:
        if p.suffix.lower() == ".json":
            obj = json.loads(text)
        else:
            import tomllib

            obj = tomllib.loads(text)
    except (ValueError, json.JSONDecodeError) as e:
        raise FaultPlanError(f"{path}: {e}") from None
    return parse_plan(obj)


# ---------------------------------------------------------------------------------------------------- applying it

def _base_stream(grams, session: str, change: Fault | None) -> tuple[list[Item], dict | None]:
    """The exchange's datagrams (the same on every line): sequences from 1; with a session change at data
    datagram k, an end-of-session datagram of the old session after datagram k-1, then the rest under the
    new session from sequence 1, starting gap_us after the old session's last datagram."""
    sess = _session_bytes(session)
    k = None
    if change is not None:
        k = change.at if change.at is not None else _index_of_seq(grams, change.seq, change)
        if not 0 < k < len(grams):
            raise FaultPlanError(f"fault {change.n} (session_change): at must be within 1..{len(grams) - 1} "
                                 f"(the day has {len(grams)} datagrams)")
    items: list[Item] = []
    seq, shift, info = 1, 0, None
    for i, (ts, msgs) in enumerate(grams):
        if i == k:
            last_t = items[-1].t
            items.append(Item(last_t + 1000, i - 0.5, sess, seq, [], END_OF_SESSION))
            new = change.session or next_session_name(session)
            info = {"at_datagram": i, "old_session": session, "old_next_sequence": seq, "new_session": new,
                    "new_first_sequence": 1, "messages_before": seq - 1}
            sess, seq = _session_bytes(new), 1
            shift = max(0, last_t + 1000 + change.gap_us * 1000 - ts)
        items.append(Item(ts + shift, i, sess, seq, list(msgs), None, i))
        seq += len(msgs)
    if items:
        items.append(Item(items[-1].t + 1000, len(grams) - 0.5 + 1, sess, seq, [], END_OF_SESSION))
    if info is not None:
        info["messages_after"] = seq - 1
    return items, info


def _index_of_seq(grams, seq: int, f: Fault) -> int:
    s = 1
    for i, (_, msgs) in enumerate(grams):
        if s <= seq < s + len(msgs):
            return i
        s += len(msgs)
    raise FaultPlanError(f"fault {f.n} ({f.kind}): seq {seq} is beyond the day's {s - 1} messages")


def _seq_index(base: list[Item], seq: int, f: Fault) -> int:
    """The data datagram index of the first datagram (in stream order) that carries sequence `seq`."""
    for it in base:
        if it.idx >= 0 and it.seq <= seq < it.seq + it.n_msgs:
            return it.idx
    raise FaultPlanError(f"fault {f.n} ({f.kind}): no datagram carries sequence {seq}")


def _blank(names) -> dict:
    z = {"datagrams": 0, "messages": 0}
    return {n: {"dropped": dict(z), "duplicated": dict(z), "reordered": dict(z), "delayed": dict(z), "silent": []}
            for n in names}


def apply_plan(grams, plan: list[Fault], session: str, lines: int = 2) -> tuple[list[list[Item]], dict]:
    """Apply `plan` to the day's datagrams (`pcapgen.packetize` output) on `lines` lines (A, B). Returns each
    line's items in emission order and the injected summary."""
    names = LINE_NAMES[:lines]
    change = next((f for f in plan if f.kind == "session_change"), None)
    base, change_info = _base_stream(grams, session, change)
    per_line = {n: [replace(it, msgs=it.msgs) for it in base] for n in names}
    inj = _blank(names)
    ndata = len(grams)
    for f in plan:
        if f.kind == "session_change":
            continue
        targets = names if f.line == "both" else (f.line,)
        if f.line != "both" and f.line not in names:
            raise FaultPlanError(f"fault {f.n} ({f.kind}): line {f.line} is not in this capture (--a-only?)")
        first = f.at if f.at is not None else _seq_index(base, f.seq, f)
        if not 0 <= first < ndata:
            raise FaultPlanError(f"fault {f.n} ({f.kind}): at {first} is beyond the day's {ndata} datagrams")
        count = f.count if f.count is not None else (ndata - first if f.kind == "silence" else 1)
        sel = set(range(first, min(ndata, first + count)))
        for name in targets:
            items = per_line[name]
            hit = [it for it in items if it.idx in sel]
            if not hit:
                continue
            rec = inj[name]
            if f.kind in ("drop", "silence"):
                if f.kind == "silence":
                    # everything from the first silenced datagram to the last, control datagrams too
                    pos = [j for j, it in enumerate(items) if it.idx in sel]
                    lo, hi = pos[0], pos[-1]
                    if first + count >= ndata:
                        hi = len(items) - 1
                    gone = items[lo:hi + 1]
                    after = items[hi + 1] if hi + 1 < len(items) else None
                    rec["silent"].append({
                        "from_datagram": first, "datagrams": sum(it.idx >= 0 for it in gone),
                        "messages": sum(it.n_msgs for it in gone), "from_ns": gone[0].t,
                        "until_ns": after.t if after is not None else None,
                        "sequences": _ranges(gone)})
                    del items[lo:hi + 1]
                else:
                    rec["dropped"]["datagrams"] += len(hit)
                    rec["dropped"]["messages"] += sum(it.n_msgs for it in hit)
                    per_line[name] = [it for it in items if it.idx not in sel]
            elif f.kind == "duplicate":
                out = []
                for it in items:
                    out.append(it)
                    if it.idx in sel:
                        out.append(replace(it))
                per_line[name] = out
                rec["duplicated"]["datagrams"] += len(hit)
                rec["duplicated"]["messages"] += sum(it.n_msgs for it in hit)
            elif f.kind == "reorder":
                pos = [j for j, it in enumerate(items) if it.idx in sel]
                lo, hi = pos[0], pos[-1]
                block = items[lo:hi + 1]
                rest = items[:lo] + items[hi + 1:]
                ins = min(len(rest), lo + f.depth)
                per_line[name] = rest[:ins] + block + rest[ins:]
                rec["reordered"]["datagrams"] += sum(it.idx >= 0 for it in block)
                rec["reordered"]["messages"] += sum(it.n_msgs for it in block)
            elif f.kind == "delay":
                for it in hit:
                    it.t += f.delay_us * 1000
                rec["delayed"]["datagrams"] += len(hit)
                rec["delayed"]["messages"] += sum(it.n_msgs for it in hit)
    # A line is a FIFO: nothing overtakes what is ahead of it (reorder moved it; delay holds the ones behind)
    for items in per_line.values():
        pt, pk = None, None
        for it in items:
            if pt is not None and (it.t, it.k) < (pt, pk):
                it.t, it.k = pt, pk
            pt, pk = it.t, it.k
    inj["lost_on_all_lines"] = _lost_everywhere(base, per_line.values())
    inj["session_change"] = change_info
    inj["sessions"] = _sessions(base)
    inj["datagrams"] = ndata
    inj["messages"] = sum(len(m) for _, m in grams)
    return [per_line[n] for n in names], inj


def _ranges(items: list[Item]) -> list[list]:
    """[session, first, last] sequence ranges of these items' messages, merged."""
    out: list[list] = []
    for it in items:
        if not it.n_msgs:
            continue
        s = it.session.decode().rstrip()
        a, b = it.seq, it.seq + it.n_msgs - 1
        if out and out[-1][0] == s and out[-1][2] + 1 >= a:
            out[-1][2] = max(out[-1][2], b)
        else:
            out.append([s, a, b])
    return out


def _sessions(base: list[Item]) -> dict:
    out: dict = {}
    for it in base:
        if it.n_msgs:
            s = out.setdefault(it.session.decode().rstrip(), [it.seq, it.seq + it.n_msgs - 1])
            s[1] = it.seq + it.n_msgs - 1
    return out


def _lost_everywhere(base: list[Item], lines) -> list[dict]:
    """Sequence ranges no line carries: the gaps that only the retransmission server can fill."""
    have: set = set()
    for items in lines:
        for it in items:
            if it.n_msgs:
                have.add((it.session, it.seq))
    lost = [it for it in base if it.n_msgs and (it.session, it.seq) not in have]
    return [{"session": s, "first": a, "last": b, "messages": b - a + 1} for s, a, b in _ranges(lost)]


def emission_order(per_line: list[list[Item]]) -> list[tuple[int, Item]]:
    """(line index, item) for every datagram, in the order they go into the pcap."""
    allitems = [(it.t, it.k, li, j, it) for li, items in enumerate(per_line) for j, it in enumerate(items)]
    allitems.sort(key=lambda x: x[:4])
    return [(li, it) for _, _, li, _, it in allitems]


def summary_lines(inj: dict) -> list[str]:
    """The injected summary, for people."""
    out = [f"day: {inj['messages']} messages in {inj['datagrams']} datagrams; sessions: "
           + ", ".join(f"{s} {a}..{b}" for s, (a, b) in inj["sessions"].items())]
    for name in LINE_NAMES:
        rec = inj.get(name)
        if rec is None:
            continue
        parts = [f"{what} {rec[what]['datagrams']} datagrams ({rec[what]['messages']} messages)"
                 for what in ("dropped", "duplicated", "reordered", "delayed") if rec[what]["datagrams"]]
        for s in rec["silent"]:
            until = "the end" if s["until_ns"] is None else f"t={s['until_ns']} ns"
            parts.append(f"silent from datagram {s['from_datagram']} (t={s['from_ns']} ns) until {until}: "
                         f"{s['datagrams']} datagrams ({s['messages']} messages)")
        out.append(f"line {name}: " + ("; ".join(parts) if parts else "clean"))
    lost = inj["lost_on_all_lines"]
    out.append("lost on every line (retransmission needed): "
               + (", ".join(f"{g['session']} {g['first']}..{g['last']}" for g in lost) if lost else "none"))
    c = inj["session_change"]
    if c:
        out.append(f"session change at datagram {c['at_datagram']}: {c['old_session']} ends (next sequence "
                   f"{c['old_next_sequence']}), {c['new_session']} starts at sequence 1")
    return out
