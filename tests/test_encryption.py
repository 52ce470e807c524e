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
from backup_engine.storage.encrypted import FRAME, EncryptedStorage, parse_key
from backup_engine.storage.encryption_format import HEADER, HEADER_V1, plaintext_size

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
    header, rest = data[:HEADER], data[HEADER:]
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
    assert plaintext_size(HEADER + size + 20 * frames) == size
    assert plaintext_size(HEADER_V1 + size + 20 * frames, HEADER_V1) == size


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
                assert path.read_bytes().startswith(b"RDENC2\n"), path
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


# --- format 2: a key per object, bound to its name; metadata bound to its object ---------------


def test_content_moved_to_another_name_does_not_decrypt(tmp_path: Path) -> None:
    """The reproduced attack: segment 2's bytes and metadata moved onto segment 3's name were
    served by wal-fetch as segment 3."""
    raw, encrypted = stores(tmp_path)
    encrypted.put_bytes("wal/2", b"segment two", metadata={"sha256": "two"})
    encrypted.put_bytes("wal/3", b"segment three", metadata={"sha256": "three"})
    for suffix in ("", ".meta.json"):
        hidden = suffix and "."
        source = raw.root / "wal" / f"{hidden}2{suffix}"
        (raw.root / "wal" / f"{hidden}3{suffix}").write_bytes(source.read_bytes())
    with pytest.raises(CorruptObject, match=r"another object|moved from another name"):
        encrypted.stat("wal/3")
    with pytest.raises(CorruptObject, match="moved from another name"):
        encrypted.get_bytes("wal/3")


def test_metadata_cannot_move_between_objects_or_names(tmp_path: Path) -> None:
    raw, encrypted = stores(tmp_path)
    encrypted.put_bytes("a", b"a", metadata={"sha256": "aaa", "raw-size": "1"})
    encrypted.put_bytes("b", b"b", metadata={"sha256": "bbb", "raw-size": "1"})
    sidecar_a, sidecar_b = raw.root / ".a.meta.json", raw.root / ".b.meta.json"
    meta_a, meta_b = json.loads(sidecar_a.read_text()), json.loads(sidecar_b.read_text())
    sidecar_b.write_text(json.dumps({**meta_b, "sha256": meta_a["sha256"]}))  # value from a
    with pytest.raises(CorruptObject, match="copied from another object"):
        encrypted.stat("b")
    sidecar_a.write_text(json.dumps({**meta_a, "sha256": meta_a["raw-size"]}))  # other field
    with pytest.raises(CorruptObject, match="copied from another object"):
        encrypted.stat("a")


def test_a_frame_replayed_from_another_object_or_position_is_refused(tmp_path: Path) -> None:
    raw, encrypted = stores(tmp_path)
    encrypted.put_bytes("x", os.urandom(2 * FRAME + 10))
    encrypted.put_bytes("y", os.urandom(2 * FRAME + 10))
    x, y = (raw.root / "x").read_bytes(), (raw.root / "y").read_bytes()
    frame = 4 + FRAME + 16
    (raw.root / "x").write_bytes(x[:HEADER] + y[HEADER : HEADER + frame] + x[HEADER + frame :])
    with pytest.raises(CorruptObject, match="authentication"):
        encrypted.get_bytes("x")
    (raw.root / "y").write_bytes(
        y[: HEADER + frame] + y[HEADER : HEADER + frame] + y[HEADER + frame :]
    )
    with pytest.raises(CorruptObject, match="authentication"):
        encrypted.get_bytes("y")


def test_nonces_never_repeat_under_one_key_across_many_objects() -> None:
    """The old format drew 4 random bytes per object for every frame-0 nonce under one key:
    about 1 % collide at 10,000 objects. Now every object has its own key (a 256-bit salt),
    and within an object the nonce is the frame number."""
    from backup_engine.storage.encryption_format import frame_nonce, key_id, new_header

    kid = key_id(b"k" * 32)
    salts = {new_header(kid)[-32:] for _ in range(100_000)}
    assert len(salts) == 100_000  # 100,000 objects, 100,000 distinct object keys
    nonces = {frame_nonce(i, final) for i in range(20_000) for final in (False, True)}
    assert len(nonces) == 40_000  # a 20 GB object's frames, never one nonce twice


def test_objects_of_the_earlier_format_stay_readable(tmp_path: Path) -> None:
    """Format 1, written here the way earlier versions wrote it."""
    import struct

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from backup_engine.storage.encryption_format import MAGIC_V1, key_id

    key = os.urandom(32)
    raw, encrypted = stores(tmp_path, key)
    aead, kid = AESGCM(key), key_id(key)
    header = MAGIC_V1 + kid + os.urandom(4)
    body = b"written by version 1" * 10
    nonce = header[-4:] + struct.pack(">Q", 0)
    sealed = aead.encrypt(nonce, body, header + struct.pack(">QB", 0, True))
    raw.put_bytes("old", header + struct.pack(">I", len(sealed)) + sealed,
                  metadata={"sha256": base64.b64encode(b"\0" * 12 + aead.encrypt(
                      b"\0" * 12, b"cafe", kid)).decode()})  # fmt: skip
    assert encrypted.get_bytes("old") == body
    assert encrypted.stat("old").metadata == {"sha256": "cafe"}
    assert encrypted.stat("old").size == len(body)
