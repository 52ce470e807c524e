"""`storage init` / `storage check`: the bucket configuration a backup store should have.

Versioning on (an overwritten or deleted object's old version survives), default encryption,
lifecycle rules (noncurrent versions expire after a grace period, abandoned multipart uploads
are cleaned up), and optionally Object Lock retention so that nobody, not even the owner in
COMPLIANCE mode, can delete a backup early. `init` applies only what differs from that, so it
is idempotent; `check` reports the differences (drift).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from backup_engine.errors import ConfigError, UsageError
from backup_engine.storage.s3 import S3Storage, translate_error

LIFECYCLE_RULE_ID = "restore-drill"
ABANDONED_UPLOAD_DAYS = 7


@dataclass(frozen=True)
class StorePolicy:
    noncurrent_days: int  # how long an overwritten/deleted version survives
    sse: str | None  # "AES256" or "aws:kms"
    kms_key_id: str | None
    object_lock_days: int | None = None
    object_lock_mode: str = "GOVERNANCE"


@dataclass(frozen=True)
class Change:
    what: str
    current: str
    wanted: str


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class BucketAdmin:
    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self.client = storage.client
        self.bucket = storage.bucket

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise translate_error(exc, self.storage, None, what) from exc

    def exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise translate_error(exc, self.storage, None, "check") from exc
        return True

    # --- what is there now ---------------------------------------------------------------

    def versioning(self) -> str:
        answer = self._call("versioning", self.client.get_bucket_versioning, Bucket=self.bucket)
        return str(answer.get("Status", "Disabled"))

    def noncurrent(self) -> tuple[int, int]:
        """(count, bytes) of old versions under the repository's prefix (still billed until
        the lifecycle rule expires them)."""
        prefix = f"{self.storage.prefix}/" if self.storage.prefix else ""
        count = size = 0
        pages = self.client.get_paginator("list_object_versions")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                for version in page.get("Versions", []):
                    if not version.get("IsLatest"):
                        count += 1
                        size += int(version.get("Size", 0))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise translate_error(exc, self.storage, None, "list versions") from exc
        return count, size

    def encryption(self) -> dict[str, Any] | None:
        try:
            answer = self.client.get_bucket_encryption(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if "ServerSideEncryptionConfigurationNotFound" in _code(exc):
                return None
            raise translate_error(exc, self.storage, None, "encryption") from exc
        rules = answer["ServerSideEncryptionConfiguration"]["Rules"]
        return dict(rules[0]["ApplyServerSideEncryptionByDefault"]) if rules else None

    def lifecycle(self) -> dict[str, Any] | None:
        try:
            answer = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "NoSuchLifecycleConfiguration":
                return None
            raise translate_error(exc, self.storage, None, "lifecycle") from exc
        for rule in answer.get("Rules", []):
            if rule.get("ID") == LIFECYCLE_RULE_ID:
                return dict(rule)
        return None

    def object_lock(self) -> dict[str, Any] | None:
        try:
            answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if "ObjectLockConfigurationNotFound" in _code(exc):
                return None
            raise translate_error(exc, self.storage, None, "object lock") from exc
        return dict(answer.get("ObjectLockConfiguration", {}))

    # --- what it should be ------------------------------------------------------------------

    def _wanted_rule(self, policy: StorePolicy) -> dict[str, Any]:
        prefix = f"{self.storage.prefix}/" if self.storage.prefix else ""
        return {
            "ID": LIFECYCLE_RULE_ID,
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": policy.noncurrent_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABANDONED_UPLOAD_DAYS},
        }

    def drift(self, policy: StorePolicy) -> list[Change]:
        if not self.exists():
            return [Change("bucket", "missing", f"{self.bucket} created")]
        changes = []
        if self.versioning() != "Enabled":
            changes.append(Change("versioning", self.versioning(), "Enabled"))
        if policy.sse:
            current = self.encryption()
            wanted = {"SSEAlgorithm": policy.sse}
            if policy.kms_key_id:
                wanted["KMSMasterKeyID"] = policy.kms_key_id
            if current != wanted:
                changes.append(
                    Change("default encryption", json.dumps(current), json.dumps(wanted))
                )
        rule, wanted_rule = self.lifecycle(), self._wanted_rule(policy)
        if rule is None or any(rule.get(k) != v for k, v in wanted_rule.items()):
            changes.append(Change("lifecycle rule", json.dumps(rule), json.dumps(wanted_rule)))
        if policy.object_lock_days:
            lock = self.object_lock()
            wanted_lock = {"Mode": policy.object_lock_mode, "Days": policy.object_lock_days}
            retention = (lock or {}).get("Rule", {}).get("DefaultRetention") or {}
            current_lock = {k: v for k, v in retention.items() if v} or None  # drop "Years": 0
            days = int(retention.get("Days") or 0) or 365 * int(retention.get("Years") or 0)
            mode = retention.get("Mode")
            # Longer, or COMPLIANCE where GOVERNANCE was asked for, is stronger: no drift.
            strong = mode in (policy.object_lock_mode, "COMPLIANCE")
            if not strong or days < policy.object_lock_days:
                changes.append(
                    Change("object lock", json.dumps(current_lock), json.dumps(wanted_lock))
                )
        return changes

    def apply(self, policy: StorePolicy, changes: list[Change], *, region: str | None) -> None:
        for change in changes:
            if change.what == "bucket":
                args: dict[str, Any] = {"Bucket": self.bucket}
                if region and region != "us-east-1":
                    args["CreateBucketConfiguration"] = {"LocationConstraint": region}
                if policy.object_lock_days:
                    args["ObjectLockEnabledForBucket"] = True  # only possible at creation
                self._call("create bucket", self.client.create_bucket, **args)
                self.apply(policy, self.drift(policy), region=region)
                return
        for change in changes:
            if change.what == "versioning":
                self._call(
                    "versioning", self.client.put_bucket_versioning, Bucket=self.bucket,
                    VersioningConfiguration={"Status": "Enabled"},
                )  # fmt: skip
            elif change.what == "default encryption":
                default = json.loads(change.wanted)
                self._call(
                    "encryption", self.client.put_bucket_encryption, Bucket=self.bucket,
                    ServerSideEncryptionConfiguration={
                        "Rules": [{"ApplyServerSideEncryptionByDefault": default}]
                    },
                )  # fmt: skip
            elif change.what == "lifecycle rule":
                self._put_lifecycle(self._wanted_rule(policy))
            elif change.what == "object lock":
                self._put_object_lock(policy)

    def _put_lifecycle(self, wanted: dict[str, Any]) -> None:
        """Replace only our rule; keep any rules the bucket's owner added."""
        try:
            existing = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except botocore.exceptions.ClientError:
            existing = []
        rules = [r for r in existing if r.get("ID") != LIFECYCLE_RULE_ID] + [wanted]
        self._call(
            "lifecycle", self.client.put_bucket_lifecycle_configuration, Bucket=self.bucket,
            LifecycleConfiguration={"Rules": rules},
        )  # fmt: skip

    def _put_object_lock(self, policy: StorePolicy) -> None:
        retention: Any = {"Mode": policy.object_lock_mode, "Days": policy.object_lock_days}
        try:
            self.client.put_object_lock_configuration(
                Bucket=self.bucket,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": retention},
                },
            )
        except botocore.exceptions.ClientError as exc:
            if "InvalidBucketState" in _code(exc) or "ObjectLock" in _code(exc):
                raise UsageError(
                    f"bucket {self.bucket} was created without Object Lock",
                    hint="S3 enables it only at creation: storage init --object-lock, new bucket",
                ) from None
            raise translate_error(exc, self.storage, None, "object lock") from exc


def require_s3(storage: object) -> S3Storage:
    if not isinstance(storage, S3Storage):
        raise ConfigError(
            "storage init and check configure S3 buckets",
            hint="a file:// repository has no bucket settings; use an s3:// repository",
        )
    return storage
