"""Steps for the restore test of the Redis backups already in the configured repository (the
Redis twin of latest_backup_steps.py): the latest, or the one --pick chooses, restored into a
throwaway redis-server. On the embedded default a seeded server is backed up first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from pytest_bdd import given, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.redis_data import seed_redis
from backup_engine.drill.selection import SELECTION_ENV, choose_backup
from backup_engine.redis.backup import take_redis_backup
from backup_engine.redis.manifest import REDIS_BACKUPS, RedisBackupManifest
from backup_engine.redis.target import RedisTarget
from backup_engine.servers.redis_base import RedisBackend
from backup_engine.storage import Storage
from backup_engine.storage.faults import ReadOnlyStorage

from . import StorageFactory
from .latest_backup_steps import configured_repository
from .redis_steps import RestoredRedis, restore_into_new_redis


@dataclass(frozen=True)
class LatestRedis:
    repository: Storage
    manifest: RedisBackupManifest


@given("the latest Redis backup in the configured repository", target_fixture="latest_redis")
def latest_redis_backup(
    storage_factory: StorageFactory, redis_backend: RedisBackend, drill_record: ScenarioRecord
) -> LatestRedis:
    repository = configured_repository()
    if repository is not None:
        selection = os.environ.get(SELECTION_ENV, "latest")
        backups = REDIS_BACKUPS.list(repository).backups
        manifest, how = choose_backup(backups, selection, datetime.now(UTC), "Redis backup")
        drill_record.source(repository.url, data="existing", selection=how)
        return LatestRedis(repository, manifest)
    repository = storage_factory()  # the embedded default: make a backup worth restoring
    drill_record.source(repository.url, data="synthetic", selection="the one the drill made")
    source = redis_backend.create()
    seed_redis(RedisTarget(source.url), plain_keys=500)
    manifest = take_redis_backup(repository, get_codec("zstd"), RedisTarget(source.url))
    return LatestRedis(ReadOnlyStorage(repository), manifest)


@when("it is restored into a throwaway Redis server", target_fixture="restored")
def restore_latest_redis(
    latest_redis: LatestRedis, redis_backend: RedisBackend, drill_record: ScenarioRecord
) -> RestoredRedis:
    manifest = latest_redis.manifest
    age = datetime.now(UTC) - manifest.stop_time
    details = {"stop_time": manifest.stop_time.isoformat(), "source": manifest.source,
               "age_hours": round(age.total_seconds() / 3600, 2)}  # fmt: skip
    return restore_into_new_redis(latest_redis.repository, manifest.backup_id, redis_backend,
                                  drill_record, details)  # fmt: skip


@then("every Redis database the backup recorded keys in holds keys after the restore")
def every_database_holds_keys(
    latest_redis: LatestRedis, restored: RestoredRedis, drill_record: ScenarioRecord
) -> None:
    """Counts are recorded when the snapshot was asked for: keys written or expired since make
    exact equality wrong for a live source; an empty database that held keys is a failure."""
    keyspace = RedisTarget(restored.server.url).client().info("keyspace")
    recorded = {db: n for db, n in latest_redis.manifest.keys.items() if n > 0}
    assert recorded, f"backup {latest_redis.manifest.backup_id} recorded no keys at all"
    for db, count in sorted(recorded.items()):
        found = int(keyspace.get(db, {}).get("keys", 0))
        drill_record.expect(f"keys in {db}", f"> 0 (recorded {count})", str(found), found > 0)
