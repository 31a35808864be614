"""Replication from Python: the fh-replicate program (native/replicate/), its status file and the RDMA devices
libfabric offers.

fh-replicate keeps a small status file, /dev/shm/fh-NAME.repl (fh_repl_status_t in native/replicate/replicate.c:
one aligned 8-byte word a field, plain stores, so a reader may see fields of two moments), which
`fh replicate status` reads; `fh replicate devices` lists what fi_getinfo offers (FI_EP_MSG with RMA)."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
from pathlib import Path

from .errors import FhError
from .filekind import not_regular
from .process import pid_alive


STATUS_MAGIC = 0x31304C5045524646  # "FFREPL01"
# magic version role pid state epoch | provider[32] peer[64] fabric[64] | 7 counters | 7 times, lag, positions | 2
# | connections (a standby: primaries accepted)
_HEAD = struct.Struct("<6Q32s64s64s7Q7Q3Q")
_FIELDS = ("magic", "version", "role", "pid", "state", "epoch", "provider", "peer", "fabric", "frames", "messages",
           "bytes", "acked_frames", "acked_messages", "refused_epoch", "overruns", "last_ack_ns", "last_heartbeat_ns",
           "lag_ns", "lag_messages", "updated_ns", "journal_pos", "journal_head", "max_outstanding", "ring_bytes",
           "connections")
# then the witnesses (older status files end before it): witness[192] (the addresses, comma-separated: w1, w2, ...)
# witness_says[256] | 8 | witness_count, witness_needed (a majority), witness_dead (said so in the last verdict).
# A status file of 568 bytes is of an fh-replicate of one witness at most: witness[64] witness_says[96] | 8.
_WITNESS = struct.Struct("<192s256s8Q3Q")
# then witness_bad_auth: answers ignored for a missing or wrong HMAC tag (--witness-key-file; older files end before it)
_WITNESS_AUTH = struct.Struct("<192s256s8Q4Q")
# then witness_rekeys: the key file's re-reads at SIGHUP that took (older files end before it: 0)
_WITNESS_REKEYS = struct.Struct("<192s256s8Q5Q")
# then fenced_by: a primary fenced (exit 4), the epoch that fenced it (older files end before it: 0)
_FENCED_BY = struct.Struct("<Q")
_FENCED_AT = _HEAD.size + _WITNESS_REKEYS.size
_WITNESS_ONE = struct.Struct("<64s96s8Q")
_WITNESS_FIELDS = ("witness", "witness_says", "witness_state", "witness_age_ms", "witness_epoch", "witness_answer_ns",
                   "witness_beats", "witness_send_errors", "witness_queries", "witness_answers", "witness_count",
                   "witness_needed", "witness_dead", "witness_bad_auth", "witness_rekeys")
WITNESS_STATES = ["none", "asked", "primary-alive", "primary-silent", "no-answer", "error"]
ROLES = {1: "primary", 2: "standby"}
STATES = ["starting", "connecting", "streaming", "behind", "done", "fenced", "failed", "peer-silent", "promoted",
          "guarding"]


class ReplicateError(FhError):
    pass


def find_program() -> str:
    """fh-replicate: $FH_REPLICATE, then PATH (an installed fh), then this checkout's build."""
    from .process import find_program as find

    found = find("fh-replicate", "FH_REPLICATE", "replicate")
    if found is None:
        raise ReplicateError("fh-replicate not found: it is built with libfabric (apt-get install libfabric-dev, "
                             "then bash scripts/setup.sh), or set FH_REPLICATE")
    return found


def status_path(name_or_path: str) -> str:
    return name_or_path if "/" in name_or_path else f"/dev/shm/fh-{name_or_path}.repl"


def read_status(name_or_path: str) -> dict:
    path = status_path(name_or_path)
    try:
        kind = not_regular(os.stat(path).st_mode)
        if kind:  # a FIFO blocked the read forever, /dev/zero filled the memory
            raise ReplicateError(f"{path}: {kind}, not an fh-replicate status file: give an instance name or the "
                                 "path of the file fh-replicate --status writes")
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        raise ReplicateError(f"no replication status at {path}: is fh-replicate running for this instance "
                             f"(--name, or --status PATH)?") from None
    if len(raw) < _HEAD.size:
        raise ReplicateError(f"{path}: {len(raw)} bytes, not an fh-replicate status file ({_HEAD.size})")
    d = dict(zip(_FIELDS, _HEAD.unpack_from(raw)))
    if d["magic"] != STATUS_MAGIC or d["version"] != 1:
        raise ReplicateError(f"{path}: not an fh-replicate status file of version 1")
    if len(raw) >= _HEAD.size + _WITNESS_REKEYS.size:
        d.update(zip(_WITNESS_FIELDS, _WITNESS_REKEYS.unpack_from(raw, _HEAD.size)))
    elif len(raw) >= _HEAD.size + _WITNESS_AUTH.size:
        d.update(zip(_WITNESS_FIELDS, _WITNESS_AUTH.unpack_from(raw, _HEAD.size)), witness_rekeys=0)
    elif len(raw) >= _HEAD.size + _WITNESS.size:
        d.update(zip(_WITNESS_FIELDS, _WITNESS.unpack_from(raw, _HEAD.size)), witness_bad_auth=0, witness_rekeys=0)
    elif len(raw) >= _HEAD.size + _WITNESS_ONE.size:
        d.update(zip(_WITNESS_FIELDS, _WITNESS_ONE.unpack_from(raw, _HEAD.size)))
        n = 1 if d["witness"].strip(b"\0") else 0
        d.update(witness_count=n, witness_needed=n, witness_dead=int(d["witness_state"] == 3), witness_bad_auth=0,
                 witness_rekeys=0)
    else:
        d.update(dict.fromkeys(_WITNESS_FIELDS, 0), witness=b"", witness_says=b"")
    d["fenced_by"] = _FENCED_BY.unpack_from(raw, _FENCED_AT)[0] if len(raw) >= _FENCED_AT + _FENCED_BY.size else 0
    for k in ("provider", "peer", "fabric", "witness", "witness_says"):
        d[k] = d[k].split(b"\0", 1)[0].decode(errors="replace")
    ws = d["witness_state"]
    d["witness_state"] = WITNESS_STATES[ws] if ws < len(WITNESS_STATES) else str(ws)
    d["path"] = path
    d["role"] = ROLES.get(d["role"], str(d["role"]))
    d["state"] = STATES[d["state"]] if d["state"] < len(STATES) else str(d["state"])
    d["alive"] = pid_alive(d["pid"])
    if not d["alive"] and d["state"] not in ("done", "fenced", "failed", "promoted"):
        d["state"] = "gone"
    now = time.time_ns()
    d["lag_us"] = d["lag_ns"] / 1000
    d["last_ack_age_ms"] = (now - d["last_ack_ns"]) / 1e6 if d["last_ack_ns"] else None
    d["last_heartbeat_age_ms"] = (now - d["last_heartbeat_ns"]) / 1e6 if d["last_heartbeat_ns"] else None
    d["witness_answer_age_ms"] = (now - d["witness_answer_ns"]) / 1e6 if d["witness_answer_ns"] else None
    del d["magic"]
    return d


def list_devices(provider: str = "auto") -> list[dict]:
    """The fabric endpoints libfabric offers (FI_EP_MSG with RMA) for provider; a verbs request with no device
    raises the program's one-line error (what to install)."""
    p = subprocess.run([find_program(), "--list-devices", "--provider", provider], capture_output=True, text=True)
    if p.returncode:
        raise ReplicateError(p.stderr.strip().removeprefix("fh-replicate: "))
    return json.loads(p.stdout)


def cmd_status(a) -> int:
    from .ui import fmt_int, fmt_ns, print_json, print_table

    try:
        d = read_status(a.name)
    except ReplicateError as e:
        raise FhError(str(e)) from None
    if a.json:
        print_json(d)
        return 0
    age = lambda v: "never" if v is None else f"{fmt_ns(v * 1e6)} ago"  # noqa: E731
    rows = [("role", d["role"]), ("state", f"{d['state']} (pid {d['pid']}{'' if d['alive'] else ', exited'})"),
            ("epoch", str(d["epoch"]) + (f" (fenced by epoch {d['fenced_by']})" if d["fenced_by"] else "")),
            ("peer", d["peer"] or "-"), ("provider", d["provider"] or "-"),
            ("fabric", d["fabric"] or "-"),
            ("shipped" if d["role"] == "primary" else "applied",
             f"{fmt_int(d['frames'])} records, {fmt_int(d['messages'])} messages"),
            ("lag", f"{fmt_int(d['lag_messages'])} messages, {fmt_ns(d['lag_ns'])} (last record)"),
            ("acked", f"{fmt_int(d['acked_messages'])} messages, last ack {age(d['last_ack_age_ms'])}"),
            ("heartbeat", age(d["last_heartbeat_age_ms"]))]
    if d["witness"]:
        rekeys = (f"; the key file re-read {fmt_int(d['witness_rekeys'])} times at SIGHUP"
                  if d["witness_rekeys"] else "")
        if d["role"] == "primary":
            rows.append(("witness", f"{d['witness']}: {fmt_int(d['witness_beats'])} beats sent, "
                                    f"{fmt_int(d['witness_send_errors'])} send errors" + rekeys))
        else:
            rows.append(("witness", f"{d['witness']}: {d['witness_says'] or 'not asked (the primary is heard)'}"
                                    + (f" (answered {age(d['witness_answer_age_ms'])})"
                                       if d["witness_answer_ns"] else "")
                                    + (f"; {fmt_int(d['witness_bad_auth'])} answers with a bad tag ignored"
                                       if d["witness_bad_auth"] else "") + rekeys))
    if d["role"] == "standby" and d["connections"] > 1:
        rows.append(("connections", f"{d['connections']} primaries accepted (a restarted or a new primary resumes)"))
    if d["refused_epoch"] or d["overruns"]:
        rows.append(("refused", f"{fmt_int(d['refused_epoch'])} records of an older epoch; "
                                f"{fmt_int(d['overruns'])} journal overruns"))
    print_table(["replication", d["path"]], rows, right=[False, False])
    return 0


def cmd_devices(a) -> int:
    from .ui import print_json, print_table

    try:
        devs = list_devices(a.provider)
    except ReplicateError as e:
        raise FhError(str(e)) from None
    if a.json:
        print_json(devs)
        return 0
    if not devs:
        print(f"no fabric endpoint for provider {a.provider}")
        return 1
    print_table(["provider", "domain", "fabric", "mr_mode", "cq data"],
                [(d["provider"], d["domain"], d["fabric"], f"{d['mr_mode']:#x}", f"{d['cq_data_size']} bytes")
                 for d in devs])
    return 0


def promote(name_or_path: str, timeout_s: float = 5.0) -> dict:
    """Promote a running standby: it takes a new epoch, so every later record of its old primary is refused
    (the primary stops, fenced), and it marks its journal promoted: the data plane following it with --standby
    takes the feed lines (docs/replication.md, "Failover"). Returns its status once the epoch has changed."""
    d = read_status(name_or_path)
    if d["role"] != "standby":
        raise ReplicateError(f"{d['path']}: a {d['role']}, not a standby: only a standby is promoted")
    if not d["alive"] or d["state"] in ("done", "failed"):
        raise ReplicateError(f"{d['path']}: its fh-replicate (pid {d['pid']}) has ended ({d['state']}): start the "
                             f"standby again")
    if d["state"] == "promoted":
        return d
    os.kill(d["pid"], signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = read_status(name_or_path)
        if n["epoch"] > d["epoch"]:
            return n
        if n["state"] in ("done", "failed"):
            raise ReplicateError(f"{d['path']}: the standby (pid {d['pid']}) ended ({n['state']}) before it was "
                                 f"promoted: start it again")
        time.sleep(0.01)
    raise ReplicateError(f"{d['path']}: the standby (pid {d['pid']}) did not take a new epoch within {timeout_s} s")


def cmd_promote(a) -> int:

    try:
        d = promote(a.name)
    except ReplicateError as e:
        raise FhError(str(e)) from None
    print(json.dumps(d) if a.json else f"promoted: {d['path']} (pid {d['pid']}) at epoch {d['epoch']}; records of an "
          f"older epoch are refused")
    return 0


def register(sub, positive=None, nonneg=None) -> None:
    from .ui import HelpFormatter, add_json_flag, examples

    name_help = "instance name (/dev/shm/fh-NAME.repl) or a status file path"
    p = sub.add_parser("promote", help="make a standby fence its primary with a new epoch (fh-replicate)",
                       formatter_class=HelpFormatter,
                       description="Signal a running standby fh-replicate to take a new epoch: every later record "
                                   "of its old primary is refused and the primary stops, fenced (docs/replication.md).",
                       epilog=examples("fh promote --name nasdaq", "fh promote --name /dev/shm/fh-nasdaq.repl --json"))
    p.add_argument("--name", default="fh", help=name_help)
    add_json_flag(p, "fh promote")
    p.set_defaults(func=cmd_promote)
    r = sub.add_parser("replicate", help="replication to a standby over libfabric: status, devices",
                       formatter_class=HelpFormatter,
                       epilog=examples("fh replicate status --name nasdaq", "fh replicate devices --provider verbs"))
    rs = r.add_subparsers(dest="what", required=True, metavar="WHAT")
    st = rs.add_parser("status", help="one fh-replicate's peer, provider, state, lag and last acknowledgement",
                       formatter_class=HelpFormatter,
                       epilog=examples("fh replicate status --name nasdaq",
                                       "fh replicate status --name nasdaq --json | jq .lag_ns"))
    st.add_argument("--name", default="fh", help=name_help)
    add_json_flag(st, "fh replicate status")
    st.set_defaults(func=cmd_status)
    dv = rs.add_parser("devices", help="the fabric endpoints libfabric offers (fi_getinfo), RDMA devices first",
                       formatter_class=HelpFormatter,
                       epilog=examples("fh replicate devices", "fh replicate devices --provider tcp --json"))
    dv.add_argument("--provider", choices=("auto", "verbs", "tcp"), default="auto",
                    help="auto: verbs where an RDMA device exists, else tcp")
    add_json_flag(dv, "fh replicate devices")
    dv.set_defaults(func=cmd_devices)
