"""Least privilege (handler/privilege.py, docs/hardening.md): the data plane as an unprivileged user with only
the capabilities its devices need, on net_pcap and on net_af_packet; [run] user/group in the config; the
segment and wake files closed to other users; `fh check`'s user / access / metrics items; the systemd unit."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, fh, why_no_dataplane
from handler import config, privilege, process, replay
from handler.host import topology
from handler.host.check import LEVELS
from handler.segments import wake_path

PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"
USER = "nobody"  # every Debian system has it: an unprivileged user with no home and no login
READERS = "users"  # a group nobody is not in: the segment's readers' group in these tests
CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK = 12, 13, 14


def _why_not() -> str | None:
    if why_no_dataplane():
        return why_no_dataplane()
    if os.geteuid() != 0:
        return "needs root: the test starts the data plane as another user"
    if not shutil.which("setpriv"):
        return "setpriv (util-linux) is missing"
    try:
        pwd.getpwnam(USER), grp.getgrnam(READERS)
    except KeyError:
        return f"no user {USER} or group {READERS} on this host"
    d = Path(process.find_dataplane()).resolve().parent
    for a in (d, *d.parents):  # another user must be able to reach the program (a checkout under /root cannot)
        if not os.stat(a).st_mode & 0o001:
            return (f"fh-dataplane lies inside {a} (mode {os.stat(a).st_mode & 0o777:04o}), which other users cannot "
                    f"enter, so {USER} cannot run it: clone fh where others may read it (e.g. /opt/fh) to run this")
    return None


needs_root = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))

CFG = """
[instance]
name = "{name}"
[[feed.lines]]
name = "A"
group = "233.54.12.111"
port = 26477
[[feed.lines]]
name = "B"
group = "233.49.196.111"
port = 26477
[nic]
vdev = "{vdev}"
[memory]
hugepages = {huge}
[run]
idle = "backoff"
exit_idle_ms = 300
{run}
[shm]
{shm}
[metrics]
{metrics}
"""


def cfg(tmp_path, *, name=None, vdev=f"net_pcap0,rx_pcap={PCAP}", huge="false", run=f'user = "{USER}"',
        shm=f'group = "{READERS}"', metrics="") -> Path:
    p = tmp_path / "fh.toml"
    p.write_text(CFG.format(name=name or f"priv{uuid.uuid4().hex[:6]}", vdev=vdev, huge=huge, run=run, shm=shm,
                            metrics=metrics))
    return p


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


def _as(uid: int, groups: list[int], *cmd: str) -> subprocess.CompletedProcess:
    g = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", g, *cmd], capture_output=True, text=True)


# ---- what a configuration needs ---------------------------------------------------------------------------


def test_needed_caps_by_device(tmp_path):
    pcap = config.load(cfg(tmp_path))
    assert privilege.needed_caps(pcap) == []  # reading a capture needs nothing
    af = config.load(cfg(tmp_path, vdev="net_af_packet0,iface=veth0"))
    assert privilege.needed_caps(af) == ["ipc_lock", "net_admin", "net_raw"]
    huge = config.load(cfg(tmp_path, huge="true"))
    assert privilege.needed_caps(huge) == ["ipc_lock"]
    xdp = config.load(cfg(tmp_path, vdev="net_af_xdp0,iface=eth1"))
    assert privilege.needed_caps(xdp, kernel=(5, 4)) == ["ipc_lock", "net_admin", "net_raw", "sys_admin"]
    assert privilege.needed_caps(xdp, kernel=(6, 1)) == ["bpf", "ipc_lock", "net_admin", "net_raw"]


def test_run_user_and_group_are_validated(tmp_path):
    c = config.load(cfg(tmp_path))
    assert c.run_user == USER and c.run_group is None
    for run, msg in ((f'user = "fh-no-such-{uuid.uuid4().hex[:6]}"', "run.user = .*no such user: create it "
                      r"\(useradd --system"),
                     ('user = "root"', "run.user = 'root': is root"),
                     ('group = "users"', "run.group = 'users': needs run.user"),
                     (f'user = "{USER}"\ngroup = "fh-no-such-group"', r"run.group = .*no such group: create it "
                      r"\(groupadd"),
                     ("user = 7", "run.user = 7: must be a user name")):
        with pytest.raises(config.ConfigError, match=msg):
            config.load(cfg(tmp_path, run=run))


@needs_root
def test_drop_prefix(tmp_path):
    c = config.load(cfg(tmp_path, vdev="net_af_packet0,iface=veth0"))
    pre = privilege.drop_prefix(c)
    nobody = pwd.getpwnam(USER)
    assert pre[0].endswith("setpriv") and pre[-1] == "--"
    assert f"--reuid={nobody.pw_uid}" in pre and f"--regid={nobody.pw_gid}" in pre
    assert "--ambient-caps=-all,+ipc_lock,+net_admin,+net_raw" in pre
    assert "--bounding-set=-all,+ipc_lock,+net_admin,+net_raw" in pre
    assert "--no-new-privs" in pre and "--reset-env" in pre
    groups = next(a for a in pre if a.startswith("--groups=")).split("=")[1].split(",")
    assert str(grp.getgrnam(READERS).gr_gid) in groups  # so that it may give the segment to its readers
    pcap = config.load(cfg(tmp_path))
    assert not any(a.startswith("--ambient-caps") for a in privilege.drop_prefix(pcap))
    assert "--bounding-set=-all" in privilege.drop_prefix(pcap)
    assert privilege.drop_prefix(config.load(cfg(tmp_path, run=""))) == []


# ---- the data plane as nobody -----------------------------------------------------------------------------


def _closed_to_others(segment: str, readers_gid: int) -> None:
    """The segment (0640) and its wake page (0660) belong to nobody and the readers' group; a user outside the
    group cannot open either, one inside can."""
    wake = wake_path(segment)
    nobody = pwd.getpwnam(USER).pw_uid
    for path, mode in ((segment, 0o640), (wake, 0o660)):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, _mode(path)) == (nobody, readers_gid, mode), (path, oct(_mode(path)))
    stranger = 65533  # no passwd entry, no group: "others"
    r = _as(stranger, [], "cat", segment)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = _as(stranger, [], "cat", wake)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = _as(stranger, [readers_gid], "head", "-c", "8", segment)
    assert r.returncode == 0 and r.stdout == "FFHSHM01"  # the magic


@needs_root
def test_fh_run_as_run_user_on_net_pcap(tmp_path, run_dir):
    """fh run (as root) with run.user: the data plane runs as nobody, its segment is nobody's, 0640, for the
    readers' group only."""
    name = f"priv{uuid.uuid4().hex[:6]}"
    p = cfg(tmp_path, name=name)
    r = fh("run", "--config", p, "--keep-segment", "--json", check=False)
    segment = f"/dev/shm/fh-{name}"
    try:
        assert r.returncode == 0, r.stderr
        import json

        stats = json.loads(r.stdout.strip().splitlines()[-1])
        assert stats["messages_applied"] == 40000 and sum(stats["drops"].values()) == 0
        _closed_to_others(segment, grp.getgrnam(READERS).gr_gid)
    finally:
        process.remove_segment(segment)


@needs_root
def test_dataplane_as_nobody_with_granted_caps_on_net_pcap(tmp_path):
    """Started under privilege.setpriv_argv: uid nobody, exactly the capability granted (CAP_IPC_LOCK here),
    no_new_privs; the books it publishes equal the reference model's."""
    name = f"priv{uuid.uuid4().hex[:6]}"
    segment = f"/dev/shm/fh-{name}"
    nobody = pwd.getpwnam(USER)
    readers = grp.getgrnam(READERS).gr_gid
    pre = privilege.setpriv_argv(USER, nobody.pw_gid, ["ipc_lock"], readers)
    cmd = process.dataplane_cmd(replay.eal_args(name, f"net_pcap0,rx_pcap={PCAP}"), segment, replay.pcap_lines(PCAP),
                               exit_idle_ms=0, extra=["--group", str(readers)])
    dp = process.Dataplane([*pre, *cmd])
    try:
        dp.wait_running()
        st = _status(dp.p.pid)
        assert st["Uid"].split()[:2] == [str(nobody.pw_uid)] * 2 and st["NoNewPrivs"] == "1"
        for k in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
            assert int(st[k], 16) == 1 << CAP_IPC_LOCK, (k, st[k])
        replay._settle(segment, dp)
        got = replay.segment_books(segment)
        stats = dp.stop()
        assert stats["messages_applied"] == 40000
        assert replay.diff_books(got, replay.reference_books(PCAP)[0]) == []
        _closed_to_others(segment, readers)
    finally:
        dp.close()
        process.remove_segment(segment)


AF_PACKET_CAPS = ["ipc_lock", "net_admin", "net_raw"]


def _lab():
    from handler.net import sender

    if not process.pmd_available("net_af_packet"):
        pytest.skip("DPDK's net_af_packet driver is not installed")
    try:
        return sender.Lab(f"q{uuid.uuid4().hex[:6]}").up()
    except sender.LabError as e:
        pytest.skip(f"cannot create a network namespace and a veth pair here: {e}")


@needs_root
def test_dataplane_as_nobody_on_af_packet():
    """Live traffic over a veth pair to net_af_packet, the data plane as nobody with CAP_IPC_LOCK, CAP_NET_RAW
    and CAP_NET_ADMIN only: the books equal the reference model's."""
    from handler.net import sender

    _lab().down()
    nobody = pwd.getpwnam(USER)
    pre = privilege.setpriv_argv(USER, nobody.pw_gid, AF_PACKET_CAPS)
    stats, got = replay.replay_live(PCAP, sender.Pace("pps", pps=20000), want_books=True, prefix=pre,
                                    lab_id=f"q{uuid.uuid4().hex[:6]}")
    assert stats["messages_applied"] == 40000
    assert replay.diff_books(got, replay.reference_books(PCAP)[0]) == []


@needs_root
@pytest.mark.parametrize("missing, why", [
    ("ipc_lock", "call to mmap failed on AF_PACKET socket"),  # its rings are MAP_LOCKED
    ("net_raw", "Could not open AF_PACKET socket"),
    ("net_admin", "Operation not permitted"),                # the interface's MAC and flags at start
])
def test_af_packet_needs_each_capability(missing, why):
    """Each capability privilege.needed_caps names for af_packet is needed: without it the port fails, saying
    why."""
    lab = _lab()
    try:
        nobody = pwd.getpwnam(USER)
        name = f"priv{uuid.uuid4().hex[:6]}"
        eal = replay.eal_args(name, f"net_af_packet0,iface={lab.dp_if},framecnt=4096")
        eal += ["--log-level", "pmd.net.af_packet:info"]
        cmd = process.dataplane_cmd(eal, f"/dev/shm/fh-{name}", [("233.54.12.111", 26477)], keep=False)
        caps = [c for c in AF_PACKET_CAPS if c != missing]
        r = subprocess.run([*privilege.setpriv_argv(USER, nobody.pw_gid, caps), *cmd], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0 and why in r.stderr, r.stderr[-800:]
    finally:
        lab.down()


# ---- fh check --------------------------------------------------------------------------------------------


def _check(c: config.Config, root="/"):
    host = topology.read_host(root)
    return {(r.item, r.level): r for r in privilege.check(host, c)}


@needs_root
def test_check_names_what_the_run_user_lacks(tmp_path):
    closed = tmp_path / "shm"
    closed.mkdir(mode=0o700)
    c = config.load(cfg(tmp_path, shm=f'dir = "{closed}"\ngroup = "{READERS}"',
                        metrics='listen = "0.0.0.0:9377"'))
    rs = _check(c)
    assert ("user", "OK") in rs and "runs as nobody" in rs["user", "OK"].message
    fails = [r for (item, level), r in rs.items() if item == "access" and level == "FAIL"]
    msgs = " | ".join(r.message for r in privilege.check(topology.read_host("/"), c) if r.level == "FAIL")
    assert f"nobody cannot create the segment in {closed}" in msgs
    assert "is not in the readers' group users" in msgs and fails
    fixes = [r.fix for r in privilege.check(topology.read_host("/"), c) if r.level == "FAIL"]
    assert any(f.startswith("usermod -aG users nobody") for f in fixes)
    assert rs["metrics", "WARN"].fix
    # the same user with a directory it may write, its own group, loopback metrics: nothing to fix
    ok = config.load(cfg(tmp_path, shm="", metrics='listen = "127.0.0.1:9377"'))
    levels = {r.level for r in privilege.check(topology.read_host("/"), ok)}
    assert levels == {"OK"}


def test_check_as_root_without_run_user_warns(tmp_path):
    c = config.load(cfg(tmp_path, run=""))
    rs = privilege.check(topology.read_host("/"), c, euid=0)
    (user,) = [r for r in rs if r.item == "user"]
    assert user.level == "WARN" and "run.user" in user.fix and "deploy/fh@.service" in user.fix
    assert max(LEVELS[r.level] for r in rs) == 1


@needs_root
def test_check_warns_of_a_world_readable_segment(tmp_path):
    name = f"priv{uuid.uuid4().hex[:6]}"
    seg = Path(f"/dev/shm/fh-{name}")
    seg.write_bytes(b"x")
    try:
        seg.chmod(0o644)
        c = config.load(cfg(tmp_path, name=name, shm=""))
        rs = [r for r in privilege.check(topology.read_host("/"), c) if r.level == "WARN"]
        assert any("readable or writable by every user" in r.message and r.fix.startswith("chmod o-rwx")
                   for r in rs)
    finally:
        seg.unlink()


# ---- the systemd unit ------------------------------------------------------------------------------------


def _unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (ROOT / "deploy" / "fh@.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_runs_unprivileged_and_sandboxed():
    u = _unit()
    assert u["User"] == ["fh"] and u["NoNewPrivileges"] == ["yes"]
    caps = set(u["CapabilityBoundingSet"][0].split())
    assert caps == set(u["AmbientCapabilities"][0].split()) <= {"CAP_IPC_LOCK", "CAP_NET_RAW", "CAP_NET_ADMIN"}
    for key, want in (("ProtectSystem", "strict"), ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
                      ("ProtectKernelModules", "yes"), ("ProtectControlGroups", "yes"), ("UMask", "0027"),
                      ("RestrictSUIDSGID", "yes"), ("LockPersonality", "yes")):
        assert u.get(key) == [want], key


def test_unit_verifies():
    """systemd-analyze verify: no unknown key, no bad value (the missing /usr/local/bin/fh aside)."""
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("systemd-analyze is not installed")
    r = subprocess.run([sa, "verify", "--man=no", str(ROOT / "deploy" / "fh@.service")], capture_output=True,
                       text=True)
    complaints = [l for l in (r.stdout + r.stderr).splitlines()
                  if l.strip() and "/usr/local/bin/fh" not in l and "fh@.service" in l]
    assert not complaints, complaints


def test_check_as_the_run_user_without_its_capabilities_fails(tmp_path):
    """fh check run by the data plane's own user (no run.user: it would run as itself), for af_packet, with none
    of the ambient capabilities fh run would pass on: FAIL, naming them and the unit's line."""
    if privilege._ambient():
        pytest.skip("this test process holds ambient capabilities")
    p = cfg(tmp_path, vdev="net_af_packet0,iface=veth0", run="", shm="")
    nobody = pwd.getpwnam(USER)
    (user,) = [r for r in privilege.check(topology.read_host("/"), config.load(p), euid=nobody.pw_uid)
               if r.item == "user"]
    assert user.level == "FAIL" and "without CAP_IPC_LOCK, CAP_NET_ADMIN, CAP_NET_RAW" in user.message
    assert "AmbientCapabilities=CAP_IPC_LOCK CAP_NET_ADMIN CAP_NET_RAW" in user.fix
