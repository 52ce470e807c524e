"""Client-side encryption as a storage wrapper: AES-256-GCM, in frames, so streams stay streams.

Everything written through it (backup data, manifests, WAL, metadata values) reaches the store
as ciphertext. Each object is:

    b"RDENC1\\n" | key id (8 bytes) | nonce prefix (4 random bytes)
    then frames: length (4 bytes, big-endian) | AES-GCM(frame of up to 1 MiB)

The nonce of frame n is the prefix followed by n; the associated data is the header, n, and
whether the frame is the last one, so frames cannot be reordered, dropped, swapped between
objects, or the object cut short without the decryption failing. The key id (a hash of the key,
never the key) tells a wrong key from a damaged object. Writers hash the plaintext, so manifests
record plaintext sizes and sha256 and restores check those.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backup_engine.errors import ConfigError, CorruptObject
from backup_engine.storage.base import ObjectInfo, ObjectWriter, Storage
from backup_engine.storage.faults import StorageWrapper

ALGORITHM = "aes-256-gcm"
MAGIC = b"RDENC1\n"
FRAME = 1 << 20
HEADER = len(MAGIC) + 8 + 4
FRAME_OVERHEAD = 4 + 16  # length prefix + GCM tag
KEY_ENV = "BACKUP_ENGINE_ENCRYPTION_KEY"
KEY_FILE_ENV = "BACKUP_ENGINE_ENCRYPTION_KEY_FILE"
ALGORITHM_ENV = "BACKUP_ENGINE_ENCRYPTION"


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"restore-drill key id\0" + key).digest()[:8]


def parse_key(text: str | bytes, *, where: str) -> bytes:
    """A 32-byte key, given raw or as base64 or hex text."""
    raw = text if isinstance(text, bytes) else text.encode()
    if len(raw) == 32:
        return raw
    stripped = raw.strip()
    for decode in (base64.b64decode, bytes.fromhex):
        try:
            key = decode(stripped.decode())
        except ValueError:
            continue
        if len(key) == 32:
            return key
    raise ConfigError(
        f"the encryption key in {where} is not 32 bytes",
        hint="generate one with: head -c 32 /dev/urandom | base64",
    )


def load_key(key_text: str | None, key_file: str | None) -> tuple[bytes, dict[str, str]]:
    """The key, and the environment that lets another process load it the same way."""
    if key_file:
        try:
            mode = Path(key_file).stat().st_mode
            if mode & 0o022 or mode & 0o004:
                raise ConfigError(
                    f"encryption key file {key_file} can be read or changed by other users",
                    hint=f"chmod 600 {key_file} (or 640 with the group of the server's OS user)",
                )
            return parse_key(Path(key_file).read_bytes(), where=key_file), {KEY_FILE_ENV: key_file}
        except OSError as exc:
            raise ConfigError(
                f"cannot read encryption key file {key_file}: {exc.strerror}"
            ) from None
    if key_text:
        return parse_key(key_text, where=f"${KEY_ENV}"), {KEY_ENV: key_text}
    raise ConfigError(
        "encryption is on but no key is configured",
        hint=f"set {KEY_ENV} or [repository] encryption_key_file",
    )


def _aad(header: bytes, counter: int, final: bool) -> bytes:
    return header + struct.pack(">QB", counter, final)


class _EncryptingWriter(ObjectWriter):
    def __init__(self, inner: ObjectWriter, aead: AESGCM, kid: bytes) -> None:
        super().__init__(inner.key, metadata=inner.metadata, if_absent=inner.if_absent)
        self._inner = inner
        self._aead = aead
        self._header = MAGIC + kid + os.urandom(4)
        self._counter = 0
        self._buffer = bytearray()
        inner.write(self._header)

    def _frame(self, plaintext: bytes, final: bool) -> None:
        nonce = self._header[-4:] + struct.pack(">Q", self._counter)
        sealed = self._aead.encrypt(nonce, plaintext, _aad(self._header, self._counter, final))
        self._inner.write(struct.pack(">I", len(sealed)) + sealed)
        self._counter += 1

    def _write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) > FRAME:  # keep at least one byte back for the final frame
            self._frame(bytes(self._buffer[:FRAME]), final=False)
            del self._buffer[:FRAME]

    def _commit(self) -> None:
        self._frame(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._inner.commit()

    def _abort(self) -> None:
        self._inner.abort()


class _DecryptingReader:
    def __init__(self, raw: IO[bytes], aead: AESGCM, kid: bytes, where: str) -> None:
        self._raw = raw
        self._aead = aead
        self._where = where
        self._header = self._exact(HEADER)
        if not self._header.startswith(MAGIC):
            raise CorruptObject(f"{where} is not encrypted by this tool (or is damaged)")
        found = self._header[len(MAGIC) : len(MAGIC) + 8]
        if found != kid:
            raise ConfigError(
                f"{where} was encrypted with key {found.hex()}, the configured key is {kid.hex()}",
                hint="configure the key the backup was made with",
            )
        self._counter = 0
        self._pending = b""
        self._done = False

    def _exact(self, n: int) -> bytes:
        data = self._raw.read(n)
        while len(data) < n:
            more = self._raw.read(n - len(data))
            if not more:
                raise CorruptObject(f"{self._where} is cut short")
            data += more
        return data

    def _next_frame(self) -> bytes:
        (length,) = struct.unpack(">I", self._exact(4))
        sealed = self._exact(length)
        nonce = self._header[-4:] + struct.pack(">Q", self._counter)
        for final in (False, True):
            try:
                plaintext = self._aead.decrypt(
                    nonce, sealed, _aad(self._header, self._counter, final)
                )
            except InvalidTag:
                continue
            self._counter += 1
            self._done = final
            if final and self._raw.read(1):
                raise CorruptObject(f"{self._where} has data after its last frame")
            return plaintext
        raise CorruptObject(f"{self._where} fails authentication: damaged or tampered with")

    def read(self, size: int = -1, /) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            self._pending += self._next_frame()
        if size < 0:
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _DecryptingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EncryptedStorage(StorageWrapper):
    def __init__(self, inner: Storage, key: bytes, env: Mapping[str, str] | None = None) -> None:
        super().__init__(inner)
        self._aead = AESGCM(key)
        self._kid = key_id(key)
        self._env = dict(env or {})

    @property
    def key_id(self) -> str:
        return self._kid.hex()

    def encryption_info(self) -> dict[str, str] | None:
        return {"algorithm": ALGORITHM, "key_id": self.key_id}

    def environment(self) -> dict[str, str]:
        return {**self.inner.environment(), ALGORITHM_ENV: ALGORITHM, **self._env}

    def _seal(self, value: str) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(
            nonce + self._aead.encrypt(nonce, value.encode(), self._kid)
        ).decode()

    def _open(self, value: str, key: str) -> str:
        try:
            raw = base64.b64decode(value)
            return self._aead.decrypt(raw[:12], raw[12:], self._kid).decode()
        except (ValueError, InvalidTag):
            raise CorruptObject(
                f"metadata of {key} does not decrypt with the configured key"
            ) from None

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        sealed = {name: self._seal(value) for name, value in (metadata or {}).items()}
        inner = self.inner.writer(key, metadata=sealed, if_absent=if_absent)
        return _EncryptingWriter(inner, self._aead, self._kid)

    def open_reader(self, key: str) -> IO[bytes]:
        raw = self.inner.open_reader(key)
        try:
            reader: Any = _DecryptingReader(raw, self._aead, self._kid, key)
        except BaseException:
            raw.close()  # a header that does not decrypt must not leak the open object
            raise
        return reader

    def stat(self, key: str) -> ObjectInfo:
        info = self.inner.stat(key)
        opened = {name: self._open(value, key) for name, value in info.metadata.items()}
        return ObjectInfo(info.key, plaintext_size(info.size), opened, info.modified)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for info in self.inner.list(prefix):
            yield ObjectInfo(info.key, plaintext_size(info.size), info.metadata, info.modified)


def plaintext_size(stored: int) -> int:
    """Sizes are of what was written: every frame but the last is full, each costs 20 bytes."""
    frames = max(1, -(-(stored - HEADER) // (FRAME + FRAME_OVERHEAD)))
    return max(0, stored - HEADER - frames * FRAME_OVERHEAD)
