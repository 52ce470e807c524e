"""Tamper evidence for a report directory: SHA256SUMS over every file, an Ed25519 signature of
it (`signing.py`) when the drill has a signing key, and (older, symmetric) an HMAC-SHA256 when
DRILL_SIGNING_KEY is set. `verify_report` checks all of them, and report.json's schema."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backup_engine.drill.report import REPORT_JSON, report_schema
from backup_engine.drill.report.schema_check import validate
from backup_engine.drill.report.signing import (
    SIGNATURE_FILE,
    SIGNER_FILE,
    check_signature,
    sign_sums,
)
from backup_engine.errors import IntegrityError, UsageError
from backup_engine.jsonsafe import loads

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.hmac"
SIGNING_KEY_ENV = "DRILL_SIGNING_KEY"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_UNSUMMED = (SUMS, SIGNATURE, SIGNATURE_FILE, SIGNER_FILE)


def _evidence_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in _UNSUMMED)


def sign(data: bytes, key: str) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def write_sums(
    directory: Path,
    signing_key: str | None = None,
    private_key: Ed25519PrivateKey | None = None,
) -> Path:
    """`sha256sum`-compatible lines for every file, then its signature(s) when keyed."""
    lines = [
        f"{_sha256(p)}  {p.relative_to(directory).as_posix()}\n" for p in _evidence_files(directory)
    ]
    sums = directory / SUMS
    sums.write_text("".join(lines))
    if private_key is not None:
        sign_sums(directory, sums.read_bytes(), private_key)
    if signing_key:
        (directory / SIGNATURE).write_text(sign(sums.read_bytes(), signing_key) + "\n")
    return sums


@dataclass(frozen=True)
class ReportVerification:
    files: int
    signed: bool  # the HMAC checked
    signer: str | None = None  # the Ed25519 key that signed it, when checked


def _check_schema(directory: Path) -> None:
    report = directory / REPORT_JSON
    if not report.is_file():
        raise IntegrityError(f"{directory} has no {REPORT_JSON}")
    try:
        validate(loads(report.read_bytes(), where=REPORT_JSON), report_schema())
    except ValueError as exc:  # SchemaViolation
        raise IntegrityError(f"{REPORT_JSON} does not follow its schema: {exc}") from None


def verify_report(
    directory: Path,
    signing_key: str | None = None,
    *,
    public_key: Ed25519PublicKey | None = None,
    require_signature: bool = False,
    check_document: Callable[[Path], None] | None = None,
) -> ReportVerification:
    """Raise IntegrityError naming the first file that changed, appeared or disappeared, a
    signature that does not verify, a missing one when required, or a report.json that does
    not follow its schema."""
    sums = directory / SUMS
    if not sums.is_file():
        raise UsageError(f"{directory} has no {SUMS}", hint="is it a drill report directory?")
    recorded: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        recorded[name] = digest
    present = {p.relative_to(directory).as_posix(): p for p in _evidence_files(directory)}
    for name, digest in recorded.items():
        if name not in present:
            raise IntegrityError(f"{name} is listed in {SUMS} but missing from {directory}")
        if _sha256(present[name]) != digest:
            raise IntegrityError(f"{name} does not match its sha256 in {SUMS}: it was changed")
    added = sorted(set(present) - set(recorded))
    if added:
        raise IntegrityError(f"{added[0]} is not listed in {SUMS}: it was added afterwards")
    signature = directory / SIGNATURE
    if signature.exists():
        if not signing_key:
            raise UsageError(f"{directory} is signed; set {SIGNING_KEY_ENV} to check the signature")
        expected = sign(sums.read_bytes(), signing_key)
        if not hmac.compare_digest(expected, signature.read_text().strip()):
            raise IntegrityError(f"the signature of {SUMS} does not match: report tampered with")
    elif signing_key:
        raise IntegrityError(f"{directory} is not signed, but a signing key is configured")
    (check_document or _check_schema)(directory)  # a fleet run has fleet.json instead
    signer = None
    if public_key is not None:
        signer = check_signature(directory, sums.read_bytes(), public_key)
    elif require_signature:
        raise UsageError("--require-signature needs the signer's --public-key")
    return ReportVerification(len(recorded), signature.exists(), signer)
