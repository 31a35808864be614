"""Differential tests: the C book engine against the pure-Python reference model, book for book and level for
level, counter for counter, on generated days, anomaly-heavy streams, capacity limits and the real data."""

from __future__ import annotations

import random
import struct

import pytest

from conftest import real_itch_files, real_itch_pcaps
from handler import native
from handler import reference as ref
from handler.native import Engine, EngineConfig


def c_engine(data: bytes, cfg: EngineConfig | None = None) -> Engine:
    eng = Engine(cfg or EngineConfig.for_input(len(data)))
    assert eng.apply_blocks(data) <= len(data)
    return eng


def ref_engine(data: bytes, **caps) -> ref.ReferenceBook:
    r = ref.ReferenceBook(**caps)
    r.apply_daily_file(data)
    return r


def assert_same(c: Engine, r: ref.ReferenceBook, depth=None) -> None:
    cd, rd = c.dump(depth), r.books(depth)
    if cd != rd:
        rmap = {b["locate"]: b for b in rd}
        for b in cd:
            if rmap.get(b["locate"]) != b:
                raise AssertionError(f"first differing book: C {b} vs reference {rmap.get(b['locate'])}")
        raise AssertionError(f"C has {len(cd)} books, reference {len(rd)}")
    rc = {k: v for k, v in r.counters.items() if v}
    cc = {k: v for k, v in c.counters().items() if v}
    assert cc == rc


@pytest.mark.parametrize("seed,instruments,messages", [
    (1, 1, 20_000), (2, 10, 50_000), (3, 100, 100_000), (4, 500, 150_000), (5, 5000, 200_000),
])
@pytest.mark.slow
def test_generated_days(seed, instruments, messages):
    data = native.synth_bytes(messages, instruments, seed)
    c, r = c_engine(data), ref_engine(data)
    assert_same(c, r)
    assert_same(c, r, depth=3)
    counters = c.counters()
    assert counters["messages"] == messages
    # a clean day has no anomaly at all, and books exist for many instruments
    assert all(counters[k] == 0 for k in native.COUNTER_NAMES if k != "messages")
    assert len(c.dump()) >= min(instruments, 5)


@pytest.mark.parametrize("seed,instruments,messages,ppm,shape", [
    (6, 20, 60_000, 0, "real"), (7, 300, 150_000, 0, "real"), (8, 50, 100_000, 20_000, "real"),
    (9, 300, 150_000, 0, "real-late"), (10, 50, 100_000, 20_000, "real-late")])
def test_real_shaped_days(seed, instruments, messages, ppm, shape):
    """fh synth itch --shape real: references to ~184 M, interleaved, orders resting all day (the order table's
    collisions and spill path), against the reference; --shape real-late: the same with a real feed's steps, the
    open's orders ~150 M references older than the body's."""
    data = native.synth_bytes(messages, instruments, seed, anomaly_ppm=ppm, shape=shape)
    c, r = c_engine(data), ref_engine(data)
    assert c.spilled > 0  # orders lapped in their home slots live on in the spill table, and are found there
    assert_same(c, r)
    assert_same(c, r, depth=3)
    if not ppm:
        assert all(c.counters()[k] == 0 for k in native.COUNTER_NAMES if k != "messages")


@pytest.mark.parametrize("ladder_books", [0, 3, 1000])
def test_books_with_and_without_a_ladder_agree(tmp_path, ladder_books):
    """A segment's first ladder_books books keep the levels near their touch in a price ladder; the books created
    after them share a pair of ladders whose window never holds a level, so every level of theirs is in the sorted
    arrays. Whatever ladder_books is (none, some books, all), the engine, the segment's readers (fh_shm_snapshot
    merging window and deep run, handler.shm's dump) and the reference model agree, at every depth."""
    from handler.replay import segment_books
    from handler.shm import Reader

    data = native.synth_bytes(60_000, 20, 31, shape="real")
    seg = native.Segment(tmp_path / "seg", "lb", max_levels=1 << 16, event_capacity=1 << 10,
                         ladder_books=ladder_books)
    try:
        eng = native.Engine(EngineConfig.for_input(len(data)), segment=seg)
        eng.apply_blocks(data)
        r = ref_engine(data)
        assert_same(eng, r)
        assert segment_books(seg.path) == r.books()
        assert segment_books(seg.path, 3) == r.books(3)
        with Reader(seg.path) as rd:
            ladders = sorted({int(rd.books[loc]["ladder"]) for loc in eng.locates()})
        # books past the ladders share the pair numbered ladder_books; with 1000, every book has its own
        assert ladders == (sorted(set(range(ladder_books)) | {ladder_books}) if ladder_books < 20 else
                           list(range(len(eng.locates()))))
    finally:
        seg.close(unlink=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_anomaly_heavy_days(seed):
    data = native.synth_bytes(100_000, 50, seed, anomaly_ppm=20_000)
    c, r = c_engine(data), ref_engine(data)
    assert_same(c, r)
    counters = c.counters()
    for k in ("unknown_ref", "duplicate_ref", "overexecution", "overcancel", "bad_side", "zero_shares",
              "unknown_type", "short_message"):
        assert counters[k] > 0, f"an anomaly-heavy day should exercise {k}"


def test_capacity_limits_agree():
    data = native.synth_bytes(60_000, 40, 21)
    c = c_engine(data, EngineConfig(instruments=25, orders=300, levels=1 << 16))
    r = ref_engine(data, max_instruments=25, max_orders=300)
    assert_same(c, r)
    assert c.counters()["instrument_capacity"] > 0 and c.counters()["order_capacity"] > 0


def test_prefix_by_prefix():
    """The books agree not just at the end: after every chunk of a day."""
    data = native.synth_bytes(30_000, 20, 31)
    msgs, _ = ref.split_daily_file(data)
    c, r = Engine(EngineConfig.for_input(len(data))), ref.ReferenceBook()
    for i, m in enumerate(msgs):
        c.apply(m)
        r.apply(m)
        if i % 2_500 == 0:
            assert_same(c, r)
    assert_same(c, r)


@pytest.mark.parametrize("seed", [1, 2])
def test_pieces_and_datagrams_agree_with_the_whole_day(seed):
    """The engine's prefetch pipelines at every boundary. The block loop works in three 32-block chunks (walked,
    ladders, levels, applied) and the datagram path prefetches ladders 6 and levels 3 messages ahead: a day applied
    in pieces of random length (each piece's cut last block carried into the next, as a reader of a growing file
    does) and as MoldUDP64 datagrams of 1 to 150 messages (past 128, the block loop) must give the books and
    counters of the day applied at once, and the reference's."""
    rng = random.Random(seed)
    data = native.synth_bytes(40_000, 30, seed, anomaly_ppm=5_000, shape="real")
    whole, r = c_engine(data), ref_engine(data)
    assert_same(whole, r, depth=3)
    cfg = EngineConfig.for_input(len(data))

    pieces, carry, pos, cuts = Engine(cfg), b"", 0, 0
    while pos < len(data):
        k = rng.choice([rng.randrange(1, 80), rng.randrange(1, 40 * 36), rng.randrange(1, 200 * 36)])
        buf = carry + data[pos:pos + k]
        pos += k
        carry = buf[pieces.apply_blocks(buf):]
        cuts += bool(carry)
    assert carry == b"" and cuts > 100
    counters = pieces.counters()
    assert counters.pop("truncated") == cuts  # each cut block counted once, then applied whole
    assert pieces.dump(3) == whole.dump(3)
    assert counters == {k: v for k, v in whole.counters().items() if k != "truncated"}

    msgs, _ = ref.split_daily_file(data)
    dgrams, i, seq = Engine(cfg), 0, 1
    while i < len(msgs):
        group = msgs[i:i + rng.choice([1, 2, 3, 5, 8, rng.randrange(1, 151)])]
        body = b"".join(struct.pack(">H", len(m)) + m for m in group)
        assert dgrams.apply_mold(b"SESSION001" + struct.pack(">QH", seq, len(group)) + body) == len(group)
        i += len(group)
        seq += len(group)
    assert_same(dgrams, r, depth=3)


def test_random_garbage_is_counted_never_fatal():
    """Random bytes framed as blocks and as MoldUDP64 datagrams: the engines agree on what they count."""
    rng = random.Random(5)
    blocks = []
    for _ in range(3000):
        t = rng.choice(b"SRHYLVWKJhAFECXDUPQBINOZ\x00")
        n = rng.choice([0, 1, 5, 11, 19, 23, 31, 35, 36, 40, 44, 50, 60])
        blocks.append(bytes([t]) + rng.randbytes(max(0, n - 1)) if n else b"")
    data = b"".join(struct.pack(">H", len(b)) + b for b in blocks)
    c, r = c_engine(data), ref_engine(data)
    assert_same(c, r)
    for _ in range(500):
        dg = rng.randbytes(rng.randrange(0, 120))
        c.apply_mold(dg)
        r.apply_mold(dg)
    assert_same(c, r)


@pytest.mark.parametrize("path", real_itch_files(), ids=lambda p: p.name)
def test_real_itch_files(path, real):
    data = path.read_bytes()
    c, r = c_engine(data), ref_engine(data)
    assert_same(c, r)
    if "0930" in path.name:
        assert c.counters()["unknown_ref"] == 399
    if "truncated" in path.name:
        assert c.counters()["truncated"] == 1 and c.counters()["messages"] == 16


@pytest.mark.parametrize("path", real_itch_pcaps(), ids=lambda p: p.name)
def test_real_pcaps(path, real):
    """A datagram or two from the middle of a session each: trusting the jump from 1 (max_ahead 0; by default it
    is suspect and nothing is applied, to both the C path and the reference), every real message is applied."""
    from handler.replay import reference_books

    c = Engine(EngineConfig.for_input(path.stat().st_size))
    c.apply_pcap(path, max_ahead=0)
    r = ref.ReferenceBook()
    r.apply_pcap(str(path))
    assert_same(c, r)  # no duplicates in these captures: sequenced and unsequenced application agree
    assert c.dump() == reference_books(path, max_ahead=0)[0]
    d = Engine(EngineConfig.for_input(path.stat().st_size))
    d.apply_pcap(path)
    assert d.dump() == reference_books(path)[0]


def test_ab_pcap_sequenced_like_the_data_plane(tmp_path):
    """An A/B capture: the offline C path takes each sequence once, as the data plane and the reference do."""
    from handler.net import pcapgen
    from handler.replay import reference_books

    day = native.synth_bytes(20_000, 10, 3)
    pcap = tmp_path / "ab.pcap"
    pcapgen.synth_pcap(pcap, day, [pcapgen.Line(*pcapgen.DEFAULT_A), pcapgen.Line(*pcapgen.DEFAULT_B, delay_ns=10)])
    c = Engine(EngineConfig.for_input(len(day)))
    counters = c.apply_pcap(pcap)
    assert counters["mold_duplicates"] == 20_000 and counters["mold_applied"] == 20_000
    assert c.dump() == reference_books(pcap)[0] == c_engine(day).dump()


def test_engine_config_errors():
    with pytest.raises(native.NativeError, match="max_instruments"):
        Engine(EngineConfig(instruments=0))
    with pytest.raises(native.NativeError, match="max_orders"):
        Engine(EngineConfig(orders=0))


def test_engine_reset():
    data = native.synth_bytes(20_000, 10, 41)
    c = c_engine(data)
    first = c.dump()
    c.reset()
    assert c.dump() == [] and c.live_orders == 0 and c.counters()["messages"] == 0
    c.apply_blocks(data)
    assert c.dump() == first
