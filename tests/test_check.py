"""Host checks (`fh check`): item by item OK, WARN or FAIL with the fix, and the exit status (0 all OK,
1 warnings, 2 failures), against the host trees in tests/fixtures/hosts/ (and copies of them with one thing
changed) and against this machine's /."""

from __future__ import annotations

import json
import os
import re

import pytest

from conftest import fh
from handler.host import check, plan, topology
from test_plan import CX6, CX6_VFIO, E810, LAPTOP, TWO, VM, cfg_file, copy_host


def results(root, pci=None, cfg=None) -> list[check.Result]:
    h = topology.read_host(str(root))
    return check.run(h, plan.load_config(cfg, h) if cfg else None, pci=pci)[1]


def by_item(rs) -> dict[str, list[check.Result]]:
    out: dict[str, list[check.Result]] = {}
    for r in rs:
        out.setdefault(r.item, []).append(r)
    return out


def worst(rs, item) -> str:
    return max((r.level for r in by_item(rs)[item]), key=check.LEVELS.__getitem__)


def test_every_item_reported():
    for root in (TWO, LAPTOP, VM):
        rs = results(root)
        assert set(by_item(rs)) == set(check.ITEMS)
        assert all(r.fix for r in rs if r.level != "OK")  # every WARN and FAIL says how to fix it
        assert all(not r.fix for r in rs if r.level == "OK")


def test_two_socket_is_ready():
    rs = results(TWO, pci=E810)
    assert {r.level for r in rs} == {"OK"} and check.status(rs) == 0
    r = fh("check", "--root", TWO, "--pci", E810)
    assert r.returncode == 0 and "ready (exit 0)" in r.stdout
    d = json.loads(fh("check", "--root", TWO, "--pci", E810, "--json").stdout)
    assert d["status"] == 0 and {x["item"] for x in d["results"]} == set(check.ITEMS)
    assert d["plan"]["socket_mem"] == "0,1024"


def test_warnings_only_exit_1(tmp_path):
    r = fh("check", "--root", TWO, "--config", cfg_file(tmp_path, rx=5), check=False)  # a core on node 0
    assert r.returncode == 1 and re.search(r"^WARN +cores ", r.stdout, re.M) and "FAIL" not in r.stdout
    assert "runs, with warnings (exit 1)" in r.stdout


def test_mellanox_on_vfio_fails(tmp_path):
    rs = results(TWO, pci=CX6_VFIO)
    (nic,) = by_item(rs)["nic"]
    assert nic.level == "FAIL" and nic.fix == f"dpdk-devbind.py -b mlx5_core {CX6_VFIO}"
    assert check.status(rs) == 2
    r = fh("check", "--root", TWO, "--config", cfg_file(tmp_path, nic=f'pci = "{CX6_VFIO}"'), "--json", check=False)
    assert r.returncode == 2 and json.loads(r.stdout)["status"] == 2


def test_mellanox_on_mlx5_core_passes_the_nic_item():
    rs = results(TWO, pci=CX6)
    assert worst(rs, "nic") == "OK" and "mlx5_core" in by_item(rs)["nic"][0].message
    assert worst(rs, "hugepages") == "OK"  # 512 MB of 2M pages on node 0


def test_laptop():
    rs = results(LAPTOP, pci="0000:00:1f.6")
    items = by_item(rs)
    assert worst(rs, "hugepages") == "FAIL" and worst(rs, "nic") == "FAIL" and worst(rs, "cores") == "WARN"
    (gov,) = items["governor"]
    assert gov.level == "WARN" and "powersave" in gov.message
    assert gov.fix.startswith("echo performance | tee /sys/devices/system/cpu/cpu3/cpufreq/scaling_governor")
    (thp,) = items["thp"]
    assert thp.level == "WARN" and "echo never > /sys/kernel/mm/transparent_hugepage/enabled" in thp.fix
    assert "transparent_hugepage=never" in thp.fix
    irq = items["irqs"]
    assert [r.level for r in irq] == ["WARN", "WARN"]
    assert "IRQBALANCE_BANNED_CPULIST=3 >> /etc/default/irqbalance" in irq[0].fix.replace("'", "")
    assert "IRQ 124" in irq[1].message and "echo 0-2,4-6 > /proc/irq/$i/smp_affinity_list" in irq[1].fix
    (mem,) = items["memlock"]
    assert mem.level == "WARN" and "8192 KB" in mem.message and "LimitMEMLOCK=infinity" in mem.fix
    assert check.status(rs) == 2
    r = fh("check", "--root", LAPTOP, "--pci", "0000:00:1f.6", check=False)
    assert r.returncode == 2 and "not ready (exit 2)" in r.stdout
    assert "kernel parameters for all the fixes above" in r.stdout
    d = json.loads(fh("check", "--root", LAPTOP, "--json", check=False).stdout)
    assert d["kernel_args"] == {"isolcpus": "managed_irq,domain,3,7", "nohz_full": "3,7", "rcu_nocbs": "3,7",
                                "irqaffinity": "0-2,4-6", "hugepagesz": "2M", "hugepages": "256",
                                "transparent_hugepage": "never"}
    assert d["grub_dropin"].startswith("echo 'GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT isolcpus=")


def test_vm():
    rs = results(VM)
    items = by_item(rs)
    assert worst(rs, "hugepages") == "FAIL" and worst(rs, "nic") == "FAIL"
    assert items["governor"][0].level == "OK" and "no cpufreq" in items["governor"][0].message
    assert items["thp"][0].level == "OK" and "madvise" in items["thp"][0].message
    assert items["irqs"][0].message == "irqbalance is not running"
    assert check.status(rs) == 2


def test_vdev_lab_config(tmp_path):
    cfg = cfg_file(tmp_path, nic='vdev = "net_pcap0,rx_pcap=day.pcap"', huge="false")
    rs = results(VM, cfg=cfg)
    assert worst(rs, "nic") == "OK" and worst(rs, "memlock") == "OK"
    assert worst(rs, "hugepages") == "WARN"  # --no-huge: fine for a lab, a warning for production


@pytest.mark.parametrize("banned,level,fix", [
    (None, "OK", ""),  # no list configured: irqbalance bans the isolated and nohz_full CPUs itself
    ("0-3", "WARN", "IRQBALANCE_BANNED_CPULIST=0-3,31"),
])
def test_irqbalance_ban_list(tmp_path, banned, level, fix):
    root = copy_host("two-socket-32c", tmp_path)
    text = "# irqbalance\n" + (f"IRQBALANCE_BANNED_CPULIST={banned}\n" if banned else "")
    (root / "etc/default/irqbalance").write_text(text)
    (first, *_) = by_item(results(root, pci=E810))["irqs"]
    assert first.level == level and fix in first.fix


def test_irq_on_the_lcore(tmp_path):
    root = copy_host("two-socket-32c", tmp_path)
    (root / "proc/irq/35/effective_affinity_list").write_text("31\n")
    irq = by_item(results(root, pci=E810))["irqs"]
    assert irq[1].level == "WARN" and "IRQ 35" in irq[1].message
    assert "for i in 35; do echo 0-17,32-49 > /proc/irq/$i/smp_affinity_list; done" in irq[1].fix


def test_governor_memlock_thp(tmp_path):
    root = copy_host("two-socket-32c", tmp_path)
    (root / "sys/devices/system/cpu/cpu31/cpufreq/scaling_governor").write_text("schedutil\n")
    (root / "sys/kernel/mm/transparent_hugepage/enabled").write_text("[always] madvise never\n")
    limits = (root / "proc/self/limits").read_text()
    (root / "proc/self/limits").write_text(limits.replace("Max locked memory         unlimited            unlimited",
                                                          "Max locked memory         67108864             67108864"))
    rs = results(root, pci=E810)
    assert [worst(rs, i) for i in ("governor", "thp", "memlock")] == ["WARN", "WARN", "WARN"]
    assert "65536 KB, less than the 1024 MB" in by_item(rs)["memlock"][0].message
    assert check.status(rs) == 1


def test_unreadable_limits(tmp_path):
    root = copy_host("two-socket-32c", tmp_path)
    os.unlink(root / "proc/self/limits")
    assert worst(results(root, pci=E810), "memlock") == "WARN"


@pytest.mark.slow
def test_real_host_does_not_crash():
    h = topology.read_host("/")
    p, rs = check.run(h)
    assert set(by_item(rs)) == set(check.ITEMS)
    r = fh("check", check=False)
    assert r.returncode in (0, 1, 2) and "Traceback" not in r.stderr and f"(exit {r.returncode})" in r.stdout
    r = fh("check", "--json", check=False)
    d = json.loads(r.stdout)
    assert d["status"] == r.returncode and d["root"] == "/"


def test_the_nic_with_the_default_route_is_never_offered_for_binding():
    """eno1 (0000:17:00.0, i40e) carries the two-socket host's default route: fh check refuses it and does not
    suggest taking it down or unbinding it."""
    r = fh("check", "--root", TWO, "--pci", "0000:17:00.0", check=False)
    assert r.returncode == 2
    nic = [l for l in r.stdout.splitlines() if re.match(r"FAIL +nic ", l)]
    assert nic and "default route on eno1" in nic[0] and "must not be handed to DPDK" in nic[0]
    assert "ip link set eno1 down" not in r.stdout and "dpdk-devbind.py -b vfio-pci 0000:17:00.0" not in r.stdout


def test_an_empty_pci_address_is_refused():
    """fh check --pci "" checked the host against a NIC of no name (exit 2 for its failures, the empty value never
    named): the parser refuses it in one line."""
    r = fh("check", "--pci=", check=False, timeout=60)
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == (
        "fh check: error: argument --pci: an empty value; give the NIC's PCI address, e.g. 0000:3b:00.0"), r.stderr
