"""The data-plane commands of `fh`: replay, verify, pcap synth, pcap inspect."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from ..errors import FhError


def _input(path: str, want: str, option: str) -> Path:
    """An input file of the kind wanted, checked by content (handler/inputs.py); gzipped ones are inflated."""
    from .. import inputs

    return inputs.require(path, want, option)


class ProgressBar:
    """A one-line progress bar on stderr, redrawn with \\r at most ten times a second: percent, frames per
    second, ETA. It shows only once a replay looks longer than `after_s`, and never when off (stderr not a
    terminal, or --quiet)."""

    def __init__(self, label: str = "replay", stream=None, enabled: bool | None = None, after_s: float = 2.0):
        self.stream = stream or sys.stderr
        self.enabled = (self.stream.isatty() if enabled is None else enabled)
        self.label, self.after_s = label, after_s
        self.shown = False
        self._last = -1.0
        self._last_done = -1

    def __call__(self, done: int, total: int, elapsed: float, eta: float | None = None) -> None:
        """done of total frames after elapsed seconds; eta, when the caller knows it (a paced replay follows a
        schedule), is the time left, and the percentage is then of the time."""
        if not self.enabled or total <= 0:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        if eta is None:
            eta = (total - done) / rate if rate > 0 else float("inf")
            frac = done / total
        else:
            frac = elapsed / (elapsed + eta) if elapsed + eta > 0 else 1.0
        if not self.shown and (elapsed < 0.5 or elapsed + eta < self.after_s or (done == 0 and elapsed < self.after_s)):
            return
        if self.shown and (self._last_done >= total or (elapsed - self._last < 0.1 and done < total)):
            return
        self._last_done = done
        self._last = elapsed
        frac = min(1.0, frac)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta_text = "--:--" if eta == float("inf") else f"{int(eta) // 60:d}:{int(eta) % 60:02d}"
        self.stream.write(f"\r{self.label} [{bar}] {frac * 100:5.1f}%  {done}/{total} frames  {rate:,.0f}/s  "
                          f"ETA {eta_text}  ")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


@contextmanager
def _writing(path):
    """Around the writing of an output file: an OS error of a write (ENOSPC, EIO) carries no file name, so it is
    given this one, and the partial file it leaves is removed (a regular file only: never /dev/null). An error of
    the open, which names its file, removes nothing: the file was not ours to remove."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = str(path)
            if os.path.isfile(path):
                os.unlink(path)
        raise


def _survey(given: str, pcap: Path, cmd: str, used: str) -> tuple[list[tuple[str, int]], str | None, int | None]:
    """The capture's lines, the stderr line fh replay / fh verify print when it is cut off or damaged (`used`:
    what they do with the frames before the cut), and where a damaged record header is (None: none is; the
    replay then takes only the frames before it, as the survey and the reference model do); an FhError when no
    datagram comes before it."""
    from .. import replay

    lines, survey = replay.pcap_survey(pcap)
    cut = replay.capture_cut(given, survey, used)
    if cut and not survey["datagrams"]:
        raise FhError(replay.capture_cut(given, survey, f"no UDP datagram before it to {cmd}"))
    return lines, cut and f"fh {cmd}: {cut}", survey["bad_record_at"] if survey.get("bad_record") else None


def cmd_replay(a) -> int:
    from .. import process, replay
    from ..net import sender
    from ..segments import instance_name, wake_path
    from ..ui import fmt_seconds

    pcap = _input(a.pcap, "pcap", "PCAP")
    try:
        pace = sender.parse_pace(a.speed, a.pps, a.mbps, a.maxsleep)
    except sender.SenderError as e:
        raise FhError(str(e)) from None
    if a.realtime and not pace.paced:
        raise FhError("--realtime: only with a paced replay (--speed recorded or xN, --pps, --mbps): at top speed "
                      "no sender runs")
    name = instance_name(a.name) if a.name else None
    if a.dump_books and os.path.isdir(a.dump_books):  # said before the replay, not after it
        raise FhError(f"--dump-books {a.dump_books}: a directory; give the file to write the books to")
    if a.keep_segment and name is None:
        raise FhError("--keep-segment: give the instance a name with --name NAME, to open its segment afterwards "
                      "(fh book SYMBOL --name NAME)")
    lines, cut, upto = _survey(a.pcap, pcap, "replay", "the frames before it are replayed")
    bar = ProgressBar(enabled=False if a.quiet else None)
    want = bool(a.dump_books)
    try:
        if pace.paced:
            def plan(frames: int, secs: float) -> None:
                if not a.quiet:
                    print(f"fh replay: {frames:,} frames at {pace} over a veth pair to net_af_packet: about "
                          f"{fmt_seconds(secs)}", file=sys.stderr)

            stats, books = replay.replay_live(pcap, pace, loop=a.loop, name=name, depth=a.depth, want_books=want,
                                              progress=bar, realtime=a.realtime, plan=plan,
                                              keep_segment=a.keep_segment, lines=lines)
        else:
            stats, books = replay.replay(pcap, name=name, depth=a.depth, want_books=want, loop=a.loop, progress=bar,
                                         keep_segment=a.keep_segment, lines=lines, upto=upto)
    except sender.SenderError as e:
        raise FhError(str(e)) from None
    except KeyboardInterrupt:
        bar.close()
        print("fh replay: interrupted (the data plane, the sender and their namespace are gone)", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if books is not None:
        with _writing(a.dump_books):
            Path(a.dump_books).write_text("".join(json.dumps(b) + "\n" for b in books))
    stats["rate"] = process.replay_rate(stats)
    stats["capture_truncated"] = bool(cut)
    if cut:
        print(cut, file=sys.stderr)
    segment = f"/dev/shm/fh-{name}"  # replay.py's: replays write to /dev/shm
    if a.keep_segment:
        stats["segment"] = segment
    if a.json:
        from ..ui import print_json

        print_json(stats)
    else:
        for line in process.summary_lines(stats):
            print(line)
        if books is not None:
            print(f"books: {len(books):,} written to {a.dump_books}")
        if a.keep_segment:
            print(f"segment kept: {segment}: fh book SYMBOL --name {name}, fh stats --name {name}; "
                  f"remove it with: rm {segment} {wake_path(segment)}")
    return 0


def cmd_verify(a) -> int:
    """OK only when the books equal the reference's and nothing is missing. When the reference says messages
    are missing (a late join, a gap no line filled), equal books are not enough: the data plane must have
    marked the feed stale, and verify says what is missing and exits 1 (the books cannot be verified)."""
    from .. import process, replay

    pcap = _input(a.pcap, "pcap", "PCAP")
    lines, cut, upto = _survey(a.pcap, pcap, "verify", "the books of the frames before it are verified, on both sides")
    stats, got = replay.replay(pcap, depth=a.depth, want_books=True, lines=lines, upto=upto)
    want, counters = replay.reference_books(pcap, lines, a.depth)
    diffs = replay.diff_books(got, want)
    why = "" if diffs else replay.stale_reason(counters["sequencing"])
    state = stats.get("feed", {}).get("state")
    if diffs:
        verdict, text = "FAIL", (f"FAIL: the data plane's books differ from the reference model's ({len(got):,} vs "
                                 f"{len(want):,} books):" + "".join("\n  " + d for d in diffs))
    elif why and state != "stale":
        verdict, text = "FAIL", f"FAIL: {why}, but the data plane's feed is {state}, not stale"
    elif why:
        verdict, text = "STALE", (f"STALE: {len(got):,} books equal the reference model's for the messages applied, "
                                  f"and every book is marked stale: {why}")
    else:
        verdict, text = "OK", f"OK: {len(got):,} books equal the reference model's"
    if a.json:
        from ..ui import print_json

        seq = counters["sequencing"]
        print_json({"verdict": verdict, "books": len(got), "reference_books": len(want), "differences": diffs,
                    "stale_reason": why or None, "feed_state": state, "capture_truncated": bool(cut),
                    "reference": {k: seq[k] for k in ("applied", "lost", "malformed", "bogus_session", "suspect",
                                                      "old_session", "session_changes", "unsequenced", "stale")},
                    "stats": stats})
    else:
        for line in process.summary_lines(stats):
            print(line)
        print(text)
    if cut:
        print(cut, file=sys.stderr)
    return 0 if verdict == "OK" else 1


def cmd_pcap_synth(a) -> int:
    from .. import native
    from ..net import pcapgen
    from ..ui import progress

    _synth_source(a)
    plan = None
    if a.faults:  # read before the day is made: a plan it cannot use is said at once
        from .. import faults

        try:
            plan = faults.load_plan(a.faults)
        except faults.FaultPlanError as e:
            raise FhError(str(e)) from None
    if a.itch:
        data = _input(a.itch, "itch", "--itch").read_bytes()
        whole = native.blocks_prefix(data, len(data))
        if whole < len(data):  # packed, the cut-off message would be dropped without a word
            print(f"fh pcap synth: {a.itch}: truncated: its last message is cut off (at byte {whole:,} of "
                  f"{len(data):,}); the capture carries the messages before it", file=sys.stderr)
            data = data[:whole]
    else:  # one C call (the GIL released): a bar without a total, moving while it runs
        with progress(None, f"generating a day of {a.messages:,} messages"):
            data = native.synth_bytes(a.messages, a.instruments, a.seed)
    lines = [pcapgen.Line(*pcapgen.DEFAULT_A, vlan=a.vlan)]
    if not a.a_only:
        lines.append(pcapgen.Line(*pcapgen.DEFAULT_B, vlan=a.vlan, delay_ns=3000))
    if plan is not None:
        return _synth_with_faults(a, data, lines, plan)
    with _writing(a.out):
        s = pcapgen.synth_pcap(a.out, data, lines, session=a.session, mtu=a.mtu, burst_ns=a.burst_ns,
                               progress=progress)
    print(f"{a.out}: {s['messages']:,} messages in {s['datagrams']:,} datagrams on {s['lines']} line(s) "
          f"({', '.join(f'{l.group}:{l.port}' for l in lines)}), session {a.session}", file=sys.stderr)
    if a.json:
        from ..ui import print_json

        print_json(_synth_json(a, s, lines, None))
    return 0


_SYNTH_DEFAULTS = {"messages": 100_000, "instruments": 40, "seed": 1}


def _synth_source(a) -> None:
    """fh pcap synth: the options of the generated day are refused with --itch (--messages 5 was ignored without a
    word), else given their defaults; OUT may not be the --itch file (it was overwritten by its own capture)."""
    given = [f"--{k}" for k in _SYNTH_DEFAULTS if getattr(a, k) is not None]
    if a.itch and given:
        raise FhError(f"{' and '.join(given)} describe{'s' if len(given) == 1 else ''} a generated day, and --itch "
                      f"{a.itch} gives the day: drop {' '.join(given)}, or --itch to generate one")
    for k, v in _SYNTH_DEFAULTS.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.itch and _same_file(a.out, a.itch):
        raise FhError(f"OUT {a.out} is the --itch file itself: writing the capture would overwrite the day it is "
                      f"made of; give another OUT, e.g. {Path(a.itch).with_suffix('.pcap').name}")


def _same_file(a: str, b: str) -> bool:
    """Whether paths a and b name one file: the same inode when both exist, else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _synth_json(a, s: dict, lines, injected: dict | None) -> dict:
    """fh pcap synth --json (docs/cli.md): what was written and, with --faults, what was injected."""
    return {"out": str(a.out), "session": a.session, "messages": s["messages"], "datagrams": s["datagrams"],
            "frames": s.get("frames"), "lines": [f"{l.group}:{l.port}" for l in lines], "mtu": a.mtu,
            "vlan": a.vlan, "faults": injected}


def _synth_with_faults(a, data: bytes, lines, plan) -> int:
    from .. import faults
    from ..net import pcapgen
    from ..ui import progress

    try:
        with _writing(a.out):
            s, inj = pcapgen.synth_faulty_pcap(a.out, data, lines, plan, session=a.session, mtu=a.mtu,
                                               burst_ns=a.burst_ns, progress=progress)
    except faults.FaultPlanError as e:
        raise FhError(str(e)) from None
    print(f"{a.out}: {s['messages']:,} messages in {s['datagrams']:,} datagrams on {s['lines']} line(s), "
          f"{s['frames']:,} frames with the faults of {a.faults}", file=sys.stderr)
    if a.json:
        from ..ui import print_json

        print_json(_synth_json(a, s, lines, inj))
        return 0
    for line in faults.summary_lines(inj):
        print(line)
    return 0


def cmd_retransmit_server(a) -> int:
    from ..net import retransmit

    try:
        return retransmit.serve_cli(a)
    except retransmit.RetransmitError as e:
        raise FhError(str(e)) from None


def cmd_pcap_inspect(a) -> int:
    from ..net import pcapgen
    from ..ui import fmt_int, print_json, print_table

    ins = pcapgen.inspect_pcap(_input(a.pcap, "pcap", "PCAP"))
    r = dict(ins.reader)
    frames, grams = r.pop("frames", ins.datagrams), r.pop("datagrams", ins.datagrams)
    if a.json:
        print_json({"frames": frames, "datagrams": ins.datagrams, "endpoints": dict(ins.endpoints),
                    "sessions": ins.sessions, "gaps": ins.gaps, "types": dict(ins.types),
                    "heartbeats": ins.heartbeats, "end_of_session": ins.end_of_session, "malformed": ins.malformed,
                    "skipped_frames": ins.reader})
        return 0
    skipped = {k: v for k, v in r.items() if v}
    print(f"{a.pcap}: {frames:,} frames, {grams:,} UDP datagrams"
          + (", skipped: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(skipped.items()))
             if skipped else ", none skipped"))
    print()
    print_table(["destination", "datagrams"], [(ep, fmt_int(n)) for ep, n in ins.endpoints.most_common()])
    print()
    print_table(["session", "sequences", "messages (every line's copies)"],
                [(s.rstrip(), f"{lo:,}..{hi:,}", fmt_int(n)) for s, (lo, hi, n) in ins.sessions.items()])
    print()
    print(f"heartbeats {ins.heartbeats:,}, end of session {ins.end_of_session:,}, malformed {ins.malformed:,}")
    print(f"gaps within a destination: {len(ins.gaps):,}")
    if ins.gaps:
        print_table(["session", "destination", "expected", "got"],
                    [(s.rstrip(), ep, fmt_int(e), fmt_int(g)) for s, ep, e, g in ins.gaps[:10]])
        if len(ins.gaps) > 10:
            print(f"... {len(ins.gaps) - 10:,} more (--json lists them all)")
    print()
    total = sum(ins.types.values()) or 1
    print_table(["type", "messages", "share"],
                [(t, fmt_int(n), f"{100 * n / total:.1f} %") for t, n in sorted(ins.types.items())])
    return 0


def _session(text: str) -> str:
    """A MoldUDP64 session: 1..10 printable ASCII characters (padded with spaces on the wire)."""
    import argparse

    if not 1 <= len(text) <= 10 or not all(0x21 <= ord(c) < 0x7F for c in text.rstrip(" ")) or not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: a MoldUDP64 session is 1 to 10 printable ASCII characters "
                                         "without spaces inside, e.g. FHSYNTH001")
    return text


def _ranged(low: int, high: int, what: str):
    import argparse

    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} is a whole number from {low} to {high}") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{v}: {what} is a whole number from {low} to {high}")
        return v
    return parse


def _mbps(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r}: a line rate in megabits a second, above 0 and at most "
                                         "1,000,000 (1 Tbps), e.g. 100")
    return v


def _ms(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 3_600_000:
        raise argparse.ArgumentTypeError(f"{text!r}: milliseconds, above 0 and at most 3,600,000 (an hour), e.g. 10")
    return v


def register(sub, positive, nonneg) -> None:
    from ..ui import HelpFormatter, add_json_flag, examples
    from .argtypes import U64_MAX, _bounded, _given, _out_file

    r = sub.add_parser(
        "replay", help="replay a pcap through the DPDK data plane into shared memory", formatter_class=HelpFormatter,
        description="Replay a capture through the DPDK data plane. --speed max (the default) runs it on net_pcap "
                    "at top speed, deterministically. --speed recorded|xN, --pps N and --mbps N pace it as a feed "
                    "arrives (as tcpreplay does): a sender in a network namespace of its own sends the frames over a "
                    "veth pair to the data plane on net_af_packet (root, iproute2 and DPDK's af_packet driver "
                    "needed; all of it is removed afterwards). The summary ends with a rate line as tcpreplay's: "
                    "packets, bytes, elapsed, Mbps, pps and msg/s.",
        epilog=examples("fh replay pcaps/synth-ab-40k.pcap",
                        "fh replay day.pcap --name lab --keep-segment && fh book AAPL --name lab && fh stats --name lab",
                        "fh replay day.pcap --speed x100 --maxsleep 10",
                        "fh replay day.pcap --mbps 100 --json"))
    r.add_argument("pcap", metavar="PCAP", help="a classic pcap of MoldUDP64 datagrams (gzipped or not)")
    r.add_argument("--speed", default="max",
                   help="max (net_pcap, top speed), recorded (the capture's own inter-packet times) or xN (those "
                        "times divided by N, e.g. x100)")
    r.add_argument("--pps", type=float, default=None, metavar="N", help="paced at N packets per second instead")
    r.add_argument("--mbps", type=_mbps, default=None, metavar="N",
                   help="paced at a line rate of N megabits per second instead (each frame's bytes as captured), "
                        "as tcpreplay --mbps")
    r.add_argument("--maxsleep", type=_ms, default=None, metavar="MS",
                   help="paced: never wait more than MS milliseconds between two frames (long silences in the "
                        "capture are cut short), as tcpreplay --maxsleep; default: no cap")
    r.add_argument("--loop", type=positive, default=1, metavar="K",
                   help="send the capture K times in a row (at max speed net_pcap reads it K times through a FIFO; "
                        "paced, the sender loops). The same sequence numbers come again, so the data plane counts "
                        "the repeats as duplicates and the books are those of one pass")
    r.add_argument("--name", default=None, metavar="NAME",
                   help="instance name: the segment is /dev/shm/fh-NAME, for fh book/stats/top --name NAME with "
                        "--keep-segment (default: replay-<random> / live-<random>)")
    r.add_argument("--keep-segment", action="store_true",
                   help="leave the segment after the replay, for fh book SYMBOL --name NAME, fh stats --name NAME; "
                        "remove it with: rm /dev/shm/fh-NAME /dev/shm/fh-NAME.wake")
    r.add_argument("--dump-books", metavar="FILE", help="write the final books, read from shared memory, here")
    r.add_argument("--depth", type=positive, default=None, help="levels per side in --dump-books (default: all)")
    add_json_flag(r, "fh replay")
    r.add_argument("--realtime", action="store_true",
                   help="paced: run the sender under SCHED_FIFO, so that other tasks on its CPU do not delay frames "
                        "by milliseconds")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no notes on stderr")
    r.set_defaults(func=cmd_replay)

    v = sub.add_parser("verify", help="replay a pcap and compare the books with the reference model's",
                       formatter_class=HelpFormatter,
                       description="Replay the capture through the data plane at top speed, then compare every book "
                                   "with the pure-Python reference model's for the same datagrams. Exit 0: OK; 1: "
                                   "the books differ, or messages are missing (STALE).",
                       epilog=examples("fh verify pcaps/synth-ab-40k.pcap", "fh verify day.pcap --json | jq .verdict"))
    v.add_argument("pcap", metavar="PCAP", help="a classic pcap of MoldUDP64 datagrams (gzipped or not)")
    v.add_argument("--depth", type=positive, default=None, help="levels per side compared (default: all)")
    add_json_flag(v, "fh verify")
    v.set_defaults(func=cmd_verify)

    p = sub.add_parser("pcap", help="MoldUDP64 captures: synth, inspect", formatter_class=HelpFormatter,
                       epilog=examples("fh pcap synth day.pcap --messages 100000", "fh pcap inspect day.pcap"))
    ps = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = ps.add_parser("synth", help="pack an ITCH day into MoldUDP64 datagrams on an A and a B line",
                      formatter_class=HelpFormatter,
                      description="Pack a day (generated, or --itch) into MoldUDP64 datagrams filled to the MTU, "
                                  "on an A and a B line, capture times from the ITCH timestamps. A progress bar "
                                  "shows on a terminal.",
                      epilog=examples("fh pcap synth day.pcap --messages 100000 --instruments 40",
                                      "fh pcap synth day.pcap --itch 01302019.NASDAQ_ITCH50.gz --vlan 100",
                                      "fh pcap synth faulty.pcap --faults plan.toml"))
    s.add_argument("out", metavar="OUT", type=_out_file("day.pcap"), help="the pcap to write")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--itch", metavar="FILE", type=_given("a daily ITCH 5.0 file"),
                     help="a daily ITCH file, gzipped or not (default: generate a day)")
    # (no argparse default: cmd_pcap_synth tells them given from not given, to refuse them with --itch)
    s.add_argument("--messages", type=_bounded(1, U64_MAX), help="messages of the generated day (default: 100000)")
    s.add_argument("--instruments", type=positive, help="instruments of the generated day (default: 40)")
    s.add_argument("--seed", type=_bounded(0, U64_MAX), help="seed of the generated day (default: 1)")
    s.add_argument("--session", type=_session, default="FHSYNTH001",
                   help="the MoldUDP64 session, 1-10 printable ASCII characters")
    s.add_argument("--mtu", type=_ranged(128, 9216, "an MTU"), default=1500,
                   help="IP packets up to this size, 128-9216: datagrams are filled up to it")
    s.add_argument("--burst-ns", type=positive, default=None,
                   help="only messages this close in ITCH time share a datagram (default: fill to the MTU)")
    s.add_argument("--vlan", type=_ranged(1, 4094, "an 802.1Q VLAN id"), default=None,
                   help="tag frames with this 802.1Q VLAN id, 1-4094 (default: untagged)")
    s.add_argument("--a-only", action="store_true", help="the A line only")
    s.add_argument("--faults", metavar="PLAN",
                   help="apply this fault plan (TOML or JSON, docs/fault-plans.md) to the lines and print what was "
                        "injected")
    add_json_flag(s, "fh pcap synth")
    s.set_defaults(func=cmd_pcap_synth)
    rt = sub.add_parser(
        "retransmit-server", help="answer MoldUDP64 retransmission requests from a recorded capture",
        formatter_class=HelpFormatter,
        description="Load the messages of a capture by session and sequence (the first copy of each wins) and "
                    "answer MoldUDP64 request packets on UDP as the exchange's re-request server does: the "
                    "requested messages in downstream packets, unicast to the address that asked. Counters are "
                    "printed on SIGINT/SIGTERM.",
        epilog=examples("fh retransmit-server --pcap day.pcap --listen 127.0.0.1:0 --ready-file addr"))
    rt.add_argument("--pcap", required=True, metavar="DAY.pcap", type=_given("the capture to serve"),
                    help="the capture to serve (a clean one)")
    rt.add_argument("--listen", default="127.0.0.1:26478", metavar="ADDR:PORT",
                    help="where to listen (port 0 takes a free one, printed at start)")
    rt.add_argument("--max-count", type=positive, default=1000, metavar="N",
                    help="at most N messages per request, however many are asked for")
    rt.add_argument("--mtu", type=positive, default=1500, help="each response datagram fits this MTU")
    rt.add_argument("--stats-json", metavar="FILE", help="write the counters here on exit (and every second)")
    rt.add_argument("--ready-file", metavar="FILE", help="write the listening ADDR:PORT here once ready")
    rt.set_defaults(func=cmd_retransmit_server)

    i = ps.add_parser("inspect", help="packets, sessions, sequence ranges, gaps and message types of a capture",
                      formatter_class=HelpFormatter,
                      epilog=examples("fh pcap inspect pcaps/synth-ab-40k.pcap",
                                      "fh pcap inspect day.pcap --json | jq .sessions"))
    i.add_argument("pcap", metavar="PCAP", help="a classic pcap (gzipped or not)")
    add_json_flag(i, "fh pcap inspect")
    i.set_defaults(func=cmd_pcap_inspect)
