"""`fh soak` (handler/soak.py): every fault plan of the rotation once through the real data plane with a
reader attached, books checked after each loop; and the check itself catches wrong books, a lost message, a
book left stale or live when it should not be, a dropped frame."""

from __future__ import annotations

import json

import pytest

from conftest import fh
from handler import soak


@pytest.mark.dpdk
def test_soak_every_plan_once():
    r = fh("soak", "--loops", len(soak.PLANS), "--messages", 8000, "--instruments", 8)
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    loops, summary = recs[:-1], recs[-1]
    assert [x["plan"] for x in loops] == [name for name, _ in soak.PLANS]
    assert all(x["ok"] for x in loops), [x for x in loops if not x["ok"]]
    assert summary["loops"] == len(soak.PLANS) and summary["failures"] == 0
    for x in loops:
        assert x["drops"] == 0 and x["reader_events"] > 0 and x["dataplane_hwm_kb"] > 0
    both = loops[-1]
    assert both["plan"] == "both-loss" and both["lost"] > 0 and both["applied"] == 8000 - both["lost"]


def _stats(**mold):
    m = {"lost": 0, "unrecoverable": 0, "session_changes": 0, **mold}
    return {"mold": m, "drops": {"truncated_frame": 0}}


BOOK = [{"locate": 1, "symbol": "A", "bids": [[100, 10, 1]], "asks": []}]


def test_soak_check_catches_what_is_wrong():
    ok = soak._check("clean", BOOK, {1: "live"}, _stats(), BOOK, BOOK)
    assert ok == []
    other = [{**BOOK[0], "bids": [[100, 9, 1]]}]
    assert soak._check("clean", other, {1: "live"}, _stats(), BOOK, BOOK)
    assert soak._check("a-loss", BOOK, {1: "stale"}, _stats(), BOOK, BOOK)
    assert soak._check("a-loss", BOOK, {1: "live"}, _stats(lost=3), BOOK, BOOK)
    assert soak._check("session-change", BOOK, {1: "live"}, _stats(), BOOK, BOOK)
    assert soak._check("both-loss", BOOK, {1: "live"}, _stats(lost=2, unrecoverable=1), BOOK, BOOK)
    assert soak._check("both-loss", BOOK, {1: "stale"}, _stats(), BOOK, BOOK)
    assert soak._check("both-loss", BOOK, {1: "stale"}, _stats(lost=2, unrecoverable=1), BOOK, BOOK) == []
    dropped = {**_stats(), "drops": {"truncated_frame": 1}}
    assert soak._check("clean", BOOK, {1: "live"}, dropped, BOOK, BOOK)
