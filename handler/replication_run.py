"""`fh run` with [replication]: fh-replicate next to the data plane, supervised (docs/replication.md, "fh run").

  primary   the data plane journals (/dev/shm/fh-NAME.journal, 256 MiB, unless [journal] gives one) and
            fh-replicate --role primary ships that journal to replication.peer.
  standby   fh-replicate --role standby accepts its primary on replication.listen and writes what it ships into
            /dev/shm/fh-NAME.standby.journal (journal only: no --segment), promoting itself when the primary's
            heartbeat has been absent for failover_timeout_ms; the data plane runs with --standby on that journal
            (its books from it, its own lines held back until the promotion) and journals everything it applies
            into /dev/shm/fh-NAME.journal, so that once promoted it has a journal to ship.

The role held and the epoch are persisted in RUN_DIR/NAME.replication.json (written atomically: a temporary
file renamed over it), so a restart does not forget them: the role held wins over the configured one, and the
epoch is the newest of that file and the last fh-replicate's status file (/dev/shm/fh-NAME.repl).

The role switch:
  - a standby promoted (fh promote, or the failover timeout) becomes the primary: the state file says so, its
    promoted standby fh-replicate is stopped and, with replication.peer set, fh-replicate --role primary at the
    new epoch ships the data plane's own journal to the peer (it connects when the peer listens: the old primary
    restarted as standby);
  - a primary, before its data plane starts (with replication.listen set), listens as a standby for
    max(failover_timeout_ms, 1 s): a primary of a newer epoch that connects (the promoted peer) makes it join as
    standby instead, saying so in one line; nothing connects, or only an older epoch: it starts as primary. It
    never publishes or ships as primary while a newer epoch ships to it.

Supervision: fh-replicate is restarted if it exits while the data plane runs (back-off from 0.1 s doubling to
5 s, reset after 30 s up; counted), except a primary fenced by a newer epoch (exit 4: said, not restarted); it is
drained and stopped with the data plane. The pidfile's record (`replication`) holds its pid, role, epoch, starts
and restarts, which `fh status` shows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import config
from . import replicate as R
from .process import with_parent

FENCED = 4
BACKOFF_MIN_S, BACKOFF_MAX_S, BACKOFF_RESET_S = 0.1, 5.0, 30.0
CONNECT_FOREVER_MS = 24 * 3600 * 1000  # under fh run a primary waits for its standby as long as it runs


def journal_of(cfg: config.Config) -> str:
    return f"/dev/shm/fh-{cfg.name}.journal"


def standby_journal_of(cfg: config.Config) -> str:
    return f"/dev/shm/fh-{cfg.name}.standby.journal"


# ---- the persisted role and epoch ----------------------------------------------------------------------


def state_path(name: str, run_dir: Path | list[Path]) -> Path:
    """RUN_DIR/NAME.replication.json: in run_dir (fh run: its pidfile's directory), or in the first of a list of
    candidate run directories (fh status: supervise.run_dirs()) that holds one."""
    if not isinstance(run_dir, list):
        return Path(run_dir) / f"{name}.replication.json"
    cands = [Path(d) / f"{name}.replication.json" for d in run_dir]
    return next((p for p in cands if p.exists()), cands[0])


def read_state(name: str, run_dir: Path | list[Path]) -> dict | None:
    p = state_path(name, run_dir)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        print(f"fh run: {name}: {p}: unreadable ({e}); going by the configuration", file=sys.stderr)
        return None
    if d.get("role") not in ("primary", "standby") or not isinstance(d.get("epoch"), int) or d["epoch"] < 1:
        print(f"fh run: {name}: {p}: not a replication state (role, epoch); going by the configuration",
              file=sys.stderr)
        return None
    d["path"] = str(p)
    return d


def write_state(name: str, run_dir: Path, role: str, epoch: int, why: str) -> dict:
    """Atomically: a temporary file in the same directory, flushed, renamed over the state file."""
    p = state_path(name, run_dir)
    d = {"name": name, "role": role, "epoch": epoch, "why": why, "updated_ns": time.time_ns()}
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(d, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return d


def _status_epoch(name: str) -> int:
    try:
        return max(1, int(R.read_status(name)["epoch"]))
    except (R.ReplicateError, KeyError, ValueError):
        return 1


# ---- the commands --------------------------------------------------------------------------------------


def _common(cfg: config.Config, epoch: int) -> list[str]:
    return ["--provider", cfg.replication.provider, "--name", cfg.name, "--epoch", str(epoch)]


def primary_cmd(cfg: config.Config, journal: str, epoch: int) -> list[str]:
    r = cfg.replication
    return [R.find_program(), "--role", "primary", "--peer", f"{r.peer[0]}:{r.peer[1]}", "--journal", journal,
            "--heartbeat-ms", str(r.heartbeat_ms), "--connect-timeout-ms", str(CONNECT_FOREVER_MS),
            *_common(cfg, epoch)]


def standby_cmd(cfg: config.Config, epoch: int) -> list[str]:
    r = cfg.replication
    return [R.find_program(), "--role", "standby", "--listen", f"{r.listen[0]}:{r.listen[1]}", "--journal",
            standby_journal_of(cfg), "--ring-mb", str(r.ring_mb), "--failover-timeout-ms",
            str(r.failover_timeout_ms), "--promote-on-silence", *_common(cfg, epoch)]


def _dataplane_journal(dataplane_cmd: list[str], cfg: config.Config) -> str:
    if "--journal" not in dataplane_cmd:
        dataplane_cmd += ["--journal", journal_of(cfg), "--journal-mb", "256"]
    return dataplane_cmd[dataplane_cmd.index("--journal") + 1]


def plan(cfg: config.Config, dataplane_cmd: list[str], role: str | None = None, epoch: int | None = None) \
        -> list[str] | None:
    """The fh-replicate command for cfg in role (default: the configured one; None: replication off), and the
    data plane's arguments it needs, appended to dataplane_cmd."""
    role = role or cfg.replication.role
    if role == "off":
        return None
    epoch = epoch or _status_epoch(cfg.name)
    journal = _dataplane_journal(dataplane_cmd, cfg)
    if role == "primary":
        return primary_cmd(cfg, journal, epoch)
    dataplane_cmd += ["--standby", standby_journal_of(cfg)]
    return standby_cmd(cfg, epoch)


# ---- the supervised fh-replicate -----------------------------------------------------------------------


class Replication:
    """fh-replicate under fh run: the role decided before the data plane starts (`decide`), started, restarted
    with a back-off while the data plane runs (`poll`), switched to primary after a promotion, stopped after
    the data plane (`stop`)."""

    def __init__(self, cfg: config.Config, run_dir: Path, log=sys.stderr):
        self.cfg, self.run_dir, self.log = cfg, Path(run_dir), log
        self.role, self.epoch, self.why = None, 1, ""
        self.cmd: list[str] | None = None
        self.journal: str | None = None
        self.proc: subprocess.Popen | None = None
        self.starts = self.restarts = 0
        self.started_at = 0.0
        self.next_start: float | None = None
        self.backoff = BACKOFF_MIN_S
        self.fenced = False
        self.state: dict | None = None
        self.waiting = False  # a primary: until the data plane's journal is there (an old one is not shipped)

    def say(self, msg: str) -> None:
        print(f"fh run: {self.cfg.name}: {msg}", file=self.log, flush=True)

    def _spawn(self, cmd: list[str]) -> subprocess.Popen:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                preexec_fn=with_parent(signal.SIGTERM))

    def _persist(self, why: str) -> None:
        self.why = why
        self.state = write_state(self.cfg.name, self.run_dir, self.role, self.epoch, why)

    # -- before the data plane --

    def decide(self, dataplane_cmd: list[str]) -> None:
        """The role and epoch (persisted state, else the configuration; a primary probes for a newer one first),
        the data plane's arguments for it, and fh-replicate started."""
        cfg, r = self.cfg, self.cfg.replication
        st = read_state(cfg.name, self.run_dir)
        self.epoch = max(_status_epoch(cfg.name), st["epoch"] if st else 1)
        self.role = st["role"] if st else r.role
        why = (f"held {st['role']} at epoch {st['epoch']} before (configured {r.role})" if st
               else f"configured {r.role}")
        if self.role == "standby" and r.listen is None:
            self.say(f"last held standby ({st['path'] if st else ''}) but replication.listen is not set: running as "
                     f"the configured {r.role}")
            self.role, why = r.role, f"configured {r.role} (no listen address to be a standby on)"
        if self.role == "primary" and r.peer is None:
            self.say("last held primary but replication.peer is not set: running as standby")
            self.role, why = "standby", "held primary before, no peer to ship to"
        if self.role == "primary" and r.listen is not None:
            self._probe(why)
        if self.role == "primary":  # started once the data plane has created its journal (poll)
            self.journal = _dataplane_journal(dataplane_cmd, cfg)
            self.cmd = primary_cmd(cfg, self.journal, self.epoch)
            self._persist(why)
            self.waiting = True
        else:
            self.journal = _dataplane_journal(dataplane_cmd, cfg)
            dataplane_cmd += ["--standby", standby_journal_of(cfg)]
            if self.proc is None:  # the probe's standby goes on as the standby's fh-replicate
                self.cmd = standby_cmd(cfg, self.epoch)
                self._persist(why)
                self.start()

    def _probe(self, why: str) -> None:
        """Listen as a standby for a while: a primary of a newer epoch shipping to us means the peer was promoted
        while this host was away; then this host joins as standby (the probe's fh-replicate goes on as such)."""
        cfg, r = self.cfg, self.cfg.replication
        wait_s = max(r.failover_timeout_ms, 1000) / 1000
        self.cmd = standby_cmd(cfg, self.epoch)
        self.say(f"{why}: listening on {r.listen[0]}:{r.listen[1]} for {wait_s:g} s for a primary of an epoch newer "
                 f"than {self.epoch} before taking the lines")
        self.start(probe=True)
        deadline, connected_at = time.monotonic() + wait_s, None
        newer = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                s = R.read_status(cfg.name)
            except R.ReplicateError:
                s = None
            if s and s["pid"] == self.proc.pid:
                if s["epoch"] > self.epoch:
                    newer = s
                    break
                if s["state"] == "streaming" and connected_at is None:
                    connected_at = time.monotonic()  # its heartbeat (with its epoch) follows at once
                if connected_at is not None and time.monotonic() - connected_at > 0.5:
                    break
            time.sleep(0.02)
        if newer is not None:
            old = self.epoch
            self.role, self.epoch = "standby", newer["epoch"]
            self._persist(f"the peer ships at epoch {newer['epoch']}, newer than this host's {old}")
            self.say(f"configured {r.role}, but the peer ships to this host as primary at epoch "
                     f"{newer['epoch']}, newer than this host's {old} (it was promoted while this host was away): "
                     f"joining as standby, not publishing as primary (no split brain); state in "
                     f"{state_path(cfg.name, self.run_dir)}")
            return
        if connected_at is not None:
            self.say(f"a primary of epoch {self.epoch} or older connected during the probe (refused if older): "
                     f"starting as primary at epoch {self.epoch}")
        self._stop_proc()
        self.proc = None
        self.starts = 0

    # -- while the data plane runs --

    def start(self, probe: bool = False) -> None:
        if self.role == "standby":  # the epoch it holds now (adopted from its primary since the last start)
            self.cmd = standby_cmd(self.cfg, self.epoch)
        self.proc = self._spawn(self.cmd)
        self.starts += 1
        self.started_at = time.monotonic()
        if self.starts == 1:
            self.say(f"replication {'probe (as standby)' if probe else self.role} at epoch {self.epoch}: "
                     f"{' '.join(self.cmd)}")

    def record(self) -> dict:
        return {"role": self.role, "epoch": self.epoch, "pid": self.proc.pid if self.proc else None,
                "starts": self.starts, "restarts": self.restarts, "fenced": self.fenced, "why": self.why,
                "state_file": str(state_path(self.cfg.name, self.run_dir))}

    def poll(self, dataplane_pid: int) -> bool:
        """Start a primary's fh-replicate once the data plane's journal is there, restart a dead one (after its
        back-off), switch to primary after a promotion. True when the record changed (the caller writes it to the
        pidfile)."""
        if self.waiting:
            from . import journal as J

            if not J.ring_written_by(self.journal, dataplane_pid):
                return False
            self.waiting = False
            self.start()
            return True
        p = self.proc
        if p is None:
            if self.next_start is not None and time.monotonic() >= self.next_start:
                self.next_start = None
                self.restarts += 1
                self.start()
                return True
            return False
        if self.role == "standby":
            return self._promoted()
        rc = p.poll()
        if rc is None:
            if time.monotonic() - self.started_at > BACKOFF_RESET_S:
                self.backoff = BACKOFF_MIN_S
            return False
        self.proc = None
        if rc == FENCED and self.role == "primary":
            self.fenced = True
            self.say("fh-replicate was fenced: the peer is at a newer epoch (its line is above); not restarted. This "
                     "host's data plane still takes the lines: stop it and run fh run again, which joins as standby")
            return True
        self.say(f"fh-replicate (pid {p.pid}) exited with status {rc} while the data plane runs; starting it again in "
                 f"{self.backoff:g} s (restart {self.restarts + 1})")
        self.next_start = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
        return True

    def _promoted(self) -> bool:
        """A standby: its fh-replicate promoted (or dead)."""
        p = self.proc
        rc = p.poll()
        try:
            s = R.read_status(self.cfg.name)
        except R.ReplicateError:
            s = None
        if s and s["pid"] == p.pid and s["state"] != "promoted" and s["epoch"] > self.epoch:
            old = self.epoch
            self.epoch = int(s["epoch"])  # adopted from a newer primary: remembered
            self._persist(f"adopted its primary's epoch {self.epoch} (was {old})")
            return True
        if s and s["pid"] == p.pid and s["state"] == "promoted":
            old = self.epoch
            self.role, self.epoch = "primary", int(s["epoch"])
            self._persist(f"promoted from standby at epoch {old}")
            self._stop_proc()  # its work is done: the data plane has taken the lines
            self.proc = None
            if self.cfg.replication.peer is None:
                self.say(f"promoted to primary at epoch {self.epoch}; replication.peer is not set: nothing to ship to")
                self.cmd = None
                return True
            self.cmd = primary_cmd(self.cfg, self.journal, self.epoch)
            self.starts = self.restarts = 0
            self.backoff = BACKOFF_MIN_S
            self.start()
            self.say(f"promoted to primary at epoch {self.epoch}: shipping {self.journal} to "
                     f"{self.cfg.replication.peer[0]}:{self.cfg.replication.peer[1]} (the old primary joins as "
                     f"standby when it returns)")
            return True
        if rc is None:
            return False
        self.proc = None
        self.say(f"the standby's fh-replicate (pid {p.pid}) exited with status {rc}; starting it again in "
                 f"{self.backoff:g} s (restart {self.restarts + 1})")
        self.next_start = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
        return True

    # -- after the data plane --

    def _stop_proc(self, timeout: float = 10) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop(self) -> None:
        """After the data plane: a primary's fh-replicate first ships what the journal holds and has it
        acknowledged (up to 5 s), then it stops (SIGTERM), or is killed after 10 s."""
        self.next_start = None
        stop(self.proc, self.cfg.name)


def start(cfg: config.Config, dataplane_cmd: list[str], run_dir: Path) -> Replication | None:
    """fh-replicate for cfg (None: replication off), its role decided and persisted; its lines go to fh run's
    stderr."""
    if cfg.replication.role == "off":
        return None
    rep = Replication(cfg, run_dir)
    rep.decide(dataplane_cmd)
    return rep


def stop(p: subprocess.Popen | None, name: str) -> None:
    """After the data plane: a primary's fh-replicate first ships what the journal holds and has it acknowledged
    (up to 5 s), then fh-replicate stops (SIGTERM), or is killed after 10 s."""
    if p is None:
        return
    # A primary still starting or connecting has shipped nothing yet: it is waited for too (a data plane that
    # replays a short capture can finish before its fh-replicate has connected; stopping that one at once lost
    # the whole day for the standby).
    deadline = time.monotonic() + 5
    while p.poll() is None and time.monotonic() < deadline:
        try:
            st = R.read_status(name)
        except R.ReplicateError:  # not written yet: fh-replicate is starting
            time.sleep(0.02)
            continue
        if st["role"] != "primary" or st["state"] not in ("starting", "connecting", "streaming", "behind") or (
                st["state"] in ("streaming", "behind") and st["journal_pos"] == st["journal_head"]
                and st["acked_messages"] == st["messages"]):
            break
        time.sleep(0.02)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p.returncode not in (0, -signal.SIGTERM):
        print(f"fh run: {name}: fh-replicate exited with status {p.returncode} (its message is above)",
              file=sys.stderr)


def status(name: str, run_dirs: list[Path]) -> dict | None:
    """For fh status: the persisted role and epoch (in the first of run_dirs that holds them), with the live
    fh-replicate's state."""
    st = read_state(name, run_dirs)
    try:
        live = R.read_status(name)
    except R.ReplicateError:
        live = None
    if st is None and live is None:
        return None
    out = {"role": st["role"] if st else None, "epoch": st["epoch"] if st else None, "why": st["why"] if st else None,
           "state_file": st["path"] if st else None}
    if live is not None:
        out.update(replicate={k: live[k] for k in ("role", "state", "epoch", "pid", "alive", "peer", "messages",
                                                   "refused_epoch", "connections")})
    return out
