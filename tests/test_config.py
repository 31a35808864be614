"""fh.toml validation (every error path names the key and the fix) and `fh run` end to end."""

from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT, fh
from handler import config, replay

GOOD = """
[instance]
name = "{name}"
[feed]
protocol = "moldudp64-itch50"
[[feed.lines]]
name = "A"
group = "233.54.12.111"
port = 26477
[[feed.lines]]
name = "B"
group = "233.49.196.111"
port = 26477
[nic]
vdev = "net_pcap0,rx_pcap={pcap}"
[memory]
hugepages = false
mb = 256
[run]
idle = "backoff"
exit_idle_ms = 300
"""


def write(tmp_path, text: str):
    p = tmp_path / "fh.toml"
    p.write_text(text)
    return p


def good(tmp_path, name="cfgtest"):
    return GOOD.format(name=name, pcap=ROOT / "pcaps" / "synth-ab-40k.pcap")


def test_good_config_and_arguments(tmp_path):
    c = config.load(write(tmp_path, good(tmp_path)))
    assert c.name == "cfgtest" and [l.name for l in c.lines] == ["A", "B"]
    eal = config.eal_args(c)
    assert "--no-huge" in eal and eal[eal.index("--vdev") + 1].startswith("net_pcap0,rx_pcap=")
    app = config.app_args(c)
    assert app[app.index("--segment") + 1] == "/dev/shm/fh-cfgtest"
    assert app.count("--line") == 2 and "--exit-idle-ms" in app


@pytest.mark.parametrize("mutate,key,fix", [
    (lambda t: t + "\n[shm]\ndepht = 3\n", "shm.depht", "unknown key; shm takes depth"),
    (lambda t: t + "\n[bogus]\n", "bogus", "unknown section"),
    (lambda t: t.replace("port = 26477", "port = 70000", 1), "feed.lines[0].port = 70000", "from 1 to 65535"),
    (lambda t: t.replace('group = "233.54.12.111"', 'group = "233.54.12"'), "feed.lines[0].group", "IPv4 address"),
    (lambda t: t.replace('233.49.196.111', '233.54.12.111'), "feed.lines", "same group and port"),
    (lambda t: t.replace('vdev = ', 'pci = "0000:3b:00.0"\nvdev = '), "nic", "exactly one of nic.pci"),
    (lambda t: t.replace('vdev = "net_pcap0', 'pci = "3b:00"\n#'), "nic.pci", "PCI address"),
    (lambda t: t.replace('idle = "backoff"', 'idle = "sleep"'), "run.idle", "spin"),
    (lambda t: t.replace('hugepages = false', 'hugepages = "no"'), "memory.hugepages", "true or false"),
    (lambda t: t.replace('name = "cfgtest"', 'name = "a b"'), "instance.name", "letters, digits"),
    (lambda t: t.replace('protocol = "moldudp64-itch50"', 'protocol = "pitch"'), "feed.protocol", "only protocol"),
    (lambda t: t + "\n[cores]\nrx = 4000\n", "cores.rx = 4000", "no such CPU online"),
    (lambda t: t + "\n[shm]\nevents = 1000\n", "shm.events = 1000", "power of two"),
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


def test_segment_group_and_directory(tmp_path):
    c = config.load(write(tmp_path, good(tmp_path) + f'\n[shm]\ngroup = "root"\ndir = "{tmp_path}"\n'))
    assert c.gid == 0 and c.segment == f"{tmp_path}/fh-cfgtest"
    app = config.app_args(c)
    assert app[app.index("--group") + 1] == "0"


def test_missing_config_file(tmp_path):
    p = fh("run", "--config", tmp_path / "none.toml", check=False)
    assert p.returncode == 2 and "no such file; write one from docs/config.md" in p.stderr


@pytest.mark.skipif(not os.path.exists(replay.ROOT / "build") and not os.environ.get("FH_DATAPLANE"),
                    reason="fh-dataplane not built")
def test_fh_run_replays_the_configured_capture(tmp_path):
    try:
        replay.find_dataplane()
    except replay.DataplaneError as e:
        pytest.skip(str(e))
    p = fh("run", "--config", write(tmp_path, good(tmp_path, f"cfgrun{os.getpid()}")), "--json")
    stats = json.loads(p.stdout)
    assert stats["messages_applied"] == 40000 and stats["mold"]["duplicates"] == 40000
    bad = write(tmp_path, good(tmp_path).replace("synth-ab-40k.pcap", "missing.pcap"))
    p = fh("run", "--config", bad, check=False)
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_fh_run_with_a_nic_goes_through_the_plan(tmp_path):
    """A PCI NIC is placed by fh plan: on this host the named device does not exist, so the run is refused
    before anything starts, with the plan's failure and its fix."""
    text = good(tmp_path).replace('vdev = "', 'pci = "0000:99:00.0"\n# vdev = "')
    p = fh("run", "--config", write(tmp_path, text), check=False)
    assert p.returncode == 2
    assert "FAIL nic: there is no PCI device 0000:99:00.0" in p.stderr and "fix:" in p.stderr
    assert "fh plan --config" in p.stderr
