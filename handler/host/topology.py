"""What a host is, read from sysfs and procfs: NUMA nodes, CPUs and their SMT siblings, the kernel command
line (isolation, hugepages, IOMMU), hugepage pools per node, PCI NICs with their node, driver and IOMMU
group, hugetlbfs mounts, transparent hugepages, governors, IRQ affinity, irqbalance and the memlock limit.

Everything is read under a root directory (default "/"), so tests point it at fixture trees in the shape of
real sysfs and proc (tests/fixtures/hosts/). Only two things depend on the root being the real one: link
states come from netlink (pyroute2) and the memlock limit from getrlimit; under any other root they come from
files (sys/class/net/IF/operstate, proc/self/limits). A file that is missing or unreadable is an absence,
never an error: `fh plan` and `fh check` say what they could not see."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

PCI_ADDR = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")

VENDORS = {0x8086: "Intel", 0x15b3: "Mellanox", 0x14e4: "Broadcom", 0x1af4: "virtio", 0x1077: "QLogic",
           0x19ee: "Netronome", 0x1924: "Solarflare", 0x1d0f: "Amazon", 0x1137: "Cisco", 0x10ec: "Realtek",
           0x1fc9: "Tehuti", 0x177d: "Cavium"}
MELLANOX = 0x15b3
DPDK_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio")  # drivers that hand a device to a DPDK PMD
BIFURCATED = ("mlx5_core", "mlx4_core")  # kernel drivers a DPDK PMD shares the device with (via rdma-core)
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/lib64", "usr/lib", "lib64",
            "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu")


# ---- CPU lists ------------------------------------------------------------------------------------------


def parse_cpulist(text: str, all_cpus: frozenset[int] = frozenset()) -> frozenset[int]:
    """A kernel CPU list: "0-3,8,10-15", "0-31:2/8" (used/group), "all", "N" (the last CPU); "" or "(null)"
    is empty. Raises ValueError on anything else."""
    text = text.strip()
    if text in ("", "(null)"):
        return frozenset()
    if text == "all":
        return frozenset(all_cpus)
    last = max(all_cpus) if all_cpus else None
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        stride = None
        if ":" in part:
            part, groups = part.split(":", 1)
            used, size = groups.split("/", 1)
            stride = (int(used), int(size))
        ends = [last if e == "N" and last is not None else int(e) for e in part.split("-", 1)]
        lo, hi = ends[0], ends[-1]
        if hi < lo:
            raise ValueError(f"CPU range {part!r} runs backwards")
        for c in range(lo, hi + 1):
            if stride is None or (c - lo) % stride[1] < stride[0]:
                out.add(c)
    return frozenset(out)


def format_cpulist(cpus) -> str:
    """The shortest kernel CPU list for a set: {0,1,2,3,8} -> "0-3,8"; empty -> ""."""
    cs = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(cs):
        j = i
        while j + 1 < len(cs) and cs[j + 1] == cs[j] + 1:
            j += 1
        runs.append(str(cs[i]) if i == j else f"{cs[i]}-{cs[j]}")
        i = j + 1
    return ",".join(runs)


def parse_cpumask(text: str) -> frozenset[int]:
    """A hex CPU mask as the kernel and irqbalance write it: "ff,00000000" (comma-separated 32-bit words)."""
    v = int(text.strip().replace(",", "") or "0", 16)
    return frozenset(i for i in range(v.bit_length()) if v >> i & 1)


def size_kb(text: str) -> int:
    """A page size as the kernel command line and mount options write it: "1G", "2M", "1024M", "2048k"."""
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]?)[bB]?", text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    n, unit = int(m.group(1)), m.group(2).lower()
    return n // 1024 if not unit else n * {"k": 1, "m": 1024, "g": 1 << 20}[unit]


def size_text(kb: int) -> str:
    """2048 -> "2M", 1048576 -> "1G"."""
    if kb % (1 << 20) == 0:
        return f"{kb >> 20}G"
    if kb % 1024 == 0:
        return f"{kb >> 10}M"
    return f"{kb}K"


# ---- the kernel command line --------------------------------------------------------------------------

ISOLCPUS_FLAGS = ("domain", "managed_irq", "nohz")


@dataclass(frozen=True)
class Cmdline:
    raw: str
    params: dict[str, list[str]]  # every occurrence of key=value (a bare flag has value "")
    isolcpus: frozenset[int] | None  # None: no isolcpus=
    isolcpus_flags: tuple[str, ...]  # as given; none means "domain"
    nohz_full: frozenset[int] | None
    rcu_nocbs: frozenset[int] | None
    irqaffinity: frozenset[int] | None
    default_hugepagesz_kb: int | None
    hugepages: tuple[tuple[int | None, int | None, int], ...]  # (size kB or None: default, node or None, pages)
    errors: tuple[str, ...]  # parameters that did not parse

    def get(self, key: str) -> str | None:
        v = self.params.get(key)
        return v[-1] if v else None

    @property
    def isolcpus_domain(self) -> frozenset[int]:
        """CPUs isolcpus= takes out of the scheduler's balancing domains (domain, or no flag: the default)."""
        if self.isolcpus is None:
            return frozenset()
        return self.isolcpus if not self.isolcpus_flags or "domain" in self.isolcpus_flags else frozenset()

    @property
    def iommu(self) -> dict[str, str]:
        return {k: self.get(k) for k in ("intel_iommu", "amd_iommu", "iommu") if self.get(k) is not None}


def parse_cmdline(raw: str, all_cpus: frozenset[int] = frozenset()) -> Cmdline:
    """Parse /proc/cmdline. Words after a lone "--" belong to init and are ignored, as the kernel does."""
    params: dict[str, list[str]] = {}
    errors: list[str] = []
    words = raw.split()
    if "--" in words:
        words = words[:words.index("--")]
    hugepages: list[tuple[int | None, int | None, int]] = []
    pending_size: int | None = None
    for w in words:
        k, _, v = w.partition("=")
        params.setdefault(k, []).append(v)
        try:
            if k == "hugepagesz":
                pending_size = size_kb(v)
            elif k == "hugepages":
                for part in v.split(","):
                    if ":" in part:
                        node, n = part.split(":", 1)
                        hugepages.append((pending_size, int(node), int(n)))
                    else:
                        hugepages.append((pending_size, None, int(part)))
        except ValueError:
            errors.append(w)

    def cpus(key: str) -> frozenset[int] | None:
        v = params.get(key)
        if not v:
            return None
        out: set[int] = set()
        for text in v:  # rcu_nocbs= may be repeated; each occurrence adds CPUs
            try:
                out |= parse_cpulist(text, all_cpus)
            except ValueError:
                errors.append(f"{key}={text}")
        return frozenset(out)

    iso, flags = None, ()
    if params.get("isolcpus"):
        text = params["isolcpus"][-1]
        parts = text.split(",")
        fl = []
        while parts and parts[0] in ISOLCPUS_FLAGS:
            fl.append(parts.pop(0))
        try:
            iso = parse_cpulist(",".join(parts), all_cpus)
        except ValueError:
            errors.append(f"isolcpus={text}")
            iso = frozenset()
        flags = tuple(fl)
    dh = None
    if params.get("default_hugepagesz"):
        try:
            dh = size_kb(params["default_hugepagesz"][-1])
        except ValueError:
            errors.append("default_hugepagesz=" + params["default_hugepagesz"][-1])
    return Cmdline(raw=raw.strip(), params=params, isolcpus=iso, isolcpus_flags=flags, nohz_full=cpus("nohz_full"),
                   rcu_nocbs=cpus("rcu_nocbs"), irqaffinity=cpus("irqaffinity"), default_hugepagesz_kb=dh,
                   hugepages=tuple(hugepages), errors=tuple(errors))


# ---- the host -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpu:
    id: int
    node: int
    package: int | None
    core: int | None
    siblings: frozenset[int]  # including itself
    governor: str | None  # None: no cpufreq (a VM, or the firmware owns the frequency)


@dataclass(frozen=True)
class HugePool:
    node: int
    size_kb: int
    total: int
    free: int


@dataclass(frozen=True)
class PciDevice:
    addr: str
    vendor: int
    device: int
    cls: int
    numa_node: int  # -1: the firmware does not say
    driver: str | None
    iommu_group: int | None
    netdevs: tuple[str, ...] = ()
    rdma: tuple[str, ...] = ()  # infiniband/ names (mlx5_0): the RDMA side of a Mellanox NIC is up

    @property
    def is_ethernet(self) -> bool:
        return self.cls >> 8 == 0x0200

    @property
    def is_mellanox(self) -> bool:
        return self.vendor == MELLANOX

    @property
    def vendor_name(self) -> str:
        return VENDORS.get(self.vendor, f"vendor {self.vendor:04x}")

    @property
    def ids(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"


@dataclass(frozen=True)
class Mount:
    source: str
    path: str
    fstype: str
    options: tuple[str, ...]


@dataclass
class Host:
    root: str
    nodes: dict[int, frozenset[int]]
    cpus: dict[int, Cpu]
    online: frozenset[int]
    isolated: frozenset[int]  # /sys/devices/system/cpu/isolated
    nohz_full: frozenset[int] | None  # /sys/devices/system/cpu/nohz_full (None: the kernel has no such file)
    cmdline: Cmdline
    hugepages: list[HugePool]
    pci: dict[str, PciDevice]
    netdevs: dict[str, str | None]  # interface -> PCI address (None: virtual)
    links: dict[str, str]  # interface -> operstate (up, down, unknown, ...)
    mounts: list[Mount]
    thp: str | None  # always, madvise, never
    irqs: dict[int, frozenset[int]]  # IRQ -> the CPUs it is delivered to (effective affinity where known)
    irqbalance_running: bool
    irqbalance_config: str | None  # the file it reads (etc/default/irqbalance or etc/sysconfig/irqbalance)
    irqbalance_banned: frozenset[int] | None
    systemd_affinity: frozenset[int] | None  # CPUAffinity= in /etc/systemd/system.conf (tuned writes it)
    memlock: int | None  # soft RLIMIT_MEMLOCK in bytes; None: unlimited
    memlock_known: bool
    iommu_groups: int
    vfio_noiommu: bool
    cpu_vendor: str | None  # GenuineIntel, AuthenticAMD
    libs: dict[str, str]  # library name -> path under the root, for rdma-core: libibverbs.so.1, libmlx5.so.1
    unread: list[str] = field(default_factory=list)  # what could not be read, for the report
    default_route: frozenset[str] = frozenset()  # interfaces that carry a default route (/proc/net/route, ipv6_route)

    @property
    def real(self) -> bool:
        return os.path.realpath(self.root) == "/"

    def path(self, p: str) -> str:
        return _join(self.root, p)

    @property
    def partitioned(self) -> frozenset[int]:
        """CPUs the kernel keeps other work off: isolcpus (domain), sysfs `isolated`, and nohz_full CPUs that
        systemd's CPUAffinity leaves out (the tuned cpu-partitioning profile's way)."""
        out = set(self.isolated) | set(self.cmdline.isolcpus_domain)
        if self.systemd_affinity is not None:
            out |= set(self.nohz_full_cpus) - set(self.systemd_affinity)
        return frozenset(out)

    @property
    def nohz_full_cpus(self) -> frozenset[int]:
        if self.nohz_full is not None:
            return self.nohz_full
        return self.cmdline.nohz_full or frozenset()

    @property
    def rcu_nocbs_cpus(self) -> frozenset[int]:
        """rcu_nocbs=, and nohz_full (the kernel offloads RCU callbacks of nohz_full CPUs too)."""
        return frozenset((self.cmdline.rcu_nocbs or frozenset()) | self.nohz_full_cpus)

    def node_of(self, cpu: int) -> int | None:
        c = self.cpus.get(cpu)
        return c.node if c else None

    def pools(self, node: int) -> list[HugePool]:
        return sorted((p for p in self.hugepages if p.node == node), key=lambda p: -p.size_kb)

    def hugetlbfs(self, kb: int) -> list[Mount]:
        """hugetlbfs mounts serving pages of this size."""
        out = []
        for m in self.mounts:
            if m.fstype != "hugetlbfs":
                continue
            ps = next((o.split("=", 1)[1] for o in m.options if o.startswith("pagesize=")), None)
            try:
                mkb = size_kb(ps) if ps else self.default_hugepage_kb
            except ValueError:
                continue
            if mkb == kb:
                out.append(m)
        return out

    @property
    def default_hugepage_kb(self) -> int:
        return self.cmdline.default_hugepagesz_kb or 2048

    def nics(self) -> list[PciDevice]:
        return [d for d in self.pci.values() if d.is_ethernet]

    @property
    def threads_per_core(self) -> int:
        return max((len(c.siblings) for c in self.cpus.values()), default=1)


def _join(root: str, p: str) -> str:
    return os.path.join(root, p.lstrip("/"))


def _read(root: str, p: str, unread: list[str] | None = None) -> str | None:
    try:
        with open(_join(root, p)) as f:
            return f.read()
    except FileNotFoundError:  # absent: the kernel has no such thing here
        return None
    except (OSError, UnicodeDecodeError):  # there, but not for us: worth saying
        if unread is not None:
            unread.append(p)
        return None


def _int(text: str | None, base: int = 10) -> int | None:
    try:
        return int(text.strip(), base) if text is not None else None
    except ValueError:
        return None


def _list(root: str, p: str) -> list[str]:
    try:
        return sorted(os.listdir(_join(root, p)))
    except OSError:
        return []


def _numbered(names, prefix: str) -> list[int]:
    return sorted(int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit())


def _link_name(root: str, p: str) -> str | None:
    try:
        return os.path.basename(os.readlink(_join(root, p)))
    except OSError:
        return None


def _read_cpus(root: str, unread: list[str]) -> tuple[dict[int, frozenset[int]], dict[int, Cpu], frozenset[int]]:
    cpu_ids = _numbered(_list(root, "/sys/devices/system/cpu"), "cpu")
    online_text = _read(root, "/sys/devices/system/cpu/online", unread)
    try:
        online = parse_cpulist(online_text) if online_text is not None else frozenset(cpu_ids)
    except ValueError:
        online = frozenset(cpu_ids)
    nodes: dict[int, frozenset[int]] = {}
    for n in _numbered(_list(root, "/sys/devices/system/node"), "node"):
        text = _read(root, f"/sys/devices/system/node/node{n}/cpulist")
        try:
            nodes[n] = parse_cpulist(text or "")
        except ValueError:
            unread.append(f"/sys/devices/system/node/node{n}/cpulist")
    if not nodes:  # a kernel without NUMA: one node holds every CPU
        nodes = {0: frozenset(cpu_ids) or online}
    node_of = {c: n for n, cs in nodes.items() for c in cs}
    cpus: dict[int, Cpu] = {}
    for c in cpu_ids:
        base = f"/sys/devices/system/cpu/cpu{c}"
        sib_text = _read(root, f"{base}/topology/thread_siblings_list")
        try:
            sib = parse_cpulist(sib_text) if sib_text else frozenset({c})
        except ValueError:
            sib = frozenset({c})
        gov = _read(root, f"{base}/cpufreq/scaling_governor")
        cpus[c] = Cpu(id=c, node=node_of.get(c, 0), package=_int(_read(root, f"{base}/topology/physical_package_id")),
                      core=_int(_read(root, f"{base}/topology/core_id")), siblings=sib | {c},
                      governor=gov.strip() if gov else None)
    return nodes, cpus, online


def _read_hugepages(root: str, nodes) -> list[HugePool]:
    pools = []
    for n in nodes:
        base = f"/sys/devices/system/node/node{n}/hugepages"
        for d in _list(root, base):
            m = re.fullmatch(r"hugepages-(\d+)kB", d)
            if not m:
                continue
            total = _int(_read(root, f"{base}/{d}/nr_hugepages"))
            free = _int(_read(root, f"{base}/{d}/free_hugepages"))
            pools.append(HugePool(node=n, size_kb=int(m.group(1)), total=total or 0, free=free or 0))
    return pools


def _read_pci(root: str) -> dict[str, PciDevice]:
    out = {}
    for addr in _list(root, "/sys/bus/pci/devices"):
        if not PCI_ADDR.match(addr):
            continue
        base = f"/sys/bus/pci/devices/{addr}"
        vendor, device, cls = (_int(_read(root, f"{base}/{k}"), 16) for k in ("vendor", "device", "class"))
        if vendor is None or device is None or cls is None:
            continue
        node = _int(_read(root, f"{base}/numa_node"))
        group = _link_name(root, f"{base}/iommu_group")
        out[addr] = PciDevice(addr=addr, vendor=vendor, device=device, cls=cls,
                              numa_node=-1 if node is None else node, driver=_link_name(root, f"{base}/driver"),
                              iommu_group=_int(group), rdma=tuple(_list(root, f"{base}/infiniband")))
    return out


def _pci_of(root: str, iface: str) -> str | None:
    """The PCI address behind a network interface: the last PCI-address component of the path its
    `device` link resolves to (virtio-net sits one level below its PCI function, as virtio0)."""
    dev = _join(root, f"/sys/class/net/{iface}/device")
    if not os.path.lexists(dev):
        return None
    real = os.path.realpath(dev)
    for part in reversed(real.split(os.sep)):
        if PCI_ADDR.match(part):
            return part
    return None


def _read_default_route(root: str) -> frozenset[str]:
    """Interfaces with a default route (IPv4 destination and mask 0; IPv6 ::/0): the host's way out, usually
    its management connection, which must never be handed to DPDK."""
    out = set()
    for line in (_read(root, "/proc/net/route") or "").splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000":
            out.add(f[0])
    for line in (_read(root, "/proc/net/ipv6_route") or "").splitlines():
        f = line.split()
        if len(f) >= 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo":
            out.add(f[9])
    return frozenset(out)


def _read_links(root: str, netdevs, real: bool) -> dict[str, str]:
    links = {}
    if real:
        try:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                for link in ipr.get_links():
                    name = link.get_attr("IFLA_IFNAME")
                    if name:
                        links[name] = str(link.get_attr("IFLA_OPERSTATE") or "unknown").lower()
        except Exception:  # no pyroute2, no netlink (a sandbox): sysfs says the same
            links = {}
    for n in netdevs:
        if n not in links:
            s = _read(root, f"/sys/class/net/{n}/operstate")
            links[n] = s.strip() if s else "unknown"
    return links


def _read_mounts(root: str, unread) -> list[Mount]:
    out = []
    for line in (_read(root, "/proc/mounts", unread) or "").splitlines():
        f = line.split()
        if len(f) >= 4:
            out.append(Mount(source=f[0], path=f[1].replace("\\040", " "), fstype=f[2], options=tuple(f[3].split(","))))
    return out


def _read_irqs(root: str) -> dict[int, frozenset[int]]:
    irqs = {}
    for n in _list(root, "/proc/irq"):
        if not n.isdigit():
            continue
        text = _read(root, f"/proc/irq/{n}/effective_affinity_list") or _read(root, f"/proc/irq/{n}/smp_affinity_list")
        if text is None or not text.strip():
            continue
        try:
            irqs[int(n)] = parse_cpulist(text)
        except ValueError:
            continue
    return irqs


def _irqbalance(root: str) -> tuple[bool, str | None, frozenset[int] | None]:
    running = False
    for pid in _list(root, "/proc"):
        if pid.isdigit() and (_read(root, f"/proc/{pid}/comm") or "").strip() == "irqbalance":
            running = True
            break
    cfg, banned = None, None
    for p in ("/etc/default/irqbalance", "/etc/sysconfig/irqbalance"):
        text = _read(root, p)
        if text is None:
            continue
        cfg = p
        for line in text.splitlines():
            line = line.strip()
            m = re.fullmatch(r"(?:export\s+)?IRQBALANCE_BANNED_(CPULIST|CPUS)\s*=\s*\"?([^\"#]*)\"?\s*(#.*)?", line)
            if not m:
                continue
            try:
                cpus = parse_cpulist(m.group(2)) if m.group(1) == "CPULIST" else parse_cpumask(m.group(2))
            except ValueError:
                continue
            banned = (banned or frozenset()) | cpus
        break
    return running, cfg, banned


def _systemd_affinity(root: str) -> frozenset[int] | None:
    files = ["/etc/systemd/system.conf"] + [f"/etc/systemd/system.conf.d/{n}" for n in
                                            _list(root, "/etc/systemd/system.conf.d") if n.endswith(".conf")]
    aff = None
    for p in files:
        for line in (_read(root, p) or "").splitlines():
            m = re.fullmatch(r"\s*CPUAffinity\s*=\s*(.*?)\s*", line)
            if m:
                try:  # systemd takes "0-3 8" or "0-3,8"
                    aff = parse_cpulist(",".join(m.group(1).split()))
                except ValueError:
                    pass
    return aff or None


def _memlock(root: str, real: bool) -> tuple[int | None, bool]:
    if real:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        return (None if soft == resource.RLIM_INFINITY else soft), True
    for line in (_read(root, "/proc/self/limits") or "").splitlines():
        if line.startswith("Max locked memory"):
            soft = line[len("Max locked memory"):].split()[0]
            return (None if soft == "unlimited" else int(soft)), True
    return None, False


def read_host(root: str = "/") -> Host:
    """Read a host under `root`. Never raises for a missing or unreadable file."""
    root = str(root)
    real = os.path.realpath(root) == "/"
    unread: list[str] = []
    nodes, cpus, online = _read_cpus(root, unread)
    all_cpus = frozenset(cpus) or online
    cmd = parse_cmdline(_read(root, "/proc/cmdline", unread) or "", all_cpus)
    iso_text = _read(root, "/sys/devices/system/cpu/isolated", unread)
    nohz_text = _read(root, "/sys/devices/system/cpu/nohz_full")
    try:
        isolated = parse_cpulist(iso_text or "", all_cpus)
    except ValueError:
        isolated = frozenset()
    try:
        nohz = parse_cpulist(nohz_text, all_cpus) if nohz_text is not None else None
    except ValueError:
        nohz = None
    pci = _read_pci(root)
    netdevs = {n: _pci_of(root, n) for n in _list(root, "/sys/class/net")}
    by_pci: dict[str, list[str]] = {}
    for n, a in netdevs.items():
        if a:
            by_pci.setdefault(a, []).append(n)
    for a, names in by_pci.items():
        if a in pci:
            d = pci[a]
            pci[a] = PciDevice(**{**d.__dict__, "netdevs": tuple(sorted(names))})
    thp_text = _read(root, "/sys/kernel/mm/transparent_hugepage/enabled")
    thp = None
    if thp_text:
        m = re.search(r"\[(\w+)\]", thp_text)
        thp = m.group(1) if m else thp_text.strip()
    running, ib_cfg, banned = _irqbalance(root)
    memlock, known = _memlock(root, real)
    noiommu = (_read(root, "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode") or "N").strip() in ("Y", "1")
    vendor = None
    for line in (_read(root, "/proc/cpuinfo") or "").splitlines():
        if line.startswith("vendor_id"):
            vendor = line.split(":", 1)[1].strip()
            break
    libs = {}
    for lib in ("libibverbs.so.1", "libmlx5.so.1"):
        for d in LIB_DIRS:
            if os.path.exists(_join(root, f"/{d}/{lib}")):
                libs[lib] = f"/{d}/{lib}"
                break
    return Host(root=root, nodes=nodes, cpus=cpus, online=online, isolated=isolated, nohz_full=nohz, cmdline=cmd,
                hugepages=_read_hugepages(root, nodes), pci=pci, netdevs=netdevs,
                links=_read_links(root, netdevs, real), mounts=_read_mounts(root, unread), thp=thp,
                irqs=_read_irqs(root), irqbalance_running=running, irqbalance_config=ib_cfg,
                irqbalance_banned=banned, systemd_affinity=_systemd_affinity(root), memlock=memlock,
                memlock_known=known, iommu_groups=len(_list(root, "/sys/kernel/iommu_groups")),
                vfio_noiommu=noiommu, cpu_vendor=vendor, libs=libs, unread=unread,
                default_route=_read_default_route(root))
