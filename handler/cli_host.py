"""The host commands of `fh`: plan (NUMA placement and EAL arguments) and check (is this host ready)."""

from __future__ import annotations

import os
import sys


def _host_and_config(a):
    from .cli import CliError
    from .plan import load_config
    from .topology import read_host

    if not os.path.isdir(a.root):
        raise CliError(f"--root {a.root}: no such directory; give the root of a host's tree (default /)")
    host = read_host(a.root)
    cfg = load_config(a.config, host) if a.config else None
    return host, cfg


def cmd_plan(a) -> int:
    from . import plan

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
    from . import check

    host, cfg = _host_and_config(a)
    p, results = check.run(host, cfg, pci=a.pci)
    print(check.to_json(host, p, results) if a.json else check.text(host, p, results))
    return check.status(results)


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
