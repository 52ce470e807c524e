"""Redis backups against real redis-server processes: both transfer framings, passwords,
damaged snapshots, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.redis_data import seed_redis
from backup_engine.errors import (
    CorruptObject,
    MissingBinary,
    ServerUnreachable,
    TargetNotEmpty,
    VerificationFailed,
)
from backup_engine.net import free_port
from backup_engine.process import run
from backup_engine.redis.backup import take_redis_backup
from backup_engine.redis.inspect import fingerprint
from backup_engine.redis.manifest import REDIS_BACKUPS
from backup_engine.redis.restore import (
    RedisRestoreFailed,
    check_rdb,
    restore_into_server,
    restore_to_dir,
)
from backup_engine.redis.target import RedisTarget
from backup_engine.servers.local_redis import LocalRedisBackend
from backup_engine.storage import LocalStorage

pytestmark = pytest.mark.redis
ZSTD = get_codec("zstd")


@pytest.fixture
def backend() -> Iterator[LocalRedisBackend]:
    with LocalRedisBackend() as servers:
        yield servers


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    (tmp_path / "repo").mkdir()
    return LocalStorage(tmp_path / "repo")


@pytest.mark.parametrize("diskless", ["yes", "no"])  # $EOF:<mark> framing, and $<length>
def test_both_transfer_framings_give_the_same_dataset(
    backend: LocalRedisBackend, repo: LocalStorage, diskless: str
) -> None:
    server = backend.create(settings={"repl-diskless-sync": diskless})
    seed_redis(RedisTarget(server.url), plain_keys=300)
    before = fingerprint(RedisTarget(server.url))
    manifest = take_redis_backup(repo, ZSTD, RedisTarget(server.url))
    assert manifest.keys == {"db0": 309, "db2": 1}
    data_dir = backend.new_data_dir()
    restore_to_dir(repo, manifest.backup_id, data_dir)
    restored = backend.start_existing(data_dir)
    assert fingerprint(RedisTarget(restored.url)).digest == before.digest


def test_password_protected_server(backend: LocalRedisBackend, repo: LocalStorage) -> None:
    server = backend.create(settings={"requirepass": "s3cret pass"})
    target = RedisTarget(server.url.replace("s3cret pass", "s3cret%20pass"))
    target.client().set("k", "v")
    manifest = take_redis_backup(repo, ZSTD, target)
    assert manifest.source == f"redis://127.0.0.1:{server.port}"  # never the password
    assert "s3cret" not in manifest.to_json()
    wrong = RedisTarget(f"redis://:nope@127.0.0.1:{server.port}/0")
    with pytest.raises(ServerUnreachable, match="refused the credentials"):
        take_redis_backup(repo, ZSTD, wrong)


def test_unreachable_server(repo: LocalStorage) -> None:
    with pytest.raises(ServerUnreachable, match="cannot connect to Redis"):
        take_redis_backup(repo, ZSTD, RedisTarget(f"redis://127.0.0.1:{free_port()}"))
    assert list(repo.list()) == []


def test_damaged_snapshot_is_refused_and_nothing_is_left(
    backend: LocalRedisBackend, repo: LocalStorage, tmp_path: Path
) -> None:
    server = backend.create()
    seed_redis(RedisTarget(server.url), plain_keys=100)
    manifest = take_redis_backup(repo, ZSTD, RedisTarget(server.url))
    stored = repo.root / manifest.files[0].key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x20
    stored.write_bytes(bytes(data))
    with pytest.raises(CorruptObject, match=r"dump\.rdb\.zst"):
        restore_to_dir(repo, "latest", tmp_path / "restore")
    assert not (tmp_path / "restore").exists()


def test_redis_check_rdb_rejects_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(b"REDIS0010" + os.urandom(200))
    with pytest.raises(VerificationFailed, match="redis-check-rdb"):
        check_rdb(path, "test")
    # redis-check-rdb echoes what it read (random bytes here, about one run in fifty): output
    # that is not UTF-8 is read with replacement, never a UnicodeDecodeError
    echoed = run(["printf", "key: \\313\\377 end"], check=False)
    assert echoed.ok and echoed.stdout == "key: \ufffd\ufffd end"


def test_an_rdb_newer_than_the_checker_is_reported_not_called_damaged(tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(b"REDIS0099" + os.urandom(200))  # a format no redis-check-rdb reads yet
    with pytest.raises(MissingBinary, match="RDB format version 99, newer than") as refused:
        check_rdb(path, "test")
    assert "not damaged" in refused.value.message
    assert "redis-check-rdb" in refused.value.message


def test_restore_into_a_server_with_keys_needs_force(
    backend: LocalRedisBackend, repo: LocalStorage
) -> None:
    source = backend.create()
    seed_redis(RedisTarget(source.url), plain_keys=10)
    take_redis_backup(repo, ZSTD, RedisTarget(source.url))
    busy = backend.create()
    RedisTarget(busy.url).client().set("config:greeting", "local change")
    RedisTarget(busy.url).client().set("only-here", "1")
    with pytest.raises(TargetNotEmpty, match="holds 2 keys"):
        restore_into_server(repo, "latest", RedisTarget(busy.url), backend)
    result = restore_into_server(repo, "latest", RedisTarget(busy.url), backend, force=True)
    assert result.keys == 20
    client = RedisTarget(busy.url).client()
    assert client.get("config:greeting") == "héllo wörld".encode()  # replaced from the backup
    assert client.get("only-here") == b"1"  # untouched


def test_incomplete_backups_are_not_listed(backend: LocalRedisBackend, repo: LocalStorage) -> None:
    server = backend.create()
    manifest = take_redis_backup(repo, ZSTD, RedisTarget(server.url))
    repo.delete(REDIS_BACKUPS.manifest_key(manifest.backup_id))
    catalog = REDIS_BACKUPS.list(repo)
    assert catalog.backups == () and [i.backup_id for i in catalog.incomplete] == [
        manifest.backup_id
    ]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", *args],
        capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=120,
    )  # fmt: skip


def test_command_line(backend: LocalRedisBackend, repo: LocalStorage, tmp_path: Path) -> None:
    server = backend.create()
    seed_redis(RedisTarget(server.url), plain_keys=50)
    base = ("--repo", repo.url, "redis")
    taken = _cli(*base, "backup", "--url", server.url, "--json", cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    backup_id = json.loads(taken.stdout)["backup_id"]
    listed = json.loads(_cli(*base, "list", "--json", cwd=tmp_path).stdout)
    assert [b["backup_id"] for b in listed["backups"]] == [backup_id]
    assert _cli(*base, "verify", "latest", cwd=tmp_path).returncode == 0
    empty = backend.create()
    into = _cli(*base, "restore", "latest", "--into", empty.url, cwd=tmp_path)
    assert into.returncode == 0, into.stderr
    assert "60 keys" in into.stdout
    twice = _cli(*base, "restore", "latest", "--into", empty.url, cwd=tmp_path)
    assert twice.returncode == 2 and "holds 60 keys" in twice.stderr
    both = _cli(*base, "restore", "latest", "--dir", "x", "--into", empty.url, cwd=tmp_path)
    assert both.returncode == 2 and "exactly one of --dir and --into" in both.stderr
    missing = _cli(*base, "backup", cwd=tmp_path)
    assert missing.returncode == 2 and "no Redis server configured" in missing.stderr


def test_a_refused_restore_names_no_key_and_prints_no_value(
    backend: LocalRedisBackend, repo: LocalStorage
) -> None:
    """A full target once failed with redis-py's message: the RESTORE command, key names and
    value bytes (session tokens) included."""
    source = backend.create()
    client = RedisTarget(source.url).client()
    for n in range(300):
        client.set(f"session:secret-{n}", "token-" + "x" * 4000)
    take_redis_backup(repo, ZSTD, RedisTarget(source.url))
    full = backend.create(settings={"maxmemory": "1mb", "maxmemory-policy": "noeviction"})
    with pytest.raises(RedisRestoreFailed, match="maxmemory") as refused:
        restore_into_server(repo, "latest", RedisTarget(full.url), backend)
    assert "secret" not in str(refused.value) and "token" not in str(refused.value)
