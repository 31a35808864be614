"""Fault plans (handler.faults, `fh pcap synth --faults`) and the retransmission server (handler.retransmit,
`fh retransmit-server`): deterministic, and what they say they injected is what the capture holds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROOT, ab_lines, fh, fh_popen
from handler import faults, native, replay
from handler.net import pcapgen, retransmit
from handler.net.pcapfile import PcapReader
from handler.reference import iter_mold

A = "233.54.12.111:26477"
B = "233.49.196.111:26477"


@pytest.fixture(scope="module")
def day():
    return native.synth_bytes(8000, 8, 3)


def _synth(tmp_path, day, plan, name="f.pcap"):
    out = tmp_path / name
    s, inj = pcapgen.synth_faulty_pcap(out, day, ab_lines(), faults.parse_plan({"fault": plan}))
    return out, inj


def _grams(day):
    return pcapgen.packetize(day)


def _seq_of(grams, idx):
    return 1 + sum(len(m) for _, m in grams[:idx])


def test_plans_are_deterministic(day, tmp_path):
    plan = [{"line": "A", "kind": "drop", "at": 3, "count": 2}, {"line": "B", "kind": "reorder", "at": 7, "depth": 3},
            {"line": "both", "kind": "drop", "seq": 2000}, {"line": "B", "kind": "delay", "at": 12, "delay_us": 300},
            {"kind": "session_change", "at": 40}, {"line": "A", "kind": "duplicate", "at": 50, "count": 3}]
    p1, i1 = _synth(tmp_path, day, plan, "one.pcap")
    p2, i2 = _synth(tmp_path, day, plan, "two.pcap")
    assert p1.read_bytes() == p2.read_bytes() and i1 == i2
    assert json.loads(json.dumps(i1)) == i1  # JSON-clean


def test_empty_plan_is_the_clean_day(day, clean, tmp_path):
    out, inj = _synth(tmp_path, day, [])
    assert out.read_bytes() == clean.read_bytes()
    assert inj["lost_on_all_lines"] == [] and inj["session_change"] is None


def test_drop_on_one_line_is_filled_by_the_other(day, clean_books, tmp_path):
    grams = _grams(day)
    out, inj = _synth(tmp_path, day, [{"line": "A", "kind": "drop", "at": 10, "count": 3}])
    lost = sum(len(m) for _, m in grams[10:13])
    assert inj["A"]["dropped"] == {"datagrams": 3, "messages": lost}
    assert inj["B"]["dropped"]["datagrams"] == 0 and inj["lost_on_all_lines"] == []
    ins = pcapgen.inspect_pcap(out)
    assert ins.gaps == [("FHSYNTH001", A, _seq_of(grams, 10), _seq_of(grams, 13))]
    assert replay.reference_books(out)[0] == clean_books


def test_drop_on_both_lines_leaves_the_exact_gap(day, clean_books, tmp_path):
    grams = _grams(day)
    first = _seq_of(grams, 20)
    out, inj = _synth(tmp_path, day, [{"line": "both", "kind": "drop", "seq": first + 1, "count": 2}])
    last = _seq_of(grams, 22) - 1
    assert inj["lost_on_all_lines"] == [{"session": "FHSYNTH001", "first": first, "last": last,
                                         "messages": last - first + 1}]
    ins = pcapgen.inspect_pcap(out)
    assert sorted(ins.gaps) == sorted([("FHSYNTH001", A, first, last + 1), ("FHSYNTH001", B, first, last + 1)])
    total = sum(len(m) for _, m in grams)
    assert ins.sessions["FHSYNTH001"][2] == 2 * (total - (last - first + 1))


def test_one_line_faults_keep_the_books(day, clean_books, tmp_path):
    """Duplicates, reordering, a delay and a silent line, each on one line: the other line carries the day."""
    grams = _grams(day)
    plan = [{"line": "A", "kind": "duplicate", "at": 5, "count": 2},
            {"line": "A", "kind": "reorder", "at": 15, "depth": 2},
            {"line": "B", "kind": "delay", "at": 25, "count": 2, "delay_us": 500},
            {"line": "B", "kind": "silence", "at": 40}]
    out, inj = _synth(tmp_path, day, plan)
    assert inj["A"]["duplicated"]["datagrams"] == 2 and inj["A"]["reordered"]["datagrams"] == 1
    assert inj["B"]["delayed"] == {"datagrams": 2, "messages": sum(len(m) for _, m in grams[25:27])}
    (sil,) = inj["B"]["silent"]
    assert sil["from_datagram"] == 40 and sil["datagrams"] == len(grams) - 40 and sil["until_ns"] is None
    assert sil["sequences"] == [["FHSYNTH001", _seq_of(grams, 40), _seq_of(grams, len(grams)) - 1]]
    assert inj["lost_on_all_lines"] == []
    ins = pcapgen.inspect_pcap(out)
    assert ins.endpoints[A] == len(grams) + 2 + 1 and ins.endpoints[B] == 40
    assert ins.end_of_session == 1  # the silent line misses its end of session
    assert replay.reference_books(out)[0] == clean_books
    # the B line is a FIFO: its datagrams stay in sequence, delayed ones hold those behind
    seqs = [iter_mold(d.payload).header.sequence for d in PcapReader(out).datagrams() if d.dst == B.split(":")[0]]
    assert seqs == sorted(seqs)


def test_session_change_shows_two_sessions(day, clean_books, messages, tmp_path):
    grams = _grams(day)
    out, inj = _synth(tmp_path, day, [{"kind": "session_change", "at": 30, "session": "NEXTSESS01"}])
    before = _seq_of(grams, 30) - 1
    c = inj["session_change"]
    assert c["old_session"] == "FHSYNTH001" and c["new_session"] == "NEXTSESS01"
    assert c["old_next_sequence"] == before + 1 and c["messages_after"] == len(messages) - before
    ins = pcapgen.inspect_pcap(out)
    assert ins.sessions["FHSYNTH001"][:2] == [1, before]
    assert ins.sessions["NEXTSESS01"][:2] == [1, len(messages) - before]
    assert ins.end_of_session == 4 and ins.gaps == []
    assert replay.reference_books(out)[0] == clean_books
    _, inj2 = _synth(tmp_path, day, [{"kind": "session_change", "at": 30}], "auto.pcap")
    assert inj2["session_change"]["new_session"] == "FHSYNTH002"


def test_bad_plans_are_explained(tmp_path):
    for plan, why in [({"fault": [{"kind": "explode", "at": 1}]}, "kind must be one of"),
                      ({"fault": [{"kind": "drop"}]}, "exactly one of at"),
                      ({"fault": [{"kind": "drop", "at": 1, "line": "C"}]}, "line must be"),
                      ({"fault": [{"kind": "session_change", "at": 1, "line": "A"}]}, "every line"),
                      ({"fault": [{"kind": "delay", "at": 1}]}, "delay_us"),
                      ({"fault": [{"kind": "drop", "at": 1, "cnt": 2}]}, "unknown key"),
                      ({"faults": [], "x": 1}, "unknown top-level")]:
        with pytest.raises(faults.FaultPlanError, match=why):
            faults.parse_plan(plan)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[fault]]\nkind = "drop"\nat = 100000\n')
    p = fh("pcap", "synth", tmp_path / "x.pcap", "--faults", bad, "--messages", "2000", check=False)
    assert p.returncode == 2 and "beyond the day" in p.stderr


def test_a_plan_that_is_no_text_file_is_named_as_such(tmp_path):
    """A capture given as the plan was a UnicodeDecodeError and a traceback; a directory or a FIFO was "no such
    fault plan". Each is now one line saying what it is, before a day is generated and with no file written."""
    fifo = tmp_path / "plan.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "x.pcap"
    for plan, why in [(ROOT / "pcaps" / "synth-ab-40k.pcap", "not UTF-8 text (byte 0xb2 at offset 2)"),
                      (tmp_path, "not a regular file (a directory)"), (fifo, "not a regular file (a FIFO)")]:
        p = fh("pcap", "synth", out, "--faults", plan, "--messages", "2000", check=False, timeout=120)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert p.stderr == f"fh: {plan}: {why}; give a fault plan (TOML or JSON, docs/fault-plans.md)\n"
        assert not out.exists()


@pytest.mark.slow
def test_cli_synth_with_faults(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[fault]]\nline = "both"\nkind = "drop"\nat = 4\n\n[[fault]]\nkind = "session_change"\nat = 9\n')
    out = tmp_path / "day.pcap"
    p = fh("pcap", "synth", out, "--faults", plan, "--messages", "3000", "--instruments", "4")
    assert "lost on every line (retransmission needed): FHSYNTH001" in p.stdout and "session change" in p.stdout
    inj = json.loads(fh("pcap", "synth", out, "--faults", plan, "--messages", "3000", "--instruments", "4",
                        "--json").stdout)["faults"]
    assert len(inj["lost_on_all_lines"]) == 1 and inj["session_change"]["new_session"] == "FHSYNTH002"
    js = tmp_path / "plan.json"
    js.write_text(json.dumps({"fault": [{"line": "both", "kind": "drop", "at": 4},
                                        {"kind": "session_change", "at": 9}]}))
    fh("pcap", "synth", tmp_path / "j.pcap", "--faults", js, "--messages", "3000", "--instruments", "4")
    assert (tmp_path / "j.pcap").read_bytes() == out.read_bytes()


def test_documented_example_plans_apply():
    import re
    import tomllib

    grams = pcapgen.packetize(native.synth_bytes(100_000, 40, 1))  # the day of the examples: fh pcap synth's default
    doc = (ROOT / "docs" / "fault-plans.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert blocks
    for b in blocks:
        faults.apply_plan(grams, faults.parse_plan(tomllib.loads(b)), "FHSYNTH001")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_dissects_faulty_pcaps(day, tmp_path):
    plan = [{"line": "A", "kind": "drop", "at": 3}, {"line": "B", "kind": "duplicate", "at": 4},
            {"line": "A", "kind": "reorder", "at": 6, "depth": 2}, {"line": "B", "kind": "delay", "at": 8,
                                                                   "delay_us": 100},
            {"line": "both", "kind": "drop", "at": 12}, {"kind": "session_change", "at": 20},
            {"line": "B", "kind": "silence", "at": 30}]
    out, _ = _synth(tmp_path, day, plan)
    p = subprocess.run(["tshark", "-r", str(out), "-d", "udp.port==26477,moldudp64", "-T", "fields",
                        "-e", "moldudp64.session", "-e", "moldudp64.count", "-e", "_ws.malformed"],
                       capture_output=True, text=True, check=True)
    rows = [l.split("\t") for l in p.stdout.splitlines()]
    assert rows and not any(len(r) > 2 and r[2] for r in rows), "tshark found malformed packets"
    assert {r[0].strip() for r in rows} == {"FHSYNTH001", "FHSYNTH002"}


# ---------------------------------------------------------------------------------------------------- the server

def _client() -> socket.socket:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    c.settimeout(0.3)
    return c


def _ask(c, addr, req: bytes, want: int) -> list:
    """Send a request; the datagrams of its answer, until `want` messages came (2 s at most)."""
    c.sendto(req, addr)
    got = []
    c.settimeout(2.0)
    while sum(len(d.messages) for d in got) < want:
        try:
            data, src = c.recvfrom(65535)
        except socket.timeout:
            break
        assert src[:2] == tuple(addr)
        got.append(iter_mold(data))
    return got


def _unanswered(c, addr, req: bytes) -> bool:
    """Send a request, then a probe (sequence 1, one message): the first answer is the probe's when the
    request got none (one socket pair on loopback keeps its order)."""
    c.sendto(req, addr)
    (dg,) = _ask(c, addr, retransmit.request("FHSYNTH001", 1, 1), 1)
    return dg.header.sequence == 1 and dg.header.count == 1


@pytest.fixture()
def server(clean):
    srv = retransmit.RetransmitServer(retransmit.Store.from_pcap(clean), ("127.0.0.1", 0), max_count=100).start()
    yield srv
    srv.stop()


def test_server_answers_with_the_recorded_messages(server, messages):
    c = _client()
    try:
        (dg,) = _ask(c, server.address, retransmit.request("FHSYNTH001", 1, 10), 10)
        assert dg.header.session == "FHSYNTH001" and dg.header.sequence == 1 and dg.header.count == 10
        assert dg.messages == messages[:10] and not dg.malformed
        # more than max_count: capped at 100, across datagrams that fit the MTU, in order
        got = _ask(c, server.address, retransmit.request("FHSYNTH001", 500, 5000), 100)
        assert len(got) > 1
        seq = 500
        for dg in got:
            assert dg.header.sequence == seq and len(dg.messages) == dg.header.count
            assert 20 + sum(2 + len(m) for m in dg.messages) <= 1500 - 28
            seq += dg.header.count
        assert seq == 600
        assert [m for dg in got for m in dg.messages] == messages[499:599]
        # the tail: only what was recorded
        got = _ask(c, server.address, retransmit.request("FHSYNTH001", len(messages) - 2, 50), 3)
        assert [m for dg in got for m in dg.messages] == messages[-3:]
        # not answered: malformed, unknown session, out of range, count 0
        for req in (b"short", retransmit.request("FHSYNTH001", 1, 10) + b"x", retransmit.request("NOSUCH", 1, 5),
                    retransmit.request("FHSYNTH001", len(messages) + 1, 5), retransmit.request("FHSYNTH001", 0, 5),
                    retransmit.request("FHSYNTH001", 1, 0)):
            assert _unanswered(c, server.address, req)
    finally:
        c.close()
    st = server.stop()
    assert st["requests"] == 3 + 6 * 2 and st["answered"] == 3 + 6 and st["capped"] == 1
    assert st["messages_sent"] == 10 + 100 + 3 + 6 and st["refused"] == 6
    assert st["malformed"] == 3 and st["unknown_session"] == 1 and st["out_of_range"] == 2


def test_server_serves_a_faulty_capture_up_to_its_holes(day, tmp_path, messages):
    grams = _grams(day)
    out, inj = _synth(tmp_path, day, [{"line": "both", "kind": "drop", "at": 5}])
    hole = inj["lost_on_all_lines"][0]
    srv = retransmit.RetransmitServer(retransmit.Store.from_pcap(out), ("127.0.0.1", 0)).start()
    c = _client()
    try:
        got = _ask(c, srv.address, retransmit.request("FHSYNTH001", hole["first"] - 2, 10), 2)
        assert [m for dg in got for m in dg.messages] == messages[hole["first"] - 3:hole["first"] - 1]
        assert _unanswered(c, srv.address, retransmit.request("FHSYNTH001", hole["first"], 1))
    finally:
        c.close()
        st = srv.stop()
    assert st["out_of_range"] == 1 and _seq_of(grams, 5) == hole["first"]


def test_cli_server_stops_cleanly_with_counters(clean, messages, tmp_path):
    ready, stats = tmp_path / "ready", tmp_path / "stats.json"
    p = fh_popen("retransmit-server", "--pcap", clean, "--listen", "127.0.0.1:0", "--max-count", "5", "--ready-file",
                 ready, "--stats-json", stats, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), p.stderr.read() if p.poll() is not None else "not ready"
        host, port = ready.read_text().strip().rsplit(":", 1)
        c = _client()
        got = _ask(c, (host, int(port)), retransmit.request("FHSYNTH001", 7, 50), 5)
        assert [m for dg in got for m in dg.messages] == messages[6:11]
        assert _unanswered(c, (host, int(port)), b"\x00" * 7)
        c.close()
        p.send_signal(signal.SIGTERM)
        so, se = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, se
    assert "3 requests, 6 messages sent" in so and "1 refused (malformed 1" in so
    st = json.loads(stats.read_text())
    assert st["requests"] == 3 and st["messages_sent"] == 6 and st["capped"] == 1 and st["malformed"] == 1


@pytest.mark.slow
def test_cli_server_bad_arguments(clean, tmp_path):
    p = fh("retransmit-server", "--pcap", clean, "--listen", "nonsense", check=False)
    assert p.returncode == 2 and "expected ADDRESS:PORT" in p.stderr
    p = fh("retransmit-server", "--pcap", tmp_path / "none.pcap", check=False)
    assert p.returncode == 2 and "no such capture" in p.stderr
