"""Moving bytes to and from S3: multipart uploads with a bounded number of parts in flight, and
downloads as one streamed GET that resumes where a broken connection left it."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import botocore.exceptions

from backup_engine.errors import CorruptObject, StorageError
from backup_engine.storage.base import ObjectWriter
from backup_engine.storage.s3_errors import BOTO_ERRORS, S3Place, translate_error
from backup_engine.storage.s3_options import MiB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_T = TypeVar("_T")


class S3Target(S3Place, Protocol):
    """The S3 store a transfer works for: S3Storage, without importing it (a cycle)."""

    client: S3Client

    def call(self, what: str, key: str | None, fn: Callable[[], _T]) -> _T: ...

    def full_key(self, key: str) -> str: ...

    def lock_args(self, key: str) -> dict[str, Any]: ...

    def confirm_lock(self, key: str, args: Mapping[str, Any]) -> None: ...


MAX_PARTS = 10_000
PARTS_PER_DOUBLING = 1_000
MAX_PART_SIZE = 5 * 1024 * MiB


class MultipartWriter(ObjectWriter):
    """Fills one part buffer at a time; small objects become a single PUT.

    A full buffer is uploaded as it is (no copy) and, once its upload returns, filled again
    for a later part: memory stays at `part_size * (max_concurrency + 1)` with no buffer made
    twice, where appending to a growing bytearray and copying each part out held two.
    """

    def __init__(
        self,
        storage: S3Target,
        key: str,
        *,
        metadata: Mapping[str, str] | None,
        if_absent: bool,
    ) -> None:
        super().__init__(key, metadata=metadata, if_absent=if_absent)
        self._s3 = storage
        self._full = storage.full_key(key)
        self._part = bytearray(0)  # sized on the first write: most objects are small
        self._filled = 0
        self._spares: list[bytearray] = []  # uploaded parts' buffers, to be filled again
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(storage.options.max_concurrency)
        self._lock: dict[str, Any] | None = None  # Object Lock retention, computed once

    def _write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            size = self._next_part_size()
            n = min(size - self._filled, len(view))
            end = self._filled + n
            if end > len(self._part):
                self._part = self._room(size)
            # Into the buffer, or, with no full-size one to spare, onto its end: a small
            # object never costs a whole part.
            self._part[self._filled : end] = view[:n]
            self._filled = end
            view = view[n:]
            if end == size:
                part = self._part
                self._part, self._filled = bytearray(0), 0
                self._send_part(part)

    def _room(self, size: int) -> bytearray:
        """A spare buffer of `size` holding what the current one holds, or the current one."""
        while self._spares:
            spare = self._spares.pop()
            if len(spare) == size:  # not a smaller part size, from before a doubling
                spare[: self._filled] = memoryview(self._part)[: self._filled]
                return spare
        return self._part

    def _tail(self) -> bytearray:
        """The last bytes, cut to size in place: a copy would hold the part twice."""
        part = self._part
        del part[self._filled :]
        return part

    def _next_part_size(self) -> int:
        doublings = len(self._parts) // PARTS_PER_DOUBLING
        return min(self._s3.options.part_size << doublings, MAX_PART_SIZE)

    def _send_part(self, body: bytes | bytearray) -> None:
        s3 = self._s3
        if self._upload_id is None:
            created = s3.call(
                self._what(),
                self.key,
                lambda: s3.client.create_multipart_upload(
                    Bucket=s3.bucket, Key=self._full, **self._object_args()
                ),
            )
            self._upload_id = created["UploadId"]
            self._pool = ThreadPoolExecutor(max_workers=s3.options.max_concurrency)
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"{self.key} exceeds {MAX_PARTS} parts; raise part_size_mb")
        self._raise_failed_part()
        self._slots.acquire()  # bound memory: at most max_concurrency parts in flight
        assert self._pool is not None
        self._parts.append(self._pool.submit(self._upload_part, number, body))

    def _locked(self) -> dict[str, Any]:
        if self._lock is None:
            self._lock = self._s3.lock_args(self.key)
        return self._lock

    def _what(self) -> str:
        return "locked upload" if self._locked() else "upload"

    def _object_args(self) -> dict[str, Any]:
        args = {**self._s3.options.encryption_args(), **self._locked()}
        if self.metadata:
            args["Metadata"] = self.metadata
        return args

    def _condition(self) -> dict[str, Any]:
        # S3 (and MinIO, moto) refuse a conditional write whose key exists: 412 PreconditionFailed.
        return {"IfNoneMatch": "*"} if self.if_absent else {}

    def _upload_part(self, number: int, body: bytes | bytearray) -> dict[str, Any]:
        s3 = self._s3
        assert self._upload_id is not None
        upload_id = self._upload_id
        try:
            response = s3.call(
                "upload",
                self.key,
                lambda: s3.client.upload_part(
                    Bucket=s3.bucket,
                    Key=self._full,
                    UploadId=upload_id,
                    PartNumber=number,
                    # botocore sends and checksums a bytearray as it does bytes (the stubs
                    # say bytes only); the buffer is not touched again until it returns
                    Body=cast(bytes, body),
                ),
            )
            return {"PartNumber": number, "ETag": response["ETag"]}
        finally:
            if isinstance(body, bytearray):
                self._spares.append(body)  # list.append is atomic: no lock with the filler
            self._slots.release()

    def _raise_failed_part(self) -> None:
        for future in self._parts:
            if future.done() and future.exception() is not None:
                future.result()

    def _commit(self) -> None:
        s3 = self._s3
        if self._upload_id is None:
            body = self._tail()
            s3.call(
                self._what(),
                self.key,
                lambda: s3.client.put_object(
                    Bucket=s3.bucket,
                    Key=self._full,
                    Body=cast(bytes, body),
                    **self._object_args(),
                    **self._condition(),
                ),
            )
            return
        if self._filled or not self._parts:
            self._send_part(self._tail())
            self._part, self._filled = bytearray(0), 0
        parts = [future.result() for future in self._parts]
        upload_id = self._upload_id
        s3.call(
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
        s3.confirm_lock(self.key, self._locked())
        self._shutdown()

    def _abort(self) -> None:
        self._part, self._filled = bytearray(0), 0
        if self._upload_id is None:
            return
        for future in self._parts:
            future.cancel()
        self._shutdown()
        upload_id = self._upload_id
        s3 = self._s3
        # Best effort: a failed abort leaves an incomplete upload that lifecycle rules clean up;
        # it is never visible as an object.
        with contextlib.suppress(*BOTO_ERRORS):
            s3.client.abort_multipart_upload(Bucket=s3.bucket, Key=self._full, UploadId=upload_id)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class StreamingReader(io.RawIOBase):
    """One GET, streamed from the first byte to the last, as pgBackRest and WAL-G read.

    Not parallel ranges: a server that slices a stored value per request (moto, the embedded
    default) pays for the whole object on every range: 80 ms per 8 MiB range of a 130 MB
    object, ten times one plain GET of all of it. The restore's read-ahead thread overlaps this
    stream with decompression and writing instead. A connection that breaks mid-object resumes
    from the byte reached, with a Range pinned to the object's ETag (If-Match), so an object
    replaced in between is refused, never spliced.
    """

    RESUMES = 5

    def __init__(self, storage: S3Target, key: str) -> None:
        super().__init__()
        self._s3, self._key, self._full = storage, key, storage.full_key(key)
        self._position = self._resumes = 0
        self._etag = ""
        self._body = self._open()

    def _open(self) -> Any:
        s3 = self._s3
        args: dict[str, Any] = {}
        if self._position:  # a resume; without an ETag, the final sha256 check still holds
            args = {"Range": f"bytes={self._position}-"}
            if self._etag:
                args["IfMatch"] = self._etag
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
        except BOTO_ERRORS as exc:
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
            except BOTO_ERRORS as exc:
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
