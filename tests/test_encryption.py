"""Client-side encryption: the store sees only ciphertext, a wrong key or a tampered object is
refused with a clear message, and the whole backup/restore path works through it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.drill.seed import seed_shop
from backup_engine.errors import ConfigError, CorruptObject
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import LocalStorage
from backup_engine.storage.encrypted import FRAME, EncryptedStorage, parse_key, plaintext_size

SECRET = b"this sentence must never reach the store in the clear " * 1000


def stores(tmp_path: Path, key: bytes | None = None) -> tuple[LocalStorage, EncryptedStorage]:
    (tmp_path / "repo").mkdir(exist_ok=True)
    raw = LocalStorage(tmp_path / "repo")
    return raw, EncryptedStorage(raw, key or os.urandom(32))


def test_the_store_only_sees_ciphertext(tmp_path: Path) -> None:
    raw, encrypted = stores(tmp_path)
    encrypted.put_bytes("a/secret", SECRET, metadata={"sha256": "feedface"})
    stored = (raw.root / "a" / "secret").read_bytes()
    assert b"never reach" not in stored and len(stored) > len(SECRET)
    assert raw.stat("a/secret").metadata["sha256"] != "feedface"  # metadata sealed too
    assert encrypted.stat("a/secret").metadata == {"sha256": "feedface"}
    assert encrypted.stat("a/secret").size == len(SECRET)
    assert encrypted.get_bytes("a/secret") == SECRET


def test_a_wrong_key_is_named_not_mistaken_for_damage(tmp_path: Path) -> None:
    raw, encrypted = stores(tmp_path)
    encrypted.put_bytes("k", SECRET)
    other = EncryptedStorage(raw, os.urandom(32))
    with pytest.raises(ConfigError, match=f"encrypted with key {encrypted.key_id}"):
        other.get_bytes("k")


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # cut short
        lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:],  # one bit flipped
        lambda b: b[: -FRAME // 2],  # last frame gone
        lambda b: b + b"trailing",  # data after the final frame
    ],
)
def test_tampering_is_detected(tmp_path: Path, damage: object) -> None:
    raw, encrypted = stores(tmp_path)
    encrypted.put_bytes("k", os.urandom(3 * FRAME + 123))
    path = raw.root / "k"
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CorruptObject):
        encrypted.get_bytes("k")


def test_frames_cannot_be_reordered(tmp_path: Path) -> None:
    raw, encrypted = stores(tmp_path)
    encrypted.put_bytes("k", os.urandom(2 * FRAME + 10))
    data = (raw.root / "k").read_bytes()
    header, rest = data[:19], data[19:]
    first = rest[: 4 + FRAME + 16]
    second = rest[4 + FRAME + 16 : 2 * (4 + FRAME + 16)]
    tail = rest[2 * (4 + FRAME + 16) :]
    (raw.root / "k").write_bytes(header + second + first + tail)
    with pytest.raises(CorruptObject, match="authentication"):
        encrypted.get_bytes("k")


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 3 * FRAME + 5))
def test_plaintext_size_is_recovered_from_the_stored_size(size: int) -> None:
    frames = max(1, -(-size // FRAME))
    assert plaintext_size(19 + size + 20 * frames) == size


def test_keys_in_the_forms_people_keep_them(tmp_path: Path) -> None:
    key = os.urandom(32)
    assert parse_key(base64.b64encode(key).decode(), where="x") == key
    assert parse_key(key.hex(), where="x") == key
    assert parse_key(key, where="x") == key
    with pytest.raises(ConfigError, match="not 32 bytes"):
        parse_key("too short", where="x")


@pytest.mark.postgres
def test_backup_and_restore_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    key = base64.b64encode(os.urandom(32)).decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}
    env["BACKUP_ENGINE_REPOSITORY"] = f"file://{tmp_path / 'repo'}"
    env["BACKUP_ENGINE_ENCRYPTION"] = "aes-256-gcm"
    env["BACKUP_ENGINE_ENCRYPTION_KEY"] = key

    def cli(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backup_engine", *args],
            capture_output=True, text=True, env={**env, **(extra or {})}, check=False, timeout=300,
        )  # fmt: skip

    with LocalPostgresBackend() as servers:
        server = servers.create()
        seed_shop(server.dsn(), users=50)
        taken = cli("pg", "backup", "--dsn", server.dsn(), "--json")
        assert taken.returncode == 0, taken.stderr
        manifest = json.loads(taken.stdout)
        key_id = manifest["extra"]["encryption"]["key_id"]
        assert manifest["extra"]["encryption"]["algorithm"] == "aes-256-gcm"
        assert key not in taken.stdout
        for path in (tmp_path / "repo").rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                assert path.read_bytes().startswith(b"RDENC1\n"), path
        assert cli("pg", "verify", "latest").returncode == 0
        restored = cli("pg", "restore", "latest", "--pgdata", str(tmp_path / "pgdata"))
        assert restored.returncode == 0, restored.stderr
        wrong = cli(
            "pg",
            "list",
            extra={"BACKUP_ENGINE_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()},
        )
        assert wrong.returncode == 2  # a configuration problem, named with both key ids
        assert f"encrypted with key {key_id}" in wrong.stderr
        missing = cli("pg", "list", extra={"BACKUP_ENGINE_ENCRYPTION_KEY": ""})
        assert missing.returncode == 2 and "no key is configured" in missing.stderr


def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    from backup_engine.storage.encrypted import load_key

    key_file = tmp_path / "repo.key"
    key_file.write_bytes(base64.b64encode(os.urandom(32)))
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {key_file}"):
        load_key(None, str(key_file))
    key_file.chmod(0o640)  # the server's OS user may need it through its group
    assert len(load_key(None, str(key_file))[0]) == 32
