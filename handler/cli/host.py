"""The host commands of `fh`: plan (NUMA placement and EAL arguments), check (is this host ready) and ports (what
DPDK sees)."""

from __future__ import annotations

import os
import sys


def _host_and_config(a):
    from ..errors import FhError
    from ..host.plan import load_config
    from ..host.topology import read_host

    if not os.path.isdir(a.root):
        raise FhError(f"--root {a.root}: no such directory; give the root of a host's tree (default /)")
    host = read_host(a.root)
    cfg = load_config(a.config, host) if a.config else None
    return host, cfg


def cmd_plan(a) -> int:
    from ..host import plan

    host, cfg = _host_and_config(a)
    p = plan.plan(host, cfg, pci=a.pci, lcores=a.lcores, strict=a.strict)
    if a.json:
        import json

        print(json.dumps(p.to_dict()))
    else:
        print(plan.text(p, host))
    if p.refused:
        fails = sum(f.level == "FAIL" for f in p.findings)
        warns = len(p.findings) - fails
        why = (f"{fails} failure{'s' if fails != 1 else ''}" if fails else "") + \
            (", " if fails and warns and a.strict else "") + \
            (f"{warns} warning{'s' if warns != 1 else ''} (--strict)" if warns and a.strict else "")
        print(f"fh plan: refused: {why}; the fixes are above", file=sys.stderr)
    return p.exit_status


def cmd_check(a) -> int:
    from ..host import check

    host, cfg = _host_and_config(a)
    p, results = check.run(host, cfg, pci=a.pci)
    print(check.to_json(host, p, results) if a.json else check.text(host, p, results))
    return check.status(results)


def cmd_ports(a) -> int:
    from ..host import ports

    vdev, pci, no_huge = list(a.vdev or []), list(a.pci or []), a.no_huge
    if a.config:
        from .. import config

        cvdev, cpci, cno_huge = ports.config_devices(config.load(a.config))
        if not vdev and not pci:  # --vdev/--pci replace the configuration's NIC, as --pci does for fh plan
            vdev, pci = cvdev, cpci
        no_huge = no_huge or cno_huge
    pci = [ports.check_pci(x) for x in pci]
    r = ports.read(ports.eal_args(vdev, pci, no_huge), start_s=a.start)
    if a.json:
        import json

        print(json.dumps({"ports": r.ports, "warnings": r.warnings}))
    else:
        print(ports.table(r.ports))
    for w in r.warnings:
        print(f"fh ports: warning: {w}", file=sys.stderr)
    return 0


def _seconds(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= v <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 to 3600 seconds, got {text}")
    return v


def register(sub, positive, nonneg) -> None:
    root_help = "read sysfs and proc under this directory (default /: this host)"
    p = sub.add_parser("plan", help="NUMA placement: the NIC's node, lcores, hugepage memory and the EAL arguments",
                       description="Choose lcores and memory on the NIC's NUMA node and print the EAL arguments; "
                       "warn on every mismatch, with its fix. Exit 0, or 2 if refused (a failure, or a warning "
                       "with --strict).")
    p.add_argument("--config", metavar="FILE", help="fh.toml (nic, cores.rx, memory, instance name)")
    p.add_argument("--pci", metavar="ADDR", help="the NIC's PCI address (overrides nic.pci)")
    p.add_argument("--root", default="/", metavar="DIR", help=root_help)
    p.add_argument("--lcores", type=positive, default=1, help="how many poll lcores to place (default 1)")
    p.add_argument("--strict", action="store_true", help="refuse (exit 2) on any warning")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(func=cmd_plan)

    c = sub.add_parser("check", help="is this host ready: hugepages, NIC binding, isolation, IRQs, governor, THP, "
                       "memlock", description="Check the host item by item: OK, WARN or FAIL, each with its fix. "
                       "Exit 0: all OK; 1: warnings; 2: failures.")
    c.add_argument("--config", metavar="FILE", help="fh.toml (nic, cores.rx, memory)")
    c.add_argument("--pci", metavar="ADDR", help="the NIC's PCI address (overrides nic.pci)")
    c.add_argument("--root", default="/", metavar="DIR", help=root_help)
    c.add_argument("--json", action="store_true", help="print the results as one JSON object")
    c.set_defaults(func=cmd_check)

    pt = sub.add_parser("ports", help="the DPDK ports: id, name, driver, NUMA socket, MAC, link, rx/tx counters",
                        description="Start DPDK's EAL in a child process with the devices given (its own file prefix, "
                        "so never in the way of a running data plane), read every port, print a table, exit. "
                        "Exit 0, or 2 with one line naming the cause and the fix (no port, a bad device, no "
                        "hugepages, DPDK bindings not built).")
    pt.add_argument("--config", metavar="FILE", help="fh.toml: the NIC (nic.pci or nic.vdev) and memory.hugepages")
    pt.add_argument("--vdev", action="append", metavar="SPEC",
                    help="a virtual device, e.g. net_pcap0,rx_pcap=day.pcap or net_af_packet0,iface=eth1 "
                    "(repeatable; replaces the configuration's NIC)")
    pt.add_argument("--pci", action="append", metavar="ADDR",
                    help="a NIC bound to vfio-pci, e.g. 0000:01:00.0 (repeatable; replaces the configuration's NIC)")
    pt.add_argument("--no-huge", action="store_true", help="ordinary pages instead of hugepages (labs)")
    pt.add_argument("--start", type=_seconds, default=0, metavar="SECONDS",
                    help="start each port (one rx and one tx queue) and receive for SECONDS before reading link and "
                    "counters; never on a port a data plane uses")
    pt.add_argument("--json", action="store_true", help="print {ports: [...], warnings: [...]} as one JSON object")
    pt.set_defaults(func=cmd_ports)
