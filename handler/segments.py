"""Where an instance's shared-memory segment lives: in a hugetlbfs mount with enough free hugepages (fewer
TLB misses for readers and writer alike), else in /dev/shm. Writers choose; readers find."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

SHM_DIR = "/dev/shm"
NAME_MAX = 31


class InstanceNameError(InputError):
    """An instance name that is not 1-31 letters, digits, '-' or '_'; the message says so and where it came from."""


def instance_name(name, what: str = "--name") -> str:
    """The one check of an instance name, wherever one comes from (instance.name, --name of publish, run,
    replay, status, stop, metrics ...): it names files (the segment fh-NAME, the pidfile NAME.pid), so it is
    1-31 letters, digits, '-' or '_' and nothing that could leave their directory. Returns it, or raises
    InstanceNameError naming `what`."""
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in name):
        raise InstanceNameError(f"{what} {name!r}: an instance name is 1-{NAME_MAX} letters, digits, '-' or '_' "
                                f"(it names the segment fh-NAME and the pidfile NAME.pid)")
    return name


def hugetlbfs_mounts(root: str = "/") -> list[tuple[str, int]]:
    """(mount point, page size in bytes) of every hugetlbfs mount, from /proc/mounts."""
    out = []
    try:
        lines = Path(root, "proc/mounts").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "hugetlbfs":
            size = 2 << 20
            for opt in parts[3].split(","):
                if opt.startswith("pagesize="):
                    v = opt.split("=", 1)[1].upper()
                    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(v[-1:], 1)
                    size = int(v.rstrip("KMG") or 0) * mult
            out.append((parts[1], size))
    return out


def free_hugepage_bytes(page_size: int, root: str = "/") -> int:
    try:
        free = int(Path(root, f"sys/kernel/mm/hugepages/hugepages-{page_size >> 10}kB/free_hugepages").read_text())
    except (OSError, ValueError):
        return 0
    return free * page_size


def writer_path(name: str, size: int, directory: str = "auto", root: str = "/") -> str:
    """The segment file for a new writer of `size` bytes: `directory` if one is given, else the first
    writable hugetlbfs mount with room for it, else /dev/shm."""
    instance_name(name)
    if directory != "auto":
        return str(Path(directory, f"fh-{name}"))
    for mount, page in hugetlbfs_mounts(root):
        if os.access(mount, os.W_OK) and free_hugepage_bytes(page, root) >= size:
            return str(Path(mount, f"fh-{name}"))
    return f"{SHM_DIR}/fh-{name}"


def reader_path(name: str, root: str = "/") -> str:
    """The segment of instance `name`: the one that exists, in a hugetlbfs mount or /dev/shm (the /dev/shm
    path when there is none, for the error message)."""
    instance_name(name)
    for mount, _ in hugetlbfs_mounts(root):
        p = Path(mount, f"fh-{name}")
        if p.exists():
            return str(p)
    return f"{SHM_DIR}/fh-{name}"


def wake_path(segment: str | os.PathLike) -> str:
    """The wake page of a segment: fh_shm_wake_path (fh/shm.h) itself, so that C and Python cannot disagree.
    /dev/shm/BASENAME.wake when the segment's directory resolves (realpath) to /dev/shm, else
    /dev/shm/BASENAME.HASH.wake, HASH the 16 hex digits of FNV-1a 64 over the resolved directory's bytes: segments of
    one basename in two directories (two hugetlbfs mounts) have a page each."""
    from ._native import ffi, lib

    p = os.fsencode(segment)
    out = ffi.new("char[]", len(p) + 4096 + 32)  # the resolved directory is at most PATH_MAX
    if lib.fh_shm_wake_path(p, out, len(out)):
        raise InputError(f"{os.fsdecode(p)!r}: the wake page's name does not fit in {len(out)} bytes")
    return os.fsdecode(ffi.string(out))


def remove(segment: str) -> None:
    """Remove a segment and its wake page (after its writer is gone)."""
    for p in (segment, wake_path(segment)):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def instances(run_dirs=(), root: str = "/") -> list[str]:
    """The names of every instance this host has a trace of: a segment fh-NAME in /dev/shm or a hugetlbfs mount,
    or a pidfile NAME.pid in one of `run_dirs` (where fh run keeps them), sorted. Files whose names are not
    instance names (wake pages, a standby's .repl segment) are not instances."""
    found = set()
    dirs = [str(Path(root, SHM_DIR.lstrip("/")))] + [m for m, _ in hugetlbfs_mounts(root)]
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        found.update(n[3:] for n in names if n.startswith("fh-"))
    for d in run_dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        found.update(n[:-4] for n in names if n.endswith(".pid"))
    out = []
    for n in sorted(found):
        try:
            out.append(instance_name(n))
        except InstanceNameError:
            continue
    return out
