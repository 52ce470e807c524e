"""Restoring a Redis backup: as dump.rdb in a data directory for a new server to start from,
or into a running server (even remote), key by key.

A running server cannot be told to load an RDB file over the network, so the second way starts
a throwaway redis-server on the restored file and copies every key with DUMP / PTTL -> RESTORE,
in pipelined batches. TTLs travel as the time left.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import redis as redislib

from backup_engine.codecs import get_codec
from backup_engine.errors import (
    BackupEngineError,
    CorruptObject,
    MissingBinary,
    TargetNotEmpty,
    VerificationFailed,
)
from backup_engine.integrity import CHUNK, Expected, verified_content
from backup_engine.process import run
from backup_engine.progress import Progress
from backup_engine.redis.manifest import RDB_NAME, REDIS_BACKUPS, RedisBackupManifest
from backup_engine.redis.target import RedisTarget
from backup_engine.servers.redis_base import RedisBackend
from backup_engine.storage.base import Storage
from backup_engine.targetdir import prepared_target

COPY_BATCH = 500


@dataclass(frozen=True)
class RedisRestoreResult:
    backup_id: str
    destination: str
    rdb_bytes: int
    keys: int | None  # keys copied (restore into a server)
    seconds: float
    sha256: dict[str, str]


def _redis_check_rdb() -> str:
    found = shutil.which("redis-check-rdb") or (
        "/usr/bin/redis-check-rdb" if Path("/usr/bin/redis-check-rdb").exists() else None
    )
    if found is None:
        raise MissingBinary(
            "redis-check-rdb not found", hint="install redis-server (it ships redis-check-rdb)"
        )
    return found


def check_rdb(path: Path, backup_id: str) -> None:
    """Have Redis's own checker read the whole file, as a server loading it would. A file of a
    newer RDB version than this checker reads (Redis 7.2 writes version 11, Redis 7.4 version
    12; Debian 12's checker stops at 10) is not damaged: that is said, not "rejected"."""
    checker = _redis_check_rdb()
    result = run([checker, str(path)], check=False)
    newer = re.search(r"Can't handle RDB format version (\d+)", result.stdout)
    if newer:
        version = run([checker, "--version"], check=False).stdout.strip() or "redis-check-rdb"
        raise MissingBinary(
            f"backup {backup_id} is RDB format version {newer.group(1)}, newer than this "
            f"host's {version} reads; its sha256 matched, so it is not damaged",
            hint="check and restore it on a host with the Redis (or Valkey) version that wrote "
            "it, or install that version here",
        )
    if not result.ok or "RDB looks OK" not in result.stdout:
        lines = [x for x in result.stdout.splitlines() if "error" in x.lower() or "---" in x]
        reason = lines[0].strip() if lines else result.last_error_line()
        raise VerificationFailed(f"redis-check-rdb rejected backup {backup_id}: {reason}")


def _write_rdb(
    storage: Storage, manifest: RedisBackupManifest, path: Path, progress: Progress
) -> int:
    codec = get_codec(manifest.compression)
    stored = manifest.file(RDB_NAME + codec.suffix)
    # Never more than the manifest recorded (a bomb is refused, not written): the RDB's own
    # size, or for a manifest without it, what zstd's largest ratio could make of the object.
    limit = stored.raw_size if stored.raw_size is not None else stored.size * 1024
    size = 0
    expected = Expected.of(stored)
    with (
        progress.task(f"restore {manifest.backup_id}", stored.size) as task,
        verified_content(storage, expected, codec, task) as content,
        path.open("wb") as out,
    ):
        while chunk := content.read(min(CHUNK, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                raise CorruptObject(
                    f"{stored.key} decompresses to more than the {limit} bytes its manifest "
                    "records: refused as damaged"
                )
            out.write(chunk)
    return size


def restore_to_dir(
    storage: Storage,
    ref: str,
    directory: Path,
    *,
    force: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
) -> RedisRestoreResult:
    """Write the snapshot as `directory/dump.rdb`; start redis-server with `--dir` there."""
    started = time.monotonic()
    manifest = REDIS_BACKUPS.resolve(storage, ref)
    if verify:
        _redis_check_rdb()  # fail before downloading anything
    directory = directory.absolute()
    with prepared_target(directory, force=force):
        size = _write_rdb(storage, manifest, directory / RDB_NAME, progress or Progress())
        if verify:
            check_rdb(directory / RDB_NAME, manifest.backup_id)
    return RedisRestoreResult(
        manifest.backup_id, str(directory / RDB_NAME), size, None, time.monotonic() - started,
        {f.key: f.sha256 for f in manifest.files},
    )  # fmt: skip


def _total_keys(client: redislib.Redis) -> int:
    info = client.info("keyspace")
    return sum(int(v.get("keys", 0)) for v in info.values() if isinstance(v, dict))


def copy_keys(source: RedisTarget, destination: RedisTarget, *, replace: bool) -> int:
    """Copy every key of every database, with its remaining TTL. Returns the number copied."""
    copied = 0
    with source.client() as src_client:
        dbs = [int(db[2:]) for db in src_client.info("keyspace") if str(db).startswith("db")]
    for db in dbs:
        src, dst = source.client(db=db), destination.client(db=db)
        batch: list[bytes] = []
        for key in src.scan_iter(count=COPY_BATCH):
            batch.append(key)
            if len(batch) >= COPY_BATCH:
                copied += _copy_batch(src, dst, batch, replace)
                batch = []
        if batch:
            copied += _copy_batch(src, dst, batch, replace)
    return copied


def _copy_batch(src: redislib.Redis, dst: redislib.Redis, keys: list[bytes], replace: bool) -> int:
    reads = src.pipeline(transaction=False)
    for key in keys:
        reads.dump(key)
        reads.pttl(key)
    values = reads.execute()
    writes = dst.pipeline(transaction=False)
    count = 0
    for key, payload, ttl in zip(keys, values[0::2], values[1::2], strict=True):
        if payload is None or ttl == -2:  # expired while we copied
            continue
        writes.restore(key, max(int(ttl), 0), payload, replace=replace)
        count += 1
    try:
        writes.execute()
    except redislib.RedisError as exc:
        # redis-py puts the failing command (key names, value bytes) into its message: keep
        # only the server's reason, never the data.
        reason = str(exc).rsplit("caused error: ", 1)[-1].split("\n", 1)[0][:200]
        raise RedisRestoreFailed(
            f"the target Redis refused a restored key: {reason}",
            hint="check its memory limit and that it is not a replica; keys were copied in "
            f"batches of {COPY_BATCH}, some may be there already",
        ) from None
    return count


class RedisRestoreFailed(BackupEngineError):
    """The target server refused keys (no data in the message)."""


def restore_into_server(
    storage: Storage,
    ref: str,
    target: RedisTarget,
    backend: RedisBackend,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> RedisRestoreResult:
    """Load a snapshot into a running server that holds no keys (with `force`: replace keys)."""
    started = time.monotonic()
    client = target.check()
    with client:
        present = _total_keys(client)
    if present and not force:
        raise TargetNotEmpty(
            f"Redis at {target.describe()} holds {present} keys",
            hint="restore into an empty server, or pass --force to overwrite keys of the same name",
        )
    data_dir = backend.new_data_dir()
    restored = restore_to_dir(storage, ref, data_dir, force=True, progress=progress)
    scratch = backend.start_existing(data_dir)
    try:
        copied = copy_keys(RedisTarget(scratch.url), target, replace=force)
    finally:
        scratch.destroy()
    return RedisRestoreResult(
        restored.backup_id, target.describe(), restored.rdb_bytes, copied,
        time.monotonic() - started, restored.sha256,
    )  # fmt: skip
