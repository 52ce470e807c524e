"""A repository in an S3 bucket (`s3://bucket/prefix`), on AWS or any S3-compatible endpoint.

Uploads are multipart with a bounded number of parts in flight, so memory stays at roughly
`part_size * (max_concurrency + 2)` whatever the object size; downloads are one streamed GET
each, resumed where a broken connection left it. S3 allows 10,000 parts per object, so the part
size doubles every 1,000 parts: 8 MiB parts cover 8 GB, and a 10 TB object still fits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import botocore.exceptions
from botocore.config import Config

from backup_engine.errors import (
    BucketNotFound,
    ConfigError,
    CorruptObject,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnreachable,
)
from backup_engine.storage.base import (
    ObjectInfo,
    ObjectWriter,
    Storage,
    StoredObject,
    check_key,
)
from backup_engine.storage.s3_options import MiB, S3Options
from backup_engine.urls import ca_bundle_problem

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SINGLE_PUT_MAX = 64 * MiB  # below this, put_bytes is one PUT
_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
_NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
)
_MAX_PARTS = 10_000
_PARTS_PER_DOUBLING = 1_000
_MAX_PART_SIZE = 5 * 1024 * MiB
_T = TypeVar("_T")


def make_client(options: S3Options) -> S3Client:
    import boto3  # imported here: boto3 costs ~0.3 s to import and most commands never need it

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        # Custom endpoints (MinIO, moto, Ceph) rarely serve virtual-hosted bucket names.
        s3={"addressing_style": "path" if options.endpoint_url else "auto"},
        max_pool_connections=max(10, options.max_concurrency * 2),
    )
    session = boto3.session.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        region_name=options.region,
    )
    return session.client(
        "s3", endpoint_url=options.endpoint_url, config=config, verify=_verify(options)
    )


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

    def environment(self) -> dict[str, str]:
        options = self.options
        values = {
            "AWS_ENDPOINT_URL": options.endpoint_url,
            "AWS_REGION": options.region,
            "AWS_ACCESS_KEY_ID": options.access_key_id,
            "AWS_SECRET_ACCESS_KEY": options.secret_access_key,
            "AWS_CA_BUNDLE": options.ca_bundle,
        }
        return {name: value for name, value in values.items() if value}

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str | None, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except _BOTO_ERRORS as exc:
            raise translate_error(exc, self, key, what) from exc

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        return _MultipartWriter(self, key, metadata=metadata, if_absent=if_absent)

    def open_reader(self, key: str) -> IO[bytes]:
        return io.BufferedReader(_StreamingReader(self, key), buffer_size=MiB)

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
        full = self._full(key)
        args = self.options.encryption_args()
        if metadata:
            args["Metadata"] = dict(metadata)
        if if_absent:
            args["IfNoneMatch"] = "*"
        self._call(
            "upload",
            key,
            # botocore takes a bytearray as it takes bytes (the stubs say bytes only)
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=full, Body=cast(bytes, data), **args
            ),
        )
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest())

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        full = self._full(key)
        end = offset + length - 1
        response = self._call(
            "download",
            key,
            lambda: self.client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={offset}-{end}"
            ),
        )
        body: bytes = self._call("download", key, response["Body"].read)
        if len(body) != length:
            raise CorruptObject(f"object {key} ends before byte {offset + length}")
        return body

    def stat(self, key: str) -> ObjectInfo:
        full = self._full(key)
        head = self._call(
            "stat", key, lambda: self.client.head_object(Bucket=self.bucket, Key=full)
        )
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            metadata=dict(head.get("Metadata", {})),
            modified=head.get("LastModified"),
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
                        )
                    )

        self._call("list", prefix or None, collect)
        yield from sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def check(self) -> None:
        # A one-key listing of our prefix, not HeadBucket: a least-privilege role may list only
        # under its prefix (s3:ListBucket with an s3:prefix condition), which HeadBucket fails.
        prefix = f"{self.prefix}/" if self.prefix else ""
        self._call(
            "check",
            None,
            lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1),
        )


def translate_error(exc: Exception, storage: S3Storage, key: str | None, what: str) -> Exception:
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
    if isinstance(exc, _NETWORK_ERRORS):
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


class _MultipartWriter(ObjectWriter):
    """Buffers one part at a time; small objects become a single PUT."""

    def __init__(
        self,
        storage: S3Storage,
        key: str,
        *,
        metadata: Mapping[str, str] | None,
        if_absent: bool,
    ) -> None:
        super().__init__(key, metadata=metadata, if_absent=if_absent)
        self._s3 = storage
        self._full = storage._full(key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(storage.options.max_concurrency)

    def _write(self, data: bytes | bytearray) -> None:
        self._buffer += data
        while len(self._buffer) >= (size := self._next_part_size()):
            part = bytes(memoryview(self._buffer)[:size])  # one copy, not a slice and a copy
            del self._buffer[:size]
            self._send_part(part)

    def _next_part_size(self) -> int:
        doublings = len(self._parts) // _PARTS_PER_DOUBLING
        return min(self._s3.options.part_size << doublings, _MAX_PART_SIZE)

    def _send_part(self, body: bytes) -> None:
        s3 = self._s3
        if self._upload_id is None:
            created = s3._call(
                "upload",
                self.key,
                lambda: s3.client.create_multipart_upload(
                    Bucket=s3.bucket, Key=self._full, **self._object_args()
                ),
            )
            self._upload_id = created["UploadId"]
            self._pool = ThreadPoolExecutor(max_workers=s3.options.max_concurrency)
        number = len(self._parts) + 1
        if number > _MAX_PARTS:
            raise StorageError(f"{self.key} exceeds {_MAX_PARTS} parts; raise part_size_mb")
        self._raise_failed_part()
        self._slots.acquire()  # bound memory: at most max_concurrency parts in flight
        assert self._pool is not None
        self._parts.append(self._pool.submit(self._upload_part, number, body))

    def _object_args(self) -> dict[str, Any]:
        args = self._s3.options.encryption_args()
        if self.metadata:
            args["Metadata"] = self.metadata
        return args

    def _condition(self) -> dict[str, Any]:
        # S3 (and MinIO, moto) refuse a conditional write whose key exists: 412 PreconditionFailed.
        return {"IfNoneMatch": "*"} if self.if_absent else {}

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        s3 = self._s3
        assert self._upload_id is not None
        upload_id = self._upload_id
        try:
            response = s3._call(
                "upload",
                self.key,
                lambda: s3.client.upload_part(
                    Bucket=s3.bucket,
                    Key=self._full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                ),
            )
            return {"PartNumber": number, "ETag": response["ETag"]}
        finally:
            self._slots.release()

    def _raise_failed_part(self) -> None:
        for future in self._parts:
            if future.done() and future.exception() is not None:
                future.result()

    def _commit(self) -> None:
        s3 = self._s3
        if self._upload_id is None:
            body = bytes(self._buffer)
            s3._call(
                "upload",
                self.key,
                lambda: s3.client.put_object(
                    Bucket=s3.bucket,
                    Key=self._full,
                    Body=body,
                    **self._object_args(),
                    **self._condition(),
                ),
            )
            return
        if self._buffer or not self._parts:
            self._send_part(bytes(self._buffer))
            self._buffer.clear()
        parts = [future.result() for future in self._parts]
        upload_id = self._upload_id
        s3._call(
            "upload",
            self.key,
            lambda: s3.client.complete_multipart_upload(
                Bucket=s3.bucket,
                Key=self._full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                **self._condition(),
            ),
        )
        self._shutdown()

    def _abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is None:
            return
        for future in self._parts:
            future.cancel()
        self._shutdown()
        upload_id = self._upload_id
        s3 = self._s3
        # Best effort: a failed abort leaves an incomplete upload that lifecycle rules clean up;
        # it is never visible as an object.
        with contextlib.suppress(*_BOTO_ERRORS):
            s3.client.abort_multipart_upload(Bucket=s3.bucket, Key=self._full, UploadId=upload_id)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class _StreamingReader(io.RawIOBase):
    """One GET, streamed from the first byte to the last, as pgBackRest and WAL-G read.

    Not parallel ranges: a server that slices a stored value per request (moto, the embedded
    default) pays for the whole object on every range: 80 ms per 8 MiB range of a 130 MB
    object, ten times one plain GET of all of it. The restore's read-ahead thread overlaps this
    stream with decompression and writing instead. A connection that breaks mid-object resumes
    from the byte reached, with a Range pinned to the object's ETag (If-Match), so an object
    replaced in between is refused, never spliced.
    """

    RESUMES = 5

    def __init__(self, storage: S3Storage, key: str) -> None:
        super().__init__()
        self._s3, self._key, self._full = storage, key, storage._full(key)
        self._position = self._resumes = 0
        self._etag = ""
        self._body = self._open()

    def _open(self) -> Any:
        s3 = self._s3
        args: dict[str, Any] = {}
        if self._position:
            args = {"Range": f"bytes={self._position}-", "IfMatch": self._etag}
        try:
            response = s3.client.get_object(Bucket=s3.bucket, Key=self._full, **args)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if self._position and code in ("PreconditionFailed", "412"):
                raise CorruptObject(
                    f"object {s3.url}/{self._key} was replaced while it was being read",
                    hint="someone else writes to this repository; run the command again",
                ) from None
            raise translate_error(exc, s3, self._key, "download") from exc
        except _BOTO_ERRORS as exc:
            raise translate_error(exc, s3, self._key, "download") from exc
        self._etag = response.get("ETag", "")
        return response["Body"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            try:
                data = self._body.read(len(buffer))
                break
            except _BOTO_ERRORS as exc:
                if self._resumes >= self.RESUMES:
                    raise translate_error(exc, self._s3, self._key, "download") from exc
                self._resumes += 1
                self._body.close()
                self._body = self._open()
        n = len(data)
        buffer[:n] = data
        self._position += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
