"""Placement (`fh plan`) and the host reader under it, against host trees in the shape of real sysfs and procfs
(tests/fixtures/hosts/: a tuned two-socket server, a laptop, the development VM) and against this machine's /."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import fh
from handler import config
from handler.host import plan, topology

HOSTS = Path(__file__).resolve().parent / "fixtures" / "hosts"
TWO, LAPTOP, VM = (str(HOSTS / n) for n in ("two-socket-32c", "laptop", "vm-2core"))
E810, CX6, CX6_VFIO = "0000:af:00.0", "0000:3b:00.0", "0000:3b:00.1"

CFG = """
[instance]
name = "nasdaq"
[[feed.lines]]
name = "A"
group = "233.54.12.111"
port = 26477
[nic]
{nic}
[cores]
rx = {rx}
[memory]
hugepages = {huge}
mb = {mb}
"""


def cfg_file(tmp_path, nic=f'pci = "{E810}"', rx='"auto"', huge="true", mb=512) -> Path:
    p = tmp_path / "fh.toml"
    p.write_text(CFG.format(nic=nic, rx=rx, huge=huge, mb=mb))
    return p


def copy_host(name: str, tmp_path) -> Path:
    """A private copy of a fixture tree (its relative symlinks still resolve), to change one thing in."""
    dst = tmp_path / name
    shutil.copytree(HOSTS / name, dst, symlinks=True)
    return dst


def levels(p: plan.Plan) -> list[tuple[str, str]]:
    return [(f.item, f.level) for f in p.findings]


# ---- parsing --------------------------------------------------------------------------------------------


def test_cpulists():
    assert topology.parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert topology.parse_cpulist("0-15:2/4") == {0, 1, 4, 5, 8, 9, 12, 13}
    assert topology.parse_cpulist("(null)") == frozenset() and topology.parse_cpulist("") == frozenset()
    assert topology.parse_cpulist("all", frozenset(range(4))) == {0, 1, 2, 3}
    assert topology.parse_cpulist("2-N", frozenset(range(6))) == {2, 3, 4, 5}
    assert topology.format_cpulist({18, 19, 20, 31, 50, 51}) == "18-20,31,50-51"
    assert topology.parse_cpumask("ff,00000001") == {0, 32, 33, 34, 35, 36, 37, 38, 39}
    with pytest.raises(ValueError):
        topology.parse_cpulist("5-3")


def test_cmdline():
    c = topology.parse_cmdline("ro isolcpus=managed_irq,domain,2-5,9 nohz_full=2-5 rcu_nocbs=2-3 rcu_nocbs=4-5 "
                               "irqaffinity=0-1 default_hugepagesz=1G hugepagesz=1G hugepages=0:2,1:8 "
                               "hugepagesz=2M hugepages=512 intel_iommu=on iommu=pt -- isolcpus=7 single")
    assert c.isolcpus == {2, 3, 4, 5, 9} and c.isolcpus_flags == ("managed_irq", "domain")
    assert c.isolcpus_domain == {2, 3, 4, 5, 9}
    assert c.nohz_full == {2, 3, 4, 5} and c.rcu_nocbs == {2, 3, 4, 5} and c.irqaffinity == {0, 1}
    assert c.default_hugepagesz_kb == 1 << 20
    assert c.hugepages == ((1 << 20, 0, 2), (1 << 20, 1, 8), (2048, None, 512))
    assert c.iommu == {"intel_iommu": "on", "iommu": "pt"}
    assert "single" not in c.params  # init's arguments, after "--"
    only_irq = topology.parse_cmdline("isolcpus=managed_irq,3")
    assert only_irq.isolcpus == {3} and only_irq.isolcpus_domain == frozenset()  # managed_irq alone isolates nothing
    assert topology.parse_cmdline("isolcpus=1-2").isolcpus_domain == {1, 2}  # no flag: domain


def test_kernel_args_merge():
    into = {}
    plan.merge_kernel_args(into, {"isolcpus": "managed_irq,domain,3,7", "irqaffinity": "0-2,4-6", "hugepages": "8"})
    plan.merge_kernel_args(into, {"isolcpus": "domain,2,6", "irqaffinity": "0-1,3-5,7"})
    assert into == {"isolcpus": "managed_irq,domain,2-3,6-7", "irqaffinity": "0-1,4-5", "hugepages": "8"}
    assert plan.grub_dropin({"nohz_full": "3"}) == ("echo 'GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT "
                                                   "nohz_full=3\"' >> /etc/default/grub.d/fh.cfg && update-grub && "
                                                   "reboot")


# ---- reading the hosts ------------------------------------------------------------------------------------


def test_read_two_socket():
    h = topology.read_host(TWO)
    assert sorted(h.nodes) == [0, 1] and len(h.cpus) == 64
    assert h.nodes[1] == set(range(16, 32)) | set(range(48, 64))
    assert h.cpus[18].siblings == {18, 50} and h.cpus[18].node == 1 and h.cpus[18].package == 1
    assert h.isolated == set(range(18, 32)) | set(range(50, 64)) == h.partitioned
    assert h.nohz_full == h.isolated and h.rcu_nocbs_cpus == h.isolated
    e810 = h.pci[E810]
    assert (e810.numa_node, e810.driver, e810.iommu_group, e810.vendor_name) == (1, "vfio-pci", 87, "Intel")
    cx = h.pci[CX6]
    assert cx.is_mellanox and cx.driver == "mlx5_core" and cx.rdma == ("mlx5_0",) and cx.netdevs == ("ens2f0np0",)
    assert h.pci[CX6_VFIO].driver == "vfio-pci"
    assert h.netdevs == {"eno1": "0000:17:00.0", "ens2f0np0": CX6, "lo": None}
    assert h.links["eno1"] == "up"
    assert {(p.node, p.size_kb): (p.total, p.free) for p in h.hugepages}[(1, 1 << 20)] == (8, 8)
    assert [m.path for m in h.hugetlbfs(1 << 20)] == ["/dev/hugepages"]
    assert [m.path for m in h.hugetlbfs(2048)] == ["/dev/hugepages-2M"]
    assert h.thp == "never" and h.memlock is None and h.memlock_known
    assert h.irqbalance_running and h.irqbalance_banned == h.isolated
    assert h.irqs[35] == {4}  # the effective affinity, not the mask
    assert h.iommu_groups > 0 and h.cpu_vendor == "GenuineIntel" and "libmlx5.so.1" in h.libs


def test_read_laptop_and_vm():
    lap = topology.read_host(LAPTOP)
    assert list(lap.nodes) == [0] and len(lap.cpus) == 8 and lap.cpus[3].siblings == {3, 7}
    assert lap.partitioned == frozenset() and lap.nohz_full == frozenset()  # "(null)"
    assert lap.cpus[0].governor == "powersave" and lap.thp == "always" and lap.memlock == 8 << 20
    assert lap.pci["0000:00:1f.6"].driver == "e1000e" and not lap.pci["0000:00:14.3"].is_ethernet
    vm = topology.read_host(VM)
    assert list(vm.nodes) == [0] and sorted(vm.cpus) == [0, 1] and vm.cpus[1].siblings == {1}
    assert vm.cpus[1].governor is None and vm.iommu_groups == 0 and vm.thp == "madvise"
    assert vm.netdevs["eth0"] == "0000:00:03.0"  # virtio-net hangs off virtio2 below the PCI function
    assert vm.pci["0000:00:03.0"].netdevs == ("eth0",) and vm.pci["0000:00:03.0"].numa_node == -1
    assert not vm.hugetlbfs(2048) and vm.cpu_vendor == "AuthenticAMD"


def test_more_lcores_than_cpus_fails():
    """--lcores beyond the host's CPUs: a failure naming how many it could plan (it planned fewer without a word)."""
    vm = topology.read_host(VM)
    p = plan.plan(vm, lcores=99)
    f = [x for x in p.findings if x.item == "cores" and x.level == "FAIL"]
    assert len(f) == 1 and f[0].message == "99 lcores asked for, but this host has 2 online CPUs: planned 2"
    assert f[0].fix == "ask for at most 2 (--lcores)" and p.refused
    assert not [x for x in plan.plan(vm, lcores=2).findings if "asked for" in x.message]


def test_a_missing_rx_pcap_fails_the_plan(tmp_path):
    """A lab's net_pcap file that is missing or not a pcap fails fh plan as it refuses fh run (fh plan said nothing,
    exit 0); checked on this host only (the file is this host's)."""
    from conftest import run_config

    from handler import config

    cfg = tmp_path / "fh.toml"
    cfg.write_text(run_config("plantest", tmp_path / "none.pcap"))
    p = plan.plan(topology.read_host("/"), config.load(str(cfg)))
    f = [x for x in p.findings if x.item == "nic" and x.level == "FAIL"]
    assert len(f) == 1 and f[0].message.endswith(f"rx_pcap file {tmp_path / 'none.pcap'} does not exist") and p.refused
    assert not [x for x in plan.plan(topology.read_host(VM), config.load(str(cfg))).findings
                if "rx_pcap" in x.message]  # another root's host: this host's files say nothing of it
    cfg.write_text(run_config("plantest"))  # the bundled capture
    assert not [x for x in plan.plan(topology.read_host("/"), config.load(str(cfg))).findings if x.item == "nic"]


def test_missing_root_reads_as_empty(tmp_path):
    h = topology.read_host(str(tmp_path))
    assert h.pci == {} and h.hugepages == [] and h.cmdline.params == {}
    p = plan.plan(h)  # nothing to read is no crash: a plan full of findings
    assert p.refused


# ---- the plan ---------------------------------------------------------------------------------------------


def test_two_socket_plan_is_clean():
    h = topology.read_host(TWO)
    p = plan.plan(h, pci=E810)
    assert p.findings == [] and p.exit_status == 0
    assert p.node == 1 and p.node_known
    (lc,) = p.lcores
    assert h.cpus[lc].node == 1 and lc in h.isolated and lc != 0 and h.cpus[lc].siblings <= h.isolated
    assert p.page_kb == 1 << 20 and p.socket_mem == {0: 0, 1: 1024}  # 512 MB rounds up to one 1G page
    assert p.eal_args == ["-l", str(lc), "--socket-mem", "0,1024", "--in-memory", "-a", E810, "--file-prefix", "fh-fh"]


def test_two_socket_several_lcores_are_isolated_and_not_siblings():
    h = topology.read_host(TWO)
    p = plan.plan(h, pci="af:00.0", lcores=4)  # a short address is read as domain 0000
    assert p.pci == E810 and len(p.lcores) == 4
    for i, c in enumerate(p.lcores):
        assert h.cpus[c].node == 1 and c in h.partitioned
        assert not any(x in h.cpus[c].siblings for x in p.lcores[:i])
    assert p.findings == []
    assert p.eal_args[1] == ",".join(map(str, sorted(p.lcores)))
    assert p.eal_args[p.eal_args.index("--main-lcore") + 1] == str(p.lcores[0])


@pytest.mark.slow
def test_config_core_on_the_wrong_node(tmp_path):
    h = topology.read_host(TWO)
    cfg = plan.load_config(cfg_file(tmp_path, rx=5, mb=1024), h)  # CPU 5 is not on this machine: no matter
    assert cfg.rx_core == 5 and cfg.name == "nasdaq"
    p = plan.plan(h, cfg)
    assert p.lcores == [5] and p.socket_mem == {0: 0, 1: 1024}
    remote = [f for f in p.findings if "node 0 but the NIC is on node 1" in f.message]
    assert remote and remote[0].level == "WARN" and "set cores.rx = 31" in remote[0].fix
    assert str(tmp_path / "fh.toml") in remote[0].fix
    assert p.exit_status == 0 and not p.refused
    strict = plan.plan(h, cfg, strict=True)
    assert strict.refused and strict.exit_status == 2

    r = fh("plan", "--root", TWO, "--config", cfg_file(tmp_path, rx=5), check=False)
    assert r.returncode == 0 and "WARN" in r.stdout and "cores.rx = 31" in r.stdout
    r = fh("plan", "--root", TWO, "--config", cfg_file(tmp_path, rx=5), "--strict", check=False)
    assert r.returncode == 2 and "FAIL" in r.stdout and "refused" in r.stderr and "--strict" in r.stderr


def test_config_core_the_host_lacks(tmp_path):
    h = topology.read_host(TWO)
    p = plan.plan(h, plan.load_config(cfg_file(tmp_path, rx=99), h))
    assert ("cores", "FAIL") in levels(p) and p.lcores == [31]
    assert "no online CPU 99" in p.findings[0].message


def test_load_config_checks_the_cpu_on_the_real_host(tmp_path):
    real = topology.read_host("/")
    with pytest.raises(config.ConfigError, match="cores.rx = 4095"):
        plan.load_config(cfg_file(tmp_path, rx=4095), real)
    bad = cfg_file(tmp_path, rx=5)
    bad.write_text(bad.read_text() + "\n[shm]\ndepht = 3\n")
    with pytest.raises(config.ConfigError, match=f"{bad}: shm.depht"):  # errors name the real file
        plan.load_config(bad, topology.read_host(TWO))


def test_mellanox_bound_to_vfio_fails_with_the_fix():
    p = plan.plan(topology.read_host(TWO), pci=CX6_VFIO)
    (f,) = [f for f in p.findings if f.item == "nic"]
    assert f.level == "FAIL" and "Mellanox" in f.message and "vfio-pci" in f.message
    assert f.fix == f"dpdk-devbind.py -b mlx5_core {CX6_VFIO}"
    assert p.exit_status == 2


def test_mellanox_on_mlx5_core(tmp_path):
    h = topology.read_host(TWO)
    p = plan.plan(h, pci=CX6)
    assert not [f for f in p.findings if f.item in ("nic", "hugepages")]
    assert p.node == 0 and p.socket_mem == {0: 512, 1: 0} and p.page_kb == 2048  # 2M pages: no 1G on node 0
    assert h.cpus[p.lcores[0]].node == 0
    # node 0 has no isolated CPU: a warning that extends the existing isolcpus, not a second one
    (f,) = [f for f in p.findings if f.item == "cores"]
    assert f.level == "WARN" and "no isolated CPU on node 0" in f.message
    assert "first take isolcpus=managed_irq,domain,18-31,50-63" in f.fix and "/etc/default/grub.d/fh.cfg" in f.fix

    root = copy_host("two-socket-32c", tmp_path)
    for lib in ("libibverbs.so.1", "libmlx5.so.1"):
        os.unlink(root / "usr/lib/x86_64-linux-gnu" / lib)
    shutil.rmtree(root / "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/infiniband")
    p = plan.plan(topology.read_host(str(root)), pci=CX6)
    nic = [f for f in p.findings if f.item == "nic"]
    assert [f.level for f in nic] == ["FAIL", "FAIL"]
    assert "rdma-core" in nic[0].message and "apt-get install rdma-core" in nic[0].fix
    assert "mlx5_ib" in nic[1].message and nic[1].fix.startswith("modprobe mlx5_ib")


def test_no_nic_named():
    p = plan.plan(topology.read_host(TWO))  # the E810 and port 0 of the ConnectX could both serve
    (f,) = [f for f in p.findings if f.item == "nic"]
    assert f.level == "FAIL" and "2 NICs could serve" in f.message and E810 in f.fix and CX6 in f.fix
    assert not p.node_known and p.node == 1  # the node with the isolated CPUs
    p = plan.plan(topology.read_host(TWO), pci="0000:99:00.0")
    assert p.findings[0].level == "FAIL" and "no PCI device 0000:99:00.0" in p.findings[0].message


def test_laptop():
    h = topology.read_host(LAPTOP)
    p = plan.plan(h, pci="0000:00:1f.6")
    assert p.lcores == [3] and p.node == 0  # not CPU 0, one thread per core
    by = {f.item: f for f in p.findings}
    assert by["cores"].level == "WARN" and "no isolated CPU" in by["cores"].message
    assert "isolcpus=managed_irq,domain,3,7 nohz_full=3,7 rcu_nocbs=3,7" in by["cores"].fix
    assert ">> /etc/default/grub.d/fh.cfg" in by["cores"].fix
    assert "tuned-adm profile cpu-partitioning" in by["cores"].fix
    assert by["hugepages"].level == "FAIL"
    assert "echo 256 > /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages" in by["hugepages"].fix
    assert "hugepagesz=2M hugepages=256" in by["hugepages"].fix and "/etc/default/grub.d/fh.cfg" in by["hugepages"].fix
    assert by["nic"].level == "FAIL" and "e1000e" in by["nic"].message
    assert by["nic"].fix == ("ip link set enp0s31f6 down && modprobe vfio-pci && "
                             "dpdk-devbind.py -b vfio-pci 0000:00:1f.6")
    assert p.socket_mem == {0: 512} and p.exit_status == 2
    # every kernel parameter the fixes add, in one line
    assert {"isolcpus", "nohz_full", "rcu_nocbs", "hugepagesz", "hugepages"} <= set(p.kernel_args)


def test_laptop_without_hugepages_in_the_config(tmp_path):
    h = topology.read_host(LAPTOP)
    p = plan.plan(h, plan.load_config(cfg_file(tmp_path, nic='pci = "0000:00:1f.6"', huge="false", mb=256), h))
    f = [f for f in p.findings if f.item == "hugepages"]
    assert [x.level for x in f] == ["WARN"] and "memory.hugepages = true" in f[0].fix
    assert p.eal_args[p.eal_args.index("--no-huge"):][:3] == ["--no-huge", "-m", "256"]
    assert "--socket-mem" not in p.eal_args


def test_vm():
    h = topology.read_host(VM)
    p = plan.plan(h)
    assert p.lcores == [1] and p.node == 0 and p.socket_mem == {0: 512}
    nic = [f for f in p.findings if f.item == "nic"][0]
    assert nic.level == "FAIL" and "eth0 up" in nic.message and "--pci 0000:00:03.0" in nic.fix
    huge = [f.message for f in p.findings if f.item == "hugepages"]
    assert any("no hugetlbfs is mounted" in m for m in huge) and any("not enough free hugepages" in m for m in huge)
    # binding the virtio NIC: no IOMMU here (AMD), and eth0 is up
    p = plan.plan(h, pci="0000:00:03.0")
    (f,) = [f for f in p.findings if f.item == "nic"]
    assert "eth0 is up" in f.message and "amd_iommu=on iommu=pt" in f.fix and "enable_unsafe_noiommu_mode" in f.fix


def test_vdev(tmp_path):
    h = topology.read_host(VM)
    p = plan.plan(h, plan.load_config(cfg_file(tmp_path, nic='vdev = "net_af_xdp0,iface=eth0"', huge="false"), h))
    assert not [f for f in p.findings if f.item == "nic"]
    assert p.nic is not None and p.nic.addr == "0000:00:03.0"  # the interface tells the node
    assert p.eal_args[-4:] == ["--no-pci", "--vdev", "net_af_xdp0,iface=eth0", "--file-prefix", "fh-nasdaq"][-4:]
    assert "--no-pci" in p.eal_args


def test_missing_hugetlbfs_and_remote_pages(tmp_path):
    root = copy_host("two-socket-32c", tmp_path)
    mounts = (root / "proc/mounts").read_text().splitlines()
    (root / "proc/mounts").write_text("\n".join(m for m in mounts if "pagesize=1024M" not in m) + "\n")
    (root / "sys/devices/system/node/node1/hugepages/hugepages-1048576kB/free_hugepages").write_text("0\n")
    p = plan.plan(topology.read_host(str(root)), pci=E810)
    huge = [f for f in p.findings if f.item == "hugepages"]
    assert [f.level for f in huge] == ["FAIL"]
    assert "node 0 has 512 x 2M free, but that memory is remote" in huge[0].message
    assert "hugepages=1:256" in huge[0].fix and "merge with the hugepages=" in huge[0].fix
    assert "no hugetlbfs" not in huge[0].message  # 2M pages are what it now asks for, and those are mounted
    (root / "proc/mounts").write_text("\n".join(m for m in mounts if "hugetlbfs" not in m) + "\n")
    p = plan.plan(topology.read_host(str(root)), pci=E810)
    assert any("mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages-2M" in f.fix for f in p.findings)


def test_isolated_without_nohz_full(tmp_path):
    root = copy_host("two-socket-32c", tmp_path)
    cmd = (root / "proc/cmdline").read_text()
    (root / "proc/cmdline").write_text(cmd.replace("nohz_full=18-31,50-63 rcu_nocbs=18-31,50-63 ", ""))
    os.unlink(root / "sys/devices/system/cpu/nohz_full")
    p = plan.plan(topology.read_host(str(root)), pci=E810)
    (f,) = p.findings
    assert f.level == "WARN" and "isolated but not in nohz_full or rcu_nocbs" in f.message
    # only what is missing: isolcpus stays as it is
    assert "nohz_full=31,63 rcu_nocbs=31,63" in f.fix and "isolcpus" not in f.fix.split("(or the tuned")[0]
    assert "isolated_cores=18-31,50-63" in f.fix


def test_vfio_without_iommu(tmp_path):
    root = copy_host("two-socket-32c", tmp_path)
    shutil.rmtree(root / "sys/kernel/iommu_groups")
    os.unlink(root / "sys/devices/pci0000:ae/0000:ae:00.0/0000:af:00.0/iommu_group")
    (root / "sys/module/vfio/parameters/enable_unsafe_noiommu_mode").write_text("Y\n")
    p = plan.plan(topology.read_host(str(root)), pci=E810)
    (f,) = p.findings
    assert f.level == "WARN" and "no-IOMMU" in f.message and "intel_iommu=on iommu=pt" in f.fix


@pytest.mark.slow
def test_cli_json(tmp_path):
    r = fh("plan", "--root", TWO, "--pci", E810, "--json")
    d = json.loads(r.stdout)
    assert d["socket_mem"] == "0,1024" and d["nic"]["numa_node"] == 1 and d["findings"] == []
    assert d["eal_args"][:4] == ["-l", str(d["lcores"][0]), "--socket-mem", "0,1024"] and not d["refused"]
    r = fh("plan", "--root", LAPTOP, "--json", check=False)
    d = json.loads(r.stdout)
    assert r.returncode == 2 and d["refused"] and {f["level"] for f in d["findings"]} == {"WARN", "FAIL"}
    assert all(f["fix"] for f in d["findings"]) and d["grub_dropin"].endswith("update-grub && reboot")
    r = fh("plan", "--root", str(tmp_path / "nowhere"), check=False)
    assert r.returncode == 2 and "--root" in r.stderr and "no such directory" in r.stderr


@pytest.mark.slow
def test_real_host_does_not_crash():
    h = topology.read_host("/")
    assert h.real and h.cpus and h.nodes
    p = plan.plan(h)
    assert p.lcores and p.eal_args[0] == "-l"
    json.dumps(p.to_dict())
    r = fh("plan", check=False)
    assert r.returncode in (0, 2) and "eal" in r.stdout and "Traceback" not in r.stderr
    r = fh("plan", "--json", check=False)
    assert r.returncode in (0, 2) and json.loads(r.stdout)["root"] == "/"


def test_nic_that_hides_its_node(tmp_path):
    root = copy_host("two-socket-32c", tmp_path)
    (root / "sys/devices/pci0000:ae/0000:ae:00.0/0000:af:00.0/numa_node").write_text("-1\n")
    p = plan.plan(topology.read_host(str(root)), pci=E810)
    (f,) = p.findings
    assert f.item == "nic" and f.level == "WARN" and "numa_node = -1" in f.message and "cores.rx" in f.fix
    assert not p.node_known and p.node == 1  # the node with the isolated CPUs


# ---- two ports (feed.lines[].nic) ---------------------------------------------------------------------------


def two_port_cfg(tmp_path, first: str, second: str, host: str = TWO) -> config.Config:
    p = tmp_path / "two.toml"
    p.write_text(CFG.format(nic=first, rx='"auto"', huge="true", mb=512).replace(
        "[nic]", f'[[feed.lines]]\nname = "B"\ngroup = "233.49.196.111"\nport = 26477\nnic = "{second}"\n[nic]'))
    return plan.load_config(p, topology.read_host(host))


def test_two_nics_on_two_nodes_warn_and_both_are_allowed(tmp_path):
    h = topology.read_host(TWO)
    cfg = two_port_cfg(tmp_path, f'pci = "{E810}"', CX6)
    p = plan.plan(h, cfg)
    assert p.node == 1 and h.cpus[p.lcores[0]].node == 1  # placed by the first NIC
    (f,) = p.findings
    assert (f.item, f.level) == ("nic", "WARN")
    assert f"{CX6} is on node 0 but the data plane is placed on node 1 (the node of {E810}" in f.message
    assert "two ports of one NIC" in f.fix
    assert not p.refused and plan.plan(h, cfg, strict=True).refused
    assert p.eal_args[p.eal_args.index("-a"):] == ["-a", E810, "-a", CX6, "--file-prefix", "fh-nasdaq"]
    assert f"also {CX6}" in p.summary["nic"]
    assert config.app_args(cfg)[-4:] == ["--line", f"233.54.12.111:26477@{E810}", "--line",
                                         f"233.49.196.111:26477@{CX6}"]


def test_second_nic_dpdk_cannot_use_refuses(tmp_path):
    h = topology.read_host(TWO)
    p = plan.plan(h, two_port_cfg(tmp_path, f'pci = "{CX6}"', CX6_VFIO))  # one card, port 1 wrongly on vfio-pci
    (f,) = [f for f in p.findings if f.item == "nic"]
    assert f.level == "FAIL" and f.fix == f"dpdk-devbind.py -b mlx5_core {CX6_VFIO}" and p.refused
    p = plan.plan(h, two_port_cfg(tmp_path, f'pci = "{E810}"', "0000:99:00.1"))
    (f,) = p.findings
    assert f.level == "FAIL" and "there is no PCI device 0000:99:00.1" in f.message and "feed.lines[].nic" in f.fix


def test_vdev_first_and_a_nic_second_is_placed_by_the_nic(tmp_path):
    h = topology.read_host(TWO)
    cfg = two_port_cfg(tmp_path, 'vdev = "net_null0"', E810)
    p = plan.plan(h, cfg)
    assert p.pci == E810 and p.node == 1 and not p.findings
    assert p.eal_args[p.eal_args.index("-a"):] == ["-a", E810, "--vdev", "net_null0", "--file-prefix", "fh-nasdaq"]
