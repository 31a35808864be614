"""handler.process.Dataplane's start-up: a data plane that prints nothing within the wait is reported with where each
of its threads waits (a stalled start-up seen once in ~200 runs of `fh bench latency`, bench/latency.md "Paired
rounds"), then ended by close()."""

from __future__ import annotations

import os

import pytest

from handler import process


def test_stalled_start_names_its_threads(tmp_path):
    prog = tmp_path / "fh-dataplane"
    prog.write_text("#!/bin/sh\nexec sleep 30\n")  # starts, prints nothing, waits
    prog.chmod(0o755)
    dp = process.Dataplane([str(prog)])
    try:
        with pytest.raises(process.DataplaneError) as e:
            dp.wait_running(0.5)
        msg = str(e.value)
        assert "printed no 'running' line in 0.5 s: no output; its threads: sleep S on CPU " in msg
        assert "\n" not in msg
    finally:
        dp.close()
    assert dp.p.returncode is not None  # close() ended it
    assert process.thread_states(dp.p.pid) == "gone"


def test_thread_states_of_a_live_process():
    s = process.thread_states(os.getpid())
    # pytest's own threads, each "name state on CPU n [in wchan]"; this one is running
    assert " R on CPU " in s and all(" on CPU " in t for t in s.split(", "))
