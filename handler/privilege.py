"""Least privilege for the data plane: which user it runs as and which capabilities it keeps.

`[run] user` (and optionally `group`) in the config: `fh run`, started as root, starts the data plane as that
user through setpriv(1), with only the capabilities its devices need (`needed_caps`) in its ambient, inheritable
and bounding sets, no_new_privs set, and the user's own groups plus the segment's readers' group (`shm.group`)
as supplementary groups (so that it may give the segment to that group). Started as that user already
(systemd `User=`, deploy/fh@.service), `fh run` changes nothing. `fh check` reports what a run as that user
still lacks (`check`). docs/hardening.md explains each need and its fix.

The capabilities, by what the configuration uses (each found necessary by tests/test_privilege.py):
  CAP_IPC_LOCK    hugepages or a PCI NIC: DPDK locks its memory (and vfio pins it for DMA) beyond RLIMIT_MEMLOCK;
                  net_af_packet: its packet rings are mapped MAP_LOCKED (without it: mmap EAGAIN, no port)
  CAP_NET_RAW     net_af_packet / net_af_xdp: the packet socket itself
  CAP_NET_ADMIN   net_af_packet / net_af_xdp: the interface's MAC and promiscuous / multicast flags at start
  CAP_BPF         net_af_xdp: its XDP program (CAP_SYS_ADMIN on kernels before 5.8, which have no CAP_BPF)
A vdev that reads a capture (net_pcap) needs none.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from pathlib import Path

SETPRIV = "setpriv"


def _vdev_kinds(cfg) -> set[str]:
    from .config import devices

    return {d.name.rstrip("0123456789") for d in devices(cfg) if not d.pci}


def needed_caps(cfg, kernel: tuple[int, int] | None = None) -> list[str]:
    """The capabilities the data plane needs for this configuration (names without CAP_, lower case, sorted)."""
    from .config import devices

    caps = set()
    if cfg.hugepages or any(d.pci for d in devices(cfg)):
        caps.add("ipc_lock")
    kinds = _vdev_kinds(cfg)
    if kinds & {"net_af_packet", "net_af_xdp"}:
        caps |= {"ipc_lock", "net_raw", "net_admin"}
    if "net_af_xdp" in kinds:
        k = kernel or _kernel()
        if k < (5, 8):
            caps.add("sys_admin")
        else:
            caps.add("bpf")
    return sorted(caps)


def _kernel() -> tuple[int, int]:
    try:
        a, b = os.uname().release.split(".")[:2]
        return int(a), int("".join(c for c in b if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def _groups(user: str, gid: int, extra: int) -> list[int]:
    gids = set(os.getgrouplist(user, gid))
    if extra >= 0:
        gids.add(extra)
    return sorted(gids)


def drop_prefix(cfg) -> list[str]:
    """The setpriv(1) command that starts the data plane as run.user with only needed_caps, or [] when there is
    nothing to change (no run.user, or this process runs as that user already). ConfigError when it cannot be
    done: fh run is neither root nor run.user, or setpriv is missing."""
    from .config import ConfigError

    if cfg.run_user is None:
        return []
    pw = pwd.getpwnam(cfg.run_user)
    gid = grp.getgrnam(cfg.run_group).gr_gid if cfg.run_group else pw.pw_gid
    if os.geteuid() == pw.pw_uid:
        return []
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name if _has_uid(os.geteuid()) else str(os.geteuid())
        raise ConfigError(f"{cfg.path}: run.user = {cfg.run_user!r}: fh run runs as {me}, which cannot become "
                          f"{cfg.run_user}: start it as root (it then drops to {cfg.run_user}), or as "
                          f"{cfg.run_user} itself (systemd User=, deploy/fh@.service)")
    tool = shutil.which(SETPRIV)
    if tool is None:
        raise ConfigError(f"{cfg.path}: run.user = {cfg.run_user!r}: setpriv is missing (util-linux): apt-get "
                          "install util-linux")
    return setpriv_argv(cfg.run_user, gid, needed_caps(cfg), cfg.gid, tool)


def setpriv_argv(user: str, gid: int, caps: list[str], extra_gid: int = -1, tool: str = SETPRIV) -> list[str]:
    """setpriv(1) arguments (up to `--`) that run a command as user (primary group gid, the user's groups and
    extra_gid as supplementary ones) with exactly `caps` (ambient, inheritable, bounding; none: an empty set),
    no_new_privs, and a fresh environment (HOME, USER, SHELL, PATH of the user; TERM): nothing of the
    starting root's environment reaches the data plane."""
    pw = pwd.getpwnam(user)
    plus = "".join(f",+{c}" for c in caps)
    cmd = [tool, f"--reuid={pw.pw_uid}", f"--regid={gid}",
           f"--groups={','.join(map(str, _groups(user, gid, extra_gid)))}",
           f"--inh-caps=-all{plus}", f"--bounding-set=-all{plus}"]
    if caps:
        cmd.append(f"--ambient-caps=-all{plus}")
    return [*cmd, "--no-new-privs", "--reset-env", "--"]


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


# ---- fh check ---------------------------------------------------------------------------------------------


_CAP_BITS = {"net_admin": 12, "net_raw": 13, "ipc_lock": 14, "sys_admin": 21, "bpf": 39}


def _ambient() -> set[str]:
    """The capabilities in this process's ambient set (what fh run would pass on to the data plane)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapAmb:"):
                bits = int(line.split()[1], 16)
                return {c for c, b in _CAP_BITS.items() if bits >> b & 1}
    except (OSError, ValueError):
        pass
    return set()


def _can(path: Path, uid: int, gids: set[int], want: int) -> bool:
    """Whether uid (with groups gids) has the access bits `want` (4 r, 2 w, 1 x) on path by its mode."""
    try:
        st = path.stat()
    except OSError:
        return False
    if uid == 0:
        return True
    mode = st.st_mode
    bits = (mode >> 6) & 7 if st.st_uid == uid else (mode >> 3) & 7 if st.st_gid in gids else mode & 7
    return bits & want == want


def check(host, cfg, euid: int | None = None) -> list:
    """`fh check` items `user` and `access`: as whom the data plane will run, and whether that user can reach what
    it needs (the segment directory, the hugepage mount, the NIC's vfio group, the readers' group), with the
    capabilities fh run or the unit grants; and `metrics`: bound to loopback unless configured. Paths are read
    under host.root."""
    from .host.result import Result

    euid = os.geteuid() if euid is None else euid
    root = Path(host.root)
    user = cfg.run_user if cfg is not None else None
    if user is None:
        try:
            user = pwd.getpwuid(euid).pw_name
        except KeyError:
            return [Result("user", "FAIL", f"uid {euid} has no user name (no passwd entry)",
                           "run fh as a user of /etc/passwd"),
                    Result("access", "FAIL", "cannot tell what an unnamed user may open",
                           "give the uid a passwd entry (useradd), or run fh as a named user")] + _metrics(cfg)
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(cfg.run_group).gr_gid if cfg is not None and cfg.run_group else pw.pw_gid
    gids = set(os.getgrouplist(user, gid))
    caps = needed_caps(cfg) if cfg is not None else []
    capnames = ", ".join("CAP_" + c.upper() for c in caps) or "none"
    out = []
    missing = [c for c in caps if c not in _ambient()] if pw.pw_uid == euid != 0 else []
    if missing:  # fh run as this very user passes on only what it holds itself
        out.append(Result("user", "FAIL", f"the data plane would run as {user} without "
                          f"{', '.join('CAP_' + c.upper() for c in missing)}, which its devices need",
                          f"start fh run from the unit (AmbientCapabilities={' '.join('CAP_' + c.upper() for c in caps)}"
                          f", deploy/fh@.service), or as root with run.user = \"{user}\" in the config"))
    elif pw.pw_uid != 0:
        out.append(Result("user", "OK", f"the data plane runs as {user} (uid {pw.pw_uid}) with the capabilities "
                          f"{capnames}" + ("" if cfg is not None else " for the config's devices (--config)")))
    elif cfg is None:
        out.append(Result("user", "OK", "fh run as root starts the data plane as root unless the config sets "
                          "run.user (fh check --config FILE checks that user's access)"))
    else:
        out.append(Result("user", "WARN", "the data plane would run as root (fh run as root, no run.user in "
                          "the config): a parser bug on network input would then own the host",
                          "useradd --system --no-create-home --shell /usr/sbin/nologin fh; then run.user = "
                          "\"fh\" in [run] of the config, or User=fh in the unit (deploy/fh@.service); it needs "
                          f"only {capnames}"))
    if cfg is None:
        return out + [Result("access", "OK", "no configuration: the segment directory, hugepage mount and vfio "
                             "group are checked for run.user with --config")] + _metrics(cfg)

    if pw.pw_uid == 0:
        return out + [Result("access", "OK", "root opens everything (the user item says why it should not)")] + \
            _metrics(cfg)
    # paths absent from the host tree (a fixture, a container) are not judged
    seg_dir = Path(str(root) + os.path.dirname(cfg.segment))
    if seg_dir.exists() and not _can(seg_dir, pw.pw_uid, gids, 3):
        out.append(Result("access", "FAIL", f"{user} cannot create the segment in {os.path.dirname(cfg.segment)}",
                          f"chgrp {grp.getgrgid(gid).gr_name} {os.path.dirname(cfg.segment)} && chmod g+rwx "
                          f"{os.path.dirname(cfg.segment)} (or shm.dir = a directory {user} owns)"))
    if cfg.gid >= 0 and cfg.gid not in gids:
        name = grp.getgrgid(cfg.gid).gr_name
        out.append(Result("access", "FAIL", f"{user} is not in the readers' group {name} (shm.group): it cannot "
                          "give the segment to that group", f"usermod -aG {name} {user}"))
    if cfg.hugepages:
        mounts = [m for m in host.mounts if m.fstype == "hugetlbfs"]
        mounts = [m for m in mounts if Path(str(root) + m.path).exists()]
        if mounts and not any(_can(Path(str(root) + m.path), pw.pw_uid, gids, 3) for m in mounts):
            m = mounts[0].path
            out.append(Result("access", "FAIL", f"{user} cannot create hugepage files in {m} "
                              f"({', '.join(x.path for x in mounts)})",
                              f"mount -o remount,gid={gid},mode=1770 {m} (fstab: hugetlbfs {m} hugetlbfs "
                              f"gid={gid},mode=1770 0 0)"))
    from .config import devices

    for d in devices(cfg):
        if not d.pci:
            continue
        dev = host.pci.get(d.spec)
        group = dev.iommu_group if dev else None
        if group is None:
            continue
        node = Path(str(root) + f"/dev/vfio/{group}")
        if node.exists() and not _can(node, pw.pw_uid, gids, 6):
            out.append(Result("access", "FAIL", f"{user} cannot open /dev/vfio/{group} (the IOMMU group of "
                              f"{d.spec})", f"echo 'SUBSYSTEM==\"vfio\", GROUP=\"{grp.getgrgid(gid).gr_name}\", "
                              "MODE=\"0660\"' > /etc/udev/rules.d/90-fh-vfio.rules && udevadm trigger "
                              "--subsystem-match=vfio"))
    if not any(r.item == "access" for r in out):
        out.append(Result("access", "OK", f"{user} can create the segment in {os.path.dirname(cfg.segment)}"
                          + (" and hugepage files" if cfg.hugepages else "")
                          + (", and open the NIC's vfio group" if any(d.pci for d in devices(cfg)) else "")))
    seg = Path(str(root) + cfg.segment)
    if seg.exists() and seg.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH):
        out.append(Result("access", "WARN", f"{cfg.segment} is readable or writable by every user "
                          f"({oct(seg.stat().st_mode & 0o777)})", f"chmod o-rwx {cfg.segment} (fh makes it "
                          "0640; an older one is replaced at the next fh run)"))
    return out + _metrics(cfg)


def _metrics(cfg) -> list:
    from .host.result import Result

    listen = cfg.metrics.listen if cfg is not None else None
    if listen is None:
        return [Result("metrics", "OK", "fh metrics listens on 127.0.0.1 unless --listen says otherwise")]
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("127.0.0.1", "::1", "localhost") or host.startswith("127."):
        return [Result("metrics", "OK", f"metrics.listen = {listen}: loopback only")]
    return [Result("metrics", "WARN", f"metrics.listen = {listen}: the counters are served beyond this host",
                   "bind it to 127.0.0.1 and let the Prometheus node's scraper reach it through a tunnel or a "
                   "reverse proxy, or firewall the port to the scraper")]
