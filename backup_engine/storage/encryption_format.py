"""The encrypted object format: what an object and a metadata value look like in the store.

Format 2 (written by this version), for an object stored under the repository path NAME:

    header  = b"RDENC2\\n" | key id (8 bytes) | salt (32 random bytes)
    key     = HKDF-SHA256(master key, salt, info = b"restore-drill object v2\\0" + NAME)
    frame i = length (4 bytes, big-endian) | AES-256-GCM(key, nonce_i, plaintext_i, header)
    nonce_i = 3 zero bytes | i (8 bytes, big-endian) | 1 if this is the last frame else 0

Every object gets its own key (a fresh 256-bit salt), so a nonce never repeats under one key
however many objects the repository holds; within an object the nonce counts frames and marks
the last one, so frames cannot be reordered, dropped, replayed or cut off. The object's path is
part of its key: bytes moved to another name do not decrypt. Frames hold 1 MiB of plaintext.

A metadata value (the sha256 and size of a WAL segment, for example) is sealed as

    "2:" + base64(salt (16) | nonce (12) | AES-256-GCM(k, nonce, value, aad))
    k   = HKDF-SHA256(master key, salt, info = b"restore-drill metadata v2\\0" + NAME)
    aad = key id | NAME | "\\0" | metadata name

so a value copied to another object, or to another name on the same object, does not open.
The unsealed metadata value `encryption-format` = "2" says which format the object is in.

Format 1 (earlier versions; still read, never written): header `RDENC1\\n` | key id | 4-byte
nonce prefix, one key for every object, nonce = prefix | frame number, associated data = header |
frame number | last flag; metadata sealed as base64(nonce | ciphertext) with the key id as
associated data.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backup_engine.errors import CorruptObject

ALGORITHM = "aes-256-gcm"
MAGIC_V1 = b"RDENC1\n"
MAGIC = b"RDENC2\n"
KID_BYTES = 8
SALT_BYTES = 32
HEADER_V1 = len(MAGIC_V1) + KID_BYTES + 4
HEADER = len(MAGIC) + KID_BYTES + SALT_BYTES
FRAME = 1 << 20
FRAME_OVERHEAD = 4 + 16  # length prefix + GCM tag
FORMAT_META = "encryption-format"
FORMAT = "2"
_METADATA_PREFIX = "2:"


def key_id(master: bytes) -> bytes:
    """A hash of the key, never the key: tells a wrong key from a damaged object."""
    return hashlib.sha256(b"restore-drill key id\0" + master).digest()[:KID_BYTES]


def _derive(master: bytes, salt: bytes, info: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info)
    return AESGCM(hkdf.derive(master))


def object_cipher(master: bytes, salt: bytes, name: str) -> AESGCM:
    return _derive(master, salt, b"restore-drill object v2\0" + name.encode())


def frame_nonce(index: int, final: bool) -> bytes:
    return b"\0\0\0" + struct.pack(">QB", index, final)


def new_header(kid: bytes) -> bytes:
    return MAGIC + kid + os.urandom(SALT_BYTES)


def v1_aad(header: bytes, counter: int, final: bool) -> bytes:
    return header + struct.pack(">QB", counter, final)


def v1_nonce(header: bytes, counter: int) -> bytes:
    return header[-4:] + struct.pack(">Q", counter)


def plaintext_size(stored: int, header: int = HEADER) -> int:
    """Sizes are of what was written: every frame but the last is full, each costs 20 bytes."""
    frames = max(1, -(-(stored - header) // (FRAME + FRAME_OVERHEAD)))
    return max(0, stored - header - frames * FRAME_OVERHEAD)


# --- metadata values -----------------------------------------------------------------------------


def _metadata_aad(kid: bytes, name: str, field: str) -> bytes:
    return kid + name.encode() + b"\0" + field.encode()


def seal_value(master: bytes, kid: bytes, name: str, field: str, value: str) -> str:
    salt, nonce = os.urandom(16), os.urandom(12)
    cipher = _derive(master, salt, b"restore-drill metadata v2\0" + name.encode())
    sealed = cipher.encrypt(nonce, value.encode(), _metadata_aad(kid, name, field))
    return _METADATA_PREFIX + base64.b64encode(salt + nonce + sealed).decode()


def open_value(master: bytes, kid: bytes, name: str, field: str, value: str) -> str:
    """A sealed metadata value, opened; refuses one that belongs to another object or name."""
    try:
        if value.startswith(_METADATA_PREFIX):
            raw = base64.b64decode(value[len(_METADATA_PREFIX) :], validate=True)
            salt, nonce, sealed = raw[:16], raw[16:28], raw[28:]
            cipher = _derive(master, salt, b"restore-drill metadata v2\0" + name.encode())
            return cipher.decrypt(nonce, sealed, _metadata_aad(kid, name, field)).decode()
        raw = base64.b64decode(value, validate=True)  # format 1
        return AESGCM(master).decrypt(raw[:12], raw[12:], kid).decode()
    except (ValueError, InvalidTag):
        raise CorruptObject(
            f"metadata {field!r} of {name} does not open with the configured key: damaged, "
            "or copied from another object"
        ) from None
