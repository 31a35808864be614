"""`fh run --config fh.toml`: start the data plane in the foreground from a validated configuration, keep the
instance's pidfile (one `fh run` per instance name: handler/supervise.py), forward SIGINT/SIGTERM to the
data plane, and report why and how it stopped, on stderr and in RUN_DIR/NAME.exit.json (read by
`fh status`). SIGHUP (systemctl reload) has the fh-replicate processes re-read the witnesses' key file
([replication] witness_key_file), checked here first; it never reaches the data plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from . import config, process, replication_run, sdnotify, supervise

CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}
FORWARDED = (signal.SIGINT, signal.SIGTERM)
RELOAD_POLL_S = 0.25  # how soon an idle supervision loop takes up a SIGHUP (a wait is not cut short by one)


def eal_args(cfg: config.Config) -> list[str]:
    """A NIC (nic.pci, or a PCI address in feed.lines[].nic) runs where `fh plan` places it: lcores on the first
    NIC's node, hugepage memory there (a second NIC on another node is a warning). The plan's warnings are
    printed; its failures refuse the start, with their fixes. Virtual devices only (labs, replays) keep the
    simple arguments of config.eal_args."""
    if not any(d.pci for d in config.devices(cfg)):
        if cfg.hugepages:
            _check_hugepages(cfg)
        return config.eal_args(cfg)
    from .host import plan
    from .host.topology import read_host

    host = read_host("/")
    p = plan.plan(host, cfg)
    fails = [f for f in p.findings if f.level == "FAIL"]
    if len(fails) == 1:  # the one line: the failure and its fix (the host's warnings wait for a run that starts)
        raise config.ConfigError(f"{cfg.path}: this host cannot run it as configured: {fails[0].item}: "
                                 f"{fails[0].message}; fix: {fails[0].fix}")
    for f in fails if p.refused and fails else p.findings:
        print(f"fh run: {f.level} {f.item}: {f.message}; fix: {f.fix}", file=sys.stderr)
    if p.refused:
        raise config.ConfigError(f"{cfg.path}: this host cannot run it as configured (fh plan --config {cfg.path} "
                                 "shows the failures and their fixes)")
    return [*p.eal_args, "--log-level", "lib.eal:error", "--no-telemetry"]


def _check_hugepages(cfg: config.Config) -> None:
    """memory.hugepages = true with virtual devices only (a NIC's run is placed by fh plan, which checks its node's
    pools): the host's free hugepages must hold memory.mb, else EAL fails its start with its own lines."""
    from .host.topology import read_host

    free_mb = sum(p.free * p.size_kb for p in read_host("/").hugepages) >> 10
    if free_mb < cfg.memory_mb:
        raise config.ConfigError(
            f"{cfg.path}: memory.hugepages = true and memory.mb = {cfg.memory_mb}, but this host has {free_mb} MB of "
            f"free hugepages: reserve them (echo {-(-cfg.memory_mb // 2)} > /proc/sys/vm/nr_hugepages for 2 MB pages; "
            "ansible/ reserves them at boot) or set memory.hugepages = false (ordinary pages, for labs)")


def run(cfg_path: str, keep_segment: bool = False, json_out: bool = False) -> int:
    sdnotify.take()  # the data plane and fh-replicate do not speak for the unit
    cfg = config.load(cfg_path)
    rekey: list[int] = []  # SIGHUPs to act on (_follow: _reload)
    old_hup = signal.signal(signal.SIGHUP, lambda signum, frame: rekey.append(signum))
    # a SIGHUP blocked by whatever started fh run (the mask is inherited) would leave systemctl reload pending forever
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    # Type=notify (deploy/fh@.service): started now, so systemd lets `systemctl reload` through from here on; a
    # SIGHUP before this line would have ended fh run (Type=exec let one through while Python was still starting)
    sdnotify.notify("READY=1", f"STATUS=starting {cfg.name}")
    try:
        return _run(cfg, keep_segment, json_out, rekey)
    finally:
        signal.signal(signal.SIGHUP, old_hup)


def _reload(cfg: config.Config, pf: supervise.Pidfile, repl) -> None:
    """A SIGHUP (systemctl reload: the unit's ExecReload is `fh reload`), taken up by the supervision loop (its
    default action would end fh run while the data plane runs on). With [replication] witness_key_file: the file
    checked, then SIGHUP to fh-replicate (Replication.rekey); else one line, nothing to re-read. The outcome goes into
    the pidfile's record as `reload` (n: the reloads taken so far), which `fh reload` waits for."""
    r = cfg.replication
    if repl is not None and r.witness_key_file:
        out = repl.rekey()
    else:
        why = "no [replication]" if repl is None else "[replication] has no witness_key_file"
        out = {"ok": True, "said": f"SIGHUP: {why}: nothing to re-read", "wait": []}
        print(f"fh run: {cfg.name}: {out['said']}", file=sys.stderr, flush=True)
    pf.update(reload={**out, "n": (pf.record.get("reload") or {}).get("n", 0) + 1})


def _run(cfg: config.Config, keep_segment: bool, json_out: bool, rekey: list[int]) -> int:
    for problem, fix in config.rx_pcap_problems(cfg):
        raise config.ConfigError(f"{problem}; {fix}")
    mac = config.resolve_retrans_mac(cfg)  # before anything starts: a missing neighbour refuses the run
    if cfg.retransmission and not cfg.retransmission.mac:
        print(f"fh run: {cfg.name}: feed.retransmission.mac = {mac} (the next hop to the request server, from "
              "the neighbour table)", file=sys.stderr, flush=True)
    from .privilege import drop_prefix

    # [run] user: as that user, with only the capabilities its devices need (docs/hardening.md)
    cmd = [*drop_prefix(cfg), process.find_dataplane(), *eal_args(cfg), "--", *config.app_args(cfg, mac)]
    if keep_segment:
        cmd.append("--keep-segment")
    if cfg.journal_dir:
        _check_journal_dir(cfg)
    restart, t_start = None, time.time_ns()
    if cfg.journal_dir:  # a restart: today's recorded state (newest sound snapshot + the journal after it)
        import time as _time

        from .snapshot import restart_snapshot

        got = restart_snapshot(cfg.journal_dir, _time.strftime("%Y%m%d", _time.gmtime()))
        if got:
            path, info = got
            snap = info["snapshot"]
            print(f"fh run: {cfg.name}: restarting from {snap['path'] if snap else 'no snapshot'} and "
                  f"{info['journal_messages']} journaled messages: complete to sequence "
                  f"{info['restart']['next_seq'] - 1} of session {info['restart']['session'].strip()}",
                  file=sys.stderr, flush=True)
            cmd += ["--restore", str(path)]
            restart = {"snapshot": snap["path"] if snap else None, "journal_messages": info["journal_messages"],
                       "session": info["restart"]["session"].strip(), "next_seq": info["restart"]["next_seq"],
                       "prepare_s": round((time.time_ns() - t_start) / 1e9, 3), "started_ns": t_start}
    if cfg.snapshot and "--restore" not in cmd:  # nothing recorded of today: the exchange's snapshot service
        from .glimpse import restart_from_service

        cmd += restart_from_service(cfg)
    try:
        pf = supervise.Pidfile(cfg.name, {
            "config": os.path.abspath(cfg.path), "segment": cfg.segment,
            "lines": [{"name": l.name, "group": l.group, "port": l.port} for l in cfg.lines]})
    except supervise.AlreadyRunning as e:
        print(f"fh: {e}", file=sys.stderr)
        return 2
    with pf:
        if pf.previous:
            prev = pf.previous
            print(f"fh run: {cfg.name}: took over the stale pidfile {pf.path} of pid {prev.get('pid', '?')} "
                  f"(a run that did not stop cleanly)", file=sys.stderr, flush=True)
        print(f"fh run: {cfg.name}: {len(cfg.lines)} line(s) "
              f"({', '.join(f'{l.name} {l.group}:{l.port}' for l in cfg.lines)}) on "
              f"{' and '.join(d.name for d in config.devices(cfg))}; segment {cfg.segment}; pidfile {pf.path}",
              file=sys.stderr, flush=True)
        # [replication]: fh-replicate beside the data plane, its role decided (and persisted) before it starts
        repl = replication_run.start(cfg, cmd, pf.path.parent)
        if repl is not None:
            pf.update(replication=repl.record())
        try:
            return _supervise(cfg, cmd, pf, json_out, restart, repl, rekey)
        finally:
            if repl is not None:
                repl.stop()


def _supervise(cfg: config.Config, cmd: list[str], pf: supervise.Pidfile, json_out: bool,
               restart: dict | None = None, repl=None, rekey: list[int] | None = None) -> int:
    forwarded: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum, frame):
        forwarded.append(signum)
        if child is not None:
            child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        # The data plane inherits the pidfile's lock: the instance stays locked while it lives, even if this
        # process is killed.
        # Its stdout (the final statistics) goes to a file, not a pipe: a data plane whose fh run was killed
        # still writes them, and stops cleanly, instead of dying of SIGPIPE.
        out_path = supervise.stdout_path(pf.path)
        while True:
            with open(out_path, "w") as out:
                child = subprocess.Popen(cmd, stdout=out, pass_fds=(pf.fileno(),))
            if forwarded:  # a signal that came while it was being started
                child.send_signal(forwarded[-1])
            pf.update(dataplane_pid=child.pid, dataplane_boot_s=process.boot_s(), stdout=str(out_path),
                      restart=restart)
            try:
                _follow(cfg, child, pf, restart, repl, forwarded, rekey)
            except BaseException:
                _stop_child(cfg, child)  # fh run is failing: its data plane does not run on unsupervised
                raise
            if repl is None or not repl.demoting or forwarded:
                break
            # a primary beaten by its peer (handler/replication_run.py, Replication._demote): the data plane, stopped
            # cleanly, starts again as standby
            cmd, restart = repl.demoted_cmd(cmd), None
            pf.update(replication=repl.record())
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if child is not None and child.poll() is not None:
            process.remove_runtime_dir(cmd)  # EAL's empty runtime directory (/var/run/dpdk/fh-NAME)
    rc = child.returncode
    stats = supervise.final_stats(out_path) if rc == 0 else None
    reason, status = _why(cfg, rc, forwarded, stats)
    rec = pf.record
    now = time.time_ns()
    try:
        supervise.write_exit_record(pf.path, {
            "name": cfg.name, "pid": rec["pid"], "dataplane_pid": child.pid, "config": rec.get("config"),
            "segment": cfg.segment, "started_ns": rec["started_ns"], "stopped_ns": now,
            "uptime_s": round((now - rec["started_ns"]) / 1e9, 3), "rc": rc,
            "signal": signal.Signals(-rc).name if rc < 0 else None, "reason": reason, "stats": stats,
            "restart": pf.record.get("restart"), "recorder_pid": pf.record.get("recorder_pid")})
        out_path.unlink(missing_ok=True)
    except OSError as e:
        print(f"fh run: {cfg.name}: cannot write the exit record next to {pf.path}: {e}", file=sys.stderr)
    print(f"fh run: {cfg.name}: {reason}", file=sys.stderr)
    if stats is not None:
        stats["wall_s"] = round((now - rec["started_ns"]) / 1e9, 3)  # the whole run, set-up included
        if json_out:
            from .ui import print_json

            print_json(stats)
        else:
            for line in process.summary_lines(stats, [l.name for l in cfg.lines]):
                print(line)
    return status


def _follow(cfg: config.Config, child: subprocess.Popen, pf: supervise.Pidfile, restart: dict | None,
            repl=None, stopping: list[int] | None = None, rekey: list[int] | None = None) -> None:
    """Wait for the data plane; meanwhile run fh record ([journal] record = true), watch a restart's
    recovery (handler/followers.py) and supervise fh-replicate (handler/replication_run.py) until this instance is
    asked to stop (`stopping`: the signals forwarded; from then on a standby's promotion, which its peer's own stop
    can set off, is not taken: Replication.stop says so), and pass on a SIGHUP (`rekey`: the key file re-read by
    fh-replicate); after it, let the recorder finish."""
    from .followers import POLL_S, RecorderProc, RestartWatch
    from .ui import fmt_seconds

    rec = RecorderProc(cfg.name, cfg.journal_dir, cfg.journal_record) if cfg.journal_record else None
    watch = RestartWatch(cfg.segment, restart, restart["started_ns"]) if restart else None
    try:
        while child.poll() is None:
            if rec is not None and (pid := rec.poll(child.pid)):
                pf.update(recorder_pid=pid)
            while rekey:
                rekey.pop()
                _reload(cfg, pf, repl)
            if repl is not None and not stopping and repl.poll(child.pid):
                pf.update(replication=repl.record())
                if repl.demoting:  # stopped cleanly, every book marked stale (SIGUSR2), then started as standby
                    child.send_signal(signal.SIGUSR2)
                    child.wait()
                    break
            if watch is not None and watch.poll(child.pid):
                pf.update(restart=watch.state)
                st = watch.state
                if st["state"] == "recovered":
                    print(f"fh run: {cfg.name}: restart complete: every book live {fmt_seconds(st['recovered_s'])} "
                          f"after the start (snapshot + journal prepared in {fmt_seconds(st['prepare_s'])}, data "
                          f"plane up at {fmt_seconds(st['up_s'])})", file=sys.stderr, flush=True)
                elif st["state"] == "stale":
                    print(f"fh run: {cfg.name}: restart: a gap after the restored state was given up; the books "
                          "stay stale", file=sys.stderr, flush=True)
            try:
                busy = rec is not None or repl is not None or (watch and watch.state["state"] == "restoring")
                child.wait(POLL_S if busy else RELOAD_POLL_S)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if watch is not None:
            watch.close()
        if rec is not None:
            rec.finish()


def _check_journal_dir(cfg: config.Config) -> None:
    """[journal] dir, before anything starts: a directory, and with record = true one that fh record can write
    (made now if it is missing). Found only once the data plane ran, it stopped fh run with its data plane left
    running."""
    d = cfg.journal_dir
    where = f"{cfg.path}: journal.dir = {d!r}"
    if os.path.exists(d) and not os.path.isdir(d):
        raise config.ConfigError(f"{where}: not a directory; name the directory fh record writes the day into "
                                 "(and fh run restarts from)")
    if not cfg.journal_record:
        return
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise config.ConfigError(f"{where}: cannot be made: {e.strerror}; create it, or name one that can be")
    if not os.access(d, os.W_OK | os.X_OK):
        raise config.ConfigError(f"{where}: not writable by this user; fh record writes the day there")


def _stop_child(cfg: config.Config, child: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop the data plane (SIGTERM: it stops cleanly; SIGKILL after timeout_s) when fh run itself fails."""
    if child.poll() is not None:
        return
    print(f"fh run: {cfg.name}: stopping the data plane (pid {child.pid}): fh run is failing", file=sys.stderr,
          flush=True)
    process.terminate(child, timeout_s)


def _why(cfg: config.Config, rc: int, forwarded: list[int], stats: dict | None) -> tuple[str, int]:
    """Why the data plane stopped, in words, and the exit status of fh run."""
    asked = f" on {signal.Signals(forwarded[0]).name}" if forwarded else ""
    if rc == 0 and stats is not None:
        if forwarded:
            return f"the data plane stopped cleanly{asked}", 0
        if cfg.exit_idle_ms:
            return (f"the data plane stopped cleanly after {cfg.exit_idle_ms} ms without traffic "
                    f"(run.exit_idle_ms)"), 0
        return "the data plane stopped cleanly by itself", 0
    if rc == 0:
        return "the data plane stopped without final statistics", 1
    if rc < 0:
        sig = signal.Signals(-rc)
        if sig in forwarded:
            return f"the data plane was stopped by {sig.name} before it could stop cleanly (still starting?)", 0
        if sig == signal.SIGKILL:
            return ("the data plane was killed by SIGKILL, not sent by fh run (the OOM killer? kill -9? "
                    "see dmesg and journalctl -k)"), 1
        if sig in CRASH_SIGNALS:
            return (f"the data plane crashed ({sig.name}); a core dump, if enabled: coredumpctl list "
                    f"fh-dataplane"), 1
        return f"the data plane was killed by signal {sig.name}{_after(forwarded)}", 1
    return f"the data plane exited with status {rc} (its message is above){_after(forwarded)}", rc


def _after(forwarded: list[int]) -> str:
    if not forwarded:
        return ""
    return f" (fh run had forwarded {', '.join(sorted({signal.Signals(s).name for s in forwarded}))} to it)"
