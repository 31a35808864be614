"""The child process of `fh ports`: initialise DPDK's EAL with the arguments given, read every port, print
one JSON object, clean up and exit. Run by handler.ports, never imported by the CLI, so that EAL state (its
memory, its devices, its threads) lives and dies with this process:

    python -m handler.host.ports_child [--start-ms MS] -- EAL-ARGS...

stdout carries the JSON object only: EAL prints its usage and some messages on stdout, so this module moves
its own stdout to a private descriptor and sends everything written to fd 1 to stderr, which the parent keeps
for its diagnosis. The object is {"ok": true, "ports": [...]} or {"ok": false, "stage": "import" | "init",
"errno": N, "error": "..."}; the exit status is 0 whenever the object was written.
"""

from __future__ import annotations

import json
import os
import sys
import time

COUNTERS = ("ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors", "rx_nombuf")
MAX_PORTS = 1024
START_MBUFS = 4095


def _text(ffi, arr) -> str:
    return ffi.string(arr).decode("utf-8", "replace")


def _port(ffi, lib, pid: int, started: dict[int, int]) -> dict:
    p = ffi.new("fh_dpdk_port_t *")
    rc = lib.fh_dpdk_port_read(pid, p)
    if rc < 0:
        return {"id": pid, "error": _text(ffi, lib.fh_dpdk_strerror(rc))}
    errors = {part: _text(ffi, lib.fh_dpdk_strerror(code)) for part, code in
              (("name", p.rc_name), ("info", p.rc_info), ("mac", p.rc_mac), ("link", p.rc_link),
               ("stats", p.rc_stats)) if code}
    out = {
        "id": pid,
        "name": _text(ffi, p.name),
        "driver": _text(ffi, p.driver),
        "device": _text(ffi, p.device),
        "bus": _text(ffi, p.bus),
        "socket": p.socket if p.socket >= 0 else None,
        "mac": ":".join(f"{b:02x}" for b in bytes(ffi.buffer(p.mac))) if not p.rc_mac else None,
        "max_rx_queues": p.max_rx_queues,
        "max_tx_queues": p.max_tx_queues,
        "link": None if p.rc_link else {
            "up": bool(p.link_up),
            "speed_mbps": None if p.link_speed in (0, 0xFFFFFFFF) else p.link_speed,
            "duplex": "full" if p.link_full_duplex else "half",
            "autoneg": bool(p.link_autoneg),
        },
        "stats": None if p.rc_stats else {k: getattr(p, k) for k in COUNTERS},
    }
    if pid in started:
        out["started"] = started[pid]
    if errors:
        out["errors"] = errors
    return out


def run(eal: list[str], start_ms: int) -> dict:
    try:
        from handler import _dpdk
    except ImportError as e:
        return {"ok": False, "stage": "import", "errno": 0, "error": str(e)}
    ffi, lib = _dpdk.ffi, _dpdk.lib
    args = [ffi.new("char[]", a.encode()) for a in ["fh-ports", *eal]]
    argv = ffi.new("char *[]", args + [ffi.NULL])
    rc = lib.fh_dpdk_init(len(args), argv)
    if rc < 0:
        return {"ok": False, "stage": "init", "errno": -rc, "error": _text(ffi, lib.fh_dpdk_strerror(rc))}
    try:
        ids_buf = ffi.new("uint16_t[]", MAX_PORTS)
        n = min(lib.fh_dpdk_ports(ids_buf, MAX_PORTS), MAX_PORTS)
        ids = [ids_buf[i] for i in range(n)]
        started: dict[int, int] = {}   # port -> rc of its start
        if start_ms > 0:
            for pid in ids:
                started[pid] = lib.fh_dpdk_port_start(pid, START_MBUFS)
            end = time.monotonic() + start_ms / 1000
            while time.monotonic() < end:
                got = sum(lib.fh_dpdk_port_drain(pid) for pid in ids if started[pid] == 0)
                if not got:
                    time.sleep(0.001)
        ports = [_port(ffi, lib, pid, started) for pid in ids]
        for pid, code in started.items():
            if code:
                ports[ids.index(pid)].setdefault("errors", {})["start"] = _text(ffi, lib.fh_dpdk_strerror(code))
            else:
                lib.fh_dpdk_port_stop(pid)
        return {"ok": True, "ports": ports}
    finally:
        lib.fh_dpdk_cleanup()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    start_ms = 0
    if argv[:1] == ["--start-ms"]:
        start_ms, argv = int(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    out = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    result = run(argv, start_ms)
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
