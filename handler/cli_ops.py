"""The operations commands of `fh`: status, stop, metrics (docs/operations.md). `fh run` and `fh stats` are
in handler/cli.py."""

from __future__ import annotations

import json
import time
import sys

# fh status exit statuses, as scripts and monitoring read them
STATUS_RUNNING, STATUS_STOPPED, STATUS_DEAD = 0, 1, 3
DEFAULT_LISTEN_TEXT = "127.0.0.1:9377"  # handler.metrics.DEFAULT_LISTEN (not imported to keep `fh` start-up fast)


class OpsCliError(ValueError):
    """A user-facing error of these commands, printed by cli.main as `fh: ...` with exit status 2. A
    ValueError, not cli.CliError: under `python -m handler.cli` that module is __main__, and a CliError
    imported from handler.cli would be another class."""


def _cli_error(msg: str):
    return OpsCliError(msg)


def _instance(name: str) -> str:
    if not name or len(name) > 31 or not all(c.isalnum() or c in "-_" for c in name):
        raise _cli_error(f"--name {name!r}: an instance name is 1-31 letters, digits, '-' or '_' "
                         f"(instance.name of its config)")
    return name


def cmd_stop(a) -> int:
    from . import supervise

    if a.timeout < 0:
        raise _cli_error(f"--timeout {a.timeout:g}: must be 0 or more seconds")
    rc, msg = supervise.stop(_instance(a.name), a.timeout)
    print(f"fh stop: {msg}", file=sys.stderr if rc else sys.stdout)
    return rc


def _status_text(s: dict) -> str:
    from .shm import age_text

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
    else:
        lines.append(f"segment   {s['segment']}: none")
    if s["events"]:
        lines.append(f"events    head {s['events']['head']}  capacity {s['events']['capacity']}")
    if s["books"]:
        b = s["books"]
        lines.append(f"books     {b['count']} ({b['live']} live, {b['stale']} stale)")
    if s["messages"] is not None:
        bad = {k: v for k, v in (s["anomalies"] or {}).items() if v}
        lines.append(f"messages  {s['messages']} applied; anomalies: "
                     + (", ".join(f"{k}={v}" for k, v in bad.items()) or "none"))
    f = s.get("feed")
    if f:
        lines.append(f"feed      {f['state']}, session {f['session'] or '-'}, next sequence {f['next_seq']}; gaps "
                     f"{f['gaps']} (filled by the other line {f['recovered_lines']}, by retransmission "
                     f"{f['recovered_retrans']} messages; {f['requests']} requests), unrecoverable "
                     f"{f['unrecoverable']} ({f['lost']} messages lost)"
                     + (f"; holding {f['held']}, {f['outstanding']} requests out" if f["held"] or f["outstanding"]
                        else ""))
    for l in s.get("line_state") or []:
        silent = "never heard" if l["silent_ms"] is None else f"silent {l['silent_ms'] / 1e3:.1f} s"
        lines.append(f"line      {l['name']}: {l['state']} ({silent}), won {l['won']}, duplicates "
                     f"{l['duplicates']}, late {l['late']}, lost {l['lost']}")
    if s["rates"]:
        r = s["rates"]
        lines.append(f"rates     {r['messages_per_s']:.0f} messages/s, {r['events_per_s']:.0f} events/s "
                     f"(over {r['over_s']:.1f} s)")
    d = s["drops"]
    if d:
        net = {k: v for k, v in (d.get("net") or {}).items() if v}
        lines.append(f"drops     at the last stop: NIC missed {d.get('nic_missed')}, errors {d.get('nic_errors')}; "
                     f"net: {', '.join(f'{k}={v}' for k, v in net.items()) or 'none'}; MoldUDP64 gaps "
                     f"{d.get('mold_gaps')}")
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
    ex = s["last_exit"]
    if ex:
        lines.append(f"last exit {ex['stopped_utc']}: {ex['reason']}")
    for n in s["notes"]:
        lines.append(f"note      {n}")
    return "\n".join(lines)


def cmd_status(a) -> int:
    from . import supervise

    s = supervise.status(_instance(a.name), a.sample)
    print(json.dumps(s) if a.json else _status_text(s))
    return {"running": STATUS_RUNNING, "stopped": STATUS_STOPPED}.get(s["state"], STATUS_DEAD)


def cmd_metrics(a) -> int:
    from . import metrics

    if a.config:  # the instance and the [metrics] defaults from fh.toml; options still win
        from . import config

        try:
            cfg = config.load(a.config)
        except config.ConfigError as e:
            raise _cli_error(str(e)) from None
        a.name = cfg.name if a.name is None else a.name
        a.listen = cfg.metrics.listen if a.listen is None else a.listen
        a.textfile = cfg.metrics.textfile if a.textfile is None else a.textfile
        a.interval = cfg.metrics.interval_s if a.interval is None else a.interval
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
            raise _cli_error(str(e)) from None
    if a.interval <= 0:
        raise _cli_error(f"--interval {a.interval:g}: must be more than 0 seconds")
    if a.textfile and not a.textfile.endswith(".prom"):
        print(f"fh metrics: warning: {a.textfile}: node-exporter's textfile collector reads *.prom files only",
              file=sys.stderr)
    try:
        return metrics.serve(name, listen, a.textfile, a.once, a.interval)
    except OSError as e:
        where = f"--listen {listen}" if listen else f"--textfile {a.textfile}"
        raise _cli_error(f"{where}: {e.strerror or e}") from None


def register(sub, positive, nonneg) -> None:
    name_help = "instance name (instance.name of its config; default fh)"

    st = sub.add_parser("status", help="is an instance running: state, uptime, lines, books, rates, last exit")
    st.add_argument("--name", default="fh", help=name_help)
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.add_argument("--sample", type=float, default=0.5, metavar="SECONDS",
                    help="measure rates over this long (0: no rates)")
    st.set_defaults(func=cmd_status)

    sp = sub.add_parser("stop", help="stop a running instance (SIGTERM to fh run, SIGKILL after --timeout)")
    sp.add_argument("--name", default="fh", help=name_help)
    sp.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                    help="wait this long for a clean stop before SIGKILL (default 10)")
    sp.set_defaults(func=cmd_stop)

    m = sub.add_parser("metrics", help="serve an instance's counters and states to Prometheus, or write a "
                                       "node-exporter textfile")
    m.add_argument("--config", metavar="FH_TOML", help="take the instance name and the [metrics] defaults "
                                                       "(listen, textfile, interval_s) from this config")
    m.add_argument("--name", default=None, help=name_help + ", or a segment path")
    m.add_argument("--listen", default=None, metavar="HOST:PORT",
                   help=f"serve GET /metrics here (default {DEFAULT_LISTEN_TEXT} unless --textfile or --once)")
    m.add_argument("--textfile", metavar="PATH", help="write the metrics to this file (atomically), every "
                                                     "--interval seconds, or once with --once")
    m.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                   help="textfile rewrite period (default 15)")
    m.add_argument("--once", action="store_true", help="print the metrics (or write --textfile) once and exit")
    m.set_defaults(func=cmd_metrics)

