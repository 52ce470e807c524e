"""Asynchronous wal-push and prefetching wal-fetch: nothing is acknowledged that is not stored,
a spool answer is only ever for the very file it was about, prefetched segments are verified
and follow recovery, and a real server archives and recovers through both."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.wal import wal_fetch, wal_push
from backup_engine.postgres.walasync import run_fetch_worker, run_push_worker
from backup_engine.postgres.walspool import (
    REPOSITORY_ENV,
    fast_answer,
    next_segment,
    pushed,
    record_pushed,
    remember_repository,
    spool_of,
)
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import LocalStorage

ZSTD = get_codec("zstd")
SEGMENT = 1 << 20  # small segments keep the tests fast; names work for any power of two


def test_segment_names_follow_on_for_every_segment_size() -> None:
    assert next_segment("000000010000000000000001", 16 << 20) == "000000010000000000000002"
    assert next_segment("0000000100000000000000FF", 16 << 20) == "000000010000000100000000"
    assert next_segment("000000020000000A00000003", 1 << 30) == "000000020000000B00000000"
    assert next_segment("0000000100000000000003FF", 4 << 20) == "000000010000000100000000"


def test_the_fast_path_knows_where_the_repository_url_comes_from() -> None:
    from backup_engine.config import CONFIG_ENV, DEFAULT_CONFIG_FILE
    from backup_engine.options import OPTIONS
    from backup_engine.postgres import walspool

    (url,) = [o for o in OPTIONS if (o.section, o.name) == ("repository", "url")]
    assert url.env == (REPOSITORY_ENV,)
    assert (CONFIG_ENV, str(DEFAULT_CONFIG_FILE)) == (walspool.CONFIG_ENV, walspool.DEFAULT_CONFIG)


def _fake_pg_wal(root: Path, count: int, *, first: int = 1) -> list[Path]:
    pg_wal = root / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True, exist_ok=True)
    files = []
    for number in range(first, first + count):
        path = pg_wal / f"0000000100000000{number:08X}"
        path.write_bytes(os.urandom(SEGMENT // 4) * 4)
        (pg_wal / "archive_status" / f"{path.name}.ready").touch()
        files.append(path)
    return files


def test_a_spool_answer_is_only_for_the_very_file_and_repository_it_was_about(
    tmp_path: Path,
) -> None:
    (wal_file,) = _fake_pg_wal(tmp_path, 1)
    spool = spool_of(wal_file.parent, "file:///r")
    assert not pushed(spool, wal_file)
    record_pushed(spool, wal_file, os.stat(wal_file), "x")
    assert pushed(spool, wal_file)
    # Until the full command has resolved these flags once, the fast path does not guess.
    assert fast_answer(["--repo", "file:///r", "pg", "wal-push", str(wal_file)]) is None
    remember_repository(wal_file.parent, None, "file:///r", "file:///r")
    assert fast_answer(["--repo", "file:///r", "pg", "wal-push", str(wal_file)]) == 0
    # The archive_command now names another repository: the answer was not about it.
    remember_repository(wal_file.parent, None, "file:///other", "file:///other")
    assert fast_answer(["--repo", "file:///other", "pg", "wal-push", str(wal_file)]) is None
    config = tmp_path / "be.toml"
    config.write_text('[repository]\nurl = "file:///r"\n')
    remember_repository(wal_file.parent, str(config), None, "file:///r")
    assert fast_answer(["--config", str(config), "pg", "wal-push", str(wal_file)]) == 0
    config.write_text('[repository]\nurl = "s3://elsewhere"\n')  # edited: resolved anew
    assert fast_answer(["--config", str(config), "pg", "wal-push", str(wal_file)]) is None
    replacement = wal_file.with_name("new")
    replacement.write_bytes(wal_file.read_bytes())
    os.replace(replacement, wal_file)  # same name and content, another file
    assert not pushed(spool, wal_file)
    assert fast_answer(["--repo", "file:///r", "pg", "wal-push", str(wal_file)]) is None
    (spool / "out" / f"{wal_file.name}.ok").write_text("{not json")
    assert not pushed(spool, wal_file)
    assert fast_answer(["--repo", "file:///r", "pg", "wal-push", "-x", str(wal_file)]) is None
    assert fast_answer(["--other", "pg", "wal-push", str(wal_file)]) is None


def test_the_push_worker_stores_every_ready_file_before_saying_so(tmp_path: Path) -> None:
    files = _fake_pg_wal(tmp_path, 12)
    repo = tmp_path / "repo"
    repo.mkdir()
    storage = LocalStorage(repo)
    lines: list[str] = []
    spool = spool_of(files[0].parent, storage.url)
    result = run_push_worker(storage, ZSTD, files[0].parent, spool, concurrency=4,
                             queue_max_bytes=4 * SEGMENT, log=lines.append,
                             idle_seconds=0.2)  # fmt: skip
    assert (result.pushed, result.failed) == (12, 0)
    assert result.backlog_warnings == 1 and "above [wal] queue_max_mb" in lines[0]
    for path in files:
        assert pushed(spool, path)
        fetched = tmp_path / "fetched"
        wal_fetch(storage, path.name, fetched, ZSTD)
        assert (
            hashlib.sha256(fetched.read_bytes()).digest()
            == hashlib.sha256(path.read_bytes()).digest()
        )
    # PostgreSQL acknowledges (.ready -> .done): the next worker forgets the answers.
    for path in files:
        status = path.parent / "archive_status"
        (status / f"{path.name}.ready").rename(status / f"{path.name}.done")
    run_push_worker(storage, ZSTD, files[0].parent, spool, concurrency=4, queue_max_bytes=0,
                    log=lines.append, idle_seconds=0.1)  # fmt: skip
    assert os.listdir(spool / "out") == []


def test_a_store_that_fails_acknowledges_nothing_and_says_why(tmp_path: Path) -> None:
    files = _fake_pg_wal(tmp_path, 3)
    broken = tmp_path / "not-a-directory"
    broken.write_text("")
    lines: list[str] = []
    spool = spool_of(files[0].parent, "file:///broken")
    result = run_push_worker(LocalStorage(broken), ZSTD, files[0].parent, spool, concurrency=2,
                             queue_max_bytes=0, log=lines.append, idle_seconds=0.1)  # fmt: skip
    assert result.pushed == 0 and result.failed >= 2
    assert not any(pushed(spool, path) for path in files)
    errors = sorted((spool / "out").glob("*.error"))
    assert errors and all(e.read_text() for e in errors)


def test_prefetched_segments_are_verified_and_follow_recovery(tmp_path: Path) -> None:
    source = _fake_pg_wal(tmp_path / "source", 10)
    repo = tmp_path / "repo"
    repo.mkdir()
    storage = LocalStorage(repo)
    for path in source:
        wal_push(storage, path, ZSTD)
    # A forged object: its content no longer matches the recorded sha256.
    forged = next(repo.rglob(f"{source[6].name}*"))
    forged.write_bytes(ZSTD.compressor().compress(b"forged") + ZSTD.compressor().flush())
    pg_wal = tmp_path / "restored" / "pg_wal"
    pg_wal.mkdir(parents=True)
    destination = pg_wal / "RECOVERYXLOG"
    wal_fetch(storage, source[0].name, destination, ZSTD)  # the slow call for the first one
    spool = spool_of(pg_wal, storage.url)
    spool.mkdir(parents=True)
    (spool / "want").write_text(f"{source[0].name} {SEGMENT}")
    remember_repository(pg_wal, None, storage.url, storage.url)
    worker = threading.Thread(target=run_fetch_worker, args=(storage, ZSTD, spool),
                              kwargs={"ahead": 4, "concurrency": 2, "log": print,
                                      "idle_seconds": 1.5})  # fmt: skip
    worker.start()
    served = []
    for path in source[1:]:
        answer = None
        for _ in range(200):  # recovery asks, as PostgreSQL does, one segment after another
            answer = fast_answer(["--repo", storage.url, "pg", "wal-fetch", path.name,
                                  str(destination)])  # fmt: skip
            if answer is not None:
                break
            time.sleep(0.01)
        if answer is None:
            break
        assert destination.read_bytes() == path.read_bytes()
        served.append(path.name)
    assert served == [p.name for p in source[1:6]]  # never the forged 7th, nor past it
    worker.join()
    assert os.listdir(spool / "in") == []  # what recovery did not take is deleted


@pytest.mark.postgres
def test_a_real_server_archives_asynchronously_and_recovers_with_prefetch(
    embedded_s3: EmbeddedS3,
) -> None:
    repo = embedded_s3.storage(f"async-{os.urandom(4).hex()}")
    env = {**repo.environment(), "BACKUP_ENGINE_WAL_PUSH_MODE": "async"}
    archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_"))}
        return subprocess.run([sys.executable, "-m", "backup_engine", "--repo", repo.url, *args],
                              capture_output=True, text=True, env={**clean, **env}, timeout=300,
                              check=False)  # fmt: skip

    with LocalPostgresBackend() as servers:
        source = servers.create(settings={"archive_mode": "on", "archive_command": archive},
                                env=env)  # fmt: skip
        with connect(source.dsn()) as conn:
            conn.execute("CREATE TABLE t (n int, pad text)")
        assert cli("pg", "backup", "--dsn", source.dsn()).returncode == 0
        with connect(source.dsn()) as conn:
            for _ in range(12):  # segments pile up, as after a burst of writes
                conn.execute(
                    "INSERT INTO t SELECT n, repeat('x', 300) FROM generate_series(1, 30000) n"
                )
                conn.execute("SELECT pg_switch_wal()")
            rows = conn.execute("SELECT count(*) FROM t").fetchone()
        last = switch_and_wait_archived(source.dsn(), repo, timeout=120).name
        stats: tuple[object, ...] | None = None
        for _ in range(300):  # PostgreSQL counts it once the call answered
            with connect(source.dsn()) as conn:
                stats = conn.execute("SELECT last_archived_wal, archived_count, failed_count "
                                     "FROM pg_stat_archiver").fetchone()  # fmt: skip
            if stats is not None and stats[0] == last:
                break
            time.sleep(0.1)
        assert stats is not None and stats[0] == last and stats[2] == 0
        assert int(str(stats[1])) >= 13
        log = source.log_file.read_text()  # type: ignore[attr-defined]
        assert log.count("archived (asynchronously)") >= 6  # most answered from the spool

        pgdata = servers.new_data_dir()
        restored = cli("pg", "restore", "latest", "--pgdata", str(pgdata))
        assert restored.returncode == 0, restored.stderr
        copy = servers.start_existing(pgdata, env=env, wait=False)
        waited = cli("pg", "wait-recovery", "--dsn", copy.dsn(), "--pgdata", str(pgdata))
        assert waited.returncode == 0, waited.stderr
        with connect(copy.dsn()) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == rows
        log = copy.log_file.read_text()  # type: ignore[attr-defined]
        assert log.count("restored from the prefetch spool") >= 6, log


def _hold(lock: Path) -> int:
    """Hold `lock` as a running worker does (the caller closes the fd to release it)."""
    import fcntl

    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_fast_call_waits_for_the_running_worker_instead_of_starting_the_full_command(
    tmp_path: Path,
) -> None:
    first, second = _fake_pg_wal(tmp_path, 2)
    spool = spool_of(first.parent, "file:///r")
    remember_repository(first.parent, None, "file:///r", "file:///r")
    argv = ["--repo", "file:///r", "pg", "wal-push"]
    assert fast_answer([*argv, str(first)]) is None  # no worker: the full command starts one
    fd = _hold(spool / "push.lock")
    try:
        later = threading.Timer(0.3, record_pushed, (spool, first, os.stat(first), "x"))
        later.start()
        started = time.monotonic()
        assert fast_answer([*argv, str(first)]) == 0  # waited for the worker's answer
        assert time.monotonic() - started >= 0.25
        (spool / "out" / f"{second.name}.error").write_text("the store said no")
        assert fast_answer([*argv, str(second)]) is None  # the full command reports it
    finally:
        os.close(fd)
    (spool / "out" / f"{second.name}.error").unlink()
    assert fast_answer([*argv, str(second)]) is None  # the worker ended: nothing to wait for


def test_a_fast_fetch_waits_only_for_a_segment_the_worker_is_downloading(
    tmp_path: Path,
) -> None:
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    spool = spool_of(pg_wal, "file:///r")
    remember_repository(pg_wal, None, "file:///r", "file:///r")
    inbox = spool / "in"
    inbox.mkdir(parents=True)
    name, other = "000000010000000000000005", "000000010000000000000006"
    destination = pg_wal / "RECOVERYXLOG"
    argv = ["--repo", "file:///r", "pg", "wal-fetch"]
    fd = _hold(spool / "fetch.lock")
    try:
        hidden = inbox / f".{name}.whole"
        hidden.write_bytes(b"verified segment")
        threading.Timer(0.3, os.replace, (hidden, inbox / name)).start()
        assert fast_answer([*argv, name, str(destination)]) == 0
        assert destination.read_bytes() == b"verified segment"
        assert fast_answer([*argv, other, str(destination)]) is None  # not coming: fetch it
        hidden = inbox / f".{other}.whole"
        hidden.write_bytes(b"a .partial, or a failed download")
        threading.Timer(0.2, hidden.unlink).start()
        assert fast_answer([*argv, other, str(destination)]) is None
        assert destination.read_bytes() == b"verified segment"
    finally:
        os.close(fd)
