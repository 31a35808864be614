"""`fh bench recovery`: how long the data plane takes to recover a gap of about 1,000 messages lost on both
lines, through the retransmission server, live.

The lab is the one `tests/test_recovery.py` builds: a network namespace with the sender's end of a veth pair
(handler.net.sender.Lab), an address in it for `fh retransmit-server` answering from the clean recording of the
day, and fh-dataplane on net_af_packet on the other end (--retrans-server, --retrans-mac, --src-ip). A fault
plan drops, on both lines, the consecutive datagrams from the middle of the day that carry closest to --gap
messages (the exact count is reported). The faulty capture is sent paced; the data plane waits --gap-wait-us
for the other line, asks the server, applies the replies and the held messages, and reports in its final
JSON `gaps_filled` (from the first sign of the gap to the last missing message applied, in the data plane's
TSC) and the MoldUDP64 counters. What the recovery costs beyond the configured wait is

    recovery time - gap_wait_us      (the request, the server, the replies and their application)

Each repeat is a new data plane on the same lab and server; figures are the minimum and median of the
repeats. In the same run, a baseline: a Python client inside the namespace asks the same server for the same
messages over loopback and times the answer (the Python server's own cost, and the Python client's), so the
recovery can be read as a ratio against it. Needs root (a namespace, a veth pair, AF_PACKET); without it the
bench says so in one line and exits 0. bench/recovery.md has figures.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ..errors import FhError

SERVER_IP, DP_IP, PORT = "10.77.0.1", "10.77.0.2", 18000
MAX_COUNT = 1000  # the server's (and the data plane's) largest request


def _why_not() -> str | None:
    from .. import process

    if os.geteuid() != 0:
        return "needs root: it creates a network namespace and a veth pair"
    try:
        process.find_dataplane()
    except process.DataplaneError as e:
        return str(e)
    if not process.pmd_available("net_af_packet"):
        return "DPDK's net_af_packet driver is not installed (apt-get install dpdk)"
    return None


def choose_gap(day: bytes, target: int, mtu: int) -> dict:
    """The datagrams to drop on both lines: from the middle of the day, the longest run of consecutive
    datagrams that carries at most `target` messages (at least one datagram). With the default 1,000 (the
    largest request) the gap is asked for in one request."""
    from ..net import pcapgen

    grams = pcapgen.packetize(day, mtu)
    at = len(grams) // 2
    best, total, n = None, 0, 0
    while at + n < len(grams) - 1:  # at least one datagram after the gap (to reveal it) besides end of session
        total += len(grams[at + n][1])
        n += 1
        if best is not None and total > target:
            break
        best = (n, total)
    if best is None or at + best[0] > len(grams) - 20:
        raise FhError(f"a day of {sum(len(m) for _, m in grams)} messages is too short for a gap of {target} "
                         "from its middle: give more --messages")
    first = 1 + sum(len(m) for _, m in grams[:at])
    return {"target": target, "at_datagram": at, "datagrams": best[0], "messages": best[1], "first": first,
            "last": first + best[1] - 1, "day_datagrams": len(grams)}


def _mac(lab) -> str:
    from ..net import sender
    out = subprocess.run([*sender.netns_argv(lab.ns), "ip", "-o", "link", "show", lab.ns_if], capture_output=True,
                         text=True, check=True).stdout
    return out.split("link/ether ")[1].split()[0]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _start_server(lab, clean: Path, tmp: Path) -> tuple[subprocess.Popen, Path]:
    from ..process import fh_argv, with_parent

    ready, stats = tmp / "server.ready", tmp / "server.json"
    srv = subprocess.Popen(lab.exec_argv(fh_argv("retransmit-server", "--pcap", clean, "--listen",
                                                 f"{SERVER_IP}:{PORT}", "--ready-file", ready, "--stats-json", stats)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
                           preexec_fn=with_parent(signal.SIGTERM))  # (it outlived a killed fh bench recovery)
    t_end = time.monotonic() + 60
    while not ready.exists():
        if srv.poll() is not None:
            raise FhError(f"fh retransmit-server did not start: {srv.stderr.read().strip()[-400:]}")
        if time.monotonic() > t_end:
            srv.terminate()
            raise FhError("fh retransmit-server did not listen within 60 s")
        time.sleep(0.05)
    return srv, stats


def one_run(lab, pcap: Path, lines, mac: str, a, core: int, sender_cpu: int | None, planned: int) -> dict:
    """One data plane over the faulty capture, sent paced; its figures (planned: the messages the plan lost)."""
    from .. import process
    from ..net import sender

    name = f"brec-{uuid.uuid4().hex[:8]}"
    seg = f"/dev/shm/fh-{name}"
    eal = ["--no-pci", "--no-shconf", "--no-huge", "-m", "256", "--file-prefix", f"fh-{name}", "-l", str(core),
           "--log-level", "lib.eal:error", "--no-telemetry",
           "--vdev", f"net_af_packet0,iface={lab.dp_if},framecnt=4096"]  # a paced `fh replay`'s ring (replay.py)
    extra = ["--retrans-server", f"{SERVER_IP}:{PORT}", "--retrans-mac", mac, "--src-ip", DP_IP, "--src-port",
             "40000", "--gap-wait-us", str(a.gap_wait_us), "--igmp", "off"]
    dp = process.Dataplane(process.dataplane_cmd(eal, seg, lines, keep=False, idle="spin", exit_idle_ms=500,
                                               extra=extra))
    try:
        dp.wait_running(60)
        time.sleep(0.3)  # the af_packet port up
        snd = subprocess.run(lab.sender_argv(pcap, sender.parse_pace("max", a.pps), cpu=sender_cpu),
                             capture_output=True, text=True, timeout=600, env=_env())
        if snd.returncode != 0:
            raise FhError(f"the sender failed: {snd.stderr.strip()[-400:]}")
        summary = json.loads([l for l in snd.stdout.splitlines() if l.startswith('{"summary"')][-1])["summary"]
        stats = dp.wait(120)
    finally:
        dp.close()
        try:
            process.remove_segment(seg)
        except OSError:
            pass
    m, gf = stats["mold"], stats["gaps_filled"]
    keep = ("gaps", "requests", "request_messages", "request_retries", "request_timeouts", "recovered_lines",
            "recovered_retrans", "lost", "unrecoverable", "applied", "held")
    return {"gaps_filled": gf, "mold": {k: m.get(k, 0) for k in keep},
            "requests_sent": stats["retransmission"]["requests_sent"],
            "retransmission_line": stats["lines"][2] if len(stats["lines"]) > 2 else None,
            "feed_state": stats["feed"]["state"], "nic": stats["nic"],
            "drops": {k: v for k, v in stats["drops"].items() if v},
            "only_the_planned_gap": m["recovered_retrans"] == planned and m["request_messages"] == planned,
            "recovery_ns": gf["last_ns"], "beyond_wait_ns": gf["last_ns"] - a.gap_wait_us * 1000,
            "sender": {k: summary.get(k) for k in ("sent", "frames", "achieved_pps", "late_ns", "errors")}}


# -- the baseline: a Python client in the namespace ------------------------------------------------------------

def client_times(server: str, session: str, first: int, count: int, repeats: int) -> list[int]:
    """Ask the server for `count` messages from `first` (at most MAX_COUNT a request, asking again for the
    rest), `repeats` + 1 times (the first a warm-up, not returned); ns from the first request to the last
    message in, each time."""
    from ..net.retransmit import request

    host, port = server.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2.0)
    hdr = struct.Struct(">10sQH")
    out = []
    try:
        for r in range(repeats + 1):
            t0 = time.perf_counter_ns()
            nxt, end = first, first + count
            while nxt < end:
                s.sendto(request(session, nxt, min(MAX_COUNT, end - nxt)), (host, int(port)))
                want = min(end, nxt + MAX_COUNT)
                while nxt < want:
                    d = s.recv(65536)
                    _, seq, n = hdr.unpack_from(d)
                    if seq <= nxt < seq + n:
                        nxt = seq + n
            t = time.perf_counter_ns() - t0
            if r:
                out.append(t)
    finally:
        s.close()
    return out


def _baseline(lab, gap: dict, session: str, repeats: int) -> dict:
    argv = lab.exec_argv([sys.executable, "-m", "handler.bench.recovery", "client", f"{SERVER_IP}:{PORT}", session,
                          str(gap["first"]), str(gap["messages"]), str(repeats)])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env())
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-400:]}
    ts = json.loads(p.stdout.strip().splitlines()[-1])
    return {"messages": gap["messages"], "repeats": repeats, "ns": ts, "ns_mm": _mm(ts)}


# -- the command -----------------------------------------------------------------------------------------------

def _mm(xs: list[float]) -> dict:
    return {"min": round(min(xs)), "median": round(statistics.median(xs)), "max": round(max(xs))}


def bench_recovery(a) -> int:
    from .. import faults, native, process, replay
    from ..net import pcapgen, sender
    from . import plot

    plot.check(a.plot)
    why = _why_not()
    if why:
        if a.json:
            print(json.dumps({"skipped": why}))
        print(f"fh bench recovery: skipped: {why}", file=sys.stderr)
        return 0
    log = (lambda s: print(s, file=sys.stderr)) if a.json else print
    core = process.poll_core()
    sender_cpu = process.other_cpu()
    day = native.synth_bytes(a.messages, a.instruments, a.seed)
    gap = choose_gap(day, a.gap, a.mtu)
    lines = [pcapgen.Line(*pcapgen.DEFAULT_A), pcapgen.Line(*pcapgen.DEFAULT_B, delay_ns=3000)]
    res: dict = {"messages": a.messages, "instruments": a.instruments, "seed": a.seed, "mtu": a.mtu, "pps": a.pps,
                 "gap_wait_us": a.gap_wait_us, "repeats": a.repeats, "core": core, "sender_cpu": sender_cpu,
                 "gap": gap, "runs": []}
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="fh-bench-recovery-") as tmpd:
        tmp = Path(tmpd)
        os.chmod(tmp, 0o755)
        clean, faulty = tmp / "clean.pcap", tmp / "faulty.pcap"
        pcapgen.synth_pcap(clean, day, lines, mtu=a.mtu)
        plan = faults.parse_plan({"fault": [{"line": "both", "kind": "drop", "at": gap["at_datagram"],
                                             "count": gap["datagrams"]}]})
        _, inj = pcapgen.synth_faulty_pcap(faulty, day, lines, plan, mtu=a.mtu)
        lost = inj["lost_on_all_lines"]
        if len(lost) != 1 or lost[0]["messages"] != gap["messages"]:
            raise FhError(f"the fault plan lost {lost}, not the {gap['messages']} messages planned")
        res["gap"]["session"] = session = lost[0]["session"]
        log(f"gap: {gap['messages']} messages ({gap['first']}..{gap['last']}, {gap['datagrams']} datagrams) lost "
            f"on both lines in a day of {a.messages} messages; {a.repeats} runs at {a.pps:g} packets/s")
        with sender.Lab(tag) as lab:
            subprocess.run([*sender.netns_argv(lab.ns), "ip", "addr", "add", f"{SERVER_IP}/24", "dev", lab.ns_if], check=True)
            srv, srv_stats = _start_server(lab, clean, tmp)
            try:
                mac = _mac(lab)
                dp_lines = replay.pcap_lines(faulty)
                for r in range(a.repeats):
                    run = one_run(lab, faulty, dp_lines, mac, a, core, sender_cpu, gap["messages"])
                    res["runs"].append(run)
                    gf, m = run["gaps_filled"], run["mold"]
                    log(f"run {r + 1}/{a.repeats}: gap filled in {gf['last_ns'] / 1e6:.3f} ms "
                        f"({run['beyond_wait_ns'] / 1e6:.3f} ms beyond the wait), {m['requests']} requests for "
                        f"{m['request_messages']} messages, {m['recovered_retrans']} recovered, {m['lost']} lost")
                res["baseline_python_client"] = _baseline(lab, gap, session, max(5, a.repeats))
            finally:
                srv.terminate()
                try:
                    srv.wait(10)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
                try:
                    res["server"] = json.loads(srv_stats.read_text())
                except (OSError, ValueError):
                    pass
    runs = res["runs"]
    col = lambda f: [f(x) for x in runs]  # noqa: E731
    s = res["summary"] = {
        "lost_messages": gap["messages"],
        "recovery_ns": _mm(col(lambda x: x["recovery_ns"])),
        "beyond_wait_ns": _mm(col(lambda x: x["beyond_wait_ns"])),
        "requests": _mm(col(lambda x: x["mold"]["requests"])),
        "all_filled": all(x["mold"]["lost"] == 0 and x["mold"]["unrecoverable"] == 0 for x in runs),
        # a run in which the data plane also missed frames of both lines (a full af_packet ring while its core
        # was taken, nic.imissed) asked for those too, in the same gap: its time is not the planned gap's alone
        "runs_only_the_planned_gap": sum(x["only_the_planned_gap"] for x in runs),
    }
    clean = [x for x in runs if x["only_the_planned_gap"]]
    if clean and len(clean) < len(runs):
        s["only_the_planned_gap_recovery_ns"] = _mm([x["recovery_ns"] for x in clean])
        s["only_the_planned_gap_beyond_wait_ns"] = _mm([x["beyond_wait_ns"] for x in clean])
    base = res["baseline_python_client"]
    if "ns_mm" in base:
        s["baseline_python_client_ns"] = base["ns_mm"]
        s["beyond_wait_over_baseline"] = round(s["beyond_wait_ns"]["median"] / base["ns_mm"]["median"], 2)
    if a.plot:
        plot.recovery(res, a.plot)
    if a.json:
        print(json.dumps(res))
        return 0
    print_report(res)
    return 0


def print_report(res: dict, out=None) -> None:
    """fh bench recovery's report (the figures of its --json): the best and the median run of each time in a
    table, against the Python client's round trip, then what the last run counted."""
    from ..ui import print_table

    out = out if out is not None else sys.stdout
    w = out.write
    s, gap, runs, base = res["summary"], res["gap"], res["runs"], res["baseline_python_client"]
    w(f"{gap['messages']} messages lost on both lines ({gap['datagrams']} datagrams from sequence {gap['first']}), "
      f"day of {res['messages']} messages at {res['pps']:g} packets/s, --gap-wait-us {res['gap_wait_us']}, "
      f"{res['repeats']} runs\n")

    def row(label, mm, scale=1e6, fmt="{:.3f}"):
        return [label, fmt.format(mm["min"] / scale), fmt.format(mm["median"] / scale)]

    rows = [row("gap open, first sign to filled (ms)", s["recovery_ns"]),
            row("  beyond the wait (ms)", s["beyond_wait_ns"]),
            row("requests", s["requests"], 1, "{:.0f}")]
    if "baseline_python_client_ns" in s:
        rows.append(row("Python client <-> server, loopback (ms)", s["baseline_python_client_ns"]))
    print_table(["", "best", "median"], rows, right=[False, True, True], out=out)
    if "only_the_planned_gap_recovery_ns" in s:
        print_table(["", "best", "median"], [row("first sign to filled (ms)", s["only_the_planned_gap_recovery_ns"]),
                                             row("  beyond the wait (ms)", s["only_the_planned_gap_beyond_wait_ns"])],
                    right=[False, True, True], out=out,
                    title=f"{s['runs_only_the_planned_gap']} of {res['repeats']} runs asked for the planned gap only "
                          "(the others also for frames the data plane missed, nic.imissed); those runs:")
    if "baseline_python_client_ns" in s:
        w(f"beyond the wait / Python client's round trip (medians): {s['beyond_wait_over_baseline']}\n")
    elif "error" in base:
        w(f"baseline: the Python client failed: {base['error']}\n")
    last = runs[-1]["mold"]
    w(f"every gap filled, nothing lost: {s['all_filled']} (last run: requests {last['requests']}, request_messages "
      f"{last['request_messages']}, recovered_retrans {last['recovered_retrans']}, lost {last['lost']}, retries "
      f"{last['request_retries']}, nic imissed {runs[-1]['nic']['imissed']})\n")


def _pps(text: str) -> float:
    """An argparse type: --pps, a positive finite rate (0, -1, nan or inf were refused only after the day had been
    generated, its captures written and the lab's network namespace set up)."""
    import argparse
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frames a second, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive rate in frames a second, e.g. 20000, got {text}")
    return v


def register(bes, positive, nonneg) -> None:
    from ..ui import HelpFormatter, add_json_flag, examples
    from ..process import sigterm_as_interrupt
    from . import add_day_options
    from .plot import add_plot_flag

    b = bes.add_parser("recovery", help="live: a gap of about 1,000 messages lost on both lines, filled through "
                                        "the retransmission server (needs root)",
                       formatter_class=HelpFormatter,
                       description="A gap lost on both lines, sent paced over a veth pair to the data plane on "
                                   "net_af_packet, filled by fh retransmit-server: the time from the gap's first "
                                   "sign to filled, beyond the configured wait, against a Python client's round "
                                   "trip to the same server. Needs root; without it, says so and exits 0.",
                       epilog=examples("fh bench recovery --repeats 5",
                                       "fh bench recovery --gap 500 --pps 50000 --json > rec.json",
                                       "fh bench recovery --plot bench/recovery.png"))
    add_day_options(b, positive, messages=200_000, instruments=500, mtu=1500)
    b.add_argument("--gap", type=positive, default=1000, help="messages to lose on both lines (about)")
    b.add_argument("--repeats", type=positive, default=5, help="runs, each a new data plane")
    b.add_argument("--gap-wait-us", type=nonneg, default=2000,
                   help="how long the data plane waits for the other line before asking")
    b.add_argument("--pps", type=_pps, default=20000, help="the sender's rate, frames per second")
    add_json_flag(b, "fh bench recovery")
    add_plot_flag(b)
    b.set_defaults(func=sigterm_as_interrupt(bench_recovery))


def main(argv: list[str] | None = None) -> int:
    """`python -m handler.bench.recovery client SERVER SESSION FIRST COUNT REPEATS`: the baseline's client, run
    inside the lab's namespace; prints the times (ns) as a JSON list."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 6 or argv[0] != "client":
        print("usage: python -m handler.bench.recovery client SERVER SESSION FIRST COUNT REPEATS", file=sys.stderr)
        return 2
    print(json.dumps(client_times(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
