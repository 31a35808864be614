"""Where segments live: hugetlbfs when mounted with room, else /dev/shm; readers find either. Read under a
root directory shaped like /proc and /sys (as tests/fixtures/hosts are), never mocked."""

from __future__ import annotations

from handler import segments


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


def test_page_size_option_and_wake_path(tmp_path):
    root = host(tmp_path, "nodev /mnt/h1g hugetlbfs rw,pagesize=1024M 0 0\nnodev /mnt/h2 hugetlbfs rw 0 0\n")
    assert segments.hugetlbfs_mounts(root) == [("/mnt/h1g", 1 << 30), ("/mnt/h2", 2 << 20)]
    assert segments.wake_path("/mnt/h2/fh-x") == "/dev/shm/fh-x.wake"
    assert segments.wake_path("/dev/shm/fh-x") == "/dev/shm/fh-x.wake"
