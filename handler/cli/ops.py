"""The operations commands of `fh`: status, stop, metrics (docs/operations.md). `fh run` and `fh stats` are
in handler/cli/main.py."""

from __future__ import annotations

import grp
import math
import os
import pwd
import sys
import time

from ..errors import FhError
from ..ui import add_json_flag, examples, fmt_int, fmt_ns, fmt_rate, print_json, print_table
from .argtypes import _given

# fh status exit statuses, as scripts and monitoring read them
STATUS_RUNNING, STATUS_STOPPED, STATUS_DEAD, STATUS_NO_ACCESS = 0, 1, 3, 4
DEFAULT_LISTEN_TEXT = "127.0.0.1:9377"  # handler.metrics.DEFAULT_LISTEN (not imported to keep `fh` start-up fast)


class NoAccess(FhError):
    """This user cannot read an instance's pidfile or segment, so it cannot tell its state: said as such (exit
    status 4), never as "stopped", "not running" or "absent"."""

    exit_status = STATUS_NO_ACCESS


def _instance(name: str) -> str:
    from ..segments import instance_name

    return instance_name(name)


def _who(uid: int, gid: int) -> tuple[str, str]:
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = f"gid {gid}"
    return user, group


def access_problem(path: str | os.PathLike) -> str | None:
    """Why this user cannot read `path`, as one line with the fix ("cannot read P: permission denied (owner X,
    mode 0640); run as X or join group Y"), or None when it can, or when nothing is there. A directory on the
    way that this user may not enter is named instead of the file."""
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except PermissionError:  # a directory on the way cannot be searched: name the first one
        d = os.path.dirname(path)
        chain = []
        while True:
            chain.append(d)
            if d == os.path.dirname(d):
                break
            d = os.path.dirname(d)
        for d in reversed(chain):
            if not os.access(d, os.X_OK):
                return _denied(path, d, os.stat(d), 0o010, "enter")
        return f"cannot read {path}: permission denied"
    if os.access(path, os.R_OK):
        return None
    return _denied(path, path, st, 0o040, "read")


def _denied(path: str, where: str, st: os.stat_result, group_bit: int, verb: str) -> str:
    user, group = _who(st.st_uid, st.st_gid)
    fix = f"run as {user}" + (f" or join group {group} (usermod -aG {group} $USER, then log in again)"
                              if st.st_mode & group_bit else "" if user == "root" else " (or root)")
    inside = "" if where == path else f" (inside {where}, which this user may not {verb})"
    return (f"cannot read {path}{inside}: permission denied (owner {user}, group {group}, mode "
            f"{st.st_mode & 0o7777:04o}); {fix}")


def check_access(name: str) -> None:
    """Raise NoAccess when this user cannot read the files that tell instance (or segment path) `name`'s state:
    its pidfiles and its segment."""
    from .. import shm

    paths = []
    if "/" not in name:
        from ..supervise import pidfile_paths

        paths += pidfile_paths(name)
    paths.append(shm.segment_path(name))
    for p in paths:
        problem = access_problem(p)
        if problem:
            raise NoAccess(problem)
    if "/" not in name:  # the segment fh run said it uses, when not the default one
        from ..supervise import lookup

        _, rec, _ = lookup(name)
        seg = (rec or {}).get("segment")
        problem = access_problem(seg) if seg else None
        if problem:
            raise NoAccess(problem)


def _signal_cmd(a, what: str, zero_ok: bool) -> int:
    """fh stop and fh reload: the instance's fh run signalled (handler/supervise.py's function of that name), one
    line on stdout, or on stderr with exit status 1 when it failed."""
    from .. import supervise

    if not math.isfinite(a.timeout) or a.timeout < 0 or (a.timeout == 0 and not zero_ok):
        raise FhError(f"--timeout {a.timeout:g}: must be {'0 or more' if zero_ok else 'more than 0'} seconds")
    name = _instance(a.name)
    check_access(name)
    rc, msg = getattr(supervise, what)(name, a.timeout)
    print(f"fh {what}: {msg}", file=sys.stderr if rc else sys.stdout)
    return rc


def cmd_stop(a) -> int:
    return _signal_cmd(a, "stop", True)


def cmd_reload(a) -> int:
    if a.witness is None:
        return _signal_cmd(a, "reload", False)
    from .. import witness

    if not (math.isfinite(a.timeout) and a.timeout > 0):
        raise FhError(f"--timeout {a.timeout:g}: must be more than 0 seconds")
    rc, msg = witness.reload(a.witness, a.timeout)
    print(f"fh reload: {msg}", file=sys.stderr if rc else sys.stdout)
    return rc


def _named_lines(s: dict) -> None:
    """Name the data plane's lines as the configuration does (A/B where it says nothing: handler.metrics), the
    same names fh stats and fh metrics use."""
    from ..metrics import line_names

    ls = s.get("line_state")
    if ls:
        configured = [l["name"] for l in (s.get("lines") or []) if isinstance(l, dict) and l.get("name")]
        for l, n in zip(ls, line_names(ls, configured or None)):
            l["name"] = n


def _status_text(s: dict, out=None) -> None:
    from ..shm import age_text

    out = out if out is not None else sys.stdout
    lines = []
    who = []
    if s["pid"]:
        who.append(f"pid {s['pid']}")
    if s["dataplane_pid"] and s["dataplane_pid"] != s["pid"]:
        who.append(f"data plane pid {s['dataplane_pid']}")
    up = f", up {age_text(s['uptime_s'])} since {s['started_utc']}" if s["uptime_s"] is not None and \
        s["state"] == "running" else ""
    lines.append(f"instance  {s['name']}: {s['state']}{' (' + ', '.join(who) + ')' if who else ''}{up}")
    if s["config"]:
        lines.append(f"config    {s['config']}")
    if s["lines"]:
        lines.append("lines     " + ", ".join(f"{l['name']} {l['group']}:{l['port']}" for l in s["lines"]))
    w = s["writer"]
    if w:
        lines.append(f"segment   {s['segment']}: writer pid {w['pid']} {w['state']}, last heartbeat "
                     f"{age_text(w['heartbeat_age_s'])} ago")
        sb = w.get("standby")
        if sb:  # a standby's data plane: how current its books (its primary's) are against its own lines
            lines.append("standby   " + {
                "current": "the books are current: the journal covers what this host's lines delivered",
                "behind": f"catching up: the books are the primary's as of {fmt_int(w['behind_msgs'])} messages ago "
                          "(what this host's lines delivered and the journal has not given yet)",
                "no-lines": "this host's lines have delivered nothing yet: whether the books are current is not "
                            "known"}.get(sb, sb))
    else:
        lines.append(f"segment   {s['segment']}: none")
    if s["events"]:
        lines.append(f"events    head {fmt_int(s['events']['head'])}  capacity {fmt_int(s['events']['capacity'])}")
    if s["books"]:
        b = s["books"]
        lines.append(f"books     {fmt_int(b['count'])} ({fmt_int(b['live'])} live, {fmt_int(b['stale'])} stale)")
    if s["messages"] is not None:
        bad = {k: v for k, v in (s["anomalies"] or {}).items() if v}
        lines.append(f"messages  {fmt_int(s['messages'])} applied; anomalies: "
                     + (", ".join(f"{k}={fmt_int(v)}" for k, v in bad.items()) or "none"))
    f = s.get("feed")
    if f:
        lines.append(f"feed      {f['state']}, session {f['session'] or '-'}, next sequence {fmt_int(f['next_seq'])}; "
                     f"gaps {fmt_int(f['gaps'])} (filled by the other line {fmt_int(f['recovered_lines'])}, by "
                     f"retransmission {fmt_int(f['recovered_retrans'])} messages; {fmt_int(f['requests'])} requests), "
                     f"unrecoverable {fmt_int(f['unrecoverable'])} ({fmt_int(f['lost'])} messages lost)"
                     + (f"; holding {fmt_int(f['held'])}, {fmt_int(f['outstanding'])} requests out"
                        if f["held"] or f["outstanding"] else ""))
        j = f.get("joined_at", 0)
        if j > 1:  # the session began before this instance did
            lines.append(f"join      joined late at {j}; 1..{j - 1} "
                         + ("missing" if f.get("join_lost") else "being recovered" if f["state"] == "recovering"
                            else "recovered"))
        ignored = {k: f.get(k, 0) for k in ("malformed", "bogus_session", "suspect") if f.get(k)}
        if ignored:
            lines.append("ignored   " + ", ".join(f"{k} {fmt_int(v)} datagrams" for k, v in ignored.items()))
    if s["rates"]:
        r = s["rates"]
        lines.append(f"rates     {fmt_rate(r['messages_per_s'], 'msg')}, {fmt_rate(r['events_per_s'], 'event')} "
                     f"(over {r['over_s']:.1f} s)")
    d = s["drops"]
    if d:
        net = {k: v for k, v in (d.get("net") or {}).items() if v}
        lines.append(f"drops     at the last stop: NIC missed {fmt_int(d.get('nic_missed'))}, errors "
                     f"{fmt_int(d.get('nic_errors'))}; net: {', '.join(f'{k}={fmt_int(v)}' for k, v in net.items()) or 'none'}; "
                     f"MoldUDP64 gaps {fmt_int(d.get('mold_gaps'))}")
    j = s.get("journal")
    if j and "error" in j:
        lines.append(f"journal   {j['path']}: {j['error']}")
    elif j:
        lines.append(f"journal   {j['path']}: head {j['head']} bytes, {j['records']} records, ring {j['capacity'] >> 20} "
                     f"MiB, writer {'alive' if j['writer_alive'] else 'gone'}, heartbeat {age_text(j['heartbeat_age_s'])} ago")
        r = j.get("recorder")
        if r:
            snap = r.get("last_snapshot")
            lines.append(f"recorder  pid {r['pid']} {'running' if r['alive'] else 'gone'}: {r['dir']}, session "
                         f"{r['session']} next sequence {r['next_seq']}, {r['lag_bytes']} bytes behind, "
                         f"{r['holes']} holes; last snapshot "
                         + (f"{snap['path']} (to sequence {snap['next_seq'] - 1}, {snap['bytes']} bytes, "
                            f"{age_text(time.time() - snap['created_ns'] / 1e9)} old)" if snap else "none"))
    rp = s.get("replication")
    if rp:
        live, sup = rp.get("replicate"), rp.get("supervised")
        text = f"replication {rp['role'] or '?'} at epoch {rp['epoch'] or '?'}" + (f" ({rp['why']})" if rp.get("why")
                                                                                  else "")
        if live:
            text += (f"; fh-replicate pid {live['pid']} {live['role']} {live['state']} at epoch {live['epoch']}, "
                     f"{fmt_int(live['messages'])} messages")
            if live["refused_epoch"]:
                text += f", {fmt_int(live['refused_epoch'])} records of an older epoch refused"
        if sup:
            text += (f"; started {sup['starts']}x, restarted {sup['restarts']}x" + (", fenced" if sup["fenced"] else "")
                     + (f", demoted {sup['demotions']}x" if sup.get("demotions") else ""))
        lines.append(text)
    rl = s.get("reload")
    if rl:  # fh run's SIGHUPs (fh reload, systemctl reload): how many, and how the last went
        lines.append(f"reload    {rl['n']}x since the start; the last {'taken' if rl['ok'] else 'refused'}: "
                     f"{rl['said'].removeprefix('SIGHUP: ')}")
    rs = s.get("restart")
    if rs:
        lines.append(f"restart   {rs['state']}: from {rs['snapshot'] or 'the journal'} + {rs['journal_messages']} "
                     f"journaled messages (to sequence {rs['next_seq'] - 1} of {rs['session']}), prepared in "
                     f"{rs['prepare_s']} s; data plane up at {rs['up_s'] if rs['up_s'] is not None else '-'} s; "
                     + (f"every book live at {rs['recovered_s']} s" if rs["recovered_s"] is not None else
                        "books stale until the lines deliver what came since" if rs["state"] == "restoring" else
                        "a gap was given up: the books stay stale"))
    ex = s["last_exit"]
    if ex:
        lines.append(f"last exit {ex['stopped_utc']}: {ex['reason']}")
    for n in s["notes"]:
        lines.append(f"note      {n}")
    out.write("\n".join(lines) + "\n")
    if s.get("line_state"):
        out.write("\n")
        print_table(["line", "state", "silent", "datagrams", "won", "duplicates", "late", "lost"],
                    [[l["name"], l["state"], "never heard" if l["silent_ms"] is None else fmt_ns(l["silent_ms"] * 1e6),
                      fmt_int(l.get("datagrams")), fmt_int(l["won"]), fmt_int(l["duplicates"]), fmt_int(l["late"]),
                      fmt_int(l["lost"])] for l in s["line_state"]],
                    right=[False, False, True, True, True, True, True, True], out=out)


def _exit_of(s: dict) -> int:
    return {"running": STATUS_RUNNING, "stopped": STATUS_STOPPED}.get(s["state"], STATUS_DEAD)


def _status_all(a) -> int:
    """fh status --all: every instance this host has a segment or a pidfile of, one row each."""
    from .. import supervise
    from ..segments import instances

    from ..shm import age_text

    rows, docs, worst = [], [], STATUS_RUNNING
    for d in supervise.run_dirs():  # a run directory this user cannot list hides the instances only it knows
        if os.path.isdir(d) and not os.access(d, os.R_OK | os.X_OK):
            st = os.stat(d)
            user, group = _who(st.st_uid, st.st_gid)
            print(f"fh status: warning: cannot list {d} (owner {user}, group {group}, mode {st.st_mode & 0o7777:04o}):"
                  f" an instance known only by its pidfile there is not shown; run as {user} to see it",
                  file=sys.stderr)
            worst = STATUS_NO_ACCESS
    for name in instances([str(d) for d in supervise.run_dirs()]):
        try:
            check_access(name)
            s = supervise.status(name, a.sample)
            _named_lines(s)
            code = _exit_of(s)
        except (NoAccess, supervise.StateFileError) as e:  # cannot tell: this user may not read its files, or
            s = {"name": name, "state": "unreadable", "error": str(e)}  # one is not what fh run writes
            code = STATUS_NO_ACCESS
        worst = max(worst, code)
        docs.append(s)
        if s["state"] == "unreadable":
            rows.append([name, "unreadable", "", "", "", "", "", s["error"]])
            continue
        r = s.get("rates") or {}
        b = s.get("books") or {}
        rows.append([name, s["state"], s["pid"] or "", age_text(s["uptime_s"]) if s["uptime_s"] is not None
                     and s["state"] == "running" else "", fmt_int(s["messages"]),
                     f"{fmt_int(b.get('count'))} ({fmt_int(b.get('stale'))} stale)" if b else "",
                     fmt_rate(r.get("messages_per_s"), "msg") if r else "", s["segment"]])
    if a.json:
        print_json({"instances": docs})
    elif not rows:
        print("no fh instance on this host (no segment fh-* in /dev/shm or a hugetlbfs mount, no pidfile in "
              + ", ".join(map(str, supervise.run_dirs())) + ")")
    else:
        print_table(["NAME", "STATE", "PID", "UP", "MESSAGES", "BOOKS", "RATE", "SEGMENT"], rows,
                    right=[False, False, True, True, True, True, True, False])
    return worst


def cmd_status(a) -> int:
    from .. import supervise

    if not (math.isfinite(a.sample) and a.sample >= 0):
        raise FhError(f"--sample {a.sample:g}: must be 0 or more seconds")
    if a.all:
        return _status_all(a)
    name = _instance(a.name)
    check_access(name)
    s = supervise.status(name, a.sample)
    _named_lines(s)
    if a.json:
        print_json(s)
    else:
        _status_text(s)
    return _exit_of(s)


def cmd_metrics(a) -> int:
    from .. import metrics

    names = None
    textfile_from = "--textfile"
    if a.config:  # the instance, its line names and the [metrics] defaults from fh.toml; options still win
        from .. import config

        try:
            cfg = config.load(a.config)
            if a.textfile is None:
                config.check_textfile_dir(cfg)
        except config.ConfigError as e:
            raise FhError(str(e)) from None
        a.name = cfg.name if a.name is None else a.name
        a.listen = cfg.metrics.listen if a.listen is None else a.listen
        if a.textfile is None and cfg.metrics.textfile is not None:
            textfile_from = f"metrics.textfile of {a.config}"
        a.textfile = cfg.metrics.textfile if a.textfile is None else a.textfile
        a.interval = cfg.metrics.interval_s if a.interval is None else a.interval
        names = [l.name for l in cfg.lines]
    a.name = "fh" if a.name is None else a.name
    a.interval = 15.0 if a.interval is None else a.interval
    name = a.name if "/" in a.name else _instance(a.name)
    listen = a.listen
    if listen is None and not a.textfile and not a.once:
        listen = metrics.DEFAULT_LISTEN
    if listen is not None:
        try:
            metrics.parse_listen(listen)
        except ValueError as e:
            raise FhError(str(e)) from None
    if not (math.isfinite(a.interval) and a.interval > 0):
        raise FhError(f"--interval {a.interval:g}: must be more than 0 seconds")
    if a.textfile:  # before "writing X every 15 s" is announced: a directory, or none to write in, said at once
        _check_textfile(a.textfile, textfile_from)
    if a.textfile and not a.textfile.endswith(".prom"):
        print(f"fh metrics: warning: {a.textfile}: node-exporter's textfile collector reads *.prom files only",
              file=sys.stderr)
    check_access(name)  # a segment this user cannot read is not "absent"
    try:
        return metrics.serve(name, listen, a.textfile, a.once, a.interval, names)
    except OSError as e:
        where = f"--listen {listen}" if listen else f"--textfile {a.textfile}"
        raise FhError(f"{where}: {e.strerror or e}") from None


def _check_textfile(path: str, option: str) -> None:
    """The textfile fh metrics writes (a temporary file in its directory, renamed over it): not a directory, in a
    directory that exists and this user may write to. (It said "writing d every 15 s", then "Is a directory".)"""
    example = "fh.prom"
    if os.path.isdir(path) or path.endswith("/"):
        raise FhError(f"{option} {path}: a directory, not a file; give the file to write in it, e.g. "
                      f"{os.path.join(path, example)}")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise FhError(f"{option} {path}: there is no directory {d}; create it first (mkdir -p {d}) or name a file in "
                      f"an existing one (node-exporter's --collector.textfile.directory)")
    if not os.access(d, os.W_OK | os.X_OK):
        raise FhError(f"{option} {path}: this user may not write in {d}; name a file in a directory you may write "
                      f"to, or run as a user who may write there")


def register(sub, positive, nonneg) -> None:
    name_help = "instance name (instance.name of its config)"

    st = sub.add_parser("status", help="is an instance running: state, uptime, lines, books, rates, last exit",
                        description="An instance's state from its pidfile and segment: running (exit 0), stopped "
                                    "(1), dead (3), or cannot tell because this user may not read them (4, with "
                                    "the fix). --all: every instance on this host, one row each (exit: the worst).",
                        epilog=examples("fh status --name fh", "fh status --all",
                                         "fh status --name demo --json --sample 0"))
    st.add_argument("--name", default="fh", help=name_help)
    st.add_argument("--all", action="store_true", help="every instance on this host (segments fh-* in /dev/shm and "
                                                       "hugetlbfs mounts, pidfiles in the run directories)")
    add_json_flag(st, "fh status")
    st.add_argument("--sample", type=float, default=0.5, metavar="SECONDS",
                    help="measure rates over this long (0: no rates)")
    st.set_defaults(func=cmd_status)

    sp = sub.add_parser("stop", help="stop a running instance (SIGTERM to fh run, SIGKILL after --timeout)",
                        epilog=examples("fh stop --name demo", "fh stop --name demo --timeout 30"))
    sp.add_argument("--name", default="fh", help=name_help)
    sp.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                    help="wait this long for a clean stop before SIGKILL (default 10)")
    sp.set_defaults(func=cmd_stop)

    rl = sub.add_parser("reload", help="have a running instance re-read the witnesses' key file (SIGHUP to fh run), "
                                       "and wait until it has",
                        description="SIGHUP to the instance's fh run (the unit's ExecReload: systemctl reload "
                                    "fh@NAME), which checks [replication] witness_key_file and has its fh-replicate "
                                    "processes read it again; waits until each has. Exit 0 once done, 1 if the file "
                                    "was refused (the key in use stays), the instance does not run, or --timeout "
                                    "passed first. Nothing else is re-read: a changed fh.toml needs a restart. "
                                    "With --witness: the same for an fh witness (fh-witness.service's ExecReload), "
                                    "which reads its --key-file files again.",
                        epilog=examples("fh reload --name nasdaq", "systemctl reload fh@nasdaq",
                                        "fh reload --witness /run/fh-witness/status.json"))
    rl.add_argument("--name", default="fh", help=name_help)
    rl.add_argument("--witness", metavar="STATUS",
                    help="reload the fh witness that writes this status file (its --status) instead of an instance")
    rl.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                    help="wait this long for fh run and its fh-replicate processes (default 30)")
    rl.set_defaults(func=cmd_reload)

    m = sub.add_parser("metrics", help="serve an instance's counters and states to Prometheus, or write a "
                                       "node-exporter textfile",
                       epilog=examples("fh metrics --config examples/fh.toml",
                                        "fh metrics --name demo --listen 0.0.0.0:9377",
                                        "fh metrics --name demo --textfile /var/lib/node_exporter/fh.prom",
                                        "fh metrics --name demo --once"))
    m.add_argument("--config", metavar="FH_TOML", type=_given("an fh.toml"),
                   help="take the instance name and the [metrics] defaults "
                        "(listen, textfile, interval_s) from this config")
    m.add_argument("--name", default=None, help=name_help + ", or a segment path (default: fh)")
    m.add_argument("--listen", default=None, metavar="HOST:PORT",
                   help=f"serve GET /metrics here (default {DEFAULT_LISTEN_TEXT} unless --textfile or --once)")
    m.add_argument("--textfile", metavar="PATH", type=_given("the file to write the metrics to"),
                   help="write the metrics to this file (atomically), every --interval seconds, or once with --once")
    m.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                   help="textfile rewrite period (default 15)")
    m.add_argument("--once", action="store_true", help="print the metrics (or write --textfile) once and exit")
    m.set_defaults(func=cmd_metrics)
