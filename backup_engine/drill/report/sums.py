"""Tamper evidence for a report directory: SHA256SUMS over every file and, when a key is
configured, an HMAC-SHA256 of SHA256SUMS. `verify_report` checks both."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from backup_engine.errors import IntegrityError, UsageError

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.hmac"
SIGNING_KEY_ENV = "DRILL_SIGNING_KEY"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _evidence_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name not in (SUMS, SIGNATURE)
    )


def sign(data: bytes, key: str) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def write_sums(directory: Path, signing_key: str | None = None) -> Path:
    """`sha256sum`-compatible lines for every file, then the HMAC of that file if keyed."""
    lines = [
        f"{_sha256(p)}  {p.relative_to(directory).as_posix()}\n" for p in _evidence_files(directory)
    ]
    sums = directory / SUMS
    sums.write_text("".join(lines))
    if signing_key:
        (directory / SIGNATURE).write_text(sign(sums.read_bytes(), signing_key) + "\n")
    return sums


@dataclass(frozen=True)
class ReportVerification:
    files: int
    signed: bool


def verify_report(directory: Path, signing_key: str | None = None) -> ReportVerification:
    """Raise IntegrityError naming the first file that changed, appeared or disappeared."""
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
    return ReportVerification(len(recorded), signature.exists())
