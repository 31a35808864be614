"""A Debian 12 (bookworm) root for the Ansible converge test: built once with debootstrap (minbase, plus what a
bare-metal host has that the roles rely on: python3 for Ansible, python3-apt for its apt module in check mode,
systemd for units, ca-certificates), cached as a tarball, and unpacked fresh for every test run.

    python tests/ansible/bookworm_root.py [CACHE_DIR]     # build the cache ahead of the test (as root)
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

SUITE = "bookworm"
INCLUDE = "python3,python3-apt,systemd,systemd-sysv,ca-certificates"
# a new package list is a new tarball
TARBALL = f"{SUITE}-minbase-{hashlib.sha256(INCLUDE.encode()).hexdigest()[:8]}.tar.gz"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The archive could not be reached: the only reason the test skips.
UNREACHABLE = ("Failed getting release file", "Couldn't download", "Temporary failure resolving",
               "Could not resolve", "Connection refused", "Network is unreachable", "No route to host",
               "Couldn't download release file", "Failed getting release signature")


class ArchiveUnreachable(RuntimeError):
    pass


def cache_dir() -> Path:
    d = os.environ.get("FH_TEST_CACHE") or ("/var/cache/fh-test" if os.geteuid() == 0 else
                                             os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                          "fh-test"))
    return Path(d)


def host_sources() -> list[str]:
    return sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))


def mirror() -> str:
    """The Debian mirror this host's apt uses (its deb822 .sources), else deb.debian.org."""
    for f in host_sources():
        for line in Path(f).read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return DEFAULT_MIRROR


def build(cache: Path, log) -> Path:
    """The cached tarball, built when missing. Raises ArchiveUnreachable when debootstrap cannot reach the
    archive, RuntimeError on any other failure (with the log's tail)."""
    out = cache / TARBALL
    if out.is_file() and out.stat().st_size > 0:
        return out
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: bash scripts/setup.sh installs it (apt-get install debootstrap)")
    cache.mkdir(parents=True, exist_ok=True)
    # One build at a time: scripts/test.sh starts one ahead of pytest (beside the C tests), and the test waits for
    # it here rather than building a second root.
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file() and out.stat().st_size > 0:
            return out
        return _build(cache, out, log)


def _build(cache: Path, out: Path, log) -> Path:
    work = Path(cache / f"build-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    r = subprocess.run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(work), mirror()],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(r.stdout[-4000:], file=log)
    if r.returncode != 0:
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)
        if any(s in r.stdout for s in UNREACHABLE):
            raise ArchiveUnreachable(f"debootstrap could not reach {mirror()}: {r.stdout.strip().splitlines()[-1]}")
        raise RuntimeError(f"debootstrap failed (exit {r.returncode}): {r.stdout[-1500:]}")
    _unmount_below(work)
    # apt inside the root uses the host's sources (mirror, suites, security), as the host does
    for f in host_sources():
        shutil.copy(f, work / "etc/apt/sources.list.d" / Path(f).name)
    (work / "etc/apt/sources.list").unlink(missing_ok=True)
    for deb in (work / "var/cache/apt/archives").glob("*.deb"):  # what debootstrap downloaded: not the root's
        deb.unlink()
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    # gzip level 1: 2.5 s for the ~250 MB root, against 25 s at tarfile's default 9 (95 MB against 86 MB)
    with tarfile.open(tmp, "w:gz", compresslevel=1) as t:
        t.add(work, arcname=".")
    os.replace(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _unmount_below(root: Path) -> None:
    """debootstrap mounts /proc and /sys in the root while it works; never leave (or delete through) one."""
    mounts = [l.split()[1] for l in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


def unpack(tarball: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as t:
        # the filter argument exists from Python 3.11.4 (Debian 12's python3 is 3.11.2): our own tarball
        t.extractall(dest, **({"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}))


def remove(top: Path) -> None:
    """Delete an unpacked root, never through a mount that is still there."""
    _unmount_below(top)
    if any(l.split()[1].startswith(str(top) + "/") for l in Path("/proc/mounts").read_text().splitlines()):
        raise RuntimeError(f"left {top} in place: something is still mounted below it")
    shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    c = Path(sys.argv[1]) if len(sys.argv) > 1 else cache_dir()
    print(build(c, sys.stderr))
