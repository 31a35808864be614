"""Where segments live: hugetlbfs when mounted with room, else /dev/shm; readers find either. Read under a
root directory shaped like /proc and /sys (as tests/fixtures/hosts are), never mocked. And each segment's wake page:
named by fh_shm_wake_path (fh/shm.h; segments.wake_path calls it), never shared by two directories."""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time

import pytest

from handler import native, segments
from handler._native import ffi, lib
from handler.shm import Reader


def host(tmp_path, mounts: str, free_2m: int | None = None):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "mounts").write_text(mounts)
    if free_2m is not None:
        d = tmp_path / "sys/kernel/mm/hugepages/hugepages-2048kB"
        d.mkdir(parents=True)
        (d / "free_hugepages").write_text(f"{free_2m}\n")
    return str(tmp_path)


def test_no_hugetlbfs_means_dev_shm(tmp_path):
    root = host(tmp_path, "proc /proc proc rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n")
    assert segments.hugetlbfs_mounts(root) == []
    assert segments.writer_path("x", 10 << 20, root=root) == "/dev/shm/fh-x"
    assert segments.reader_path("x", root=root) == "/dev/shm/fh-x"


def test_hugetlbfs_with_room_is_chosen(tmp_path):
    mnt = tmp_path / "huge"
    mnt.mkdir()
    root = host(tmp_path, f"hugetlbfs {mnt} hugetlbfs rw,relatime,pagesize=2M 0 0\n", free_2m=64)
    assert segments.hugetlbfs_mounts(root) == [(str(mnt), 2 << 20)]
    assert segments.writer_path("x", 100 << 20, root=root) == f"{mnt}/fh-x"      # 64 x 2 MiB = 128 MiB free
    assert segments.writer_path("x", 200 << 20, root=root) == "/dev/shm/fh-x"    # no room: /dev/shm
    assert segments.writer_path("x", 1, directory=str(tmp_path), root=root) == f"{tmp_path}/fh-x"
    assert segments.reader_path("x", root=root) == "/dev/shm/fh-x"               # nothing there yet
    (mnt / "fh-x").write_bytes(b"")
    assert segments.reader_path("x", root=root) == f"{mnt}/fh-x"


def test_hugetlbfs_without_room_says_so(tmp_path):
    """A hugetlbfs file is sized without its pages and mapped with them: a mount that cannot hold the segment (here a
    2 MB-page mount capped at 4 MB) fails the writer with one line naming hugepages and the fix, and leaves no file."""
    import shutil
    import subprocess

    mnt = tmp_path / "huge"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a hugetlbfs needs root and mount(8)")
    p = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M,size=4M", "none", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a hugetlbfs here: {p.stderr.strip()}")
    try:
        with pytest.raises(native.NativeError) as e:
            native.Segment(mnt / "fh-x", max_levels=1 << 20)
        msg = str(e.value)
        assert "cannot map segment" in msg and "too few free hugepages" in msg and "vm.nr_hugepages" in msg
        assert "\n" not in msg and list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_page_size_option_and_wake_path(tmp_path):
    root = host(tmp_path, "nodev /mnt/h1g hugetlbfs rw,pagesize=1024M 0 0\nnodev /mnt/h2 hugetlbfs rw 0 0\n")
    assert segments.hugetlbfs_mounts(root) == [("/mnt/h1g", 1 << 30), ("/mnt/h2", 2 << 20)]
    # the wake page of a segment in a mount has the mount's hash in its name (/mnt/h2 need not exist: as given)
    assert segments.wake_path("/mnt/h2/fh-x") == f"/dev/shm/fh-x.{_fnv1a64(b'/mnt/h2'):016x}.wake"
    assert segments.wake_path("/dev/shm/fh-x") == "/dev/shm/fh-x.wake"


# ---- wake pages: a segment's own, named alike in C and Python ---------------------------------------------


def _c_wake_path(path: str, cap: int = 8192) -> str | None:
    out = ffi.new("char[]", cap)
    return None if lib.fh_shm_wake_path(os.fsencode(path), out, cap) else os.fsdecode(ffi.string(out))


def _fnv1a64(data: bytes) -> int:
    """FNV-1a 64, written here from its definition: the reference both names are checked against."""
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_fnv1a64_vectors():
    assert _fnv1a64(b"") == 0xcbf29ce484222325
    assert _fnv1a64(b"a") == 0xaf63dc4c8601ec8c
    assert _fnv1a64(b"foobar") == 0x85944171f73967e8


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Segment paths of every shape, and the directory each must be hashed as (None: /dev/shm)."""
    real = tmp_path / "mnt"
    (real / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "shmlink").symlink_to("/dev/shm")
    deep = real
    while len(str(deep)) + 201 < 4000:  # a 4,000-byte directory: paths near PATH_MAX
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    monkeypatch.chdir(real)
    r = str(real)
    return [("/dev/shm/x", None), ("/dev/shm//x", None), ("/dev/./shm/x", None), (f"{tmp_path}/shmlink/x", None),
            (f"{r}/x", r), (f"{r}//x", r), (f"{tmp_path}/link/x", r), ("x", r), ("./x", r), (f"{r}/sub/../x", r),
            ("/x", "/"), ("//x", "/"), ("/nonexistent-fh//x", "/nonexistent-fh"), (f"{deep}/fh-x", str(deep))]


def test_wake_path_same_in_c_and_python(places):
    for path, d in places:
        base = path.rsplit("/", 1)[-1]
        want = f"/dev/shm/{base}.wake" if d is None else f"/dev/shm/{base}.{_fnv1a64(d.encode()):016x}.wake"
        assert segments.wake_path(path) == want, path
        assert _c_wake_path(path) == want, path
        # the C cap: the name and its NUL exactly, or -1
        assert _c_wake_path(path, len(want) + 1) == want and _c_wake_path(path, len(want)) is None
    # one page per directory: /dev/shm, the tmp dir, /, the unresolvable one, the deep one
    assert len({segments.wake_path(p) for p, _ in places}) == 5


def _waiters(wake: str) -> int:
    """The waiter count of a wake page, read where the Python side names it (fh_shm_wake_t: futex, waiters)."""
    with open(wake, "rb") as f, mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_READ) as m:
        return struct.unpack_from("<I", m, 4)[0]


def _blocks(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 2], "big")
        out.append(data[i:i + 2 + n])
        i += 2 + n
    return out


def _follow_wake_ms(seg: native.Segment, eng: native.Engine, blocks: list[bytes]) -> float:
    """A reader of seg follows its events (Reader.events(follow=True): asleep in the futex wait of its wake page);
    the writer publishes: the milliseconds from the publish to the reader's first event."""
    got = {}
    with Reader(seg.path) as r:
        head = r.head

        def follow():
            for ev in r.events(follow=True, timeout=2.0):
                got["t"], got["seq"] = time.perf_counter(), ev["seq"]
                return

        th = threading.Thread(target=follow)
        th.start()
        wake = segments.wake_path(seg.path)
        deadline = time.monotonic() + 2
        while _waiters(wake) == 0 and time.monotonic() < deadline:
            time.sleep(0.0002)
        assert _waiters(wake) == 1, f"the reader does not sleep on {wake}"
        t0 = time.perf_counter()
        while r.head == head and blocks:  # until something is published (a message may change no BBO)
            eng.apply_blocks(blocks.pop(0))
        th.join(5)
        assert not th.is_alive() and got.get("seq") == head + 1
    return (got["t"] - t0) * 1e3


def test_two_segments_of_one_basename(tmp_path):
    """Two writers of one basename in two directories (two hugetlbfs mounts, say): each has its own wake page,
    the second does not replace the first's, a reader following each is woken by its own writer at once (not by
    its 100 ms re-check), and closing one leaves the other's page."""
    base = f"fh-wake-test-{os.getpid()}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pa, pb = str(tmp_path / "a" / base), str(tmp_path / "b" / base)
    wa, wb = segments.wake_path(pa), segments.wake_path(pb)
    assert wa != wb and wa.startswith(f"/dev/shm/{base}.") and wb.startswith(f"/dev/shm/{base}.")
    data = _blocks(native.synth_bytes(3000, 5, 7))
    sa = sb = None
    try:
        sa = native.Segment(pa, "a", max_levels=1 << 12, event_capacity=1 << 10, ladder_books=0)
        ino = os.stat(wa).st_ino
        sb = native.Segment(pb, "b", max_levels=1 << 12, event_capacity=1 << 10, ladder_books=0)
        assert os.stat(wa).st_ino == ino and os.stat(wb).st_ino != ino
        cfg = native.EngineConfig(instruments=16, orders=1 << 12, levels=1 << 12)
        ea, eb = native.Engine(cfg, segment=sa), native.Engine(cfg, segment=sb)
        ea.apply_blocks(b"".join(data[:500]))
        eb.apply_blocks(b"".join(data[:500]))
        ms_a = _follow_wake_ms(sa, ea, data[500:1000])
        ms_b = _follow_wake_ms(sb, eb, data[500:1000])
        assert ms_a < 50 and ms_b < 50, (ms_a, ms_b)
        sb.close(unlink=True)
        assert not os.path.exists(wb) and not os.path.exists(pb)
        assert os.stat(wa).st_ino == ino
        assert _follow_wake_ms(sa, ea, data[1000:1500]) < 50
        sa.close(unlink=True)
        assert not os.path.exists(wa)
    finally:
        for s in (sa, sb):
            if s is not None:
                s.close(unlink=True)
        for w in (wa, wb):
            if os.path.exists(w):
                os.unlink(w)
