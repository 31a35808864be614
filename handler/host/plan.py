"""Placement (`fh plan`): where the data plane runs on a host. The NIC's NUMA node decides everything else:
the poll lcore(s) are CPUs on that node, isolated from the scheduler, with the tick and RCU callbacks moved
off, never SMT siblings of each other, never CPU 0 unless nothing else is left; DPDK memory comes from
hugepages on that node. Every way the host falls short is a finding (WARN, or FAIL when the data plane
cannot run) that says what is wrong and the exact command that fixes it. docs/placement.md explains each."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import config
from . import topology
from .topology import BIFURCATED, DPDK_DRIVERS, Host, PciDevice, format_cpulist, parse_cpulist, size_text

DEFAULT_MB = 512
GRUB_DROPIN = "/etc/default/grub.d/fh.cfg"


@dataclass(frozen=True)
class Finding:
    item: str  # hugepages, nic, cores (fh check adds irqs, governor, thp, memlock)
    level: str  # WARN: runs, but slower or jittery; FAIL: will not run
    message: str
    fix: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Plan:
    root: str
    name: str
    pci: str | None
    vdev: str | None
    nic: PciDevice | None
    node: int  # where the lcores and the memory go
    node_known: bool  # False: a multi-node host that does not say where the NIC is
    lcores: list[int]
    memory_mb: int  # asked for (memory.mb)
    hugepages: bool
    page_kb: int | None  # the hugepage size the memory comes from
    socket_mem: dict[int, int]  # MB per node
    eal_args: list[str]
    findings: list[Finding]
    summary: dict[str, str]  # item -> what was chosen, one line
    kernel_args: dict[str, str] = field(default_factory=dict)  # kernel parameters the fixes add, merged
    strict: bool = False
    unread: list[str] = field(default_factory=list)  # host files that could not be read

    @property
    def refused(self) -> bool:
        return any(f.level == "FAIL" for f in self.findings) or (self.strict and bool(self.findings))

    @property
    def exit_status(self) -> int:
        return 2 if self.refused else 0

    def to_dict(self) -> dict:
        nic = None
        if self.nic is not None:
            d = self.nic
            nic = {"pci": d.addr, "vendor": d.vendor_name, "ids": d.ids, "numa_node": d.numa_node, "driver": d.driver,
                   "iommu_group": d.iommu_group, "netdevs": list(d.netdevs), "rdma": list(d.rdma)}
        return {"root": self.root, "name": self.name, "pci": self.pci, "vdev": self.vdev, "nic": nic,
                "node": self.node, "node_known": self.node_known, "lcores": self.lcores,
                "memory_mb": self.memory_mb, "hugepages": self.hugepages,
                "page_size": size_text(self.page_kb) if self.page_kb else None,
                "socket_mem": ",".join(str(v) for _, v in sorted(self.socket_mem.items())) or None,
                "eal_args": self.eal_args, "summary": self.summary, "kernel_args": self.kernel_args,
                "grub_dropin": grub_dropin(self.kernel_args) if self.kernel_args else None,
                "strict": self.strict, "refused": self.refused, "unread": self.unread,
                "findings": [f.to_dict() for f in self.findings]}


# ---- configuration ---------------------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"cannot write {v!r} as TOML")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml(raw: dict) -> str:
    out = []
    for sec, body in raw.items():
        if not isinstance(body, dict):
            out.insert(0, f"{_toml_key(sec)} = {_toml_value(body)}")
            continue
        tables = {k: v for k, v in body.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
        out.append(f"[{_toml_key(sec)}]")
        out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items() if k not in tables]
        for k, arr in tables.items():
            for t in arr:
                out.append(f"[[{_toml_key(sec)}.{_toml_key(k)}]]")
                out += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in t.items()]
    return "\n".join(out) + "\n"


def load_config(path: str | os.PathLike, host: Host) -> config.Config:
    """config.load, except that when `host` is not this machine (a fixture tree, another host's snapshot) a
    numeric cores.rx is not checked against this machine's CPUs, which say nothing about that host: the
    placement reports a CPU the host lacks as a finding instead."""
    if host.real:
        return config.load(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return config.load(path)  # it words the error
    cores = raw.get("cores")
    rx = cores.get("rx") if isinstance(cores, dict) else None
    if not isinstance(rx, int) or isinstance(rx, bool) or not 0 <= rx <= 4095:
        return config.load(path)
    raw["cores"] = {**cores, "rx": "auto"}
    try:
        text = _toml(raw)
    except ValueError:
        return config.load(path)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="fh-plan-") as f:
        f.write(text)
        f.flush()
        try:
            cfg = config.load(f.name)
        except config.ConfigError as e:
            raise config.ConfigError(str(e).replace(f.name, str(path))) from None
    return dataclasses.replace(cfg, path=str(path), rx_core=rx)


# ---- fixes ----------------------------------------------------------------------------------------------


def grub_dropin(args: dict[str, str]) -> str:
    """The command that adds kernel parameters through a grub drop-in (Debian, Ubuntu); `>>` so that several
    fixes add up in one file."""
    text = " ".join(f"{k}={v}" if v else k for k, v in args.items())
    return (f"echo 'GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT {text}\"' >> {GRUB_DROPIN} "
            f"&& update-grub && reboot")


def merge_kernel_args(into: dict[str, str], args: dict[str, str]) -> None:
    """Add `args` to `into`: CPU lists of the same parameter are joined (irqaffinity: the CPUs both leave)."""
    for k, v in args.items():
        if k not in into or k not in ("isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity"):
            into[k] = v
            continue
        parts, old = v.split(","), into[k].split(",")
        flags = [f for f in ("managed_irq", "domain", "nohz") if f in parts or f in old]
        a = parse_cpulist(",".join(x for x in parts if x not in flags))
        b = parse_cpulist(",".join(x for x in old if x not in flags))
        into[k] = ",".join(flags + [format_cpulist(a & b if k == "irqaffinity" else a | b)])


def _kernel_fix(host: Host, args: dict[str, str], into: dict[str, str]) -> str:
    """The fix for kernel parameters: the grub drop-in, after taking out what the command line already has
    for the same parameters (the kernel reads only one isolcpus=, nohz_full=, ...)."""
    merge_kernel_args(into, args)
    present = [k for k in args if k in host.cmdline.params]
    pre = ""
    if present:
        now = " ".join(f"{k}={host.cmdline.get(k)}" for k in present)
        pre = (f"first take {now} out of the kernel command line (GRUB_CMDLINE_LINUX* in /etc/default/grub or "
               f"/etc/default/grub.d/*.cfg); then ")
    return pre + grub_dropin(args)


def _isolation_args(host: Host, cpus: set[int]) -> dict[str, str]:
    """The kernel parameters (isolcpus, nohz_full, rcu_nocbs; irqaffinity with isolcpus) that `cpus` and their
    SMT siblings lack, each merged with what the command line already has for it."""
    want = set(cpus)
    for c in cpus:
        if c in host.cpus:
            want |= host.cpus[c].siblings
    # the boot CPU's core stays with the kernel (it keeps the tick for timekeeping; nohz_full cannot take it)
    want -= host.cpus[0].siblings if 0 in host.cpus else {0}
    c = host.cmdline
    args: dict[str, str] = {}
    if not want <= host.partitioned:
        iso = set(c.isolcpus or ()) | want
        flags = [f for f in ("managed_irq", "domain", "nohz") if f in {"managed_irq", "domain", *c.isolcpus_flags}]
        args["isolcpus"] = ",".join(flags + [format_cpulist(iso)])
    if not want <= host.nohz_full_cpus:
        args["nohz_full"] = format_cpulist(set(c.nohz_full or ()) | want)
    if not want <= host.rcu_nocbs_cpus:
        args["rcu_nocbs"] = format_cpulist(set(c.rcu_nocbs or ()) | want)
    if "isolcpus" in args:
        housekeeping = set(host.cpus or host.online) - iso
        if housekeeping:
            args["irqaffinity"] = format_cpulist(housekeeping)
    return args


def _iommu_args(host: Host) -> dict[str, str]:
    if host.cpu_vendor == "AuthenticAMD":
        return {"amd_iommu": "on", "iommu": "pt"}
    return {"intel_iommu": "on", "iommu": "pt"}


# ---- the plan -------------------------------------------------------------------------------------------


def normalize_pci(addr: str) -> str:
    a = addr.strip().lower()
    return "0000:" + a if a.count(":") == 1 else a


def _nic_text(host: Host, d: PciDevice) -> str:
    states = [f"{n} {host.links.get(n, 'unknown')}" for n in d.netdevs]
    nets = f" ({', '.join(states)})" if states else ""
    return f"{d.addr}{nets}, {d.vendor_name} {d.ids}, driver {d.driver or 'none'}"


def _nic_list(host: Host, nics) -> str:
    return "; ".join(_nic_text(host, d) for d in nics) or "none"


def _bind(host: Host, d: PciDevice) -> str:
    """The commands that hand a NIC to DPDK."""
    if d.is_mellanox:
        return f"dpdk-devbind.py -b mlx5_core {d.addr}"
    down = "".join(f"ip link set {n} down && " for n in d.netdevs)
    return f"{down}modprobe vfio-pci && dpdk-devbind.py -b vfio-pci {d.addr}"


def _vdev_iface(vdev: str) -> str | None:
    m = re.search(r"(?:^|,)iface=([^,]+)", vdev)
    return m.group(1) if m else None


def _nic_findings(host: Host, d: PciDevice, out: list[Finding], kargs: dict[str, str]) -> None:
    a = d.addr
    if not d.is_ethernet:
        out.append(Finding("nic", "FAIL", f"{a} is not an Ethernet controller (PCI class {d.cls:06x})",
                           "name a NIC: lspci -D -d ::0200 lists them; set nic.pci or --pci to one"))
        return
    if d.is_mellanox:
        if d.driver in DPDK_DRIVERS:
            out.append(Finding(
                "nic", "FAIL", f"{a} is a Mellanox NIC bound to {d.driver}: DPDK's mlx5 driver reaches Mellanox "
                f"NICs through their kernel driver (mlx5_core) and rdma-core, and cannot use them on {d.driver}",
                f"dpdk-devbind.py -b mlx5_core {a}"))
        elif d.driver is None:
            out.append(Finding("nic", "FAIL", f"{a} is a Mellanox NIC with no driver",
                               f"modprobe mlx5_core && dpdk-devbind.py -b mlx5_core {a}"))
        elif d.driver in BIFURCATED:
            missing = [lib for lib in ("libibverbs.so.1", "libmlx5.so.1") if lib not in host.libs]
            if missing:
                out.append(Finding(
                    "nic", "FAIL", f"{a} is a Mellanox NIC but rdma-core is missing ({', '.join(missing)} not found "
                    "in /usr/lib): DPDK's mlx5 driver needs it",
                    "apt-get install rdma-core ibverbs-providers libibverbs1 (RHEL: dnf install rdma-core libibverbs)"))
            if not d.rdma:
                out.append(Finding(
                    "nic", "FAIL", f"{a} is a Mellanox NIC without an RDMA device (no infiniband/ under it): the "
                    "mlx5_ib module is not loaded",
                    "modprobe mlx5_ib ib_uverbs && printf 'mlx5_ib\\nib_uverbs\\n' > /etc/modules-load.d/fh.conf"))
        else:
            out.append(Finding("nic", "FAIL", f"{a} is a Mellanox NIC on driver {d.driver}",
                               f"dpdk-devbind.py -b mlx5_core {a}"))
    else:
        iommu_on = host.iommu_groups > 0
        if d.driver == "vfio-pci":
            if d.iommu_group is None and not iommu_on:
                out.append(Finding(
                    "nic", "WARN", f"{a} is on vfio-pci in unsafe no-IOMMU mode: the NIC can DMA anywhere in memory",
                    _kernel_fix(host, _iommu_args(host), kargs) + " (then rebind the NIC to vfio-pci)"))
        elif d.driver in DPDK_DRIVERS:
            out.append(Finding(
                "nic", "WARN", f"{a} is on {d.driver}: no IOMMU protection and no interrupts; vfio-pci is the "
                "supported driver", f"modprobe vfio-pci && dpdk-devbind.py -b vfio-pci {a}"))
        elif any(n in host.default_route for n in d.netdevs):
            routed = [n for n in d.netdevs if n in host.default_route]
            out.append(Finding(
                "nic", "FAIL", f"{a} ({d.vendor_name} {d.ids}) carries this host's default route on "
                f"{', '.join(routed)}: it is the host's way out (its management connection, likely this very "
                "session), so it must not be handed to DPDK",
                "give the feed a NIC of its own: set nic.pci (or --pci) to a port that carries no default route "
                "(fh check lists the host's NICs), or move the default route to another interface first"))
        else:
            up = [n for n in d.netdevs if host.links.get(n) == "up"]
            one = len(up) == 1
            why = (f"; {', '.join(up)} {'is' if one else 'are'} up: binding takes {'it' if one else 'them'} from the "
                   "kernel, with every address and connection on it" if up else "")
            fix = _bind(host, d)
            if not iommu_on:
                fix = (f"turn the IOMMU on: {_kernel_fix(host, _iommu_args(host), kargs)}; after the reboot: {fix} "
                       "(a VM without a virtual IOMMU: modprobe vfio enable_unsafe_noiommu_mode=1 instead)")
            out.append(Finding("nic", "FAIL", f"{a} ({d.vendor_name} {d.ids}) is on "
                               f"{'no driver' if d.driver is None else 'the kernel driver ' + d.driver}: DPDK cannot "
                               f"use it until it is bound to vfio-pci{why}", fix))
    if d.numa_node < 0 and len(host.nodes) > 1:
        out.append(Finding(
            "nic", "WARN", f"the firmware does not say which NUMA node {a} is on (numa_node = -1), so placement "
            "cannot follow it", "enable NUMA / SRAT reporting in the BIOS, or find the node the slot is wired to "
            "(lstopo, the board manual) and set cores.rx to a CPU there"))


def _choose(host: Host, node: int, n: int, fixed: int | None) -> list[int]:
    """Up to n lcores: `fixed` first if given, then the best CPUs, one per physical core."""
    part, nohz, rcu = host.partitioned, host.nohz_full_cpus, host.rcu_nocbs_cpus
    online = [c for c in host.cpus if c in host.online] or sorted(host.online)

    def sib(c: int) -> frozenset[int]:
        return host.cpus[c].siblings if c in host.cpus else frozenset({c})

    def score(c: int):
        return (host.node_of(c) == node, c in part, sib(c) <= part, c in nohz, c in rcu, 0 not in sib(c), c)

    reps = sorted({min(sib(c) & set(online) or {c}) for c in online}, key=score, reverse=True)
    chosen: list[int] = [] if fixed is None else [fixed]
    for c in reps:
        if len(chosen) >= n:
            break
        if c not in chosen and not any(sib(c) & sib(x) for x in chosen):
            chosen.append(c)
    for c in sorted(online, key=score, reverse=True):  # fewer physical cores than lcores: siblings after all
        if len(chosen) >= n:
            break
        if c not in chosen:
            chosen.append(c)
    return chosen


def plan(host: Host, cfg: config.Config | None = None, *, pci: str | None = None, lcores: int = 1,
         strict: bool = False) -> Plan:
    findings: list[Finding] = []
    kargs: dict[str, str] = {}
    summary: dict[str, str] = {}
    name = cfg.name if cfg else "fh"
    where = f" in {cfg.path}" if cfg else ""
    devs = config.devices(cfg) if cfg else ()
    if pci and devs:  # --pci stands for the [nic] device
        devs = devs[1:]
    cfg_pcis = [normalize_pci(d.name) for d in devs if d.pci]
    pci = normalize_pci(pci) if pci else (cfg_pcis[0] if cfg_pcis else None)
    vdev = None if pci else (cfg.nic_vdev if cfg else None)
    others = [a for a in cfg_pcis if a != pci]  # more ports (feed.lines[].nic, feed.retransmission.nic)
    rx = cfg.rx_core if cfg else None
    mb = cfg.memory_mb if cfg else DEFAULT_MB
    huge = cfg.hugepages if cfg else True

    # ---- the NIC
    nic = None
    ethernet = sorted(host.nics(), key=lambda d: d.addr)
    listing = _nic_list(host, ethernet)
    if pci:
        nic = host.pci.get(pci)
        if nic is None:
            findings.append(Finding("nic", "FAIL", f"there is no PCI device {pci} on this host (Ethernet NICs: "
                                    f"{listing})", "set nic.pci or --pci to one of those (lspci -D -d ::0200 lists "
                                    "them)"))
        else:
            _nic_findings(host, nic, findings, kargs)
    elif vdev:
        iface = _vdev_iface(vdev)
        if iface and host.netdevs.get(iface) in host.pci:
            nic = host.pci[host.netdevs[iface]]
        summary["nic"] = f"vdev {vdev}" + (f" on {iface} ({nic.addr})" if nic else ": no PCI device")
    else:
        usable = [d for d in ethernet if (d.driver in DPDK_DRIVERS and not d.is_mellanox)
                  or (d.is_mellanox and d.driver in BIFURCATED)]
        if len(usable) == 1:
            nic, pci = usable[0], usable[0].addr
            _nic_findings(host, nic, findings, kargs)
        else:
            what = "no NIC is ready for DPDK" if not usable else f"{len(usable)} NICs could serve"
            if len(usable) > 1:
                fix = f"name one with --pci ADDR or nic.pci: {' or '.join(d.addr for d in usable)}"
            elif len(ethernet) == 1:
                d = ethernet[0]
                fix = f"hand it to DPDK: {_bind(host, d)}; then name it: --pci {d.addr} or nic.pci = \"{d.addr}\""
            else:
                fix = ("hand one to DPDK (dpdk-devbind.py -b vfio-pci ADDR; a Mellanox NIC stays on mlx5_core), then "
                       "name it with --pci ADDR or nic.pci")
            findings.append(Finding("nic", "FAIL", f"no NIC named (nic.pci, --pci) and {what}; Ethernet NICs: "
                                    f"{listing}", fix))
    if nic is not None and "nic" not in summary:
        node_txt = (f"node {nic.numa_node}" if nic.numa_node >= 0 else
                    f"node {next(iter(host.nodes))} (the only one)" if len(host.nodes) == 1 else "node unknown")
        group = f", IOMMU group {nic.iommu_group}" if nic.iommu_group is not None else ""
        summary["nic"] = f"{_nic_text(host, nic)}, {node_txt}{group}"
    summary.setdefault("nic", "none")
    other_nics = []
    for a in others:
        d = host.pci.get(a)
        if d is None:
            findings.append(Finding("nic", "FAIL", f"there is no PCI device {a} on this host (Ethernet NICs: "
                                    f"{listing})", f"set feed.lines[].nic or feed.retransmission.nic{where} to one of "
                                    "those (lspci -D -d ::0200 lists them)"))
            continue
        _nic_findings(host, d, findings, kargs)
        other_nics.append(d)
        summary["nic"] += f"; also {_nic_text(host, d)}, node {d.numa_node if d.numa_node >= 0 else 'unknown'}"

    # ---- the node
    node_known = True
    if nic is not None and nic.numa_node >= 0 and nic.numa_node in host.nodes:
        node = nic.numa_node
    elif len(host.nodes) == 1:
        node = next(iter(host.nodes))
    else:
        node_known = False
        if rx is not None and host.node_of(rx) is not None:
            node = host.node_of(rx)
        else:
            part = host.partitioned
            node = max(sorted(host.nodes), key=lambda n: len(host.nodes[n] & part))

    if cfg is not None and host.real:  # a lab's capture, as fh run checks it (the files are this host's)
        for problem, fix in config.rx_pcap_problems(cfg):
            findings.append(Finding("nic", "FAIL", problem, fix))

    # ---- the lcores
    fixed = rx
    if rx is not None and (rx not in host.cpus or rx not in host.online):
        best = _choose(host, node, 1, None) or [0]
        findings.append(Finding("cores", "FAIL", f"cores.rx = {rx}: this host has no online CPU {rx} (online: "
                                f"{format_cpulist(host.online)})", f"set cores.rx = {best[0]}{where}, or \"auto\""))
        fixed = None
    chosen = _choose(host, node, lcores, fixed)
    if not chosen:
        findings.append(Finding("cores", "FAIL", f"no CPU found under {host.path('/sys/devices/system/cpu')}",
                                "point --root at a host's root directory (the one holding sys/ and proc/)"))
    elif len(chosen) < lcores:  # (it planned fewer without a word)
        findings.append(Finding("cores", "FAIL", f"{lcores} lcores asked for, but this host has {len(host.online)} "
                                f"online CPU{'s' if len(host.online) != 1 else ''}: planned {len(chosen)}",
                                f"ask for at most {len(chosen)} (--lcores)"))
    part, nohz, rcu = host.partitioned, host.nohz_full_cpus, host.rcu_nocbs_cpus
    node_cpus = host.nodes.get(node, frozenset())
    best_auto = (_choose(host, node, 1, None) or [0])[0]
    zero = topology.Cpu(0, 0, None, None, frozenset({0}), None)

    def lab(cs) -> str:
        """"CPU 5 (cores.rx) is" / "CPUs 13-15 are"."""
        cs = sorted(cs)
        return (f"CPU{'s' if len(cs) > 1 else ''} {format_cpulist(cs)}" + (" (cores.rx)" if rx in cs else "")
                + (" are" if len(cs) > 1 else " is"))

    tuned = (" (or the tuned cpu-partitioning profile: isolated_cores={} in "
             "/etc/tuned/cpu-partitioning-variables.conf, then tuned-adm profile cpu-partitioning)")
    known = [c for c in chosen if c in host.cpus]
    remote = [c for c in known if node_known and host.cpus[c].node != node]
    if remote:
        fix = (f"set cores.rx = {best_auto} (node {node}){where}, or \"auto\"" if rx in remote else
               f"node {node} has too few CPUs for {lcores} lcores; ask for fewer (--lcores)")
        findings.append(Finding("cores", "WARN", f"{lab(remote)} on node "
                                f"{format_cpulist({host.cpus[c].node for c in remote})} but the NIC is on node {node}: "
                                "every packet and every book update crosses the socket interconnect", fix))
    lacking = {c: [k for k, st in (("isolcpus", part), ("nohz_full", nohz), ("rcu_nocbs", rcu)) if c not in st]
               for c in known}
    lacking = {c: m for c, m in lacking.items() if m}
    if lacking:
        bare = sorted(c for c, m in lacking.items() if "isolcpus" in m)
        if bare and not (node_cpus & part):
            msg = (f"no isolated CPU on node {node} (isolcpus= does not cover it): {lab(bare)} the best there "
                   f"{'is' if len(bare) == 1 else 'are'}, and the scheduler, the timer tick and RCU callbacks all run "
                   "there")
        elif bare:
            msg = f"{lab(bare)} not isolated: the scheduler puts other tasks there and the poll loop stalls"
        else:
            miss = sorted({k for m in lacking.values() for k in m})
            msg = f"{lab(lacking)} isolated but not in {' or '.join(miss)}: " + (
                "the timer tick interrupts the poll loop every few milliseconds" if "nohz_full" in miss
                else "RCU callbacks run there")
        if rx in lacking and len(lacking) == 1 and best_auto != rx and best_auto in node_cpus & part & nohz & rcu:
            fix = f"set cores.rx = {best_auto}{where} (node {node}; isolated, nohz_full, rcu_nocbs), or \"auto\""
        else:
            want = set(lacking).union(*(host.cpus[c].siblings for c in lacking)) - host.cpus.get(0, zero).siblings
            fix = _kernel_fix(host, _isolation_args(host, set(lacking)), kargs) + tuned.format(
                format_cpulist(want | host.partitioned))
        findings.append(Finding("cores", "WARN", msg, fix))
    shared = [c for c in known if c not in lacking and not host.cpus[c].siblings <= part]
    if shared:
        idle = set().union(*(host.cpus[c].siblings for c in shared)) - part
        findings.append(Finding(
            "cores", "WARN", f"{lab(shared)} isolated but SMT sibling{'s' if len(idle) > 1 else ''} "
            f"{format_cpulist(idle)} {'are' if len(idle) > 1 else 'is'} not: tasks there share the core (its caches "
            "and execution units)",
            _kernel_fix(host, _isolation_args(host, set(shared)), kargs) + " (or turn SMT off: echo off > "
            "/sys/devices/system/cpu/smt/control)"))
    pairs = [c for i, c in enumerate(known) if any(x in host.cpus[c].siblings for x in known[:i])]
    if pairs:
        findings.append(Finding("cores", "WARN", f"{lab(pairs)} an SMT sibling of another lcore: two poll loops "
                                "share one core", "ask for fewer lcores (--lcores): this host has too few cores"))
    if 0 in chosen and len(host.online) > 1:
        findings.append(Finding("cores", "WARN", "CPU 0 is an lcore: it takes housekeeping work and most interrupts",
                                f"set cores.rx = {best_auto}{where}, or \"auto\"" if rx == 0 else
                                "ask for fewer lcores (--lcores): this host has too few cores"))
    flags = []
    for c in chosen:
        cpu = host.cpus.get(c)
        have = [k for k, s in (("isolated", part), ("nohz_full", nohz), ("rcu_nocbs", rcu)) if c in s]
        sibs = sorted(cpu.siblings - {c}) if cpu else []
        sib_txt = f"; sibling {format_cpulist(sibs)} {'isolated' if set(sibs) <= part else 'shared'}" if sibs else ""
        flags.append(f"{c} (node {host.node_of(c)}; {', '.join(have) or 'not isolated'}{sib_txt})")
    summary["cores"] = ", ".join(flags)

    # ---- memory
    socket_mem: dict[int, int] = {}
    page_kb = None
    if not huge:
        findings.append(Finding(
            "hugepages", "WARN", f"memory.hugepages = false: {mb} MB from ordinary 4K pages (--no-huge): a TLB "
            "miss on most book accesses and no NUMA placement",
            f"set memory.hugepages = true{where}, with hugepages reserved on node {node}"))
        eal_mem = ["--no-huge", "-m", str(mb)]
        summary["hugepages"] = f"{mb} MB of ordinary pages (--no-huge)"
    else:
        need_kb = mb * 1024
        pools = host.pools(node)
        ok = [p for p in pools if p.free * p.size_kb >= -(-need_kb // p.size_kb) * p.size_kb]
        if ok:
            pool = ok[0]  # the largest page size that fits
            page_kb = pool.size_kb
        else:
            page_kb = 2048 if any(p.size_kb == 2048 for p in pools) or not pools else pools[-1].size_kb
        pages = -(-need_kb // page_kb)
        mb_r = pages * page_kb // 1024
        socket_mem = {n: 0 for n in range(max(host.nodes, default=0) + 1)}
        socket_mem[node] = mb_r
        # --in-memory: no runtime files, the hugepage files unlinked once mapped, so that a stop or a crash gives the
        # pages back (config.eal_args)
        eal_mem = ["--socket-mem", ",".join(str(socket_mem[n]) for n in sorted(socket_mem)), "--in-memory"]
        if not ok:
            have = ", ".join(f"{p.free} x {size_text(p.size_kb)}" for p in pools) or "no hugepage pools"
            elsewhere = [f"node {p.node} has {p.free} x {size_text(p.size_kb)} free" for p in host.hugepages
                         if p.node != node and p.free]
            remote = f" ({'; '.join(elsewhere)}, but that memory is remote to the NIC)" if elsewhere else ""
            nics_node = " (the NIC's node)" if node_known and nic else ""
            cur = next((p for p in pools if p.size_kb == page_kb), None)
            target = (cur.total if cur else 0) + pages - (cur.free if cur else 0)
            boot = (f"hugepages={node}:{target}" if len(host.nodes) > 1 else f"hugepages={target}")
            more = " (merge with the hugepages= already on the command line)" if host.cmdline.hugepages else ""
            kargs_h = {"hugepagesz": size_text(page_kb), "hugepages": boot.split("=", 1)[1]}
            merge_kernel_args(kargs, kargs_h)
            findings.append(Finding(
                "hugepages", "FAIL", f"not enough free hugepages on node {node}{nics_node} "
                f"for memory.mb = {mb}: {pages} x {size_text(page_kb)} wanted, free there: {have}{remote}",
                f"echo {target} > /sys/devices/system/node/node{node}/hugepages/hugepages-{page_kb}kB/nr_hugepages; "
                f"to keep it across reboots: {grub_dropin(kargs_h)}{more}"))
        mounts = host.hugetlbfs(page_kb)
        if not mounts:
            d = "/dev/hugepages" if page_kb == host.default_hugepage_kb else f"/dev/hugepages-{size_text(page_kb)}"
            findings.append(Finding(
                "hugepages", "FAIL", f"no hugetlbfs is mounted for {size_text(page_kb)} pages: DPDK finds hugepages "
                "through a mount", f"mkdir -p {d} && mount -t hugetlbfs -o pagesize={size_text(page_kb)} nodev {d}; to "
                f"keep it: echo 'nodev {d} hugetlbfs pagesize={size_text(page_kb)} 0 0' >> /etc/fstab"))
        pool = next((p for p in pools if p.size_kb == page_kb), None)
        free_txt = f"{pool.free} of {pool.total} free" if pool else "none reserved"
        summary["hugepages"] = (f"{mb_r} MB on node {node} from {size_text(page_kb)} hugepages ({free_txt}; hugetlbfs "
                                f"{', '.join(m.path for m in mounts) or 'not mounted'})")
    for d in other_nics:
        if nic is not None and node_known and 0 <= d.numa_node != node and d.numa_node in host.nodes:
            findings.append(Finding(
                "nic", "WARN", f"{d.addr} is on node {d.numa_node} but the data plane is placed on node {node} "
                f"(the node of {pci}, the first NIC): every packet from {d.addr} crosses the socket interconnect",
                f"give the lines ports on one node (feed.lines[].nic{where}; two ports of one NIC), or move the "
                f"cards to slots of one node (/sys/bus/pci/devices/ADDR/numa_node shows each one's)"))
    if not node_known and nic is None and not vdev:  # (a NIC that hides its node has a finding of its own)
        findings.append(Finding("cores", "WARN", f"the NIC's NUMA node is unknown on this {len(host.nodes)}-node "
                                f"host; placed on node {node}", "name the NIC (--pci, nic.pci), or set cores.rx to a "
                                "CPU on the node its slot is wired to"))

    eal = ["-l", ",".join(map(str, sorted(chosen))), *eal_mem] if chosen else list(eal_mem)
    if chosen and chosen[0] != min(chosen):  # DPDK's main lcore (the poll loop) is the lowest unless told otherwise
        eal += ["--main-lcore", str(chosen[0])]
    for a in [pci, *others] if pci else []:
        eal += ["-a", a]
    vdevs = [d.spec for d in devs if not d.pci]
    if vdevs and not pci:
        eal.append("--no-pci")
    for v in vdevs:
        eal += ["--vdev", v]
    eal += ["--file-prefix", f"fh-{name}"]
    return Plan(root=host.root, name=name, pci=pci, vdev=vdev, nic=nic, node=node, node_known=node_known,
                lcores=chosen, memory_mb=mb, hugepages=huge, page_kb=page_kb, socket_mem=socket_mem, eal_args=eal,
                findings=findings, summary=summary, kernel_args=kargs, strict=strict, unread=list(host.unread))


# ---- output ---------------------------------------------------------------------------------------------


def host_line(host: Host) -> str:
    n = len(host.cpus) or len(host.online)
    return (f"host {host.root}: {len(host.nodes)} NUMA node{'s' if len(host.nodes) != 1 else ''}, {n} CPUs, "
            f"{host.threads_per_core} thread{'s' if host.threads_per_core != 1 else ''} per core, isolated "
            f"{format_cpulist(host.partitioned) or 'none'}")


def several_kernel_fixes(findings) -> bool:
    return sum(GRUB_DROPIN in f.fix for f in findings) > 1


def finding_lines(f: Finding, level: str | None = None, width: int = 10) -> list[str]:
    lv = level or f.level
    return [f"{lv:<5} {f.item:<{width}} {f.message}", f"{'':<5} {'':<{width}} fix: {f.fix}"]


def text(p: Plan, host: Host) -> str:
    lines = [f"fh plan: {host_line(host)}"]
    for item in ("nic", "cores", "hugepages"):
        lines.append(f"  {item:<10} {p.summary.get(item, '-')}")
    lines.append(f"  {'eal':<10} {' '.join(p.eal_args)}")
    if p.findings:
        lines.append("")
        for f in p.findings:
            lines += finding_lines(f, "FAIL" if p.strict and f.level == "WARN" else None)
    if several_kernel_fixes(p.findings):
        lines += ["", f"kernel parameters for all the fixes above, in one drop-in: {grub_dropin(p.kernel_args)}"]
    if p.unread:
        lines.append(f"could not read (taken as absent): {', '.join(p.unread)}")
    return "\n".join(lines)
