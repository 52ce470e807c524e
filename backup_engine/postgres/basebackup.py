"""Taking a base backup: pg_basebackup's tar stream -> compressor -> multipart upload.

The stream is read once. While its bytes flow to storage we pick `backup_label`,
`backup_manifest` and `global/pg_control` out of it (they are tiny), so the manifest can record
what PostgreSQL said about the backup without a second pass or a local copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backup_engine import __version__, logs
from backup_engine.codecs import Codec
from backup_engine.errors import CommandFailed, StorageError, UsageError
from backup_engine.locks import repository_lock
from backup_engine.manifests import encryption_extra
from backup_engine.postgres.backup_facts import (
    CONTROL_MEMBER,
    LABEL_MEMBER,
    MANIFEST_MEMBER,
    read_backup_facts,
)
from backup_engine.postgres.binaries import PgBinaries, find_pg_binaries
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.chain import (
    MAX_CHAIN,
    MIN_MAJOR,
    BrokenChain,
    backup_chain,
    choose_type,
    parent_manifest_file,
    pick_parent,
)
from backup_engine.postgres.connection import (
    ServerFacts,
    describe,
    next_xid,
    server_facts,
    setting,
    system_identifier,
)
from backup_engine.postgres.lsn import format_lsn, wal_file_name
from backup_engine.postgres.manifest import (
    BASE_TAR,
    FULL,
    INCREMENTAL,
    BaseBackupManifest,
    StoredFile,
    base_backup_prefix,
    manifest_key,
)
from backup_engine.postgres.tarstream import TarMemberCapture
from backup_engine.process import spawn
from backup_engine.progress import Progress
from backup_engine.storage import Storage, StoredObject

CHUNK = 1 << 20


@dataclass(frozen=True)
class BaseBackupOptions:
    dsn: str = ""
    bindir: str | None = None
    label: str | None = None
    lock_wait: float = 0  # seconds to wait for another base backup to finish
    backup_type: str = FULL  # or INCREMENTAL (PostgreSQL 17+): see chain.py
    full_on: str = ""  # with INCREMENTAL: the weekday whose backup is a full one ("" never)


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
    binaries = find_pg_binaries(options.bindir, major=facts.major)
    started = clock()
    parent = None
    if choose_type(options.backup_type, options.full_on, started) == INCREMENTAL:
        parent = _incremental_parent(storage, options.dsn, facts)
    with parent_manifest_file(storage, parent) as parent_file:
        try:
            return _stream(storage, codec, options, facts, progress, clock, started, binaries,
                           parent, parent_file)  # fmt: skip
        except CommandFailed as exc:
            # The server checks the parent against its WAL summaries before sending anything.
            if parent is not None and (
                "summar" in exc.message or "system identifier" in exc.message
            ):
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
    binaries: PgBinaries,
    parent: BaseBackupManifest | None,
    parent_file: Path | None,  # its backup_manifest, for pg_basebackup --incremental
) -> BaseBackupManifest:
    start_xid = next_xid(options.dsn)  # read before the backup starts: a lower bound for later
    backup_id = BASE_BACKUPS.new_backup_id(storage, started)
    label = options.label or f"restore-drill {backup_id}"
    prefix = base_backup_prefix(backup_id)
    capture = TarMemberCapture({LABEL_MEMBER, MANIFEST_MEMBER, CONTROL_MEMBER})
    raw_size = 0

    argv = [
        str(binaries.path("pg_basebackup")),
        f"--dbname={options.dsn}",
        "--pgdata=-",
        "--format=tar",
        "--wal-method=fetch",  # WAL needed for consistency travels inside the tar stream
        "--checkpoint=fast",  # a spread checkpoint can delay the start by minutes
        f"--label={label}",
        "--no-password",
    ]
    if parent_file is not None:
        argv.append(f"--incremental={parent_file}")
    proc = spawn(argv)
    try:
        with (
            storage.writer(f"{prefix}{BASE_TAR}{codec.suffix}", if_absent=True) as out,
            progress.task(f"backup {backup_id}", facts.database_bytes) as task,
        ):
            compressor = codec.compressor()
            # One buffer, read into again and again: a fresh megabyte per read costs a page
            # fault per 4 KiB (big buffers are mmapped, see entry.py), 1.5 s per 3 GB.
            buffer = bytearray(CHUNK)
            while got := proc.stdout.readinto(buffer):
                chunk = memoryview(buffer)[:got]
                raw_size += got
                capture.feed(chunk)
                out.write(compressor.compress(chunk))
                task.advance(got)
            out.write(compressor.flush())
            proc.wait()  # raises CommandFailed before we commit a truncated stream
            base = out.commit()
    except BaseException:
        proc.kill()
        raise
    try:
        manifest = _describe_backup(
            storage,
            codec,
            backup_id,
            label,
            started,
            clock(),
            base,
            raw_size,
            capture,
            facts,
            options.dsn,
            start_xid,
            parent,
        )
    except BaseException:
        _discard_partial(storage, prefix)
        raise
    # Written last: its presence is what makes the backup complete.
    storage.put_bytes(manifest_key(backup_id), manifest.to_json().encode(), if_absent=True)
    return manifest


def _describe_backup(
    storage: Storage,
    codec: Codec,
    backup_id: str,
    label: str,
    started: datetime,
    stopped: datetime,
    base: StoredObject,
    raw_size: int,
    capture: TarMemberCapture,
    facts: ServerFacts,
    dsn: str,
    start_xid: int | None,
    parent: BaseBackupManifest | None,
) -> BaseBackupManifest:
    try:
        backup_facts = read_backup_facts(capture.captured)
    except (ValueError, KeyError) as exc:
        raise CommandFailed(f"cannot read the backup's own manifest: {exc}") from None
    prefix = base_backup_prefix(backup_id)
    pg_manifest = storage.put_bytes(
        f"{prefix}{MANIFEST_MEMBER}", capture.captured[MANIFEST_MEMBER], if_absent=True
    )
    return BaseBackupManifest(
        backup_id=backup_id,
        label=label,
        start_time=started,
        stop_time=stopped,
        start_lsn=format_lsn(backup_facts.start_lsn),
        stop_lsn=format_lsn(backup_facts.stop_lsn),
        start_wal_file=backup_facts.start_wal_file,
        stop_wal_file=wal_file_name(
            backup_facts.timeline, backup_facts.stop_lsn, facts.wal_segment_size, previous=True
        ),
        timeline=backup_facts.timeline,
        pg_version=facts.version,
        pg_version_num=facts.version_num,
        system_identifier=backup_facts.system_identifier,
        wal_segment_size=facts.wal_segment_size,
        compression=codec.name,
        files=(
            StoredFile(BASE_TAR + codec.suffix, base.key, base.size, base.sha256, raw_size),
            StoredFile(MANIFEST_MEMBER, pg_manifest.key, pg_manifest.size, pg_manifest.sha256),
        ),
        tool_version=__version__,
        source=describe(dsn),
        next_xid=next_xid(dsn),
        start_next_xid=start_xid,
        backup_type=FULL if parent is None else INCREMENTAL,
        parent_id=None if parent is None else parent.backup_id,
        extra={"tar_members": capture.members, **encryption_extra(storage)},
    )


def _discard_partial(storage: Storage, prefix: str) -> None:
    """Best effort: a backup without backup.json is never listed, so leftovers are only clutter."""
    try:
        for info in list(storage.list(prefix)):
            storage.delete(info.key)
    except StorageError:
        pass
