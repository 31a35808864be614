"""`fh ports`: the DPDK ports a set of EAL arguments gives, read through the project's own bindings
(handler._dpdk) in a child process (handler.host.ports_child), so the CLI never holds EAL state.

Each reading uses its own EAL file prefix (fh-ports-PID) and, with hugepages, --in-memory: it leaves no file
behind and never meets a running data plane's shared configuration. What EAL cannot do (no hugepages, a
device that is busy or unknown, no port at all) becomes one line naming the cause and the fix (PortsError).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

from ..errors import FhError

NO_HUGE_MB = 128          # -m with --no-huge: the child allocates at most one small mempool per port
BUILD_FIX = ("apt-get install libdpdk-dev pkg-config, then rebuild fh (bash scripts/setup.sh, or pip install "
             "--no-build-isolation -e .)")
SPEC_HELP = ("a --vdev spec is DRIVER<N>[,key=value...] (net_pcap0,rx_pcap=FILE; net_af_packet0,iface=IF; "
             "net_null0), a --pci address DOMAIN:BUS:DEVICE.FUNCTION (0000:01:00.0)")


class PortsError(FhError, ValueError):
    """One line: what failed, why, and what to do; `fh` prints it and exits 2."""


@dataclass
class Reading:
    ports: list[dict]
    warnings: list[str] = field(default_factory=list)
    eal: list[str] = field(default_factory=list)


def unavailable() -> str | None:
    """Why the DPDK bindings cannot be used here, or None. Does not load DPDK into this process."""
    try:
        found = importlib.util.find_spec("handler._dpdk") is not None
    except ImportError as e:  # an editable install whose rebuild failed
        return f"the DPDK bindings (handler._dpdk) cannot be loaded: {str(e).splitlines()[0]}"
    except ValueError:
        found = False
    if found:
        return None
    return f"the DPDK bindings (handler._dpdk) are not built: libdpdk was not found when fh was built; {BUILD_FIX}"


def _lcore() -> int:
    """The lcore of the reading: the first CPU this process may use (not the poll core of a data plane, which
    fh plan and replay place on the last one)."""
    return min(os.sched_getaffinity(0))


def eal_args(vdev: list[str] | tuple[str, ...] = (), pci: list[str] | tuple[str, ...] = (), no_huge: bool = False,
             prefix: str | None = None) -> list[str]:
    """EAL arguments for one reading: its own file prefix, one lcore, no telemetry; hugepages in memory only
    (--in-memory), or ordinary pages (--no-huge, which EAL does not allow with --in-memory, so --no-shconf);
    the PCI devices named (-a), else no PCI scan at all (a PCI scan would probe every device bound to a
    DPDK driver, including a NIC another process drives through uio); the virtual devices."""
    args = ["--file-prefix", prefix or f"fh-ports-{os.getpid()}", "-l", str(_lcore()), "--no-telemetry"]
    args += ["--no-huge", "--no-shconf", "-m", str(NO_HUGE_MB)] if no_huge else ["--in-memory"]
    if pci:
        for a in pci:
            args += ["-a", a]
    else:
        args.append("--no-pci")
    for v in vdev:
        args += ["--vdev", v]
    return args


DPDK_PCI_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio", "mlx4_core", "mlx5_core")  # mlx: bifurcated


def check_pci(addr: str, root: str = "/") -> str:
    """The full address of a PCI device DPDK may probe, or PortsError: a device a kernel network driver owns
    is refused before EAL touches it (a DPDK driver's probe of such a device can disturb it)."""
    full = addr if addr.count(":") == 2 else f"0000:{addr}"
    dev = os.path.join(root, "sys/bus/pci/devices", full)
    if not os.path.exists(dev):
        raise PortsError(f"--pci {addr}: no such PCI device (lspci -D lists them)")
    drv = os.path.join(dev, "driver")
    name = os.path.basename(os.path.realpath(drv)) if os.path.exists(drv) else None
    if name is None:
        raise PortsError(f"--pci {addr}: no driver is bound to it; bind it to vfio-pci "
                         f"(dpdk-devbind.py -b vfio-pci {full})")
    if name not in DPDK_PCI_DRIVERS:
        raise PortsError(f"--pci {addr}: the kernel's {name} driver owns it; bind it to vfio-pci first "
                         f"(dpdk-devbind.py -b vfio-pci {full}; its interface leaves the kernel)")
    return full


def _as_list(v) -> list[str]:
    if not v:
        return []
    return [v] if isinstance(v, str) else [str(x) for x in v]


def config_devices(cfg) -> tuple[list[str], list[str], bool]:
    """(vdevs, pci addresses, no_huge) of a loaded configuration (handler.config.load): its nic and
    memory.hugepages. The memory size is not taken: a reading needs little, and -m of the data plane's size
    could fail on a host whose hugepages that data plane already holds."""
    return (_as_list(getattr(cfg, "nic_vdev", None)), _as_list(getattr(cfg, "nic_pci", None)),
            not getattr(cfg, "hugepages", True))


# -- the child's stderr, read for a diagnosis ------------------------------------------------------------

_NOISE = re.compile(r"Detected (CPU lcores|NUMA nodes|shared linkage|static linkage)|Selected IOVA mode|"
                    r"Physical addresses are unavailable|VFIO support initialized|Probe PCI driver|Using IOMMU type|"
                    r"No available \d+ kB hugepages reported|Multi-process socket|Telemetry|"
                    r"^Usage:|options:$|^EAL Linux|^\[NOTE")


def eal_messages(stderr: str) -> list[str]:
    """The lines of EAL and its drivers worth showing: not its start-up notes, not its usage text."""
    out = []
    for line in stderr.splitlines():
        if not line.strip() or line[:1] in (" ", "\t") or _NOISE.search(line.strip()):
            continue
        out.append(line.strip())
    return out


def _join(lines: list[str], n: int = 2) -> str:
    seen: list[str] = []
    for l in lines:
        if l not in seen:
            seen.append(l)
    return "; ".join(seen[-n:])


def _probe_failures(msgs: list[str]) -> list[str]:
    """One phrase per device the EAL could not start: the driver's own message and the device."""
    out = []
    for i, m in enumerate(msgs):
        g = re.search(r"failed to initialize (\S+) device", m)
        if g:
            why = [x for x in msgs[max(0, i - 2):i] if "failed to initialize" not in x and "probe failed" not in x]
            out.append(f"{g.group(1)} failed to start" + (f" ({_join(why, 1)})" if why else ""))
            continue
        g = re.search(r"Requested device (\S+) cannot be used", m)
        if g:
            why = [x for x in msgs[max(0, i - 3):i] if "cannot be used" not in x]
            out.append(f"PCI device {g.group(1)} cannot be used" + (f" ({_join(why, 1)})" if why else "") +
                       ": is a data plane using it (fh status)? Is it bound to vfio-pci (dpdk-devbind.py --status)?")
    return out


def diagnose(result: dict | None, stderr: str, eal: list[str], rc: int | None = None) -> str:
    """The one line for a reading that gave no port, from the child's answer and its stderr."""
    msgs = eal_messages(stderr)
    if result is None:
        tail = _join(msgs, 2) or "no message"
        return f"the DPDK reading process failed (exit status {rc}): {tail}"
    if result.get("stage") == "import":
        return f"the DPDK bindings (handler._dpdk) cannot be loaded ({result.get('error')}); {BUILD_FIX}"
    if not result.get("ok"):
        text = "\n".join(msgs)
        err = result.get("error", "?")
        if re.search(r"Unable to parse device|failed to parse device|invalid device|Cannot parse", text, re.I):
            bad = [m for m in msgs if re.search(r"parse device|invalid device", m, re.I)]
            return f"bad device: {_join(bad, 1)}; {SPEC_HELP}"
        if re.search(r"hugepage", text, re.I):
            return (f"EAL cannot start: no free hugepages ({_join([m for m in msgs if 'ugepage' in m], 1)}); "
                    "reserve some (fh check says how, e.g. echo 512 > "
                    "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) or read the ports with --no-huge")
        if re.search(r"Cannot init memory|Cannot allocate|not enough memory", text, re.I):
            return (f"EAL cannot start: no memory ({_join(msgs, 1)}); free some hugepages, or use --no-huge")
        if re.search(r"Invalid 'command line' arguments", text):
            why = [m for m in msgs if "Invalid 'command line'" not in m]
            return f"EAL refused its arguments ({_join(why, 1) or err}): {' '.join(eal)}"
        return f"EAL cannot start ({err}): {_join(msgs, 2) or 'no message'}"
    failures = _probe_failures(msgs)
    if failures:
        return "no DPDK port: " + "; ".join(failures)
    named = [eal[i + 1] for i, a in enumerate(eal[:-1]) if a in ("-a", "--allow", "--vdev")]
    if not named:
        return "no DPDK port: no device given; name one with --pci ADDR, --vdev SPEC or --config FILE"
    pci = [eal[i + 1] for i, a in enumerate(eal[:-1]) if a in ("-a", "--allow")]
    if pci:
        return (f"no DPDK port: no DPDK driver took {', '.join(pci)}; bind it to vfio-pci (dpdk-devbind.py -b "
                "vfio-pci ADDR; dpdk-devbind.py --status shows the bindings), and make sure no data plane uses it "
                "(fh status)")
    return f"no DPDK port from {', '.join(named)}" + (f": {_join(msgs, 2)}" if msgs else "")


# -- the reading ------------------------------------------------------------------------------------------

def child_argv(eal: list[str], start_s: float = 0) -> list[str]:
    argv = [sys.executable, "-m", "handler.host.ports_child"]
    if start_s > 0:
        argv += ["--start-ms", str(max(1, int(start_s * 1000)))]
    return argv + ["--", *eal]


def read(eal: list[str], start_s: float = 0, timeout: float = 120) -> Reading:
    """Run the child with these EAL arguments. Ports, and a warning per device that did not start; no port at
    all raises PortsError with the diagnosis."""
    why = unavailable()
    if why:
        raise PortsError(why)
    try:
        p = subprocess.run(child_argv(eal, start_s), capture_output=True, text=True, timeout=timeout + start_s,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        msgs = eal_messages(e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or ""))
        raise PortsError(f"the DPDK reading process did not finish in {timeout:g} s"
                         + (f": {_join(msgs, 2)}" if msgs else "")) from None
    result = None
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                pass
            break
    if result is None or not result.get("ok") or not result.get("ports"):
        raise PortsError(diagnose(result, p.stderr, eal, p.returncode))
    return Reading(result["ports"], _probe_failures(eal_messages(p.stderr)), eal)


def list_ports(eal: list[str], start_s: float = 0) -> list[dict]:
    """Every port the EAL arguments give, as dicts (see docs/operations.md, fh ports)."""
    return read(eal, start_s).ports


# -- output -----------------------------------------------------------------------------------------------

def _speed(mbps: int | None) -> str:
    if not mbps:
        return ""
    return f"{mbps // 1000}G" if mbps % 1000 == 0 else (f"{mbps / 1000:g}G" if mbps >= 1000 else f"{mbps}M")


def link_text(link: dict | None) -> str:
    if link is None:
        return "?"
    words = ["up" if link["up"] else "down", _speed(link.get("speed_mbps"))]
    if link["up"] and link.get("duplex") == "half":
        words.append("half")
    return " ".join(w for w in words if w)


def table(ports: list[dict]) -> str:
    head = ("id", "name", "driver", "socket", "mac", "link", "rx packets", "tx packets", "missed", "errors")
    rows = []
    for p in ports:
        st = p.get("stats") or {}
        rows.append((str(p["id"]), p.get("name", "?"), p.get("driver", "?"),
                     "-" if p.get("socket") is None else str(p["socket"]), p.get("mac") or "?",
                     link_text(p.get("link")), str(st.get("ipackets", "?")), str(st.get("opackets", "?")),
                     str(st.get("imissed", 0) + st.get("rx_nombuf", 0)) if st else "?",
                     str(st.get("ierrors", 0) + st.get("oerrors", 0)) if st else "?"))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    right = {0, 6, 7, 8, 9}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                               enumerate(zip(r, widths))).rstrip() for r in (head, *rows))
