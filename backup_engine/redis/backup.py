"""Taking a Redis backup: the server's RDB snapshot, streamed through zstd into storage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from backup_engine import __version__
from backup_engine.codecs import Codec
from backup_engine.locks import repository_lock
from backup_engine.manifests import StoredFile, encryption_extra
from backup_engine.progress import Progress
from backup_engine.redis.manifest import RDB_NAME, REDIS_BACKUPS, RedisBackupManifest
from backup_engine.redis.rdbsync import RdbTransferFailed, stream_rdb
from backup_engine.redis.target import RedisTarget
from backup_engine.storage.base import Storage

RDB_MAGIC = b"REDIS"


def keyspace(info: dict[str, object]) -> dict[str, int]:
    """INFO keyspace -> {"db0": keys, ...}."""
    counts = {}
    for db, stats in info.items():
        if isinstance(stats, dict):
            counts[str(db)] = int(stats.get("keys", 0))
    return counts


def take_redis_backup(
    storage: Storage,
    codec: Codec,
    target: RedisTarget,
    *,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RedisBackupManifest:
    client = target.check()  # a clear message before anything is written
    with client:
        version = str(client.info("server").get("redis_version", "unknown"))
        keys = keyspace(client.info("keyspace"))
    storage.check()
    with repository_lock(storage, "redis"):
        return _take(storage, codec, target, version, keys, progress, clock)


def _take(
    storage: Storage,
    codec: Codec,
    target: RedisTarget,
    version: str,
    keys: dict[str, int],
    progress: Progress | None,
    clock: Callable[[], datetime],
) -> RedisBackupManifest:
    started = clock()
    backup_id = REDIS_BACKUPS.new_backup_id(storage, started)
    key = f"{REDIS_BACKUPS.backup_prefix(backup_id)}{RDB_NAME}{codec.suffix}"
    raw_size = 0
    with (
        storage.writer(key, if_absent=True) as out,
        (progress or Progress()).task(f"redis backup {backup_id}", None) as task,
    ):
        compressor = codec.compressor()
        for chunk in stream_rdb(target):
            if raw_size == 0 and not chunk.startswith(RDB_MAGIC):
                raise RdbTransferFailed(
                    f"the server sent something that is not an RDB: {chunk[:9]!r}"
                )
            raw_size += len(chunk)
            out.write(compressor.compress(chunk))
            task.advance(len(chunk))
        out.write(compressor.flush())
        stored = out.commit()
    manifest = RedisBackupManifest(
        backup_id=backup_id,
        start_time=started,
        stop_time=clock(),
        redis_version=version,
        source=target.describe(),
        keys=keys,
        compression=codec.name,
        files=(
            StoredFile(RDB_NAME + codec.suffix, stored.key, stored.size, stored.sha256, raw_size),
        ),
        tool_version=__version__,
        extra=encryption_extra(storage),
    )
    manifest_key = REDIS_BACKUPS.manifest_key(backup_id)
    storage.put_bytes(manifest_key, manifest.to_json().encode(), if_absent=True)
    return manifest
