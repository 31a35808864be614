"""`fh run` with [replication]: fh-replicate next to the data plane (docs/replication.md, "fh run").

  role = "primary"   the data plane journals (/dev/shm/fh-NAME.journal; [journal] ring_mb, else 256 MiB) and
                     fh-replicate --role primary ships that journal to replication.peer.
  role = "standby"   fh-replicate --role standby accepts its primary on replication.listen and writes what it
                     ships into /dev/shm/fh-NAME.standby.journal (journal only: no --segment), promoting itself
                     when the primary's heartbeat has been absent for failover_timeout_ms; the data plane runs
                     with --standby on that journal: it builds the books from it into the instance's own segment
                     and holds its lines back until the promotion, then takes them.

The epoch: the one this instance's last fh-replicate ended with (its status file, /dev/shm/fh-NAME.repl), else 1:
a standby that was promoted to epoch 2 and is restarted as primary ships at epoch 2; a fenced old primary
restarted as primary is refused again (restart it as standby: it adopts its new primary's epoch)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from . import config
from . import replicate as R
from .process import with_parent


def journal_of(cfg: config.Config) -> str:
    return f"/dev/shm/fh-{cfg.name}.journal"


def standby_journal_of(cfg: config.Config) -> str:
    return f"/dev/shm/fh-{cfg.name}.standby.journal"


def _epoch(cfg: config.Config) -> int:
    try:
        return max(1, int(R.read_status(cfg.name)["epoch"]))
    except (R.ReplicateError, KeyError, ValueError):
        return 1


def plan(cfg: config.Config, dataplane_cmd: list[str]) -> list[str] | None:
    """The fh-replicate command for cfg's [replication] (None: off), and the data plane's arguments it needs,
    appended to dataplane_cmd."""
    r = cfg.replication
    if r.role == "off":
        return None
    prog = R.find_program()
    common = ["--provider", r.provider, "--name", cfg.name, "--epoch", str(_epoch(cfg))]
    if r.role == "primary":
        if "--journal" not in dataplane_cmd:
            dataplane_cmd += ["--journal", journal_of(cfg), "--journal-mb", "256"]
        journal = dataplane_cmd[dataplane_cmd.index("--journal") + 1]
        return [prog, "--role", "primary", "--peer", f"{r.peer[0]}:{r.peer[1]}", "--journal", journal,
                "--heartbeat-ms", str(r.heartbeat_ms), *common]
    sj = standby_journal_of(cfg)
    dataplane_cmd += ["--standby", sj]
    return [prog, "--role", "standby", "--listen", f"{r.listen[0]}:{r.listen[1]}", "--journal", sj,
            "--ring-mb", str(r.ring_mb), "--failover-timeout-ms", str(r.failover_timeout_ms), "--promote-on-silence",
            *common]


def start(cfg: config.Config, dataplane_cmd: list[str]) -> subprocess.Popen | None:
    """Start fh-replicate for cfg (None: replication off); its lines go to fh run's stderr."""
    cmd = plan(cfg, dataplane_cmd)
    if cmd is None:
        return None
    print(f"fh run: {cfg.name}: replication {cfg.replication.role}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            preexec_fn=with_parent(signal.SIGTERM))


def stop(p: subprocess.Popen | None, name: str) -> None:
    """After the data plane: a primary's fh-replicate first ships what the journal holds and has it acknowledged
    (up to 5 s), then fh-replicate stops (SIGTERM), or is killed after 10 s."""
    if p is None:
        return
    deadline = time.monotonic() + 5
    while p.poll() is None and time.monotonic() < deadline:
        try:
            st = R.read_status(name)
        except R.ReplicateError:
            break
        if st["role"] != "primary" or st["state"] != "streaming" or (
                st["journal_pos"] == st["journal_head"] and st["acked_messages"] == st["messages"]):
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
