"""A paced pcap sender, and the lab topology it sends over.

`Sender` transmits the Ethernet frames of a classic pcap, as captured, on one interface through an AF_PACKET
raw socket, paced as tcpreplay paces:

  ``max``        back to back
  ``recorded``   the capture's own inter-packet times
  ``xN``         the recorded times divided by N (``x10`` is ten times faster than recorded)
  ``pps``        a fixed rate, N packets per second
  ``mbps``       a line rate, N megabits per second (each frame's bytes as captured)

with any one wait between two frames capped at ``maxsleep`` (as tcpreplay's --maxsleep) if given,

and ``loop`` K times. Pacing holds an absolute schedule on the monotonic clock (a late packet does not delay
the ones after it): it sleeps while the next packet is far off (timer slack cut to 1 ns) and busy-waits the
last `SPIN_NS`, so a packet typically leaves within a microsecond of its time; other tasks on the same CPU
can still hold it back by milliseconds, unless it runs under SCHED_FIFO (--realtime). What it achieved is in
the summary: elapsed against scheduled time, achieved against requested rate, and how late frames left.

`Lab` is the topology a live replay runs on: a network namespace ``fhs-<id>`` holding the sender's end of a
veth pair, the other end (``fhd-<id>``) in the root namespace for the data plane (net_af_packet), up, all
multicast accepted, IPv6 off on both ends so that neither kernel sends router solicitations or MLD reports
of its own. `Lab.down` removes all of it.

Run inside the namespace as ``nsenter --net=/run/netns/fhs-<id> python -m handler.net.sender PCAP --iface fhs-<id> ...``;
it prints progress and a final summary as JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import FhError

SPIN_NS = 200_000          # busy-wait the last 200 µs before a packet's time; sleep before that
PROGRESS_EVERY_NS = 100_000_000
RT_PRIORITY = 10           # SCHED_FIFO priority with --realtime
ENOBUFS_TRIES = 100_000    # a veth peer's backlog full: retries in all before frames are counted lost


class SenderError(FhError, RuntimeError):
    """The sender or its lab topology could not do what was asked; the message says what to do."""


class LabError(SenderError):
    pass


# -- pacing -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pace:
    mode: str                 # max | recorded | pps | mbps
    factor: float = 1.0       # recorded: times divided by this
    pps: float = 0.0          # pps: packets per second
    mbps: float = 0.0         # mbps: megabits per second
    maxsleep_ms: float = 0.0  # paced: no wait between two frames longer than this (0: no cap)

    @property
    def paced(self) -> bool:
        return self.mode != "max"

    def __str__(self) -> str:
        if self.mode == "pps":
            text = f"{self.pps:g} pps"
        elif self.mode == "mbps":
            text = f"{self.mbps:g} Mbps"
        elif self.mode == "recorded":
            text = "recorded" if self.factor == 1 else f"x{self.factor:g}"
        else:
            return "max"
        return text + (f", maxsleep {self.maxsleep_ms:g} ms" if self.maxsleep_ms else "")


def _rate(option: str, v: float) -> float:
    if not (v > 0 and math.isfinite(v)):
        raise SenderError(f"{option} {v:g}: must be a positive rate")
    return float(v)


def parse_pace(speed: str = "max", pps: float | None = None, mbps: float | None = None,
               maxsleep_ms: float | None = None) -> Pace:
    """--speed max|recorded|xN, --pps N, --mbps N and --maxsleep MS, as the command line takes them."""
    speed = (speed or "max").strip().lower()
    given = [o for o, v in (("--speed " + speed, speed != "max"), (f"--pps {pps:g}" if pps is not None else "",
                                                                    pps is not None),
                            (f"--mbps {mbps:g}" if mbps is not None else "", mbps is not None)) if v]
    if len(given) > 1:
        raise SenderError(f"{' and '.join(given)}: give one of them")
    cap = 0.0
    if maxsleep_ms is not None:
        if not (maxsleep_ms > 0 and math.isfinite(maxsleep_ms)):
            raise SenderError(f"--maxsleep {maxsleep_ms:g}: must be a positive number of milliseconds")
        if not given:
            raise SenderError(f"--maxsleep {maxsleep_ms:g}: only a paced replay waits between frames: add --speed "
                              "recorded|xN, --pps N or --mbps N")
        cap = float(maxsleep_ms)
    if pps is not None:
        return Pace("pps", pps=_rate("--pps", pps), maxsleep_ms=cap)
    if mbps is not None:
        return Pace("mbps", mbps=_rate("--mbps", mbps), maxsleep_ms=cap)
    if speed == "max":
        return Pace("max")
    if speed in ("recorded", "x1", "1"):
        return Pace("recorded", 1.0, maxsleep_ms=cap)
    if speed.startswith("x"):
        try:
            f = float(speed[1:])
        except ValueError:
            f = -1.0
        if f > 0 and math.isfinite(f):
            return Pace("recorded", f, maxsleep_ms=cap)
    raise SenderError(f"--speed {speed}: expected max, recorded or xN (N > 0, e.g. x10 = ten times the recorded "
                      "rate)")


# -- frames -----------------------------------------------------------------------------------------------

@dataclass
class Capture:
    path: str
    frames: list[bytes]
    ts_ns: list[int]

    @property
    def span_ns(self) -> int:
        return self.ts_ns[-1] - self.ts_ns[0] if self.ts_ns else 0


def read_frames(path: str | os.PathLike) -> Capture:
    """Every frame of a classic Ethernet pcap, as captured, with its timestamp. A record cut off at the end of
    the file ends the capture (as in PcapReader); other link types cannot be sent as they are."""
    from .pcapfile import LINKTYPE_ETHERNET, PcapReader

    r = PcapReader(path)  # checks the header: pcapng and unknown files are refused with their reason
    if r.linktype != LINKTYPE_ETHERNET:
        raise SenderError(f"{path}: link type {r.linktype} is not Ethernet: its frames cannot be sent on an "
                          "interface as they are (convert with `editcap -T ether`)")
    rec = struct.Struct(("<" if r.byteorder == "little" else ">") + "IIII")
    mult = 1 if r.nanosecond else 1000
    data = Path(path).read_bytes()
    frames, ts = [], []
    pos, size = 24, len(data)
    while pos + 16 <= size:
        sec, frac, incl, _ = rec.unpack_from(data, pos)
        if pos + 16 + incl > size:
            break
        frames.append(data[pos + 16:pos + 16 + incl])
        ts.append(sec * 1_000_000_000 + frac * mult)
        pos += 16 + incl
    return Capture(str(path), frames, ts)


def schedule(cap: Capture, pace: Pace) -> tuple[list[int] | None, int]:
    """Each frame's send time relative to the first of its loop (ns), and one loop's period; (None, 0) for
    max. A capture whose clock steps back is sent in file order, the step taken as no wait."""
    n = len(cap.frames)
    if pace.mode == "max" or n == 0:
        return None, 0
    cap_ns = pace.maxsleep_ms * 1e6 if pace.maxsleep_ms else math.inf
    if pace.mode == "pps":
        gap = min(1e9 / pace.pps, cap_ns)
        return [round(i * gap) for i in range(n)], round(n * gap)
    if pace.mode == "mbps":  # a frame's bits at the line rate before the next one leaves
        ns_per_byte = 8e3 / pace.mbps
        offs, t = [], 0.0
        for f in cap.frames:
            offs.append(round(t))
            t += min(len(f) * ns_per_byte, cap_ns)
        return offs, round(t)
    offs, t, prev = [], 0.0, cap.ts_ns[0]
    for ts in cap.ts_ns:
        t += min(max(0, ts - prev) / pace.factor, cap_ns)
        prev = ts
        offs.append(round(t))
    mean_gap = offs[-1] / (n - 1) if n > 1 else 0
    return offs, round(offs[-1] + mean_gap)


def planned_s(offsets: list[int] | None, period: int, loop: int = 1) -> float:
    """How long a schedule (from `schedule`) lasts over `loop` passes, first frame to last; 0 at max speed."""
    if not offsets:
        return 0.0
    return ((loop - 1) * period + offsets[-1]) / 1e9


# -- the sender -------------------------------------------------------------------------------------------

def _timer_slack_1ns() -> None:
    """Let sleeps end on time: the default timer slack (50 µs) would blur the pacing."""
    try:
        import ctypes

        z = ctypes.c_ulong(0)
        ctypes.CDLL(None, use_errno=True).prctl(29, ctypes.c_ulong(1), z, z, z)  # PR_SET_TIMERSLACK, 1 ns
    except (OSError, AttributeError):
        pass


class Sender:
    """Sends a capture's frames on `iface`, paced; `run` returns a summary."""

    def __init__(self, pcap: str | os.PathLike, iface: str, pace: Pace, loop: int = 1):
        if loop < 1:
            raise SenderError(f"--loop {loop}: must be at least 1")
        self.cap = read_frames(pcap)
        self.iface, self.pace, self.loop = iface, pace, loop
        self.offsets, self.period = schedule(self.cap, pace)

    @property
    def total(self) -> int:
        return len(self.cap.frames) * self.loop

    @property
    def scheduled_s(self) -> float:
        """How long the paced schedule lasts (0 at max speed)."""
        return planned_s(self.offsets, self.period, self.loop)

    def requested_pps(self) -> float | None:
        if self.offsets is None:
            return None
        return (self.total - 1) / self.scheduled_s if self.scheduled_s > 0 else None

    def _socket(self) -> socket.socket:
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only, receive nothing
        except PermissionError:
            raise SenderError("an AF_PACKET socket needs root (or CAP_NET_RAW)") from None
        try:
            s.bind((self.iface, 0))
        except OSError as e:
            s.close()
            raise SenderError(f"interface {self.iface}: {e.strerror}: is it in this network namespace, and up?") \
                from None
        return s

    def _resend(self, send, frame: bytes, e: OSError, errors: dict[str, int]) -> bool:
        """A send failed: retry while the peer's backlog is full (ENOBUFS); count any other error by name."""
        while e.errno == errno.ENOBUFS and self.retries < ENOBUFS_TRIES:
            self.retries += 1
            time.sleep(0)
            try:
                send(frame)
                return True
            except OSError as e2:
                e = e2
        name = errno.errorcode.get(e.errno, str(e.errno))
        errors[name] = errors.get(name, 0) + 1
        return False

    def run(self, progress=None) -> dict:
        """Send every frame `loop` times. progress(sent, total, elapsed_s, eta_s) is called about ten times a
        second; eta_s is what is left of the schedule (None at max speed)."""
        _timer_slack_1ns()
        frames, offs, period = self.cap.frames, self.offsets, self.period
        n, total = len(frames), self.total
        late_hist = [0] * LATE_BUCKETS  # how late each paced frame left: late_index(ns)
        late_max = 0
        nbytes = 0
        errors: dict[str, int] = {}
        sent = 0
        self.retries = 0
        mono, sleep = time.monotonic_ns, time.sleep
        finish: int | None = None   # when the schedule ends (monotonic ns); None at max speed

        def eta(now: int) -> float | None:
            return None if finish is None else max(0.0, (finish - now) / 1e9)

        s = self._socket()
        send = s.send
        try:
            t0 = mono() + 1_000_000     # 1 ms to settle before the first frame
            if offs is not None:
                finish = t0 + round(self.scheduled_s * 1e9)
            next_report = t0 + PROGRESS_EVERY_NS
            first = None
            for k in range(self.loop):
                base = t0 + k * period
                for i in range(n):
                    if offs is not None:
                        target = base + offs[i]
                        d = target - mono()
                        while d > SPIN_NS:  # sleep in slices, so that progress goes on through long gaps
                            sleep(min(d - SPIN_NS, PROGRESS_EVERY_NS) / 1e9)
                            now = mono()
                            d = target - now
                            if progress is not None and now >= next_report:
                                next_report = now + PROGRESS_EVERY_NS
                                progress(sent, total, (now - t0) / 1e9, eta(now))
                        while mono() < target:
                            pass
                        late = mono() - target
                        late_hist[late_index(late)] += 1
                        if late > late_max:
                            late_max = late
                    f = frames[i]
                    try:
                        send(f)
                    except OSError as e:
                        if not self._resend(send, f, e, errors):
                            continue
                    sent += 1
                    nbytes += len(f)
                    if first is None:
                        first = mono()
                    if progress is not None:
                        now = mono()
                        if now >= next_report:
                            next_report = now + PROGRESS_EVERY_NS
                            progress(sent, total, (now - t0) / 1e9, eta(now))
            end = mono()
        finally:
            s.close()
        if progress is not None:
            progress(sent, total, (end - t0) / 1e9, 0.0 if offs is not None else None)
        # paced: from the schedule's start (frame 0's time), so a late first frame does not flatter the rate
        elapsed = (end - (t0 if offs is not None else (first or end))) / 1e9
        out = {"iface": self.iface, "pace": str(self.pace), "loop": self.loop, "frames": total, "sent": sent,
               "bytes": nbytes, "errors": errors, "enobufs_retries": self.retries, "elapsed_s": round(elapsed, 6),
               "achieved_pps": round((sent - 1) / elapsed, 1) if elapsed > 0 and sent > 1 else None}
        if offs is not None:
            out["scheduled_s"] = round(self.scheduled_s, 6)
            req = self.requested_pps()
            out["requested_pps"] = round(req, 1) if req else None
            out["late_ns"] = _late_summary(late_hist, late_max)
        return out


# Lateness histogram: log-linear as fh/shm.h's latency buckets (exact below 64 ns, then 16 sub-buckets per power
# of two, 6.25 %), up to LATE_LIMIT_NS; the last bucket holds everything beyond, which no percentile can bound.
LATE_LIMIT_NS = 1 << 24    # 16.8 ms
LATE_BUCKETS = 64 + (24 - 6) * 16 + 1


def late_index(ns: int) -> int:
    if ns < 64:
        return ns if ns > 0 else 0
    if ns >= LATE_LIMIT_NS:
        return LATE_BUCKETS - 1
    e = ns.bit_length() - 1
    return 64 + (e - 6) * 16 + ((ns >> (e - 4)) & 15)


def late_upper(i: int) -> int:
    """Inclusive upper bound (ns) of bucket i; LATE_LIMIT_NS for the last one, which has none."""
    if i < 64:
        return i
    if i == LATE_BUCKETS - 1:
        return LATE_LIMIT_NS
    e, sub = (i - 64) // 16 + 6, (i - 64) % 16
    return ((16 + sub + 1) << (e - 4)) - 1


def _late_summary(hist: list[int], late_max: int) -> dict:
    """Percentiles of lateness: each an upper bound (its bucket's top), or None where it falls beyond the
    histogram (LATE_LIMIT_NS, "beyond" counts those frames); max is measured exactly."""
    total = sum(hist)

    def pct(p: float) -> int | None:
        want, seen = max(1, math.ceil(p * total)), 0
        for b, c in enumerate(hist):
            seen += c
            if seen >= want:
                return None if b == LATE_BUCKETS - 1 else late_upper(b)
        return 0

    return {"count": total, "p50": pct(0.5), "p99": pct(0.99), "p99.9": pct(0.999), "max": late_max,
            "limit": LATE_LIMIT_NS, "beyond": hist[-1],
            # frames in the buckets above the one holding 100 µs (1 ms): certainly later than that
            "over_100us": sum(hist[late_index(100_000) + 1:]), "over_1ms": sum(hist[late_index(1_000_000) + 1:])}


def late_text(late: dict) -> str:
    """'p50 <= 2.0 µs, p99 <= 40.9 µs, p99.9 > 16.78 ms (beyond the histogram), max 23.40 ms': a percentile is its
    bucket's top, or only a lower bound once it falls beyond the histogram; max is exact."""
    from ..ui import fmt_ns

    keys = ("p50", "p99", "p99.9")
    within = [f"{k} <= {fmt_ns(late[k])}" for k in keys if late.get(k) is not None]
    beyond = [k for k in keys if late.get(k) is None]
    if beyond:
        within.append(f"{', '.join(beyond)} > {fmt_ns(late['limit'])} (beyond the histogram)")
    return ", ".join(within) + f", max {fmt_ns(late['max'])}"


# -- the lab topology -------------------------------------------------------------------------------------

def netns_argv(ns: str) -> list[str]:
    """The argv prefix that runs a command in the network namespace `ns` (made by `ip netns add`). nsenter
    enters the network namespace only; `ip netns exec` and `ip -n` also remount / and /sys in a private mount
    namespace, which fails where / is not a mount point (a chroot, a fresh root) and which nothing here needs."""
    return ["nsenter", f"--net=/run/netns/{ns}", "--"]


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*(netns_argv(ns) if ns else []), "ip", *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        raise LabError("the `ip` command (iproute2) is not installed: apt-get install iproute2") from None
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {p.stderr.strip() or f'exit status {p.returncode}'}")
    return p


class Lab:
    """A namespace `fhs-<id>` with the sender's veth end `fhs-<id>`; the data plane's end `fhd-<id>` stays in
    the root namespace. Use as a context manager, or call up() and down() (down is safe to call twice)."""

    def __init__(self, tag: str | None = None, mtu: int = 1500):
        tag = tag or uuid.uuid4().hex[:8]
        if len(tag) > 11 or not tag.replace("-", "").isalnum():
            raise LabError(f"lab id {tag!r}: up to 11 letters, digits or '-' (interface names are at most 15)")
        self.id, self.mtu = tag, mtu
        self.ns = f"fhs-{tag}"
        self.ns_if = f"fhs-{tag}"   # the sender's end, inside the namespace
        self.dp_if = f"fhd-{tag}"   # the data plane's end, in the root namespace
        self._made: list[str] = []

    def up(self) -> "Lab":
        if os.geteuid() != 0:
            raise LabError("a network namespace and a veth pair need root")
        try:
            _ip("netns", "add", self.ns)
            self._made.append("ns")
            _ip("link", "add", self.dp_if, "mtu", str(self.mtu), "type", "veth", "peer", "name", self.ns_if,
                "mtu", str(self.mtu), "netns", self.ns)
            self._made.append("veth")
            self._no_ipv6(self.dp_if)
            self._no_ipv6(self.ns_if, self.ns)
            _ip("link", "set", self.dp_if, "multicast", "on", "allmulticast", "on", "up")
            _ip("link", "set", "lo", "up", ns=self.ns)
            _ip("link", "set", self.ns_if, "multicast", "on", "up", ns=self.ns)
        except BaseException:
            self.down()
            raise
        return self

    def _no_ipv6(self, iface: str, ns: str | None = None) -> None:
        key = f"net.ipv6.conf.{iface}.disable_ipv6"
        if ns is None:
            path = Path("/proc/sys/net/ipv6/conf") / iface / "disable_ipv6"
            if path.exists():
                path.write_text("1\n")
            return
        cmd = [*netns_argv(ns), "sh", "-c",
               f"[ ! -e /proc/sys/net/ipv6/conf/{iface} ] || echo 1 > /proc/sys/net/ipv6/conf/{iface}/disable_ipv6"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        if p.returncode != 0:
            raise LabError(f"{key}=1 in {ns}: {p.stderr.strip()}")

    def down(self) -> None:
        if "veth" in self._made:
            _ip("link", "del", self.dp_if, check=False)  # takes its peer with it
        if "ns" in self._made:
            _ip("netns", "del", self.ns, check=False)
        self._made.clear()

    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def exec_argv(self, argv: list[str]) -> list[str]:
        """argv run inside the namespace."""
        return [*netns_argv(self.ns), *argv]

    def link_counters(self) -> dict[str, int]:
        """rx/tx packets of the data plane's end, as the root namespace's kernel counts them."""
        base = Path("/sys/class/net") / self.dp_if / "statistics"
        out = {}
        for k in ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped"):
            try:
                out[k] = int((base / k).read_text())
            except (OSError, ValueError):
                out[k] = 0
        return out

    def sender_argv(self, pcap: str | os.PathLike, pace: Pace, loop: int = 1, cpu: int | None = None,
                    realtime: bool = False) -> list[str]:
        """The command that runs this module's sender inside the namespace, with progress on stdout."""
        argv = [sys.executable, "-m", "handler.net.sender", str(pcap), "--iface", self.ns_if, "--loop", str(loop),
                "--progress"]
        if pace.mode == "pps":
            argv += ["--pps", repr(pace.pps)]
        elif pace.mode == "mbps":
            argv += ["--mbps", repr(pace.mbps)]
        else:
            argv += ["--speed", "max" if pace.mode == "max" else f"x{pace.factor!r}"]
        if pace.maxsleep_ms:
            argv += ["--maxsleep", repr(pace.maxsleep_ms)]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        if realtime:
            argv.append("--realtime")
        return self.exec_argv(argv)


# -- command line (what runs inside the namespace) --------------------------------------------------------

class Output:
    """What `python -m handler.net.sender --progress` prints, read from its stdout while it runs: iterating
    yields the progress messages ({"sent", "total", "elapsed_s", "eta_s"}, at least every 0.1 s); `summary` is
    the run's summary once its line has come (None before, or when the sender failed). Lines that are not JSON
    are passed over."""

    def __init__(self, stream):
        self.stream = stream
        self.summary: dict | None = None

    def __iter__(self):
        for line in self.stream:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "summary" in msg:
                self.summary = msg["summary"]
            else:
                yield msg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler.net.sender",
                                 description="send a pcap's frames on an interface, paced (see the module doc)")
    ap.add_argument("pcap")
    ap.add_argument("--iface", required=True)
    ap.add_argument("--speed", default="max", help="max, recorded or xN")
    ap.add_argument("--pps", type=float, default=None, help="a fixed rate instead of --speed")
    ap.add_argument("--mbps", type=float, default=None, help="a line rate in Mbps instead of --speed")
    ap.add_argument("--maxsleep", type=float, default=None, metavar="MS", help="cap on any one wait")
    ap.add_argument("--loop", type=int, default=1)
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    ap.add_argument("--progress", action="store_true", help="JSON progress lines on stdout while sending")
    ap.add_argument("--realtime", action="store_true",
                    help=f"run under SCHED_FIFO priority {RT_PRIORITY}: other tasks on the CPU no longer delay "
                         "frames by milliseconds (the kernel's RT throttling still leaves them 5 %%)")
    a = ap.parse_args(argv)
    try:
        if a.cpu is not None:
            os.sched_setaffinity(0, {a.cpu})
        if a.realtime:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
            except PermissionError:
                raise SenderError("--realtime: SCHED_FIFO needs root (or CAP_SYS_NICE)") from None
        snd = Sender(a.pcap, a.iface, parse_pace(a.speed, a.pps, a.mbps, a.maxsleep), a.loop)

        def report(sent: int, total: int, elapsed: float, eta: float | None) -> None:
            print(json.dumps({"sent": sent, "total": total, "elapsed_s": round(elapsed, 3),
                              "eta_s": None if eta is None else round(eta, 3)}), flush=True)

        summary = snd.run(report if a.progress else None)
    except (SenderError, OSError, ValueError) as e:
        print(f"fh sender: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
