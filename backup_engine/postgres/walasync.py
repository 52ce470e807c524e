"""Asynchronous archive-push and prefetching archive-get, the way pgBackRest's archive-async
and WAL-G's parallel push do it, with the spool of `walspool.py`.

Push: the call PostgreSQL makes for segment N starts (if none runs) one worker per server that
stores N and every other `.ready` segment in pg_wal, several at once, writing `out/NAME.ok`
once each object is committed; the call itself waits only for N's answer. The calls for the
next segments then find their `.ok` and return without importing botocore (see
`walspool.fast_answer`). A segment is acknowledged to PostgreSQL only from an `.ok` the worker
wrote after the store acknowledged it, so a crash anywhere loses nothing: PostgreSQL calls again.

Fetch: the call for segment N fetches N itself, then (if none runs) starts one worker that
downloads the next `fetch_ahead` segments, each verified against its sha256 before it is
renamed into `in/`, following recovery as it consumes them, and deletes what is left when
recovery stops asking (promotion, end of archive).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from backup_engine.codecs import Codec
from backup_engine.errors import BackupEngineError
from backup_engine.postgres.control import MAX_SEGMENT, MIN_SEGMENT
from backup_engine.postgres.wal import WalNotFound, wal_fetch, wal_push
from backup_engine.postgres.walspool import (
    FETCH_LOCK,
    PUSH_LOCK,
    WANT,
    held,
    is_segment_name,
    next_segment,
    pushed,
    record_push_error,
    record_pushed,
    take_push_error,
    write_atomically,
)
from backup_engine.storage.base import Storage

Spawn = Callable[[], None]
Log = Callable[[str], None]


class WalPushFailed(BackupEngineError):
    """The push worker could not store this segment (PostgreSQL keeps it and calls again)."""


@dataclass(frozen=True)
class PushWorkerResult:
    pushed: int
    failed: int
    backlog_warnings: int


WORKER_PATIENCE = 0.05


@contextlib.contextmanager
def _worker_lock(path: Path) -> Iterator[bool]:
    """Hold the worker's lock file if no other worker does (True), recording this pid in it
    (operators, the kill drill); else False. It retries for WORKER_PATIENCE: a probe
    (`walspool.held`) holds the lock for microseconds and must not pass for a rival."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + WORKER_PATIENCE
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.005)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)


def worker_pid(lock: Path) -> int | None:
    """The pid of the worker holding `lock`, or None when no worker holds it. Creates
    nothing: the caller may be another user than the server's (a drill running as root)."""
    if not held(lock):
        return None
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def ready_names(pg_wal: Path) -> list[str]:
    """WAL files PostgreSQL has marked ready to archive, oldest first (history files sort
    before the segments of their timeline, as PostgreSQL archives them)."""
    try:
        entries = os.listdir(pg_wal / "archive_status")
    except FileNotFoundError:
        return []
    return sorted(e[: -len(".ready")] for e in entries if e.endswith(".ready"))


# --- push ---------------------------------------------------------------------------------


def push_async(wal_file: Path, spool: Path, spawn: Spawn, *, timeout: float = 300.0) -> bool:
    """Wait for the worker to store `wal_file` (starting it when none runs). False when this
    file is not one PostgreSQL marked ready (then the caller pushes it synchronously)."""
    pg_wal = wal_file.parent
    if not (pg_wal / "archive_status" / f"{wal_file.name}.ready").exists():
        return False
    deadline = time.monotonic() + timeout
    started = 0
    while time.monotonic() < deadline:
        if pushed(spool, wal_file):
            return True
        reason = take_push_error(spool, wal_file.name)
        if reason is not None:
            raise WalPushFailed(f"{wal_file.name} was not archived: {reason}")
        if not held(spool / PUSH_LOCK):
            if started and pushed(spool, wal_file):
                return True
            if started >= 3:  # the worker keeps ending without an answer: do it here
                return False
            spawn()
            started += 1
            time.sleep(0.05 * started)
        time.sleep(0.01)
    raise WalPushFailed(
        f"{wal_file.name} was not archived within {timeout:.0f} s by the push worker",
        hint=f"see {spool / 'worker.log'}; PostgreSQL will call again",
    )


def run_push_worker(
    storage: Storage,
    codec: Codec,
    pg_wal: Path,
    spool: Path,
    *,
    concurrency: int,
    queue_max_bytes: int,
    log: Log,
    idle_seconds: float = 2.0,
) -> PushWorkerResult:
    """Store every `.ready` file of pg_wal, `concurrency` at once, until none is left for
    `idle_seconds`. Only one worker per spool: a second one returns at once."""
    with _worker_lock(spool / PUSH_LOCK) as mine:
        if not mine:
            return PushWorkerResult(0, 0, 0)
        return _push_loop(storage, codec, pg_wal, spool, concurrency, queue_max_bytes, log,
                          idle_seconds)  # fmt: skip


def _push_one(storage: Storage, codec: Codec, spool: Path, wal_file: Path) -> None:
    before = os.stat(wal_file)
    result = wal_push(storage, wal_file, codec)
    record_pushed(spool, wal_file, before, result.sha256)


def _push_loop(storage: Storage, codec: Codec, pg_wal: Path, spool: Path, concurrency: int,
               queue_max_bytes: int, log: Log, idle_seconds: float,
               ) -> PushWorkerResult:  # fmt: skip
    done = failed = warnings = failing = 0
    retry_at: dict[str, float] = {}  # a failed file is tried again later, not in a tight loop
    stored: set[str] = set()
    idle_since = time.monotonic()
    next_clean = 0.0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        inflight: dict[str, Future[None]] = {}
        while True:
            now = time.monotonic()
            ready = ready_names(pg_wal)
            if now >= next_clean:
                _forget_acknowledged(spool, set(ready))
                warnings += _warn_backlog(pg_wal, spool, ready, queue_max_bytes, log)
                next_clean = now + 1.0
            if failing < 2 * concurrency:  # else the store is down: let the calls report it
                todo = [n for n in ready if n not in inflight and n not in stored
                        and retry_at.get(n, 0) <= now
                        and not pushed(spool, pg_wal / n)]  # fmt: skip
                for name in todo[: 2 * concurrency - len(inflight)]:
                    inflight[name] = pool.submit(_push_one, storage, codec, spool, pg_wal / name)
            if not inflight:
                if now - idle_since > idle_seconds or failing >= 2 * concurrency:
                    return PushWorkerResult(done, failed, warnings)
                time.sleep(0.02)
                continue
            wait(list(inflight.values()), timeout=0.5, return_when=FIRST_COMPLETED)
            for name, future in list(inflight.items()):
                if not future.done():
                    continue
                del inflight[name]
                error = future.exception()
                if error is None:
                    done, failing = done + 1, 0
                    stored.add(name)  # not read back from its .ok at every turn
                    continue
                failed, failing = failed + 1, failing + 1
                retry_at[name] = time.monotonic() + 5.0
                reason = error.message if isinstance(error, BackupEngineError) else repr(error)
                record_push_error(spool, name, reason)
                log(f"{name}: {reason}")
            idle_since = time.monotonic()


def _forget_acknowledged(spool: Path, ready: set[str]) -> None:
    """PostgreSQL renamed .ready to .done once a call answered 0: the .ok is no longer needed.
    A record half-written by a killed worker (`.NAME.ok.PID.tmp`) goes after a minute."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(spool / "out"):
            name, _, kind = entry.rpartition(".")
            path = spool / "out" / entry
            if kind in ("ok", "error") and name not in ready:
                path.unlink(missing_ok=True)
            elif kind == "tmp":
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - path.stat().st_mtime > 60:
                        path.unlink(missing_ok=True)


def _warn_backlog(pg_wal: Path, spool: Path, ready: list[str], limit: int, log: Log) -> int:
    if not limit:
        return 0
    backlog = 0
    for name in ready:
        with contextlib.suppress(OSError):
            backlog += os.stat(pg_wal / name).st_size
    if backlog <= limit:
        (spool / "backlog").unlink(missing_ok=True)
        return 0
    message = (f"WARNING: {backlog >> 20} MB of WAL waiting to be archived, above "
               f"[wal] queue_max_mb = {limit >> 20}: the archive is falling behind and pg_wal is "
               "growing (nothing is dropped)")  # fmt: skip
    write_atomically(spool / "backlog", message.encode())
    log(message)
    return 1


def push_backlog_warning(spool: Path) -> str | None:
    """The push worker's last backlog warning, if the backlog is still above the limit."""
    try:
        return (spool / "backlog").read_text().strip() or None
    except OSError:
        return None


# --- fetch --------------------------------------------------------------------------------


def want_prefetch(spool: Path, name: str, segment_size: int, spawn: Spawn) -> None:
    """After a slow fetch of segment NAME: prefetch from there on (starting the worker)."""
    write_atomically(spool / WANT, f"{name} {segment_size}".encode())
    if not held(spool / FETCH_LOCK):
        spawn()


def _read_want(spool: Path) -> tuple[str, int] | None:
    try:
        name, size = (spool / WANT).read_text().split()
        segment_size = int(size)
    except (OSError, ValueError):
        return None
    if not is_segment_name(name) or not MIN_SEGMENT <= segment_size <= MAX_SEGMENT:
        return None
    if segment_size & (segment_size - 1):
        return None
    return name, segment_size


def run_fetch_worker(
    storage: Storage,
    codec: Codec,
    spool: Path,
    *,
    ahead: int,
    concurrency: int,
    log: Log,
    idle_seconds: float = 30.0,
) -> int:
    """Keep the `ahead` segments after the last one recovery asked for in `in/`, until
    recovery stops consuming them for `idle_seconds`; then delete what is left. Returns how
    many segments were prefetched."""
    with _worker_lock(spool / FETCH_LOCK) as mine:
        if not mine:
            return 0
        inbox = spool / "in"
        inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            return _fetch_loop(storage, codec, spool, inbox, ahead, concurrency, log,
                               idle_seconds)  # fmt: skip
        except FileNotFoundError:  # the data directory went away (a drill's server, deleted)
            return 0
        finally:
            with contextlib.suppress(FileNotFoundError):
                for entry in os.listdir(inbox):
                    (inbox / entry).unlink(missing_ok=True)


def _fetch_loop(storage: Storage, codec: Codec, spool: Path, inbox: Path, ahead: int,
                concurrency: int, log: Log, idle_seconds: float) -> int:  # fmt: skip
    fetched = 0
    want: tuple[str, int] | None = None
    base = ""  # the last segment recovery has: prefetch what follows
    placed: set[str] = set()  # in inbox, not yet consumed
    missing: dict[str, float] = {}  # not in the archive (yet): when to look again
    progress = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        inflight: dict[str, Future[bool]] = {}
        while time.monotonic() - progress < idle_seconds:
            latest = _read_want(spool)
            if latest is not None and latest != want:
                want, base, progress = latest, latest[0], time.monotonic()
            if want is None:
                return fetched
            present = {entry for entry in os.listdir(inbox) if is_segment_name(entry)}
            consumed = placed - present
            if consumed:
                base = max(base, *consumed)
                placed -= consumed
                progress = time.monotonic()
            window = _window(base, want[1], ahead)
            for stale in present - set(window) - set(inflight):
                (inbox / stale).unlink(missing_ok=True)  # an old timeline, or behind recovery
                placed.discard(stale)
            for name in window:
                if len(inflight) >= concurrency:
                    break
                if name in present or name in inflight or missing.get(name, 0) > time.monotonic():
                    continue
                inflight[name] = pool.submit(_fetch_one, storage, codec, inbox, name, want[1])
            wait(list(inflight.values()), timeout=0.1, return_when=FIRST_COMPLETED)
            for name, future in list(inflight.items()):
                if not future.done():
                    continue
                del inflight[name]
                error = future.exception()
                if error is None and future.result():
                    placed.add(name)
                    fetched += 1
                elif error is None or isinstance(error, WalNotFound):
                    missing[name] = time.monotonic() + 1.0
                else:  # the slow path will meet it and stop recovery with the reason
                    missing[name] = time.monotonic() + 5.0
                    log(f"prefetch of {name} failed: {error}")
    return fetched


def _window(base: str, segment_size: int, ahead: int) -> list[str]:
    names = []
    name = base
    for _ in range(ahead):
        name = next_segment(name, segment_size)
        names.append(name)
    return names


def _fetch_one(storage: Storage, codec: Codec, inbox: Path, name: str, segment_size: int
               ) -> bool:  # fmt: skip
    """Download and verify NAME into the inbox (no more than a segment's size); False for a
    .partial (recovery ends in it: it is fetched by the call that needs it, never ahead)."""
    hidden = inbox / f".{name}.whole"  # a fast call waits while a hidden file of NAME is here
    try:
        # renamed there once verified
        result = wal_fetch(storage, name, hidden, codec, segment_size=segment_size)
        if result.partial:
            return False
        os.replace(hidden, inbox / name)
        return True
    finally:
        hidden.unlink(missing_ok=True)
