"""Client-side encryption as a storage wrapper: AES-256-GCM, in frames, so streams stay streams.

Everything written through it (backup data, manifests, WAL, metadata values) reaches the store
as ciphertext; the format (a fresh key per object, bound to the object's path; metadata values
bound to their object and name) is specified in `encryption_format.py` and the README. Writers
hash the plaintext, so manifests record plaintext sizes and sha256 and restores check those.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backup_engine.errors import ConfigError, CorruptObject
from backup_engine.storage.base import ObjectInfo, ObjectWriter, Storage
from backup_engine.storage.encryption_format import (
    ALGORITHM,
    FORMAT,
    FORMAT_META,
    FRAME,
    FRAME_OVERHEAD,
    HEADER,
    HEADER_V1,
    MAGIC,
    MAGIC_V1,
    frame_nonce,
    key_id,
    new_header,
    object_cipher,
    open_value,
    plaintext_size,
    seal_value,
    v1_aad,
    v1_nonce,
)
from backup_engine.storage.faults import StorageWrapper

__all__ = ["ALGORITHM", "FRAME", "MAGIC", "EncryptedStorage", "load_key", "parse_key"]

KEY_ENV = "BACKUP_ENGINE_ENCRYPTION_KEY"
KEY_FILE_ENV = "BACKUP_ENGINE_ENCRYPTION_KEY_FILE"
ALGORITHM_ENV = "BACKUP_ENGINE_ENCRYPTION"


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


class _EncryptingWriter(ObjectWriter):
    def __init__(self, inner: ObjectWriter, master: bytes, kid: bytes) -> None:
        super().__init__(inner.key, metadata=inner.metadata, if_absent=inner.if_absent)
        self._inner = inner
        self._header = new_header(kid)
        self._aead = object_cipher(master, self._header[-32:], inner.key)
        self._counter = 0
        self._buffer = bytearray()
        inner.write(self._header)

    def _frame(self, plaintext: bytes, final: bool) -> None:
        nonce = frame_nonce(self._counter, final)
        sealed = self._aead.encrypt(nonce, plaintext, self._header)
        self._inner.write(len(sealed).to_bytes(4, "big") + sealed)
        self._counter += 1

    def _write(self, data: bytes | bytearray) -> None:
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
    """Either format; every frame authenticated before a byte of it is returned."""

    def __init__(self, raw: IO[bytes], master: bytes, kid: bytes, name: str) -> None:
        self._raw = raw
        self._where = name
        magic = self._exact(len(MAGIC))
        if magic not in (MAGIC, MAGIC_V1):
            raise CorruptObject(f"{name} is not encrypted by this tool (or is damaged)")
        self._v1 = magic == MAGIC_V1
        self._header = magic + self._exact((HEADER_V1 if self._v1 else HEADER) - len(magic))
        found = self._header[len(magic) : len(magic) + len(kid)]
        if found != kid:
            raise ConfigError(
                f"{name} was encrypted with key {found.hex()}, the configured key is {kid.hex()}",
                hint="configure the key the backup was made with",
            )
        self._aead = AESGCM(master) if self._v1 else object_cipher(master, self._header[-32:], name)
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

    def _open(self, sealed: bytes, final: bool) -> bytes:
        if self._v1:
            nonce = v1_nonce(self._header, self._counter)
            return self._aead.decrypt(nonce, sealed, v1_aad(self._header, self._counter, final))
        return self._aead.decrypt(frame_nonce(self._counter, final), sealed, self._header)

    def _next_frame(self) -> bytes:
        length = int.from_bytes(self._exact(4), "big")
        if length > FRAME + FRAME_OVERHEAD:
            raise CorruptObject(f"{self._where} has a frame longer than any this tool writes")
        sealed = self._exact(length)
        for final in (False, True):
            try:
                plaintext = self._open(sealed, final)
            except InvalidTag:
                continue
            self._counter += 1
            self._done = final
            if final and self._raw.read(1):
                raise CorruptObject(f"{self._where} has data after its last frame")
            return plaintext
        raise CorruptObject(
            f"{self._where} fails authentication: damaged, tampered with, or moved from "
            "another name"
        )

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
        self._master = key
        self._kid = key_id(key)
        self._env = dict(env or {})

    @property
    def key_id(self) -> str:
        return self._kid.hex()

    def encryption_info(self) -> dict[str, str] | None:
        return {"algorithm": ALGORITHM, "key_id": self.key_id, "format": FORMAT}

    def environment(self) -> dict[str, str]:
        return {**self.inner.environment(), ALGORITHM_ENV: ALGORITHM, **self._env}

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        sealed = {
            name: seal_value(self._master, self._kid, key, name, value)
            for name, value in (metadata or {}).items()
        }
        sealed[FORMAT_META] = FORMAT
        inner = self.inner.writer(key, metadata=sealed, if_absent=if_absent)
        return _EncryptingWriter(inner, self._master, self._kid)

    def open_reader(self, key: str) -> IO[bytes]:
        raw = self.inner.open_reader(key)
        try:
            reader: Any = _DecryptingReader(raw, self._master, self._kid, key)
        except BaseException:
            raw.close()  # a header that does not decrypt must not leak the open object
            raise
        return reader

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return Storage.read_range(self, key, offset, length)  # frames: decrypt from the start

    def stat(self, key: str) -> ObjectInfo:
        info = self.inner.stat(key)
        current = info.metadata.get(FORMAT_META) == FORMAT
        opened = {
            name: open_value(self._master, self._kid, key, name, value)
            for name, value in info.metadata.items()
            if name != FORMAT_META
        }
        size = plaintext_size(info.size, HEADER if current else HEADER_V1)
        return ObjectInfo(info.key, size, opened, info.modified)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Listings carry no metadata: sizes assume the current format (stat is exact)."""
        for info in self.inner.list(prefix):
            yield ObjectInfo(info.key, plaintext_size(info.size), info.metadata, info.modified)
