"""`fh soak` (handler/soak.py): every fault plan of the rotation once through the real data plane with a
reader attached, books checked after each loop; and the check itself catches wrong books, a lost message, a
book left stale or live when it should not be, a dropped frame."""

from __future__ import annotations

import glob
import json
import signal
import subprocess
import time

import pytest

from conftest import fh, fh_popen, stop_process
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


@pytest.mark.parametrize("args, want", [
    (["--minutes", "0"], "argument --minutes: expected more than 0 and at most 10080 minutes (a week), got 0"),
    (["--minutes", "-1"], "got -1"),
    (["--minutes", "nan"], "got nan"),
    (["--minutes", "inf"], "got inf"),
    (["--minutes", "1", "--loops", "2"], "argument --loops: not allowed with argument --minutes"),
])
def test_soak_refuses_a_length_it_cannot_run(args, want):
    """--minutes 0, -1 and nan ran no loop and exited 0 as if the soak had passed; inf never ended; --loops beside
    --minutes silently won."""
    p = fh("soak", *args, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("fh soak: error: ") and want in p.stderr, p.stderr


@pytest.mark.parametrize("instruments, messages", [(1, 100), (20, 60), (8, 1500)])
def test_a_day_too_short_for_the_plans_names_enough_messages(instruments, messages):
    """The plans' faults reach datagram 62; a shorter day failed with the fault plan's "fault 1 (drop): at 10 is
    beyond the day's 3 datagrams". Now the error names a --messages that is enough, and it is."""
    from handler import native
    from handler.net import pcapgen

    p = fh("soak", "--loops", "1", "--instruments", instruments, "--messages", messages, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line = p.stderr.strip()
    assert line.startswith(f"fh: the fault plans act on datagrams up to {soak._datagrams_needed()}, and a day of "
                           f"{messages} messages of {instruments} instrument"), line
    enough = int(line.split("give --messages ")[1].split()[0])
    assert len(pcapgen.packetize(native.synth_bytes(enough, instruments, 7))) >= soak._datagrams_needed() == 62
    soak._enough_datagrams(native.synth_bytes(enough, instruments, 7), enough, instruments)  # (no error)


@pytest.mark.dpdk
def test_sigterm_leaves_no_segment_and_no_capture_behind(tmp_path):
    """fh soak stopped by SIGTERM (a timeout, systemd) left its loop's segment in /dev/shm and its five captures in
    a temporary directory: now SIGTERM ends it as ^C does (exit 130), its data plane stopped, both removed."""
    before = set(glob.glob("/dev/shm/fh-soak-*"))
    p = fh_popen("soak", "--minutes", "5", "--messages", "8000", "--instruments", "8", env={"TMPDIR": str(tmp_path)},
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not set(glob.glob("/dev/shm/fh-soak-*")) - before and p.poll() is None:
            assert time.monotonic() < deadline, "no soak segment appeared"
            time.sleep(0.05)
        assert list(tmp_path.glob("fh-soak-*/*.pcap")), list(tmp_path.iterdir())
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        stop_process(p)  # (only if the test failed before its own SIGTERM ended it)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert not set(glob.glob("/dev/shm/fh-soak-*")) - before and not list(tmp_path.iterdir())
