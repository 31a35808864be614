"""What `fh run` supervises beside the data plane (handler/run.py):

- `RecorderProc`: `fh record` on the instance's journal ring when `[journal] record = true` (docs/config.md).
  It is started once the data plane has created its ring (the ring's writer pid is the data plane's: an old
  ring left by a killed run is not followed), restarted if it dies while the data plane runs (it resumes from
  its files, docs/journal.md), and stopped with the data plane: it ends by itself once the writer is gone and
  everything the ring holds is on disk; after `DRAIN_S` it is asked to stop (SIGTERM), then killed. It runs in
  its own session, so a Ctrl-C meant for fh run does not cut its last writes short.
- `RestartWatch`: the recovery of a restart (`fh-dataplane --restore`): `restoring` while the restored books
  are stale (the data plane keeps them stale until the lines have delivered what happened between the
  journal's end and the live feed), then `recovered` (every book live again) or `stale` (a gap was given up:
  the books stay stale). The times go into the pidfile's record (`restart`), which `fh status` and
  `fh metrics` show: how long the snapshot + journal took to prepare, when the data plane was up with the
  restored books, when they were live again, all from fh run's start (resolution: `POLL_S`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from . import journal as J
from .process import fh_argv

POLL_S = 0.02
DRAIN_S = 30.0


class RecorderProc:
    def __init__(self, name: str, directory: str, opts: dict, log=sys.stderr):
        self.name, self.dir, self.opts, self.log = name, directory, opts, log
        self.ring = J.ring_path(name)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.out_path = os.path.join(directory, "record.log")

    def argv(self) -> list[str]:
        o = self.opts
        return fh_argv("record", "--journal", self.ring, "--dir", self.dir, "--snapshot-every", o["snapshot_every"],
                       "--snapshot-keep", o["snapshot_keep"], "--fsync", o["fsync"])

    def poll(self, dataplane_pid: int) -> int | None:
        """Start (or restart) the recorder when the data plane's ring is there. Returns its pid when it was
        started now."""
        if self.proc is not None and self.proc.poll() is None:
            return None
        if self.proc is not None and self.proc.returncode == 0 and not J.writer_alive(self.ring):
            # It drained the ring after the data plane closed its journal (which the data plane does before its
            # process exits): done, not to be started again on a ring no one writes.
            return None
        if self.proc is not None:
            print(f"fh run: {self.name}: fh record (pid {self.proc.pid}) exited with status {self.proc.returncode} "
                  f"while the data plane runs (its output: {self.out_path}); starting it again",
                  file=self.log, flush=True)
        elif not J.ring_written_by(self.ring, dataplane_pid):
            return None
        os.makedirs(self.dir, exist_ok=True)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with open(self.out_path, "a") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        self.starts += 1
        if self.starts == 1:
            print(f"fh run: {self.name}: fh record (pid {self.proc.pid}) follows {self.ring} into {self.dir} "
                  f"(snapshots every {self.opts['snapshot_every']} messages)", file=self.log, flush=True)
        return self.proc.pid

    def finish(self, drain_s: float = DRAIN_S) -> int | None:
        """After the data plane: let the recorder write what the ring still holds, then stop it."""
        p = self.proc
        if p is None:
            return None
        try:
            return p.wait(drain_s)
        except subprocess.TimeoutExpired:
            print(f"fh run: {self.name}: fh record (pid {p.pid}) still writing after {drain_s:g} s; asking it to "
                  "stop (SIGTERM)", file=self.log, flush=True)
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()


class RestartWatch:
    """Follows a restarted data plane's segment until its restored books are live again (or given up)."""

    def __init__(self, segment: str, info: dict, started_ns: int):
        self.segment, self.started_ns = segment, started_ns
        self.state = {**info, "state": "restoring", "up_s": None, "recovered_s": None}
        self.reader = None
        self.seen_stale = False
        self.next_ev = None

    def _since(self) -> float:
        return round((time.time_ns() - self.started_ns) / 1e9, 3)

    def poll(self, dataplane_pid: int) -> bool:
        """True when the state changed (the caller writes it to the pidfile)."""
        if self.state["state"] != "restoring":
            return False
        from . import shm

        if self.reader is None:
            try:
                r = shm.Reader(self.segment, wait_s=0)
            except shm.ShmError:
                return False
            if r.writer_pid != dataplane_pid:
                r.close()
                return False
            self.reader, self.next_ev = r, r.oldest()
            self.state["up_s"] = self._since()
            changed = True
        else:
            changed = False
        r = self.reader
        recovered_ev = False
        while True:  # the stale / recovered notices (a recovery faster than POLL_S is seen here)
            arr, self.next_ev, _ = r.read_events(self.next_ev)
            if not len(arr):
                break
            types = arr["type"]
            self.seen_stale |= bool((types == shm.lib.FH_EV_STALE).any())
            recovered_ev |= bool((types == shm.lib.FH_EV_RECOVERED).any())
        status = r.books["status"]
        live, stale = int((status == shm.LIVE).sum()), int((status == shm.STALE).sum())
        self.seen_stale |= stale > 0
        feed = r.dataplane_stats()["feed"]["state"]
        if stale and feed == "stale":
            self.state["state"] = "stale"
            self.state["recovered_s"] = None
            return True
        if live and not stale and (self.seen_stale or recovered_ev):
            self.state["state"] = "recovered"
            self.state["recovered_s"] = self._since()
            return True
        return changed

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
