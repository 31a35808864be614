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
  - a primary with replication.listen runs a guard there while it is primary (fh-replicate --guard): a peer that
    is primary too finds it. Before its data plane starts it also asks the peer (--probe) for
    max(failover_timeout_ms, 1 s): a peer primary that beats it (the newer epoch; on a tie the lower listen
    address, wins_ties) or a primary that ships to its guard and beats it makes it join as standby, saying so in
    one line (the guard goes on as its standby fh-replicate); else it starts as primary. A primary without listen
    asks the peer the same way (no guard: it cannot be asked, and never wins a tie) and, beaten, is a standby that
    connects to the peer;
  - a running primary whose guard yields, or whose fh-replicate is fenced (exit 4), is demoted: said in one line,
    its fh-replicate stopped, the guard its standby from now on, and fh run restarts the data plane as standby
    (demoted_cmd). A restart rather than in place: a standby's books and event sequence must be its primary's,
    which an engine built from this host's own lines does not have.
  - [journal] dir: the primary's fh-replicate gets its snapshots (--snapshot-dir) for a standby its journal no
    longer reaches.

Supervision: fh-replicate is restarted if it exits while the data plane runs (back-off from 0.1 s doubling to
5 s, reset after 30 s up; counted), except a fenced primary (demoted instead); it is drained and stopped with the
data plane. The pidfile's record (`replication`) holds its pid, role, epoch, starts, restarts and demotions,
which `fh status` shows."""
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
from .process import terminate, with_parent

FENCED = 4
BACKOFF_MIN_S, BACKOFF_MAX_S, BACKOFF_RESET_S = 0.1, 5.0, 30.0
CONNECT_FOREVER_MS = 24 * 3600 * 1000  # under fh run a primary waits for its standby as long as it runs


def journal_of(cfg: config.Config) -> str:
    return f"/dev/shm/fh-{cfg.name}.journal"


def standby_journal_of(cfg: config.Config) -> str:
    return f"/dev/shm/fh-{cfg.name}.standby.journal"


def guard_status_of(cfg: config.Config) -> str:
    return f"/dev/shm/fh-{cfg.name}.guard.repl"


def _addr_key(host: str, port: int) -> tuple:
    import ipaddress
    import socket

    try:
        host = socket.gethostbyname(host)  # a name and the address it stands for compare the same
    except OSError:
        pass
    try:
        return (0, ipaddress.ip_address(host).packed, port)
    except ValueError:  # unresolvable here: compared as text
        return (1, host.encode(), port)


def _own_address(cfg: config.Config) -> str:
    """This host's address as its peer knows it: the listen address, or with a wildcard listen (0.0.0.0, ":PORT")
    the local address the kernel uses toward the peer (a UDP connect: nothing is sent)."""
    import socket

    host = cfg.replication.listen[0]
    if host not in ("", "0.0.0.0"):
        return host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((cfg.replication.peer[0], cfg.replication.peer[1]))
            return s.getsockname()[0]
    except OSError:
        return host


def wins_ties(cfg: config.Config) -> bool:
    """Two primaries at the same epoch (both configured primary, no state yet): the host whose address (its listen
    address, or with a wildcard listen the address it reaches the peer from) is the lower goes on (address, then
    port); both hosts compute the same, each from its own address and its peer's. Without a listen address a host
    cannot be asked, and does not win."""
    r = cfg.replication
    return r.listen is not None and r.peer is not None and \
        _addr_key(_own_address(cfg), r.listen[1]) < _addr_key(r.peer[0], r.peer[1])


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


def _witness(cfg: config.Config) -> list[str]:
    """[replication] witness: the primary beats to each, the standby asks them all before promoting on silence (both
    every heartbeat_ms; a majority must not have heard the primary), under the pair's id (replication.pair, else the
    instance name: the same on both hosts). --witness once per witness, in the order configured (w1, w2, ...); the
    shared key's file (replication.witness_key_file) when keyed."""
    r = cfg.replication
    if not r.witness:
        return []
    key = ["--witness-key-file", r.witness_key_file] if r.witness_key_file else []
    return [*(a for h, p in r.witness for a in ("--witness", f"{h}:{p}")), "--pair", r.pair or cfg.name, *key]


def _ties(cfg: config.Config) -> list[str]:
    return ["--wins-ties"] if wins_ties(cfg) else []


def primary_cmd(cfg: config.Config, journal: str, epoch: int) -> list[str]:
    """[journal] dir (fh record's snapshots): a standby the journal no longer reaches gets the newest snapshot the
    journal follows, then the journal after it."""
    r = cfg.replication
    snaps = ["--snapshot-dir", str(Path(cfg.journal_dir) / "snapshots")] if cfg.journal_dir else []
    return [R.find_program(), "--role", "primary", "--peer", f"{r.peer[0]}:{r.peer[1]}", "--journal", journal,
            "--heartbeat-ms", str(r.heartbeat_ms), "--connect-timeout-ms", str(CONNECT_FOREVER_MS), *snaps,
            *_ties(cfg), *_witness(cfg), *_common(cfg, epoch)]


def guard_cmd(cfg: config.Config, epoch: int) -> list[str]:
    """A primary's guard on its listen address: it tells a connecting primary that this host is primary, refuses one
    that does not beat it (fenced), and yields to one that does (then fh run demotes this host). It is the standby's
    fh-replicate in waiting (the standby's journal; its own status file until SIGUSR2 makes it the standby), so that
    a primary shipping to it is not cut off when this host joins as standby."""
    return [*standby_cmd(cfg, epoch), "--guard", "--status", guard_status_of(cfg), *_ties(cfg)]


def probe_cmd(cfg: config.Config, epoch: int, timeout_ms: int) -> list[str]:
    """What listens at the peer (its role and epoch: one JSON line), nothing shipped."""
    r = cfg.replication
    return [R.find_program(), "--role", "primary", "--probe", "--peer", f"{r.peer[0]}:{r.peer[1]}",
            "--connect-timeout-ms", str(timeout_ms), *_ties(cfg), *_common(cfg, epoch)]


def standby_cmd(cfg: config.Config, epoch: int) -> list[str]:
    """The standby's fh-replicate: listening on replication.listen for its primary; a host without listen (a
    fenced primary joining as standby) connects to its peer instead, whose guard ships to it."""
    r = cfg.replication
    where = ["--listen", f"{r.listen[0]}:{r.listen[1]}"] if r.listen else ["--peer", f"{r.peer[0]}:{r.peer[1]}"]
    return [R.find_program(), "--role", "standby", *where, "--journal",
            standby_journal_of(cfg), "--ring-mb", str(r.ring_mb), "--failover-timeout-ms",
            str(r.failover_timeout_ms), "--promote-on-silence", "--heartbeat-ms", str(r.heartbeat_ms), *_witness(cfg),
            *_common(cfg, epoch)]


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
    with a back-off while the data plane runs (`poll`), switched to primary after a promotion, demoted to standby
    when a primary that beats this one shows up (`demoting`: fh run restarts the data plane with
    `demoted_cmd`), stopped after the data plane (`stop`). A primary with replication.listen also runs a guard
    there (guard_cmd): the peer, should it be primary too, finds this one."""

    def __init__(self, cfg: config.Config, run_dir: Path, log=sys.stderr):
        self.cfg, self.run_dir, self.log = cfg, Path(run_dir), log
        self.role, self.epoch, self.why = None, 1, ""
        self.cmd: list[str] | None = None
        self.journal: str | None = None
        self.proc: subprocess.Popen | None = None
        self.guard: subprocess.Popen | None = None
        self.guard_next: float | None = None
        self.guard_backoff, self.guard_started = BACKOFF_MIN_S, 0.0
        self.starts = self.restarts = self.demotions = 0
        self.started_at = 0.0
        self.next_start: float | None = None
        self.backoff = BACKOFF_MIN_S
        self.fenced = False
        self.demoting = False  # fh run: stop the data plane, then start it again with demoted_cmd()
        self.state: dict | None = None
        self.waiting = False  # a primary: until the data plane's journal is there (an old one is not shipped)

    def say(self, msg: str) -> None:
        print(f"fh run: {self.cfg.name}: {msg}", file=self.log, flush=True)

    def _spawn(self, cmd: list[str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
        arm = with_parent(signal.SIGTERM)

        def preexec() -> None:
            if arm is not None:
                arm()
            # SIGHUP (rekey) ignored until fh-replicate's own handler is installed: one forwarded while it starts
            # must not end it (the default action); it reads the key file at its start anyway
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, preexec_fn=preexec)

    def _persist(self, why: str) -> None:
        self.why = why
        self.state = write_state(self.cfg.name, self.run_dir, self.role, self.epoch, why)

    @property
    def peer(self) -> str:
        r = self.cfg.replication
        return f"{r.peer[0]}:{r.peer[1]}" if r.peer else "-"

    # -- before the data plane --

    def decide(self, dataplane_cmd: list[str]) -> None:
        """The role and epoch (persisted state, else the configuration; a primary asks its peer first), the data
        plane's arguments for it, and fh-replicate started."""
        cfg, r = self.cfg, self.cfg.replication
        st = read_state(cfg.name, self.run_dir)
        self.epoch = max(_status_epoch(cfg.name), st["epoch"] if st else 1)
        self.role = st["role"] if st else r.role
        why = (f"held {st['role']} at epoch {st['epoch']} before (configured {r.role})" if st
               else f"configured {r.role}")
        if self.role == "standby" and r.listen is None and r.peer is None:
            self.say(f"last held standby ({st['path'] if st else ''}) but neither replication.listen nor peer is set: "
                     f"running as the configured {r.role}")
            self.role, why = r.role, f"configured {r.role} (no listen address to be a standby on, no peer)"
        if self.role == "primary" and r.peer is None:
            self.say("last held primary but replication.peer is not set: running as standby")
            self.role, why = "standby", "held primary before, no peer to ship to"
        if self.role == "primary" or "--restore" not in dataplane_cmd:
            self._fresh_standby_journal()
        self.journal = _dataplane_journal(dataplane_cmd, cfg)  # (before the guard: it ships it to a joining standby)
        if self.role == "primary":
            self._probe(why)
        if self.role == "primary":  # started once the data plane has created its journal (poll)
            self.cmd = primary_cmd(cfg, self.journal, self.epoch)
            if self.state is None or self.state["role"] != "primary":
                self._persist(why)
            self.waiting = True
        else:
            dataplane_cmd += ["--standby", standby_journal_of(cfg)]
            if self.state is None or self.state["role"] != "standby":
                self._persist(why)
            if self.proc is None:  # (the probe's guard goes on as the standby's fh-replicate)
                self.cmd = standby_cmd(cfg, self.epoch)
                self.start()

    def _fresh_standby_journal(self) -> None:
        """A data plane that starts empty (no --restore) needs the whole day from the primary: a standby journal left
        by an earlier run would make the standby fh-replicate resume after its end (and the books miss the day)."""
        for p in (standby_journal_of(self.cfg), standby_journal_of(self.cfg) + ".snapshot"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def _guard_status(self) -> dict | None:
        try:
            s = R.read_status(guard_status_of(self.cfg))
        except R.ReplicateError:
            return None
        return s if self.guard is not None and s["pid"] == self.guard.pid else None

    def _start_guard(self) -> None:
        ship = ["--ship-journal", self.journal] if self.journal else []  # to a standby that connects (no listen)
        self.guard = self._spawn([*guard_cmd(self.cfg, self.epoch), *ship])
        self.guard_next, self.guard_started = None, time.monotonic()

    def _stop_guard(self) -> None:
        terminate(self.guard)
        self.guard = None
        try:
            os.unlink(guard_status_of(self.cfg))
        except FileNotFoundError:
            pass

    def _unguard(self) -> None:
        """This host is standby now: the guard goes on as its standby fh-replicate (SIGUSR2: its status moves to
        the instance's file), keeping whatever primary ships to it."""
        g, self.guard = self.guard, None
        g.send_signal(signal.SIGUSR2)
        self.proc, self.cmd = g, standby_cmd(self.cfg, self.epoch)
        self.starts, self.started_at = 1, time.monotonic()

    def _guard_yielded(self) -> dict | None:
        """The guard's status once a primary that beats this host ships to it (it is a standby then)."""
        s = self._guard_status()
        return s if s is not None and s["state"] in ("streaming", "behind", "peer-silent") else None

    def _probe(self, why: str) -> None:
        """Before the data plane: the guard listens (a primary that ships to this host and beats it: the peer was
        promoted while this host was away) and a probe asks the peer what it is (both hosts restarted at once, each
        holding primary: the one of the newer epoch goes on, on a tie the lower listen address). For
        max(failover_timeout_ms, 1 s), or until the peer has answered. A peer that beats this host: standby. A host
        without listen has no guard and only asks (it cannot be asked, and never wins a tie); as standby it connects
        to the peer."""
        cfg, r = self.cfg, self.cfg.replication
        wait_s = max(r.failover_timeout_ms, 1000) / 1000
        where = f"guarding {r.listen[0]}:{r.listen[1]} and " if r.listen is not None else "no listen address: "
        self.say(f"{why}: {where}asking the peer at {self.peer} for {wait_s:g} s "
                 f"whether a primary of an epoch newer than {self.epoch} runs there, before taking the lines")
        if r.listen is not None:
            self._start_guard()
        pr = self._spawn(probe_cmd(cfg, self.epoch, int(wait_s * 1000)), stdout=subprocess.PIPE)
        deadline, answer, yielded = time.monotonic() + wait_s, None, None
        try:
            while time.monotonic() < deadline:
                yielded = self._guard_yielded()
                if yielded is not None:
                    break
                if answer is None and pr.poll() is not None:
                    try:
                        answer = json.loads(pr.stdout.read() or "null")
                    except ValueError:
                        answer = None
                    if answer is not None:
                        break
                time.sleep(0.02)
        finally:
            terminate(pr)
            pr.stdout.close()
        old = self.epoch
        if yielded is not None or (answer and answer["peer_wins"]):
            e = yielded["epoch"] if yielded is not None else answer["epoch"]
            how = (f"newer than this host's {old} (it was promoted while this host was away)" if e > old else
                   f"the same as this host's, and the tie goes to the lower listen address, the peer's"
                   if r.listen is not None else
                   f"the same as this host's, and the tie goes to the peer (this host has no listen address)")
            self.role, self.epoch = "standby", max(e, old)
            if r.listen is not None:
                self._unguard()
            self.say(f"configured {r.role}, but the peer at {self.peer} is primary at epoch {e}, {how}: joining as "
                     f"standby, not publishing as primary (no split brain); state in "
                     f"{state_path(cfg.name, self.run_dir)}")
            self._persist(f"the peer is primary at epoch {e}, {how}")
            return
        if answer and answer["role"] == "primary":
            how = (f"older than this host's {old}" if answer["epoch"] < old else
                   "the same as this host's, and the tie goes to the lower listen address, this host's")
            self.say(f"the peer at {self.peer} is primary too, at epoch {answer['epoch']}, {how}: starting as primary "
                     f"at epoch {old}; the peer joins as standby")

    # -- while the data plane runs --

    def start(self) -> None:
        if self.role == "standby":  # the epoch it holds now (adopted from its primary since the last start)
            self.cmd = standby_cmd(self.cfg, self.epoch)
        self.proc = self._spawn(self.cmd)
        self.starts += 1
        self.started_at = time.monotonic()
        if self.starts == 1:
            self.say(f"replication {self.role} at epoch {self.epoch}: {' '.join(self.cmd)}")

    def rekey(self) -> dict:
        """fh run's SIGHUP (systemctl reload): the witnesses' key file checked with the configuration's rules, then
        SIGHUP to the fh-replicate processes running (the replicator and a primary's guard), which read it again and
        sign with it from then on (never to the data plane). One line; a file that fails: said, nothing forwarded.
        The outcome, for fh run's record (`fh reload` waits on it): ok, the line, and `wait`: each process told,
        with its status file and its count of re-reads (witness_rekeys) before, which a re-read that took raises. A
        process whose status file is not written yet is still starting: it reads the file at its start."""
        key = self.cfg.replication.witness_key_file
        try:
            config.check_witness_key_file(self.cfg.path, key)
        except config.ConfigError as e:
            said = f"SIGHUP: {e}: nothing forwarded, the key in use stays"
            self.say(said)
            return {"ok": False, "said": said, "wait": []}
        procs = [(what, p, path) for what, p, path in (("fh-replicate", self.proc, R.status_path(self.cfg.name)),
                                                       ("its guard", self.guard, guard_status_of(self.cfg)))
                 if p is not None and p.poll() is None]
        if not procs:
            said = f"SIGHUP: {key} checked; no fh-replicate runs now (the next one reads it at its start)"
            self.say(said)
            return {"ok": True, "said": said, "wait": []}
        wait = []
        for what, p, path in procs:
            try:
                st = R.read_status(path)
            except R.ReplicateError:
                continue
            if st["pid"] == p.pid:
                wait.append({"what": what, "pid": p.pid, "status": path, "rekeys": st["witness_rekeys"]})
        # said before it is sent: their lines come after this one, not inside it
        said = (f"SIGHUP: {key} checked: {' and '.join(f'{what} (pid {p.pid})' for what, p, _ in procs)} told to "
                "re-read it (each says so in a line of its own)")
        self.say(said)
        for _, p, _ in procs:
            p.send_signal(signal.SIGHUP)
        return {"ok": True, "said": said, "wait": wait}

    def record(self) -> dict:
        return {"role": self.role, "epoch": self.epoch, "pid": self.proc.pid if self.proc else None,
                "guard_pid": self.guard.pid if self.guard else None, "starts": self.starts,
                "restarts": self.restarts, "fenced": self.fenced, "demotions": self.demotions, "why": self.why,
                "state_file": str(state_path(self.cfg.name, self.run_dir))}

    def poll(self, dataplane_pid: int) -> bool:
        """Start a primary's fh-replicate once the data plane's journal is there, restart a dead one (after its
        back-off), switch to primary after a promotion, demote a primary that a peer primary beats. True when the
        record changed (the caller writes it to the pidfile)."""
        if self.demoting:
            return False
        if self.role == "primary" and self.cfg.replication.listen is not None and self._poll_guard():
            return True
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
            how = "" if self.cfg.replication.listen is not None else \
                " (no listen address here: its standby fh-replicate connects to the peer, whose guard ships to it)"
            by = self._fenced_by(p.pid)
            at = f"at epoch {by}, newer than this host's {self.epoch}" if by > self.epoch else \
                f"at epoch {by}, a tie it wins" if by else "at a newer epoch, or wins the tie"
            return self._demote(f"fh-replicate (pid {p.pid}) was fenced: the peer at {self.peer} is {at} (its line "
                                f"is above){how}", by or None)
        self.say(f"fh-replicate (pid {p.pid}) exited with status {rc} while the data plane runs; starting it again in "
                 f"{self.backoff:g} s (restart {self.restarts + 1})")
        self.next_start = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
        return True

    def _poll_guard(self) -> bool:
        """A primary's guard: yielded (a primary that beats this host ships to it): demote; gone: started again."""
        if self.guard is None:
            if self.guard_next is None:
                self.guard_next = time.monotonic() + self.guard_backoff
            elif time.monotonic() >= self.guard_next:
                self._start_guard()
                return True
            return False
        s = self._guard_yielded()
        if s is not None:
            how = ("the newer epoch goes on" if s["epoch"] > self.epoch else
                   "a tie, which goes to the lower listen address, the peer's")
            return self._demote(f"the peer at {self.peer} ships to this host as primary at epoch {s['epoch']}, this "
                                f"host primary at epoch {self.epoch} ({how})", s["epoch"])
        rc = self.guard.poll()
        if rc is not None:  # (its message is above; a listen address in use: every few seconds, said each time)
            self.say(f"the guard fh-replicate (pid {self.guard.pid}) on {self.cfg.replication.listen[0]}:"
                     f"{self.cfg.replication.listen[1]} exited with status {rc}; starting it again in "
                     f"{self.guard_backoff:g} s")
            self.guard = None
            self.guard_next = time.monotonic() + self.guard_backoff
            self.guard_backoff = min(self.guard_backoff * 2, BACKOFF_MAX_S)
        elif time.monotonic() - self.guard_started > BACKOFF_RESET_S:
            self.guard_backoff = BACKOFF_MIN_S
        return False

    def _fenced_by(self, pid: int) -> int:
        """The epoch that fenced fh-replicate `pid` (its status's fenced_by: the peer primary's, or the refusing
        standby's), 0 if its status does not say."""
        try:
            s = R.read_status(self.cfg.name)
        except R.ReplicateError:
            return 0
        return int(s["fenced_by"]) if s["pid"] == pid else 0

    def _demote(self, why: str, epoch: int | None = None) -> bool:
        """A primary beaten by its peer: its fh-replicate and guard stopped; fh run stops the data plane and starts it
        again as standby (demoted_cmd). Why a restart rather than in place: the demoted engine's books and event
        sequence were built from this host's own lines; a standby's must equal its primary's (a consumer that fails
        over resumes by event sequence), which only a standby built from the new primary's journal (or its
        snapshot, then the journal) has."""
        terminate(self.proc)
        self.proc = None
        self.next_start = None
        if self.guard is not None and self.guard.poll() is None:
            self._unguard()  # the standby's fh-replicate from now on (the new primary may ship to it already)
        else:
            self._stop_guard()
        old = self.epoch
        self.role, self.epoch = "standby", max(self.epoch, epoch or self.epoch)
        self.demotions += 1
        self.say(f"{why}: demoted to standby: stopping the data plane and starting it again as standby on "
                 f"{standby_journal_of(self.cfg)}, its books rebuilt from the new primary (not in place: a standby's "
                 f"books and event sequence must be the primary's); state in {state_path(self.cfg.name, self.run_dir)}")
        self._persist(f"demoted from primary at epoch {old}: {why}")
        self.demoting = True
        return True

    def demoted_cmd(self, dataplane_cmd: list[str]) -> list[str]:
        """The data plane's command as standby (after _demote: the old one has stopped), the standby fh-replicate
        started on a fresh journal."""
        cmd = list(dataplane_cmd)
        if "--restore" in cmd:  # this host's own recorded state: the new primary's replaces it
            i = cmd.index("--restore")
            del cmd[i:i + 2]
        cmd += ["--standby", standby_journal_of(self.cfg)]
        self.backoff = BACKOFF_MIN_S
        self.demoting = False
        if self.proc is None:  # no guard went on as the standby's fh-replicate
            self._fresh_standby_journal()
            self.starts = self.restarts = 0
            self.start()
        return cmd

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
            if self.cfg.replication.listen is not None:  # a primary's guard, in its place on the listen address
                self._start_guard()
            if self.cfg.replication.peer is None:
                self.say(f"promoted to primary at epoch {self.epoch}; replication.peer is not set: nothing to ship to")
                self.cmd = None
                return True
            self.cmd = primary_cmd(self.cfg, self.journal, self.epoch)
            self.starts = self.restarts = 0
            self.backoff = BACKOFF_MIN_S
            self.start()
            self.say(f"promoted to primary at epoch {self.epoch}: shipping {self.journal} to {self.peer} (the old "
                     f"primary joins as standby when it returns)")
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
        terminate(self.proc, timeout)

    def stop(self) -> None:
        """After the data plane: a primary's fh-replicate first ships what the journal holds and has it
        acknowledged (up to 5 s), then it stops (SIGTERM), or is killed after 10 s; the guard stops. A standby's
        fh-replicate that promoted once this instance was stopping (its primary stopped first: both hosts stopped
        at once) is not taken: the data plane was stopping, and the role and epoch stay as they were."""
        self.next_start = None
        if self.role == "standby" and self.proc is not None:
            try:
                s = R.read_status(self.cfg.name)
            except R.ReplicateError:
                s = None
            if s and s["pid"] == self.proc.pid and s["state"] == "promoted":
                self.say(f"the standby's fh-replicate promoted (epoch {s['epoch']}) while this instance was stopping: "
                         f"not taken; this host stays standby at epoch {self.epoch}")
        stop(self.proc, self.cfg.name)
        self._stop_guard()


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
