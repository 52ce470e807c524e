"""botocore's exceptions as ours: one line saying what failed and how to fix it."""

from __future__ import annotations

from typing import Protocol

import botocore.exceptions

from backup_engine.errors import (
    BucketNotFound,
    ConfigError,
    CorruptObject,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnreachable,
)
from backup_engine.storage.s3_options import S3Options


class S3Place(Protocol):
    """Where an S3 operation went: enough to say which bucket and endpoint in a message."""

    url: str
    bucket: str
    options: S3Options


BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
)


def translate_error(exc: Exception, storage: S3Place, key: str | None, what: str) -> Exception:
    """Map botocore's exceptions onto our tree, with the remedy a user needs."""
    where = f"{storage.url}/{key}" if key else storage.url
    endpoint = storage.options.endpoint_url or "AWS S3"
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError(
            "no S3 credentials found",
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile",
        )
    if isinstance(exc, botocore.exceptions.SSLError):
        return StorageUnreachable(
            f"the TLS certificate of the S3 endpoint {endpoint} is not trusted",
            hint="if a private CA signed it, set [repository] ca_bundle (or AWS_CA_BUNDLE) to "
            "that CA's PEM file",
        )
    if isinstance(exc, NETWORK_ERRORS):
        return StorageUnreachable(
            f"cannot reach the S3 endpoint {endpoint}",
            hint="check endpoint_url / AWS_ENDPOINT_URL and that the service is running",
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket" or (what == "check" and code in ("404", "NotFound")):
            return BucketNotFound(
                f"bucket {storage.bucket} does not exist at {endpoint}",
                hint="create it (aws s3 mb) or fix the repository url",
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"object {where} not found")
        if code in ("InvalidRange", "416"):
            return CorruptObject(f"object {where} is shorter than the range asked for")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return ObjectExists(f"object {where} already exists")
        if what == "locked upload" and code in ("InvalidRequest", "400"):
            # AWS: "Bucket is missing Object Lock Configuration"; SeaweedFS: "Invalid Request"
            return ConfigError(
                f"bucket {storage.bucket} refused a write with Object Lock retention ({where}): "
                "the bucket has no Object Lock",
                hint="[repository] object_lock needs a bucket created with Object Lock "
                "(backup-engine storage init --object-lock governance, on a new bucket); or "
                "unset object_lock",
            )
        if what == "delete" and code in ("AccessDenied", "403"):
            return StorageUnreachable(
                f"the store refused to delete {where}: access denied, or an Object Lock "
                "retention or legal hold protects it",
                hint="see its lock with: aws s3api head-object; expire keeps locked objects",
            )
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageUnreachable(
                f"access denied to {where} ({what})",
                hint="check the credentials and the IAM policy for this prefix",
            )
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        after = f" after {retried + 1} attempts" if retried else ""
        return StorageError(
            f"S3 {what} of {where} failed{after}: {code or exc} (HTTP {status})",
            hint="the store is failing; nothing incomplete was left listed, try again later",
        )
    return StorageUnreachable(f"S3 {what} of {where} failed: {exc}")
