"""The journal files read in C (fh_jfile_apply, native/include/fh/journal_file.h) against the Python reader
(handler/journal.py's read_journal_file) and the Python apply loop restore() had before it: the same records
stepped over, the same end sequence, the same messages applied (books and counters equal), and for every
truncation and damaged byte the same one-line message."""
from __future__ import annotations

import random

import pytest

from handler import journal as J
from handler import native
from handler.snapshot import Shadow, restore

pytestmark = pytest.mark.unit

SESSION = "TESTJF0001"
DAY = "20261203"


def _day(tmp_path, messages=30_000, instruments=40, every=0, rotate=1 << 30, holes=True):
    """A synthetic day as fh record writes it: one MSGS record per 1-20 messages, heartbeats, LOST holes (the
    hole's messages really absent), snapshots every `every` messages. Returns the directory."""
    day = native.synth_bytes(messages, instruments, 5)
    w = J.JournalFileWriter(tmp_path, day=DAY, fsync="none", rotate_bytes=rotate)
    shadow = Shadow(tmp_path / "snapshots", every=every, keep=100, day=DAY) if every else None
    rnd = random.Random(7)
    msgs = [bytes(m) for _, m in native.iter_blocks(day)]
    seq, i = 1, 0
    while i < len(msgs):
        n = min(rnd.randint(1, 20), len(msgs) - i)
        if holes and i > 1000 and rnd.random() < 0.01:  # a hole: these messages never journaled
            recs = [J.Record(J.LOST, SESSION, seq, 0, n, b"")]
        else:
            body = b"".join(len(m).to_bytes(2, "big") + m for m in msgs[i:i + n])
            recs = [J.Record(J.MSGS, SESSION, seq, n, len(body), body)]
            if rnd.random() < 0.05:
                recs.append(J.Record(J.HEARTBEAT, SESSION, seq + n, 0, 0, b""))
        w.write(recs)
        if shadow:
            for r in recs:
                shadow.apply(r)
            if shadow.due():
                w.sync()
                shadow.save()
        seq += n
        i += n
    w.close()
    return tmp_path


def _python_apply(engine, f, after):
    """restore()'s loop over one file as it was in Python: what the C reader must equal."""
    _, recs, off = J.read_journal_file(f, after=after)
    applied, end = 0, 0
    for r in recs:
        if r.seq and r.kind in (J.MSGS, J.LOST, J.MISSED):
            end = r.seq + (r.count if r.kind == J.MSGS else r.arg)
        if r.kind != J.MSGS:
            continue
        if r.seq and r.seq < after:
            if r.seq + r.count > after:
                ms = r.messages()[after - r.seq:]
                for m in ms:
                    engine.apply(m)
                applied += len(ms)
            continue
        engine.apply_blocks(r.body)
        applied += r.count
    return {"records": len(recs), "messages": applied, "end_seq": end, "bytes": off}


def test_c_reader_equals_the_python_reader_and_loop(tmp_path):
    d = _day(tmp_path)
    (f,) = J.journal_files(d)
    _, recs, _ = J.read_journal_file(f)
    last = recs[-1].seq + recs[-1].count
    for after in (0, 1, 2, 999, 1500, 1501, 17_777, last - 3, last, last + 10):
        cfg = native.EngineConfig.for_input(f.stat().st_size)
        ec, ep = native.Engine(cfg), native.Engine(cfg)
        got = native.journal_file_apply(ec, f, after)
        want = _python_apply(ep, f, after)
        assert {k: got[k] for k in want} == want, after
        assert got["session"] == SESSION and got["day"] == int(DAY) and got["first_seq"] == 1
        assert got["holes"] == sum(r.kind == J.LOST for r in J.read_journal_file(f, after=after)[1])
        assert ec.dump() == ep.dump() and ec.counters() == ep.counters(), after
        assert got["messages"] > 0 or after >= last - 20
    chk = native.journal_file_apply(None, f, 0)  # check only: the same counts, nothing applied
    assert chk["messages"] == native.journal_file_apply(native.Engine(cfg), f, 0)["messages"]


def test_every_damage_gives_the_python_readers_own_line(tmp_path):
    d = _day(tmp_path, messages=3000, holes=False)
    (f,) = J.journal_files(d)
    good = f.read_bytes()
    rnd = random.Random(11)
    bad = tmp_path / "bad.fhj"
    cases = [good[:n] for n in (0, 10, 63, 64, 65, 72, 95, len(good) - 1, len(good) - 30)]
    cases += [good[:rnd.randrange(64, len(good))] for _ in range(60)]
    for _ in range(200):  # a flipped bit anywhere: header, a length, a CRC, a payload
        b = bytearray(good)
        b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        cases.append(bytes(b))
    refused = 0
    for data in cases:
        bad.write_bytes(data)
        try:
            _, _, off = J.read_journal_file(bad)
            want = None
        except J.JournalFileError as e:
            want = str(e)
        try:
            got = native.journal_file_apply(None, bad)
            assert want is None, f"C accepted what Python refused: {want}"
            assert got["bytes"] == off == len(data)
        except native.NativeError as e:
            assert str(e) == want and "\n" not in str(e)
            refused += 1
    assert refused >= 200  # nearly every damage is caught (a flip in a heartbeat's unused field is not)


def test_restore_through_c_equals_the_python_restore(tmp_path):
    """The whole restore(): newest snapshot, files before it skipped, the straddling record, rotated files;
    the engine's books and counters equal to the Python loop applied over the same files."""
    d = _day(tmp_path, messages=40_000, every=7_000, rotate=64 << 10)
    files = J.journal_files(d)
    assert len(files) > 3 and len(list((d / "snapshots").glob("*.snap"))) >= 4
    e = native.Engine()
    got = restore(e, d / "snapshots", d)
    snap = got["snapshot"]
    ref = native.Engine()
    ref.snapshot_load(snap["path"])
    applied, end = 0, None
    for f in files:
        r = _python_apply(ref, f, snap["next_seq"])
        applied += r["messages"]
        end = (SESSION, r["end_seq"]) if r["end_seq"] else end
    assert got["journal_messages"] == applied > 0 and got["journal_end"] == end
    assert e.dump() == ref.dump() and e.counters() == ref.counters()


def test_restore_names_the_damaged_file_in_one_line(tmp_path):
    d = _day(tmp_path, messages=5000, rotate=32 << 10, holes=False)
    files = J.journal_files(d)
    b = bytearray(files[1].read_bytes())
    b[200] ^= 0x10
    files[1].write_bytes(bytes(b))
    with pytest.raises(J.JournalFileError) as ei:
        restore(native.Engine(), None, d)
    with pytest.raises(J.JournalFileError) as py:
        J.read_journal_file(files[1])
    assert str(ei.value) == str(py.value) and str(files[1]) in str(ei.value)
