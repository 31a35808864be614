"""The `fh` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CliError(f"{path}: no such file; check the path")
    if not p.is_file():
        raise CliError(f"{path}: not a regular file")
    return p


def _positive(text: str) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {v}")
    return v


def _nonneg(text: str) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def _print_counters(counters: dict[str, int], file=sys.stderr) -> None:
    shown = {k: v for k, v in counters.items() if v}
    print("counters: " + (", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "none"), file=file)


# ---- fh synth itch ------------------------------------------------------------------------------------


def cmd_synth_itch(a) -> int:
    from . import native

    native.synth_file(a.out, a.messages, a.instruments, a.seed, a.anomaly_ppm)
    size = os.path.getsize(a.out)
    print(f"{a.out}: {a.messages} messages, {a.instruments} instruments, seed {a.seed}, {size} bytes", file=sys.stderr)
    return 0


# ---- fh book dump ---------------------------------------------------------------------------------------


def _dump_reference(a) -> tuple[list[dict], dict]:
    from . import reference

    ref = reference.ReferenceBook()
    if a.itch:
        ref.apply_daily_file(str(_existing(a.itch)))
    else:
        ref.apply_pcap(str(_existing(a.pcap)))
    return ref.books(a.depth), dict(ref.counters)


def _dump_c(a) -> tuple[list[dict], dict]:
    from . import native

    path = _existing(a.itch or a.pcap)
    eng = native.Engine(native.EngineConfig.for_input(path.stat().st_size))
    extra = {}
    if a.itch:
        eng.apply_file(path)
    else:
        extra = eng.apply_pcap(path)
    return eng.dump(a.depth), {**eng.counters(), **{f"pcap_{k}": v for k, v in extra.items()}}


def cmd_book_dump(a) -> int:
    books, counters = (_dump_reference if a.engine == "reference" else _dump_c)(a)
    out = sys.stdout
    for b in books:
        out.write(json.dumps(b) + "\n")
    if a.stats:
        _print_counters(counters)
    return 0


# ---- fh decode ------------------------------------------------------------------------------------------


def cmd_decode(a) -> int:
    from . import native

    out = sys.stdout
    bad = 0

    def emit(msg, where: str, tail: str = "") -> None:
        nonlocal bad
        text = native.itch_json(bytes(msg))
        if text is None:
            bad += 1
            kind = "unknown message type" if len(msg) and native.itch_spec_length(msg[0]) == 0 else "short message"
            first = f"0x{msg[0]:02x}" if len(msg) else "none"
            print(f"fh decode: {where}: {kind} (type byte {first}, {len(msg)} bytes), skipped", file=sys.stderr)
            return
        out.write(text[:-1] + tail + "}\n" if tail else text + "\n")

    if a.itch:
        path = _existing(a.itch)
        data = path.read_bytes()
        end = 0
        for off, msg in native.iter_blocks(data):
            emit(msg, f"{path}: offset {off}")
            end = off + 2 + len(msg)
        if end != len(data):
            print(f"fh decode: {path}: truncated: the block at offset {end} runs past the end of the file "
                  f"({len(data) - end} trailing bytes)", file=sys.stderr)
            return 1
        return 1 if bad else 0

    import struct

    from .pcapfile import PcapReader

    reader = PcapReader(_existing(a.pcap))
    malformed = 0
    for n, d in enumerate(reader.datagrams(), 1):
        where = f"{a.pcap}: datagram {n} ({d.dst}:{d.dport})"
        if len(d.payload) < 20:
            malformed += 1
            print(f"fh decode: {where}: {len(d.payload)} bytes, shorter than a MoldUDP64 header", file=sys.stderr)
            continue
        session_raw, sequence, count = struct.unpack_from(">10sQH", d.payload)
        session = json.dumps(session_raw.decode("latin-1").rstrip(" "))
        if count in (0, 0xFFFF):  # heartbeat, end of session
            continue
        i = 0
        for i, (_, msg) in enumerate(native.iter_blocks(d.payload[20:]), 1):
            emit(msg, f"{where} message {i - 1}", f', "session": {session}, "sequence": {sequence + i - 1}')
            if i == count:
                break
        if i != count:
            malformed += 1
            print(f"fh decode: {where}: MoldUDP64 count says {count} messages, {i} fit", file=sys.stderr)
    if reader.counters.get("truncated_file"):
        print(f"fh decode: {a.pcap}: truncated: the last record is cut off", file=sys.stderr)
        return 1
    return 1 if bad or malformed else 0


# ---- fh publish ---------------------------------------------------------------------------------------


def default_segment_path(name: str) -> str:
    return f"/dev/shm/fh-{name}"


def cmd_publish(a) -> int:
    """Apply a daily ITCH file into a shared segment that readers follow (for tests, demos and labs; the
    data plane publishes live feeds the same way)."""
    import signal
    import time

    from . import native

    path = _existing(a.itch)
    seg_path = a.segment or default_segment_path(a.name)
    data = path.read_bytes()
    seg = native.Segment(seg_path, a.name, max_levels=a.max_levels, event_capacity=a.events, depth=a.depth)
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        eng = native.Engine(native.EngineConfig.for_input(len(data)), segment=seg)
        print(f"fh publish: {seg_path}: applying {path} ({len(data)} bytes)", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        for _ in range(a.loop):
            eng.reset()
            off = 0
            while off < len(data) and not stop:
                n = native.blocks_prefix(memoryview(data)[off:], a.chunk) if a.pace else len(data) - off
                if n == 0:
                    break
                eng.apply_blocks(memoryview(data)[off:off + n])
                off += n
                if a.pace:
                    eng.publish_stats()
                    time.sleep(a.pace)
            if stop:
                break
        eng.publish_stats()
        secs = time.perf_counter() - t0
        c = eng.counters()
        print(f"fh publish: {c['messages']} messages in {secs:.2f} s; {len(eng.locates())} books; "
              f"{eng.live_orders} live orders", file=sys.stderr, flush=True)
        if a.ready_file:
            Path(a.ready_file).write_text(str(os.getpid()))
        while a.hold and not stop:
            seg.heartbeat()
            time.sleep(0.2)
    finally:
        seg.close(unlink=not a.keep)
    return 0


# ---- fh bench engine ----------------------------------------------------------------------------------


def cmd_bench_engine(a) -> int:
    from .bench import bench_engine

    return bench_engine(a)


# ---- parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fh", description="fh: MoldUDP64 / NASDAQ TotalView-ITCH 5.0 feed handler")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="generate deterministic test data")
    ss = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    si = ss.add_parser("itch", help="a synthetic ITCH 5.0 day in the NASDAQ daily file format")
    si.add_argument("out", help="output file")
    si.add_argument("--messages", type=_positive, default=1_000_000)
    si.add_argument("--instruments", type=_positive, default=100)
    si.add_argument("--seed", type=_nonneg, default=1)
    si.add_argument("--anomaly-ppm", type=_nonneg, default=0,
                    help="inject about this many anomalies per million messages (default 0: a clean day)")
    si.set_defaults(func=cmd_synth_itch)

    b = sub.add_parser("book", help="order books")
    bs = b.add_subparsers(dest="what", required=True, metavar="WHAT")
    bd = bs.add_parser("dump", help="build the books of a file offline and print them as JSON lines")
    src = bd.add_mutually_exclusive_group(required=True)
    src.add_argument("--itch", metavar="FILE", help="a daily ITCH 5.0 file (2-byte length framing)")
    src.add_argument("--pcap", metavar="FILE", help="a pcap of MoldUDP64 datagrams")
    bd.add_argument("--depth", type=_positive, default=None, help="levels per side (default: all)")
    bd.add_argument("--engine", choices=("c", "reference"), default="c")
    bd.add_argument("--stats", action="store_true", help="print the counters on stderr")
    bd.set_defaults(func=cmd_book_dump)

    d = sub.add_parser("decode", help="print every ITCH message as a JSON line")
    dsrc = d.add_mutually_exclusive_group(required=True)
    dsrc.add_argument("--itch", metavar="FILE")
    dsrc.add_argument("--pcap", metavar="FILE")
    d.set_defaults(func=cmd_decode)

    pb = sub.add_parser("publish", help="apply a daily ITCH file into a shared-memory segment for readers")
    pb.add_argument("--itch", metavar="FILE", required=True)
    pb.add_argument("--name", default="fh", help="instance name (segment /dev/shm/fh-NAME)")
    pb.add_argument("--segment", metavar="PATH", help="segment file (default: /dev/shm/fh-NAME)")
    pb.add_argument("--depth", type=_positive, default=10, help="top-N levels readers show by default")
    pb.add_argument("--events", type=_positive, default=1 << 16, help="event ring capacity (a power of two)")
    pb.add_argument("--max-levels", type=_positive, default=4 << 20)
    pb.add_argument("--pace", type=float, default=0.0, metavar="SECONDS",
                    help="sleep this long after every chunk (default: full speed, one pass)")
    pb.add_argument("--chunk", type=_positive, default=64 << 10, metavar="BYTES", help="chunk size with --pace")
    pb.add_argument("--loop", type=_positive, default=1, help="apply the day this many times (reset between)")
    pb.add_argument("--hold", action="store_true", help="keep the segment (and heartbeat) until SIGINT/SIGTERM")
    pb.add_argument("--keep", action="store_true", help="leave the segment file behind on exit")
    pb.add_argument("--ready-file", metavar="PATH", help="write the pid here once the day is applied")
    pb.set_defaults(func=cmd_publish)

    be = sub.add_parser("bench", help="benchmarks")
    bes = be.add_subparsers(dest="what", required=True, metavar="WHAT")
    beng = bes.add_parser("engine", help="the C book engine on one core, against a parse-only pass and itch-book")
    beng.add_argument("--messages", type=_positive, default=20_000_000)
    beng.add_argument("--instruments", type=_positive, default=8000)
    beng.add_argument("--seed", type=_nonneg, default=1)
    beng.add_argument("--itch", metavar="FILE", help="use this daily file instead of generating a day")
    beng.add_argument("--repeats", type=_positive, default=5)
    beng.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last one)")
    beng.add_argument("--no-itch-book", action="store_true", help="skip the itch-book comparison")
    beng.add_argument("--json", action="store_true", help="print the results as one JSON object")
    beng.set_defaults(func=cmd_bench_engine)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        print(f"fh: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as e:
        print(f"fh: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the C core's errors carry their own context
        from .native import NativeError

        if isinstance(e, NativeError):
            print(f"fh: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
