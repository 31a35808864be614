"""`fh bench restart` on a small day: every position is restarted to exactly where its journal ends, from the
newest snapshot before it plus the journal after it (the figures themselves are timings on a shared machine:
bench/restart.md)."""

from __future__ import annotations

import json

import pytest

from conftest import fh


def test_bench_restart_small_day():
    p = fh("bench", "restart", "--messages", "30000", "--instruments", "20", "--snapshot-every", "6000", "--points",
           "3", "--repeats", "1", "--rotate-mb", "1", "--json")
    r = json.loads(p.stdout)
    assert [x["position"] for x in r["points"]] == [0.3333, 0.6667, 1.0]
    assert r["points"][-1]["messages_before"] == 30000 and r["engine_msgs_per_s"] > 0
    for x in r["points"]:
        assert x["next_seq"] == x["messages_before"] + 1
        # the newest snapshot at or before the position, and only the journal after it applied
        assert x["snapshot_next_seq"] <= x["next_seq"] and x["next_seq"] - x["snapshot_next_seq"] < 6000 + 200
        assert x["journal_messages"] == x["next_seq"] - x["snapshot_next_seq"]
        assert x["load_s"] > 0 and x["apply_s"] > 0 and x["total_s"] > 0


def test_restart_state_with_references_beyond_the_sized_engine(tmp_path):
    """Order references index the engine's order table (its slot: the reference modulo the table's size;
    collisions go to a small spill table): a snapshot whose orders' references all collide in a table sized
    from their count does not fit it; restart_snapshot builds the state in the default engine instead, and it
    is whole."""
    from test_reference import msg_A, msg_R

    from handler import native
    from handler.snapshot import restart_snapshot, snapshot_name

    from handler.snapshot import _restart_capacity

    e = native.Engine()
    e.apply(msg_R(1, "AAPL"))
    for i in range(600):
        e.apply(msg_A((i + 1) << 20, b"B", 100, 1850000 - 100 * i))
    (tmp_path / "snapshots").mkdir()
    snap = tmp_path / "snapshots" / snapshot_name("20261203", "S1", 602)
    e.snapshot_save(snap, "S1", 602, 20261203)
    with pytest.raises(native.NativeError, match="does not fit the order table"):
        native.Engine(_restart_capacity([snap], [])).snapshot_load(snap)
    path, info = restart_snapshot(tmp_path, "20261203")
    assert info["snapshot"]["orders"] == 600 and info["restart"]["next_seq"] == 602
    back = native.Engine()
    back.snapshot_load(path)
    assert back.dump() == e.dump()
