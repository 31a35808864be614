"""Instructions per message of a restart's journal apply, counted by callgrind (repeatable on a shared machine):
the C reader of the journal files (fh_jfile_apply: records walked, CRC-32 checked, messages applied) against the
C engine applying the same messages from memory (fh_engine_apply_blocks over the day's bytes), in one run.

    .venv/bin/python bench/restart_callgrind.py [MESSAGES] [INSTRUMENTS]     (defaults 300000 and 500)

The day is `fh bench restart`'s (synthetic, uniform, seed 1), journaled as fh record writes it (one MSGS record
per MoldUDP64 datagram) with no snapshot, so the whole file is read. Each side runs in its own process under
`valgrind --tool=callgrind --toggle-collect=FUNCTION`: only what runs inside that function is counted."""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _child(mode: str, n: int, k: int, path: str) -> None:
    from handler import native

    day = native.synth_bytes(n, k, 1)
    e = native.Engine(native.EngineConfig.for_input(len(day)))
    if mode == "mem":
        e.apply_blocks(day)
    else:
        native.journal_file_apply(e, path, 0)


def _table(out: str) -> dict[str, int]:
    p = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out], capture_output=True,
                       text=True, check=True)
    t = {}
    for line in p.stdout.splitlines():
        if "PROGRAM TOTALS" in line:
            t["*total*"] = int(line.split()[0].replace(",", ""))
        m = re.match(r"^\s*([\d,]+)\s+\([^)]*\)\s+\S+?:(\w+)\s", line)
        if m:
            t[m.group(2)] = max(t.get(m.group(2), 0), int(m.group(1).replace(",", "")))
    return t


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return 0
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    from handler import journal as J
    from handler import native
    from handler.bench.restart import record_day

    with tempfile.TemporaryDirectory(prefix="fh-restart-cg-") as tmp:
        d = Path(tmp) / "day"
        record_day(native.synth_bytes(n, k, 1), d, every=1 << 40)
        (f,) = J.journal_files(d)
        res = {}
        for mode, fn in (("mem", "fh_engine_apply_blocks"), ("jfile", "fh_jfile_apply")):
            out = f"{tmp}/cg.{mode}.out"
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--toggle-collect={fn}",
                            sys.executable, __file__, "--child", mode, str(n), str(k), str(f)],
                           check=True, capture_output=True)
            res[mode] = _table(out)
        mem, jf = res["mem"]["*total*"], res["jfile"]["*total*"]
        crc = res["jfile"].get("fh_crc32", 0)
        eng = res["jfile"].get("fh_engine_apply_blocks", 0)
        print(f"restart_callgrind: {n} messages, {k} instruments, journal file {f.stat().st_size} bytes")
        print(f"  engine from memory (fh_engine_apply_blocks): {mem / n:.1f} instructions/message")
        print(f"  journal file in C (fh_jfile_apply):          {jf / n:.1f} instructions/message "
              f"({mem / jf:.3f} of the engine's speed by instructions)")
        print(f"    of which the engine {eng / n:.1f}, CRC-32 {crc / n:.1f}, the record walk {(jf - eng - crc) / n:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
