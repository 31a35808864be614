"""The host commands of `fh`: plan (NUMA placement and EAL arguments), check (is this host ready) and ports (what
DPDK sees)."""

from __future__ import annotations

import os
import sys

from .argtypes import _given


def _host_and_config(a):
    from ..errors import FhError
    from ..host.plan import load_config
    from ..host.topology import read_host

    if not os.path.isdir(a.root):
        why = "not a directory" if os.path.exists(a.root) else "no such directory"
        raise FhError(f"--root {a.root}: {why}; give the root of a host's tree (default /)")
    host = read_host(a.root)
    if a.config:
        from ..config import check_file

        check_file(a.config)  # (load_config reads another host's configuration itself)
    cfg = load_config(a.config, host) if a.config else None
    return host, cfg


def _findings_rows(items, strict: bool = False) -> list[tuple[str, str, str]]:
    """Rows (level, item, what) of findings or check results: a non-OK one is followed by a row with its fix."""
    rows = []
    for f in items:
        level = "FAIL" if strict and f.level == "WARN" else f.level
        rows.append((level, f.item, f.message))
        if f.level != "OK" and f.fix:
            rows.append(("", "", f"fix: {f.fix}"))
    return rows


def cmd_plan(a) -> int:
    from ..host import plan
    from ..ui import print_json, print_table

    host, cfg = _host_and_config(a)
    p = plan.plan(host, cfg, pci=a.pci, lcores=a.lcores, strict=a.strict)
    if a.json:
        print_json(p.to_dict())
    else:
        print(f"fh plan: {plan.host_line(host)}")
        print_table(["item", "chosen"], [(k, p.summary.get(k, "-")) for k in ("nic", "cores", "hugepages")]
                    + [("eal", " ".join(p.eal_args))], wrap_last=True)
        if p.findings:
            print()
            print_table(["level", "item", "finding"], _findings_rows(p.findings, p.strict), wrap_last=True)
        if plan.several_kernel_fixes(p.findings):
            print(f"\nkernel parameters for all the fixes above, in one drop-in: {plan.grub_dropin(p.kernel_args)}")
        if p.unread:
            print(f"could not read (taken as absent): {', '.join(p.unread)}")
    if p.refused:
        fails = sum(f.level == "FAIL" for f in p.findings)
        warns = len(p.findings) - fails
        why = (f"{fails} failure{'s' if fails != 1 else ''}" if fails else "") + \
            (", " if fails and warns and a.strict else "") + \
            (f"{warns} warning{'s' if warns != 1 else ''} (--strict)" if warns and a.strict else "")
        print(f"fh plan: refused: {why}; the fixes are above", file=sys.stderr)
    return p.exit_status


def cmd_check(a) -> int:
    from ..host import check, plan as planmod
    from ..ui import print_table

    host, cfg = _host_and_config(a)
    p, results = check.run(host, cfg, pci=a.pci)
    status = check.status(results)
    if a.json:
        print(check.to_json(host, p, results))
        return status
    print(f"fh check: {planmod.host_line(host)}; lcore {','.join(map(str, p.lcores))} on node {p.node}")
    print_table(["level", "item", "finding"], _findings_rows(results), wrap_last=True)
    if planmod.several_kernel_fixes(results):
        print("kernel parameters for all the fixes above, in one drop-in: "
              f"{check.grub_dropin(check.kernel_args(p, results))}")
    if p.unread:
        print(f"could not read (taken as absent): {', '.join(p.unread)}")
    w = sum(r.level == "WARN" for r in results)
    f = sum(r.level == "FAIL" for r in results)
    verdict = {0: "ready", 1: "runs, with warnings", 2: "not ready"}[status]
    print(f"{f} failure{'s' if f != 1 else ''}, {w} warning{'s' if w != 1 else ''}: {verdict} (exit {status})")
    return status


def cmd_ports(a) -> int:
    from ..host import ports
    from ..ui import fmt_int, print_json, print_table

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
        print_json({"ports": r.ports, "warnings": r.warnings})
    else:
        rows = []
        for p in r.ports:
            st = p.get("stats") or {}
            rows.append((p["id"], p.get("name", "?"), p.get("driver", "?"),
                         "-" if p.get("socket") is None else str(p["socket"]), p.get("mac") or "?",
                         ports.link_text(p.get("link")),
                         fmt_int(st["ipackets"]) if "ipackets" in st else "?",
                         fmt_int(st["opackets"]) if "opackets" in st else "?",
                         fmt_int(st.get("imissed", 0) + st.get("rx_nombuf", 0)) if st else "?",
                         fmt_int(st.get("ierrors", 0) + st.get("oerrors", 0)) if st else "?"))
        print_table(["id", "name", "driver", "socket", "mac", "link", "rx packets", "tx packets", "missed", "errors"],
                    rows, right=[True, False, False, True, False, False, True, True, True, True])
    for w in r.warnings:
        print(f"fh ports: warning: {w}", file=sys.stderr)
    return 0


def seconds(high: float = 3600, *, zero: bool = True):
    """An argparse type: a number of seconds from 0 (above it, without zero) to high; nan and inf are refused
    (time.sleep would raise on them, or never return)."""
    import argparse

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not (0 <= v if zero else 0 < v) or not v <= high:  # (nan fails every comparison)
            raise argparse.ArgumentTypeError(f"expected {'0 to' if zero else 'more than 0 and at most'} {high:g} "
                                             f"seconds, got {text}")
        return v
    return parse


_seconds = seconds()


def register(sub, positive, nonneg) -> None:
    from ..ui import HelpFormatter, add_json_flag, examples

    root_help = "read sysfs and proc under this directory (a saved host tree, or / for this host)"
    p = sub.add_parser("plan", help="NUMA placement: the NIC's node, lcores, hugepage memory and the EAL arguments",
                       formatter_class=HelpFormatter,
                       description="Choose lcores and memory on the NIC's NUMA node and print the EAL arguments; "
                       "warn on every mismatch, with its fix. Exit 0, or 2 if refused (a failure, or a warning "
                       "with --strict).",
                       epilog=examples("fh plan --config /etc/fh/nasdaq.toml", "fh plan --pci 0000:3b:00.0 --lcores 2",
                                       "fh plan --config fh.toml --strict --json | jq .eal_args"))
    p.add_argument("--config", metavar="FILE", type=_given("an fh.toml"),
                   help="fh.toml (nic, cores.rx, memory, instance name)")
    p.add_argument("--pci", metavar="ADDR", help="the NIC's PCI address (overrides nic.pci)")
    p.add_argument("--root", default="/", metavar="DIR", help=root_help)
    p.add_argument("--lcores", type=positive, default=1, help="how many poll lcores to place")
    p.add_argument("--strict", action="store_true", help="refuse (exit 2) on any warning")
    add_json_flag(p, "fh plan")
    p.set_defaults(func=cmd_plan)

    c = sub.add_parser("check", help="is this host ready: hugepages, NIC binding, isolation, IRQs, governor, THP, "
                       "memlock", formatter_class=HelpFormatter,
                       description="Check the host item by item: OK, WARN or FAIL, each with its fix. "
                       "Exit 0: all OK; 1: warnings; 2: failures.",
                       epilog=examples("fh check", "fh check --config /etc/fh/nasdaq.toml",
                                       "fh check --pci 0000:3b:00.0 --json | jq '.results[] | select(.level != \"OK\")'"))
    c.add_argument("--config", metavar="FILE", type=_given("an fh.toml"), help="fh.toml (nic, cores.rx, memory)")
    c.add_argument("--pci", metavar="ADDR", type=_given("the NIC's PCI address, e.g. 0000:3b:00.0"),
                   help="the NIC's PCI address (overrides nic.pci)")
    c.add_argument("--root", default="/", metavar="DIR", help=root_help)
    add_json_flag(c, "fh check")
    c.set_defaults(func=cmd_check)

    pt = sub.add_parser("ports", help="the DPDK ports: id, name, driver, NUMA socket, MAC, link, rx/tx counters",
                        formatter_class=HelpFormatter,
                        description="Start DPDK's EAL in a child process with the devices given (its own file prefix, "
                        "so never in the way of a running data plane), read every port, print a table, exit. "
                        "Exit 0, or 2 with one line naming the cause and the fix (no port, a bad device, no "
                        "hugepages, DPDK bindings not built).",
                        epilog=examples("fh ports --config /etc/fh/nasdaq.toml", "fh ports --pci 0000:3b:00.0",
                                        "fh ports --no-huge --vdev net_pcap0,rx_pcap=day.pcap --start 1 --json"))
    pt.add_argument("--config", metavar="FILE", type=_given("an fh.toml"),
                    help="fh.toml: the NIC (nic.pci or nic.vdev) and memory.hugepages")
    pt.add_argument("--vdev", action="append", metavar="SPEC",
                    type=_given("a virtual device, e.g. net_pcap0,rx_pcap=day.pcap"),
                    help="a virtual device, e.g. net_pcap0,rx_pcap=day.pcap or net_af_packet0,iface=eth1 "
                    "(repeatable; replaces the configuration's NIC)")
    pt.add_argument("--pci", action="append", metavar="ADDR", type=_given("a PCI address, e.g. 0000:01:00.0"),
                    help="a NIC bound to vfio-pci, e.g. 0000:01:00.0 (repeatable; replaces the configuration's NIC)")
    pt.add_argument("--no-huge", action="store_true", help="ordinary pages instead of hugepages (labs)")
    pt.add_argument("--start", type=_seconds, default=0, metavar="SECONDS",
                    help="start each port (one rx and one tx queue) and receive for SECONDS before reading link and "
                    "counters; never on a port a data plane uses; 0: do not start")
    add_json_flag(pt, "fh ports")
    pt.set_defaults(func=cmd_ports)
