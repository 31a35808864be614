"""The fh-dataplane process: finding the program, its command line, starting it, seeing it run, stopping it
and reading its final statistics. Used by `fh run` (handler/run.py), `fh replay` and `fh verify`
(handler/replay.py), the benchmarks and the tests; it knows nothing of pcaps or configurations."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .errors import FhError

ROOT = Path(__file__).resolve().parents[1]  # the checkout (its build/ holds fh-dataplane)


# ---- processes: alive, and the one that was there (a pid reused is not it) ----------------------------


def pid_alive(pid: int) -> bool:
    """pid is a live process (one this user may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def boot_s() -> float:
    """Seconds since boot (CLOCK_BOOTTIME), the clock /proc/PID/stat's start time is counted on."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def stat_fields(path: str) -> tuple[str, list[str]]:
    """A /proc stat file (/proc/PID/stat, /proc/PID/task/TID/stat): the name and the fields after it, the state
    first (field 3 of proc(5) at index 0). The name is in parentheses and may hold spaces and ')': the fields are
    split from the last ')'. Raises OSError as open does."""
    with open(path) as f:
        raw = f.read()
    end = raw.rindex(")")
    return raw[raw.index("(") + 1 : end], raw[end + 2 :].split()


def _proc_start_s(pid: int) -> float | None:
    try:
        _, fields = stat_fields(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def pid_is(pid: int | None, not_after_boot_s: float | None) -> bool:
    """pid is alive and is the process that was there at not_after_boot_s (it started no later: a pid
    reused by a newer process is not it)."""
    if not pid or pid <= 0:
        return False
    start = _proc_start_s(pid)
    if start is None:
        if not os.path.exists("/proc/self/stat"):  # no /proc (a chroot without it): the pid alone
            return pid_alive(pid)
        return False
    return not_after_boot_s is None or start <= not_after_boot_s + 0.05


def fh_argv(*args) -> list[str]:
    """The command line of `fh ARGS` as this fh runs: this Python, -m handler (fh run's fh record, the
    benchmarks' servers, the tests)."""
    return [sys.executable, "-m", "handler", *map(str, args)]


class DataplaneError(FhError):
    """The data plane could not run or exited with an error; the message is its own."""


def find_program(name: str, env: str, subdir: str) -> str | None:
    """One of fh's C programs: $ENV, then PATH (an installed fh), then this checkout's build
    (build/cp3*/native/SUBDIR/NAME); None when there is none."""
    given = os.environ.get(env)
    if given:
        return given
    found = shutil.which(name)
    if found:
        return found
    for p in sorted(ROOT.glob(f"build/cp3*/native/{subdir}/{name}")):
        return str(p)
    return None


def find_dataplane() -> str:
    """The fh-dataplane program: $FH_DATAPLANE, then PATH (an installed fh), then this checkout's build."""
    found = find_program("fh-dataplane", "FH_DATAPLANE", "dataplane")
    if found is None:
        raise DataplaneError("fh-dataplane not found: it is built with DPDK (apt-get install libdpdk-dev pkg-config, "
                             "then bash scripts/setup.sh), or set FH_DATAPLANE")
    return found


def pmd_available(driver: str) -> bool:
    """Whether DPDK can load this poll-mode driver (e.g. "net_af_packet"): linked into fh-dataplane, or a
    plugin in one of the usual DPDK driver directories. A heuristic: the data plane's own start-up is the
    final word."""
    lib = "librte_" + driver
    try:
        p = subprocess.run(["ldd", find_dataplane()], capture_output=True, text=True, timeout=20)
        if lib in p.stdout:
            return True
    except (OSError, subprocess.SubprocessError, DataplaneError):
        pass
    for pattern in ("/usr/lib*/*/dpdk/pmds-*/", "/usr/lib*/dpdk/pmds-*/", "/usr/local/lib*/*/dpdk/pmds-*/",
                    "/usr/local/lib*/dpdk/pmds-*/"):
        for d in Path("/").glob(pattern.lstrip("/")):
            if any(d.glob(lib + ".so*")):
                return True
    return False


def poll_core() -> int:
    """The lcore to poll on: the last CPU this process may use (core 1 on a 2-core lab machine)."""
    return max(os.sched_getaffinity(0))


def dataplane_cmd(eal: list[str], segment: str, lines: list[tuple[str, int]], *, keep: bool = True,
                  idle: str = "backoff", exit_idle_ms: int = 300, max_orders: int = 1 << 20,
                  max_levels: int = 1 << 20, events: int = 1 << 16, extra: list[str] | tuple = ()) -> list[str]:
    """extra: more fh-dataplane arguments (retransmission, line devices ...); a line given as (dst, port, dev)
    is taken on that DPDK device."""
    if not lines:
        raise DataplaneError("no UDP flow to listen to: the capture holds no UDP datagram")
    cmd = [find_dataplane(), *eal, "--", "--segment", segment, "--idle", idle, "--exit-idle-ms", str(exit_idle_ms),
           "--max-orders", str(max_orders), "--max-levels", str(max_levels), "--events", str(events)]
    for line in lines:
        cmd += ["--line", f"{line[0]}:{line[1]}" + (f"@{line[2]}" if len(line) > 2 else "")]
    if keep:
        cmd.append("--keep-segment")
    return [*cmd, *extra]


def _term_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt(cmd):
    """A command with SIGTERM taken as ^C while it runs, so that its finally blocks take down what it set up (fh soak
    and fh bench latency killed by SIGTERM left their segments, captures and network namespace behind)."""
    import functools

    @functools.wraps(cmd)
    def run(a) -> int:
        if threading.current_thread() is not threading.main_thread():
            return cmd(a)
        old = signal.signal(signal.SIGTERM, _term_as_interrupt)
        try:
            return cmd(a)
        finally:
            signal.signal(signal.SIGTERM, old)
    return run


def with_parent(sig: int):
    """A preexec_fn: the child gets sig when this process dies (PR_SET_PDEATHSIG), so that a data plane, which
    polls forever without --exit-idle-ms, does not outlive an fh that was killed."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, ctypes.c_ulong(sig), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))

    return arm


def thread_states(pid: int) -> str:
    """Each thread of a process as "name state on CPU n in wchan" (from /proc), for an error about a process that
    stopped answering: where a stalled start-up waits (a lock, a sleep, running on its CPU). "gone" if it exited."""
    out = []
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError:
        return "gone"
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            comm, fields = stat_fields(f"{base}/stat")
            with open(f"{base}/wchan") as f:
                wchan = f.read().strip()
        except (OSError, ValueError):
            continue
        state, cpu = fields[0], fields[36] if len(fields) > 36 else "?"  # field 39 of proc(5): the CPU last run on
        out.append(f"{comm} {state} on CPU {cpu}" + (f" in {wchan}" if wchan not in ("", "0") else ""))
    return ", ".join(out) or "gone"


class Dataplane:
    """One fh-dataplane process: started, seen to print its "running" line, stopped (SIGINT, or on its own with
    --exit-idle-ms), its final statistics parsed. `close` ends it if it still runs."""

    def __init__(self, cmd: list[str]):
        self.cmd = cmd
        self.err: list[str] = []
        self._running = threading.Event()
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, preexec_fn=with_parent(signal.SIGINT))
        self._out: list[str] = []
        self._threads = [threading.Thread(target=self._drain_err, daemon=True),
                         threading.Thread(target=lambda: self._out.extend(self.p.stdout), daemon=True)]
        for t in self._threads:
            t.start()

    def _drain_err(self) -> None:
        for line in self.p.stderr:
            self.err.append(line.rstrip("\n"))
            if line.startswith("fh-dataplane") and line.rstrip().endswith(": running"):
                self._running.set()
        self._running.set()  # it exited: wake whoever waits

    def _failure(self) -> DataplaneError:
        err = [l for l in self.err if l.startswith("fh-dataplane") or "EAL" in l]
        msg = err[-1] if err else "\n".join(self.err)[-400:]
        if "no DPDK port" in msg and any("net_af_packet" in a for a in self.cmd):
            msg = ("the net_af_packet PMD did not create a port (is librte_net_af_packet installed, e.g. "
                   f"apt-get install dpdk? {' | '.join(self.err[-3:])})")
        return DataplaneError(msg or f"exit status {self.p.returncode}")

    def wait_running(self, timeout: float = 30.0) -> None:
        """Until the poll loop runs; raises the data plane's own error if it exits first."""
        if not self._running.wait(timeout):
            raise DataplaneError(f"fh-dataplane printed no 'running' line in {timeout:g} s: "
                                 f"{' | '.join(self.err[-3:]) or 'no output'}; its threads: "
                                 f"{thread_states(self.p.pid)}")
        if self.p.poll() is not None:
            self.p.wait()
            for t in self._threads:
                t.join(5)
            raise self._failure()

    def wait(self, timeout: float | None = None, progress=None) -> dict:
        """Until it exits (calling progress() every 0.1 s meanwhile); its final statistics."""
        t_end = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self.p.wait(0.1)
                break
            except subprocess.TimeoutExpired:
                if t_end is not None and time.monotonic() > t_end:
                    raise subprocess.TimeoutExpired(self.cmd, timeout) from None
                if progress is not None:
                    progress()
        for t in self._threads:
            t.join(5)
        if self.p.returncode != 0:
            raise self._failure()
        try:
            return json.loads([l for l in self._out if l.strip()][-1])
        except (IndexError, json.JSONDecodeError):
            raise DataplaneError(f"fh-dataplane printed no statistics: {' | '.join(self.err[-3:])}") from None

    def stop(self, timeout: float = 30.0) -> dict:
        """SIGINT: it leaves its loop, prints its statistics and exits."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._remove_runtime_dir()

    def _remove_runtime_dir(self) -> None:
        remove_runtime_dir(self.cmd)


def remove_runtime_dir(cmd: list[str]) -> None:
    """After an EAL program `cmd` has ended: EAL leaves an empty runtime directory per --file-prefix behind; every
    replay and benchmark run has a prefix of its own, so they would pile up. Only an empty one goes (rmdir)."""
    if "--file-prefix" not in cmd:
        return
    prefix = cmd[cmd.index("--file-prefix") + 1]
    base = "/var/run/dpdk" if os.geteuid() == 0 else os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk")
    try:
        os.rmdir(os.path.join(base, prefix))
    except OSError:
        pass


def terminate(p: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM to a child if it still runs; SIGKILL when it has not ended within `timeout`; reaped either way."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run_dataplane(eal: list[str], segment: str, lines: list[tuple[str, int]], *, keep: bool = True,
                  idle: str = "backoff", exit_idle_ms: int = 300, max_orders: int = 1 << 20,
                  max_levels: int = 1 << 20, events: int = 1 << 16, timeout: float | None = None,
                  progress=None, extra: list[str] | tuple = ()) -> dict:
    """Run fh-dataplane to the end of its input; return its final statistics."""
    dp = Dataplane(dataplane_cmd(eal, segment, lines, keep=keep, idle=idle, exit_idle_ms=exit_idle_ms,
                                 max_orders=max_orders, max_levels=max_levels, events=events, extra=extra))
    try:
        return dp.wait(timeout, progress)
    finally:
        dp.close()


def remove_segment(path: str) -> None:
    from .segments import remove

    remove(path)


def other_cpu() -> int | None:
    """A CPU for the sender that is not the data plane's poll core, if there is one."""
    cpus = sorted(os.sched_getaffinity(0) - {poll_core()})
    return cpus[-1] if cpus else None


def replay_rate(stats: dict) -> dict:
    """The figures tcpreplay ends with: packets and bytes over the elapsed time, as Mbps, pps and msg/s. Paced,
    what the sender put on the wire over its elapsed time; at top speed (net_pcap), what the data plane took, from
    its first packet to its last (active_ns). Raw numbers (docs/cli.md, fh replay)."""
    s = stats.get("sender")
    if s:
        packets, nbytes, secs = s["sent"], s.get("bytes", 0), s["elapsed_s"]
    else:
        packets, nbytes, secs = stats["packets"], stats.get("bytes", 0), stats.get("active_ns", 0) / 1e9
    msgs = stats.get("messages_applied", 0)

    def per(x: float, scale: float = 1.0, nd: int = 1) -> float | None:
        return round(x / secs * scale, nd) if secs > 0 else None

    return {"packets": packets, "bytes": nbytes, "elapsed_s": round(secs, 6), "messages": msgs,
            "mbps": per(nbytes, 8 / 1e6, 3), "pps": per(packets), "msgs_per_s": per(msgs)}


def line_names(lines: list[dict], configured: list[str] | None = None) -> list[str]:
    """The name of each line of the data plane's section: fh.toml's names when given (feed lines in order),
    else A, B, C, ...; the retransmission server's replies are `retransmission`."""
    out, k = [], 0
    for l in lines:
        if l.get("kind") == "retransmission":
            out.append("retransmission")
            continue
        out.append(configured[k] if configured and k < len(configured) else
                   (chr(ord("A") + k) if k < 26 else f"line{k}"))
        k += 1
    return out



# What to raise when an engine's table is full: in a configuration (fh run, fh replay's data plane), and as an option
# of the commands that size an engine themselves (fh publish)
CAPACITY_FIX_CONFIG = {"order_capacity": "raise shm.max_orders (--max-orders)",
                       "level_capacity": "raise shm.max_levels (--max-levels)",
                       "instrument_capacity": "the feed names more instruments than a segment holds (65,535)"}
CAPACITY_WHAT = {"order_capacity": ("adds", "the order table was full"),
                 "level_capacity": ("adds", "the price-level memory was full"),
                 "instrument_capacity": ("messages of new instruments", "the book table was full")}


def capacity_lines(counters: dict, fixes: dict[str, str]) -> list[str]:
    """One line for each engine table that filled up (counters: the engine's, by name): what was skipped, why, that
    the books it concerns are incomplete from then on, and the fix. Nothing when none did."""
    from .ui import fmt_int

    out = []
    for k, (what, why) in CAPACITY_WHAT.items():
        if counters.get(k):
            books = ("no book was made for them" if k == "instrument_capacity"
                     else "the books they were for lack them (marked stale)")
            out.append(f"capacity: {fmt_int(counters[k])} {what} skipped ({k}): {why}, so {books}; {fixes[k]}")
    return out


def summary_lines(stats: dict, names: list[str] | None = None) -> list[str]:
    """A data plane's final statistics for a person: counts with separators, latency and times in their units,
    lines by name (names: the configuration's feed lines, in order; else A, B, ...). "messages applied" is
    the data plane's count, the engine's: held-then-applied messages included (said when there were any)."""
    from .ui import fmt_bps, fmt_bytes, fmt_int, fmt_ns, fmt_rate, fmt_seconds

    n = fmt_int
    drops = {k: v for k, v in stats["drops"].items() if v}
    lat = stats["latency_ns"]
    mold = stats["mold"]
    wall = stats.get("wall_s")
    out = [
        f"packets {n(stats['packets'])} ({n(stats['nic']['ipackets'])} at the NIC, {n(stats['nic']['imissed'])} "
        f"missed), messages applied {n(stats['messages_applied'])}"
        + (f" ({n(mold['held'])} of them held back until a gap was filled or given up)" if mold.get("held") else "")
        + (f" in {fmt_seconds(wall)}" if wall is not None else "")
        + (f" ({stats['loop']} loops)" if stats.get("loop", 1) > 1 else ""),
        f"drops: {', '.join(f'{k} {n(v)}' for k, v in drops.items()) or 'none'}",
        f"moldudp64: datagrams {n(mold['datagrams'])}, duplicates {n(mold['duplicates'])}, gaps {n(mold['gaps'])} "
        f"({n(mold['gap_messages'])} messages: {n(mold.get('recovered_lines', 0))} filled by the other line, "
        f"{n(mold.get('recovered_retrans', 0))} by retransmission, {n(mold.get('lost', 0))} lost), heartbeats "
        f"{n(mold['heartbeats'])}, end of session {n(mold['end_of_session'])}",
        f"latency rx->publish: p50 {fmt_ns(lat['p50'])}, p99 {fmt_ns(lat['p99'])}, p99.9 {fmt_ns(lat['p99.9'])}, "
        f"max {fmt_ns(lat['max'])} over {n(lat['count'])} messages",
    ]
    out += capacity_lines(stats.get("engine", {}), CAPACITY_FIX_CONFIG)
    ignored = {k: mold.get(k, 0) for k in ("malformed", "bogus_session", "suspect", "old_session") if mold.get(k)}
    if ignored:
        out.append("ignored datagrams: " + ", ".join(f"{k.replace('_', ' ')} {n(v)}" for k, v in ignored.items()))
    feed = stats.get("feed")
    if feed and mold.get("joined_at", 0) > 1:
        j = mold["joined_at"]
        out.append(f"joined late at {j}; " + (f"1..{j - 1} missing" if mold.get("join_lost")
                                              else f"1..{j - 1} recovered" if feed["state"] != "recovering"
                                              else f"1..{j - 1} being recovered"))
    if feed:
        out.append(f"feed: {feed['state']}" + (" (every book marked stale: a gap could not be filled)"
                                               if feed["state"] == "stale" else "")
                   + "; lines: " + ", ".join(f"{name} {l['state']} won {n(l['won'])} lost {n(l['lost'])}"
                                             for name, l in zip(line_names(stats.get("lines", []), names),
                                                                stats.get("lines", []))))
    s = stats.get("sender")
    if s:
        from .net.sender import late_text

        errs = ", ".join(f"{k} {n(v)}" for k, v in s["errors"].items()) or "none"
        line = (f"sender ({s['pace']}, {s['loop']} loop(s)): {n(s['sent'])} of {n(s['frames'])} frames in "
                f"{fmt_seconds(s['elapsed_s'])}, {fmt_rate(s['achieved_pps'] or 0, 'pkt')}")
        if s.get("late_ns"):
            line += (f" (requested {fmt_rate(s['requested_pps'] or 0, 'pkt')} over {fmt_seconds(s['scheduled_s'])}); "
                     f"frames late by {late_text(s['late_ns'])}")
        out.append(line + f"; send errors: {errs}")
    link = stats.get("link")
    if link:
        out.append(f"veth {link['iface']}: kernel counted rx {n(link['rx_packets'])}, tx {n(link['tx_packets'])}, "
                   f"dropped rx {n(link['rx_dropped'])} tx {n(link['tx_dropped'])}; lost before the data plane saw "
                   f"them (its packet ring full): {n(link['unseen'])}")
    r = stats.get("rate")
    if r:
        out.append(f"rate: {n(r['packets'])} packets ({fmt_bytes(r['bytes'])}) in {fmt_seconds(r['elapsed_s'])}: "
                   f"{fmt_bps(None if r['mbps'] is None else r['mbps'] * 1e6)}, {fmt_rate(r['pps'], 'pkt')}, "
                   f"{fmt_rate(r['msgs_per_s'])}")
    return out
