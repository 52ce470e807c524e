"""SafeTree written from several threads, as a media restore does: every thread keeps its own
directory descriptors, two threads may create the same missing directory at once, and the
refusals stay what they are from one thread."""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backup_engine.errors import CorruptObject
from backup_engine.safefs import Attributes, SafeTree


def test_threads_writing_into_the_same_new_directories_all_land(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    names = [f"a/b{i % 7}/c{i % 3}/f{i}" for i in range(2000)]  # directories no entry made

    def write(name: str) -> int:
        data = name.encode() * 3
        return tree.write_file(name, io.BytesIO(data), len(data), Attributes(0o640, 10**18))

    opened = len(os.listdir("/proc/self/fd"))
    with SafeTree(target, "test") as tree, ThreadPoolExecutor(8) as pool:
        written = sum(pool.map(write, names))
        tree.finish()
    assert len(os.listdir("/proc/self/fd")) == opened  # every thread's directories closed
    assert written == sum(len(n.encode()) * 3 for n in names)
    for name in names:
        path = target / name
        assert path.read_bytes() == name.encode() * 3
        assert (path.stat().st_mode & 0o777, path.stat().st_mtime_ns) == (0o640, 10**18)


def test_threads_racing_to_create_one_directory_all_succeed(tmp_path: Path) -> None:
    """Eight threads released at once, each writing into the same missing r/d/e: all of them
    walk it, one mkdir wins, the others find it made."""
    target = tmp_path / "out"
    target.mkdir()
    threads = 8
    barrier = threading.Barrier(threads)

    def write(i: int) -> None:
        for r in range(40):
            barrier.wait(timeout=30)  # a thread that failed breaks it: no hang
            tree.write_file(f"r{r}/d/e/f{i}", io.BytesIO(b"x"), 1, Attributes(0o644))

    with SafeTree(target, "test") as tree, ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(write, i) for i in range(threads)]:
            future.result()
    assert sum(1 for _ in target.glob("r*/d/e/f*")) == 40 * threads


def test_a_symlink_on_the_way_is_refused_from_any_thread(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (tmp_path / "outside").mkdir()
    (target / "link").symlink_to(tmp_path / "outside")

    def write(i: int) -> None:
        tree.write_file(f"link/f{i}", io.BytesIO(b"x"), 1, Attributes(0o644))

    with SafeTree(target, "test") as tree, ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(write, i) for i in range(20)]
        for future in futures:
            with pytest.raises(CorruptObject, match="symbolic link"):
                future.result()
    assert not any((tmp_path / "outside").iterdir())
