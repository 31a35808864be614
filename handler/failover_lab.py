"""A failover on one machine, with real processes: the lab that the failover test and bench/failover.py run.

A sender in a network namespace sends a capture, paced, over a veth pair; two fh-dataplane processes take the
same frames from the root end (each its own net_af_packet socket): the primary (--journal) and the standby
(--standby JOURNAL: it follows the journal that fh-replicate --role standby writes, holding its own lines
back). fh-replicate --role primary ships the primary's journal over libfabric's tcp provider on loopback.
Part way through the capture the primary "host" dies: kill -9 of its data plane and of its fh-replicate. The
standby's fh-replicate (--promote-on-silence) hears no heartbeat for the failover timeout, promotes, and marks
its journal; the standby data plane resumes its own lines after the last journaled message and fills the hole
from what it held back. A consumer follows the standby's event ring throughout.

With `witness=True` a witness (`fh witness`, handler/witness.py) listens on a loopback port of its own and both
fh-replicate get `--witness ADDR:PORT --pair ID`: the primary beats to it every heartbeat, and the standby, its
primary silent for the timeout, promotes only once the witness too has not heard the primary for the timeout (one
query round trip, and up to a heartbeat more when the beats to the witness lag those on the link). The witness shares
loopback with the replication link here: the lab times a kill, it does not cut a link (tests/test_witness.py does).

`run` returns what happened: the standby data plane's final statistics (its "standby" part holds the
promotion's figures), the events the consumer saw, the books at the end, the time of the kill (CLOCK_REALTIME
ns, the clock the data plane stamps promotion with), the standby fh-replicate's status and summary, and with a
witness its address, the pair's id and its counts at exit (`witness`: its JSON line)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from . import replay
from . import replicate as R
from .net import sender as snd
from .process import Dataplane, dataplane_cmd, other_cpu, remove_segment, with_parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float, what: str, proc_check=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc_check is not None:
            proc_check()
        time.sleep(0.01)
    raise TimeoutError(f"{what}: not within {timeout:g} s")


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _witness_up(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    """Until `fh witness` on 127.0.0.1:port answers a query (a standby asking sooner would get no answer and hold its
    promotion: not what the lab measures)."""
    from . import witness as W

    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(0.1)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"fh witness stopped: {proc.communicate()[1].strip()[-300:]}")
            try:
                c.sendto(W.pack(W.QUERY, "lab-probe"), ("127.0.0.1", port))
                if W.unpack(c.recvfrom(256)[0]) is not None:
                    return
            except (TimeoutError, ConnectionRefusedError):
                pass
    raise TimeoutError(f"fh witness on 127.0.0.1:{port}: no answer within {timeout:g} s")


def _status(path: str) -> dict | None:
    try:
        return R.read_status(path)
    except R.ReplicateError:
        return None


class _Consumer(threading.Thread):
    """Follows a segment's event ring from its first event until the writer stops."""

    def __init__(self, segment: str):
        super().__init__(daemon=True)
        self.segment, self.events, self.overruns, self.error = segment, [], [], None

    def run(self) -> None:
        from .shm import Reader

        try:
            with Reader(self.segment, wait_s=30) as r:
                for ev in r.events(start=1, follow=True):
                    if isinstance(ev, dict):
                        ev.pop("rx_to_pub_ns", None)
                        self.events.append(ev)
                    else:
                        self.overruns.append(ev)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            self.error = e


def run(pcap: str | Path, *, pps: float = 300.0, kill_at: float = 0.4, failover_timeout_ms: int = 300,
        heartbeat_ms: int = 50, hold: int = 1 << 16, events: int = 1 << 18, tag: str | None = None,
        journal_out: str | None = None, witness: bool | int = False) -> dict:
    """One failover (see the module's text). kill_at: the fraction of the capture's frames sent before the kill.
    journal_out: the standby data plane's own journal (--journal), left for the caller (who removes it).
    witness: fh witness on loopback, asked by the standby before it promotes (the module's text); a number: that
    many witnesses, a quorum (the standby promotes when a majority of them say the primary is dead)."""
    prog = R.find_program()
    pcap = str(Path(pcap).resolve())
    tag = tag or uuid.uuid4().hex[:8]
    lines = replay.pcap_lines(pcap)
    pn, sn = f"fop-{tag}", f"fos-{tag}"
    seg_p, seg_s = f"/dev/shm/fh-{pn}", f"/dev/shm/fh-{sn}"
    j_p, j_s = f"{seg_p}.journal", f"{seg_s}.journal"
    st_p, st_s = f"{seg_p}.repl", f"{seg_s}.repl"
    addr = f"127.0.0.1:{_port()}"
    lab = snd.Lab(f"fo{tag[:8]}")
    procs: list[subprocess.Popen] = []
    dps: list[Dataplane] = []
    out: dict = {}
    wit: list[str] = []  # both fh-replicate's witness arguments
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    try:
        lab.up()
        wps: list[subprocess.Popen] = []
        for _ in range(int(witness)):
            wport = _udp_port()
            wp = subprocess.Popen([sys.executable, "-m", "handler", "witness", "--listen", f"127.0.0.1:{wport}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                  preexec_fn=with_parent(signal.SIGTERM))
            procs.append(wp)
            wps.append(wp)
            _witness_up(wport, wp)
            wit += ["--witness", f"127.0.0.1:{wport}"]
        if wps:
            wit += ["--pair", f"fo-{tag}"]
            out.update(witness_addr=",".join(wit[i + 1] for i in range(0, len(wit) - 2, 2)), witness_pair=f"fo-{tag}")
        vdev = f"net_af_packet0,iface={lab.dp_if},framecnt=4096"
        rs = subprocess.Popen([prog, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", j_s,
                               "--journal-mb", "16", "--name", sn, "--status", st_s, "--ring-mb", "4",
                               "--promote-on-silence", "--failover-timeout-ms", str(failover_timeout_ms),
                               # with a witness the standby's heartbeat too, as fh run gives it: its beat interval and
                               # how often it asks again (the witness's silence need not be in phase with the link's)
                               *([*wit, "--heartbeat-ms", str(heartbeat_ms)] if wit else [])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=with_parent(signal.SIGTERM))
        procs.append(rs)
        _wait(lambda: (_status(st_s) or {}).get("state") == "connecting", 10, "the standby fh-replicate listening")
        dp_s = Dataplane(dataplane_cmd(replay.eal_args(sn, vdev), seg_s, lines, exit_idle_ms=0, events=events,
                                       extra=["--standby", j_s, "--standby-hold", str(hold),
                                              *(["--journal", journal_out, "--journal-mb", "16"] if journal_out
                                                else [])]))
        dps.append(dp_s)
        dp_s.wait_running()
        consumer = _Consumer(seg_s)
        consumer.start()
        dp_p = Dataplane(dataplane_cmd(replay.eal_args(pn, vdev), seg_p, lines, exit_idle_ms=0, events=events,
                                       extra=["--journal", j_p, "--journal-mb", "16"]))
        dps.append(dp_p)
        dp_p.wait_running()
        rp = subprocess.Popen([prog, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", j_p,
                               "--epoch", "1", "--name", pn, "--status", st_p, "--heartbeat-ms", str(heartbeat_ms),
                               "--max-outstanding", "16", *wit], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, preexec_fn=with_parent(signal.SIGTERM))
        procs.append(rp)
        _wait(lambda: (_status(st_s) or {}).get("state") == "streaming", 10, "the primary connected")
        sp = subprocess.Popen(lab.sender_argv(pcap, snd.Pace("pps", pps=pps), 1, other_cpu()),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, preexec_fn=with_parent(signal.SIGTERM))
        procs.append(sp)
        kill_ns = None
        shipped_at_kill = None
        said = snd.Output(sp.stdout)
        for msg in said:
            if kill_ns is None and msg["sent"] >= kill_at * msg["total"]:
                shipped_at_kill = (_status(st_s) or {}).get("messages")
                kill_ns = time.time_ns()
                os.kill(dp_p.p.pid, signal.SIGKILL)  # the primary host dies: its data plane and its sender
                os.kill(rp.pid, signal.SIGKILL)
        summary = said.summary
        if sp.wait() != 0 or summary is None:
            raise snd.SenderError(f"the sender failed: {sp.stderr.read().strip()[-300:]}")
        if kill_ns is None:
            raise RuntimeError("the capture ended before the kill point")
        dp_p.p.wait()
        _wait(lambda: (_status(st_s) or {}).get("state") == "promoted", 30, "the standby promoted")
        replay._settle(seg_s, dp_s)
        out["status"] = _status(st_s)
        out["books"] = replay.segment_books(seg_s)
        out["stats"] = dp_s.stop(30)
        consumer.join(30)
        if consumer.error is not None:
            raise consumer.error
        rs.send_signal(signal.SIGTERM)
        o, e = rs.communicate(timeout=30)
        out["replicate"] = json.loads(o.splitlines()[-1]) if o.strip() else None
        out["replicate_err"] = e
        if wps:  # each witness's counts at exit (witness: the first's)
            out["witnesses"] = []
            for wp in wps:
                wp.send_signal(signal.SIGTERM)
                o, e = wp.communicate(timeout=30)
                out["witnesses"].append(json.loads(o.splitlines()[-1]) if o.strip() else None)
            out["witness"] = out["witnesses"][0]
        out.update(events=consumer.events, overruns=consumer.overruns, kill_ns=kill_ns, sender=summary,
                   shipped_at_kill=shipped_at_kill, primary_err=dp_p.err, standby_err=dp_s.err)
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for dp in dps:
            dp.close()
        lab.down()
        for s in (seg_p, seg_s):
            remove_segment(s)
        for f in (j_p, j_s, st_p, st_s):
            if os.path.exists(f):
                os.unlink(f)
