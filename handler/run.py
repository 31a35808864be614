"""`fh run --config fh.toml`: start the data plane in the foreground from a validated configuration,
forward SIGINT/SIGTERM to it, and report why and how it stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from . import config, replay


def run(cfg_path: str, keep_segment: bool = False, json_out: bool = False) -> int:
    cfg = config.load(cfg_path)
    if cfg.nic_vdev and "rx_pcap=" in cfg.nic_vdev:
        pcap = cfg.nic_vdev.split("rx_pcap=", 1)[1].split(",", 1)[0]
        from pathlib import Path

        if not Path(pcap).is_file():
            raise config.ConfigError(f"{cfg.path}: nic.vdev = {cfg.nic_vdev!r}: rx_pcap file {pcap} does not exist")
    cmd = [replay.find_dataplane(), *config.eal_args(cfg), "--", *config.app_args(cfg)]
    if keep_segment:
        cmd.append("--keep-segment")
    print(f"fh run: {cfg.name}: {len(cfg.lines)} line(s) "
          f"({', '.join(f'{l.name} {l.group}:{l.port}' for l in cfg.lines)}) on "
          f"{cfg.nic_pci or cfg.nic_vdev}; segment {cfg.segment}", file=sys.stderr, flush=True)
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def forward(signum, frame):
        child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        out, _ = child.communicate()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    rc = child.returncode
    if rc < 0:
        print(f"fh run: the data plane was killed by signal {signal.Signals(-rc).name}", file=sys.stderr)
        return 1
    if rc != 0:
        print(f"fh run: the data plane exited with status {rc} (its message is above)", file=sys.stderr)
        return rc
    try:
        stats = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        print("fh run: the data plane stopped without final statistics", file=sys.stderr)
        return 1
    if json_out:
        print(json.dumps(stats))
    else:
        print("fh run: stopped cleanly")
        for line in replay.summary_lines(stats):
            print(line)
    return 0
