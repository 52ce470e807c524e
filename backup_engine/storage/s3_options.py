"""How to reach an S3 bucket: kept apart from `s3.py` so that reading the configuration does
not import botocore (~0.1 s a command that never touches S3 would pay)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backup_engine.errors import ConfigError
from backup_engine.storage.object_lock import ObjectLock

MiB = 1024 * 1024


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    sse: str | None = None  # "AES256" or "aws:kms"
    kms_key_id: str | None = None
    part_size: int = 5 * MiB  # S3's minimum: memory is part_size * (max_concurrency + 1)
    max_concurrency: int = 2
    access_key_id: str | None = None  # normally None: botocore reads AWS_* and its profiles
    secret_access_key: str | None = None
    ca_bundle: str | None = None  # PEM of a private CA; None: the system's (or AWS_CA_BUNDLE)
    lock: ObjectLock | None = None  # Object Lock retention put on every object written
    profile: str | None = None  # an AWS profile: a second repository's own credentials

    def encryption_args(self) -> dict[str, Any]:
        if self.sse is None:
            return {}
        if self.sse not in ("AES256", "aws:kms"):
            raise ConfigError(f"unknown sse {self.sse!r}", hint='use "AES256" or "aws:kms"')
        args: dict[str, Any] = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args
