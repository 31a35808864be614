"""Host checks (`fh check`): is this host ready to run the data plane fast, item by item? Each item is OK,
WARN (it runs, with jitter or stalls) or FAIL (it will not run), and every WARN and FAIL carries the exact fix.
The placement (plan.py) supplies the hugepages, nic and cores items; the rest are here. The exit status
serves scripts: 0 all OK, 1 warnings, 2 failures. docs/placement.md explains each item and its fix."""

from __future__ import annotations

import json

from . import plan as planmod
from .plan import Finding, Plan, grub_dropin
from .result import Result  # noqa: F401  (fh check's items; privilege.py makes them too)
from .topology import Host, format_cpulist

ITEMS = ("hugepages", "nic", "cores", "irqs", "governor", "thp", "memlock", "user", "access", "metrics")
LEVELS = {"OK": 0, "WARN": 1, "FAIL": 2}


def _housekeeping(host: Host, lcores: set[int]) -> frozenset[int]:
    """CPUs for everything else: not isolated, not an lcore, not an lcore's SMT sibling."""
    sibs = set(lcores).union(*(host.cpus[c].siblings for c in lcores if c in host.cpus))
    hk = frozenset(host.online) - host.partitioned - sibs
    return hk or frozenset(host.online) - lcores or frozenset(host.online)


def _irqs(host: Host, p: Plan) -> list[Result]:
    lc = set(p.lcores)
    out = []
    if host.irqbalance_running:
        # irqbalance keeps off the CPUs in its configured ban list; with none configured it bans the isolated
        # and nohz_full CPUs by itself
        banned = host.irqbalance_banned
        effective = banned if banned is not None else (host.isolated | host.nohz_full_cpus)
        exposed = lc - set(effective)
        if exposed:
            cfg = host.irqbalance_config or "/etc/default/irqbalance"
            merged = format_cpulist(set(banned or ()) | lc)
            out.append(Result(
                "irqs", "WARN", f"irqbalance runs and may move interrupts onto lcore {format_cpulist(exposed)} "
                f"(banned: {format_cpulist(effective) or 'none'})",
                f"echo 'IRQBALANCE_BANNED_CPULIST={merged}' >> {cfg} && systemctl restart irqbalance (or stop it: "
                "systemctl disable --now irqbalance)"))
        else:
            out.append(Result("irqs", "OK", f"irqbalance runs and keeps off lcore {format_cpulist(lc)} "
                              f"(banned: {format_cpulist(effective)})"))
    else:
        out.append(Result("irqs", "OK", "irqbalance is not running"))
    hit = sorted(i for i, cpus in host.irqs.items() if cpus & lc)
    if hit:
        hk = format_cpulist(_housekeeping(host, lc))
        shown = " ".join(map(str, hit[:16])) + (f" (and {len(hit) - 16} more)" if len(hit) > 16 else "")
        out.append(Result(
            "irqs", "WARN", f"{len(hit)} interrupt{'s are' if len(hit) != 1 else ' is'} delivered to lcore "
            f"{format_cpulist(lc)}: IRQ {shown}",
            f"for i in {' '.join(map(str, hit))}; do echo {hk} > /proc/irq/$i/smp_affinity_list; done; for new "
            f"ones: irqaffinity={hk} and isolcpus=managed_irq,... on the kernel command line"))
    elif host.irqs:
        out.append(Result("irqs", "OK", f"no interrupt is delivered to lcore {format_cpulist(lc)} "
                          f"({len(host.irqs)} IRQs)"))
    return out


def _governor(host: Host, p: Plan) -> list[Result]:
    govs = {c: host.cpus[c].governor for c in p.lcores if c in host.cpus}
    if all(g is None for g in govs.values()):
        return [Result("governor", "OK", f"no cpufreq driver: the kernel does not scale lcore "
                       f"{format_cpulist(govs)} (a VM, or the firmware does: set its power profile to maximum "
                       "performance)")]
    slow = sorted(c for c, g in govs.items() if g is not None and g != "performance")
    if not slow:
        return [Result("governor", "OK", f"lcore {format_cpulist(govs)}: performance")]
    names = sorted({govs[c] for c in slow})
    paths = " ".join(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor" for c in slow)
    return [Result("governor", "WARN", f"lcore {format_cpulist(slow)} runs the {'/'.join(names)} governor: the "
                   "clock drops when the loop idles, and the first packets after a quiet spell wait for it",
                   f"echo performance | tee {paths} (all CPUs: cpupower frequency-set -g performance; to keep it: "
                   "tuned-adm profile cpu-partitioning)")]


def _thp(host: Host, p: Plan) -> list[Result]:
    if host.thp is None:
        return [Result("thp", "OK", "no transparent hugepages in this kernel")]
    if host.thp == "never":
        return [Result("thp", "OK", "transparent hugepages: never")]
    if host.thp == "madvise":
        return [Result("thp", "OK", "transparent hugepages: madvise (only for programs that ask; never is what "
                       "tuned sets)")]
    return [Result("thp", "WARN", f"transparent hugepages: {host.thp}: khugepaged compacts and collapses memory "
                   "behind every process's back, a source of multi-millisecond stalls",
                   "echo never > /sys/kernel/mm/transparent_hugepage/enabled; to keep it: "
                   + grub_dropin({"transparent_hugepage": "never"}))]


def _memlock(host: Host, p: Plan) -> list[Result]:
    if p.vdev and p.nic is None:
        return [Result("memlock", "OK", f"vdev {p.vdev.split(',', 1)[0]}: no device pins memory for DMA")]
    need = (sum(p.socket_mem.values()) or p.memory_mb) << 20
    if not host.memlock_known:
        return [Result("memlock", "WARN", "could not read the memlock limit (proc/self/limits)",
                       "ulimit -l shows it; make it unlimited for fh (LimitMEMLOCK=infinity in its systemd unit)")]
    if host.memlock is None:
        return [Result("memlock", "OK", "memlock: unlimited")]
    if host.memlock >= need:
        return [Result("memlock", "OK", f"memlock: {host.memlock >> 20} MB, enough for {need >> 20} MB")]
    return [Result("memlock", "WARN", f"memlock is {host.memlock >> 10} KB, less than the {need >> 20} MB DPDK pins "
                   "for DMA (vfio-pci and rdma-core lock it): start-up fails unless fh runs as root (CAP_IPC_LOCK)",
                   "ulimit -l unlimited in the shell that starts fh; under systemd: LimitMEMLOCK=infinity in the fh "
                   "unit; for a user: echo '@fh - memlock unlimited' > /etc/security/limits.d/fh.conf")]


def _from_plan(p: Plan, item: str) -> list[Result]:
    fs = [f for f in p.findings if f.item == item]
    if fs:
        return [Result(f.item, f.level, f.message, f.fix) for f in fs]
    return [Result(item, "OK", p.summary.get(item, "-"))]


def check(host: Host, p: Plan, cfg=None) -> list[Result]:
    from .. import privilege

    out: list[Result] = []
    for item in ("hugepages", "nic", "cores"):
        out += _from_plan(p, item)
    for fn in (_irqs, _governor, _thp, _memlock):
        out += fn(host, p)
    return out + privilege.check(host, cfg)  # user, access, metrics: a run without root


def status(results: list[Result]) -> int:
    return max((LEVELS[r.level] for r in results), default=0)


def run(host: Host, cfg=None, pci: str | None = None) -> tuple[Plan, list[Result]]:
    p = planmod.plan(host, cfg, pci=pci)
    return p, check(host, p, cfg)


def kernel_args(p: Plan, results: list[Result]) -> dict[str, str]:
    """Every kernel parameter the fixes add: the plan's, and transparent_hugepage=never."""
    args = dict(p.kernel_args)
    if any(r.item == "thp" and r.level != "OK" for r in results):
        args["transparent_hugepage"] = "never"
    return args


def to_json(host: Host, p: Plan, results: list[Result]) -> str:
    args = kernel_args(p, results)
    return json.dumps({"root": host.root, "status": status(results), "results": [r.to_dict() for r in results],
                       "kernel_args": args, "grub_dropin": grub_dropin(args) if args else None,
                       "plan": p.to_dict()})


def text(host: Host, p: Plan, results: list[Result]) -> str:
    lines = [f"fh check: {planmod.host_line(host)}; lcore {','.join(map(str, p.lcores))} on node {p.node}"]
    for r in results:
        if r.level == "OK":
            lines.append(f"{'OK':<5} {r.item:<10} {r.message}")
        else:
            lines += planmod.finding_lines(Finding(r.item, r.level, r.message, r.fix))
    w = sum(r.level == "WARN" for r in results)
    f = sum(r.level == "FAIL" for r in results)
    if planmod.several_kernel_fixes(results):
        dropin = grub_dropin(kernel_args(p, results))
        lines.append(f"kernel parameters for all the fixes above, in one drop-in: {dropin}")
    if p.unread:
        lines.append(f"could not read (taken as absent): {', '.join(p.unread)}")
    verdict = {0: "ready", 1: "runs, with warnings", 2: "not ready"}[status(results)]
    lines.append(f"{f} failure{'s' if f != 1 else ''}, {w} warning{'s' if w != 1 else ''}: {verdict} "
                 f"(exit {status(results)})")
    return "\n".join(lines)
