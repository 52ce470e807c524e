"""A repository in an S3 bucket (`s3://bucket/prefix`), on AWS or any S3-compatible endpoint.

Uploads are multipart with a bounded number of parts in flight, so memory stays at roughly
`part_size * (max_concurrency + 1)` whatever the object size; downloads are one streamed GET
each, resumed where a broken connection left it. S3 allows 10,000 parts per object, so the part
size doubles every 1,000 parts: 5 MiB parts cover 5 GB, and a 5 TB object (S3's largest) fits.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

from botocore.config import Config
from botocore.session import Session

from backup_engine.errors import (
    ConfigError,
    CorruptObject,
)
from backup_engine.storage.base import (
    ObjectInfo,
    ObjectWriter,
    Storage,
    StoredObject,
    addressable,
    check_key,
)
from backup_engine.storage.object_lock import LockState, ObjectLock
from backup_engine.storage.s3_errors import BOTO_ERRORS, translate_error
from backup_engine.storage.s3_models import lean_loader
from backup_engine.storage.s3_options import MiB, S3Options
from backup_engine.storage.s3_transfer import MultipartWriter, StreamingReader
from backup_engine.urls import ca_bundle_problem

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SINGLE_PUT_MAX = 64 * MiB  # below this, put_bytes is one PUT
_T = TypeVar("_T")


def make_client(options: S3Options) -> S3Client:
    # botocore, not boto3: the client is the same, without boto3's resources and s3transfer
    # (~5 MB). This module is imported only when a bucket is opened.
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        # Custom endpoints (MinIO, moto, Ceph) rarely serve virtual-hosted bucket names.
        s3={"addressing_style": "path" if options.endpoint_url else "auto"},
        max_pool_connections=max(10, options.max_concurrency * 2),
    )
    session = Session(profile=options.profile)
    session.register_component("data_loader", lean_loader(session))
    client = session.create_client(
        "s3",
        region_name=options.region,
        endpoint_url=options.endpoint_url,
        verify=_verify(options),
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        config=config,
    )
    return cast("S3Client", client)


def _verify(options: S3Options) -> str | None:
    """The CA bundle, checked now (not at the first TLS handshake), when TLS will use it: a
    plain-http endpoint (MinIO, the embedded server) ignores it, as boto3 itself does."""
    if not options.ca_bundle or (options.endpoint_url or "https:").startswith("http:"):
        return None
    problem = ca_bundle_problem(options.ca_bundle)
    if problem is not None:
        raise ConfigError(
            f"repository.ca_bundle ({options.ca_bundle}) is not usable: {problem}",
            hint="point [repository] ca_bundle (or AWS_CA_BUNDLE) at the PEM file of the CA "
            "that signed the S3 endpoint's certificate",
        )
    return options.ca_bundle


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = make_client(options)
        self._skew: timedelta | None = None  # the store's clock minus ours, from its Date
        self.client.meta.events.register("after-call.s3", self._note_clock)

    def _note_clock(self, http_response: Any = None, **_: Any) -> None:
        date = getattr(http_response, "headers", {}).get("Date")
        try:
            when = parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            return
        if when is not None and when.tzinfo is not None:
            self._skew = when - datetime.now(UTC)

    def store_now(self) -> datetime:
        """The store's own time: a retention date or a lock's end is the store's to judge, and
        this host's clock may be off by minutes or days."""
        if self._skew is None:
            self.check()  # one cheap request, answered with the store's Date
        return datetime.now(UTC) + (self._skew or timedelta(0))

    @property
    def object_lock(self) -> ObjectLock | None:
        return self.options.lock

    def lock_args(self, key: str) -> dict[str, Any]:
        """The retention an object written under `key` carries, from the store's time."""
        lock = self.options.lock
        days = lock.days_for(key) if lock else None
        if lock is None or days is None:
            return {}
        until = self.store_now() + timedelta(days=days)
        return {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": until}

    def confirm_lock(self, key: str, args: Mapping[str, Any]) -> None:
        """After a multipart upload: some stores drop the retention given at its creation
        (moto does); put it on the object then, so no object is left unlocked."""
        if not args:
            return
        state = self.lock_state(key)
        if state.until is not None and state.until >= args["ObjectLockRetainUntilDate"]:
            return
        full = self.full_key(key)
        retention: Any = {
            "Mode": args["ObjectLockMode"],
            "RetainUntilDate": args["ObjectLockRetainUntilDate"],
        }
        self.call(
            "lock",
            key,
            lambda: self.client.put_object_retention(
                Bucket=self.bucket, Key=full, Retention=retention
            ),
        )

    def set_legal_hold(self, key: str, on: bool) -> None:
        full = self.full_key(key)
        status: Any = {"Status": "ON" if on else "OFF"}
        self.call(
            "legal hold",
            key,
            lambda: self.client.put_object_legal_hold(
                Bucket=self.bucket, Key=full, LegalHold=status
            ),
        )

    def lock_state(self, key: str) -> LockState:
        full = self.full_key(key)
        head = self.call("stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=full))
        until = head.get("ObjectLockRetainUntilDate")
        return LockState(
            until=until.astimezone(UTC) if until else None,
            mode=head.get("ObjectLockMode"),
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def environment(self) -> dict[str, str]:
        options = self.options
        values = {
            "AWS_ENDPOINT_URL": options.endpoint_url,
            "AWS_REGION": options.region,
            "AWS_ACCESS_KEY_ID": options.access_key_id,
            "AWS_SECRET_ACCESS_KEY": options.secret_access_key,
            "AWS_CA_BUNDLE": options.ca_bundle,
            "AWS_PROFILE": options.profile,
            # what archive_command writes is locked too (for as long as its own plan says)
            "BACKUP_ENGINE_OBJECT_LOCK": options.lock.mode.lower() if options.lock else None,
        }
        return {name: value for name, value in values.items() if value}

    def full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def call(self, what: str, key: str | None, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except BOTO_ERRORS as exc:
            raise translate_error(exc, self, key, what) from exc

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        return MultipartWriter(self, key, metadata=metadata, if_absent=if_absent)

    def open_reader(self, key: str) -> IO[bytes]:
        return io.BufferedReader(StreamingReader(self, key), buffer_size=MiB)

    def put_bytes(
        self,
        key: str,
        data: bytes | bytearray,
        *,
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> StoredObject:
        """Up to SINGLE_PUT_MAX in one PUT, without the writer's copies into parts."""
        if len(data) > SINGLE_PUT_MAX:
            return super().put_bytes(key, data, metadata=metadata, if_absent=if_absent)
        check_key(key)
        full = self.full_key(key)
        args = {**self.options.encryption_args(), **self.lock_args(key)}
        if metadata:
            args["Metadata"] = dict(metadata)
        if if_absent:
            args["IfNoneMatch"] = "*"
        self.call(
            "upload" if "ObjectLockMode" not in args else "locked upload",
            key,
            # botocore takes a bytearray as it takes bytes (the stubs say bytes only)
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=full, Body=cast(bytes, data), **args
            ),
        )
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest())

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        full = self.full_key(key)
        end = offset + length - 1
        response = self.call(
            "download",
            key,
            lambda: self.client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={offset}-{end}"
            ),
        )
        body: bytes = self.call("download", key, response["Body"].read)
        if len(body) != length:
            raise CorruptObject(f"object {key} ends before byte {offset + length}")
        return body

    def stat(self, key: str) -> ObjectInfo:
        full = self.full_key(key)
        head = self.call("stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=full))
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            metadata=dict(head.get("Metadata", {})),
            modified=head.get("LastModified"),
            etag=head.get("ETag"),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=base + prefix)
        found: list[ObjectInfo] = []

        def collect() -> None:
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(
                        ObjectInfo(
                            key=item["Key"][len(base) :],
                            size=int(item["Size"]),
                            modified=item.get("LastModified"),
                            etag=item.get("ETag"),
                        )
                    )

        self.call("list", prefix or None, collect)
        yield from sorted(addressable(found, self.url), key=lambda info: info.key)

    def delete(self, key: str) -> None:
        full = self.full_key(key)
        self.call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def check(self) -> None:
        # A one-key listing of our prefix, not HeadBucket: a least-privilege role may list only
        # under its prefix (s3:ListBucket with an s3:prefix condition), which HeadBucket fails.
        prefix = f"{self.prefix}/" if self.prefix else ""
        self.call(
            "check",
            None,
            lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1),
        )


__all__ = ["S3Storage", "make_client", "translate_error"]
