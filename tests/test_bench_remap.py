"""bench/remap_refs.py (bench/engine.md section 25): a real-shaped day with its order references rewritten, dense or
into the slots of a small table, gives the engine the same books and counters; only the references change, as each
mode says."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from conftest import ROOT
from handler import native
from handler.native import Engine, EngineConfig

SCRIPT = ROOT / "bench" / "remap_refs.py"


def _books(data: bytes) -> tuple[list, dict]:
    eng = Engine(EngineConfig.for_input(len(data)))
    assert eng.apply_blocks(data) == len(data)
    return eng.dump(), eng.counters()


def _new_refs(data: bytes) -> list[int]:
    """The references of new orders (A, F, a U's new one), in order."""
    out = []
    for _, m in native.iter_blocks(data):
        if m[0] in b"AF":
            out.append(struct.unpack_from(">Q", m, 11)[0])
        elif m[0] == ord("U"):
            out.append(struct.unpack_from(">Q", m, 19)[0])
    return out


@pytest.mark.parametrize("slots", [None, 1 << 14])
def test_remapped_day_has_the_same_books(tmp_path, slots):
    day = native.synth_bytes(40_000, 30, 5, shape="real")
    src, dst = tmp_path / "day.itch", tmp_path / "out.itch"
    src.write_bytes(day)
    p = subprocess.run([sys.executable, SCRIPT, src, dst, *(["--slots", str(slots)] if slots else [])],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = dst.read_bytes()
    assert len(out) == len(day) and out != day
    assert _books(out) == _books(day)
    refs, before = _new_refs(out), _new_refs(day)
    assert len(refs) == len(before) and len(set(refs)) == len(refs)  # unique over the day, as the exchange's
    assert max(before) > 1 << 24  # the real shape's range, which the rewrite removes
    if slots is None:
        assert refs == list(range(1, len(refs) + 1))
    else:
        assert all(r & ((1 << 24) - 1) < slots for r in refs) and max(refs) < len(refs) << 24
    assert f"{len(refs):,} orders" in p.stderr


def test_too_few_slots_is_one_line(tmp_path):
    src = tmp_path / "day.itch"
    src.write_bytes(native.synth_bytes(40_000, 30, 5, shape="real"))
    for slots, want in ((4, "live orders: give more --slots"), (1000, "a power of two")):
        p = subprocess.run([sys.executable, SCRIPT, src, tmp_path / "o", "--slots", str(slots)], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode != 0 and want in p.stderr and "Traceback" not in p.stderr, p.stderr
