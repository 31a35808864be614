"""The Ansible roles (ansible/): lint and syntax, then a real converge of the example inventory's fh-nasdaq-1 into a
debootstrap'ed Debian 12 root through Ansible's chroot connection: packages installed, files written, units enabled.
A second converge changes nothing, and neither does --check --diff. Steps a chroot cannot take (update-grub,
binding NICs, reserving hugepages, starting services, fh check) are turned off by tests/ansible/chroot.yml; the
roles then report the exact command they would have run, and that is asserted.

Needs root (debootstrap, chroot). The root is cached (tests/ansible/bookworm_root.py: /var/cache/fh-test, or
$FH_TEST_CACHE); the first build takes a few minutes, a converge about a minute. Skips only when debootstrap cannot
reach the Debian archive."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import importlib.util

import pytest

pytestmark = pytest.mark.slow  # lint, and converges into a debootstrap'ed root: minutes, not seconds

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = ROOT / "ansible"
HERE = Path(__file__).resolve().parent / "ansible"
HOST = "fh-nasdaq-1"
WITNESS = "fh-witness-1"
BIN = Path(sys.executable).parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bookworm_root = _load("fh_test_bookworm_root", HERE / "bookworm_root.py")


def _tool(name: str) -> str:
    p = BIN / name
    if p.exists():
        return str(p)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: bash scripts/setup.sh installs ansible-core, ansible and ansible-lint into .venv")
    return found


def _env() -> dict:
    return {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def test_lint_production_profile():
    r = subprocess.run([_tool("ansible-lint"), "--profile", "production", "--nocolor"], cwd=ANSIBLE, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in r.stdout + r.stderr


def test_syntax_check():
    r = subprocess.run([_tool("ansible-playbook"), "--syntax-check", "-i", "inventory/example", "site.yml"],
                       cwd=ANSIBLE, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_filters():
    f = _load("fh_test_filters", ANSIBLE / "filter_plugins" / "fh.py")
    assert f.fh_cpus("2-5,8") == [2, 3, 4, 5, 8]
    assert f.fh_cpulist([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert f.fh_cpumask("0-1") == "3" and f.fh_cpumask("2-15") == "fffc"
    assert f.fh_cpumask("0,33") == "2,00000001"  # 32-bit words, most significant first, as /sys takes them
    assert f.fh_hugepage_args([{"size": "1G", "per_node": {1: 2, 0: 4}}, {"size": "2M", "count": 512}]) == [
        "default_hugepagesz=1G", "hugepagesz=1G", "hugepages=0:4,1:2", "hugepagesz=2M", "hugepages=512"]
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="not a CPU or a range"):
        f.fh_cpus("2-x")
    with pytest.raises(AnsibleFilterError, match="give count"):
        f.fh_hugepage_args([{"size": "1G"}])


# --- the converge -------------------------------------------------------------------------------------------

def _source_hash() -> str:
    h = hashlib.sha256()
    for top in ("handler", "native", "meson.build", "meson.options", "pyproject.toml", "README.md", "LICENSE"):
        p = ROOT / top
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file() and "__pycache__" not in x.parts)
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _wheelhouse(cache: Path) -> Path:
    """fh's wheel and its dependencies' wheels, built from this checkout (cached by a hash of the sources)."""
    wh = cache / f"wheelhouse-{_source_hash()}"
    if not any(wh.glob("fh-*.whl")):
        # other checkouts on this machine may share the cache: only wheelhouses unused for a week are removed
        for old in cache.glob("wheelhouse-*"):
            if time.time() - old.stat().st_mtime > 7 * 86400:
                shutil.rmtree(old, ignore_errors=True)
        tmp = cache / f"{wh.name}.tmp{os.getpid()}"
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "-w", str(tmp), str(ROOT)],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"building the wheelhouse failed: {r.stderr[-3000:]}"
        try:
            tmp.rename(wh)
        except OSError:  # another run built it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    os.utime(wh)
    return wh


def _playbook(root: Path, wheelhouse: Path, *args: str, extra: dict | None = None, playbook: str = "site.yml",
              host: str = HOST) -> dict:
    """ansible-playbook against the chroot for one inventory host, with the JSON callback: {'rc', 'stats', 'msgs',
    'tasks', 'out'}."""
    cmd = [_tool("ansible-playbook"), "-i", "inventory/example", playbook, "--limit", host,
           "-e", f"@{HERE / 'chroot.yml'}", "-e", f"ansible_host={root}", "-e", f"fh_service_wheelhouse={wheelhouse}",
           "-e", f"fh_service_version={_version(wheelhouse)}", *args]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    env = {**_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_DEPRECATION_WARNINGS": "0"}
    r = subprocess.run(cmd, cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=900)
    try:
        out = json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        raise AssertionError(f"ansible-playbook printed no JSON (exit {r.returncode}): {r.stdout[-3000:]} {r.stderr[-3000:]}")
    tasks, msgs = [], []
    for play in out["plays"]:
        for t in play["tasks"]:
            res = t["hosts"].get(host, {})
            tasks.append((t["task"]["name"], res))
            for item in [res] + list(res.get("results", [])):
                if isinstance(item.get("msg"), str):
                    msgs.append(item["msg"])
    return {"rc": r.returncode, "stats": out["stats"][host], "msgs": msgs, "tasks": tasks,
            "out": r.stdout[-6000:] + r.stderr[-3000:]}


def _version(wheelhouse: Path) -> str:
    return next(wheelhouse.glob("fh-*.whl")).name.split("-")[1]


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(cache directory, the bookworm root's tarball, the wheelhouse), built once for the module."""
    if os.geteuid() != 0:
        pytest.skip("the converge needs root (debootstrap and chroot): run the tests as root")
    cache = bookworm_root.cache_dir()
    log = tmp_path_factory.mktemp("log") / "debootstrap.log"
    try:
        with open(log, "w") as lf:
            tarball = bookworm_root.build(cache, lf)
    except bookworm_root.ArchiveUnreachable as e:
        pytest.skip(str(e))
    return cache, tarball, _wheelhouse(cache)


@pytest.fixture(scope="module")
def converged(cached):
    cache, tarball, wheelhouse = cached
    # not under pytest's basetemp: another pytest run on this machine may prune it while this one works
    top = Path(tempfile.mkdtemp(prefix="fh-ansible-"))
    try:
        root = top / "root"
        bookworm_root.unpack(tarball, root)
        # a chroot must not start services: what a host's image build does
        (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\n# no service starts in this root\nexit 101\n")
        (root / "usr/sbin/policy-rc.d").chmod(0o755)
        debs = cache / "debs"
        for d in debs.glob("*.deb"):  # packages the roles installed last time: not downloaded again
            shutil.copy(d, root / "var/cache/apt/archives" / d.name)
        first = _playbook(root, wheelhouse)
        assert first["rc"] == 0 and first["stats"]["failures"] == 0, first["out"]
        debs.mkdir(exist_ok=True)
        for d in (root / "var/cache/apt/archives").glob("*.deb"):
            if not (debs / d.name).exists():  # copied under another name first: other runs may read the cache
                shutil.copy(d, debs / f"{d.name}.tmp{os.getpid()}")
                os.replace(debs / f"{d.name}.tmp{os.getpid()}", debs / d.name)
        second = _playbook(root, wheelhouse)
        check = _playbook(root, wheelhouse, "--check", "--diff")
        yield {"root": root, "wheelhouse": wheelhouse, "first": first, "second": second, "check": check}
    finally:  # also when a converge fails: a root is half a gigabyte
        bookworm_root.remove(top)


def test_first_converge_changes_the_root(converged):
    s = converged["first"]["stats"]
    assert s["changed"] > 20 and s["unreachable"] == 0


def test_second_converge_changes_nothing(converged):
    r = converged["second"]
    changed = [name for name, res in r["tasks"] if res.get("changed")]
    assert r["rc"] == 0 and r["stats"]["changed"] == 0, changed


def test_check_diff_reports_no_change(converged):
    r = converged["check"]
    changed = [name for name, res in r["tasks"] if res.get("changed")]
    assert r["rc"] == 0 and r["stats"]["changed"] == 0 and r["stats"]["failures"] == 0, changed


def test_steps_a_chroot_cannot_take_are_reported_with_their_commands(converged):
    msgs = "\n".join(converged["first"]["msgs"])
    for want in ["fh_kernel: NOT RUN (fh_kernel_update_grub is false): update-grub",
                 "fh_tuning: NOT RUN (fh_tuning_apply is false): sysctl --system",
                 "fh_tuning: NOT RUN (fh_tuning_apply is false): systemd-tmpfiles --create /etc/tmpfiles.d/fh-tuning.conf",
                 "fh_tuning: NOT RUN (fh_tuning_apply is false): systemctl restart irqbalance",
                 "fh_hugepages: NOT RUN (fh_hugepages_apply is false): mount /dev/hugepages-1G",
                 "fh_hugepages: NOT RUN (fh_hugepages_apply is false): systemd-tmpfiles --create /etc/tmpfiles.d/fh-hugepages.conf",
                 "fh_nic: NOT RUN (fh_nic_apply is false): driverctl set-override 0000:3b:00.0 vfio-pci",
                 "fh_nic: NOT RUN (fh_nic_apply is false): driverctl set-override 0000:3b:00.3 vfio-pci",
                 "fh_ptp: NOT RUN (fh_ptp_apply is false): systemctl start ptp4l@ens1f0 phc2sys@ens1f0",
                 "fh_service: NOT RUN (fh_service_start is false): systemctl start fh@nasdaq.service",
                 "fh_service: NOT RUN (fh_service_host_checks is false): fh check --config /etc/fh/nasdaq.toml",
                 "fh_service: NOT RUN (fh_service_host_checks is false): fh plan --config /etc/fh/nasdaq.toml"]:
        assert want in msgs, f"missing: {want}"
    # the kernel parameters are compared with the running command line (given by chroot.yml): reboot required
    assert any(m.startswith("fh_kernel: reboot required: the running kernel lacks isolcpus=managed_irq,domain,2-15 ")
               and "(not rebooted" in m for m in converged["first"]["msgs"])
    # nothing is reported as not run once it is done: the second converge has no handler to run
    assert not [m for m in converged["second"]["msgs"] if "NOT RUN" in m and "update-grub" in m]


def test_grub_dropin(converged):
    text = (converged["root"] / "etc/default/grub.d/fh.cfg").read_text()
    line = [l for l in text.splitlines() if l.startswith("GRUB_CMDLINE_LINUX_DEFAULT=")]
    assert line == ['GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT isolcpus=managed_irq,domain,2-15 '
                    'irqaffinity=0-1 nohz_full=2-15 rcu_nocbs=2-15 default_hugepagesz=1G hugepagesz=1G hugepages=0:4 '
                    'hugepagesz=2M hugepages=512 intel_iommu=on iommu=pt"']


def test_sysctl_tmpfiles_irqbalance_affinity(converged):
    r = converged["root"]
    sysctl = dict(l.split(" = ") for l in (r / "etc/sysctl.d/60-fh.conf").read_text().splitlines()
                  if l and not l.startswith("#"))
    assert sysctl == {"kernel.hung_task_timeout_secs": "600", "kernel.nmi_watchdog": "0", "kernel.numa_balancing": "0",
                      "kernel.sched_rt_runtime_us": "-1", "kernel.timer_migration": "0", "vm.stat_interval": "10"}
    tmpfiles = [l for l in (r / "etc/tmpfiles.d/fh-tuning.conf").read_text().splitlines() if l.startswith("w ")]
    assert "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never" in tmpfiles
    assert "w /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor - - - - performance" in tmpfiles
    assert "w /sys/devices/virtual/workqueue/cpumask - - - - 3" in tmpfiles  # CPUs 0-1
    assert "w /sys/class/net/*/queues/rx-*/rps_cpus - - - - 3" in tmpfiles
    assert "IRQBALANCE_BANNED_CPULIST=2-15" in (r / "etc/default/irqbalance").read_text()
    assert "CPUAffinity=0 1" in (r / "etc/systemd/system.conf.d/60-fh-affinity.conf").read_text()
    assert (r / "usr/sbin/irqbalance").exists()  # installed for real
    assert (r / "etc/systemd/system/multi-user.target.wants/irqbalance.service").is_symlink()


def test_fstab_and_hugepage_reservations(converged):
    r = converged["root"]
    gid = next(l.split(":")[2] for l in (r / "etc/group").read_text().splitlines() if l.startswith("fh:"))
    fstab = [l.split() for l in (r / "etc/fstab").read_text().splitlines() if "hugetlbfs" in l]
    assert fstab == [["nodev", "/dev/hugepages-1G", "hugetlbfs", f"pagesize=1G,mode=1770,gid={gid}", "0", "0"],
                     ["nodev", "/dev/hugepages-2M", "hugetlbfs", f"pagesize=2M,mode=1770,gid={gid}", "0", "0"]]
    res = [l for l in (r / "etc/tmpfiles.d/fh-hugepages.conf").read_text().splitlines() if l.startswith("w ")]
    assert res == ["w /sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages - - - - 4",
                   "w /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages - - - - 512"]


def test_driverctl_overrides_cover_the_iommu_group(converged):
    r = converged["root"]
    d = r / "etc/driverctl.d"
    assert sorted(p.name for p in d.iterdir()) == [f"pci-0000:3b:00.{i}" for i in range(4)]
    assert {p.read_text() for p in d.iterdir()} == {"vfio-pci\n"}
    # the format driverctl itself reads back at boot (the package's script, installed in the root)
    script = (r / "usr/sbin/driverctl").read_text()
    assert 'confdir=/etc/driverctl.d' in script and 'sddev="$bus-$dev"' in script
    assert (r / "etc/modules-load.d/fh-vfio.conf").read_text().splitlines()[-1] == "vfio-pci"


def test_rdma_not_installed_for_a_tcp_replication_host_ptp_is(converged):
    r = converged["root"]
    # fh-nasdaq-1 replicates over tcp: site.yml skips fh_rdma (test_fh_rdma_for_a_host_replicating_over_rdma runs it)
    rdma = _results(converged["first"], "Install rdma-core and the ibverbs providers")
    assert rdma and all(res.get("skipped") for res in rdma)
    assert (r / "usr/sbin/ptp4l").exists()
    assert "slaveOnly               1" in (r / "etc/linuxptp/ptp4l.conf").read_text()
    wants = r / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "ptp4l@ens1f0.service").is_symlink() and (wants / "phc2sys@ens1f0.service").is_symlink()


def test_fh_toml_equals_the_expected_file_and_loads(converged):
    r = converged["root"]
    rendered = (r / "etc/fh/nasdaq.toml").read_text()
    assert rendered == (HERE / "expected" / "fh-nasdaq-1.toml").read_text()
    st = (r / "etc/fh/nasdaq.toml").stat()
    assert oct(st.st_mode & 0o777) == "0o640"
    # fh's own validator, here (its witness_key_file read from the root) ...
    from handler import config

    here = r.parent / "nasdaq-here.toml"
    here.write_text(rendered.replace('"/etc/fh/witness.key"', json.dumps(str(r / "etc/fh/witness.key"))))
    cfg = config.load(here)
    assert cfg.name == "nasdaq" and [l.group for l in cfg.lines] == ["233.54.12.111", "233.49.196.111"]
    assert cfg.retransmission is not None and cfg.replication.role == "primary"
    assert cfg.replication.witness == (("10.10.1.31", 7410),) and cfg.replication.witness_key_file.endswith("witness.key")
    # ... and with the fh installed on the host, as the role's template validation ran it
    p = subprocess.run(["chroot", str(r), "/opt/fh/venv/bin/python", "-c",
                        "from handler import config; c = config.load('/etc/fh/nasdaq.toml'); print(c.name, c.memory_mb)"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.split() == ["nasdaq", "1024"], p.stderr


def test_fh_installed_and_the_unit_enabled(converged):
    r = converged["root"]
    unit = r / "etc/systemd/system/fh@.service"
    assert unit.read_bytes() == (ROOT / "deploy" / "fh@.service").read_bytes()  # the repository's file, as it is
    link = r / "etc/systemd/system/multi-user.target.wants/fh@nasdaq.service"
    assert link.is_symlink() and os.readlink(link) == "/etc/systemd/system/fh@.service"
    assert os.readlink(r / "usr/local/bin/fh") == "/opt/fh/venv/bin/fh"
    p = subprocess.run(["chroot", str(r), "/usr/local/bin/fh", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "run" in p.stdout, p.stderr
    assert any(l.startswith("fh:x:") and l.rstrip().endswith(":/usr/sbin/nologin")
               for l in (r / "etc/passwd").read_text().splitlines())
    # fh-dataplane's DPDK libraries are installed: the dynamic loader resolves every one of them
    p = subprocess.run(["chroot", str(r), "ldd", "/usr/local/bin/fh-dataplane"], capture_output=True, text=True)
    assert p.returncode == 0 and "not found" not in p.stdout and "librte_ethdev" in p.stdout, p.stdout


def _fh_ids(root: Path) -> tuple[int, int]:
    """The fh user's uid and gid in the root (created there by fh_service's install steps)."""
    line = next(l for l in (root / "etc/passwd").read_text().splitlines() if l.startswith("fh:"))
    return int(line.split(":")[2]), int(line.split(":")[3])


def _example_key() -> str:
    """The example inventory's witness secret (group_vars/all.yml; ansible-vault in production)."""
    import yaml

    return yaml.safe_load((ANSIBLE / "inventory/example/group_vars/all.yml").read_text())["fh_witness_key"]


def test_the_pairs_witness_key_file(converged):
    """[replication] witness_key_file: fh_witness_key written there before fh.toml (whose validation, fh's loader,
    reads it), mode 0600 and the fh user's, readable by fh-replicate's user and kept out of the play's output."""
    r = converged["root"]
    key = r / "etc/fh/witness.key"
    st = key.stat()
    assert oct(st.st_mode & 0o777) == "0o600" and (st.st_uid, st.st_gid) == _fh_ids(r)
    assert key.read_text() == _example_key() and len(_example_key()) >= 32
    names = [n.split(" : ")[-1] for n, _ in converged["first"]["tasks"]]
    assert names.index("Write the witness key ([replication] witness_key_file), readable by the fh user only") < \
        names.index("Write the configuration, checked by fh's own loader first")
    assert _example_key() not in json.dumps(converged["first"]["tasks"])  # no_log
    # the fh user (fh-replicate's, under fh@.service) reads it through /etc/fh (0750, group fh), as fh's loader does
    uid, gid = _fh_ids(r)
    p = subprocess.run(["chroot", f"--userspec={uid}:{gid}", str(r), "/opt/fh/venv/bin/python", "-c",
                        "from handler.witness import load_key; print(len(load_key('/etc/fh/witness.key')))"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.split() == [str(len(_example_key()))], p.stderr


def _results(run: dict, task: str) -> list[dict]:
    """The results of the task named `task` (the JSON callback names a role's task "ROLE : NAME")."""
    return [res for name, res in run["tasks"] if name == task or name.endswith(" : " + task)]


def _facts(run: dict, task: str) -> dict:
    res = _results(run, task)
    assert res, f"no task {task!r} in {[n for n, _ in run['tasks']]}"
    return res[0].get("ansible_facts", {})


def test_reboot_required_only_while_the_running_kernel_lacks_a_parameter(converged):
    compare = "Compare with the running kernel's command line"
    assert _facts(converged["first"], compare)["fh_kernel_reboot_required"] is True
    dropin = (converged["root"] / "etc/default/grub.d/fh.cfg").read_text()
    args = re.search(r'GRUB_CMDLINE_LINUX_DEFAULT="\$GRUB_CMDLINE_LINUX_DEFAULT (.*)"', dropin).group(1)
    booted = _playbook(converged["root"], converged["wheelhouse"], "--tags", "kernel",
                       extra={"fh_kernel_current_cmdline": f"BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro {args} quiet"})
    assert booted["rc"] == 0 and booted["stats"]["changed"] == 0
    facts = _facts(booted, compare)
    assert facts["fh_kernel_reboot_required"] is False and facts["fh_kernel_missing_args"] == []
    assert not [m for m in booted["msgs"] if "reboot required" in m]
    # one parameter missing (booted before hugepages were added): that one is named
    partial = args.replace(" hugepages=512", "")
    booted = _playbook(converged["root"], converged["wheelhouse"], "--tags", "kernel",
                       extra={"fh_kernel_current_cmdline": f"ro {partial}"})
    assert _facts(booted, compare)["fh_kernel_missing_args"] == ["hugepages=512"]
    assert [m for m in booted["msgs"] if m.startswith("fh_kernel: reboot required: the running kernel lacks hugepages=512 ")]


def test_check_mode_on_a_new_host_changes_nothing_and_says_what_would(cached, request):
    """--check against a root no converge has touched: it runs through (check-mode safe), reports changes, and the
    root is left as it was."""
    cache, tarball, wheelhouse = cached
    top = Path(tempfile.mkdtemp(prefix="fh-ansible-"))
    root = top / "root"
    bookworm_root.unpack(tarball, root)
    request.addfinalizer(lambda: bookworm_root.remove(top))
    before = {str(p.relative_to(root)) for p in (root / "etc").rglob("*")}
    r = _playbook(root, wheelhouse, "--check")
    assert r["rc"] == 0 and r["stats"]["failures"] == 0, r["out"]
    assert r["stats"]["changed"] > 20
    assert {str(p.relative_to(root)) for p in (root / "etc").rglob("*")} == before
    assert not (root / "opt/fh").exists()


def test_fh_check_runs_on_the_host_and_a_fail_fails_the_play_with_its_fix(converged):
    """fh check and fh plan run with the fh installed in the root. The root has no /sys or /proc (never bound into
    it), so fh finds no NIC and no CPU there: FAILs, which must fail the play with fh's own fixes."""
    r = _playbook(converged["root"], converged["wheelhouse"], "--tags", "service",
                  extra={"fh_service_host_checks": True})
    assert r["rc"] != 0 and r["stats"]["failures"] == 1 and r["stats"]["changed"] == 0
    msg = next(m for m in r["msgs"] if m.startswith("fh_service: fh-nasdaq-1 is not ready for fh@nasdaq:"))
    # the role's lines: level, item, finding, then " -- fix: ..." (columns padded)
    assert re.search(r"FAIL +nic +there is no PCI device 0000:3b:00\.0 on this host .*-- fix: set nic\.pci or --pci to "
                     r"one of those \(lspci -D -d ::0200 lists them\)", msg), msg
    assert "fh plan: refused:" in msg


def test_fh_rdma_for_a_host_replicating_over_rdma(converged):
    """fh-nasdaq-1 replicates over tcp, so site.yml skipped fh_rdma; with transport rdma it runs, for real."""
    rdma = {"fh_service_replication": {"role": "primary", "transport": "rdma", "peer": "fh-nasdaq-2:7400"}}
    r = _playbook(converged["root"], converged["wheelhouse"], "--tags", "rdma", extra=rdma)
    assert r["rc"] == 0 and r["stats"]["changed"] >= 3, r["out"]
    assert "fh_rdma: NOT RUN (fh_rdma_apply is false): modprobe rdma_ucm" in r["msgs"]
    root = converged["root"]
    assert (root / "usr/bin/ibv_devices").exists() and list((root / "usr/lib/x86_64-linux-gnu/libibverbs").glob("libmlx5*"))
    assert (root / "etc/security/limits.d/60-fh-memlock.conf").read_text().splitlines()[-2:] == [
        "@fh soft memlock unlimited", "@fh hard memlock unlimited"]
    assert (root / "etc/modules-load.d/fh-rdma.conf").read_text().splitlines()[-2:] == ["ib_uverbs", "rdma_ucm"]
    again = _playbook(root, converged["wheelhouse"], "--tags", "rdma", extra=rdma)
    assert again["rc"] == 0 and again["stats"]["changed"] == 0


def test_refuses_to_bind_the_management_interface(converged):
    """A spare function of the NIC's IOMMU group is the management interface: the play fails before writing."""
    r = _playbook(converged["root"], converged["wheelhouse"], "--tags", "nic",
                  extra={"fh_nic_management_pci": ["0000:3b:00.2"]})
    assert r["rc"] != 0 and r["stats"]["failures"] == 1 and r["stats"]["changed"] == 0
    assert any("fh_nic: refusing to bind 0000:3b:00.2 to vfio-pci: it is the management interface" in m
               for m in r["msgs"]), r["msgs"]


def test_a_bad_config_value_is_refused_by_fhs_own_validator(converged):
    r = _playbook(converged["root"], converged["wheelhouse"], "--tags", "service",
                  extra={"fh_service_lines": [{"name": "A", "group": "233.54.12.111", "port": 70000}]})
    assert r["rc"] != 0 and r["stats"]["failures"] == 1
    failed = [res for _, res in r["tasks"] if res.get("failed")]
    assert "feed.lines[0].port" in json.dumps(failed), failed
    # the file on the host is still the good one
    assert "port = 70000" not in (converged["root"] / "etc/fh/nasdaq.toml").read_text()


# --- the witness (site.yml's second play, role fh_witness) -----------------------------------------------------

WITNESS_STATUS = "/run/fh-witness/status.json"
WITNESS_EXEC = (f"/usr/local/bin/fh witness --listen 10.10.1.31:7410 --status {WITNESS_STATUS} --key-file /etc/fh/witness.key "
                "--key-file /etc/fh/witness.next.key --state /var/lib/fh/witness.state")


@pytest.fixture(scope="module")
def witnessed(converged):
    """The witness play converged into the pair's converged root (--limit fh-witness-1): fh is installed there
    already (the same install steps), so what it adds is its own. The pair's key file is removed first, so that the
    witness's role writes it (the same secret, the same path); then a second run, which must change nothing."""
    r = converged["root"]
    key = r / "etc/fh/witness.key"
    saved = key.read_bytes()
    key.unlink()
    try:
        first = _playbook(r, converged["wheelhouse"], host=WITNESS)
        assert first["rc"] == 0 and first["stats"]["failures"] == 0, first["out"]
        second = _playbook(r, converged["wheelhouse"], host=WITNESS)
    finally:  # the pair's tests after this one read it
        if not key.exists():
            key.write_bytes(saved)
            key.chmod(0o600)
            os.chown(key, *_fh_ids(r))
    return {"root": r, "first": first, "second": second}


def test_witness_converge_writes_its_unit_key_and_state_directory(witnessed):
    r, first = witnessed["root"], witnessed["first"]
    unit = (r / "etc/systemd/system/fh-witness.service").read_text().splitlines()
    assert [l for l in unit if l.startswith("ExecStart=")] == [f"ExecStart={WITNESS_EXEC}"]
    assert {"User=fh", "Group=fh", "Restart=always", "ReadWritePaths=/var/lib/fh",
            f"ExecReload=/usr/local/bin/fh reload --witness {WITNESS_STATUS}", "RuntimeDirectory=fh-witness"} <= set(unit)
    assert not (r / "etc/fh/witness.next.key").exists()  # no rotation under way: the next key's file skipped
    assert not [l for l in unit if "UNKEYED" in l]
    link = r / "etc/systemd/system/multi-user.target.wants/fh-witness.service"
    assert link.is_symlink() and os.readlink(link) == "/etc/systemd/system/fh-witness.service"
    key = r / "etc/fh/witness.key"
    st = key.stat()
    assert oct(st.st_mode & 0o777) == "0o600" and (st.st_uid, st.st_gid) == _fh_ids(r)
    assert key.read_text() == _example_key()
    st = (r / "var/lib/fh").stat()
    assert (r / "var/lib/fh").is_dir() and oct(st.st_mode & 0o777) == "0o700" and (st.st_uid, st.st_gid) == _fh_ids(r)
    # what a chroot cannot do, reported with its command
    assert f"fh_witness: NOT RUN (fh_witness_start is false): systemctl start fh-witness.service ({WITNESS_EXEC})" \
        in first["msgs"]
    assert ("fh_witness: NOT RUN (fh_witness_start is false): systemctl daemon-reload && systemctl restart "
            "fh-witness.service") in first["msgs"]
    assert not [m for m in first["msgs"] if "UNKEYED" in m]
    # fh came from fh_service's install steps (already done by the pair's converge), and nothing else of fh_service
    assert [res.get("changed") for res in _results(first, "Install fh into its venv")] == [False]
    assert not _results(first, "Write the configuration, checked by fh's own loader first")
    assert first["stats"]["changed"] >= 4  # the state directory, the key (removed before), the unit, its link
    assert _example_key() not in json.dumps(first["tasks"])  # no_log


def test_witness_second_converge_changes_nothing(witnessed):
    r = witnessed["second"]
    changed = [name for name, res in r["tasks"] if res.get("changed")]
    assert r["rc"] == 0 and r["stats"]["changed"] == 0 and r["stats"]["failures"] == 0, changed


def test_the_witness_runs_from_its_unit_as_the_fh_user(witnessed):
    """The unit's command, run in the root as the fh user (on a port of loopback instead of 10.10.1.31): it reads the
    key the role wrote, answers a query signed with that key after a beat signed with it, and saves its replay record
    in the state directory at SIGTERM."""
    from handler import witness as wit

    r = witnessed["root"]
    uid, gid = _fh_ids(r)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    cmd = WITNESS_EXEC.replace("10.10.1.31:7410", f"127.0.0.1:{port}").split()
    run = r / WITNESS_STATUS.lstrip("/").rsplit("/", 1)[0]  # what the unit's RuntimeDirectory= makes, the fh user's
    run.mkdir(mode=0o755)
    os.chown(run, uid, gid)
    p = subprocess.Popen(["chroot", f"--userspec={uid}:{gid}", str(r), *cmd], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert "listening on" in line and "keyed: HMAC-SHA256" in line, line + p.stderr.read()
        key = _example_key().encode()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(wit.pack(wit.BEAT, "nasdaq", role=wit.PRIMARY, epoch=1, nonce=time.time_ns(), key=key),
                 ("127.0.0.1", port))
        time.sleep(0.2)
        s.sendto(wit.pack(wit.QUERY, "nasdaq", role=wit.STANDBY, nonce=7, key=key), ("127.0.0.1", port))
        answer = wit.unpack(s.recv(256), key)
        s.close()
        assert answer and answer["type"] == wit.ANSWER and answer["nonce"] == 7 and answer["flags"] == wit.HEARD
        assert answer["epoch"] == 1
        # systemctl reload: the unit's ExecReload, as the fh user, returns once the witness has read its keys again
        rl = subprocess.run(["chroot", f"--userspec={uid}:{gid}", str(r), "/usr/local/bin/fh", "reload", "--witness",
                             WITNESS_STATUS], capture_output=True, text=True, timeout=60)
        assert rl.returncode == 0 and rl.stdout.strip() == (f"fh reload: fh witness (pid {p.pid}) reloaded: --key-file "
                                                            "read again: 1 key in use, /etc/fh/witness.next.key: no "
                                                            "such file, skipped"), rl
    finally:
        p.terminate()
        out, err = p.communicate(timeout=30)
        shutil.rmtree(run, ignore_errors=True)
    assert p.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["bad_auth"] == 0
    state = r / "var/lib/fh/witness.state"
    st = state.stat()
    assert oct(st.st_mode & 0o777) == "0o600" and st.st_uid == uid
    assert "nasdaq" in json.loads(state.read_text())["pairs"]
    state.unlink()


def test_witness_key_rotation_reloads(witnessed, converged):
    """A rotation's first step (fh_witness_key_next set): the next key written (0600, the fh user's) and the witness
    reloaded, not restarted (fh witness reads its key files again at SIGHUP); its end (fh_witness_key_next empty
    again): the file removed and reloaded again. Nothing else changes either time."""
    r, nxt = witnessed["root"], witnessed["root"] / "etc/fh/witness.next.key"
    new = base64.b64encode(os.urandom(36)).decode()
    reload_, restart = ("fh_witness: NOT RUN (fh_witness_start is false): systemctl reload fh-witness.service",
                        "fh_witness: NOT RUN (fh_witness_start is false): systemctl daemon-reload && systemctl restart "
                        "fh-witness.service")
    try:
        first = _playbook(r, converged["wheelhouse"], host=WITNESS, extra={"fh_witness_key_next": new})
        changed = [name for name, res in first["tasks"] if res.get("changed")]
        assert first["rc"] == 0 and changed == ["fh_witness : Write the next witness key (a rotation under way), "
                                                "readable by the fh user only"], (changed, first["out"])
        assert reload_ in first["msgs"] and restart not in first["msgs"], first["msgs"]
        st = nxt.stat()
        assert nxt.read_text() == new and oct(st.st_mode & 0o777) == "0o600" and (st.st_uid, st.st_gid) == _fh_ids(r)
        assert new not in json.dumps(first["tasks"])  # no_log
        end = _playbook(r, converged["wheelhouse"], host=WITNESS)
        changed = [name for name, res in end["tasks"] if res.get("changed")]
        assert end["rc"] == 0 and changed == ["fh_witness : Remove the next witness key (no rotation under way)"], changed
        assert reload_ in end["msgs"] and restart not in end["msgs"] and not nxt.exists(), end["msgs"]
    finally:
        nxt.unlink(missing_ok=True)


def test_witness_unit_unkeyed(tmp_path):
    """Without fh_witness_key the unit runs fh witness without --key-file and --state (it refuses --state unkeyed),
    and says it is unkeyed: the role's own template and vars, rendered by Ansible on the controller; and systemd
    finds nothing wrong in it."""
    role = ANSIBLE / "roles" / "fh_witness"
    dest = tmp_path / "fh-witness.service"
    r = subprocess.run([_tool("ansible"), "localhost", "-c", "local", "-m", "ansible.builtin.template",
                        "-a", f"src={role / 'templates/fh-witness.service.j2'} dest={dest}",
                        "-e", f"@{role / 'defaults/main.yml'}", "-e", f"@{role / 'vars/main.yml'}",
                        "-e", "fh_witness_listen=0.0.0.0:7410"],
                       cwd=ANSIBLE, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    unit = dest.read_text().splitlines()
    assert [l for l in unit if l.startswith("ExecStart=")] == [f"ExecStart=/usr/local/bin/fh witness --listen "
                                                               f"0.0.0.0:7410 --status {WITNESS_STATUS}"]
    assert "# UNKEYED (fh_witness_key is empty): anyone on its network can forge a beat or an answer." in unit
    # systemctl reload, as systemd runs it: its ExecReload against its ExecStart (this checkout's fh, a loopback port,
    # the status in this test's directory): it returns once the witness has taken the SIGHUP up, and says so
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    status = str(tmp_path / "status.json")

    def argv(key: str) -> list[str]:
        (line,) = [x for x in unit if x.startswith(key)]
        words = line.removeprefix(key).replace("0.0.0.0:7410", f"127.0.0.1:{port}").replace(WITNESS_STATUS, status)
        assert words.startswith("/usr/local/bin/fh "), line
        return [sys.executable, "-m", "handler", *words.split()[1:]]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    w = subprocess.Popen(argv("ExecStart="), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert "listening on" in w.stderr.readline()
        rl = subprocess.run(argv("ExecReload="), capture_output=True, text=True, timeout=60, env=env)
        assert rl.returncode == 0 and rl.stdout.strip() == (f"fh reload: fh witness (pid {w.pid}) reloaded: unkeyed "
                                                            "(no --key-file): nothing to read again"), rl
    finally:
        w.terminate()
        w.communicate(timeout=30)
    sa = shutil.which("systemd-analyze")  # setup.sh installs systemd
    assert sa, "systemd-analyze not found: bash scripts/setup.sh installs systemd"
    v = subprocess.run([sa, "verify", "--man=no", str(dest)], capture_output=True, text=True)
    complaints = [l for l in (v.stdout + v.stderr).splitlines()
                  if l.strip() and "/usr/local/bin/fh" not in l and "fh-witness.service" in l]
    assert not complaints, complaints  # no unknown key, no bad value (the missing /usr/local/bin/fh aside)
