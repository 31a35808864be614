"""The data-plane commands of `fh`: replay, verify, pcap synth, pcap inspect."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cli_error(msg: str):
    from .cli import CliError

    return CliError(msg)


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise _cli_error(f"{path}: no such file; check the path")
    return p


def cmd_replay(a) -> int:
    from . import replay

    if a.speed != "max":
        raise _cli_error(f"--speed {a.speed}: only 'max' (net_pcap at top speed) is implemented yet; paced replay "
                         "over a veth pair comes with the live-traffic work")
    pcap = _existing(a.pcap)
    stats, books = replay.replay(pcap, depth=a.depth, want_books=bool(a.dump_books))
    if books is not None:
        Path(a.dump_books).write_text("".join(json.dumps(b) + "\n" for b in books))
    if a.json:
        print(json.dumps(stats))
    else:
        for line in replay.summary_lines(stats):
            print(line)
        if books is not None:
            print(f"books: {len(books)} written to {a.dump_books}")
    return 0


def cmd_verify(a) -> int:
    from . import replay

    pcap = _existing(a.pcap)
    lines = replay.pcap_lines(pcap)
    stats, got = replay.replay(pcap, depth=a.depth, want_books=True, lines=lines)
    want, _ = replay.reference_books(pcap, lines, a.depth)
    for line in replay.summary_lines(stats):
        print(line)
    diffs = replay.diff_books(got, want)
    if diffs:
        print(f"FAIL: the data plane's books differ from the reference model's ({len(got)} vs {len(want)} books):")
        for d in diffs:
            print("  " + d)
        return 1
    print(f"OK: {len(got)} books equal the reference model's")
    return 0


def cmd_pcap_synth(a) -> int:
    from . import native, pcapgen

    if a.itch:
        data = _existing(a.itch).read_bytes()
    else:
        data = native.synth_bytes(a.messages, a.instruments, a.seed)
    lines = [pcapgen.Line(*pcapgen.DEFAULT_A, vlan=a.vlan)]
    if not a.a_only:
        lines.append(pcapgen.Line(*pcapgen.DEFAULT_B, vlan=a.vlan, delay_ns=3000))
    s = pcapgen.synth_pcap(a.out, data, lines, session=a.session, mtu=a.mtu, burst_ns=a.burst_ns)
    print(f"{a.out}: {s['messages']} messages in {s['datagrams']} datagrams on {s['lines']} line(s) "
          f"({', '.join(f'{l.group}:{l.port}' for l in lines)}), session {a.session}", file=sys.stderr)
    return 0


def cmd_pcap_inspect(a) -> int:
    from . import pcapgen

    ins = pcapgen.inspect_pcap(_existing(a.pcap))
    if a.json:
        print(json.dumps({"datagrams": ins.datagrams, "endpoints": dict(ins.endpoints), "sessions": ins.sessions,
                          "gaps": ins.gaps, "types": dict(ins.types), "heartbeats": ins.heartbeats,
                          "end_of_session": ins.end_of_session, "malformed": ins.malformed,
                          "skipped_frames": ins.reader}))
        return 0
    print(f"{ins.datagrams} UDP datagrams; skipped frames: {ins.reader or 'none'}")
    for ep, n in ins.endpoints.most_common():
        print(f"  {ep}: {n} datagrams")
    for s, (lo, hi, n) in ins.sessions.items():
        print(f"session {s!r}: sequences {lo}..{hi}, {n} messages (with repeats across lines)")
    print(f"heartbeats {ins.heartbeats}, end of session {ins.end_of_session}, malformed {ins.malformed}")
    print(f"gaps: {len(ins.gaps)}" + "".join(f"\n  {s!r} on {ep}: expected {e}, got {g}" for s, ep, e, g in ins.gaps[:10]))
    print("message types: " + ", ".join(f"{t}={n}" for t, n in sorted(ins.types.items())))
    return 0


def register(sub, positive, nonneg) -> None:
    r = sub.add_parser("replay", help="replay a pcap through the DPDK data plane (net_pcap) into shared memory")
    r.add_argument("pcap")
    r.add_argument("--speed", default="max", help="max (top speed; the only one so far)")
    r.add_argument("--dump-books", metavar="FILE", help="write the final books, read from shared memory, here")
    r.add_argument("--depth", type=positive, default=None)
    r.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    r.set_defaults(func=cmd_replay)

    v = sub.add_parser("verify", help="replay a pcap and compare the books with the reference model's")
    v.add_argument("pcap")
    v.add_argument("--depth", type=positive, default=None)
    v.set_defaults(func=cmd_verify)

    p = sub.add_parser("pcap", help="MoldUDP64 captures")
    ps = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = ps.add_parser("synth", help="pack an ITCH day into MoldUDP64 datagrams on an A and a B line")
    s.add_argument("out")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--itch", metavar="FILE", help="a daily ITCH file (default: generate a day)")
    s.add_argument("--messages", type=positive, default=100_000)
    s.add_argument("--instruments", type=positive, default=40)
    s.add_argument("--seed", type=nonneg, default=1)
    s.add_argument("--session", default="FHSYNTH001")
    s.add_argument("--mtu", type=positive, default=1500)
    s.add_argument("--burst-ns", type=positive, default=None,
                   help="only messages this close in ITCH time share a datagram (default: fill to the MTU)")
    s.add_argument("--vlan", type=int, default=None, help="tag frames with this 802.1Q VLAN id")
    s.add_argument("--a-only", action="store_true", help="the A line only")
    s.set_defaults(func=cmd_pcap_synth)
    i = ps.add_parser("inspect", help="packets, sessions, sequence ranges, gaps and message types of a capture")
    i.add_argument("pcap")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_pcap_inspect)
