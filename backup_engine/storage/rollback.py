"""`storage rollback --to TIME`: the repository as it was at TIME, from the bucket's versions.

After someone with the bucket's keys deleted or overwrote backups (ransomware, a wrong script),
versioning (and Object Lock, which keeps those versions from being deleted too) still holds
every earlier version, but the tool reads only current ones: a delete marker hides a backup, an
overwrite replaces it. Per key, the version that was current at TIME becomes current again:
- a later delete marker is removed (undelete: the version under it was never touched);
- a later version is covered by a copy of the earlier one (revert: a locked version cannot be
  deleted, so the genuine bytes are written again as a new version, with their metadata);
- a key that did not exist at TIME, or was deleted by then, is hidden behind a delete marker
  (hide: reversible, its versions stay).
Nothing is deleted but delete markers. Lock and probe objects are left alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from backup_engine.errors import UsageError
from backup_engine.storage.base import valid_key
from backup_engine.storage.s3 import S3Storage

SKIPPED = ("locks/", "checks/")
MAX_COPY = 5 * 1024**3  # S3's largest single CopyObject; above it, copied in parts
COPY_PART = 512 * 1024**2


@dataclass(frozen=True)
class Entry:
    """One version or delete marker of a key, as ListObjectVersions returns it."""

    version_id: str
    modified: datetime
    marker: bool
    latest: bool  # the current one (a store keeps times to the second: order is not enough)
    size: int = 0
    etag: str = ""


@dataclass(frozen=True)
class Step:
    key: str
    action: str  # "undelete" | "revert" | "hide"
    version_id: str | None  # the version made current again (undelete, revert)
    markers: tuple[str, ...] = ()  # delete markers to remove (undelete)
    size: int = 0

    def describe(self) -> str:
        if self.action == "undelete":
            return f"undelete {self.key} (remove {len(self.markers)} delete marker(s))"
        if self.action == "revert":
            return f"revert {self.key} to version {self.version_id}"
        return f"hide {self.key} (written after the rollback time)"


def _versions(store: S3Storage) -> Iterator[tuple[str, Entry]]:
    base = f"{store.prefix}/" if store.prefix else ""
    pages = store.client.get_paginator("list_object_versions").paginate(
        Bucket=store.bucket, Prefix=base
    )
    iterator = iter(pages)
    while (page := store.call("list versions", None, lambda: next(iterator, None))) is not None:
        for item in page.get("Versions", []):
            yield (
                item["Key"][len(base) :],
                Entry(
                    item["VersionId"],
                    item["LastModified"],
                    False,
                    bool(item.get("IsLatest")),
                    int(item.get("Size", 0)),
                    str(item.get("ETag", "")),
                ),
            )
        for marker in page.get("DeleteMarkers", []):
            yield (
                marker["Key"][len(base) :],
                Entry(
                    marker["VersionId"], marker["LastModified"], True, bool(marker.get("IsLatest"))
                ),
            )


def _step(key: str, entries: list[Entry], when: datetime) -> Step | None:
    # Newest first within one time, as the store lists them: the stable sort keeps that order.
    entries.sort(key=lambda e: e.modified, reverse=True)
    then = [e for e in entries if e.modified <= when]
    later = [e for e in entries if e.modified > when]
    if not later:
        return None  # nothing changed since
    current = next((e for e in entries if e.latest), entries[0])
    current_then = then[0] if then else None
    if current_then is None or current_then.marker:
        return None if current.marker else Step(key, "hide", None)
    same = (current.etag, current.size) == (current_then.etag, current_then.size)
    if not current.marker and current.etag and same:
        return None  # already the same bytes (a rollback run twice, or rewritten unchanged)
    if all(e.marker for e in later):
        return Step(key, "undelete", current_then.version_id,
                    tuple(e.version_id for e in later), current_then.size)  # fmt: skip
    return Step(key, "revert", current_then.version_id, (), current_then.size)


def plan_rollback(store: S3Storage, when: datetime) -> list[Step]:
    if when.tzinfo is None:
        raise UsageError("the rollback time needs a time zone", hint="e.g. 2026-12-06T03:00Z")
    if when > store.store_now():
        raise UsageError(f"{when:%Y-%m-%d %H:%M:%S} UTC is in the future (by the store's clock)")
    versioning = store.call(
        "versioning", None, lambda: store.client.get_bucket_versioning(Bucket=store.bucket)
    )
    if versioning.get("Status") != "Enabled":
        raise UsageError(
            f"bucket {store.bucket} keeps no versions: there is nothing to roll back to",
            hint="backup-engine storage init turns versioning on (for what is written from now)",
        )
    keys: dict[str, list[Entry]] = defaultdict(list)
    for key, entry in _versions(store):
        # A key this tool never writes (a planted ".x") is left alone, as listings leave it:
        # it must not stop a rollback halfway.
        if not key.startswith(SKIPPED) and valid_key(key):
            keys[key].append(entry)
    steps = [_step(key, entries, when) for key, entries in sorted(keys.items())]
    return [s for s in steps if s is not None]


def _copy(store: S3Storage, step: Step) -> None:
    """The earlier version written again as the current one (metadata and all)."""
    bucket, full, client = store.bucket, store.full_key(step.key), store.client
    source: Any = {"Bucket": bucket, "Key": full, "VersionId": step.version_id}
    # The retention goes on afterwards: moto refuses it on a copy, and on AWS the copy takes
    # the bucket's default retention meanwhile anyway.
    args, lock = store.options.encryption_args(), store.lock_args(step.key)

    def call(fn: Callable[..., Any], **kwargs: Any) -> Any:
        return store.call("revert", step.key, lambda: fn(Bucket=bucket, Key=full, **kwargs))

    if step.size <= MAX_COPY:
        call(client.copy_object, CopySource=source, **args)
        store.confirm_lock(step.key, lock)
        return
    upload = call(client.create_multipart_upload, **args)["UploadId"]
    parts: Any = []
    for number, start in enumerate(range(0, step.size, COPY_PART), 1):
        span = f"bytes={start}-{min(start + COPY_PART, step.size) - 1}"
        part = call(client.upload_part_copy, UploadId=upload, PartNumber=number,
                    CopySource=source, CopySourceRange=span)  # fmt: skip
        parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
    call(client.complete_multipart_upload, UploadId=upload, MultipartUpload={"Parts": parts})
    store.confirm_lock(step.key, lock)


def _apply_one(store: S3Storage, step: Step) -> None:
    if step.action == "revert":
        _copy(store, step)
    elif step.action == "hide":
        store.delete(step.key)
    else:
        full = store.full_key(step.key)
        for marker in step.markers:  # a marker is not data: removing it deletes nothing
            store.call(
                "undelete",
                step.key,
                partial(
                    store.client.delete_object, Bucket=store.bucket, Key=full, VersionId=marker
                ),
            )


def apply_rollback(store: S3Storage, steps: Iterable[Step], concurrency: int = 8) -> int:
    with ThreadPoolExecutor(concurrency, thread_name_prefix="rollback") as pool:
        return sum(1 for _ in pool.map(lambda s: _apply_one(store, s), steps))
