"""fh.toml: the instance configuration (docs/config.md). Validated in full before anything starts: every
error names the key, the value and the fix, and unknown keys are errors (a typo must not be ignored)."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """One line: FILE: KEY = VALUE: what is wrong; what to do."""


@dataclass(frozen=True)
class Line:
    name: str
    group: str
    port: int


@dataclass(frozen=True)
class Config:
    path: str
    name: str
    lines: tuple[Line, ...]
    nic_pci: str | None
    nic_vdev: str | None
    rx_core: int | None
    hugepages: bool
    memory_mb: int
    depth: int
    events: int
    max_levels: int
    max_orders: int
    idle: str
    exit_idle_ms: int
    segment: str = field(default="")
    gid: int = -1


_SCHEMA = {
    "instance": {"name"},
    "feed": {"protocol", "lines"},
    "nic": {"pci", "vdev"},
    "cores": {"rx"},
    "memory": {"hugepages", "mb"},
    "shm": {"depth", "events", "max_levels", "max_orders", "dir", "group"},
    "run": {"idle", "exit_idle_ms"},
}


def _parse_ranges(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _ranges(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def online_cpus(root: str = "/") -> set[int]:
    """The online CPUs (not this process's affinity: isolated cores are outside the default affinity, and the
    data plane's EAL moves itself onto them)."""
    try:
        return _parse_ranges(Path(root, "sys/devices/system/cpu/online").read_text())
    except OSError:
        return set(range(os.cpu_count() or 1))


def _err(path: str, key: str, value, what: str) -> ConfigError:
    shown = f" = {value!r}" if value is not None else ""
    return ConfigError(f"{path}: {key}{shown}: {what}")


def _int(path, key, v, lo, hi) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _err(path, key, v, f"must be a whole number from {lo} to {hi}")
    return v


def load(path: str | os.PathLike) -> Config:
    p = str(path)
    try:
        raw = tomllib.loads(Path(p).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file; write one from docs/config.md (an annotated example is there)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    for section, v in raw.items():
        if section not in _SCHEMA:
            raise _err(p, section, None, f"unknown section; the sections are {', '.join(sorted(_SCHEMA))}")
        if not isinstance(v, dict):
            raise _err(p, section, v, "must be a table ([section])")
        for k in v:
            if k not in _SCHEMA[section]:
                raise _err(p, f"{section}.{k}", None,
                           f"unknown key; {section} takes {', '.join(sorted(_SCHEMA[section]))}")
    inst, feed, nic = raw.get("instance", {}), raw.get("feed", {}), raw.get("nic", {})
    cores, mem, shm, run = raw.get("cores", {}), raw.get("memory", {}), raw.get("shm", {}), raw.get("run", {})

    name = inst.get("name", "fh")
    if not isinstance(name, str) or not name or len(name) > 31 or not all(c.isalnum() or c in "-_" for c in name):
        raise _err(p, "instance.name", name, "must be 1-31 letters, digits, '-' or '_' (it names the segment fh-NAME)")
    proto = feed.get("protocol", "moldudp64-itch50")
    if proto != "moldudp64-itch50":
        raise _err(p, "feed.protocol", proto, "the only protocol is \"moldudp64-itch50\"")
    raw_lines = feed.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise _err(p, "feed.lines", raw_lines, "give at least one line: [[feed.lines]] name = \"A\" group = "
                   "\"233.54.12.111\" port = 26477")
    lines = []
    for i, l in enumerate(raw_lines):
        key = f"feed.lines[{i}]"
        if not isinstance(l, dict):
            raise _err(p, key, l, "must be a table with name, group and port")
        extra = set(l) - {"name", "group", "port"}
        if extra:
            raise _err(p, f"{key}.{sorted(extra)[0]}", None, "unknown key; a line takes name, group and port")
        try:
            ipaddress.IPv4Address(l.get("group"))
        except (ipaddress.AddressValueError, ValueError, TypeError):
            raise _err(p, f"{key}.group", l.get("group"), "must be an IPv4 address, e.g. \"233.54.12.111\"") from None
        lines.append(Line(str(l.get("name", "AB"[i] if i < 2 else str(i))), l["group"],
                          _int(p, f"{key}.port", l.get("port"), 1, 65535)))
    if len({(l.group, l.port) for l in lines}) != len(lines):
        raise _err(p, "feed.lines", None, "two lines have the same group and port; each line needs its own")
    if len(lines) > 16:
        raise _err(p, "feed.lines", len(lines), "at most 16 lines")
    pci, vdev = nic.get("pci"), nic.get("vdev")
    if bool(pci) == bool(vdev):
        raise _err(p, "nic", None, "set exactly one of nic.pci (a NIC bound to vfio-pci, e.g. \"0000:3b:00.0\") "
                   "or nic.vdev (e.g. \"net_pcap0,rx_pcap=day.pcap\")")
    if pci is not None and (not isinstance(pci, str) or pci.count(":") != 2 or "." not in pci):
        raise _err(p, "nic.pci", pci, "must be a PCI address DDDD:BB:DD.F, as lspci -D or dpdk-devbind.py -s shows")
    rx = cores.get("rx", "auto")
    if rx != "auto":
        rx = _int(p, "cores.rx", rx, 0, 4095)
        online = online_cpus()
        if rx not in online:
            raise _err(p, "cores.rx", rx, f"no such CPU online (online: {_ranges(online)}); pick one of those or "
                       "\"auto\" (fh plan chooses an isolated core on the NIC's node)")
    huge = mem.get("hugepages", False)
    if not isinstance(huge, bool):
        raise _err(p, "memory.hugepages", huge, "must be true or false")
    idle = run.get("idle", "spin")
    if idle not in ("spin", "backoff"):
        raise _err(p, "run.idle", idle, "must be \"spin\" (production: a whole core) or \"backoff\" (tests, labs)")
    events = _int(p, "shm.events", shm.get("events", 1 << 16), 64, 1 << 26)
    if events & (events - 1):
        raise _err(p, "shm.events", events, "must be a power of two")
    shm_dir = shm.get("dir", "auto")
    if not isinstance(shm_dir, str) or (shm_dir != "auto" and not os.path.isdir(shm_dir)):
        raise _err(p, "shm.dir", shm_dir, "must be \"auto\" (hugetlbfs when mounted with room, else /dev/shm) or "
                   "an existing directory")
    gid = -1
    group = shm.get("group")
    if group is not None:
        import grp

        try:
            gid = grp.getgrnam(group).gr_gid if isinstance(group, str) else grp.getgrgid(group).gr_gid
        except (KeyError, TypeError, OverflowError):
            raise _err(p, "shm.group", group, "no such group: create it (groupadd) or name an existing one; readers "
                       "in that group may read the segment (mode 0640)") from None
    max_levels = _int(p, "shm.max_levels", shm.get("max_levels", 4 << 20), 8, 1 << 30)
    from .native import segment_footprint
    from .segments import writer_path

    return Config(
        path=p, name=name, lines=tuple(lines), nic_pci=pci, nic_vdev=vdev, rx_core=None if rx == "auto" else rx,
        hugepages=huge, memory_mb=_int(p, "memory.mb", mem.get("mb", 512), 64, 1 << 20),
        depth=_int(p, "shm.depth", shm.get("depth", 10), 1, 64), events=events,
        max_levels=max_levels,
        max_orders=_int(p, "shm.max_orders", shm.get("max_orders", 8 << 20), 1, 1 << 30),
        idle=idle, exit_idle_ms=_int(p, "run.exit_idle_ms", run.get("exit_idle_ms", 0), 0, 86_400_000),
        segment=writer_path(name, segment_footprint(max_levels, events), shm_dir), gid=gid,
    )


def eal_args(cfg: Config) -> list[str]:
    """EAL arguments. Memory: -m MB from hugepages, or from ordinary pages with --no-huge (labs); NUMA
    placement of cores and memory (fh plan) refines this later."""
    from .replay import poll_core

    core = poll_core() if cfg.rx_core is None else cfg.rx_core
    args = ["--file-prefix", f"fh-{cfg.name}", "-l", str(core), "--log-level", "lib.eal:error", "--no-telemetry", "-m",
            str(cfg.memory_mb)]
    if not cfg.hugepages:
        args += ["--no-huge", "--no-shconf"]
    if cfg.nic_pci:
        args += ["-a", cfg.nic_pci]
    else:
        args += ["--no-pci", "--vdev", cfg.nic_vdev]
    return args


def app_args(cfg: Config) -> list[str]:
    a = ["--segment", cfg.segment, "--name", cfg.name, "--idle", cfg.idle, "--max-orders", str(cfg.max_orders),
         "--max-levels", str(cfg.max_levels), "--events", str(cfg.events), "--depth", str(cfg.depth)]
    if cfg.exit_idle_ms:
        a += ["--exit-idle-ms", str(cfg.exit_idle_ms)]
    if cfg.gid >= 0:
        a += ["--group", str(cfg.gid)]
    for l in cfg.lines:
        a += ["--line", f"{l.group}:{l.port}"]
    return a
