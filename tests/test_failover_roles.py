"""The standby's lifecycle and the role switch (issue 14, "Failover"), real processes over libfabric's tcp provider
on loopback:

- a standby fh-replicate takes one primary after another without a restart: its primary's fh-replicate killed
  (kill -9) and started again resumes after the standby's last journaled message (nothing shipped twice, nothing
  missing); a primary of an older epoch that connects in between is refused, counted, and stops fenced;
- two `fh run` instances: the primary killed, the standby promotes and its `fh run` makes it the primary toward
  its peer (a new fh-replicate --role primary at the new epoch on the data plane's own journal); the old primary,
  restarted with `fh run` and its configuration still saying primary, finds the peer shipping at the newer
  epoch and joins as standby (one line saying so; the role and epoch persisted in its run directory and shown
  by `fh status` / `fh replicate status`); its books then equal the new primary's;
- two primaries (docs/replication.md, "Two primaries": the newer epoch goes on, on a tie the lower listen address):
  a guard and a probe alone; both hosts restarted at once each holding primary; a running primary meeting a
  restarted peer of a newer epoch; a primary cut off while its standby promoted, demoted (its data plane restarted
  as standby);
- a lapped standby given the snapshot, then the journal: under fh run (a new standby after a day that lapped a
  1 MiB journal; a standby whose fh-replicate is restarted after the journal lapped its point), and a standby
  lapped mid-stream (fh-replicate alone);
- a host without a listen address joins as standby by connecting to its peer's guard: fh-replicate alone, and a
  fenced primary without listen under fh run."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import (ROOT, dataplane_path, fh, replicate_path, ring_records, run_config, stop_all,
                      why_no_replicate)
from handler import journal as J
from handler import process, replay
from handler import replicate as R
from handler.segments import wake_path

PROG = replicate_path()
HAVE_DP = dataplane_path() is not None

pytestmark = pytest.mark.skipif(PROG is None, reason=str(why_no_replicate()))
DAY = ROOT / "pcaps" / "synth-100k.itch"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _feed_prog() -> Path:
    """fh-bench-repl-feed (a data plane's journal written from a day, as the data plane would), built by meson."""
    return sorted(ROOT.glob("build/cp3*/native/bench/fh-bench-repl-feed"))[-1]


def _guard_paths(prefix: str) -> tuple[str, str, str, str, str, str]:
    """A guard and a joined standby's files, unique to the test: a tag (for --name), the data plane's journal (the
    guard ships it), the guard's own journal, the standby's journal, the guard's status and the standby's."""
    tag = uuid.uuid4().hex[:8]
    return (tag, f"/dev/shm/fh-{prefix}-{tag}.journal", f"/dev/shm/fh-{prefix}g-{tag}.journal",
            f"/dev/shm/fh-{prefix}s-{tag}.journal", f"/dev/shm/fh-{prefix}g-{tag}.repl",
            f"/dev/shm/fh-{prefix}s-{tag}.repl")


def _messages(path: str) -> list[bytes]:
    """Every message of a journal ring, in order (the MSGS records' messages, flattened)."""
    return [m for rec in ring_records(path) if rec.kind == J.MSGS for m in rec.messages()]


def _wait(cond, timeout: float, what):
    """what: the failure's message, or a callable giving it (a log read at the time of the failure)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.02)


def _messages_published(n: str) -> int:
    """The messages in instance n's segment, counted only once its writer is the data plane of n's running fh run
    (FH_RUN_DIR): a killed run's segment stays in /dev/shm, whole, until the next data plane replaces it, and a test
    that counted it would go on before the new data plane had started (seen on a loaded host: it started after the
    test's next steps, and missed what they were about)."""
    from handler import supervise
    from handler.shm import Reader

    try:
        rec = supervise.lookup(n)[1] or {}
        with Reader(f"/dev/shm/fh-{n}", wait_s=0) as r:
            if not rec.get("dataplane_pid") or r.writer_pid != rec["dataplane_pid"]:
                return 0
            return r.stats(types=False).get("messages", 0)
    except Exception:  # noqa: BLE001 - not there yet
        return 0


def _status(path: str) -> dict:
    try:
        return R.read_status(path)
    except R.ReplicateError:
        return {}


def test_a_standby_takes_a_restarted_primary_and_refuses_an_older_one():
    """One standby process throughout (epoch 2, journal only, as under fh run): its primary (epoch 2) killed
    mid-stream; a primary of epoch 1 connects: every record refused and counted, it stops fenced; the primary of
    epoch 2 started again resumes after the standby's last message. The standby's journal then holds every
    message of the primary's exactly once, in order, over three connections."""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag = uuid.uuid4().hex[:8]
    journal, sj = f"/dev/shm/fh-rr-{tag}.journal", f"/dev/shm/fh-rrs-{tag}.journal"
    st_s, st_p = f"/dev/shm/fh-rrs-{tag}.repl", f"/dev/shm/fh-rrp-{tag}.repl"
    addr = f"127.0.0.1:{_port()}"
    feed_prog = _feed_prog()
    procs: list[subprocess.Popen] = []

    def primary(epoch: int, *extra) -> subprocess.Popen:
        p = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                              "--epoch", str(epoch), "--name", f"rrp-{tag}", "--status", st_p, "--heartbeat-ms", "20",
                              "--max-outstanding", "16", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        procs.append(p)
        return p

    try:
        feed = subprocess.Popen([str(feed_prog), str(DAY), "--journal", journal, "--mb", "128", "--rate", "40000",
                                 "--loops", "3", "--delay-ms", "300"], stdout=subprocess.PIPE, text=True)
        procs.append(feed)
        sb = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", sj,
                               "--journal-mb", "128", "--name", f"rrs-{tag}", "--status", st_s, "--epoch", "2",
                               "--ring-mb", "4", "--failover-timeout-ms", "200"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(sb)
        _wait(lambda: _status(st_s).get("state") == "connecting", 10, "the standby listening")
        p1 = primary(2)
        _wait(lambda: _status(st_s).get("messages", 0) >= 30000, 30, "the first primary shipping")
        p1.kill()  # its host dies mid-stream
        p1.wait()
        old = primary(1, "--exit-when-done")
        out, err = old.communicate(timeout=30)
        assert old.returncode == 4 and "fenced" in err and "epoch 1" in err and "epoch 2" in err, err
        refused = _status(st_s)["refused_epoch"]
        assert refused >= 1
        p2 = primary(2, "--exit-when-done")
        assert feed.wait(60) == 0
        out, err = p2.communicate(timeout=60)
        assert p2.returncode == 0, err
        assert "the standby holds session" in err and "resuming after it" in err, err
        sb.send_signal(signal.SIGTERM)
        o, e = sb.communicate(timeout=30)
        assert sb.returncode == 0, e
        fig = json.loads(o.splitlines()[-1])
        st = R.read_status(st_s)
        assert st["connections"] == 3 and st["epoch"] == 2 and st["refused_epoch"] == refused, st
        assert fig["refused_epoch"] == refused and "a primary connected again" in e
        mine, theirs = _messages(sj), _messages(journal)
        assert len(theirs) == 300000 and mine == theirs  # each message once, in order: nothing lost or repeated
        assert json.loads(out)["messages"] < 300000  # the restarted primary shipped only what the standby lacked
    finally:
        _kill_and_remove(procs, (journal, sj, st_s, st_p))


def test_a_standby_without_a_listen_address_connects_to_the_primarys_guard():
    """A host with no listen address of its own joins as standby by connecting to its peer: fh-replicate --role
    standby --peer (no --listen) connects to the primary's guard, which ships the data plane's journal
    (--ship-journal) over that connection as a primary would. Killed mid-stream and started again on the same
    journal, the standby connects again and resumes after its last message: its journal then holds every message
    of the primary's exactly once, in order (the first journal's and the second's)."""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag, journal, gj, sj, st_g, st_s = _guard_paths("cj")
    addr, feed_prog = f"127.0.0.1:{_port()}", _feed_prog()
    procs: list[subprocess.Popen] = []

    def standby(err) -> subprocess.Popen:
        p = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--peer", addr, "--journal", sj,
                              "--journal-mb", "64", "--name", f"cjs-{tag}", "--status", st_s, "--epoch", "1",
                              "--ring-mb", "4"], stdout=subprocess.PIPE, stderr=err, text=True)
        procs.append(p)
        return p

    try:
        feed = subprocess.Popen([str(feed_prog), str(DAY), "--journal", journal, "--mb", "64", "--rate", "60000",
                                 "--delay-ms", "300"], stdout=subprocess.PIPE, text=True)
        procs.append(feed)
        guard = subprocess.Popen([PROG, "--role", "standby", "--guard", "--provider", "tcp", "--listen", addr,
                                  "--journal", gj, "--journal-mb", "16", "--ship-journal", journal, "--name",
                                  f"cjg-{tag}", "--status", st_g, "--epoch", "2", "--heartbeat-ms", "20"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(guard)
        _wait(lambda: _status(st_g).get("state") == "guarding", 10, "the guard listening")
        s1 = standby(subprocess.DEVNULL)
        _wait(lambda: _status(st_s).get("messages", 0) >= 30000, 30, "the guard shipping to the standby")
        s1.kill()  # its fh-replicate dies mid-stream
        s1.wait()
        first = _messages(sj)  # (the restarted one writes a new journal at the path, after where this one ended)
        s2 = standby(subprocess.PIPE)
        assert feed.wait(60) == 0
        _wait(lambda: _status(st_s).get("messages", 0) > 0 and _messages(sj)[-1:] == _messages(journal)[-1:], 30,
              "the restarted standby up to the primary's last message")
        s2.send_signal(signal.SIGTERM)
        o, e = s2.communicate(timeout=30)
        assert s2.returncode == 0, e
        assert "standby connecting to the primary at" in e and "ended at session" in e, e
        mine, theirs = first + _messages(sj), _messages(journal)
        assert len(theirs) == 100000 and mine == theirs  # each message once, in order: nothing lost or repeated
        fig = json.loads(o.splitlines()[-1])
        assert fig["messages"] == 100000 - len(first) and fig["epoch"] == 2, fig  # what it lacked, at epoch 2
        guard.send_signal(signal.SIGTERM)
        o, e = guard.communicate(timeout=30)
        said = [l for l in e.splitlines() if "a standby connected to this primary" in l]
        assert len(said) == 2 and journal in said[0] and "epoch 2" in said[0], e
        assert "the standby holds session" in e and "resuming after it" in e, e
        assert _messages(gj) == []  # the guard applied nothing: this host is the primary
    finally:
        _kill_and_remove(procs, (journal, gj, sj, st_g, st_s))


def test_a_joined_standby_told_nothing_connects_again_and_never_promotes(tmp_path):
    """A standby that joined a guard by connecting (no listen address) while the guard's data plane has not started
    (its journal not there: the guard waits for it and says nothing): after its failover timeout of silence on that
    connection it closes it and connects again, said in one line, and it does not promote (it never heard a primary);
    once the journal is written the guard ships it and the standby's journal holds every message, once, in order.
    (Before: the standby stayed on the silent connection and promoted itself after its failover timeout, a second
    primary beside the guard's host.)"""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag, journal, gj, sj, st_g, st_s = _guard_paths("sj")
    addr, feed_prog = f"127.0.0.1:{_port()}", _feed_prog()
    err, gerr = tmp_path / "standby.err", tmp_path / "guard.err"
    procs: list[subprocess.Popen] = []
    try:
        guard = subprocess.Popen([PROG, "--role", "standby", "--guard", "--provider", "tcp", "--listen", addr,
                                  "--journal", gj, "--journal-mb", "16", "--ship-journal", journal, "--name",
                                  f"sjg-{tag}", "--status", st_g, "--epoch", "1", "--heartbeat-ms", "20",
                                  "--connect-timeout-ms", "60000"],
                                 stdout=subprocess.DEVNULL, stderr=open(gerr, "w"))
        procs.append(guard)
        _wait(lambda: _status(st_g).get("state") == "guarding", 10, "the guard listening")
        sb = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--peer", addr, "--journal", sj,
                               "--journal-mb", "64", "--name", f"sjs-{tag}", "--status", st_s, "--epoch", "1",
                               "--ring-mb", "4", "--failover-timeout-ms", "300", "--promote-on-silence"],
                              stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        procs.append(sb)
        _wait(lambda: "said nothing on this connection for 300 ms: connecting again" in err.read_text(), 10,
              lambda: err.read_text()[-800:])
        time.sleep(1.0)  # more than three failover timeouts: still a standby
        st = _status(st_s)
        assert st["state"] != "promoted" and st["epoch"] == 1 and "promoted" not in err.read_text(), \
            (st, err.read_text()[-800:])
        assert subprocess.run([str(feed_prog), str(DAY), "--journal", journal, "--mb", "64"], capture_output=True,
                              timeout=60).returncode == 0  # the data plane's journal, at last: shipped
        _wait(lambda: _status(st_s).get("messages", 0) == 100000, 60, lambda: err.read_text()[-800:])
        # (read at once: the feed has exited, so once everything is shipped the guard stops beating and the standby
        # promotes one failover timeout later, as designed: docs/replication.md)
        said = err.read_text()
        assert sb.poll() is None and "promoted" not in said, said[-800:]
        assert _messages(sj) == _messages(journal)
        # the guard saw the standby leave while it waited and listened again (it did not wait on, then find the
        # connection dead at its first transmit)
        said = gerr.read_text()  # the guard's
        assert "closed its connection while this guard waited for the data plane's journal" in said, said[-800:]
        assert "is gone (3)" not in said and "not connected" not in said, said[-800:]
    finally:
        _kill_and_remove(procs, (journal, gj, sj, st_g, st_s))


def test_a_guard_shipping_to_a_joined_standby_answers_as_when_idle(tmp_path):
    """While a guard ships to a standby that joined (no listen address of its own), its listen address is answered
    as when idle: a probe learns it is primary; an older primary is fenced (exit 4) and the shipping goes on; a
    second joining standby is refused with its reason (one at a time); a newer primary makes it yield: the shipping
    stops and the guard, a standby now on that primary's connection, journals everything it ships. And SIGUSR2 (fh
    run's word: this host is standby) stops the shipping promptly, the status moved to the instance's file."""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag = uuid.uuid4().hex[:8]
    journal, j2, gj, sj, sj2 = (f"/dev/shm/fh-wj-{tag}.journal", f"/dev/shm/fh-wj2-{tag}.journal",
                                f"/dev/shm/fh-wjg-{tag}.journal", f"/dev/shm/fh-wjs-{tag}.journal",
                                f"/dev/shm/fh-wjs2-{tag}.journal")
    st_g, st_s, st_s2, st_p = (f"/dev/shm/fh-wjg-{tag}.guard.repl", f"/dev/shm/fh-wjs-{tag}.repl",
                               f"/dev/shm/fh-wjs2-{tag}.repl", f"/dev/shm/fh-wjp-{tag}.repl")
    moved = f"/dev/shm/fh-wjg-{tag}.repl"  # the guard's status after SIGUSR2: the instance's
    feed_prog = _feed_prog()
    procs: list[subprocess.Popen] = []

    def spawn(*args, err=subprocess.PIPE) -> subprocess.Popen:
        p = subprocess.Popen([PROG, "--provider", "tcp", *args], stdout=subprocess.PIPE, stderr=err, text=True)
        procs.append(p)
        return p

    def guard(addr) -> subprocess.Popen:
        return spawn("--role", "standby", "--guard", "--listen", addr, "--journal", gj, "--journal-mb", "64",
                     "--ship-journal", journal, "--name", f"wjg-{tag}", "--status", st_g, "--epoch", "2",
                     "--heartbeat-ms", "20", "--ring-mb", "4")

    def standby(addr, path, st, *more, err=subprocess.DEVNULL) -> subprocess.Popen:
        return spawn("--role", "standby", "--peer", addr, "--journal", path, "--journal-mb", "64", "--name",
                     f"wjs-{tag}", "--status", st, "--epoch", "1", "--ring-mb", "4", *more, err=err)

    def feed() -> subprocess.Popen:  # a paced day: the guard ships for about 7 s
        for f in (journal, gj, sj, st_g, st_s, moved):  # (a round's statuses not read as the next's)
            if os.path.exists(f):
                os.unlink(f)
        p = subprocess.Popen([str(feed_prog), str(DAY), "--journal", journal, "--mb", "64", "--rate", "15000",
                              "--delay-ms", "200"], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    try:
        assert subprocess.run([str(feed_prog), str(DAY), "--journal", j2, "--mb", "64"], capture_output=True,
                              timeout=60).returncode == 0
        addr = f"127.0.0.1:{_port()}"
        feed()
        g = guard(addr)
        _wait(lambda: _status(st_g).get("state") == "guarding", 10, "the guard listening")
        standby(addr, sj, st_s)
        _wait(lambda: _status(st_s).get("messages", 0) >= 3000, 30, "the guard shipping to the joined standby")
        p = subprocess.run([PROG, "--role", "primary", "--probe", "--provider", "tcp", "--peer", addr, "--epoch", "1",
                            "--connect-timeout-ms", "5000"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and json.loads(p.stdout) == {"peer": addr, "role": "primary", "epoch": 2,
                                                               "peer_wins": True}, p.stderr
        old = spawn("--role", "primary", "--peer", addr, "--journal", j2, "--epoch", "1", "--name", f"wjp-{tag}",
                    "--status", st_p, "--heartbeat-ms", "20", "--connect-timeout-ms", "5000")
        out, err = old.communicate(timeout=30)
        assert old.returncode == 4 and "is primary at epoch 2, this host at 1" in err, err
        s2 = standby(addr, sj2, st_s2, err=subprocess.PIPE)
        time.sleep(1.0)
        before = _status(st_s)["messages"]
        assert 0 < before < 100000 and _status(st_s2).get("messages", 0) == 0
        s2.send_signal(signal.SIGTERM)
        _, e2 = s2.communicate(timeout=30)
        assert "ships to another standby (one at a time)" in e2, e2
        new = spawn("--role", "primary", "--peer", addr, "--journal", j2, "--epoch", "3", "--name", f"wjp-{tag}",
                    "--status", st_p, "--heartbeat-ms", "20", "--exit-when-done", "--connect-timeout-ms", "5000")
        _wait(lambda: _status(st_g).get("messages", 0) == 100000, 60, "the yielded guard applying the new primary's")
        out, err = new.communicate(timeout=60)
        assert new.returncode == 0 and "primary too, at epoch 2" in err, err
        s = _status(st_g)
        assert s["state"] in ("streaming", "peer-silent") and s["epoch"] == 3, s
        shipped = _messages(sj)
        assert 0 < len(shipped) < 100000 and shipped == _messages(journal)[:len(shipped)]  # stopped; once, in order
        assert _messages(gj) == _messages(j2)
        g.send_signal(signal.SIGTERM)
        _, e = g.communicate(timeout=30)
        assert "a second standby joined while this guard ships to one: refused" in e, e
        assert "a primary at epoch 3 connected while this guard ships" in e and \
            len([l for l in e.splitlines() if "yields" in l]) == 1, e

        # SIGUSR2 while shipping: the shipping stops at once; the guard is a standby like any other from then on;
        # the joined standby is told its primary moved on (this host is standby now): it keeps its books, waits and
        # does not promote on the silence that follows (before, it promoted after its failover timeout: a second
        # primary beside the one that beat this host)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        addr = f"127.0.0.1:{_port()}"
        feed()
        g = guard(addr)
        _wait(lambda: _status(st_g).get("state") == "guarding", 10, "the guard listening")
        serr = tmp_path / "joined.err"
        sb = standby(addr, sj, st_s, "--promote-on-silence", "--failover-timeout-ms", "300", err=open(serr, "w"))
        _wait(lambda: _status(st_s).get("messages", 0) >= 3000, 30, "the guard shipping to the joined standby")
        t0 = time.monotonic()
        g.send_signal(signal.SIGUSR2)
        _wait(lambda: _status(moved).get("pid") == g.pid, 5, "the guard's status moved to the instance's")
        took = time.monotonic() - t0
        time.sleep(0.5)
        n = _status(st_s)["messages"]
        time.sleep(0.5)  # (1 s since SIGUSR2: more than three of the joined standby's failover timeouts)
        assert _status(st_s)["messages"] == n < 100000 and took < 2, (n, took)  # nothing shipped after SIGUSR2
        said = serr.read_text()
        assert f"the primary at {addr} is a standby now (a primary beat it elsewhere): this standby keeps its books " \
               "and waits" in said and "promoted" not in said and sb.poll() is None, said[-1500:]
        assert _status(st_s)["state"] != "promoted" and _status(st_s)["epoch"] == 2  # the guard's, adopted
        g.send_signal(signal.SIGTERM)
        _, e = g.communicate(timeout=30)
        assert "SIGUSR2 (this host is standby now): the shipping stops" in e and "this host is standby now" in e, e
        assert _messages(gj) == []

        # the same before the shipping begins (the data plane's journal not there yet, fh run starting it): a probe
        # answered, and SIGUSR2 heeded, within the wait for the journal (--connect-timeout-ms 20000 here)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        addr = f"127.0.0.1:{_port()}"
        for f in (journal, gj, sj, st_g, st_s, moved):
            if os.path.exists(f):
                os.unlink(f)
        g = spawn("--role", "standby", "--guard", "--listen", addr, "--journal", gj, "--journal-mb", "64",
                  "--ship-journal", journal, "--name", f"wjg-{tag}", "--status", st_g, "--epoch", "2",
                  "--connect-timeout-ms", "20000")
        _wait(lambda: _status(st_g).get("state") == "guarding", 10, "the guard listening")
        standby(addr, sj, st_s)
        _wait(lambda: _status(st_s).get("connections", 0) >= 1, 10, "the standby joined")
        time.sleep(0.3)
        p = subprocess.run([PROG, "--role", "primary", "--probe", "--provider", "tcp", "--peer", addr, "--epoch", "1",
                            "--connect-timeout-ms", "3000"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and json.loads(p.stdout)["role"] == "primary", p.stderr
        t0 = time.monotonic()
        g.send_signal(signal.SIGUSR2)
        _wait(lambda: _status(moved).get("pid") == g.pid, 5, "the guard's status moved to the instance's")
        assert time.monotonic() - t0 < 2
        g.send_signal(signal.SIGTERM)
        _, e = g.communicate(timeout=30)
        assert "SIGUSR2 (this host is standby now): the shipping stops" in e and "is the data plane running" not in e, e
    finally:
        _kill_and_remove(procs, (journal, j2, gj, sj, sj2, st_g, st_s, st_s2, st_p, moved))


def test_two_primaries_meet_a_guard():
    """Two primaries (split brain): a primary's guard (fh-replicate --role standby --guard, as fh run runs it on a
    primary's listen address) says in its HELLO that this host is primary. A probe learns the peer's role and epoch
    and whether it beats this host (the newer epoch; on a tie the host with --wins-ties); a primary that does not beat
    the guard ships nothing and stops fenced (exit 4) with one line; one that does makes the guard yield (one line):
    from then on a standby that journals everything the new primary ships."""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag = uuid.uuid4().hex[:8]
    journal, gj, st_g, st_p = (f"/dev/shm/fh-g{tag}.journal", f"/dev/shm/fh-g{tag}.guard.journal",
                               f"/dev/shm/fh-g{tag}.guard.repl", f"/dev/shm/fh-gp{tag}.repl")
    addr = f"127.0.0.1:{_port()}"
    feed_prog = _feed_prog()
    procs: list[subprocess.Popen] = []

    def probe(epoch: int, *extra) -> dict:
        p = subprocess.run([PROG, "--role", "primary", "--probe", "--provider", "tcp", "--peer", addr, "--epoch",
                            str(epoch), "--connect-timeout-ms", "5000", *extra], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def primary(epoch: int) -> subprocess.Popen:
        p = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                              "--epoch", str(epoch), "--name", f"gp{tag}", "--status", st_p, "--heartbeat-ms", "20",
                              "--exit-when-done"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    try:
        assert subprocess.run([str(feed_prog), str(DAY), "--journal", journal, "--mb", "64"], capture_output=True,
                              timeout=60).returncode == 0
        g = subprocess.Popen([PROG, "--role", "standby", "--guard", "--provider", "tcp", "--listen", addr, "--journal",
                              gj, "--journal-mb", "64", "--status", st_g, "--epoch", "2", "--ring-mb", "4",
                              "--failover-timeout-ms", "200", "--promote-on-silence"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(g)
        _wait(lambda: _status(st_g).get("state") == "guarding", 10, "the guard listening")
        assert probe(1) == {"peer": addr, "role": "primary", "epoch": 2, "peer_wins": True}
        assert probe(3)["peer_wins"] is False
        assert probe(2)["peer_wins"] is True and probe(2, "--wins-ties")["peer_wins"] is False  # the tie rule
        old = primary(1)
        out, err = old.communicate(timeout=30)
        assert old.returncode == 4, err
        line = [l for l in err.splitlines() if "fenced" in l]
        assert len(line) == 1 and "is primary at epoch 2, this host at 1" in line[0] and "standby" in line[0], err
        fenced = _status(st_p)
        assert fenced["state"] == "fenced" and fenced["fenced_by"] == 2, fenced  # what fh run demotes this host to
        time.sleep(0.5)  # no promotion of a guard by silence: it is the primary
        s = _status(st_g)
        assert s["state"] == "guarding" and s["messages"] == 0 and s["epoch"] == 2, s
        new = primary(3)
        _wait(lambda: _status(st_g).get("messages", 0) == 100000, 60, "the yielded guard applying the new primary's")
        out, err = new.communicate(timeout=60)
        assert new.returncode == 0 and "the peer at" in err and "primary too, at epoch 2" in err, err
        s = _status(st_g)
        assert s["state"] in ("streaming", "peer-silent", "promoted") and s["epoch"] >= 3 and s["connections"] >= 5, s
        g.send_signal(signal.SIGTERM)
        o, e = g.communicate(timeout=30)
        assert len([l for l in e.splitlines() if "yields" in l]) == 1, e
        assert _messages(gj) == _messages(journal)
    finally:
        _kill_and_remove(procs, (journal, gj, st_g, st_p))


def test_the_tie_rule_has_one_winner_seen_from_either_host():
    """Both primaries at the same epoch: exactly one host wins the tie, whichever way each names the other (an address,
    a host name, or a wildcard listen address, which counts as the address that reaches the peer)."""
    from types import SimpleNamespace

    from handler import replication_run as RR

    def cfg(listen, peer):
        return SimpleNamespace(replication=SimpleNamespace(listen=listen, peer=peer))

    for a_listen, b_listen, a_name, b_name in ((("127.0.0.1", 7400), ("127.0.0.2", 7400), "127.0.0.1", "127.0.0.2"),
                                               (("127.0.0.1", 7401), ("127.0.0.1", 7400), "localhost", "127.0.0.1"),
                                               (("0.0.0.0", 7400), ("", 7401), "127.0.0.1", "localhost")):
        a = RR.wins_ties(cfg(a_listen, (b_name, b_listen[1])))
        b = RR.wins_ties(cfg(b_listen, (a_name, a_listen[1])))
        assert a != b, (a_listen, b_listen)
    assert not RR.wins_ties(cfg(None, ("127.0.0.1", 7400)))  # no listen address: cannot be asked, never wins


def _config(name, pcap, role, peer, listen, failover_timeout_ms: int = 1500, more: str = "") -> str:
    """fh.toml of one of two fh run instances on loopback, each the other's peer; `more`: further
    [replication] keys."""
    return run_config(name, pcap, exit_idle_ms=0, extra=f"""[replication]
role = "{role}"
provider = "tcp"
peer = "127.0.0.1:{peer}"
listen = "127.0.0.1:{listen}"
heartbeat_ms = 50
failover_timeout_ms = {failover_timeout_ms}
{more}""")


def _fh_json(*args) -> dict:
    p = fh(*args, "--json", check=False)
    assert p.stdout.strip(), p.stderr
    return json.loads(p.stdout)


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_the_old_primary_returns_as_standby_under_fh_run(tmp_path, monkeypatch):
    """Two fh run instances, a (configured primary) and b (configured standby), each with the other as peer.
    a's host dies (kill -9 of fh run, its data plane and fh-replicate); b promotes to epoch 2 and its fh run
    makes it the primary toward a. a restarted with the same configuration finds b shipping at epoch 2 and joins
    as standby (one line; role and epoch persisted; fh status and fh replicate status show them), and its books
    then equal b's. b's fh-replicate killed: fh run restarts it (counted) and a's standby takes it back without
    a restart (fh run starts it again within a few hundred ms, inside the failover timeout: a longer silence
    would be a failover, which a standby cannot tell from its primary's host dying)."""

    run_d = tmp_path / "run"
    monkeypatch.setenv("FH_RUN_DIR", str(run_d))
    pcap = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:6]
    a, b = f"fra{tag}", f"frb{tag}"
    pa, pb = _port(), _port()
    cfgs = {a: tmp_path / "a.toml", b: tmp_path / "b.toml"}
    cfgs[a].write_text(_config(a, pcap, "primary", pb, pa))
    cfgs[b].write_text(_config(b, pcap, "standby", pa, pb))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    errs = {a: tmp_path / "a.err", b: tmp_path / "b.err", a + "2": tmp_path / "a2.err"}
    procs: list[subprocess.Popen] = []

    def run(n: str, log: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "handler", "run", "--config", str(cfgs[n]), "--keep-segment",
                              "--json"], stdout=subprocess.PIPE, stderr=open(errs[log], "w"), text=True, env=env)
        procs.append(p)
        return p

    messages = _messages_published

    from handler import replication_run as RR
    from handler import segments

    try:
        rb = run(b, b)
        _wait(lambda: _status(b).get("state") == "connecting", 30, "b's standby listening")
        ra = run(a, a)
        _wait(lambda: _status(b).get("messages", 0) == 40000 and messages(b) == 40000, 60,
              lambda: f"b following a: {errs[a].read_text()[-500:]}")
        first = R.read_status(a)
        assert first["role"] == "primary" and first["epoch"] == 1
        assert RR.read_state(a, run_d)["role"] == "primary" and "nothing" not in errs[a].read_text()
        dp_a = _fh_json("status", "--name", a)["dataplane_pid"]
        for pid in (first["pid"], dp_a, ra.pid):  # a's host dies
            os.kill(pid, signal.SIGKILL)
        ra.wait()
        _wait(lambda: not R.pid_alive(dp_a) and not R.pid_alive(first["pid"]), 30, "a's processes gone")
        _wait(lambda: (RR.read_state(b, run_d) or {}).get("role") == "primary"
              and _status(b).get("role") == "primary", 30,
              lambda: f"b promoted and shipping: {errs[b].read_text()[-800:]}")
        st_b = RR.read_state(b, run_d)
        assert st_b["epoch"] == 2 and "promoted" in st_b["why"]
        assert "promoted to primary at epoch 2" in errs[b].read_text()

        ra2 = run(a, a + "2")  # the old primary, its configuration still saying primary
        _wait(lambda: (RR.read_state(a, run_d) or {}).get("role") == "standby", 30,
              lambda: f"a joining as standby: {errs[a + '2'].read_text()[-800:]}")
        _wait(lambda: messages(a) == 40000, 60, f"a's books from b: {errs[a + '2'].read_text()[-800:]}")
        line = [l for l in errs[a + "2"].read_text().splitlines() if "joining as standby" in l]
        assert len(line) == 1 and "epoch 2" in line[0] and "newer than this host's 1" in line[0], line
        assert RR.read_state(a, run_d)["epoch"] == 2
        assert replay.segment_books(f"/dev/shm/fh-{a}") == replay.segment_books(f"/dev/shm/fh-{b}")
        sa = _fh_json("status", "--name", a)
        assert sa["state"] == "running" and sa["replication"]["role"] == "standby" and \
            sa["replication"]["epoch"] == 2, sa["replication"]
        assert "replication standby at epoch 2" in fh("status", "--name", a, check=False).stdout
        ra_st = _fh_json("replicate", "status", "--name", a)
        assert ra_st["role"] == "standby" and ra_st["epoch"] == 2 and ra_st["state"] == "streaming", ra_st
        assert _fh_json("replicate", "status", "--name", b)["role"] == "primary"

        # b's fh-replicate dies: fh run starts it again; a's standby takes it back, without a restart
        os.kill(R.read_status(b)["pid"], signal.SIGKILL)
        _wait(lambda: (_fh_json("status", "--name", b)["replication"].get("supervised") or {}).get("restarts") == 1,
              30, f"b's fh-replicate restarted: {errs[b].read_text()[-500:]}")
        _wait(lambda: _status(a).get("connections") == 2 and _status(a).get("state") == "streaming", 30,
              lambda: f"a's standby reconnected: {errs[a + '2'].read_text()[-500:]}")
        assert ra2.poll() is None and _status(a)["refused_epoch"] == 0
        assert "exited with status -9" in errs[b].read_text()

        # a's standby fh-replicate dies: fh run starts it again on a new journal at the same path, which resumes
        # after the old one's last message; a's data plane follows the new journal, applying nothing twice
        os.kill(R.read_status(a)["pid"], signal.SIGKILL)
        _wait(lambda: (_fh_json("status", "--name", a)["replication"].get("supervised") or {}).get("restarts") == 1,
              30, f"a's fh-replicate restarted: {errs[a + '2'].read_text()[-500:]}")
        _wait(lambda: _status(a).get("state") == "streaming" and "was recreated" in errs[a + "2"].read_text(), 30,
              lambda: f"a's standby back: {errs[a + '2'].read_text()[-800:]}")
        assert "ended at session" in errs[a + "2"].read_text() and _status(a)["messages"] == 0  # nothing again
        assert messages(a) == 40000 and ra2.poll() is None
        for p in (ra2, rb):
            p.send_signal(signal.SIGTERM)
        outs = {}
        for n, p in ((a, ra2), (b, rb)):
            outs[n] = p.communicate(timeout=60)[0]
            assert p.returncode == 0, errs
        sb = json.loads(outs[a])["standby"]
        assert sb["rejoins"] == 1 and sb["skipped"] == 0 and sb["messages"] == 40000 and not sb["promoted"], sb
        assert replay.segment_books(f"/dev/shm/fh-{a}") == replay.segment_books(f"/dev/shm/fh-{b}")
    finally:
        stop_all(procs, 30)  # fh run stops its data plane and fh-replicate on SIGTERM; killed, it would leave them
        for n in (a, b):
            segments.remove(f"/dev/shm/fh-{n}")
            for f in (f"/dev/shm/fh-{n}.journal", f"/dev/shm/fh-{n}.standby.journal", R.status_path(n)):
                if os.path.exists(f):
                    os.unlink(f)


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_standby_without_a_segment_takes_the_late_join_snapshot(tmp_path):
    """The standby host as fh run sets it up (fh-replicate journal only, its data plane following that journal)
    joins after the day: the primary ships a mid-day snapshot, then its journal. fh-replicate checks the snapshot
    whole, leaves it beside its journal and journals a snapshot record with what follows it; the data plane loads
    it in place of everything before, applies the rest, and holds the primary's books (then, promoted, every
    datagram it held back is covered: nothing applied twice)."""
    AB = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:8]
    seg_p, journal = f"/dev/shm/fh-rlp-{tag}", f"/dev/shm/fh-rlp-{tag}.journal"
    seg_s, sj, st_s = f"/dev/shm/fh-rls-{tag}", f"/dev/shm/fh-rls-{tag}.standby.journal", f"/dev/shm/fh-rls-{tag}.repl"
    addr = f"127.0.0.1:{_port()}"
    lines = replay.pcap_lines(AB)
    procs, dp = [], None
    try:
        process.run_dataplane(replay.eal_args(f"rlp-{tag}", f"net_pcap0,rx_pcap={AB}"), seg_p, lines, events=1 << 18,
                              timeout=120, extra=["--journal", journal, "--journal-mb", "16"])
        d = tmp_path / "rec"
        fh("record", "--journal", journal, "--dir", d, "--snapshot-every", "15000", "--snapshot-keep", "10")
        snap = sorted((d / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)[0]
        sb = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal", sj,
                               "--journal-mb", "16", "--name", f"rls-{tag}", "--status", st_s, "--ring-mb", "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(sb)
        _wait(lambda: _status(st_s).get("state") == "connecting", 10, "the standby listening")
        dp = process.Dataplane(process.dataplane_cmd(replay.eal_args(f"rls-{tag}", f"net_pcap0,rx_pcap={AB}"), seg_s,
                                                     lines, events=1 << 18, extra=["--standby", sj]))
        dp.wait_running()
        pr = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                               "--name", f"rlp-{tag}", "--status", f"{seg_p}.repl", "--exit-when-done",
                               "--snapshot", str(snap)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(pr)
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        want = replay.segment_books(seg_p)
        _wait(lambda: replay.segment_books(seg_s) == want, 30, lambda: f"the standby's books: {dp.err[-5:]}")
        assert not os.path.exists(sj + ".snapshot")  # loaded, then removed
        dp.p.send_signal(signal.SIGUSR1)
        stats = dp.wait(60)
        s = stats["standby"]
        assert s["snapshots"] == 1 and 0 < s["messages"] < 40000 and s["holes"] == 0, s
        assert s["promoted"] and s["resumed_seq"] == 40001 and stats["messages_applied"] == 0 and \
            s["replay_applied"] == 0, stats
        assert any("loaded the primary's snapshot" in l for l in dp.err)
        assert replay.segment_books(seg_s) == want
        sb.send_signal(signal.SIGTERM)
        o, e = sb.communicate(timeout=30)
        assert "journaled for the data plane" in e and json.loads(o.splitlines()[-1])["snapshot_orders"] > 0, e
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if dp is not None:
            dp.close()
        for seg in (seg_p, seg_s):
            process.remove_segment(seg)
        for f in (journal, journal + ".record", sj, sj + ".snapshot", st_s, f"{seg_p}.repl"):
            if os.path.exists(f):
                os.unlink(f)


class _Hosts:
    """Two fh run instances a and b on loopback, each the other's peer (tcp provider); the run directory, their
    logs, and what the tests read of them."""

    def __init__(self, tmp_path, monkeypatch, roles=("primary", "standby")):
        self.tmp = tmp_path
        self.run_d = tmp_path / "run"
        self.run_d.mkdir()
        monkeypatch.setenv("FH_RUN_DIR", str(self.run_d))
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"fha{tag}", f"fhb{tag}"
        self.port = {self.a: _port(), self.b: _port()}
        self.cfg = {}
        for n, o, role in ((self.a, self.b, roles[0]), (self.b, self.a, roles[1])):
            self.cfg[n] = tmp_path / f"{n}.toml"
            self.cfg[n].write_text(_config(n, ROOT / "pcaps" / "synth-ab-40k.pcap", role, self.port[o],
                                           self.port[n]))
        self.procs: dict[str, subprocess.Popen] = {}
        self.errs: dict[str, object] = {}
        self.names = [self.a, self.b]

    def third(self, role: str, peer: str) -> str:
        """A third instance c, configured `role`, its peer instance `peer` (a or b), listening on a port of its own;
        its name."""
        c = f"fhc{self.a[3:]}"
        self.port[c] = _port()
        self.cfg[c] = self.tmp / f"{c}.toml"
        self.cfg[c].write_text(_config(c, ROOT / "pcaps" / "synth-ab-40k.pcap", role, self.port[peer], self.port[c]))
        self.names.append(c)
        return c

    def a_joins_b(self) -> tuple:
        """fh run of b (primary, its guard on its listen address) until its day is replayed, then of a (configured
        primary with no listen address: a standby by connecting to b, whose guard ships b's journal to it) until a's
        books equal b's; (a's books, a's fh replicate status)."""
        from handler import replication_run as RR

        a, b = self.a, self.b
        self.run(b)
        _wait(lambda: self.messages(b) == 40000 and _status(RR.guard_status_of(config_of(self.cfg[b]))).get("state") ==
              "guarding", 30, lambda: f"b's guard: {self.err(b)[-800:]}")
        self.run(a)
        _wait(lambda: self.messages(a) == 40000 and self.books(a) == self.books(b), 60,
              lambda: f"a's books from b's guard: {self.err(a)[-800:]} {self.err(b)[-800:]}")
        ra = _fh_json("replicate", "status", "--name", a)
        assert ra["role"] == "standby" and ra["state"] == "streaming" and ra["epoch"] == 1, (ra, self.err(a)[-2500:])
        return self.books(a), ra

    def run(self, n: str) -> subprocess.Popen:
        self.errs[n] = self.tmp / f"{n}.{len(self.errs)}.err"
        p = subprocess.Popen([sys.executable, "-m", "handler", "run", "--config", str(self.cfg[n]), "--keep-segment",
                              "--json"], stdout=subprocess.PIPE, stderr=open(self.errs[n], "w"), text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs[n] = p
        return p

    def err(self, n: str) -> str:
        return self.errs[n].read_text()

    def standby_then_primary(self) -> None:
        """fh run of b (the standby) until it listens, then of a (the primary), until b has the whole day."""
        a, b = self.a, self.b
        self.run(b)
        _wait(lambda: _status(b).get("state") == "connecting", 30, "b's standby listening")
        self.run(a)
        _wait(lambda: _status(b).get("messages", 0) == 40000 and self.messages(b) == 40000, 60,
              lambda: f"b following a: {self.err(a)[-500:]}")

    def messages(self, n: str) -> int:
        return _messages_published(n)

    def state(self, n: str) -> dict:
        from handler import replication_run as RR

        return RR.read_state(n, self.run_d) or {}

    def books(self, n: str):
        return replay.segment_books(f"/dev/shm/fh-{n}")

    def stop(self) -> dict:
        """SIGTERM to both; their final statistics (fh run --json)."""
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        out = {}
        for n, p in self.procs.items():
            o = p.communicate(timeout=60)[0]
            assert p.returncode == 0, self.err(n)[-1500:]
            out[n] = json.loads(o)
        return out

    def close(self) -> None:
        from handler import replication_run as RR
        from handler import segments

        for p in self.procs.values():  # fh run stops its data plane and fh-replicate on SIGTERM
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        for n in self.names:
            segments.remove(f"/dev/shm/fh-{n}")
            for f in (f"/dev/shm/fh-{n}.journal", f"/dev/shm/fh-{n}.standby.journal", R.status_path(n),
                      RR.guard_status_of(config_of(self.cfg[n]))):
                if os.path.exists(f):
                    os.unlink(f)


def _trio(tmp_path, monkeypatch) -> tuple:
    """Three fh run instances (none started): a configured primary without a listen address (its peer b), b
    configured primary (its peer a), c configured primary (its peer b); (the hosts, a, b, c)."""
    h = _Hosts(tmp_path, monkeypatch, roles=("primary", "primary"))
    h.cfg[h.a].write_text("\n".join(l for l in h.cfg[h.a].read_text().splitlines() if not l.startswith("listen =")))
    return h, h.a, h.b, h.third("primary", h.b)


def config_of(path):
    from handler import config

    return config.load(str(path))


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
@pytest.mark.parametrize("epochs", [(1, 2), (1, 1)], ids=["newer-epoch", "tie"])
def test_both_hosts_restart_at_once_each_holding_primary(tmp_path, monkeypatch, epochs):
    """Both hosts' state files say primary (a crashed as primary at epoch 1 while b, promoted, held 2; or both at the
    same epoch) and both fh run start at once. Each guards its listen address and asks the peer: exactly one goes on
    as primary (the newer epoch; on a tie the lower listen address), the other joins as standby with one line saying
    why, before its data plane starts: it never applies its own lines, and its books then equal the primary's."""
    from handler import replication_run as RR

    h = _Hosts(tmp_path, monkeypatch, roles=("primary", "primary"))
    a, b = h.a, h.b
    for n, e in zip((a, b), epochs):
        RR.write_state(n, h.run_d, "primary", e, "held primary (written by the test)")
    if epochs[0] != epochs[1]:
        win, lose, why = b, a, "newer than this host's 1"
    else:
        win, lose = (a, b) if h.port[a] < h.port[b] else (b, a)
        why = "the tie goes to the lower listen address, the peer's"
    try:
        h.run(a), h.run(b)
        _wait(lambda: h.state(lose).get("role") == "standby", 30, lambda: f"{lose} standby: {h.err(lose)[-800:]}")
        _wait(lambda: h.messages(lose) == 40000 and h.messages(win) == 40000, 60,
              lambda: f"{lose}'s books from {win}: {h.err(lose)[-800:]} {h.err(win)[-800:]}")
        _wait(lambda: h.books(lose) == h.books(win), 30, "the standby's books equal the primary's")
        line = [l for l in h.err(lose).splitlines() if "joining as standby" in l]
        assert len(line) == 1 and f"primary at epoch {epochs[1] if win == b else epochs[0]}" in line[0] and \
            why in line[0], line
        assert h.state(win)["role"] == "primary" and h.state(win)["epoch"] == max(epochs)
        assert h.state(lose)["epoch"] == max(epochs)
        assert _fh_json("replicate", "status", "--name", win)["role"] == "primary"
        assert _fh_json("replicate", "status", "--name", lose)["role"] == "standby"
        assert "joining as standby" not in h.err(win) and "demoted" not in h.err(win) + h.err(lose)
        stats = h.stop()
        sb = stats[lose]["standby"]
        assert not sb["promoted"] and sb["messages"] == 40000 and stats[lose]["messages_applied"] == 0, sb
        assert "standby" not in stats[win] and stats[win]["messages_applied"] == 40000, stats[win]
    finally:
        h.close()


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_running_primary_meets_a_restarted_peer_of_a_newer_epoch(tmp_path, monkeypatch):
    """The restarts not at once: a (state: primary at epoch 1) runs alone and takes the day; b (state: primary at
    epoch 2, promoted while a was away) starts later, finds a's guard answering as primary at epoch 1 and goes on
    as primary; a's own fh-replicate, answered by b's guard, is fenced, and a is demoted: its data plane restarted
    as standby, its books then b's."""
    from handler import replication_run as RR

    h = _Hosts(tmp_path, monkeypatch, roles=("primary", "primary"))
    a, b = h.a, h.b
    RR.write_state(a, h.run_d, "primary", 1, "held primary (written by the test)")
    RR.write_state(b, h.run_d, "primary", 2, "promoted (written by the test)")
    try:
        h.run(a)
        _wait(lambda: h.messages(a) == 40000 and _status(a).get("state") == "connecting", 60,
              lambda: f"a alone: {h.err(a)[-800:]}")
        dp_a = _fh_json("status", "--name", a)["dataplane_pid"]
        h.run(b)
        _wait(lambda: h.state(a).get("role") == "standby", 30, lambda: f"a demoted: {h.err(a)[-1200:]}")
        _wait(lambda: _fh_json("status", "--name", a).get("dataplane_pid") not in (None, dp_a), 30, "restarted")
        _wait(lambda: h.messages(a) == 40000 and h.messages(b) == 40000 and h.books(a) == h.books(b), 60,
              lambda: f"a's books from b: {h.err(a)[-800:]} {h.err(b)[-800:]}")
        assert len([l for l in h.err(a).splitlines() if "demoted to standby" in l]) == 1, h.err(a)[-1500:]
        # b learns that a runs as primary either from its probe (within its 1.5 s) or not at all: on a starved host
        # the probe may answer late, and a's fh-replicate, fenced by b's guard at HELLO, demotes a either way
        probe = [l for l in h.err(b).splitlines() if "is primary too" in l]
        assert all("at epoch 1, older than this host's 2" in l for l in probe), probe
        assert "demoted" not in h.err(b) and "joining as standby" not in h.err(b), h.err(b)[-1500:]
        assert h.state(b)["role"] == "primary"
        _wait(lambda: h.state(a)["epoch"] == 2, 10, "a adopting b's epoch")  # (fenced: learnt from b's heartbeat)
        stats = h.stop()
        assert stats[a]["messages_applied"] == 0 and stats[a]["standby"]["messages"] == 40000
        assert stats[b]["messages_applied"] == 40000 and "standby" not in stats[b]
    finally:
        h.close()


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_primary_cut_off_is_demoted_when_its_peer_was_promoted(tmp_path, monkeypatch):
    """a primary, b its standby. a's replication is cut off (its fh-replicate stopped: no heartbeat, its data plane
    still publishing): b promotes to epoch 2 and ships to a's listen address, where a's guard yields; the cut
    healed, a's own fh-replicate meets b's guard and is fenced. a is demoted in one line: its data plane stops
    cleanly with every book marked stale (a reader still mapping the old segment finds them whole and stale, each
    with its stale event) and starts again as standby; its books are rebuilt from b's journal and equal b's, and its
    new segment says they are current (a standby's header); fh status shows it."""
    from handler import shm

    h = _Hosts(tmp_path, monkeypatch)
    a, b = h.a, h.b
    old = None
    try:
        h.standby_then_primary()
        dp_a = _fh_json("status", "--name", a)["dataplane_pid"]
        old = shm.Reader(f"/dev/shm/fh-{a}")  # a's segment as a primary: kept mapped across the demotion
        before = {loc: old.book(int(loc)) for loc in old.locates()}
        assert before and all(bk["status"] == "live" for bk in before.values())
        head = old.head
        rep_a = R.read_status(a)["pid"]
        os.kill(rep_a, signal.SIGSTOP)  # the cut: a's replication silent, its data plane goes on
        try:
            _wait(lambda: h.state(b).get("role") == "primary" and _status(b).get("role") == "primary", 30,
                  lambda: f"b promoted: {h.err(b)[-800:]}")
        finally:
            os.kill(rep_a, signal.SIGCONT)  # healed
        _wait(lambda: h.state(a).get("role") == "standby", 30, lambda: f"a demoted: {h.err(a)[-1200:]}")
        line = [l for l in h.err(a).splitlines() if "demoted to standby" in l]
        assert len(line) == 1 and "epoch 2" in line[0], h.err(a)[-1500:]
        _wait(lambda: _fh_json("status", "--name", a).get("dataplane_pid") not in (None, dp_a), 30, "restarted")
        assert old.writer_status().state == "stopped" and "book(s) marked stale" in h.err(a), h.err(a)[-1500:]
        after = {loc: old.book(int(loc)) for loc in before}
        assert all(bk["status"] == "stale" for bk in after.values())
        assert {loc: (bk["bids"], bk["asks"]) for loc, bk in after.items()} == \
            {loc: (bk["bids"], bk["asks"]) for loc, bk in before.items()}  # whole: the levels as they were
        notices = [ev for ev in old.events(head + 1) if ev["type"] == "stale"]
        assert sorted(ev["locate"] for ev in notices) == sorted(int(loc) for loc in before), notices[:5]
        _wait(lambda: h.messages(a) == 40000 and h.books(a) == h.books(b), 60,
              lambda: f"a's books from b: {h.err(a)[-800:]}")
        st = h.state(a)
        assert st["epoch"] == 2 and "demoted from primary at epoch 1" in st["why"], st
        sa = _fh_json("status", "--name", a)
        assert sa["state"] == "running" and sa["replication"]["role"] == "standby" and \
            sa["replication"]["supervised"]["demotions"] == 1, sa["replication"]
        assert "demoted 1x" in fh("status", "--name", a, check=False).stdout
        # the new segment is a standby's, current against a's own lines once b's journal covers them; the old one
        # was a primary's
        assert (sa["writer"]["standby"], sa["writer"]["behind_msgs"]) == ("current", 0), sa["writer"]
        assert old.standby() == (None, 0)
        ra = _fh_json("replicate", "status", "--name", a)
        assert ra["role"] == "standby" and ra["epoch"] == 2 and ra["state"] == "streaming", ra
        stats = h.stop()
        sb = stats[a]["standby"]
        assert not sb["promoted"] and sb["messages"] == 40000 and stats[a]["messages_applied"] == 0, sb
    finally:
        if old is not None:
            old.close()
        h.close()


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_standby_stopping_with_its_primary_is_not_promoted(tmp_path, monkeypatch):
    """Both hosts stopped at once, the standby's data plane slower to stop than the failover timeout (here held
    with SIGSTOP): its fh-replicate, hearing no primary, promotes meanwhile; fh run, stopping, does not take it: no
    primary fh-replicate started, the role persisted stays standby at epoch 1, said in one line. (Taken, the host
    came back the next morning as primary at epoch 2, seen in a CI run where the data plane's exit was slow.)"""
    from handler import replication_run as RR

    h = _Hosts(tmp_path, monkeypatch)
    a, b = h.a, h.b
    try:
        h.standby_then_primary()
        dp_b = _fh_json("status", "--name", b)["dataplane_pid"]
        os.kill(dp_b, signal.SIGSTOP)  # b's data plane: slow to stop
        try:
            h.procs[b].send_signal(signal.SIGTERM)
            time.sleep(0.3)  # b's fh run has the signal, forwarded to its (stopped) data plane
            h.procs[a].send_signal(signal.SIGTERM)  # the primary stops: no more heartbeats for b
            assert h.procs[a].wait(60) == 0, h.err(a)[-1500:]
            _wait(lambda: _status(b).get("state") == "promoted", 30, lambda: f"b's fh-replicate: {h.err(b)[-800:]}")
            time.sleep(0.5)  # fh run's supervision loop has seen it (it polls every 20 ms)
        finally:
            os.kill(dp_b, signal.SIGCONT)
        assert h.procs[b].wait(60) == 0, h.err(b)[-1500:]
        err = h.err(b)
        assert "promoted to primary" not in err and "while this instance was stopping: not taken; this host stays " \
            "standby at epoch 1" in err, err[-1500:]
        st = RR.read_state(b, h.run_d)
        assert st["role"] == "standby" and st["epoch"] == 1, st
    finally:
        h.close()


def _record_snapshots(journal, rec) -> None:
    """fh record's snapshots of the day in `journal` (every 2,000 messages) into rec/snapshots, less those past
    sequence 99,500: not the day's end, so that the journal after the newest is shipped too."""
    fh("record", "--journal", journal, "--dir", rec, "--snapshot-every", "2000", "--snapshot-keep", "100", "--day",
       "20000101")
    for p in (rec / "snapshots").glob("*.snap"):
        if int(p.stem.rsplit("-", 1)[1]) > 99500:
            p.unlink()


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_fh_run_gives_a_lapped_standby_the_snapshot(tmp_path, monkeypatch):
    """a primary with a journal ring too small for the day ([journal] ring_mb = 1, lapped) and fh record's
    snapshots in [journal] dir; b, its standby, starts after the day: a's fh-replicate picks the newest snapshot the
    journal still follows, ships it, then the journal after it; b's data plane loads it and its books equal a's,
    with no hole."""
    day = ROOT / "pcaps" / "synth-ab-40k.pcap"
    tag = uuid.uuid4().hex[:6]
    rec = tmp_path / "rec"
    seg, jn = f"/dev/shm/fh-rsnap{tag}", f"/dev/shm/fh-rsnap{tag}.journal"
    try:  # the day's snapshots, as fh record wrote them (named for another day: fh run does not restart from them)
        process.run_dataplane(replay.eal_args(f"rsnap{tag}", f"net_pcap0,rx_pcap={day}"), seg, replay.pcap_lines(day),
                              events=1 << 18, timeout=120, extra=["--journal", jn, "--journal-mb", "16"])
        fh("record", "--journal", jn, "--dir", rec, "--snapshot-every", "3000", "--snapshot-keep", "20", "--day",
           "20000101")
    finally:
        process.remove_segment(seg)
        for f in (jn, jn + ".record"):
            if os.path.exists(f):
                os.unlink(f)
    for p in (rec / "snapshots").glob("*.snap"):  # the day's end is not in one: the journal after it is shipped too
        if int(p.stem.rsplit("-", 1)[1]) > 37000:
            p.unlink()
    newest = sorted((rec / "snapshots").glob("*.snap"))[-1]  # the 1 MiB ring below holds the day from about 33000
    assert len(list((rec / "snapshots").glob("*.snap"))) >= 10 and int(newest.stem.rsplit("-", 1)[1]) > 34000
    h = _Hosts(tmp_path, monkeypatch)
    a, b = h.a, h.b
    h.cfg[a].write_text(h.cfg[a].read_text() + f'[journal]\nring_mb = 1\ndir = "{rec}"\n')
    try:
        h.run(a)
        _wait(lambda: h.messages(a) == 40000, 60, lambda: f"a's day: {h.err(a)[-500:]}")
        r = J.JournalRing(f"/dev/shm/fh-{a}.journal")
        try:
            assert r.oldest() > 0, "the day fits the ring: not lapped"
        finally:
            r.close()
        h.run(b)
        _wait(lambda: h.messages(b) == 40000 and h.books(b) == h.books(a), 60,
              lambda: f"b's books: {h.err(a)[-800:]} {h.err(b)[-800:]}")
        picked = [l for l in h.err(a).splitlines() if "the newest in" in l]
        assert len(picked) == 1 and str(newest) in picked[0], \
            h.err(a)[-1500:]
        assert "loaded the primary's snapshot" in h.err(b)
        stats = h.stop()
        sb = stats[b]["standby"]
        after = 40001 - int(newest.stem.rsplit("-", 1)[1])  # the journal's messages after the snapshot
        assert sb["snapshots"] == 1 and sb["holes"] == 0 and sb["overruns"] == 0 and sb["messages"] == after, sb
    finally:
        h.close()


def test_a_standby_lapped_mid_stream_gets_the_snapshot_then_the_journal(tmp_path):
    """A standby that falls a whole journal ring behind while streaming (stopped: its primary, held by flow control,
    is lapped by the journal's writer): with --snapshot-dir (what fh run gives from [journal] dir), the primary ships
    the newest snapshot the journal follows, then the journal after it, instead of a hole; the standby's books then
    equal those of a standby that received the whole day, and nothing is stale."""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag = uuid.uuid4().hex[:8]
    feed_prog = _feed_prog()
    small, big = f"/dev/shm/fh-lap{tag}.journal", f"/dev/shm/fh-lapb{tag}.journal"
    rec = tmp_path / "rec"
    procs: list[subprocess.Popen] = []
    made = [small, big, big + ".record", f"/dev/shm/fh-lapp{tag}.repl"]

    def standby(name: str, ring_mb: int) -> tuple[subprocess.Popen, str, str]:
        addr, seg = f"127.0.0.1:{_port()}", f"/dev/shm/fh-{name}"
        st = f"{seg}.repl"
        made.extend([seg, wake_path(seg), f"{seg}.journal", st, seg + ".snapshot"])
        p = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", addr, "--journal",
                              f"{seg}.journal", "--journal-mb", "16", "--segment", seg, "--name", name, "--status", st,
                              "--ring-mb", str(ring_mb), "--max-orders", "1000000", "--max-levels", "400000",
                              "--exit-when-done"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        _wait(lambda: _status(st).get("state") == "connecting", 10, "a standby listening")
        return p, addr, seg

    def primary(journal: str, addr: str, *extra) -> subprocess.Popen:
        p = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", addr, "--journal", journal,
                              "--name", f"lapp{tag}", "--status", f"/dev/shm/fh-lapp{tag}.repl", "--exit-when-done",
                              "--max-outstanding", "16", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        procs.append(p)
        return p

    try:
        # the reference: the whole day, shipped from a journal that holds it; fh record's snapshots of it (the same
        # session and sequences as the day written again below)
        assert subprocess.run([str(feed_prog), str(DAY), "--journal", big, "--mb", "64"], capture_output=True,
                              timeout=60).returncode == 0
        ref, raddr, rseg = standby(f"lapr{tag}", 4)
        out, err = primary(big, raddr).communicate(timeout=60)
        assert ref.wait(60) == 0, err
        want = replay.segment_books(rseg)
        _record_snapshots(big, rec)
        newest = sorted((rec / "snapshots").glob("*.snap"))[-1]
        # (the 1 MiB ring below holds the day's last lap, from sequence 97,633)
        assert int(newest.stem.rsplit("-", 1)[1]) > 97700, newest
        # the day again, paced, into a 1 MiB ring, shipped to a standby with a 1 MiB ring
        sb, addr, seg = standby(f"laps{tag}", 1)
        feed = subprocess.Popen([str(feed_prog), str(DAY), "--journal", small, "--mb", "1", "--rate", "40000",
                                 "--delay-ms", "1000"], stdout=subprocess.PIPE, text=True)
        procs.append(feed)
        pr = primary(small, addr, "--snapshot-dir", str(rec / "snapshots"))
        _wait(lambda: _status(f"/dev/shm/fh-laps{tag}.repl").get("messages", 0) >= 10000, 60, "the standby following")
        os.kill(sb.pid, signal.SIGSTOP)  # it falls behind: its primary, held by flow control, is lapped
        try:
            assert feed.wait(60) == 0
        finally:
            os.kill(sb.pid, signal.SIGCONT)
        out, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
        line = [l for l in err.splitlines() if "overrun" in l]
        assert len(line) == 1 and f"shipping snapshot {newest}" in line[0] and "books stale" not in err, err
        o, e = sb.communicate(timeout=60)
        assert sb.returncode == 0, e
        fig = json.loads(o.splitlines()[-1])
        assert fig["holes"] == 0 and fig["snapshot_orders"] > 0 and fig["skipped_after_snapshot"] > 0, fig
        got = replay.segment_books(seg)
        assert got == want and got, (replay.diff_books(got, want), err)
        from handler.shm import STALE, Reader

        with Reader(seg) as r:  # nothing stale: no hole was shipped
            assert not any(r.books[b["locate"]]["status"] == STALE for b in got)
    finally:
        _kill_and_remove(procs, made)


def _kill_and_remove(procs, made) -> None:
    """A test's end: its processes still running killed (and reaped), the files it made removed."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for f in made:
        if os.path.exists(f):
            os.unlink(f)


def _oldest_seq(journal: str) -> int:
    """The sequence of the oldest MSGS record a journal ring still holds (0: none)."""
    r = J.JournalRing(journal)
    try:
        pos = r.oldest()
        while True:
            s, pos, rec = r.read(pos)
            if s == J.NONE:
                return 0
            if s == J.OK and rec.kind == J.MSGS and rec.seq:
                return rec.seq
    finally:
        r.close()


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_standby_restarted_after_its_point_is_lapped_gets_the_snapshot_under_fh_run(tmp_path, monkeypatch):
    """b under fh run as standby (its fh-replicate journal-only, its data plane following that journal). A primary
    fh-replicate (as fh run starts it: --snapshot-dir from [journal] dir) ships a paced day written into a 1 MiB
    journal. b's fh-replicate killed mid-day (kill -9): fh run starts it again, and it says in HELLO where its journal
    stood; by the time a primary connects again the journal has lapped that point, so the primary ships the newest of
    fh record's snapshots the journal follows, then the journal after it. b's data plane follows the new journal,
    loads the snapshot in place of the books it had, and ends with the books of a standby that had the whole day:
    nothing stale, no hole. (Without --snapshot-dir the same run ends stale: "messages lost, books stale".)"""
    import handler._native  # noqa: F401  (rebuilds an editable install, programs included)

    tag = uuid.uuid4().hex[:8]
    feed_prog = _feed_prog()
    small, big = f"/dev/shm/fh-rsl{tag}.journal", f"/dev/shm/fh-rsb{tag}.journal"
    rseg, rst = f"/dev/shm/fh-rsr{tag}", f"/dev/shm/fh-rsr{tag}.repl"
    pst = f"/dev/shm/fh-rsp{tag}.repl"
    made = [small, big, big + ".record", rseg, wake_path(rseg), rseg + ".journal", rst, pst]
    rec = tmp_path / "rec"
    procs: list[subprocess.Popen] = []

    def primary(journal: str, port: int, status: str, *extra, err=subprocess.PIPE) -> subprocess.Popen:
        p = subprocess.Popen([PROG, "--role", "primary", "--provider", "tcp", "--peer", f"127.0.0.1:{port}",
                              "--journal", journal, "--name", f"rsp{tag}", "--status", status, "--heartbeat-ms", "50",
                              *extra], stdout=subprocess.PIPE, stderr=err, text=True)
        procs.append(p)
        return p

    h = _Hosts(tmp_path, monkeypatch)
    b = h.b
    try:
        # the reference: the whole day shipped to a standby with its own segment; fh record's snapshots of it
        assert subprocess.run([str(feed_prog), str(DAY), "--journal", big, "--mb", "64"], capture_output=True,
                              timeout=60).returncode == 0
        rport = _port()
        ref = subprocess.Popen([PROG, "--role", "standby", "--provider", "tcp", "--listen", f"127.0.0.1:{rport}",
                                "--journal", rseg + ".journal", "--journal-mb", "16", "--segment", rseg, "--name",
                                f"rsr{tag}", "--status", rst, "--max-orders", "1000000", "--max-levels", "400000",
                                "--exit-when-done"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(ref)
        _wait(lambda: _status(rst).get("state") == "connecting", 10, "the reference standby listening")
        out, err = primary(big, rport, pst, "--exit-when-done").communicate(timeout=60)
        assert ref.wait(60) == 0, err
        want = replay.segment_books(rseg)
        _record_snapshots(big, rec)
        # b: a standby under fh run, then the day again, paced, into a 1 MiB ring, shipped to it
        h.run(b)
        _wait(lambda: _status(b).get("state") == "connecting", 30, lambda: f"b listening: {h.err(b)[-800:]}")
        feed = subprocess.Popen([str(feed_prog), str(DAY), "--journal", small, "--mb", "1", "--rate", "30000",
                                 "--delay-ms", "1000"], stdout=subprocess.PIPE, text=True)
        procs.append(feed)
        p1 = primary(small, h.port[b], pst)
        _wait(lambda: _status(b).get("messages", 0) >= 10000, 60, lambda: f"b following: {h.err(b)[-800:]}")
        old = R.read_status(b)["pid"]
        os.kill(old, signal.SIGKILL)  # b's fh-replicate: fh run starts it again
        assert p1.wait(30) == 3  # the standby closed the connection (fh run would start the primary's again)
        _wait(lambda: _status(b).get("pid", old) != old and _status(b).get("state") == "connecting", 30,
              lambda: f"b's fh-replicate restarted: {h.err(b)[-800:]}")
        _wait(lambda: "ended at session" in h.err(b), 10, lambda: h.err(b)[-800:])
        line = [l for l in h.err(b).splitlines() if "ended at session" in l][-1]
        point = int(line.split(" sequence ")[1].split(":")[0])
        assert 10000 <= point < 90000, line
        _wait(lambda: _oldest_seq(small) > point + 1, 30, "the journal lapping b's point")
        # the primary's fh-replicate again (as fh run starts it), heartbeating until the end: a silent primary would
        # be a failover (b promoting and taking its own lines)
        p2err = tmp_path / "p2.err"
        p2 = primary(small, h.port[b], pst, "--snapshot-dir", str(rec / "snapshots"), err=open(p2err, "w"))
        assert feed.wait(60) == 0
        _wait(lambda: h.books(b) == want, 30,
              lambda: f"b's books: {replay.diff_books(h.books(b), want)} {p2err.read_text()[-800:]} {h.err(b)[-1500:]}")
        err = p2err.read_text()
        said = [l for l in err.splitlines() if "no longer reaches back to the standby's point" in l]
        assert said and "then the journal after it" in said[0] and "books stale" not in err and p2.poll() is None, err
        from handler.shm import STALE, Reader

        with Reader(f"/dev/shm/fh-{b}") as r:  # no hole was shipped: nothing stale
            assert not any(r.books[x["locate"]]["status"] == STALE for x in want)
        sb = h.stop()[b]["standby"]
        assert sb["snapshots"] == 1 and sb["holes"] == 0 and sb["rejoins"] >= 1 and not sb["promoted"], sb
    finally:
        h.close()
        _kill_and_remove(procs, made)


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_guard_yields_mid_shipment_to_a_newer_primary(tmp_path, monkeypatch):
    """Three fh run instances. b is primary, with its guard on its listen address; a, configured primary too but
    with no listen address, finds b primary at its own epoch when it starts (a tie, which a host without listen never
    wins) and joins as standby by connecting there: b's guard ships b's journal to it (a's books equal b's). Then c, a primary
    at a newer epoch (its persisted state: primary at epoch 5) whose peer is b, starts: its probe finds b at epoch 1,
    older, and its fh-replicate ships to b's listen address, where b's guard, mid-shipment to a, yields. So b is
    demoted (its data plane restarted as standby, its books rebuilt from c's journal, equal to c's); a is told its
    primary moved on (REFUSED_YIELDED) before its connection closes, adopts epoch 5 and waits, connecting again,
    keeping its books as they were (nothing applied twice, none of its own lines taken), and does not promote on
    the silence that follows (before, it promoted after its failover timeout: a second primary, at epoch 2, while c
    was primary at 5; and the yielded guard, its failover clock still at its last heartbeat, promoted at once);
    c stays primary at epoch 5. Every instance then stops cleanly."""
    from handler import replication_run as RR

    h, a, b, c = _trio(tmp_path, monkeypatch)
    RR.write_state(c, h.run_d, "primary", 5, "test: a primary of a newer epoch")
    try:
        books_a, ra = h.a_joins_b()
        conns = ra["connections"]
        dp_b = _fh_json("status", "--name", b)["dataplane_pid"]
        h.run(c)
        _wait(lambda: h.state(b).get("role") == "standby" and h.state(b).get("epoch") == 5, 60,
              lambda: f"b demoted: {h.err(b)[-1500:]} c: {h.err(c)[-800:]}")
        line = [l for l in h.err(b).splitlines() if "demoted to standby" in l]
        assert len(line) == 1 and "epoch 5" in line[0], h.err(b)[-1500:]
        # b's old data plane had the same day's books: wait for the standby one (a SIGTERM before it started would
        # stop b with the old one's statistics, which have no "standby")
        _wait(lambda: _fh_json("status", "--name", b).get("dataplane_pid") not in (None, dp_b), 30,
              lambda: f"b's data plane restarted as standby: {h.err(b)[-800:]}")
        _wait(lambda: h.messages(b) == 40000 and h.books(b) == h.books(c), 60,
              lambda: f"b's books from c: {h.err(b)[-800:]} {h.err(c)[-800:]}")
        _wait(lambda: "yields to a primary at epoch 5" in h.err(a), 30, lambda: f"a told: {h.err(a)[-1500:]}")
        time.sleep(2.5)  # beyond a's failover timeout (1.5 s): a standby whose primary moved on does not promote
        assert "promoted (" not in h.err(a) and h.state(a).get("role") == "standby", h.err(a)[-1500:]
        ra = _status(a)
        assert ra["role"] == "standby" and ra["epoch"] == 5 and ra["connections"] == conns, ra  # waiting, the epoch adopted
        assert h.books(a) == books_a and h.messages(a) == 40000  # kept whole, nothing applied twice
        assert h.state(c) == {**h.state(c), "role": "primary", "epoch": 5}, h.state(c)
        assert "demoted" not in h.err(c) and "demoted" not in h.err(a), (h.err(c)[-800:], h.err(a)[-800:])
        stats = h.stop()
        assert not stats[a]["standby"]["promoted"] and stats[a]["messages_applied"] == 0, stats[a]["standby"]
        assert not stats[b]["standby"]["promoted"] and stats[b]["standby"]["messages"] == 40000, stats[b]["standby"]
    finally:
        h.close()


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_host_demoted_mid_shipment_tells_the_standby_that_joined_it(tmp_path, monkeypatch):
    """Three fh run instances. b is primary, its guard shipping b's journal to a (configured primary with no listen
    address: a standby by connecting, as above). b's peer is c, where nothing listens at first. Then c starts, a
    primary at a newer epoch (its state: primary at 5) whose own peer answers nothing: b's fh-replicate reaches c's
    guard and is fenced there, so fh run demotes b, which stops its guard mid-shipment to a with SIGUSR2. The guard
    tells a that its primary moved on: a keeps its books (nothing applied twice, none of its own lines taken), waits,
    and does not promote on the silence that follows (before, it promoted after its failover timeout: a second
    primary, at epoch 2, beside c at 5). c stays primary at 5. Every instance then stops cleanly."""
    from handler import replication_run as RR

    h, a, b, c = _trio(tmp_path, monkeypatch)
    nowhere = _port()  # c's peer: nothing there (so c never connects to b's guard: no yield, only the fence)
    for n, was, now in ((c, h.port[b], nowhere), (b, h.port[a], h.port[c])):
        h.cfg[n].write_text(h.cfg[n].read_text().replace(f'peer = "127.0.0.1:{was}"', f'peer = "127.0.0.1:{now}"'))
    assert config_of(h.cfg[b]).replication.peer == ("127.0.0.1", h.port[c])
    RR.write_state(c, h.run_d, "primary", 5, "test: a primary of a newer epoch")
    try:
        books_a, ra = h.a_joins_b()
        h.run(c)
        _wait(lambda: h.state(b).get("role") == "standby", 60,
              lambda: f"b demoted: {h.err(b)[-1500:]} c: {h.err(c)[-800:]}")
        line = [l for l in h.err(b).splitlines() if "demoted to standby" in l]
        assert len(line) == 1 and "was fenced: the peer at" in line[0] and "is at epoch 5, newer than this host's 1" \
            in line[0], h.err(b)[-1500:]
        assert h.state(b)["epoch"] == 5, h.state(b)  # the fencing epoch (fh-replicate's status: fenced_by)
        assert "is primary at epoch 5, this host at 1" in h.err(b) and "guard: SIGUSR2" in h.err(b), h.err(b)[-1500:]
        _wait(lambda: "is a standby now (a primary beat it elsewhere)" in h.err(a), 30,
              lambda: f"a told: {h.err(a)[-1500:]} b: {h.err(b)[-1500:]}")
        time.sleep(2.5)  # beyond a's failover timeout (1.5 s): a standby whose primary moved on does not promote
        assert "promoted (" not in h.err(a) and h.state(a).get("role") == "standby", h.err(a)[-1500:]
        ra = _status(a)
        assert ra["role"] == "standby" and ra["state"] != "promoted" and ra["epoch"] == 1, ra
        assert h.books(a) == books_a and h.messages(a) == 40000  # kept whole, nothing applied twice
        assert h.state(c) == {**h.state(c), "role": "primary", "epoch": 5}, h.state(c)
        assert "demoted to standby" not in h.err(c) + h.err(a), (h.err(c)[-800:], h.err(a)[-800:])
        stats = h.stop()
        assert not stats[a]["standby"]["promoted"] and stats[a]["messages_applied"] == 0, stats[a]["standby"]
    finally:
        h.close()


@pytest.mark.skipif(not HAVE_DP, reason="fh-dataplane not built (no DPDK)")
def test_a_primary_without_listen_probes_and_joins_as_standby_by_connecting(tmp_path, monkeypatch):
    """a configured primary with no listen address, b its standby. a's host dies; b promotes to epoch 2 (its guard on
    its listen address, given its data plane's journal). a restarted with its configuration unchanged asks b first
    (the probe, as a host with listen does, without a guard of its own): b is primary at epoch 2, newer, so a is a
    standby before its data plane starts (never demoted: it never took its lines), and with no address to listen on,
    its standby fh-replicate connects to b, whose guard ships b's journal over that connection: a's books then equal
    b's, a applying none of its own lines. a restarted again (its state: standby) is a standby from the start,
    connecting likewise."""
    from handler import replication_run as RR

    h = _Hosts(tmp_path, monkeypatch)
    a, b = h.a, h.b
    h.cfg[a].write_text("\n".join(l for l in h.cfg[a].read_text().splitlines() if not l.startswith("listen =")))
    assert config_of(h.cfg[a]).replication.listen is None
    try:
        h.standby_then_primary()
        dp_a = _fh_json("status", "--name", a)["dataplane_pid"]
        for pid in (R.read_status(a)["pid"], dp_a, h.procs[a].pid):  # a's host dies
            os.kill(pid, signal.SIGKILL)
        h.procs[a].wait()
        _wait(lambda: not R.pid_alive(dp_a), 30, "a's data plane gone")
        _wait(lambda: h.state(b).get("role") == "primary" and h.state(b).get("epoch") == 2, 30,
              lambda: f"b promoted: {h.err(b)[-800:]}")
        h.run(a)  # its configuration still says primary, with no listen address
        _wait(lambda: h.state(a).get("role") == "standby", 60, lambda: f"a joining: {h.err(a)[-1500:]}")
        line = [l for l in h.err(a).splitlines() if "joining as standby" in l]
        assert len(line) == 1 and "is primary at epoch 2, newer than this host's 1" in line[0], h.err(a)[-1500:]
        assert "no listen address: asking the peer at" in h.err(a) and "demoted" not in h.err(a), h.err(a)[-1500:]
        _wait(lambda: h.messages(a) == 40000 and h.books(a) == h.books(b), 60,
              lambda: f"a's books from b: {h.err(a)[-800:]} {h.err(b)[-800:]}")
        assert "left running" not in h.err(a) and "cannot be its standby" not in h.err(a)
        _wait(lambda: h.state(a)["epoch"] == 2, 10, "a adopting b's epoch")  # (fenced: learnt from b's heartbeat)
        ra = _fh_json("replicate", "status", "--name", a)
        assert ra["role"] == "standby" and ra["epoch"] == 2 and ra["state"] == "streaming", ra
        assert len([l for l in h.err(b).splitlines() if "a standby connected to this primary" in l]) == 1
        assert "demoted" not in h.err(b) and h.state(b)["role"] == "primary", h.err(b)[-1500:]
        assert _status(RR.guard_status_of(config_of(h.cfg[b]))).get("state") == "guarding"
        # a restarted now: its state says standby, and with no listen address it is one by connecting, from the start
        old = ra["pid"]
        h.procs[a].send_signal(signal.SIGTERM)
        assert h.procs[a].wait(60) == 0, h.err(a)[-800:]
        h.run(a)
        _wait(lambda: _status(a).get("pid", old) != old and _status(a).get("messages") == 40000, 60,
              lambda: f"a again, standby from the start: {h.err(a)[-800:]}")
        _wait(lambda: h.messages(a) == 40000 and h.books(a) == h.books(b), 30, "a's books from b again")
        assert "demoted" not in h.err(a) and "running as the configured" not in h.err(a), h.err(a)[-800:]
        assert "demoted" not in h.err(b) and "promoted (" not in h.err(a) and h.state(b)["role"] == "primary"
        stats = h.stop()
        sb = stats[a]["standby"]
        assert not sb["promoted"] and sb["messages"] == 40000 and stats[a]["messages_applied"] == 0, sb
    finally:
        h.close()
