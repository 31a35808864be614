"""bench/remap_refs.py (bench/engine.md sections 25 and 26): a real-shaped day with its order references rewritten,
dense, into the slots of a small table or in NASDAQ's four counters, gives the engine the same books and counters;
only the references change, as each mode says."""

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


@pytest.mark.parametrize("slots", [None, 1 << 14, "streams"])
def test_remapped_day_has_the_same_books(tmp_path, slots):
    day = native.synth_bytes(40_000, 30, 5, shape="real")
    src, dst = tmp_path / "day.itch", tmp_path / "out.itch"
    src.write_bytes(day)
    mode = ["--streams"] if slots == "streams" else ["--slots", str(slots)] if slots else []
    p = subprocess.run([sys.executable, SCRIPT, src, dst, *mode], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = dst.read_bytes()
    assert len(out) == len(day) and out != day
    assert _books(out) == _books(day)
    refs, before = _new_refs(out), _new_refs(day)
    assert len(refs) == len(before) and len(set(refs)) == len(refs)  # unique over the day, as the exchange's
    assert max(before) > 1 << 24  # the real shape's range, which the rewrite removes
    if slots is None:
        assert refs == list(range(1, len(refs) + 1))
    elif slots == "streams":  # four counters, one a residue mod 4, each rising by 4 to 56 from where 09:30's began
        per = {k: [r for r in refs if r % 4 == k] for k in range(4)}
        assert all(len(v) > len(refs) // 8 for v in per.values())
        for k, v in per.items():
            steps = {b - a for a, b in zip(v, v[1:])}
            assert steps <= {4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 56} and 4 in steps and 8 in steps
            assert 5_000_000 < v[0] < 10_000_000 and v == sorted(v)
    else:
        assert all(r & ((1 << 26) - 1) < slots for r in refs) and max(refs) < len(refs) << 26
    assert f"{len(refs):,} orders" in p.stderr


def test_too_few_slots_is_one_line(tmp_path):
    src = tmp_path / "day.itch"
    src.write_bytes(native.synth_bytes(40_000, 30, 5, shape="real"))
    for args, want in ((["--slots", "4"], "live orders: give more --slots"), (["--slots", "1000"], "a power of two"),
                       (["--slots", "1024", "--streams"], "two modes: give one")):
        p = subprocess.run([sys.executable, SCRIPT, src, tmp_path / "o", *args], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode != 0 and want in p.stderr and "Traceback" not in p.stderr, p.stderr
