"""fh.toml: the instance configuration (docs/config.md). Validated in full before anything starts: every
error names the key, the value and the fix, and unknown keys are errors (a typo must not be ignored)."""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FhError
from .gateway import settings as gateway_settings


class ConfigError(FhError, ValueError):
    """One line: FILE: KEY = VALUE: what is wrong; what to do."""


@dataclass(frozen=True)
class Device:
    """A DPDK port: a NIC by PCI address (bound to vfio-pci, or a Mellanox on mlx5_core) or a virtual device."""
    spec: str  # what EAL is given: "0000:3b:00.0" (-a), or a vdev spec "net_pcap0,rx_pcap=day.pcap" (--vdev)
    name: str  # DPDK's name for it: the PCI address with its domain, lower case, or the vdev's name ("net_pcap0")
    pci: bool


@dataclass(frozen=True)
class Line:
    name: str
    group: str
    port: int
    dev: str = ""  # Device.name of the port it arrives on; "" (older callers): the first
    source: str = ""  # take the line from this source address only (source-specific multicast); "": any


@dataclass(frozen=True)
class Retransmission:
    """feed.retransmission: MoldUDP64 gap recovery through the feed's request server."""
    server: tuple[str, int]
    source: tuple[str, int]
    mac: str | None  # None: fh run reads it from the neighbour table (handler/neigh.py)
    dev: str  # Device.name the requests go out on
    gap_wait_us: int = 2000
    timeout_ms: int = 100
    retries: int = 4
    max_messages: int = 1000
    max_outstanding: int = 4
    hold_messages: int = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    """feed.snapshot: the exchange's snapshot service (SoupBinTCP, GLIMPSE-style; docs/recovery.md)."""
    server: tuple[str, int]
    user: str
    password_file: str | None  # the password: this file's first line, or
    password_env: str = "FH_SNAPSHOT_PASSWORD"  # this environment variable (when no file is given)
    connect_timeout_ms: int = 2000
    idle_timeout_ms: int = 15000  # the server silent this long (it heartbeats every second): the try fails
    total_timeout_ms: int = 600000
    retries: int = 2
    retry_delay_ms: int = 1000
    at_start: bool = True  # fh run with no recorded state for today starts from a fetched snapshot


@dataclass(frozen=True)
class Replication:
    """[replication]: fh run starts fh-replicate from it (handler/replication_run.py)."""
    role: str = "off"  # off, primary, standby
    transport: str = "tcp"  # rdma, tcp
    peer: tuple[str, int] | None = None  # the standby a primary sends to
    listen: tuple[str, int] | None = None  # where a standby accepts its primary
    device: str | None = None  # RDMA device (rdma only); None: the first
    max_lag_ms: int = 1000
    provider: str = "auto"  # libfabric provider: auto (verbs if a device exists, else tcp), verbs, tcp
    ring_mb: int = 16  # the standby's registered ring (MiB, a power of two)
    heartbeat_ms: int = 100  # the primary's heartbeat when idle
    failover_timeout_ms: int = 1000  # heartbeats missing this long: the primary is silent
    # fh witness (UDP) hosts, (host, port) each, 1 to 5: a majority of them asked before a promotion on silence;
    # (): none
    witness: tuple[tuple[str, int], ...] = ()
    pair: str | None = None  # the pair's id at the witness (the same on both hosts); None: the instance name
    # a shared secret for the witnesses (HMAC-SHA256 on every datagram, fh witness --key-file the same): None, unkeyed
    witness_key_file: str | None = None


@dataclass(frozen=True)
class Metrics:
    """[metrics]: defaults for `fh metrics`."""
    listen: str | None = None  # HOST:PORT
    textfile: str | None = None
    interval_s: float = 15.0


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
    ladder_books: int
    max_orders: int
    idle: str
    exit_idle_ms: int
    segment: str = field(default="")
    warm_us: int | None = None  # run.warm_us: every book warmed once in this many µs while idle (None: the default)
    gid: int = -1
    devices: tuple[Device, ...] = ()  # every distinct port, the [nic] one first
    retransmission: Retransmission | None = None
    on_unrecoverable: str = "resume"
    line_stale_ms: int = 3000
    line_down_ms: int = 10000
    replication: Replication = field(default_factory=Replication)
    metrics: Metrics = field(default_factory=Metrics)
    publish: str | None = None  # the data plane's --publish: "SYM,SYM,..." or "@FILE"; None: every book
    integrity: dict = field(default_factory=dict)  # [feed.integrity]: max_ahead, confirm, recover_max (given ones)
    gateway: object = None  # [gateway]: handler.gateway.settings.Gateway
    run_user: str | None = None  # [run] user/group: fh run starts the data plane as them (handler/privilege.py)
    run_group: str | None = None
    journal_mb: int = 0  # [journal] ring_mb: the applied-message journal /dev/shm/fh-NAME.journal; 0: none
    journal_dir: str | None = None  # [journal] dir: fh record's directory, where fh run restarts from
    journal_record: dict | None = None  # [journal] record = true: fh run starts fh record (snapshot_every, ...)
    snapshot: Snapshot | None = None  # [feed.snapshot]


_SCHEMA = {
    "instance": {"name"},
    "feed": {"protocol", "lines", "retransmission", "on_unrecoverable", "line_stale_ms", "line_down_ms", "integrity",
             "snapshot"},
    "nic": {"pci", "vdev"},
    "cores": {"rx"},
    "memory": {"hugepages", "mb"},
    "shm": {"depth", "events", "max_levels", "ladder_books", "max_orders", "dir", "group"},
    "run": {"idle", "warm_us", "exit_idle_ms", "user", "group"},
    "replication": {"role", "transport", "peer", "listen", "device", "max_lag_ms", "provider", "ring_mb",
                    "heartbeat_ms", "failover_timeout_ms", "witness", "pair",
                    "witness_key_file"},
    "metrics": {"listen", "textfile", "interval_s"},
    "instruments": {"publish", "publish_file"},
    "gateway": gateway_settings.KEYS,
    "journal": {"ring_mb", "dir", "record", "snapshot_every", "snapshot_keep", "fsync"},
}
_LINE_KEYS = {"name", "group", "port", "nic", "source"}
_RETRANS_KEYS = {"server", "source", "mac", "nic", "gap_wait_us", "timeout_ms", "retries", "max_messages",
                 "max_outstanding", "hold_messages"}
_LINE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,31}")
_PCI = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
_VDEV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MAC = re.compile(r"[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}")
DEFAULT_LINE_STALE_MS, DEFAULT_LINE_DOWN_MS, DEFAULT_UNRECOVERABLE = 3000, 10000, "resume"


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


def check_file(path: str | os.PathLike) -> None:
    """A configuration path that exists but is no regular file (a directory; a FIFO, whose read would block
    until something writes to it): ConfigError, one line. (A missing one is load's to word.)"""
    from .inputs import InputError, regular_file

    if os.path.exists(path):
        try:
            regular_file(path, "the instance's fh.toml (docs/config.md)")
        except InputError as e:
            raise ConfigError(str(e)) from None


def load(path: str | os.PathLike) -> Config:
    p = str(path)
    check_file(p)
    try:
        raw = tomllib.loads(Path(p).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file; write one from docs/config.md (an annotated example is there)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}): TOML is "
                          "UTF-8; save the file as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read it ({e.strerror}): give a readable file (fh run reads it as the "
                          "user that starts it)") from None
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
    from .segments import InstanceNameError, instance_name

    try:
        instance_name(name, "instance.name")
    except InstanceNameError:
        raise _err(p, "instance.name", name, "must be 1-31 letters, digits, '-' or '_' (it names the segment fh-NAME "
                   "and the pidfile NAME.pid)") from None
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
        extra = set(l) - _LINE_KEYS
        if extra:
            raise _err(p, f"{key}.{sorted(extra)[0]}", None,
                       "unknown key; a line takes name, group, port, nic and source")
        try:
            if not isinstance(l.get("group"), str):
                raise TypeError
            group = ipaddress.IPv4Address(l["group"])
        except (ipaddress.AddressValueError, ValueError, TypeError):
            raise _err(p, f"{key}.group", l.get("group"), "must be an IPv4 multicast address as a string, e.g. "
                       "\"233.54.12.111\"") from None
        if not group.is_multicast:
            raise _err(p, f"{key}.group", l["group"], "must be a multicast group (224.0.0.0 to 239.255.255.255), "
                       "e.g. \"233.54.12.111\": the feed's line, not a host's address")
        src = l.get("source", "")
        if src != "":
            try:
                ipaddress.IPv4Address(src)
            except (ipaddress.AddressValueError, ValueError, TypeError):
                raise _err(p, f"{key}.source", src, "must be the IPv4 address the exchange sends the line from, "
                           "e.g. \"206.200.1.1\" (leave it out to take the line from any source)") from None
        lname = l.get("name", "AB"[i] if i < 2 else str(i))
        if not isinstance(lname, str) or not _LINE_NAME.fullmatch(lname):
            raise _err(p, f"{key}.name", lname, "must be 1-31 letters, digits, '-', '_' or '.', e.g. \"A\": it names "
                       "the line in fh status, fh stats and the metrics")
        if lname in (m.name for m in lines):
            raise _err(p, f"{key}.name", lname, "another line has this name; give each line its own")
        lines.append(Line(lname, l["group"], _int(p, f"{key}.port", l.get("port"), 1, 65535), source=src))
    if len({(l.group, l.port) for l in lines}) != len(lines):
        raise _err(p, "feed.lines", None, "two lines have the same group and port; each line needs its own")
    if len(lines) > 16:
        raise _err(p, "feed.lines", len(lines), "at most 16 lines")
    pci, vdev = nic.get("pci"), nic.get("vdev")
    if bool(pci) == bool(vdev):
        raise _err(p, "nic", None, "set exactly one of nic.pci (a NIC bound to vfio-pci, e.g. \"0000:3b:00.0\") "
                   "or nic.vdev (e.g. \"net_pcap0,rx_pcap=day.pcap\")")
    first = _device(p, "nic.pci" if pci else "nic.vdev", pci or vdev)  # "3b:00.0": domain 0000, as in a line's nic
    if pci and not first.pci:
        raise _err(p, "nic.pci", pci, "must be a PCI address DDDD:BB:DD.F, as lspci -D or dpdk-devbind.py -s shows "
                   "(a virtual device goes in nic.vdev)")
    if vdev and first.pci:
        raise _err(p, "nic.vdev", vdev, "must be a DPDK virtual device, e.g. \"net_pcap0,rx_pcap=day.pcap\" (a NIC "
                   "goes in nic.pci)")
    pci, vdev = (first.spec, None) if first.pci else (None, vdev)
    devices = {first.name: (first, "nic.pci" if pci else "nic.vdev")}

    def device(key: str, v) -> Device:
        d = _device(p, key, v)
        if d.name in devices and devices[d.name][0] != d:
            other, where = devices[d.name]
            raise _err(p, key, v, f"DPDK would name it {d.name}, as it names {where} = {other.spec!r}: give one "
                       f"of them another name (net_pcap1, ...), or write the same device the same way")
        devices.setdefault(d.name, (d, key))
        return d

    lines = [Line(l.name, l.group, l.port, device(f"feed.lines[{i}].nic", raw_lines[i]["nic"]).name
                  if "nic" in raw_lines[i] else first.name, l.source) for i, l in enumerate(lines)]
    retrans = _retransmission(p, feed.get("retransmission"), lines, device)
    unrec = feed.get("on_unrecoverable", DEFAULT_UNRECOVERABLE)
    if unrec not in ("resume", "snapshot"):
        raise _err(p, "feed.on_unrecoverable", unrec, "must be \"resume\" (mark the gap and go on from the next "
                   "message) or \"snapshot\" (resynchronise the books from a snapshot)")
    snapshot = _snapshot(p, feed.get("snapshot"))
    stale = _int(p, "feed.line_stale_ms", feed.get("line_stale_ms", DEFAULT_LINE_STALE_MS), 1, 3_600_000)
    down = _int(p, "feed.line_down_ms", feed.get("line_down_ms", DEFAULT_LINE_DOWN_MS), 1, 3_600_000)
    if down <= stale:
        raise _err(p, "feed.line_down_ms", down, f"must be more than feed.line_stale_ms ({stale}): a line is "
                   "stale first, down later; raise line_down_ms or lower line_stale_ms")
    integrity = _integrity(p, feed.get("integrity"))
    replication = _replication(p, raw.get("replication", {}))
    metrics = _metrics(p, raw.get("metrics", {}))
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
    warm_us = _int(p, "run.warm_us", run["warm_us"], 0, 10_000_000) if "warm_us" in run else None

    run_user, run_group = run_identity(p, run)
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
            if isinstance(group, bool):  # TOML's true is no gid 1
                raise TypeError
            gid = grp.getgrnam(group).gr_gid if isinstance(group, str) else grp.getgrgid(group).gr_gid
        except (KeyError, TypeError, OverflowError):
            raise _err(p, "shm.group", group, "no such group: create it (groupadd) or name an existing one; readers "
                       "in that group may read the segment (mode 0640)") from None
    max_levels = _int(p, "shm.max_levels", shm.get("max_levels", 4 << 20), 8, 1 << 30)
    from .native import lib as _lib, segment_footprint

    ladder_books = _int(p, "shm.ladder_books", shm.get("ladder_books", _lib.FH_SEG_LADDER_BOOKS), 0,
                        _lib.FH_SEG_MAX_LADDER_BOOKS)
    publish = _instruments(p, raw.get("instruments", {}))
    journal_mb = _int(p, "journal.ring_mb", raw.get("journal", {}).get("ring_mb", 256), 1, 1 << 20) \
        if "journal" in raw else 0
    if journal_mb & (journal_mb - 1):
        raise _err(p, "journal.ring_mb", journal_mb, "must be a power of two (MiB), e.g. 256 or 1024")
    journal_dir = raw.get("journal", {}).get("dir")
    if journal_dir is not None and (not isinstance(journal_dir, str) or not journal_dir):
        raise _err(p, "journal.dir", journal_dir, "must be a directory path: where fh record --dir writes")
    journal_record = _journal_record(p, raw.get("journal", {}), journal_dir)
    from .segments import writer_path

    return Config(
        path=p, name=name, lines=tuple(lines), nic_pci=pci, nic_vdev=vdev, rx_core=None if rx == "auto" else rx,
        hugepages=huge, memory_mb=_int(p, "memory.mb", mem.get("mb", 512), 64, 1 << 20),
        depth=_int(p, "shm.depth", shm.get("depth", 10), 1, 64), events=events,
        max_levels=max_levels, ladder_books=ladder_books,
        max_orders=_int(p, "shm.max_orders", shm.get("max_orders", 8 << 20), 1, 1 << 30),
        idle=idle, warm_us=warm_us, exit_idle_ms=_int(p, "run.exit_idle_ms", run.get("exit_idle_ms", 0), 0, 86_400_000),
        segment=writer_path(name, segment_footprint(max_levels, events, ladder_books=ladder_books), shm_dir), gid=gid,
        devices=tuple(d for d, _ in devices.values()), retransmission=retrans, on_unrecoverable=unrec,
        line_stale_ms=stale, line_down_ms=down, integrity=integrity, replication=replication, metrics=metrics, publish=publish,
        gateway=gateway_settings.parse(p, raw.get("gateway", {}), _err), run_user=run_user, run_group=run_group,
        journal_mb=journal_mb, journal_dir=journal_dir, journal_record=journal_record, snapshot=snapshot,
    )


def _journal_record(p: str, j: dict, journal_dir: str | None) -> dict | None:
    """[journal] record = true: fh run starts `fh record` on the journal (supervised with the data plane)."""
    rec = j.get("record", False)
    if not isinstance(rec, bool):
        raise _err(p, "journal.record", rec, "must be true or false: true makes fh run start fh record")
    if not rec:
        for k in ("snapshot_every", "snapshot_keep", "fsync"):
            if k in j:
                raise _err(p, f"journal.{k}", j[k], "applies to the recorder fh run starts: add record = true")
        return None
    if journal_dir is None:
        raise _err(p, "journal.record", rec, "needs journal.dir: the directory fh record writes to")
    fsync = j.get("fsync", "interval")
    if fsync not in ("always", "interval", "none"):
        raise _err(p, "journal.fsync", fsync, "must be always, interval or none")
    return {"snapshot_every": _int(p, "journal.snapshot_every", j.get("snapshot_every", 1_000_000), 0, 1 << 40),
            "snapshot_keep": _int(p, "journal.snapshot_keep", j.get("snapshot_keep", 3), 1, 1000), "fsync": fsync}


def _instruments(p: str, ins: dict) -> str | None:
    """[instruments]: publish = ["AAPL", ...] or publish_file = PATH (one symbol a line): the books to publish
    (the data plane keeps every instrument's orders; the others get no events and readers do not see them)."""
    pub, path = ins.get("publish"), ins.get("publish_file")
    if pub is not None and path is not None:
        raise _err(p, "instruments", None, "set publish or publish_file, not both")
    if pub is not None:
        if not isinstance(pub, list) or not pub:
            raise _err(p, "instruments.publish", pub, "must be a non-empty list of symbols, e.g. [\"AAPL\", "
                       "\"MSFT\"] (leave [instruments] out to publish every book)")
        for sym in pub:
            if not isinstance(sym, str) or not 1 <= len(sym) <= 8 or not sym.isprintable() or "," in sym \
                    or sym != sym.strip():
                raise _err(p, "instruments.publish", sym, "a symbol is 1 to 8 printable characters, no comma or "
                           "spaces around it, as in ITCH's stock field")
        return ",".join(pub)
    if path is not None:
        if not isinstance(path, str) or not os.path.isfile(path):
            raise _err(p, "instruments.publish_file", path,
                       f"{'not a regular file' if isinstance(path, str) and os.path.exists(path) else 'no such file'}: "
                       "give a file of one symbol a line (# comments)")
        return "@" + os.path.abspath(path)
    return None


def _device(path, key, v) -> Device:
    """A PCI address (with or without its domain) or a vdev spec."""
    if isinstance(v, str) and v.strip():
        a = v.strip().lower()
        a = "0000:" + a if a.count(":") == 1 else a
        if _PCI.fullmatch(a):
            return Device(a, a, True)
        name = v.split(",", 1)[0]
        if _VDEV_NAME.fullmatch(name):
            return Device(v, name, False)
    raise _err(path, key, v, "must be a PCI address DDDD:BB:DD.F (lspci -D shows them; e.g. \"0000:3b:00.1\") or a "
               "DPDK virtual device (e.g. \"net_pcap1,rx_pcap=b.pcap\")")


def _host_port(path, key, v, example: str, kind: str) -> tuple[str, int]:
    """HOST:PORT. kind: "unicast" (an IPv4 unicast address), "bind" (an IPv4 address of this host or 0.0.0.0;
    empty means 0.0.0.0), "name" (a host name or an IPv4 address)."""
    want = {"unicast": "IPV4:PORT", "bind": "IPV4:PORT", "name": "HOST:PORT"}[kind]
    if v is None:
        raise _err(path, key, None, f"missing; set it to {want}, e.g. \"{example}\"")
    host, sep, port = v.rpartition(":") if isinstance(v, str) else ("", "", "")
    ok = bool(sep) and port.isdigit() and 1 <= int(port) <= 65535
    if ok and kind == "bind" and not host:
        host = "0.0.0.0"
    try:
        a = ipaddress.IPv4Address(host)
    except ValueError:
        a = None
        ok = ok and kind == "name" and not host.replace(".", "").isdigit() and re.fullmatch(
            r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*", host) is not None
    if not ok:
        raise _err(path, key, v, f"must be {want} (port 1-65535), e.g. \"{example}\"")
    if kind == "unicast" and (a.is_multicast or a.is_unspecified or a.is_loopback or a == ipaddress.IPv4Address(
            "255.255.255.255")):
        raise _err(path, key, v, f"must be a unicast address of a host on the network, e.g. \"{example}\"")
    if kind == "bind" and (a.is_multicast or a == ipaddress.IPv4Address("255.255.255.255")):
        raise _err(path, key, v, f"must be an address of this host, or 0.0.0.0 for all, e.g. \"{example}\"")
    return host, int(port)


WITNESS_MAX = 5  # fh-replicate's own limit too (native/replicate/replicate.c, WIT_MAX)


def _witnesses(path, v) -> tuple[tuple[str, int], ...]:
    """[replication] witness: "HOST:PORT" (one witness) or a list of 1 to 5 distinct ones (a quorum: the standby
    promotes on silence only when a majority of them have not heard the primary either). () when not given."""
    key, example = "replication.witness", "fh-witness:7410"
    if v is None:
        return ()
    if isinstance(v, str):
        return (_host_port(path, key, v, example, "name"),)
    if not isinstance(v, list):
        raise _err(path, key, v, f"must be \"HOST:PORT\" or a list of 1 to {WITNESS_MAX} of them, e.g. "
                   f"[\"w1:7410\", \"w2:7410\", \"w3:7410\"]")
    if not v:
        raise _err(path, key, v, f"an empty list: give 1 to {WITNESS_MAX} \"HOST:PORT\" (a majority of them asked "
                   f"before a promotion), or remove witness for none")
    if len(v) > WITNESS_MAX:
        raise _err(path, key, v, f"{len(v)} witnesses: {WITNESS_MAX} at most (a majority of 3 of 5 rides out two "
                   f"down)")
    out: list[tuple[str, int]] = []
    for i, e in enumerate(v):
        hp = _host_port(path, f"{key}[{i}]", e, example, "name")
        if hp in out:
            raise _err(path, f"{key}[{i}]", e, f"the same witness as {key}[{out.index(hp)}]: each once (one witness "
                       f"twice would count twice in the majority)")
        out.append(hp)
    return tuple(out)


def _unknown(path, section: str, table, keys: set[str]) -> dict:
    if not isinstance(table, dict):
        raise _err(path, section, table, f"must be a table ([{section}])")
    for k in table:
        if k not in keys:
            raise _err(path, f"{section}.{k}", None, f"unknown key; {section} takes {', '.join(sorted(keys))}")
    return table


def _retransmission(path, rt, lines: list[Line], device) -> Retransmission | None:
    if rt is None:
        return None
    k = "feed.retransmission"
    rt = _unknown(path, k, rt, _RETRANS_KEYS)
    server = _host_port(path, f"{k}.server", rt.get("server"), "10.20.0.5:26400", "unicast")
    source = _host_port(path, f"{k}.source", rt.get("source"), "10.20.0.9:26401", "unicast")
    for i, l in enumerate(lines):
        if (l.group, l.port) == source:
            raise _err(path, f"{k}.source", rt["source"], f"is feed.lines[{i}] ({l.group}:{l.port}): replies and the "
                       "line would be one stream; give the requests a port of their own")
    mac = rt.get("mac")
    if mac is not None:
        if not isinstance(mac, str) or not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1 or not int(
                re.sub("[:-]", "", mac), 16):
            raise _err(path, f"{k}.mac", mac, "must be the unicast MAC of the next hop to the server, e.g. "
                       "\"0c:42:a1:3b:00:01\" (ip neigh show shows it), or leave it out: fh run then reads it from "
                       "this host's neighbour table")
        mac = mac.lower().replace("-", ":")
    dev = device(f"{k}.nic", rt["nic"]).name if "nic" in rt else lines[0].dev
    hold = _int(path, f"{k}.hold_messages", rt.get("hold_messages", 1 << 20), 1024, 1 << 26)
    if hold & (hold - 1):
        raise _err(path, f"{k}.hold_messages", hold, f"must be a power of two, e.g. {1 << (hold.bit_length() - 1)} "
                   f"or {1 << hold.bit_length()}")
    return Retransmission(
        server=server, source=source, mac=mac, dev=dev,
        gap_wait_us=_int(path, f"{k}.gap_wait_us", rt.get("gap_wait_us", 2000), 0, 1_000_000),
        timeout_ms=_int(path, f"{k}.timeout_ms", rt.get("timeout_ms", 100), 1, 60_000),
        retries=_int(path, f"{k}.retries", rt.get("retries", 4), 0, 100),
        max_messages=_int(path, f"{k}.max_messages", rt.get("max_messages", 1000), 1, 65534),
        max_outstanding=_int(path, f"{k}.max_outstanding", rt.get("max_outstanding", 4), 1, 16),
        hold_messages=hold)


_SNAPSHOT_KEYS = {"server", "user", "password_file", "password_env", "connect_timeout_ms", "idle_timeout_ms",
                  "total_timeout_ms", "retries", "retry_delay_ms", "at_start"}


def _snapshot(path, t) -> Snapshot | None:
    if t is None:
        return None
    k = "feed.snapshot"
    t = _unknown(path, k, t, _SNAPSHOT_KEYS)
    server = _host_port(path, f"{k}.server", t.get("server"), "10.20.0.5:26500", "bind")
    if server[0] == "0.0.0.0":
        raise _err(path, f"{k}.server", t["server"], "must be the snapshot server's IPV4:PORT, e.g. \"10.20.0.5:26500\"")
    user = t.get("user")
    if not isinstance(user, str) or not 1 <= len(user) <= 6 or not user.isascii():
        raise _err(path, f"{k}.user", user, "must be the SoupBinTCP username, 1 to 6 ASCII characters")
    pf, env = t.get("password_file"), t.get("password_env")
    if pf is not None and env is not None:
        raise _err(path, f"{k}.password_env", env, "give the password one way: password_file or password_env")
    if pf is not None and (not isinstance(pf, str) or not os.path.isfile(pf)):
        why = "not a regular file" if isinstance(pf, str) and os.path.exists(pf) else "no such file"
        raise _err(path, f"{k}.password_file", pf, f"{why}: give a file holding the password (mode 0600)")
    if env is not None and (not isinstance(env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env)):
        raise _err(path, f"{k}.password_env", env, "must be an environment variable's name, e.g. \"FH_SNAPSHOT_PASSWORD\"")
    at_start = t.get("at_start", True)
    if not isinstance(at_start, bool):
        raise _err(path, f"{k}.at_start", at_start, "must be true (fh run starts from a snapshot when it has no "
                   "recorded state for today) or false")
    return Snapshot(
        server=server, user=user, password_file=pf, password_env=env or "FH_SNAPSHOT_PASSWORD",
        connect_timeout_ms=_int(path, f"{k}.connect_timeout_ms", t.get("connect_timeout_ms", 2000), 1, 600_000),
        idle_timeout_ms=_int(path, f"{k}.idle_timeout_ms", t.get("idle_timeout_ms", 15000), 10, 600_000),
        total_timeout_ms=_int(path, f"{k}.total_timeout_ms", t.get("total_timeout_ms", 600000), 100, 86_400_000),
        retries=_int(path, f"{k}.retries", t.get("retries", 2), 0, 100),
        retry_delay_ms=_int(path, f"{k}.retry_delay_ms", t.get("retry_delay_ms", 1000), 1, 600_000),
        at_start=at_start)


def snapshot_password(cfg: Config) -> str:
    """[feed.snapshot]'s password, read now (not at load: fh status needs no secret). ConfigError, one line."""
    s = cfg.snapshot
    if s.password_file:
        from .inputs import InputError, regular_file

        try:
            regular_file(s.password_file, "the file holding the password")
            pw = open(s.password_file).readline().strip()
        except InputError as e:  # a FIFO would block fh run here
            raise ConfigError(f"{cfg.path}: feed.snapshot.password_file = {e}") from None
        except OSError as e:
            raise ConfigError(f"{cfg.path}: feed.snapshot.password_file = {s.password_file!r}: {e.strerror}; make "
                              "it readable by fh run") from None
        except UnicodeDecodeError:  # (a binary file was a traceback)
            raise ConfigError(f"{cfg.path}: feed.snapshot.password_file = {s.password_file!r}: not text; its first "
                              "line must be the password (up to 10 ASCII characters)") from None
        where = f"the file {s.password_file}"
    else:
        pw, where = os.environ.get(s.password_env, ""), f"the environment variable {s.password_env}"
    if not pw:
        raise ConfigError(f"{cfg.path}: feed.snapshot: no password in {where}; put the snapshot service's password "
                          "there")
    if len(pw) > 10:
        raise ConfigError(f"{cfg.path}: feed.snapshot: the password in {where} is longer than SoupBinTCP's 10 "
                          "characters")
    return pw


# [feed.integrity]: (key, data plane option, bounds, what it does), defaults in fh_mold_cfg_defaults
_INTEGRITY = {
    "max_ahead": ("--max-ahead", 0, 0xFFFFFFFF, "a sequence more than this beyond the next expected is suspect until "
                  "confirmed (0: no limit; default 1048576)"),
    "confirm": ("--confirm", 0, 1_000_000, "datagrams of one line that make a new session or a jump believed (two "
                "lines at once; 0: at once; default 32)"),
    "recover_max": ("--recover-max", 0, 0xFFFFFFFF, "a gap of more missing messages is given up rather than asked "
                    "for (0: no limit; default 1000000)"),
}


def _integrity(path, t) -> dict:
    if t is None:
        return {}
    t = _unknown(path, "feed.integrity", t, set(_INTEGRITY))
    return {k: _int(path, f"feed.integrity.{k}", v, _INTEGRITY[k][1], _INTEGRITY[k][2]) for k, v in t.items()}


def _replication(path, r: dict) -> Replication:
    role = r.get("role", "off")
    if role not in ("off", "primary", "standby"):
        raise _err(path, "replication.role", role, "must be \"off\", \"primary\" (sends its segment to a standby) or "
                   "\"standby\" (mirrors a primary's)")
    transport = r.get("transport", "tcp")
    if transport not in ("rdma", "tcp"):
        raise _err(path, "replication.transport", transport, "must be \"rdma\" (an RDMA device on both hosts) or "
                   "\"tcp\"")
    peer = r.get("peer")
    if peer is not None or role == "primary":
        if peer is None:
            raise _err(path, "replication.peer", None, "a primary needs its standby: set replication.peer = "
                       "\"HOST:PORT\" (the standby's replication.listen), e.g. \"fh-standby:7400\"")
        peer = _host_port(path, "replication.peer", peer, "fh-standby:7400", "name")
    listen = r.get("listen")
    if listen is not None or role == "standby":
        if listen is None:
            raise _err(path, "replication.listen", None, "a standby needs an address to accept its primary on: set "
                       "replication.listen = \"IP:PORT\", e.g. \"0.0.0.0:7400\"")
        listen = _host_port(path, "replication.listen", listen, "0.0.0.0:7400", "bind")
    device = r.get("device")
    if device is not None:
        if transport != "rdma":
            raise _err(path, "replication.device", device, f"an RDMA device is for transport = \"rdma\" (transport "
                       f"is \"{transport}\"): set transport = \"rdma\" or remove device")
        if not isinstance(device, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", device):
            raise _err(path, "replication.device", device, "must be an RDMA device name, e.g. \"mlx5_0\" (ibv_devices "
                       "or ls /sys/class/infiniband lists them)")
    lag = _int(path, "replication.max_lag_ms", r.get("max_lag_ms", 1000), 1, 3_600_000)
    provider = r.get("provider", "auto")
    if provider not in ("auto", "verbs", "tcp"):
        raise _err(path, "replication.provider", provider, "must be \"auto\" (verbs where an RDMA device exists, "
                   "else tcp), \"verbs\" or \"tcp\"")
    ring = _int(path, "replication.ring_mb", r.get("ring_mb", 16), 1, 4096)
    if ring & (ring - 1):
        raise _err(path, "replication.ring_mb", ring, "must be a power of two, e.g. 16")
    hb = _int(path, "replication.heartbeat_ms", r.get("heartbeat_ms", 100), 1, 60_000)
    fo = _int(path, "replication.failover_timeout_ms", r.get("failover_timeout_ms", 1000), 1, 600_000)
    if fo <= hb:
        raise _err(path, "replication.failover_timeout_ms", fo, f"must be longer than heartbeat_ms ({hb}), "
                   f"e.g. {hb * 5}")
    witness = _witnesses(path, r.get("witness"))
    pair = r.get("pair")
    if pair is not None and (not isinstance(pair, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,31}", pair)):
        raise _err(path, "replication.pair", pair, "must be 1-31 letters, digits, _ . : - (the same on both hosts of "
                   "the pair), e.g. \"nasdaq\"")
    key_file = r.get("witness_key_file")
    if key_file is not None:
        if not isinstance(key_file, str) or not key_file:
            raise _err(path, "replication.witness_key_file", key_file, "must be the path of a file of at least 32 "
                       "bytes of secret, e.g. \"/etc/fh/witness.key\"")
        if not witness:
            raise _err(path, "replication.witness_key_file", key_file, "given without witness: set witness too, or "
                       "remove witness_key_file")
        check_witness_key_file(path, key_file)  # said here, not at fh run's failover
    return Replication(role=role, transport=transport, peer=peer, listen=listen, device=device, max_lag_ms=lag,
                       provider=provider, ring_mb=ring, heartbeat_ms=hb, failover_timeout_ms=fo, witness=witness,
                       pair=pair, witness_key_file=key_file)


def check_witness_key_file(path: str, key_file: str) -> None:
    """replication.witness_key_file's rules (fh witness --key-file's, fh-replicate --witness-key-file's): a regular
    file of 32 to 1024 bytes that group and others cannot read; else ConfigError, one line with the fix. The loader
    checks it, and fh run again at SIGHUP before it has its fh-replicate re-read the file."""
    from .witness import KeyFileError, load_key

    try:
        load_key(key_file)
    except KeyFileError as e:
        raise _err(path, "replication.witness_key_file", key_file, str(e).removeprefix(f"{key_file}: ")) from None


def check_textfile_dir(cfg) -> None:
    """metrics.textfile's directory must exist when `fh metrics` writes it (and only then: fh plan, check and
    run do not need it, and node-exporter may be installed later)."""
    textfile = cfg.metrics.textfile
    if textfile is None:
        return
    d = os.path.dirname(os.path.abspath(textfile))
    if not os.path.isdir(d):
        raise _err(cfg.path, "metrics.textfile", textfile, f"its directory {d} does not exist: create it (mkdir -p "
                   f"{d}) or name a file in an existing one (node-exporter's --collector.textfile.directory)")


def _metrics(path, m: dict) -> Metrics:
    listen = m.get("listen")
    if listen is not None:
        host, port = _host_port(path, "metrics.listen", listen, "127.0.0.1:9377", "bind")
        listen = f"{host}:{port}"
    textfile = m.get("textfile")
    if textfile is not None:
        if not isinstance(textfile, str) or not textfile or textfile.endswith("/") or os.path.isdir(textfile):
            raise _err(path, "metrics.textfile", textfile, "must be a file path, e.g. "
                       "\"/var/lib/prometheus/node-exporter/fh.prom\"")
    interval = m.get("interval_s", 15.0)
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0.1 <= interval <= 86_400:
        raise _err(path, "metrics.interval_s", interval, "must be a number of seconds from 0.1 to 86400")
    return Metrics(listen=listen, textfile=textfile, interval_s=float(interval))


def eal_args(cfg: Config) -> list[str]:
    """EAL arguments. Memory: -m MB from hugepages, or from ordinary pages with --no-huge (labs); NUMA
    placement of cores and memory (fh plan) refines this later."""
    from .process import poll_core

    core = poll_core() if cfg.rx_core is None else cfg.rx_core
    args = ["--file-prefix", f"fh-{cfg.name}", "-l", str(core), "--log-level", "lib.eal:error", "--no-telemetry", "-m",
            str(cfg.memory_mb)]
    # hugepages: --in-memory (no runtime files, the hugepage files unlinked once mapped), so that a stop or a crash
    # gives the pages back to the host; no fh process attaches to the data plane's EAL as a secondary
    args += ["--in-memory"] if cfg.hugepages else ["--no-huge", "--no-shconf"]
    return args + device_args(cfg)


def rx_pcap_problems(cfg: Config) -> list[tuple[str, str]]:
    """(problem, fix) for each net_pcap device whose rx_pcap file is missing or not a classic pcap: EAL would make no
    port of it (fh run refuses to start; fh plan fails the configuration)."""
    from pathlib import Path

    from . import inputs

    out = []
    for d in devices(cfg):
        if d.pci or "rx_pcap=" not in d.spec:
            continue
        pcap = d.spec.split("rx_pcap=", 1)[1].split(",", 1)[0]
        key = "nic.vdev" if d.spec == cfg.nic_vdev else next(
            (f"feed.lines[{i}].nic" for i, l in enumerate(cfg.lines) if l.dev == d.name), "feed.retransmission.nic")
        where = f"{cfg.path}: {key} = {d.spec!r}: rx_pcap file {pcap}"
        if not Path(pcap).is_file():
            out.append((f"{where} {'is not a regular file' if Path(pcap).exists() else 'does not exist'}", "give a pcap"))
            continue
        kind = inputs.sniff(pcap)
        if kind != "pcap":  # net_pcap (libpcap) reads a classic pcap only: else EAL makes no port at all
            out.append((f"{where} is {inputs.describe_against(kind, 'a pcap')}",
                        "give a classic pcap (a pcapng: editcap -F pcap IN OUT; gzipped: gunzip it)"))
    return out


def devices(cfg: Config) -> tuple[Device, ...]:
    if cfg.devices:
        return cfg.devices
    return (Device(cfg.nic_pci, cfg.nic_pci, True) if cfg.nic_pci else  # a Config built by hand
            Device(cfg.nic_vdev, cfg.nic_vdev.split(",", 1)[0], False),)


def device_args(cfg: Config) -> list[str]:
    """EAL's device arguments: -a for each PCI device (only those: EAL probes no other), --vdev for each virtual
    one; --no-pci when there is no PCI device at all."""
    devs = devices(cfg)
    args = [x for d in devs if d.pci for x in ("-a", d.spec)]
    if not args:
        args.append("--no-pci")
    return args + [x for d in devs if not d.pci for x in ("--vdev", d.spec)]


def app_args(cfg: Config, retrans_mac: str | None = None) -> list[str]:
    """The data plane's arguments (after `--`). A line names its port (--line GROUP:PORT@DEV) only when there
    is more than one; line health (--unrecoverable, --line-stale-ms, --line-down-ms) is given when the feed
    recovers gaps or when it is not the data plane's default; the retransmission arguments only with
    [feed.retransmission], whose MAC is retrans_mac when the configuration leaves it out (fh run reads it from
    the neighbour table: resolve_retrans_mac)."""
    a = ["--segment", cfg.segment, "--name", cfg.name, "--idle", cfg.idle, "--max-orders", str(cfg.max_orders),
         "--max-levels", str(cfg.max_levels), "--ladder-books", str(cfg.ladder_books), "--events", str(cfg.events),
         "--depth", str(cfg.depth)]
    if cfg.warm_us is not None:
        a += ["--warm-us", str(cfg.warm_us)]
    if cfg.exit_idle_ms:
        a += ["--exit-idle-ms", str(cfg.exit_idle_ms)]
    if cfg.gid >= 0:
        a += ["--group", str(cfg.gid)]
    several = len(devices(cfg)) > 1
    for l in cfg.lines:
        a += ["--line", f"{l.group}:{l.port}" + (f"@{l.dev or devices(cfg)[0].name}" if several else "")]
        if l.source:
            a += ["--line-source", l.source]
    r = cfg.retransmission
    if r is not None or (cfg.on_unrecoverable, cfg.line_stale_ms, cfg.line_down_ms) != (
            DEFAULT_UNRECOVERABLE, DEFAULT_LINE_STALE_MS, DEFAULT_LINE_DOWN_MS):
        a += ["--unrecoverable", cfg.on_unrecoverable, "--line-stale-ms", str(cfg.line_stale_ms), "--line-down-ms",
              str(cfg.line_down_ms)]
    for k, v in cfg.integrity.items():
        a += [_INTEGRITY[k][0], str(v)]
    if r is not None:
        mac = r.mac or retrans_mac
        if not mac:
            raise ConfigError(f"{cfg.path}: feed.retransmission.mac: not set and not read from the neighbour table "
                              "(fh run reads it); set it")
        a += ["--retrans-server", f"{r.server[0]}:{r.server[1]}", "--retrans-mac", mac, "--retrans-dev", r.dev,
              "--src-ip", r.source[0], "--src-port", str(r.source[1]), "--gap-wait-us", str(r.gap_wait_us),
              "--request-timeout-ms", str(r.timeout_ms), "--request-retries", str(r.retries),
              "--request-max", str(r.max_messages), "--max-outstanding", str(r.max_outstanding),
              "--hold", str(r.hold_messages)]
    if cfg.snapshot and cfg.on_unrecoverable == "snapshot":  # the snapshot service (docs/recovery.md)
        a += __import__("handler.glimpse", fromlist=["dataplane_args"]).dataplane_args(cfg)
    if cfg.publish:
        a += ["--publish", cfg.publish]
    if cfg.journal_mb:
        a += ["--journal", f"/dev/shm/fh-{cfg.name}.journal", "--journal-mb", str(cfg.journal_mb)]
    return a


def resolve_retrans_mac(cfg: Config, netns: str | None = None) -> str | None:
    """feed.retransmission.mac, or when it is left out the MAC of the next hop to the server from this host's
    neighbour table (handler/neigh.py); None without [feed.retransmission]. ConfigError (one line, with the
    fix) when the table has no entry."""
    r = cfg.retransmission
    if r is None or r.mac:
        return r.mac if r else None
    from .net import neigh

    server = f"{r.server[0]}:{r.server[1]}"
    try:
        mac, hop, iface = neigh.next_hop_mac(r.server[0], netns)
    except neigh.NeighError as e:
        hop = e.hop or r.server[0]
        raise ConfigError(f"{cfg.path}: feed.retransmission.mac: not set, and {e}: ping {hop} once from this host "
                          f"(ping -c1 {hop}) so that the kernel learns it, or set feed.retransmission.mac = "
                          f"\"MAC\" (the next hop to {server})") from None
    # The entry is worth something only if the route leaves by the request port itself: another interface's
    # next hop (eth0's default gateway) would take every request to the wrong MAC, and every gap would be lost.
    dev = next((d for d in cfg.devices if d.name == r.dev), None)
    want = neigh.port_interfaces(dev.spec, dev.pci) if dev else []
    if not want:
        raise ConfigError(f"{cfg.path}: feed.retransmission.mac: not set, and the request port {r.dev} has no kernel "
                          f"interface to check the route to {server} against (the neighbour table's hop {hop} is on "
                          f"{iface}): set feed.retransmission.mac = \"MAC\" (the next hop to {server} on the request "
                          f"port's network)")
    if iface not in want:
        raise ConfigError(f"{cfg.path}: feed.retransmission.mac: not set, and the route to {r.server[0]} leaves by "
                          f"{iface}, not by the request port's interface {want[0]} ({r.dev}): set "
                          f"feed.retransmission.mac = \"MAC\" (the next hop on {want[0]}'s network), or route the "
                          f"server through it (ip route add {r.server[0]}/32 dev {want[0]} [via GATEWAY])")
    return mac


def run_identity(path: str, run: dict) -> tuple[str | None, str | None]:
    """[run] user / group, checked to exist (ConfigError naming the key and the fix)."""
    user, group = run.get("user"), run.get("group")
    if user is not None:
        if not isinstance(user, str) or not user:
            raise _err(path, "run.user", user, "must be a user name, e.g. \"fh\"")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise _err(path, "run.user", user, "no such user: create it (useradd --system --no-create-home "
                       f"--shell /usr/sbin/nologin {user}) or name an existing one") from None
        if pw.pw_uid == 0:
            raise _err(path, "run.user", user, "is root: name the unprivileged user the data plane should run "
                       "as, or leave run.user out")
    if group is not None:
        if not isinstance(group, str) or not group:
            raise _err(path, "run.group", group, "must be a group name, e.g. \"fh\"")
        if user is None:
            raise _err(path, "run.group", group, "needs run.user: the data plane runs as a user and a group")
        try:
            grp.getgrnam(group)
        except KeyError:
            raise _err(path, "run.group", group, f"no such group: create it (groupadd --system {group}) or name "
                       "an existing one") from None
    return user, group
