"""`pg wal-push` and `pg wal-fetch`: what PostgreSQL's archive_command and restore_command call.

Exit codes matter more than output here. wal-push exits non-zero on any failure, so PostgreSQL
keeps the segment and retries. wal-fetch exits 5 when the file is not in the archive (the
normal end of recovery) and 126 on any other failure: PostgreSQL treats exit codes above 125 as
fatal and stops recovery, instead of taking "I could not fetch it" for "there is no more WAL"
and promoting at the wrong point.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from backup_engine import logs
from backup_engine.commands.context import CliContext
from backup_engine.errors import BackupEngineError

WAL_FETCH_FATAL = 126


class WalFetchFailed(BackupEngineError):
    exit_code = WAL_FETCH_FATAL


def register_wal_commands(group: click.Group) -> None:
    group.add_command(wal_push)
    group.add_command(wal_fetch)
    group.add_command(wal_stream)
    group.add_command(wal_worker)


def _spawner(obj: CliContext, kind: str, pg_wal: Path, spool: Path) -> Callable[[], None]:
    """Start this tool's WAL worker for pg_wal, detached (it outlives this call), logging to
    the spool's worker.log. The worker is forked from this process when no other thread runs
    (nothing can be copied half-held), saving the interpreter start and the imports: the push
    worker always (it starts before any read), the fetch worker once wal-fetch's threaded
    reader has been joined. It opens its own storage: no connection is shared."""

    def spawn() -> None:
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = spool / "worker.log"
        if log.exists() and log.stat().st_size > 1 << 20:
            log.unlink()
        import threading

        if threading.active_count() == 1:
            _fork_worker(obj, kind, pg_wal.absolute(), log)
            return
        import subprocess

        from backup_engine.postgres.recovery_config import tool_argv

        words = [*tool_argv()]
        if obj.repo:
            words += ["--repo", obj.repo]
        if obj.config:
            words += ["--config", str(obj.config.absolute())]
        with log.open("ab") as out:
            subprocess.Popen([*words, "pg", "wal-worker", kind, str(pg_wal.absolute())],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True, close_fds=True)  # fmt: skip

    return spawn


def _fork_worker(obj: CliContext, kind: str, pg_wal: Path, log: Path) -> None:
    import os
    import sys
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        return
    code = 0
    try:  # the child: its own session, its output to the log, never back into the caller
        os.setsid()
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        _run_worker(obj, kind, pg_wal)
    except BaseException:  # noqa: BLE001 - a worker's failure is the log's, never the caller's
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _remember(obj: CliContext, pg_wal: Path, url: str) -> None:
    from backup_engine.postgres.walspool import remember_repository

    config = str(obj.config) if obj.config else None
    remember_repository(pg_wal, config, obj.repo, url)


@click.command(name="wal-push")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def wal_push(obj: CliContext, path: Path) -> None:
    """Archive one WAL file (archive_command = 'backup-engine pg wal-push %p').

    With `[wal] push_mode = "async"` the call also starts a worker that pushes the next ready
    segments in parallel; the calls for those answer from the spool in milliseconds."""
    from backup_engine.postgres.wal import wal_push as push

    settings = obj.settings()
    several = len(settings.repositories) > 1 and settings.selected is None
    if settings.wal.push_mode == "async" and settings.repository.url and not several:
        from backup_engine.postgres.walasync import push_async
        from backup_engine.postgres.walspool import spool_of

        spool = spool_of(path.parent, settings.repository.url)
        try:
            _remember(obj, path.parent, settings.repository.url)
            done = push_async(path, spool, _spawner(obj, "push", path.parent, spool))
        except OSError as exc:  # no spool here (pg_wal not writable...): push it ourselves
            logs.warning(f"asynchronous archiving unavailable ({exc}); pushing directly")
            done = False
        if done:
            logs.info(f"{path.name} archived (asynchronously)", segment=path.name)
            return
    from backup_engine.repositories import for_each

    stores = settings.open_storages()  # each in turn (the async worker serves one repository)
    codec = settings.compression.get()
    pushed = for_each(stores, settings.repository.acknowledge, f"archive {path.name}",
                      lambda storage: push(storage, path, codec))  # fmt: skip
    for number, result in pushed:
        state = "already archived (identical)" if result.already_archived else "archived"
        into = f" in repository {number}" if len(stores) > 1 else ""
        logs.info(  # stderr: PostgreSQL logs archive_command's stderr; stdout would be lost
            f"{result.name} {state}{into}: {result.raw_size} -> {result.stored_size} bytes "
            f"in {result.seconds:.2f} s",
            segment=result.name,
        )


@click.command(name="wal-fetch")
@click.argument("name")
@click.argument("destination", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def wal_fetch(obj: CliContext, name: str, destination: Path) -> None:
    """Fetch one WAL file (restore_command = 'backup-engine pg wal-fetch %f %p')."""
    from backup_engine.postgres.control import data_dir_of, segment_size_of
    from backup_engine.postgres.wal import WalNotFound
    from backup_engine.postgres.wal import wal_fetch as fetch
    from backup_engine.postgres.walspool import is_segment_name, spool_of

    data_dir = data_dir_of(destination)
    segment_size = segment_size_of(data_dir) if data_dir else None  # bounds what is written
    try:
        settings = obj.settings()
        result = fetch(settings.open_storage(), name, destination, settings.compression.get(),
                       segment_size=segment_size)  # fmt: skip
    except WalNotFound:
        raise
    except BackupEngineError as exc:
        raise WalFetchFailed(f"wal-fetch {name}: {exc.message}", hint=exc.hint) from exc
    except Exception as exc:  # any surprise must stop recovery, not end it
        raise WalFetchFailed(f"wal-fetch {name}: {type(exc).__name__}: {exc}") from exc
    if result.partial:
        logs.info(f"{name} served from its .partial copy (wal-stream)", segment=name)
        return
    url = settings.repository.url
    if settings.wal.fetch_ahead and url and is_segment_name(name):
        try:  # prefetching only speeds recovery up: it never fails a fetch that succeeded
            from backup_engine.postgres.walasync import want_prefetch

            spool = spool_of(destination.parent, url)
            _remember(obj, destination.parent, url)
            spawn = _spawner(obj, "fetch", destination.parent, spool)
            want_prefetch(spool, name, segment_size or result.raw_size, spawn)
        except OSError as exc:
            logs.warning(f"prefetching after {name} is off for this call: {exc}")


@click.command(name="wal-worker", hidden=True)
@click.argument("kind", type=click.Choice(["push", "fetch"]))
@click.argument("pg_wal", type=click.Path(path_type=Path, file_okay=False))
@click.pass_obj
def wal_worker(obj: CliContext, kind: str, pg_wal: Path) -> None:
    """The detached worker wal-fetch starts (one per server and repository)."""
    _run_worker(obj, kind, pg_wal)


def _run_worker(obj: CliContext, kind: str, pg_wal: Path) -> None:

    from backup_engine.codecs import get_codec
    from backup_engine.postgres.walasync import run_fetch_worker, run_push_worker
    from backup_engine.postgres.walspool import spool_of

    logs.with_timestamps()

    def log(line: str) -> None:
        logs.info(f"{kind} {line}", worker=kind)

    settings = obj.settings()
    # Segments are compressed side by side: one zstd thread each, not a pool per segment.
    zstd = settings.compression
    codec = get_codec(zstd.codec, level=zstd.level, threads=0)
    storage, wal = settings.open_storage(), settings.wal
    spool = spool_of(pg_wal, settings.repository.url or "")
    if kind == "push":
        result = run_push_worker(storage, codec, pg_wal, spool, concurrency=wal.push_concurrency,
                                 queue_max_bytes=wal.queue_max_mb << 20, log=log)  # fmt: skip
        if result.pushed or result.failed:
            log(f"{result.pushed} archived, {result.failed} failed")
    else:
        count = run_fetch_worker(storage, codec, spool, ahead=wal.fetch_ahead,
                                 concurrency=wal.fetch_concurrency, log=log)  # fmt: skip
        log(f"{count} segments prefetched")


@click.command(name="wal-stream")
@click.option("--dsn", help="libpq connection string (a user with REPLICATION).")
@click.option("--slot", default="restore_drill", show_default=True, help="Replication slot name.")
@click.option("--no-create-slot", is_flag=True, help="Use an existing slot; do not create it.")
@click.option(
    "--spool-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Local directory pg_receivewal writes into (keep it on durable storage).",
)
@click.option(
    "--partial-interval",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between uploads of the segment being written (bounds the repository's RPO).",
)
@click.option("--retry-delay", type=float, default=5.0, show_default=True, help="Seconds.")
@click.pass_obj
def wal_stream(
    obj: CliContext,
    dsn: str | None,
    slot: str,
    no_create_slot: bool,
    spool_dir: Path,
    partial_interval: float,
    retry_delay: float,
) -> None:
    """Stream WAL with pg_receivewal and ship it to the repository, until stopped.

    For servers where archive_command cannot be set, or to get a lower RPO: archive_command
    ships a segment when it is full or archive_timeout expires; wal-stream receives every
    record as it is written and uploads the open segment every --partial-interval seconds.
    """
    import signal
    import threading

    from backup_engine.postgres.walstream import WalStreamer

    settings = obj.settings(**{"postgres.dsn": dsn})
    streamer = WalStreamer(
        settings.open_storage(),
        dsn=settings.postgres.dsn,
        slot=slot,
        spool_dir=spool_dir,
        codec=settings.compression.get(),
        partial_interval=partial_interval,
        bindir=settings.postgres.bindir,
    )
    if not no_create_slot:
        streamer.create_slot()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    logs.with_timestamps()
    logs.info(f"streaming WAL from slot {slot} into {streamer.storage.url}", slot=slot)
    while not stop.is_set():
        stats = streamer.run(stop)
        if not stop.is_set():
            logs.warning(
                f"pg_receivewal stopped (shipped {stats.segments_shipped} segments so far); "
                f"reconnecting in {retry_delay:.0f} s",
                segments_shipped=stats.segments_shipped,
            )
            stop.wait(retry_delay)
    logs.info(
        f"stopped: {streamer.stats.segments_shipped} segments and "
        f"{streamer.stats.partial_uploads} partial uploads shipped",
        segments_shipped=streamer.stats.segments_shipped,
        partial_uploads=streamer.stats.partial_uploads,
    )
