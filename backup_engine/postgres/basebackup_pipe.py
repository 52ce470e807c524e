"""The older way: pg_basebackup's tar stream piped into this process (PostgreSQL 13 and 14).

Their BASE_BACKUP sends one COPY per tablespace without typed messages; our client speaks only
the newer stream (replication.py), so these keep pg_basebackup, which can write one tablespace
to a pipe and nothing else. While the bytes flow to storage we pick `backup_label`,
`backup_manifest` and `global/pg_control` out of them (they are tiny), so the backup is read
once and never staged.
"""

from __future__ import annotations

from backup_engine.codecs import Codec
from backup_engine.errors import CommandFailed, UsageError
from backup_engine.manifests import StoredFile
from backup_engine.postgres.backup_facts import (
    CONTROL_MEMBER,
    LABEL_MEMBER,
    MANIFEST_MEMBER,
    read_backup_facts,
)
from backup_engine.postgres.backup_stream import Streamed
from backup_engine.postgres.binaries import PgBinaries
from backup_engine.postgres.manifest import BASE_TAR
from backup_engine.postgres.replication import Ended, Started
from backup_engine.postgres.tarstream import TarMemberCapture
from backup_engine.process import spawn
from backup_engine.progress import ProgressTask
from backup_engine.storage import Storage

CHUNK = 1 << 20


def pipe_backup(
    storage: Storage,
    codec: Codec,
    binaries: PgBinaries,
    *,
    dsn: str,
    label: str,
    checkpoint: str,
    max_rate_kb: int,
    prefix: str,
    task: ProgressTask,
) -> Streamed:
    capture = TarMemberCapture({LABEL_MEMBER, MANIFEST_MEMBER, CONTROL_MEMBER})
    raw_size = 0
    argv = [
        str(binaries.path("pg_basebackup")),
        f"--dbname={dsn}",
        "--pgdata=-",
        "--format=tar",
        "--wal-method=fetch",  # WAL needed for consistency travels inside the tar stream
        f"--checkpoint={checkpoint}",
        f"--label={label}",
        "--no-password",
    ]
    if max_rate_kb:
        argv.append(f"--max-rate={max_rate_kb}k")
    proc = spawn(argv)
    try:
        with storage.writer(f"{prefix}{BASE_TAR}{codec.suffix}", if_absent=True) as out:
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
    except CommandFailed as exc:
        proc.kill()
        if "single tablespace" in exc.message:
            raise UsageError(
                "this server has tablespaces, which pg_basebackup cannot stream for "
                "PostgreSQL 13 and 14",
                hint="upgrade to PostgreSQL 15 or later, where backups of every tablespace are "
                "taken with the replication protocol",
            ) from None
        raise
    except BaseException:
        proc.kill()
        raise
    try:
        facts = read_backup_facts(capture.captured)
    except (ValueError, KeyError) as exc:
        raise CommandFailed(f"cannot read the backup's own manifest: {exc}") from None
    pg_manifest = storage.put_bytes(
        f"{prefix}{MANIFEST_MEMBER}", capture.captured[MANIFEST_MEMBER], if_absent=True
    )
    return Streamed(
        archives=[StoredFile(BASE_TAR + codec.suffix, base.key, base.size, base.sha256, raw_size)],
        manifest=StoredFile(MANIFEST_MEMBER, pg_manifest.key, pg_manifest.size, pg_manifest.sha256),
        start=Started(facts.start_lsn, facts.timeline),
        end=Ended(facts.stop_lsn, facts.timeline),
        system_identifier=facts.system_identifier,
        extra={"tar_members": capture.members},
    )
