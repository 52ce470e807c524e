"""Ed25519 signatures over a report's SHA256SUMS: whoever checks them cannot forge them.

The HMAC of earlier versions (SHA256SUMS.hmac, DRILL_SIGNING_KEY) is symmetric: anyone able to
verify it could sign a forged report, and deleting it left a report "not signed" but otherwise
fine. Here the drill host keeps a private key (`drill keygen`), reports carry
`SHA256SUMS.sig` (the base64 Ed25519 signature of SHA256SUMS) and `SIGNER` (the public key's
fingerprint), and an auditor needs only the public key file to check them.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backup_engine.errors import ConfigError, IntegrityError

SIGNATURE_FILE = "SHA256SUMS.sig"
SIGNER_FILE = "SIGNER"
SIGNING_KEY_FILE_ENV = "DRILL_SIGNING_KEY_FILE"


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def generate_keys(private_file: Path, public_file: Path) -> str:
    """Write a new key pair (private 0600, never overwriting); returns the fingerprint."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (private_file, public_file):
        if path.exists():
            raise ConfigError(f"{path} already exists", hint="keys are never overwritten")
    fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    public_file.write_bytes(public)
    return fingerprint(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigError(
                f"signing key {path} can be read by other users", hint=f"chmod 600 {path}"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(
            f"{path} is not a PEM private key", hint="make one: drill keygen"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", hint="make one: drill keygen")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read public key {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def sign_sums(directory: Path, sums: bytes, key: Ed25519PrivateKey) -> None:
    signature = base64.b64encode(key.sign(sums)).decode()
    (directory / SIGNATURE_FILE).write_text(signature + "\n")
    (directory / SIGNER_FILE).write_text(fingerprint(key.public_key()) + "\n")


def check_signature(directory: Path, sums: bytes, public: Ed25519PublicKey) -> str:
    """The signer's fingerprint if SHA256SUMS.sig is a valid signature by `public`."""
    path = directory / SIGNATURE_FILE
    if not path.is_file():
        raise IntegrityError(f"{directory} carries no {SIGNATURE_FILE}: it is not signed")
    try:
        public.verify(base64.b64decode(path.read_text().strip(), validate=True), sums)
    except (InvalidSignature, ValueError):
        raise IntegrityError(
            f"the signature in {path} is not valid for this SHA256SUMS and public key "
            f"({fingerprint(public)}): the report was changed or signed by someone else"
        ) from None
    return fingerprint(public)
