"""`fh bench restart` on a small day: every position is restarted to exactly where its journal ends, from the
newest snapshot before it plus the journal after it (the figures themselves are timings on a shared machine:
bench/restart.md)."""

from __future__ import annotations

import json

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
