"""Small repositories for the fleet tests, made once per module: real PostgreSQL and Redis
backups, one of them damaged."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backup_engine.codecs import get_codec
from backup_engine.drill.redis_data import seed_redis
from backup_engine.drill.seed import seed_shop
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.wal import wal_push
from backup_engine.redis.backup import take_redis_backup
from backup_engine.redis.target import RedisTarget
from backup_engine.servers import LocalPostgresBackend
from backup_engine.servers.local_redis import LocalRedisBackend
from backup_engine.storage import LocalStorage


@contextmanager
def made_repositories() -> Iterator[Path]:
    """Under a directory the postgres user can read (restored servers fetch WAL from it):
    `orders` (a base backup with its WAL, and a Redis backup), `billing` (the same base backup,
    its tar then damaged), `cache` (a Redis backup); `ledger` a copy of `orders`, `sessions`
    and `archive` copies of `cache`."""
    root = Path(tempfile.mkdtemp(prefix="fleet-test-"))
    root.chmod(0o755)
    for name in ("orders", "cache"):
        (root / name).mkdir()
    orders = LocalStorage(root / "orders")
    with LocalPostgresBackend() as pg, LocalRedisBackend() as redis:
        server = pg.create()
        seed_shop(server.dsn(), users=60)
        take_base_backup(orders, get_codec("zstd"), BaseBackupOptions(dsn=server.dsn()))
        with connect(server.dsn()) as conn:  # the backup's WAL, pushed as an archiver would
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
            conn.execute("SELECT pg_switch_wal()")
        assert row is not None
        last = str(row[0])
        for wal in sorted((server.data_dir / "pg_wal").glob("0*")):
            if len(wal.name) == 24 and wal.name <= last:
                wal_push(orders, wal, get_codec("zstd"))
        source = redis.create()
        seed_redis(RedisTarget(source.url), plain_keys=200)
        take_redis_backup(orders, get_codec("zstd"), RedisTarget(source.url))
        take_redis_backup(LocalStorage(root / "cache"), get_codec("zstd"), RedisTarget(source.url))
    shutil.copytree(root / "orders", root / "billing")
    shutil.rmtree(root / "billing" / "redis")
    [tar] = (root / "billing" / "postgres" / "base").glob("*/base.tar.zst")
    data = bytearray(tar.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damaged in the middle
    tar.write_bytes(bytes(data))
    shutil.copytree(root / "orders", root / "ledger")
    for name in ("sessions", "archive"):
        shutil.copytree(root / "cache", root / name)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
