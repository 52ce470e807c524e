"""Taking a base backup: the server's archives streamed (and compressed) into the repository.

PostgreSQL 15 and later: our own BASE_BACKUP client (replication.py, backup_stream.py), one
object per tablespace, compressed on the server by default. 13 and 14: pg_basebackup piped
into this process (basebackup_pipe.py), one tablespace only. Either way nothing is staged on
disk, and `backup.json`, written last, records what PostgreSQL said about the backup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from backup_engine import __version__, logs
from backup_engine.codecs import Codec, get_codec
from backup_engine.errors import CommandFailed, StorageError, UsageError
from backup_engine.integrity import Expected, verified_content
from backup_engine.locks import repository_lock
from backup_engine.manifests import encryption_extra
from backup_engine.postgres.backup_facts import MANIFEST_MEMBER
from backup_engine.postgres.backup_stream import Streamed, stream_backup
from backup_engine.postgres.basebackup_pipe import pipe_backup
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.chain import (
    MAX_CHAIN,
    MIN_MAJOR,
    BrokenChain,
    backup_chain,
    choose_type,
    pick_parent,
)
from backup_engine.postgres.connection import (
    ServerFacts,
    describe,
    next_xid,
    server_facts,
    setting,
    system_identifier,
    tablespace_names,
)
from backup_engine.postgres.lsn import format_lsn, wal_file_name
from backup_engine.postgres.manifest import (
    FULL,
    INCREMENTAL,
    PG_BASEBACKUP,
    PROTOCOL,
    BaseBackupManifest,
    Tablespace,
    base_backup_prefix,
    manifest_key,
)
from backup_engine.postgres.replication import MAX_RATE_KB, BackupRequest, open_replication
from backup_engine.postgres.replication import MIN_MAJOR as PROTOCOL_MAJOR
from backup_engine.progress import Progress, ProgressTask
from backup_engine.storage import Storage

COMPRESS_PLACES = ("server", "client")
CHECKPOINTS = ("fast", "spread")


@dataclass(frozen=True)
class BaseBackupOptions:
    dsn: str = ""
    bindir: str | None = None
    label: str | None = None
    lock_wait: float = 0  # seconds to wait for another base backup to finish
    backup_type: str = FULL  # or INCREMENTAL (PostgreSQL 17+): see chain.py
    full_on: str = ""  # with INCREMENTAL: the weekday whose backup is a full one ("" never)
    compress: str = "server"  # where zstd runs: on the database server, or here
    server_workers: int = 2  # zstd threads the server may use for it (0: its backend alone)
    checkpoint: str = "fast"  # "spread": PostgreSQL's own pace (can delay the start by minutes)
    max_rate_kb: int = 0  # the server sends at most this many kB/s; 0: no limit

    def __post_init__(self) -> None:
        if self.compress not in COMPRESS_PLACES:
            raise UsageError(f"compress = {self.compress!r}", hint="use server or client")
        if self.checkpoint not in CHECKPOINTS:
            raise UsageError(f"checkpoint = {self.checkpoint!r}", hint="use fast or spread")
        low, high = MAX_RATE_KB
        if self.max_rate_kb and not low <= self.max_rate_kb <= high:
            raise UsageError(
                f"max_rate_kb = {self.max_rate_kb}", hint=f"use 0 (no limit) or {low} to {high}"
            )


def take_base_backup(
    storage: Storage,
    codec: Codec,
    options: BaseBackupOptions,
    *,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BaseBackupManifest:
    """Stream a base backup into `storage`; return its manifest, written last."""
    progress = progress or Progress()
    facts = server_facts(options.dsn)  # fails fast, with a clear message, if unreachable
    storage.check()
    with repository_lock(storage, "postgres-base", wait=options.lock_wait):
        return _take(storage, codec, options, facts, progress, clock)


def _take(
    storage: Storage,
    codec: Codec,
    options: BaseBackupOptions,
    facts: ServerFacts,
    progress: Progress,
    clock: Callable[[], datetime],
) -> BaseBackupManifest:
    started = clock()
    parent = None
    if choose_type(options.backup_type, options.full_on, started) == INCREMENTAL:
        parent = _incremental_parent(storage, options.dsn, facts)
    try:
        return _stream(storage, codec, options, facts, progress, clock, started, parent)
    except CommandFailed as exc:
        # The server checks the parent against its WAL summaries before sending anything.
        if parent is not None and ("summar" in exc.message or "system identifier" in exc.message):
            raise UsageError(
                f"no incremental backup on {parent.backup_id}: {exc.message}",
                hint="summaries must cover the time since that backup (summarize_wal on "
                "then, wal_summary_keep_time long enough); take a full backup: --type full",
            ) from None
        raise


def _incremental_parent(
    storage: Storage, dsn: str, facts: ServerFacts
) -> BaseBackupManifest | None:
    """The backup the incremental builds on, or None (then a full one is taken, said so)."""
    if facts.major < MIN_MAJOR:
        raise UsageError(
            f"incremental backups need PostgreSQL {MIN_MAJOR} or later; this server is "
            f"{facts.version}",
            hint='take full backups: --type full, or [postgres] backup_type = "full"',
        )
    if setting(dsn, "summarize_wal") != "on":
        raise UsageError(
            "incremental backups need summarize_wal = on on the server (it is off)",
            hint="ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf(); then take a "
            "full backup, which later incrementals build on",
        )
    parent = pick_parent(BASE_BACKUPS.list(storage).backups, facts.major, system_identifier(dsn))
    if parent is None:
        logs.warning("no earlier backup of this server to build on: taking a full backup")
        return None
    try:  # never extend a chain a restore would refuse
        chain = backup_chain(storage, parent)
    except BrokenChain as exc:
        logs.warning(f"the newest backup cannot be built on ({exc.message}): taking a full backup")
        return None
    if len(chain) >= MAX_CHAIN:
        logs.warning(f"the newest backup ends a chain of {MAX_CHAIN}: taking a full backup")
        return None
    return parent


def _stream(
    storage: Storage,
    codec: Codec,
    options: BaseBackupOptions,
    facts: ServerFacts,
    progress: Progress,
    clock: Callable[[], datetime],
    started: datetime,
    parent: BaseBackupManifest | None,  # an incremental's, whose backup_manifest is uploaded
) -> BaseBackupManifest:
    start_xid = next_xid(options.dsn)  # read before the backup starts: a lower bound for later
    backup_id = BASE_BACKUPS.new_backup_id(storage, started)
    label = options.label or f"restore-drill {backup_id}"
    prefix = base_backup_prefix(backup_id)
    protocol = facts.major >= PROTOCOL_MAJOR
    on_server = protocol and options.compress == "server" and codec.name == "zstd"
    try:
        with progress.task(f"backup {backup_id}", facts.database_bytes) as task:
            if protocol:
                streamed = _protocol_backup(
                    storage, codec, options, label, parent, prefix, task, on_server,
                    shown=progress.shown,
                )  # fmt: skip
            else:  # only this path needs PostgreSQL's client programs on this host
                binaries = find_pg_binaries(options.bindir, major=facts.major)
                streamed = pipe_backup(
                    storage, codec, binaries, dsn=options.dsn, label=label,
                    checkpoint=options.checkpoint, max_rate_kb=options.max_rate_kb,
                    prefix=prefix, task=task,
                )  # fmt: skip
        manifest = _describe_backup(
            streamed,
            storage=storage,
            codec=codec,
            backup_id=backup_id,
            label=label,
            started=started,
            stopped=clock(),
            facts=facts,
            dsn=options.dsn,
            start_xid=start_xid,
            parent=parent,
            method=PROTOCOL if protocol else PG_BASEBACKUP,
            compressed_on="server" if on_server else "client",
            standby=facts.standby,
        )
    except BaseException:
        _discard_partial(storage, prefix)
        raise
    # Written last: its presence is what makes the backup complete.
    storage.put_bytes(manifest_key(backup_id), manifest.to_json().encode(), if_absent=True)
    return manifest


def _protocol_backup(
    storage: Storage,
    codec: Codec,
    options: BaseBackupOptions,
    label: str,
    parent: BaseBackupManifest | None,
    prefix: str,
    task: ProgressTask,
    on_server: bool,
    *,
    shown: bool,
) -> Streamed:
    request = BackupRequest(
        label=label,
        checkpoint=options.checkpoint,
        compression="zstd" if on_server else "",
        level=getattr(codec, "level", 1),
        workers=options.server_workers,
        max_rate_kb=options.max_rate_kb,
        incremental=parent is not None,
        progress=on_server and shown,  # compressed bytes say nothing of how far it is
    )
    with open_replication(options.dsn) as conn:
        identity = conn.identify_system()
        if parent is not None:  # streamed from the repository, its sha256 checked at the end
            stored = parent.file(MANIFEST_MEMBER)
            expected = Expected.of(stored)
            with verified_content(storage, expected, get_codec("none"), task) as content:
                conn.upload_manifest(content)
        streamed = stream_backup(storage, codec, conn, request, prefix, task)
    streamed.system_identifier = identity.system_identifier
    return streamed


def _describe_backup(
    streamed: Streamed,
    *,
    storage: Storage,
    codec: Codec,
    backup_id: str,
    label: str,
    started: datetime,
    stopped: datetime,
    facts: ServerFacts,
    dsn: str,
    start_xid: int | None,
    parent: BaseBackupManifest | None,
    method: str,
    compressed_on: str,
    standby: bool,
) -> BaseBackupManifest:
    assert streamed.start is not None and streamed.end is not None
    start, end = streamed.start, streamed.end
    names = tablespace_names(dsn) if streamed.locations else {}
    archives = {a.name.split(".", 1)[0]: a.name for a in streamed.archives}
    tablespaces = tuple(
        Tablespace(oid, names.get(oid, ""), location, archives[str(oid)])
        for oid, location in sorted(streamed.locations.items())
        if str(oid) in archives
    )
    if len(tablespaces) != len(streamed.locations):
        raise CommandFailed("BASE_BACKUP listed a tablespace it sent no archive for")
    return BaseBackupManifest(
        backup_id=backup_id,
        label=label,
        start_time=started,
        stop_time=stopped,
        start_lsn=format_lsn(start.lsn),
        stop_lsn=format_lsn(end.lsn),
        start_wal_file=wal_file_name(start.timeline, start.lsn, facts.wal_segment_size),
        stop_wal_file=wal_file_name(start.timeline, end.lsn, facts.wal_segment_size, previous=True),
        timeline=start.timeline,
        pg_version=facts.version,
        pg_version_num=facts.version_num,
        system_identifier=streamed.system_identifier,
        wal_segment_size=facts.wal_segment_size,
        compression=codec.name,
        files=streamed.files,
        tool_version=__version__,
        source=describe(dsn),
        next_xid=next_xid(dsn),
        start_next_xid=start_xid,
        backup_type=FULL if parent is None else INCREMENTAL,
        parent_id=None if parent is None else parent.backup_id,
        tablespaces=tablespaces,
        method=method,
        compressed_on=compressed_on,
        from_standby=standby,
        extra={**streamed.extra, **encryption_extra(storage)},
    )


def _discard_partial(storage: Storage, prefix: str) -> None:
    """Best effort: a backup without backup.json is never listed, so leftovers are only clutter."""
    try:
        for info in list(storage.list(prefix)):
            storage.delete(info.key)
    except StorageError:
        pass
