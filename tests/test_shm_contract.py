"""fh/shm.h as a trading process gets it: installed (`meson install`, headers and pkg-config file only) and
compiled from outside the source tree with `pkg-config --cflags fh-shm`, as strict C11 and as C++17; the C++
example reader (native/examples/book_top.cpp) built that way prints the same book as `fh book SYMBOL --json`.
Also the Python side of the one latency histogram and of the level keys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT, fh, publisher
from handler import shm
from handler._native import lib

DAY = ROOT / "pcaps" / "synth-100k.itch"


def _build_dir():
    import handler._native  # noqa: F401  (an editable install rebuilds on import)

    found = sorted(ROOT.glob("build/cp3*/build.ninja"), key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.skip("no meson build directory (build/cp3*): run bash scripts/setup.sh")
    return found[-1].parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(pkg-config environment, install root) of fh's development files installed into a scratch root."""
    for tool in ("meson", "pkg-config", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (bash scripts/setup.sh installs it)")
    dest = tmp_path_factory.mktemp("dest")
    p = subprocess.run(["meson", "install", "-C", str(_build_dir()), "--no-rebuild", "--tags", "devel", "--destdir",
                        str(dest)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    pcs = list(dest.rglob("fh-shm.pc"))
    assert len(pcs) == 1 and list(dest.rglob("fh/shm.h")), sorted(map(str, dest.rglob("*")))
    env = {**os.environ, "PKG_CONFIG_PATH": str(pcs[0].parent), "PKG_CONFIG_SYSROOT_DIR": str(dest)}
    return env, dest


def _cflags(env) -> list[str]:
    p = subprocess.run(["pkg-config", "--cflags", "fh-shm"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_pkg_config_points_at_the_installed_header(installed):
    env, dest = installed
    flags = _cflags(env)
    assert "-D_DEFAULT_SOURCE" in flags
    inc = [f[2:] for f in flags if f.startswith("-I")]
    assert inc and all(os.path.realpath(i).startswith(os.path.realpath(dest)) for i in inc)
    assert any(os.path.isfile(os.path.join(i, "fh", "shm.h")) for i in inc)


def test_strict_c11_reader_builds_whatever_the_include_order(installed, tmp_path):
    env, _ = installed
    src = tmp_path / "reader.c"
    src.write_text('#include <stdio.h>\n#include <fh/shm.h>\n'
                   'int main(int argc, char **argv) {\n'
                   '    fh_shm_reader_t r;\n'
                   '    int rc = fh_shm_join(&r, argc > 1 ? argv[1] : "/nonexistent/fh-segment");\n'
                   '    printf("%d\\n", rc);\n'
                   '    fh_shm_leave(&r);\n'
                   '    return 0;\n}\n')
    exe = tmp_path / "reader"
    p = subprocess.run(["gcc", "-std=c11", "-pedantic-errors", "-Wall", "-Wextra", "-Werror", *_cflags(env),
                        str(src), "-o", str(exe)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == "-2"  # -ENOENT


@pytest.mark.slow
def test_cxx_example_reader_builds_against_the_installed_header(installed, tmp_path):
    env, _ = installed
    src = tmp_path / "book_top.cpp"  # outside the source tree: only the installed header can be found
    shutil.copy(ROOT / "native" / "examples" / "book_top.cpp", src)
    exe = tmp_path / "fh-book-top"
    p = subprocess.run(["g++", "-std=c++17", "-pedantic-errors", "-Wall", "-Wextra", "-Werror", *_cflags(env),
                        str(src), "-o", str(exe)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    with publisher(DAY) as (name, _):
        for sym in ("AAPL", "MSFT"):
            got = subprocess.run([str(exe), name, sym, "5"], capture_output=True, text=True, timeout=60)
            assert got.returncode == 0, got.stderr
            want = fh("book", sym, "--name", name, "--depth", "5", "--json").stdout
            assert json.loads(got.stdout) == json.loads(want)
            assert got.stdout == want  # byte for byte: the canonical dump line
        missing = subprocess.run([str(exe), name, "NOSUCH"], capture_output=True, text=True, timeout=60)
        assert missing.returncode == 1 and "NOSUCH: no book" in missing.stderr


def test_latency_histogram_is_the_headers():
    """shm.py's bucket bounds are fh_shm_lat_upper's (called through cffi), and its constants the header's."""
    assert shm.LAT_BUCKETS == lib.FH_SHM_LAT_BUCKETS == 608
    assert [shm.lat_upper_ns(i) for i in range(shm.LAT_BUCKETS)] == [lib.fh_shm_lat_upper(i)
                                                                       for i in range(shm.LAT_BUCKETS)]
    for v in (0, 63, 64, 65, 1000, 123456, 10**9, 2**40, 2**63):
        i = lib.fh_shm_lat_index(v)
        assert shm.lat_lower_ns(i) <= v and (v <= shm.lat_upper_ns(i) or i == shm.LAT_BUCKETS - 1)


def test_key_prices_decode_both_widths():
    """handler.shm.key_prices against fh/shm.h's fh_shm_key and fh_shm_key_price (through cffi), for 32-bit (ITCH)
    and 64-bit signed prices: keys ascend with the price for bids, descend for asks."""
    p64 = [-(2**63), -10**12, -1, 0, 1, 1850100, 2**32, 2**63 - 1]
    p32 = [0, 1, 1850100, 2**32 - 1]
    for side in (0, 1):
        for bits, prices, dt in ((64, p64, np.uint64), (32, p32, np.uint32)):
            keys = np.array([lib.fh_shm_key(bits, side, p) for p in prices], dtype=dt)
            assert shm.key_prices(keys, side, bits).tolist() == prices
            assert [lib.fh_shm_key_price(bits, side, int(k)) for k in keys] == prices
            steps = [int(b) - int(a) for a, b in zip(keys, keys[1:])]
            assert all(s > 0 for s in steps) if side == 0 else all(s < 0 for s in steps)
