"""Failover that a consumer does not notice (issue 14), real processes: a paced day on a veth pair taken by two
fh-dataplane processes, the primary (--journal, shipped by fh-replicate over libfabric's tcp provider) and the
standby (--standby: it follows the standby fh-replicate's journal and holds its own lines back); kill -9 of the
primary's data plane and fh-replicate mid-replay. The standby promotes after its failover timeout, takes the
lines after the last replicated message, fills the hole from what it held back, and ends with the reference's
books; a consumer following its event ring from the start sees every event once, in sequence, equal to those of
a data plane that never failed over. See handler/failover_lab.py."""
from __future__ import annotations

import os
import uuid

import pytest

from conftest import fh
from handler import process, replay
from handler import replicate as R

try:
    R.find_program()
    process.find_dataplane()
    READY = process.pmd_available("net_af_packet")
    WHY = "the net_af_packet PMD is not installed"
except (R.ReplicateError, process.DataplaneError) as e:
    READY, WHY = False, f"fh-replicate or fh-dataplane not built: {e}"

pytestmark = [pytest.mark.skipif(not READY, reason=WHY),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a network namespace and a veth pair")]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("failover") / "ab.pcap"
    fh("pcap", "synth", out, "--messages", 20000, "--instruments", "20", "--seed", "7")
    return out


def _events_of_a_plain_replay(pcap) -> list[dict]:
    """The events of one data plane that takes the whole capture (net_pcap, no failover)."""
    from handler.shm import Reader

    name = f"fo-ref-{uuid.uuid4().hex[:8]}"
    segment = f"/dev/shm/fh-{name}"
    try:
        process.run_dataplane(replay.eal_args(name, f"net_pcap0,rx_pcap={pcap}"), segment, replay.pcap_lines(pcap),
                              events=1 << 18, timeout=120)
        with Reader(segment) as r:
            out = []
            for ev in r.events(start=1):
                assert isinstance(ev, dict)
                ev.pop("rx_to_pub_ns", None)
                out.append(ev)
            return out
    finally:
        process.remove_segment(segment)


def test_kill_9_of_the_primary_mid_replay(day):
    from handler import failover_lab

    timeout_ms, hb_ms = 300, 50
    r = failover_lab.run(day, pps=300, kill_at=0.4, failover_timeout_ms=timeout_ms, heartbeat_ms=hb_ms)
    sb = r["stats"]["standby"]
    # the standby promoted: its fh-replicate after the failover timeout with no heartbeat, then its data plane
    assert r["status"]["state"] == "promoted" and r["status"]["epoch"] == 2 and sb["promoted"] and sb["epoch"] == 2
    assert "no heartbeat from the primary for 300 ms" in r["replicate_err"]
    # not before the timeout (the last heartbeat came at most one interval before the kill), and it happened
    assert sb["promoted_ns"] - r["kill_ns"] >= (timeout_ms - hb_ms) * 1_000_000
    assert sb["first_own_ns"] >= sb["promoted_ns"]
    # it followed what was shipped, then took the lines from the next sequence: every message exactly once
    assert 0 < sb["messages"] < 20000 and sb["resumed_seq"] == sb["messages"] + 1
    assert sb["messages"] + sb["replay_applied"] + r["stats"]["messages_applied"] == 20000
    assert sb["holes"] == 0 and sb["overwritten"] == 0 and sb["too_big"] == 0
    assert r["stats"]["mold"]["lost"] == 0 and r["stats"]["feed"]["state"] in ("live", "ended")
    # the books equal the reference model's
    want, _ = replay.reference_books(day)
    assert r["books"] == want, replay.diff_books(r["books"], want)
    # the consumer: no gap in event sequence, no stale notice, and the very events of a plain replay
    assert not r["overruns"]
    seqs = [e["seq"] for e in r["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert not any(e["type"] in ("stale", "recovered") for e in r["events"])
    assert r["events"] == _events_of_a_plain_replay(day)
