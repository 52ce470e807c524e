"""Steps about Redis servers, snapshots and their restores."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.catalog import TableShape, takes_table
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.redis_data import seed_redis
from backup_engine.errors import BackupEngineError
from backup_engine.redis.backup import take_redis_backup
from backup_engine.redis.inspect import RedisFingerprint, fingerprint
from backup_engine.redis.restore import RedisRestoreResult, restore_into_server, restore_to_dir
from backup_engine.redis.target import RedisTarget
from backup_engine.servers import make_redis_backend
from backup_engine.servers.redis_base import RedisBackend, RedisServer
from backup_engine.storage import Storage

SAMPLE_SIZE = 25


@dataclass(frozen=True)
class RecordedRedis:
    fingerprint: RedisFingerprint
    at: float  # monotonic time of the recording, to judge TTLs later
    sample: dict[bytes, bytes]  # key -> DUMP payload of a random sample of db 0


@dataclass(frozen=True)
class RestoredRedis:
    server: RedisServer
    result: RedisRestoreResult
    rto_seconds: float


@pytest.fixture
def redis_backend() -> Iterator[RedisBackend]:
    """Throwaway Redis servers on the drill's backend (DRILL_BACKEND, local by default)."""
    with make_redis_backend(os.environ.get("DRILL_BACKEND", "local")) as backend:
        yield backend


@given(
    parsers.parse(
        "a running Redis server with keys of every type, some expiring, and {count:d} plain keys"
    ),
    target_fixture="redis_server",
)
def redis_with_data(redis_backend: RedisBackend, count: int) -> RedisServer:
    server = redis_backend.create()
    seed_redis(RedisTarget(server.url), plain_keys=count)
    return server


@given("the Redis dataset is recorded", target_fixture="recorded_redis")
def record_redis(redis_server: RedisServer) -> RecordedRedis:
    target = RedisTarget(redis_server.url)
    client = target.client()
    keys = [client.randomkey() for _ in range(SAMPLE_SIZE)]
    sample = {key: client.dump(key) for key in keys if key is not None}
    return RecordedRedis(fingerprint(target), time.monotonic(), sample)  # type: ignore[arg-type]


@when("a Redis backup is taken")
def redis_backup(repository: Storage, redis_server: RedisServer) -> None:
    take_redis_backup(repository, get_codec("zstd"), RedisTarget(redis_server.url))


@when("the Redis server is destroyed")
def destroy_redis(redis_server: RedisServer) -> None:
    redis_server.destroy()
    assert not redis_server.data_dir.exists()


@when("the Redis server is flushed")
def flush_redis(redis_server: RedisServer) -> None:
    RedisTarget(redis_server.url).client().flushall()


@when("the latest Redis backup is restored into a new server", target_fixture="restored")
def restore_new_redis(
    repository: Storage, redis_backend: RedisBackend, drill_record: ScenarioRecord
) -> RestoredRedis:
    return restore_into_new_redis(repository, "latest", redis_backend, drill_record)


def restore_into_new_redis(
    repository: Storage,
    ref: str,
    redis_backend: RedisBackend,
    drill_record: ScenarioRecord,
    details: dict[str, object] | None = None,
) -> RestoredRedis:
    """`ref` restored into a data directory (sha256 and redis-check-rdb checked), a throwaway
    redis-server started on it; each phase timed, the backup recorded with `details`."""
    started = time.monotonic()
    data_dir = redis_backend.new_data_dir()
    result = restore_to_dir(repository, ref, data_dir)
    restored = time.monotonic()
    drill_record.phase("download, check sha256 and redis-check-rdb", restored - started)
    server = redis_backend.start_existing(data_dir)
    drill_record.phase("start redis-server on it", time.monotonic() - restored)
    drill_record.used_backup(result.backup_id, result.sha256, details)
    return RestoredRedis(server, result, time.monotonic() - started)


@when(
    "the latest Redis backup is restored into the running empty server", target_fixture="restored"
)
def restore_running_redis(
    repository: Storage,
    redis_server: RedisServer,
    redis_backend: RedisBackend,
    drill_record: ScenarioRecord,
) -> RestoredRedis:
    started = time.monotonic()
    result = restore_into_server(repository, "latest", RedisTarget(redis_server.url), redis_backend)
    drill_record.phase("copy every key into the running server", time.monotonic() - started)
    drill_record.used_backup(result.backup_id, result.sha256)
    return RestoredRedis(redis_server, result, time.monotonic() - started)


@when(
    "a restore of the latest Redis backup into the live server is attempted",
    target_fixture="redis_attempt",
)
def attempt_redis_restore(
    repository: Storage, redis_server: RedisServer, redis_backend: RedisBackend
) -> BackupEngineError | None:
    try:
        restore_into_server(repository, "latest", RedisTarget(redis_server.url), redis_backend)
    except BackupEngineError as exc:
        return exc
    return None


@then("the restored Redis dataset has the same keys, values and types")
def same_dataset(
    restored: RestoredRedis, recorded_redis: RecordedRedis, drill_record: ScenarioRecord
) -> None:
    actual = fingerprint(RedisTarget(restored.server.url))
    expected = recorded_redis.fingerprint
    drill_record.expect("Redis keys", expected.keys, actual.keys)
    drill_record.expect("Redis key types", expected.types, actual.types)
    drill_record.expect("Redis DEBUG DIGEST of every value", expected.digest, actual.digest)
    drill_record.expect("Redis keys with a TTL", len(expected.ttls), len(actual.ttls),
                        actual.ttls.keys() == expected.ttls.keys())  # fmt: skip


@then("every expiring key still expires, no later than before and within the drill's duration")
def ttls_kept(
    restored: RestoredRedis, recorded_redis: RecordedRedis, drill_record: ScenarioRecord
) -> None:
    elapsed_ms = (time.monotonic() - recorded_redis.at) * 1000
    after = fingerprint(RedisTarget(restored.server.url)).ttls
    recorded = recorded_redis.fingerprint.ttls
    checks: list[tuple[str, object, object, bool]] = [
        ("keys with a TTL checked", ">= 1", len(recorded), bool(recorded))
    ]
    for number, (key, before) in enumerate(recorded.items(), 1):
        left = after.get(key)  # keys are the application's data: named by number only
        earliest = before - elapsed_ms - 1000
        found = "no TTL" if left is None else f"{left} ms"
        ok = left is not None and earliest <= left <= before
        checks.append((f"TTL of expiring key {number}", f"{earliest:.0f}..{before} ms", found, ok))
    drill_record.expect_all(checks)


@then(parsers.parse("the restored Redis DBSIZE adds up to {count:d} keys"))
def restored_dbsize(restored: RestoredRedis, drill_record: ScenarioRecord, count: int) -> None:
    target = RedisTarget(restored.server.url)
    with target.client() as client:
        dbs = [int(db[2:]) for db in client.info("keyspace") if str(db).startswith("db")]
    total = sum(int(target.client(db=db).dbsize()) for db in dbs)
    drill_record.expect("Redis DBSIZE (all databases)", count, total)


@then("the sampled keys hold the values recorded before the loss")
def sampled_keys(
    restored: RestoredRedis, recorded_redis: RecordedRedis, drill_record: ScenarioRecord
) -> None:
    client = RedisTarget(restored.server.url).client()
    same = sum(client.dump(key) == payload for key, payload in recorded_redis.sample.items())
    total = len(recorded_redis.sample)
    drill_record.expect("sampled Redis keys identical", total, same, total > 0 and same == total)


@then(parsers.parse('the Redis restore is refused with "{text}"'))
def redis_refused(
    redis_attempt: BackupEngineError | None, drill_record: ScenarioRecord, text: str
) -> None:
    found = str(redis_attempt) if redis_attempt else "the restore was not refused"
    drill_record.expect("Redis restore refused", f"saying {text!r}", found,
                        redis_attempt is not None and text in found)  # fmt: skip


@then(parsers.parse("the live Redis server still holds {count:d} keys"))
def live_redis_count(redis_server: RedisServer, drill_record: ScenarioRecord, count: int) -> None:
    drill_record.expect(
        "keys in the live Redis", count, fingerprint(RedisTarget(redis_server.url)).keys
    )


REDIS_KEYS = TableShape(("key", "value"), optional=("ttl seconds",), integers=("ttl seconds",))


@given("a running Redis server holding these keys:", target_fixture="redis_server")
@takes_table(REDIS_KEYS)
def redis_with_table(redis_backend: RedisBackend, datatable: list[list[str]]) -> RedisServer:
    """Your own keys, from a table with the columns `key | value` and optionally `ttl seconds`:
    string values, set as written (the ones with a TTL expire)."""
    rows = REDIS_KEYS.rows(datatable)
    server = redis_backend.create()
    client = RedisTarget(server.url).client()
    for row in rows:
        ttl = int(row["ttl seconds"]) if row["ttl seconds"] else None
        client.set(row["key"], row["value"], ex=ttl)
    return server
