"""`fh bench latency`: tick-to-book at realistic rates, and what the machine adds to it.

For each rate (messages a second, --rates 100k,1M,5M) one run:

  1. hiccup scan  fh-hiccups on the poll core for --scan-seconds: the TSC read's cost in cycles, then a loop that
                  only reads the TSC and records every gap over --hiccup-ns (timer ticks, interrupts, other
                  tasks, the hypervisor's steal), as sysjitter does, right before the data plane takes that core;
  2. the run      fh-dataplane spinning on the poll core (--idle spin) on net_af_packet, listening on the data
                  plane's end of a veth pair whose other end is in a network namespace this command creates
                  (fhs-<id>, removed at the end); fh-latency-send in that namespace, pinned to the other CPU,
                  sends the day's first rate x --seconds messages as MoldUDP64 at that rate (an absolute
                  schedule in messages, so the rate is exact whatever the packing); during the run the poll
                  core's interrupts and softirqs, its steal time and the poll thread's involuntary context
                  switches are read from /proc before and after.

Why net_af_packet on a veth pair: the frames cross a real kernel path at the sender's pace, so they reach the
data plane when they were sent (net_pcap reads a file at whatever speed it is polled: bursts of 32, no pacing),
and it needs no NIC, no hugepages and nothing beyond the kernel and DPDK's own driver. The latency measured is
the data plane's (fh/shm.h): from its TSC read right after the rx burst to the read after the datagram is
applied and published, so the veth and the PMD's copy are before the stamp and not in the figure.

The day: `fh synth itch` (generated once and cached in $FH_BENCH_CACHE, default a directory in the temp dir)
packed --per-packet messages a datagram (at most what --mtu holds), or --pcap FILE sent as captured (its
datagrams' MoldUDP64 message counts set the schedule). Counts: messages scheduled, sent, received (applied by
the data plane), and lost between them, by cause (the sender's errors, the kernel's packet ring, the data plane's
drops, MoldUDP64 gaps).

What the machine adds, beside what fh adds: a message's latency grows by an interruption only when the
interruption lands while its datagram is being processed (frames that arrive during one wait in the ring and
are stamped after it). So from the scan's rate of gaps (per second) and the share of time the data plane is busy
in the run, the expected number of messages a hiccup delays is
    gaps/s x busy share x run's active seconds x messages a busy burst,
which is set against the messages the run measured above --hiccup-ns. bench/latency.md has figures.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ..errors import FhError

DPDK_MB = 512  # the data plane's EAL memory (-m)
SEG_HUGE_MB = 256  # room left for the segment (164 MB) when DPDK's memory goes on hugepages too (--dpdk-memory auto)
RT_PRIORITY = 10  # --realtime: SCHED_FIFO priority of the data plane (the sender's is its own, also 10)
FOREIGN_DROPS = ("not_ipv4", "not_udp")
TARGET_RATE = 1_000_000
TARGET_P99_NS = 1_000
TARGET_P999_NS = 5_000


class LatencyBenchError(FhError):
    pass


def parse_rates(text: str) -> list[int]:
    """'100k,1M,5M' -> [100000, 1000000, 5000000]: messages a second, each 1 to 1e9 (k and M as suffixes)."""
    out = []
    for part in str(text).split(","):
        p = part.strip()
        mult = 1
        if p[-1:] in ("k", "K"):
            mult, p = 1000, p[:-1]
        elif p[-1:] in ("m", "M"):
            mult, p = 1_000_000, p[:-1]
        try:
            v = float(p) * mult
        except ValueError:
            v = -1
        if not 1 <= v <= 1e9:
            raise LatencyBenchError(f"--rates {text}: {part.strip()!r} is not a rate in messages a second "
                                    "(1 to 1e9, with k or M: e.g. --rates 100k,1M,5M)")
        out.append(int(round(v)))
    return out


def fmt_rate_short(r: int) -> str:
    if r >= 1_000_000 and r % 100_000 == 0:
        return f"{r / 1e6:g}M"
    if r >= 1000 and r % 100 == 0:
        return f"{r / 1e3:g}k"
    return str(r)


def find_bench_program(name: str, env: str) -> str:
    from .. import process

    p = process.find_program(name, env, "bench")
    if p is None:
        raise LatencyBenchError(f"{name} not found: it is built with the C core (bash scripts/setup.sh), or set {env}")
    return p


def _cache_dir() -> Path:
    d = Path(os.environ.get("FH_BENCH_CACHE", Path(tempfile.gettempdir()) / "fh-bench-latency"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def day_file(messages: int, instruments: int, seed: int, shape: str, log=print) -> Path:
    """A generated day (daily ITCH file), made once and cached by its arguments."""
    from .. import native

    path = _cache_dir() / f"day-{shape}-m{messages}-i{instruments}-s{seed}.itch"
    if not path.is_file():
        log(f"generating {path} ({messages:,} messages, {instruments:,} instruments, {shape}) ...")
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        native.synth_file(tmp, messages, instruments, seed, shape=shape)
        os.replace(tmp, path)
    return path


# -- what the kernel counts on one CPU ----------------------------------------------------------------------

def cpu_counters(cpu: int) -> dict:
    """The interrupts (by name: LOC is the local timer, numbered lines summed as "device"), softirqs and steal
    time (ns) the kernel has counted on `cpu` since boot."""
    out: dict = {"irq": {}, "softirq": {}, "steal_ns": 0}
    try:
        with open("/proc/interrupts") as f:
            head = f.readline().split()
            col = head.index(f"CPU{cpu}") if f"CPU{cpu}" in head else None
            for line in f:
                parts = line.split()
                if col is None or len(parts) < col + 2:
                    continue
                name = parts[0].rstrip(":")
                try:
                    n = int(parts[col + 1])
                except ValueError:
                    continue
                key = "device" if name.isdigit() else name
                out["irq"][key] = out["irq"].get(key, 0) + n
    except OSError:
        pass
    try:
        with open("/proc/softirqs") as f:
            head = f.readline().split()
            col = head.index(f"CPU{cpu}") if f"CPU{cpu}" in head else None
            for line in f:
                parts = line.split()
                if col is not None and len(parts) > col + 1:
                    out["softirq"][parts[0].rstrip(":")] = int(parts[col + 1])
    except OSError:
        pass
    try:
        hz = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    out["steal_ns"] = int(line.split()[8]) * 1_000_000_000 // hz
    except (OSError, IndexError, ValueError):
        pass
    return out


def thread_switches(pid: int) -> dict:
    """Context switches of a process's main thread (the data plane's poll thread: EAL's main lcore), and its
    page faults (minor: a page touched for the first time, or taken back by the kernel; major: read from disk)."""
    from ..process import stat_fields

    out = {"voluntary": 0, "involuntary": 0, "minor_faults": 0, "major_faults": 0}
    try:
        _, fields = stat_fields(f"/proc/{pid}/task/{pid}/stat")
        out["minor_faults"], out["major_faults"] = int(fields[7]), int(fields[9])
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    out["voluntary"] = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    out["involuntary"] = int(line.split()[1])
    except OSError:
        pass
    return out


def _delta(after: dict, before: dict) -> dict:
    out = {}
    for k, v in after.items():
        if isinstance(v, dict):
            was = before.get(k, {})
            out[k] = {kk: vv - was.get(kk, 0) for kk, vv in v.items() if vv - was.get(kk, 0)}
        else:
            out[k] = v - before.get(k, 0)
    return out


# -- the parts of one run -----------------------------------------------------------------------------------

def run_hiccups(core: int, seconds: float, threshold_ns: int, realtime: bool = False) -> dict:
    """fh-hiccups on `core` (under SCHED_FIFO as the data plane with --realtime, so that it sees what the data
    plane would)."""
    prog = find_bench_program("fh-hiccups", "FH_HICCUPS")
    rt = ["chrt", "-f", str(RT_PRIORITY)] if realtime else []
    p = subprocess.run([*rt, prog, "--cpu", str(core), "--seconds", repr(seconds), "--threshold-ns", str(threshold_ns)],
                       capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise LatencyBenchError(p.stderr.strip() or f"fh-hiccups exited {p.returncode}")
    return json.loads(p.stdout)


def _above(buckets: list[tuple[int, int]], ns: int) -> int:
    """Messages in the histogram's buckets wholly above ns (bucket upper bounds, fh/shm.h)."""
    from ..shm import LAT_UPPER_NS

    out = 0
    uppers = [int(u) for u in LAT_UPPER_NS]
    for upper, count in buckets:
        i = uppers.index(upper)
        lower = uppers[i - 1] + 1 if i else 0
        if lower > ns:
            out += count
    return out


def per_packet(a, rate: int) -> int:
    """Messages a datagram at `rate`: --per-packet, or those the exchange makes within --window-us (at least 1;
    the sender also stops a datagram where --mtu is full)."""
    if a.per_packet:
        return a.per_packet
    return max(1, min(0xFFFE, math.ceil(rate * a.window_us / 1e6 - 1e-9)))


def _all_received(lost: dict, lines: int) -> bool:
    """Every message the schedule holds sent and applied, none dropped by the data plane. A frame lost in the
    packet ring (or a gap it left) costs a message only where one line carries it: with A and B, the other
    line's copy carries it, and not_applied says whether it did."""
    if lost["not_sent"] or lost["not_applied"] or lost["dataplane_drops"]:
        return False
    return lines > 1 or not (lost["frames_not_sent"] or lost["packet_ring_full_frames"] or lost["gap_messages"])


def run_rate(lab, source: dict, rate: int, messages: int, a, core: int, sender_cpu: int | None, log) -> dict:
    """One run at `rate` messages a second: the scan, then the data plane and the sender."""
    from .. import process
    from ..replay import _settle, eal_args
    from ..shm import Reader

    send = find_bench_program("fh-latency-send", "FH_LATENCY_SEND")
    scan = run_hiccups(core, a.scan_seconds, a.hiccup_ns, a.realtime)
    name = f"lat-{uuid.uuid4().hex[:8]}"
    segment = segment_path(name, a.segment_dir)
    vdev = f"net_af_packet0,iface={lab.dp_if},framecnt={a.ring_frames},blocksz=4096,framesz=2048"
    cmd = process.dataplane_cmd(eal_args(name, vdev, core, DPDK_MB, huge=a.dpdk_memory == "huge"), segment, [tuple(l) for l in source["lines"]],
                                idle=a.idle, exit_idle_ms=0, max_levels=SEG_LEVELS, events=SEG_EVENTS,
                                extra=["--name", name, *(["--warm-us", str(a.warm_us)] if a.warm_us is not None else [])])
    argv = [send, "--iface", lab.ns_if, "--rate", str(rate), "--messages", str(messages)]
    if source["kind"] == "itch":
        argv += ["--itch", str(source["path"]), "--per-packet", str(per_packet(a, rate)), "--mtu", str(a.mtu)]
    else:
        argv += ["--pcap", str(source["path"])]
    if sender_cpu is not None:
        argv += ["--cpu", str(sender_cpu)]
    if a.realtime:  # the sender, and the poll thread (EAL's main lcore): no other task preempts them
        argv.append("--realtime")
        cmd = ["chrt", "-f", str(RT_PRIORITY), *cmd]
    dp = process.Dataplane(cmd)
    try:
        dp.wait_running()
        link0, cpu0, sw0, t0 = lab.link_counters(), cpu_counters(core), thread_switches(dp.p.pid), time.monotonic()
        p = subprocess.run(lab.exec_argv(argv), capture_output=True, text=True,
                           timeout=60 + messages / rate * 3)
        if p.returncode != 0 or not p.stdout.strip():
            raise LatencyBenchError(f"the sender: {p.stderr.strip() or f'exit status {p.returncode}'}")
        sender = json.loads(p.stdout.strip().splitlines()[-1])
        _settle(segment, dp)
        cpu1, sw1, t1 = cpu_counters(core), thread_switches(dp.p.pid), time.monotonic()
        stats = dp.stop(30.0)
        link1 = lab.link_counters()
        r = Reader(segment)
        try:
            seg_lat = r.dataplane_stats()["latency"]
        finally:
            r.close()
        pages = segment_pages(segment)
    finally:
        dp.close()
        process.remove_segment(segment)
    link = {k: link1[k] - link0[k] for k in link1}
    seen = link["rx_packets"] + link["tx_packets"] - stats["nic"].get("opackets", 0)
    unseen = max(0, seen - stats["packets"])
    applied = stats["messages_applied"]
    mold = stats["mold"]
    drops = {k: v for k, v in stats["drops"].items() if v}
    # the sender sends IPv4 UDP only: a frame dropped as not IPv4 or not UDP is the kernel's own on the veth
    # (IGMP, ARP), not one of ours
    foreign = {k: v for k, v in drops.items() if k in FOREIGN_DROPS}
    lost = {"not_sent": sender["messages"] - sender["sent_messages"],
            "frames_not_sent": sender["frames"] - sender["sent"],
            "packet_ring_full_frames": unseen,
            "dataplane_drops": sum(v for k, v in drops.items() if k not in FOREIGN_DROPS),
            "gap_messages": mold.get("gap_messages", 0),
            "not_applied": max(0, sender["sent_messages"] - applied)}
    during_s = t1 - t0
    cpu_d = _delta(cpu1, cpu0)
    sw = _delta(sw1, sw0)
    lat = stats["latency_ns"]
    one = stats["latency_one_frame_ns"]
    hz = stats["tsc_hz"]
    active_s = stats["active_ns"] / 1e9
    busy_share = (stats["busy_cycles"] / hz) / active_s if active_s > 0 else 0.0
    per_burst = applied / stats["busy_bursts"] if stats["busy_bursts"] else 0.0
    g = scan["gaps"]
    # a hiccup that lands while a burst is processed delays its messages by at least its length (> --hiccup-ns);
    # the messages that arrive during one are stamped after it but wait behind the backlog in the bursts after it
    expected = g["per_s"] * busy_share * active_s * per_burst
    # the same from what the kernel counted on the poll core during the run: every interrupt and every time
    # another task (or RT throttling) took the core
    interruptions = sum(cpu_d["irq"].values()) + sw.get("involuntary", 0)
    expected_run = interruptions / during_s * busy_share * active_s * per_burst if during_s > 0 else 0.0
    mean_gap_s = g["lost_ns"] / g["count"] / 1e9 if g["count"] else 0.0
    backlog = g["per_s"] * active_s * mean_gap_s * applied / active_s if active_s > 0 else 0.0
    measured = _above(seg_lat["buckets"], a.hiccup_ns)
    res = {
        "rate": rate, "messages": messages,
        "sender": sender,
        "received": {"packets": stats["packets"], "messages_applied": applied, "datagrams": mold.get("datagrams", 0)},
        "lost": lost,
        "all_received": _all_received(lost, len(source["lines"])),
        "drops": drops,
        "foreign_frames": sum(foreign.values()),
        "link": {"iface": lab.dp_if, **link, "unseen": unseen},
        "latency_ns": lat,
        # the messages of datagrams that arrived alone (bursts of one frame): their rx->publish is their own, with
        # no frame ahead of them in the burst; the rest arrived with others (a backlog, or frames sent together)
        "latency_one_frame_ns": one,
        "one_frame_share": round(one["count"] / applied, 6) if applied else 0.0,
        # frames the sender sent in the same sendmmsg as an earlier one (it was late and sent every frame due at
        # once): at least this many arrived right behind another, whatever the data plane did
        "sent_behind_another": sender["sent"] - sender["send_calls"],
        "segment": {"dir": os.path.dirname(segment), "page_size": pages},
        "histogram": {"count": seg_lat["count"], "buckets": seg_lat["buckets"],
                      "p50": seg_lat["p50"], "p99": seg_lat["p99"], "p99.9": seg_lat["p99.9"], "max": seg_lat["max"]},
        "dataplane": {"tsc_hz": hz, "busy_cycles": stats["busy_cycles"], "busy_bursts": stats["busy_bursts"],
                      "active_ns": stats["active_ns"], "busy_share": round(busy_share, 6),
                      "messages_per_burst": round(per_burst, 3),
                      "messages_per_datagram": round(applied / mold["datagrams"], 3) if mold.get("datagrams") else 0.0,
                      "feed": stats.get("feed", {}).get("state"),
                      # idle warming's round (fh-dataplane --warm-us), and an empty poll's period: the longest a
                      # frame waits to be seen, which rx -> publish does not count (its rx is the poll that sees it)
                      "warm_us": stats["warm_us"], "empty_polls": stats["empty_polls"],
                      "empty_poll_ns": stats["empty_poll_ns"]},
        "machine": {
            "scan": scan,
            "during_run": {"seconds": round(during_s, 3), "irq": cpu_d["irq"], "softirq": cpu_d["softirq"],
                           "steal_ns": cpu_d["steal_ns"], "poll_thread_switches": sw,
                           "timer_irq_per_s": round(cpu_d["irq"].get("LOC", 0) / during_s, 1) if during_s else 0.0,
                           "irq_per_s": round(sum(cpu_d["irq"].values()) / during_s, 1) if during_s else 0.0},
            "hiccup_ns": a.hiccup_ns,
            "expected_messages_delayed": round(min(expected, applied), 1),
            "messages_in_backlogs": round(min(backlog, applied), 1),
            "interruptions_in_run": interruptions,
            "expected_messages_delayed_run": round(min(expected_run, applied), 1),
            "measured_messages_above": measured,
            "measured_share_above": round(measured / applied, 7) if applied else 0.0,
            "expected_share": round(expected / applied, 7) if applied else 0.0,
        },
    }
    from ..ui import fmt_rate

    log(f"{fmt_rate_short(rate)} msg/s: sent {sender['sent_messages']:,} messages in {sender['sent']:,} frames "
        f"({fmt_rate(sender['achieved_msgs_per_s'])}), applied {applied:,}; rx->publish p50 {lat['p50']} ns, "
        f"p99 {lat['p99']}, p99.9 {lat['p99.9']}, max {lat['max']}")
    return res


# The data plane's segment: its capacities (those of fh replay's), and where it lives.
SEG_LEVELS = 1 << 20
SEG_EVENTS = 1 << 16


def segment_path(name: str, directory: str, root: str = "/") -> str:
    """The segment of a run: where `fh run` would put an instance's (shm.dir "auto": a writable hugetlbfs mount with
    free hugepages for it, else /dev/shm; handler.segments), or in `directory`."""
    from .. import native
    from ..segments import writer_path

    return writer_path(name, native.segment_footprint(SEG_LEVELS, SEG_EVENTS), directory, root)


def segment_pages(path: str, root: str = "/") -> int:
    """The page size of the file system `path` is on: a hugetlbfs mount's, else the base page (tmpfs: /dev/shm)."""
    from ..segments import hugetlbfs_mounts

    d = os.path.dirname(os.path.realpath(path))
    for mount, page in hugetlbfs_mounts(root):
        if d == os.path.realpath(mount):
            return page
    return os.sysconf("SC_PAGE_SIZE")


def check_segment_dir(directory: str) -> None:
    if directory != "auto" and not (os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)):
        raise LatencyBenchError(f"--segment-dir {directory}: not a writable directory (give one, e.g. a hugetlbfs "
                                "mount, or auto)")


def free_hugepages_2m(meminfo: str = "/proc/meminfo") -> int:
    """Free 2 MB hugepages of the host's default size (0 when the default size is another)."""
    info = {}
    try:
        with open(meminfo) as f:
            for line in f:
                k, _, v = line.partition(":")
                info[k.strip()] = v.split()[0] if v.split() else "0"
    except OSError:
        return 0
    return int(info.get("HugePages_Free", 0)) if info.get("Hugepagesize") == "2048" else 0


def dpdk_memory(choice: str, meminfo: str = "/proc/meminfo") -> str:
    """--dpdk-memory resolved: auto is huge when the free 2 MB hugepages hold DPDK's memory beside the segment's
    (SEG_HUGE_MB, when it goes to a hugetlbfs mount), else base; huge asked for without them is refused here rather
    than by EAL's own lines."""
    free_mb = 2 * free_hugepages_2m(meminfo)
    if choice == "auto":
        return "huge" if free_mb >= DPDK_MB + SEG_HUGE_MB else "base"
    if choice == "huge" and free_mb < DPDK_MB:
        raise LatencyBenchError(f"--dpdk-memory huge: DPDK takes {DPDK_MB} MB of 2 MB hugepages, and this host has "
                                f"{free_mb} MB free: reserve them (echo {(DPDK_MB + SEG_HUGE_MB) // 2} > "
                                "/proc/sys/vm/nr_hugepages) or use --dpdk-memory base")
    return choice


def bench_latency(a) -> int:
    from .. import process
    from ..net import pcapgen
    from ..net.sender import Lab, LabError

    log = (lambda s: print(s, file=sys.stderr)) if a.json else print
    rates = parse_rates(a.rates)
    check_segment_dir(a.segment_dir)
    a.dpdk_memory = dpdk_memory(a.dpdk_memory)
    if os.geteuid() != 0:
        raise LatencyBenchError("fh bench latency needs root: it creates a network namespace and a veth pair, and the "
                                "data plane opens a packet socket (run it as root)")
    try:
        process.find_dataplane()
    except process.DataplaneError as e:
        raise FhError(str(e)) from None
    if not process.pmd_available("net_af_packet"):
        raise LatencyBenchError("DPDK's net_af_packet driver (librte_net_af_packet) is not installed: "
                                "apt-get install dpdk")
    find_bench_program("fh-latency-send", "FH_LATENCY_SEND")
    find_bench_program("fh-hiccups", "FH_HICCUPS")
    core = process.poll_core() if a.cpu is None else a.cpu
    if core not in os.sched_getaffinity(0):
        raise LatencyBenchError(f"--cpu {core}: not one of this process's CPUs {sorted(os.sched_getaffinity(0))}")
    sender_cpu = a.sender_cpu if a.sender_cpu is not None else next(
        (c for c in sorted(os.sched_getaffinity(0), reverse=True) if c != core), None)
    if sender_cpu == core:
        raise LatencyBenchError(f"--sender-cpu {sender_cpu} is the data plane's poll core: give the sender another CPU")
    want = max(int(r * a.seconds) for r in rates)
    if a.pcap:
        from ..inputs import require
        from ..replay import pcap_lines

        path = require(a.pcap, "pcap", "--pcap").resolve()
        lines = pcap_lines(path)
        if not lines:
            raise LatencyBenchError(f"{path}: no UDP datagram in it: give a MoldUDP64 capture (fh pcap synth)")
        source = {"kind": "pcap", "path": path, "lines": [list(l) for l in lines]}
    else:
        # the day opens with its prelude (system event, a directory entry and a trading state per instrument):
        # sent too, as at the start of a real day; the day is made long enough for every run beyond it
        path = day_file(a.messages or want + 2 * a.instruments + 16, a.instruments, a.seed, a.shape, log)
        source = {"kind": "itch", "path": path, "lines": [list(pcapgen.DEFAULT_A)]}
    res: dict = {"source": {**source, "path": str(source["path"])}, "rates": rates, "seconds": a.seconds,
                 "realtime": a.realtime,
                 "per_packet": a.per_packet if source["kind"] == "itch" else None,
                 "window_us": a.window_us if source["kind"] == "itch" and not a.per_packet else None,
                 "mtu": a.mtu if source["kind"] == "itch" else None, "idle": a.idle, "warm_us": a.warm_us, "core": core,
                 "sender_cpu": sender_cpu, "hiccup_ns": a.hiccup_ns, "scan_seconds": a.scan_seconds,
                 "ring_frames": a.ring_frames, "segment_dir": a.segment_dir, "dpdk_memory": a.dpdk_memory, "runs": []}
    lab = Lab(f"lat{uuid.uuid4().hex[:6]}", mtu=max(1500, a.mtu))
    try:
        try:
            lab.up()
        except LabError as e:
            raise LatencyBenchError(str(e)) from None
        for rate in rates:
            res["runs"].append(run_rate(lab, source, rate, max(1, int(rate * a.seconds)), a, core, sender_cpu, log))
    finally:
        lab.down()
    res["target"] = _target(res["runs"])
    if a.json:
        print(json.dumps(res))
        return 0
    print_report(res)
    return 0


def _target(runs: list[dict]) -> dict:
    at = [r for r in runs if r["rate"] == TARGET_RATE]
    out = {"rate": TARGET_RATE, "p99_ns": TARGET_P99_NS, "p99.9_ns": TARGET_P999_NS}
    if not at:
        out["met"] = None
        return out
    lat = at[0]["latency_ns"]
    out["p99_met"] = lat["p99"] < TARGET_P99_NS
    out["p99.9_met"] = lat["p99.9"] < TARGET_P999_NS
    out["met"] = out["p99_met"] and out["p99.9_met"] and at[0]["all_received"]
    # what fh adds: the same against the datagrams that arrived alone (none: not measured)
    one = at[0]["latency_one_frame_ns"]
    out["one_frame"] = ({"p99_met": one["p99"] < TARGET_P99_NS, "p99.9_met": one["p99.9"] < TARGET_P999_NS}
                        if one["count"] else None)
    return out


def print_report(res: dict, out=None) -> None:
    from ..ui import fmt_bytes, fmt_int, fmt_ns, fmt_rate, print_table

    out = out if out is not None else sys.stdout
    src = res["source"]
    if src["kind"] == "itch":
        packing = (f"{res['per_packet']} messages a datagram" if res["per_packet"] else
                   f"the messages of {res['window_us']:g} µs a datagram")
        what = f"{src['path']} packed {packing} (at most MTU {res['mtu']})"
    else:
        what = f"{src['path']} as captured ({len(src['lines'])} line(s))"
    segs = sorted({(r["segment"]["dir"], r["segment"]["page_size"]) for r in res["runs"]})
    where = ", ".join(f"{d} ({fmt_bytes(p)} pages)" for d, p in segs)
    warm = sorted({r["dataplane"]["warm_us"] for r in res["runs"]})
    polls = ", ".join(f"{r['dataplane']['empty_poll_ns']:.0f} ns at {fmt_rate(r['rate'])}" for r in res["runs"])
    out.write(f"fh bench latency: {what}; data plane on CPU {res['core']} (--idle {res['idle']}, --warm-us "
              f"{'/'.join(map(str, warm)) or '-'}; an empty poll: {polls or '-'}), sender on CPU "
              f"{res['sender_cpu']}, net_af_packet on a veth pair; segment in {where}; DPDK's memory on "
              f"{'hugepages' if res.get('dpdk_memory') == 'huge' else 'base pages (--no-huge)'}\n")
    if any(p < 2 << 20 for _, p in segs):
        out.write("  (base pages: the books' lines cost TLB misses that a hugetlbfs segment, where fh run puts it on a "
                  "host with a mount and free hugepages, does not have; --segment-dir, bench/latency.md)\n")
    rows = []
    for r in res["runs"]:
        s, lat, lost = r["sender"], r["latency_ns"], r["lost"]
        rows.append([fmt_rate(r["rate"]), fmt_rate(s["achieved_msgs_per_s"]),
                     f"{r['dataplane']['messages_per_datagram']:.1f}",
                     fmt_int(s["sent_messages"]), fmt_int(r["received"]["messages_applied"]),
                     fmt_int(lost["not_applied"] + lost["not_sent"]), fmt_ns(lat["p50"]), fmt_ns(lat["p99"]),
                     fmt_ns(lat["p99.9"]), fmt_ns(lat["max"]), fmt_ns(s["late_ns"]["p99"])])
    print_table(["rate", "achieved", "msg/dgram", "sent", "received", "lost", "p50", "p99", "p99.9", "max",
                 "sender late p99"], rows, out=out, title="rx -> publish, per message (fh-dataplane's histogram)")
    rows = [[fmt_rate(r["rate"]), f"{fmt_int(r['latency_one_frame_ns']['count'])} "
             f"({100 * r['one_frame_share']:.1f}%)", fmt_ns(r["latency_one_frame_ns"]["p50"]),
             fmt_ns(r["latency_one_frame_ns"]["p99"]), fmt_ns(r["latency_one_frame_ns"]["p99.9"]),
             fmt_ns(r["latency_one_frame_ns"]["max"]),
             f"{fmt_int(r['sent_behind_another'])} ({100 * r['sent_behind_another'] / max(1, r['sender']['sent']):.1f}%)"]
            for r in res["runs"]]
    print_table(["rate", "messages", "p50", "p99", "p99.9", "max", "frames sent behind another"], rows, out=out,
                title="rx -> publish of the datagrams that arrived alone (bursts of one frame: no frame ahead of "
                      "them; the others arrived with frames ahead of them: a backlog, or frames the sender, late, "
                      "sent together)")
    for r in res["runs"]:
        lost = {k: v for k, v in r["lost"].items() if v}
        if lost:
            out.write(f"  {fmt_rate(r['rate'])}: LOST {lost}; drops {r['drops'] or 'none'}\n")
    rows = []
    for r in res["runs"]:
        m = r["machine"]
        sc, dr, g = m["scan"], m["during_run"], m["scan"]["gaps"]
        rows.append([fmt_rate(r["rate"]), f"{sc['tsc_read']['cycles_mean']:.0f} ({sc['tsc_read']['ns_mean']:.1f} ns)",
                     f"{g['per_s']:,.0f}", fmt_ns(g["p50"]), fmt_ns(g["max"]), f"{100 * g['lost_share']:.2f}%",
                     f"{dr['timer_irq_per_s']:,.0f}", f"{dr['irq_per_s']:,.0f}",
                     fmt_int(dr["poll_thread_switches"].get("involuntary", 0)),
                     fmt_int(dr["poll_thread_switches"].get("minor_faults", 0)
                             + dr["poll_thread_switches"].get("major_faults", 0)), fmt_ns(dr["steal_ns"]),
                     f"{100 * r['dataplane']['busy_share']:.2f}%",
                     f"{m['expected_messages_delayed']:,.0f} / {m['expected_messages_delayed_run']:,.0f}",
                     f"{m['messages_in_backlogs']:,.0f}",
                     fmt_int(m["measured_messages_above"])])
    print_table(["rate", "TSC read cycles", "hiccups/s", "hiccup p50", "hiccup max", "core lost", "timer irq/s",
                 "irq/s", "preempted", "page faults", "steal", "busy", "hit in burst scan/run", "in backlog",
                 "measured >thr"], rows, out=out,
                title=f"what the machine adds (hiccup scan on CPU {res['core']} before each run, threshold "
                      f"{fmt_ns(res['hiccup_ns'])}; counters of that CPU during the run)")
    out.write("hit in burst: messages a hiccup would delay by its length, landing while their burst is processed "
              "(hiccups/s x busy share x active s x messages a burst), with the scan's hiccups/s and with the "
              "interrupts and preemptions counted on the core during the run; in backlog: messages arriving during "
              "hiccups "
              "(hiccups/s x mean hiccup x messages/s x active s), delayed only by the backlog ahead of them; "
              "measured >thr: messages slower than the threshold\n")
    t = res["target"]
    if t.get("met") is None:
        out.write(f"target (p99 < {fmt_ns(t['p99_ns'])}, p99.9 < {fmt_ns(t['p99.9_ns'])} at {fmt_rate(t['rate'])}): "
                  "not measured (that rate was not run)\n")
    else:
        out.write(f"target at {fmt_rate(t['rate'])}: p99 < {fmt_ns(t['p99_ns'])} "
                  f"{'met' if t['p99_met'] else 'NOT met'}, "
                  f"p99.9 < {fmt_ns(t['p99.9_ns'])} {'met' if t['p99.9_met'] else 'NOT met'}")
        o = t["one_frame"]
        if o is not None:
            out.write(f"; the datagrams that arrived alone: p99 {'met' if o['p99_met'] else 'NOT met'}, "
                      f"p99.9 {'met' if o['p99.9_met'] else 'NOT met'}")
        out.write("\n")


def register(bes, positive, nonneg) -> None:
    from ..cli.argtypes import U64_MAX, _bounded, _cpu, _given
    from ..ui import HelpFormatter, add_json_flag, examples
    from ..process import sigterm_as_interrupt

    def rate_list(text: str) -> str:
        parse_rates(text)
        return text

    def seconds(text: str) -> float:
        v = float(text)
        if not 0 < v <= 600:
            raise ValueError(text)
        return v

    b = bes.add_parser("latency", help="rx->publish latency at paced rates through the data plane, and what the "
                                      "machine adds",
                       formatter_class=HelpFormatter,
                       description="Replay a day at each rate (messages a second) through fh-dataplane spinning on "
                                   "a pinned core (net_af_packet on a veth pair in a network namespace this command "
                                   "creates; a C sender on the other CPU), and report rx->publish p50/p99/p99.9/max, "
                                   "messages sent, received and lost, and what the machine adds: the TSC read's "
                                   "cost and a hiccup scan of the poll core (bench/latency.md). Needs root. "
                                   "Busy-polls both CPUs for about (--scan-seconds + --seconds) a rate.",
                       epilog=examples("fh bench latency", "fh bench latency --rates 1M --seconds 5 --json",
                                       "fh bench latency --rates 2k --seconds 2 --idle backoff"))
    b.add_argument("--rates", type=rate_list, default="100k,1M,5M", help="messages a second, one run each")
    b.add_argument("--seconds", type=seconds, default=2.0, help="length of each run (rate x seconds messages)")
    b.add_argument("--pcap", metavar="FILE", type=_given("a MoldUDP64 capture"),
                   help="send this capture as captured (every line; the data plane listens to each) instead of a "
                        "generated day: e.g. pcaps/synth-ab-40k.pcap")
    b.add_argument("--messages", type=_bounded(1, U64_MAX), default=None,
                   help="messages of the generated day (default: the largest rate x --seconds)")
    b.add_argument("--instruments", type=positive, default=8000, help="instruments of the generated day")
    b.add_argument("--seed", type=_bounded(0, U64_MAX), default=1, help="seed of the generated day")
    b.add_argument("--shape", choices=("uniform", "real", "real-late"), default="real",
                   help="day shape (fh synth itch --shape)")
    b.add_argument("--per-packet", type=positive, default=None,
                   help="messages a datagram of the generated day (default: what the exchange makes in --window-us "
                        "at each rate)")
    b.add_argument("--window-us", type=seconds, default=4.0,
                   help="the exchange's packing window: a datagram holds the messages made within it (rate x window, "
                        "at least 1, at most what --mtu holds) unless --per-packet is given")
    b.add_argument("--mtu", type=_bounded(128, 9216), default=1500, help="datagram size limit of the generated day")
    b.add_argument("--idle", choices=("spin", "backoff"), default="spin",
                   help="the data plane's idle strategy: spin (production) or backoff (tests)")
    b.add_argument("--warm-us", type=_bounded(0, 10_000_000), default=None, metavar="US",
                   help="the data plane's idle warming: every book's first lines pulled back into the cache once "
                        "in this many µs of empty polls (fh-dataplane --warm-us; default: 1000 with --idle spin, 0 "
                        "with backoff; 0 measures without)")
    b.add_argument("--cpu", type=_cpu, default=None, help="the data plane's poll core (default: the last CPU)")
    b.add_argument("--sender-cpu", type=_cpu, default=None, help="the sender's CPU (default: another one)")
    b.add_argument("--realtime", action="store_true",
                   help="run the data plane and the sender under SCHED_FIFO: other tasks no longer preempt them (as "
                        "on isolated cores); the kernel's RT throttling still takes what "
                        "/proc/sys/kernel/sched_rt_runtime_us leaves (50 ms a second by default)")
    b.add_argument("--scan-seconds", type=seconds, default=1.0, help="hiccup scan before each run")
    b.add_argument("--hiccup-ns", type=positive, default=1000, help="a gap longer than this is a hiccup")
    b.add_argument("--segment-dir", default="auto", metavar="DIR",
                   help="where the data plane's segment lives: auto (as fh run places an instance's: a writable "
                        "hugetlbfs mount with free hugepages for it, else /dev/shm) or a directory")
    b.add_argument("--dpdk-memory", choices=("auto", "huge", "base"), default="auto",
                   help="DPDK's own memory (mbufs, rings): huge (hugepages, as fh run takes them with "
                        "memory.hugepages = true), base (ordinary pages, --no-huge) or auto (huge when the host has "
                        f"{DPDK_MB} MB of free 2 MB hugepages besides the segment's, else base)")
    b.add_argument("--ring-frames", type=positive, default=16384,
                   help="net_af_packet's ring (framecnt): frames the kernel holds while the data plane is away")
    add_json_flag(b, "fh bench latency")
    b.set_defaults(func=sigterm_as_interrupt(bench_latency))
