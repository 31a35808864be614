"""fh.toml validation (every error path names the key and the fix) and `fh run` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, fh, run_config
from handler import config, replay
from handler.net import neigh, sender

def write(tmp_path, text: str):
    p = tmp_path / "fh.toml"
    p.write_text(text)
    return p


def good(tmp_path, name="cfgtest"):
    return run_config(name)


def test_good_config_and_arguments(tmp_path, monkeypatch):
    from handler import segments

    monkeypatch.setattr(segments, "hugetlbfs_mounts", lambda root="/": [])  # (shm.dir auto: /dev/shm on any host)
    c = config.load(write(tmp_path, good(tmp_path)))
    assert c.name == "cfgtest" and [l.name for l in c.lines] == ["A", "B"]
    eal = config.eal_args(c)
    assert "--no-huge" in eal and eal[eal.index("--vdev") + 1].startswith("net_pcap0,rx_pcap=")
    assert "--in-memory" not in eal  # EAL refuses --in-memory with --no-huge; --no-shconf leaves no file there
    # on hugepages, --in-memory: no runtime files and the page files unlinked once mapped, so that a stop (or a
    # crash) gives the host its pages back
    huge = config.eal_args(config.load(write(tmp_path, good(tmp_path).replace("hugepages = false", "hugepages = true"))))
    assert "--in-memory" in huge and "--no-huge" not in huge and "--no-shconf" not in huge
    app = config.app_args(c)
    assert app[app.index("--segment") + 1] == "/dev/shm/fh-cfgtest"
    assert app.count("--line") == 2 and "--exit-idle-ms" in app
    assert app[app.index("--ladder-books") + 1] == "16384"  # the writers' default (fh/seg.h)
    c = config.load(write(tmp_path, good(tmp_path) + "\n[shm]\nladder_books = 0\n"))
    assert config.app_args(c)[config.app_args(c).index("--ladder-books") + 1] == "0"
    assert "--warm-us" not in app  # the data plane's default: 1000 with spin, 0 with backoff
    text = good(tmp_path).replace("[run]\n", "[run]\nwarm_us = 400\n", 1)
    assert text != good(tmp_path)
    app = config.app_args(config.load(write(tmp_path, text)))
    assert app[app.index("--warm-us") + 1] == "400"


@pytest.mark.parametrize("mutate,key,fix", [
    (lambda t: t + "\n[shm]\ndepht = 3\n", "shm.depht", "unknown key; shm takes depth"),
    (lambda t: t + "\n[bogus]\n", "bogus", "unknown section"),
    (lambda t: t + "\n[shm]\ngroup = true\n", "shm.group = True", "no such group"),  # not gid 1
    (lambda t: t.replace('name = "A"', "name = [1, 2]", 1), "feed.lines[0].name = [1, 2]", "1-31 letters"),
    (lambda t: t.replace('name = "B"', 'name = "A"', 1), "feed.lines[1].name = 'A'", "another line has this name"),
    (lambda t: t.replace('vdev = "net_pcap0', 'vdev = "   "\n# "', 1), "nic.vdev = '   '", "DPDK virtual device"),
    (lambda t: t.replace('vdev = "net_pcap0', 'pci = "zz:yy:xx.q"\n# "', 1), "nic.pci = 'zz:yy:xx.q'",
     "PCI address"),
    (lambda t: t.replace('vdev = "net_pcap0', 'vdev = "0000:3b:00.0"\n# "', 1), "nic.vdev", "a NIC goes in nic.pci"),
    (lambda t: t.replace('vdev = "net_pcap0', 'pci = "net_pcap0"\n# "', 1), "nic.pci",
     "a virtual device goes in nic.vdev"),
    (lambda t: t.replace("port = 26477", "port = 70000", 1), "feed.lines[0].port = 70000", "from 1 to 65535"),
    (lambda t: t.replace('group = "233.54.12.111"', 'group = "233.54.12"'), "feed.lines[0].group", "IPv4 multicast"),
    (lambda t: t.replace('group = "233.54.12.111"', 'group = 233'), "feed.lines[0].group = 233", "as a string"),
    (lambda t: t.replace('group = "233.54.12.111"', 'group = "10.1.2.3"'), "feed.lines[0].group", "multicast group"),
    (lambda t: t.replace("[nic]", "[feed.integrity]\nconfirm = -1\n[nic]"), "feed.integrity.confirm", "0"),
    (lambda t: t.replace("[nic]", "[feed.integrity]\nwindow = 5\n[nic]"), "feed.integrity.window", "unknown key"),
    (lambda t: t.replace('name = "cfgtest"', 'name = "../../tmp/x"'), "instance.name", "letters, digits"),
    (lambda t: t.replace('233.49.196.111', '233.54.12.111'), "feed.lines", "same group and port"),
    (lambda t: t.replace('vdev = ', 'pci = "0000:3b:00.0"\nvdev = '), "nic", "exactly one of nic.pci"),
    (lambda t: t.replace('vdev = "net_pcap0', 'pci = "3b:00"\n#'), "nic.pci", "PCI address"),
    (lambda t: t.replace('idle = "backoff"', 'idle = "sleep"'), "run.idle", "spin"),
    (lambda t: t.replace('[run]\n', '[run]\nwarm_us = -1\n', 1), "run.warm_us = -1", "a whole number from 0 to 10000000"),
    (lambda t: t.replace('hugepages = false', 'hugepages = "no"'), "memory.hugepages", "true or false"),
    (lambda t: t.replace('name = "cfgtest"', 'name = "a b"'), "instance.name", "letters, digits"),
    (lambda t: t.replace('protocol = "moldudp64-itch50"', 'protocol = "pitch"'), "feed.protocol", "only protocol"),
    (lambda t: t + "\n[cores]\nrx = 4000\n", "cores.rx = 4000", "no such CPU online"),
    (lambda t: t + "\n[shm]\nevents = 1000\n", "shm.events = 1000", "power of two"),
    (lambda t: t + "\n[shm]\nladder_books = 70000\n", "shm.ladder_books = 70000", "from 0 to 65534"),
    (lambda t: t.replace("[[feed.lines]]", "[[feed.lines]]\ncolor = 1", 1), "feed.lines[0].color", "unknown key"),
    (lambda t: t + "\n[run\n", "not valid TOML", ""),
    (lambda t: t + '\n[shm]\ngroup = "no-such-group-fh"\n', "shm.group", "no such group"),
    (lambda t: t + '\n[shm]\ndir = "/no/such/dir"\n', "shm.dir", "existing directory"),
])
def test_config_errors_name_the_key_and_the_fix(tmp_path, mutate, key, fix):
    with pytest.raises(config.ConfigError) as e:
        config.load(write(tmp_path, mutate(good(tmp_path))))
    msg = str(e.value)
    assert key in msg and fix in msg and "\n" not in msg


def test_a_pci_address_without_its_domain_is_domain_0000(tmp_path):
    c = config.load(write(tmp_path, good(tmp_path).replace('vdev = "net_pcap0', 'pci = "AF:00.1"\n# "', 1)))
    assert c.nic_pci == "0000:af:00.1" and config.eal_args(c)[config.eal_args(c).index("-a") + 1] == "0000:af:00.1"


def test_integrity_keys_reach_the_data_plane(tmp_path):
    text = good(tmp_path).replace("[nic]", "[feed.integrity]\nmax_ahead = 4096\nconfirm = 3\nrecover_max = 0\n[nic]")
    app = config.app_args(config.load(write(tmp_path, text)))
    assert app[app.index("--max-ahead") + 1] == "4096" and app[app.index("--confirm") + 1] == "3"
    assert app[app.index("--recover-max") + 1] == "0"
    assert "--confirm" not in config.app_args(config.load(write(tmp_path, good(tmp_path))))


def test_instance_names_are_checked_in_one_place(tmp_path):
    from handler import segments, supervise

    for bad in ["../../tmp/x", "", "a/b", "x" * 32, "caf\u00e9", ".."]:
        for call in (lambda n: segments.writer_path(n, 1 << 20), segments.reader_path, supervise.pidfile_paths,
                     lambda n: replay.replay("/nonexistent.pcap", name=n)):
            with pytest.raises(segments.InstanceNameError, match="an instance name is 1-31 letters"):
                call(bad)
    p = fh("publish", "--itch", ROOT / "pcaps" / "synth-100k.itch", "--name", "../../tmp/x", check=False)
    assert p.returncode == 2 and "--name '../../tmp/x': an instance name is" in p.stderr
    for cmd in (["status"], ["stop"]):  # (readers' --name also takes a segment path: fh stats --name /dev/shm/fh-x)
        p = fh(*cmd, "--name", "../x", check=False)
        assert p.returncode == 2 and "an instance name is" in p.stderr, (cmd, p.stderr)


def test_segment_group_and_directory(tmp_path):
    c = config.load(write(tmp_path, good(tmp_path) + f'\n[shm]\ngroup = "root"\ndir = "{tmp_path}"\n'))
    assert c.gid == 0 and c.segment == f"{tmp_path}/fh-cfgtest"
    app = config.app_args(c)
    assert app[app.index("--group") + 1] == "0"


def test_fh_run_with_hugepages_the_host_does_not_have_is_refused_first(tmp_path):
    """memory.hugepages = true on virtual devices: the host's free hugepages are checked before EAL starts (which
    failed with lines of its own, and a hint naming the data plane's flags, not the configuration's keys)."""
    text = good(tmp_path).replace("hugepages = false", "hugepages = true").replace("mb = 256", f"mb = {1 << 20}")
    p = fh("run", "--config", write(tmp_path, text), check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"memory.hugepages = true and memory.mb = {1 << 20}, but this host has" in p.stderr
    assert "or set memory.hugepages = false" in p.stderr


def test_fh_run_refuses_an_rx_pcap_that_is_no_pcap(tmp_path):
    """net_pcap reads a classic pcap only; anything else made EAL create no port ("bind a NIC to vfio-pci")."""
    itch = ROOT / "pcaps" / "synth-100k.itch"
    p = fh("run", "--config", write(tmp_path, good(tmp_path).replace("synth-ab-40k.pcap", "synth-100k.itch")),
           check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"rx_pcap file {itch} is an ITCH 5.0 daily file, not a pcap; give a classic pcap" in p.stderr
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all\n")
    p = fh("run", "--config", write(tmp_path, good(tmp_path).replace(str(ROOT / "pcaps" / "synth-ab-40k.pcap"),
                                                                     str(junk))), check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"rx_pcap file {junk} is neither an ITCH 5.0 daily file nor a capture; give a classic pcap" in p.stderr


def test_missing_config_file(tmp_path):
    p = fh("run", "--config", tmp_path / "none.toml", check=False)
    assert p.returncode == 2 and "no such file; write one from docs/config.md" in p.stderr


@pytest.mark.parametrize("cmd", [["run"], ["plan"], ["check"], ["metrics", "--once"]])
def test_a_config_that_is_no_regular_file_is_refused(tmp_path, cmd):
    """A FIFO given as --config blocked the read forever (fh run, fh plan ...); a directory failed late. Refused
    as --pcap is, before it is opened: one line, exit 2."""
    fifo = tmp_path / "fh.toml"
    os.mkfifo(fifo)
    for path, kind in [(fifo, "a FIFO"), (tmp_path, "a directory")]:
        p = fh(*cmd, "--config", path, check=False, timeout=120)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert p.stderr == f"fh: {path}: not a regular file ({kind}); give the instance's fh.toml (docs/config.md)\n"


def test_a_snapshot_password_file_that_is_no_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "pw"
    os.mkfifo(fifo)
    cfg = write(tmp_path, good(tmp_path) + f'\n[feed.snapshot]\nserver = "127.0.0.1:1"\nuser = "fh"\n'
                                         f'password_file = "{fifo}"\n')
    with pytest.raises(config.ConfigError, match="feed.snapshot.password_file .*: not a regular file: give a file "
                                                 "holding the password"):
        config.load(cfg)



def test_a_snapshot_password_file_that_is_not_text_is_refused(tmp_path):
    """A binary feed.snapshot.password_file was a UnicodeDecodeError (a traceback from fh run) when read."""
    pw = tmp_path / "pw"
    pw.write_bytes(b"\xaa\xff\x00secret\n")
    c = config.load(write(tmp_path, good(tmp_path) + f'\n[feed.snapshot]\nserver = "127.0.0.1:1"\nuser = "fh"\n'
                                                     f'password_file = "{pw}"\n'))
    with pytest.raises(config.ConfigError, match=r"feed.snapshot.password_file = .*: not text; its first line must "
                                                 r"be the password \(up to 10 ASCII characters\)$"):
        config.snapshot_password(c)

@pytest.mark.dpdk
def test_fh_run_replays_the_configured_capture(tmp_path):
    p = fh("run", "--config", write(tmp_path, good(tmp_path, f"cfgrun{os.getpid()}")), "--json")
    stats = json.loads(p.stdout)
    assert stats["messages_applied"] == 40000 and stats["mold"]["duplicates"] == 40000
    bad = write(tmp_path, good(tmp_path).replace("synth-ab-40k.pcap", "missing.pcap"))
    p = fh("run", "--config", bad, check=False)
    assert p.returncode == 2 and "does not exist" in p.stderr


@pytest.mark.slow
def test_fh_run_with_a_nic_goes_through_the_plan(tmp_path):
    """A PCI NIC is placed by fh plan: on this host the named device does not exist, so the run is refused
    before anything starts, in one line with the plan's failure and its fix (it printed the host's isolation and
    hugepage warnings too, then a second line pointing to fh plan)."""
    text = good(tmp_path).replace('vdev = "', 'pci = "0000:99:00.0"\n# vdev = "')
    p = fh("run", "--config", write(tmp_path, text), check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "this host cannot run it as configured: nic: there is no PCI device 0000:99:00.0" in \
        lines[0] and "; fix: " in lines[0], p.stderr


# ---- retransmission, two ports, replication, metrics (issue 6) ----------------------------------------------

EXAMPLE = ROOT / "examples" / "fh.toml"

RETRANS = """
[feed.retransmission]
server = "10.20.0.5:26400"
source = "10.20.0.9:26401"
mac = "0C-42-A1-3B-00-01"
"""


@pytest.mark.parametrize("cmd", ["plan", "check"])
def test_example_passes_plan_and_check_on_a_tuned_host(cmd):
    """The shipped example, as it is (its textfile directory need not exist), on the tuned two-socket host of
    tests/fixtures/hosts: WARN at most."""
    host = ROOT / "tests" / "fixtures" / "hosts" / "two-socket-32c"
    p = fh(cmd, "--root", host, "--config", EXAMPLE, check=False)
    assert p.returncode in (0, 1), p.stdout + p.stderr  # 1: warnings only (fh check: the data plane as root)
    assert "FAIL" not in p.stdout


def test_metrics_textfile_directory_is_checked_by_fh_metrics_only(tmp_path):
    text = good(tmp_path) + '[metrics]\ntextfile = "/no/such/dir/fh.prom"\n'
    path = write(tmp_path, text)
    config.load(path)  # fh plan, check and run do not write it
    p = fh("metrics", "--config", path, "--once", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "metrics.textfile" in p.stderr and "mkdir -p /no/such/dir" in p.stderr


def test_example_loads_and_is_the_one_in_the_docs(tmp_path):
    text = EXAMPLE.read_text()
    c = config.load(write(tmp_path, text.replace("/var/lib/prometheus/node-exporter", str(tmp_path))))
    assert c.name == "nasdaq" and [(l.name, l.dev) for l in c.lines] == [("A", "0000:af:00.0"), ("B", "0000:af:00.0")]
    assert [d.name for d in c.devices] == ["0000:af:00.0"]
    r = c.retransmission
    assert (r.server, r.source, r.mac, r.dev) == (("10.20.0.5", 26400), ("10.20.0.9", 26401), "0c:42:a1:3b:00:01",
                                                  "0000:af:00.0")
    assert c.replication == config.Replication("primary", "rdma", ("fh-standby", 7400), None, "mlx5_0", 100)
    assert c.metrics == config.Metrics("127.0.0.1:9377", str(tmp_path / "fh-nasdaq.prom"), 15.0)
    # docs/config.md shows this very file
    doc = (ROOT / "docs" / "config.md").read_text()
    assert text.strip() in doc


def test_example_maps_to_the_data_plane_arguments(tmp_path):
    c = config.load(write(tmp_path, EXAMPLE.read_text().replace("/var/lib/prometheus/node-exporter", str(tmp_path))))
    app = config.app_args(c)
    tail = app[app.index("--depth") + 2:]
    assert tail == [
        "--line", "233.54.12.111:26477", "--line", "233.49.196.111:26477",
        "--unrecoverable", "resume", "--line-stale-ms", "3000", "--line-down-ms", "10000",
        "--retrans-server", "10.20.0.5:26400", "--retrans-mac", "0c:42:a1:3b:00:01", "--retrans-dev", "0000:af:00.0",
        "--src-ip", "10.20.0.9", "--src-port", "26401", "--gap-wait-us", "2000", "--request-timeout-ms", "100",
        "--request-retries", "4", "--request-max", "1000", "--max-outstanding", "4", "--hold", "1048576",
        "--publish", "AAPL,MSFT,NVDA,AMZN"]
    eal = config.eal_args(c)
    assert eal[eal.index("-a"):] == ["-a", "0000:af:00.0"]


def test_one_port_keeps_the_old_arguments(tmp_path):
    """One device: --line GROUP:PORT without @DEV, and no line-health or retransmission arguments at their
    defaults, so a data plane without them still runs such a configuration."""
    c = config.load(write(tmp_path, good(tmp_path)))
    app = config.app_args(c)
    assert [a for a in app if "@" in a] == [] and "--unrecoverable" not in app and "--retrans-server" not in app
    assert c.retransmission is None and c.replication.role == "off" and c.metrics == config.Metrics()
    text = good(tmp_path).replace('protocol = "moldudp64-itch50"', 'protocol = "moldudp64-itch50"\nline_down_ms = 20000')
    app = config.app_args(config.load(write(tmp_path, text)))
    assert app[app.index("--unrecoverable"):] == ["--unrecoverable", "resume", "--line-stale-ms", "3000",
                                                  "--line-down-ms", "20000"]


def test_two_virtual_devices(tmp_path):
    text = good(tmp_path).replace('group = "233.49.196.111"', 'group = "233.49.196.111"\nnic = "net_pcap1,rx_pcap=b.pcap"')
    c = config.load(write(tmp_path, text + RETRANS + 'nic = "net_null0"\n'))
    assert [l.dev for l in c.lines] == ["net_pcap0", "net_pcap1"] and c.retransmission.dev == "net_null0"
    eal = config.eal_args(c)
    assert eal[eal.index("--no-pci"):] == ["--no-pci", "--vdev", c.nic_vdev, "--vdev", "net_pcap1,rx_pcap=b.pcap",
                                           "--vdev", "net_null0"]
    app = config.app_args(c)
    assert [app[i + 1] for i, a in enumerate(app) if a == "--line"] == ["233.54.12.111:26477@net_pcap0",
                                                                        "233.49.196.111:26477@net_pcap1"]
    assert app[app.index("--retrans-dev") + 1] == "net_null0"
    # a PCI port beside a virtual one: -a for it, no --no-pci; a short address gets its domain
    text = good(tmp_path).replace('group = "233.49.196.111"', 'group = "233.49.196.111"\nnic = "3B:00.1"')
    c = config.load(write(tmp_path, text))
    eal = config.device_args(c)
    assert eal == ["-a", "0000:3b:00.1", "--vdev", c.nic_vdev] and c.lines[1].dev == "0000:3b:00.1"
    # the same device named twice is one device
    text = good(tmp_path).replace('group = "233.49.196.111"', f'group = "233.49.196.111"\nnic = "{c.nic_vdev}"')
    c = config.load(write(tmp_path, text))
    assert len(c.devices) == 1 and "@" not in " ".join(config.app_args(c))


def _retrans(t: str, key: str, value: str) -> str:
    return t + RETRANS.replace(f"\n{key} = ", f"\n#{key} = ") + f"{key} = {value}\n"


def _feed(t: str, extra: str) -> str:
    return t.replace('protocol = "moldudp64-itch50"', f'protocol = "moldudp64-itch50"\n{extra}')


def _line_b(t: str, extra: str) -> str:
    return t.replace('group = "233.49.196.111"', f'group = "233.49.196.111"\n{extra}')


@pytest.mark.parametrize("mutate,key,fix", [
    # [feed.retransmission]
    (lambda t: t + RETRANS.replace('server = "10.20.0.5:26400"\n', ""), "feed.retransmission.server:",
     "missing; set it to IPV4:PORT"),
    (lambda t: _retrans(t, "server", '"10.20.0.5"'), "feed.retransmission.server = '10.20.0.5'", "IPV4:PORT"),
    (lambda t: _retrans(t, "server", '"10.20.0.5:0"'), "feed.retransmission.server", "port 1-65535"),
    (lambda t: _retrans(t, "server", '"10.20.0:26400"'), "feed.retransmission.server", "IPV4:PORT"),
    (lambda t: _retrans(t, "server", '"233.54.12.1:26400"'), "feed.retransmission.server", "unicast address"),
    (lambda t: _retrans(t, "server", "26400"), "feed.retransmission.server = 26400", "IPV4:PORT"),
    (lambda t: _retrans(t, "source", '"10.20.0.9:port"'), "feed.retransmission.source", "IPV4:PORT"),
    (lambda t: _retrans(t, "source", '"233.54.12.111:26477"'), "feed.retransmission.source", "unicast"),
    (lambda t: _retrans(t, "source", '"10.20.0.9:26477"').replace('233.54.12.111', '10.20.0.9'),
     "feed.lines[0].group", "multicast group"),  # a line is multicast, so it can never be the unicast source
    (lambda t: _retrans(t, "mac", '"0c:42:a1:3b:00"'), "feed.retransmission.mac = '0c:42:a1:3b:00'",
     "neighbour table"),
    (lambda t: _retrans(t, "mac", '"0c:42:a1:3b:00:zz"'), "feed.retransmission.mac", "unicast MAC"),
    (lambda t: _retrans(t, "mac", '"01:00:5e:00:00:01"'), "feed.retransmission.mac", "unicast MAC"),
    (lambda t: _retrans(t, "mac", '"00:00:00:00:00:00"'), "feed.retransmission.mac", "unicast MAC"),
    (lambda t: _retrans(t, "mac", "12"), "feed.retransmission.mac = 12", "unicast MAC"),
    (lambda t: _retrans(t, "nic", '"3b:00"'), "feed.retransmission.nic", "PCI address DDDD:BB:DD.F"),
    (lambda t: _retrans(t, "gap_wait_us", '"2ms"'), "feed.retransmission.gap_wait_us = '2ms'", "whole number"),
    (lambda t: _retrans(t, "gap_wait_us", "2000.5"), "feed.retransmission.gap_wait_us", "whole number"),
    (lambda t: _retrans(t, "timeout_ms", "0"), "feed.retransmission.timeout_ms = 0", "from 1 to 60000"),
    (lambda t: _retrans(t, "retries", "-1"), "feed.retransmission.retries = -1", "from 0 to 100"),
    (lambda t: _retrans(t, "retries", "true"), "feed.retransmission.retries = True", "whole number"),
    (lambda t: _retrans(t, "max_messages", "65535"), "feed.retransmission.max_messages", "from 1 to 65534"),
    (lambda t: _retrans(t, "max_messages", "0"), "feed.retransmission.max_messages", "from 1 to 65534"),
    (lambda t: _retrans(t, "max_outstanding", "0"), "feed.retransmission.max_outstanding", "from 1 to 16"),
    (lambda t: _retrans(t, "hold_messages", "1000000"), "feed.retransmission.hold_messages = 1000000",
     "power of two, e.g. 524288 or 1048576"),
    (lambda t: _retrans(t, "hold_messages", "512"), "feed.retransmission.hold_messages", "from 1024"),
    (lambda t: _retrans(t, "servr", '"x"'), "feed.retransmission.servr", "unknown key; feed.retransmission takes "
     "gap_wait_us, hold_messages, mac"),
    (lambda t: _feed(t, "retransmission = 5"), "feed.retransmission = 5", "must be a table"),
    # [feed] line health
    (lambda t: _feed(t, 'on_unrecoverable = "drop"'), "feed.on_unrecoverable = 'drop'", '"resume"'),
    (lambda t: _feed(t, "on_unrecoverable = true"), "feed.on_unrecoverable", '"snapshot"'),
    (lambda t: _feed(t, "line_stale_ms = 10000"), "feed.line_down_ms = 10000", "more than feed.line_stale_ms"),
    (lambda t: _feed(t, "line_stale_ms = 500\nline_down_ms = 500"), "feed.line_down_ms = 500", "lower line_stale_ms"),
    (lambda t: _feed(t, "line_stale_ms = 0"), "feed.line_stale_ms = 0", "from 1 to 3600000"),
    (lambda t: _feed(t, 'line_down_ms = "10s"'), "feed.line_down_ms = '10s'", "whole number"),
    (lambda t: _feed(t, "gap_ms = 1"), "feed.gap_ms", "unknown key; feed takes integrity, line_down_ms"),
    # two ports
    (lambda t: _line_b(t, 'nic = "3b:00"'), "feed.lines[1].nic = '3b:00'", "PCI address DDDD:BB:DD.F"),
    (lambda t: _line_b(t, 'nic = "0000:3b:00.9"'), "feed.lines[1].nic", "net_pcap1,rx_pcap=b.pcap"),
    (lambda t: _line_b(t, "nic = 1"), "feed.lines[1].nic = 1", "PCI address"),
    (lambda t: _line_b(t, 'nic = "net_pcap0,rx_pcap=other.pcap"'), "feed.lines[1].nic",
     "DPDK would name it net_pcap0, as it names nic.vdev"),
    (lambda t: _line_b(t, 'nics = "net_null0"'), "feed.lines[1].nics",
     "a line takes name, group, port, nic and source"),
    (lambda t: t.replace('vdev = "net_pcap0,rx_pcap=', 'vdev = 5\n#'), "nic.vdev = 5", "virtual device"),
    # [replication]
    (lambda t: t + '[replication]\nrole = "master"\n', "replication.role = 'master'", '"primary"'),
    (lambda t: t + '[replication]\nrole = "primary"\n', "replication.peer:", "a primary needs its standby"),
    (lambda t: t + '[replication]\nrole = "standby"\n', "replication.listen:", "a standby needs an address"),
    (lambda t: t + '[replication]\nrole = "primary"\npeer = "fh-standby"\n', "replication.peer = 'fh-standby'",
     "HOST:PORT"),
    (lambda t: t + '[replication]\nrole = "primary"\npeer = "-bad-:7400"\n', "replication.peer", "HOST:PORT"),
    (lambda t: t + '[replication]\nrole = "primary"\npeer = "10.0.2:7400"\n', "replication.peer", "HOST:PORT"),
    (lambda t: t + '[replication]\nrole = "standby"\nlisten = "10.0.0.1:99999"\n', "replication.listen",
     "port 1-65535"),
    (lambda t: t + '[replication]\nrole = "standby"\nlisten = "fh-b:7400"\n', "replication.listen", "IPV4:PORT"),
    (lambda t: t + '[replication]\ntransport = "ib"\n', "replication.transport = 'ib'", '"rdma"'),
    (lambda t: t + '[replication]\ntransport = "tcp"\ndevice = "mlx5_0"\n', "replication.device = 'mlx5_0'",
     'set transport = "rdma" or remove device'),
    (lambda t: t + '[replication]\ndevice = "mlx5_0"\n', "replication.device", 'transport is "tcp"'),
    (lambda t: t + '[replication]\ntransport = "rdma"\ndevice = "mlx5 0"\n', "replication.device", "ibv_devices"),
    (lambda t: t + '[replication]\nmax_lag_ms = 0\n', "replication.max_lag_ms = 0", "whole number"),
    (lambda t: t + '[replication]\nprovider = "psm3"\n', "replication.provider = 'psm3'", '"verbs" or "tcp"'),
    (lambda t: t + '[replication]\nring_mb = 12\n', "replication.ring_mb = 12", "power of two"),
    (lambda t: t + '[replication]\nheartbeat_ms = 500\nfailover_timeout_ms = 500\n',
     "replication.failover_timeout_ms = 500", "longer than heartbeat_ms (500), e.g. 2500"),
    (lambda t: t + '[replication]\npeers = "a:1"\n', "replication.peers", "unknown key; replication takes"),
    (lambda t: 'replication = "primary"\n' + t, "replication = 'primary'", "must be a table"),
    # [metrics]
    (lambda t: t + '[metrics]\nlisten = "localhost"\n', "metrics.listen = 'localhost'", "IPV4:PORT"),
    (lambda t: t + '[metrics]\ntextfile = "/tmp"\n', "metrics.textfile = '/tmp'", "a file path"),
    (lambda t: t + '[metrics]\ninterval_s = 0\n', "metrics.interval_s = 0", "from 0.1 to 86400"),
    (lambda t: t + '[metrics]\ninterval_s = "15s"\n', "metrics.interval_s", "number of seconds"),
    (lambda t: t + '[metrics]\nport = 9377\n', "metrics.port", "unknown key; metrics takes interval_s, listen, "
     "textfile"),
])
def test_new_sections_errors_name_the_key_and_the_fix(tmp_path, mutate, key, fix):
    with pytest.raises(config.ConfigError) as e:
        config.load(write(tmp_path, mutate(good(tmp_path))))
    msg = str(e.value)
    assert key in msg and fix in msg and "\n" not in msg, msg
    assert msg.startswith(str(tmp_path / "fh.toml") + ": ")


def test_replication_and_metrics(tmp_path):
    c = config.load(write(tmp_path, good(tmp_path) + '[replication]\nrole = "standby"\nlisten = ":7400"\n'
                          f'[metrics]\nlisten = ":9377"\ntextfile = "{tmp_path}/fh.prom"\ninterval_s = 2.5\n'))
    assert c.replication == config.Replication(role="standby", listen=("0.0.0.0", 7400))
    assert c.metrics == config.Metrics("0.0.0.0:9377", f"{tmp_path}/fh.prom", 2.5)
    c = config.load(write(tmp_path, good(tmp_path) + '[replication]\nrole = "primary"\ntransport = "rdma"\n'
                          'peer = "10.0.0.2:7400"\n'))
    assert c.replication.peer == ("10.0.0.2", 7400) and c.replication.device is None
    assert "--replication" not in " ".join(config.app_args(c))  # not the data plane's business yet


# ---- the retransmission server's MAC from the neighbour table, in a network namespace ---------------------


def _ip(*args: str, ns: str | None = None) -> str:
    p = subprocess.run([*(sender.netns_argv(ns) if ns else []), "ip", *args], capture_output=True, text=True,
                       timeout=20)
    if p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


@pytest.fixture
def neigh_lab():
    """Two namespaces joined by a veth pair: ours (fhn-*, 10.77.0.1/24 on n0, a route to 198.51.100.0/24 via
    10.77.0.254) and the server's (fhm-*, 10.77.0.2/24 on n1). Yields (our namespace, the server's MAC)."""
    tag = uuid.uuid4().hex[:8]
    ours, theirs = f"fhn-{tag}", f"fhm-{tag}"
    made = []
    try:
        for ns in (ours, theirs):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", "n0", "type", "veth", "peer", "name", "n1", "netns", theirs, ns=ours)
        _ip("addr", "add", "10.77.0.1/24", "dev", "n0", ns=ours)
        _ip("addr", "add", "10.77.0.2/24", "dev", "n1", ns=theirs)
        for ns, dev in ((ours, "n0"), (theirs, "n1")):
            _ip("link", "set", dev, "up", ns=ns)
        _ip("route", "add", "198.51.100.0/24", "via", "10.77.0.254", ns=ours)
        mac = json.loads(_ip("-j", "link", "show", "n1", ns=theirs))[0]["address"]
    except (RuntimeError, FileNotFoundError) as e:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot build a network namespace lab here: {e}")
    try:
        yield ours, mac
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.netns
def test_next_hop_mac_from_the_neighbour_table(neigh_lab, tmp_path):
    ns, server_mac = neigh_lab
    # a neighbour the kernel learns by itself: one UDP datagram to the server makes it ARP
    subprocess.run([*sender.netns_argv(ns), sys.executable, "-c", "import socket; s = socket.socket(socket.AF_INET, "
                    "socket.SOCK_DGRAM); s.sendto(b'x', ('10.77.0.2', 26400))"], check=True, timeout=20)
    deadline = time.monotonic() + 5
    while True:
        try:
            assert neigh.next_hop_mac("10.77.0.2", ns) == (server_mac, "10.77.0.2", "n0")
            break
        except neigh.NeighError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    # through a gateway: the gateway's entry, set by hand
    _ip("neigh", "replace", "10.77.0.254", "lladdr", "02:00:5e:aa:bb:cc", "dev", "n0", "nud", "permanent", ns=ns)
    assert neigh.next_hop_mac("198.51.100.7", ns) == ("02:00:5e:aa:bb:cc", "10.77.0.254", "n0")
    # the configuration's view: the MAC fills --retrans-mac, the request port being the route's interface n0
    text = good(tmp_path) + RETRANS.replace('mac = "0C-42-A1-3B-00-01"\n', 'nic = "net_af_packet1,iface=n0"\n') \
        .replace("10.20.0.5", "198.51.100.7")
    c = config.load(write(tmp_path, text))
    assert c.retransmission.mac is None
    mac = config.resolve_retrans_mac(c, netns=ns)
    app = config.app_args(c, mac)
    assert app[app.index("--retrans-mac") + 1] == "02:00:5e:aa:bb:cc"
    with pytest.raises(config.ConfigError, match="retrans.*mac: not set"):
        config.app_args(c)  # nobody looked it up
    # a request port that is not the route's interface: the entry would send every request to a wrong MAC
    for nic, why in [("net_af_packet1,iface=eth9", "leaves by n0, not by the request port's interface eth9"),
                     ("net_pcap1,rx_pcap=x.pcap", "has no kernel interface to check the route")]:
        c = config.load(write(tmp_path, text.replace("net_af_packet1,iface=n0", nic)))
        with pytest.raises(config.ConfigError) as e:
            config.resolve_retrans_mac(c, netns=ns)
        assert why in str(e.value) and "\n" not in str(e.value) and "mac = " in str(e.value), str(e.value)


@pytest.mark.netns
def test_missing_neighbour_is_one_line_with_the_fix(neigh_lab, tmp_path):
    ns, _ = neigh_lab
    with pytest.raises(neigh.NeighError) as e:
        neigh.next_hop_mac("10.77.0.3", ns)  # on the link, never heard of
    assert e.value.hop == "10.77.0.3" and "no MAC for 10.77.0.3 on n0" in str(e.value)
    with pytest.raises(neigh.NeighError, match="no MAC for 10.77.0.254 \\(the gateway to 198.51.100.9\\)"):
        neigh.next_hop_mac("198.51.100.9", ns)
    with pytest.raises(neigh.NeighError, match="no route to 203.0.113.1"):
        neigh.next_hop_mac("203.0.113.1", ns)  # the namespace has no default route
    text = good(tmp_path) + RETRANS.replace('mac = "0C-42-A1-3B-00-01"\n', "").replace("10.20.0.5", "10.77.0.3")
    c = config.load(write(tmp_path, text))
    with pytest.raises(config.ConfigError) as e:
        config.resolve_retrans_mac(c, netns=ns)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{c.path}: feed.retransmission.mac: not set, and the neighbour table "
                                              "has no MAC for 10.77.0.3 on n0")
    assert "ping -c1 10.77.0.3" in msg and 'set feed.retransmission.mac = "MAC"' in msg
    # fh run refuses before anything starts (run inside the namespace, as the data plane's host)
    p = subprocess.run([*sender.netns_argv(ns), sys.executable, "-m", "handler", "run", "--config", c.path],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and "ping -c1 10.77.0.3" in p.stderr, p.stderr


# ---- [instruments] -------------------------------------------------------------------------------------


def test_instruments_publish_list_and_file(tmp_path):
    cfg = config.load(write(tmp_path, good(tmp_path) + '[instruments]\npublish = ["AAPL", "MSFT"]\n'))
    assert cfg.publish == "AAPL,MSFT"
    a = config.app_args(cfg)
    assert a[a.index("--publish") + 1] == "AAPL,MSFT"
    lst = tmp_path / "publish.txt"
    lst.write_text("# the books our strategies trade\nAAPL\nMSFT\n")
    cfg = config.load(write(tmp_path, good(tmp_path) + f'[instruments]\npublish_file = "{lst}"\n'))
    assert cfg.publish == f"@{lst}"
    assert "--publish" not in config.app_args(config.load(write(tmp_path, good(tmp_path))))


@pytest.mark.parametrize("section,fix", [
    ('publish = []', "non-empty list of symbols"),
    ('publish = "AAPL"', "non-empty list of symbols"),
    ('publish = ["TOOLONGSYM"]', "1 to 8 printable characters"),
    ('publish = ["A,B"]', "no comma"),
    ('publish_file = "/nonexistent/list.txt"', "no such file"),
    ('publish = ["AAPL"]\npublish_file = "/etc/hostname"', "not both"),
    ('symbols = ["AAPL"]', "unknown key"),
])
def test_instruments_errors(tmp_path, section, fix):
    with pytest.raises(config.ConfigError, match=fix) as e:
        config.load(write(tmp_path, good(tmp_path) + f"[instruments]\n{section}\n"))
    assert "instruments" in str(e.value) and len(str(e.value).splitlines()) == 1


def test_line_source_filter(tmp_path):
    text = good(tmp_path).replace('name = "A"\ngroup = "233.54.12.111"', 'name = "A"\ngroup = "233.54.12.111"\n'
                                  'source = "206.200.1.1"')
    cfg = config.load(write(tmp_path, text))
    assert cfg.lines[0].source == "206.200.1.1" and cfg.lines[1].source == ""
    a = config.app_args(cfg)
    i = a.index("--line")
    assert a[i:i + 5] == ["--line", "233.54.12.111:26477", "--line-source", "206.200.1.1", "--line"]
    with pytest.raises(config.ConfigError, match=r"feed.lines\[0\].source = 'nowhere': must be the IPv4"):
        config.load(write(tmp_path, text.replace("206.200.1.1", "nowhere")))


def test_defaults_agree_with_the_c_core(tmp_path):
    """The feed's defaults are the C core's (fh_mold_cfg_defaults), which fh-dataplane and the reference's
    sequencer read: the configuration's copies must not drift from them."""
    from handler._native import ffi, lib

    c = ffi.new("fh_mold_cfg_t *")
    lib.fh_mold_cfg_defaults(c, 1)  # in ms
    r = config.load(write(tmp_path, good(tmp_path) + RETRANS)).retransmission
    assert (r.gap_wait_us, r.timeout_ms, r.retries, r.max_messages, r.max_outstanding, r.hold_messages) == (
        c.gap_wait * 1000, c.request_timeout, c.retries, c.request_max, c.max_outstanding, c.hold)
    assert (config.DEFAULT_LINE_STALE_MS, config.DEFAULT_LINE_DOWN_MS) == (c.line_stale, c.line_down)
    assert replay.mold_defaults() == {"max_ahead": c.max_ahead, "confirm": c.confirm, "recover_max": c.recover_max}

