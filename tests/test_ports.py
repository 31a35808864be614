"""fh ports: real DPDK (EAL and ethdev through handler._dpdk) in a child process, against virtual devices:
net_null, net_pcap, and net_af_packet on a veth pair whose other end is in a network namespace the test
creates; and every way a reading can fail, each one line with exit status 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import fh, fh_popen
from handler import replay
from handler.host import ports

ROOT = Path(__file__).resolve().parent.parent
PCAP = ROOT / "pcaps" / "synth-ab-40k.pcap"
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

needs_dpdk = pytest.mark.dpdk


def _ports(*args) -> dict:
    p = fh("ports", "--json", *map(str, args))
    return json.loads(p.stdout)


def _one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("fh: ")
    return lines[0]


# -- without DPDK ----------------------------------------------------------------------------------------

def test_eal_args_own_prefix_and_no_pci_scan():
    a = ports.eal_args(["net_null0"], no_huge=True)
    assert a[a.index("--file-prefix") + 1] == f"fh-ports-{os.getpid()}"
    assert "--no-pci" in a and "--no-huge" in a and "--no-shconf" in a and "--in-memory" not in a
    assert a[a.index("--vdev") + 1] == "net_null0"
    b = ports.eal_args(pci=["0000:01:00.0"], prefix="x")
    assert "--in-memory" in b and "--no-pci" not in b and b[b.index("-a") + 1] == "0000:01:00.0"
    assert b[b.index("--file-prefix") + 1] == "x"


def test_diagnoses():
    hp = "EAL: No free 2048 kB hugepages reported on node 0\nEAL: FATAL: Cannot get hugepage information.\n"
    msg = ports.diagnose({"ok": False, "stage": "init", "errno": 13, "error": "Permission denied"}, hp, [])
    assert msg.startswith("EAL cannot start: no free hugepages") and "--no-huge" in msg
    busy = ("EAL: Cannot open /dev/vfio/42: Device or resource busy\n"
            "EAL: Requested device 0000:3b:00.0 cannot be used\n")
    msg = ports.diagnose({"ok": True, "ports": []}, busy, ["-a", "0000:3b:00.0"])
    assert "0000:3b:00.0 cannot be used" in msg and "busy" in msg and "fh status" in msg
    msg = ports.diagnose({"ok": False, "stage": "import", "error": "No module named 'handler._dpdk'"}, "", [])
    assert "libdpdk-dev" in msg
    msg = ports.diagnose(None, "Segmentation fault\n", [], -11)
    assert "exit status -11" in msg


def test_table():
    p = {"id": 0, "name": "net_null0", "driver": "net_null", "socket": None, "mac": "02:00:00:00:00:01",
         "link": {"up": True, "speed_mbps": 25000, "duplex": "full", "autoneg": True},
         "stats": {"ipackets": 12, "opackets": 3, "imissed": 1, "rx_nombuf": 1, "ierrors": 0, "oerrors": 2}}
    lines = ports.table([p]).splitlines()
    assert lines[0].split()[:6] == ["id", "name", "driver", "socket", "mac", "link"]
    assert lines[1].split() == ["0", "net_null0", "net_null", "-", "02:00:00:00:00:01", "up", "25G", "12", "3", "2",
                                "2"]
    assert ports.link_text({"up": False, "speed_mbps": None}) == "down"
    assert ports.link_text({"up": True, "speed_mbps": 100, "duplex": "half"}) == "up 100M half"


def test_pci_checks(tmp_path):
    dev = tmp_path / "sys/bus/pci/devices/0000:01:00.0"
    dev.mkdir(parents=True)
    with pytest.raises(ports.PortsError, match="no driver is bound"):
        ports.check_pci("01:00.0", str(tmp_path))
    drivers = tmp_path / "sys/bus/pci/drivers"
    (drivers / "ice").mkdir(parents=True)
    (dev / "driver").symlink_to(drivers / "ice")
    with pytest.raises(ports.PortsError, match="kernel's ice driver owns it; bind it to vfio-pci"):
        ports.check_pci("0000:01:00.0", str(tmp_path))
    (dev / "driver").unlink()
    (drivers / "vfio-pci").mkdir()
    (dev / "driver").symlink_to(drivers / "vfio-pci")
    assert ports.check_pci("01:00.0", str(tmp_path)) == "0000:01:00.0"
    with pytest.raises(ports.PortsError, match="no such PCI device"):
        ports.check_pci("0000:02:00.0", str(tmp_path))


def test_unknown_pci_is_refused_before_eal():
    line = _one_line_error(fh("ports", "--pci", "0000:ff:1f.7", check=False))
    assert "no such PCI device" in line


# -- real DPDK -------------------------------------------------------------------------------------------

@needs_dpdk
def test_net_null_two_ports():
    out = _ports("--no-huge", "--vdev", "net_null0", "--vdev", "net_null1")
    assert out["warnings"] == []
    got = out["ports"]
    assert [p["id"] for p in got] == [0, 1]
    assert [p["name"] for p in got] == ["net_null0", "net_null1"]
    assert {p["driver"] for p in got} == {"net_null"} and {p["bus"] for p in got} == {"vdev"}
    for p in got:
        assert MAC.match(p["mac"]) and p["max_rx_queues"] >= 1
        assert p["link"]["up"] is False          # not started
        assert p["stats"]["ipackets"] == p["stats"]["opackets"] == 0
    table = fh("ports", "--no-huge", "--vdev", "net_null0", "--vdev", "net_null1").stdout.splitlines()
    assert len(table) == 3 and table[0].split()[:3] == ["id", "name", "driver"]
    assert table[1].split()[:3] == ["0", "net_null0", "net_null"]
    assert table[2].split()[:3] == ["1", "net_null1", "net_null"]


@needs_dpdk
def test_net_pcap_socket_mac_and_counters():
    spec = f"net_pcap0,rx_pcap={PCAP}"
    (p,) = _ports("--no-huge", "--vdev", spec)["ports"]
    assert (p["name"], p["driver"], p["device"], p["bus"]) == ("net_pcap0", "net_pcap", "net_pcap0", "vdev")
    assert p["socket"] is None or p["socket"] >= 0   # a vdev has no NUMA node unless given one
    assert MAC.match(p["mac"])
    assert p["stats"]["ipackets"] == 0 and "started" not in p
    # --start: the port runs and every frame of the capture arrives
    (p,) = _ports("--no-huge", "--start", "1", "--vdev", spec)["ports"]
    frames, _ = replay.pcap_extent(PCAP)
    assert p["started"] == 0 and p["link"]["up"] is True
    assert p["stats"]["ipackets"] == frames and p["stats"]["ibytes"] > 0
    assert p["stats"]["imissed"] == p["stats"]["ierrors"] == p["stats"]["rx_nombuf"] == 0


@needs_dpdk
def test_config_gives_the_device_and_the_memory(tmp_path):
    cfg = tmp_path / "fh.toml"
    cfg.write_text(f"""
[instance]
name = "ports-test"
[feed]
protocol = "moldudp64-itch50"
[[feed.lines]]
name = "A"
group = "233.54.12.111"
port = 26477
[nic]
vdev = "net_pcap0,rx_pcap={PCAP}"
[memory]
hugepages = false
mb = 256
""")
    (p,) = _ports("--config", cfg)["ports"]
    assert p["driver"] == "net_pcap"
    # --vdev replaces the configuration's NIC
    (p,) = _ports("--config", cfg, "--vdev", "net_null0")["ports"]
    assert p["name"] == "net_null0"


@needs_dpdk
def test_two_readings_at_once_do_not_collide():
    procs = [fh_popen("ports", "--json", "--no-huge", "--vdev", "net_null0", stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for pr in procs:
        out, err = pr.communicate(timeout=120)
        assert pr.returncode == 0, err
        assert json.loads(out)["ports"][0]["name"] == "net_null0"


SEND = """
import signal, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
frame = b"\\xff" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01" + b"\\x88\\xb5" + bytes(50)
n = 0
def done(*_):
    print(n, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    s.send(frame); n += 1
    time.sleep(0.02)
"""


@needs_dpdk
@pytest.mark.netns
def test_net_af_packet_on_a_veth_link_up_and_counters():
    from handler.net import sender

    try:
        lab = sender.Lab(f"pt{uuid.uuid4().hex[:6]}").up()
    except sender.LabError as e:
        pytest.skip(f"cannot create a network namespace and a veth pair here: {e}")
    try:
        mac = Path(f"/sys/class/net/{lab.dp_if}/address").read_text().strip()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # frames all the time the reading runs, however long its start takes: some arrive while its port runs
        snd = subprocess.Popen(lab.exec_argv([sys.executable, "-c", SEND, lab.ns_if]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            reader = subprocess.run([sys.executable, "-m", "handler", "ports", "--json", "--no-huge", "--start",
                                     "2", "--vdev", f"net_af_packet0,iface={lab.dp_if}"], capture_output=True,
                                    text=True, env=env, timeout=300)
        finally:
            snd.terminate()
            sent_out, sent_err = snd.communicate(timeout=30)
        assert reader.returncode == 0, reader.stderr
        assert snd.returncode == 0, sent_err
        sent, out = int(sent_out), reader.stdout
    finally:
        lab.down()
    (p,) = json.loads(out)["ports"]
    assert p["driver"] == "net_af_packet" and p["mac"] == mac
    assert p["started"] == 0 and p["link"]["up"] is True
    assert 0 < p["stats"]["ipackets"] <= sent
    assert p["stats"]["ibytes"] == 64 * p["stats"]["ipackets"]


@needs_dpdk
def test_no_device_is_one_line():
    line = _one_line_error(fh("ports", "--no-huge", check=False))
    assert line == "fh: no DPDK port: no device given; name one with --pci ADDR, --vdev SPEC or --config FILE"


@needs_dpdk
def test_bad_vdev_spec_is_one_line():
    line = _one_line_error(fh("ports", "--no-huge", "--vdev", "net_bogus0", check=False))
    assert line.startswith("fh: bad device: ") and "net_bogus0" in line and "--vdev spec is" in line


@needs_dpdk
def test_device_that_fails_to_start():
    line = _one_line_error(fh("ports", "--no-huge", "--vdev", "net_pcap0,rx_pcap=/nonexistent.pcap", check=False))
    assert line.startswith("fh: no DPDK port: net_pcap0 failed to start") and "/nonexistent.pcap" in line
    # with another port that works: its row, and a warning for the one that failed
    p = fh("ports", "--no-huge", "--vdev", "net_null0", "--vdev", "net_pcap0,rx_pcap=/nonexistent.pcap")
    assert "net_null0" in p.stdout and "warning: net_pcap0 failed to start" in p.stderr


@needs_dpdk
def test_no_hugepages_is_one_line():
    free = sum(int(f.read_text()) for f in Path("/sys/kernel/mm/hugepages").glob("*/free_hugepages"))
    if free:
        pytest.skip("this host has free hugepages")
    line = _one_line_error(fh("ports", "--vdev", "net_null0", check=False))
    assert "no free hugepages" in line and "--no-huge" in line


def test_an_empty_device_is_refused_before_eal_starts():
    """fh ports --vdev "" started EAL with nothing and said "fh: no DPDK port from " (the cause cut off); --pci ""
    looked up a PCI device of no name. Both are refused by the parser, in one line, exit 2."""
    for opt, said in (("--vdev", "give a virtual device, e.g. net_pcap0,rx_pcap=day.pcap"),
                      ("--pci", "give a PCI address, e.g. 0000:01:00.0")):
        r = fh("ports", "--no-huge", f"{opt}=", check=False, timeout=60)
        assert r.returncode == 2 and r.stderr.splitlines()[-1] == (
            f"fh ports: error: argument {opt}: an empty value; {said}"), r.stderr
