"""One backup of a kind at a time: a lock object in the repository, taken with a conditional
write so two hosts cannot both get it. A lock left by a crashed process is stale when its
holder was on this host and is gone, or when it is older than `STALE_AFTER`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from backup_engine.errors import (
    BackupEngineError,
    CorruptObject,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from backup_engine.jsonsafe import loads
from backup_engine.storage.base import Storage

LOCK_PREFIX = "locks/"
STALE_AFTER = timedelta(hours=24)


class BackupLocked(BackupEngineError):
    """Another backup of the same kind holds the repository lock."""

    exit_code = 1


def lock_key(name: str) -> str:
    return f"{LOCK_PREFIX}{name}.lock"


def _holder() -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(),
    }


def _stale(holder: dict[str, object]) -> bool:
    try:
        since = datetime.fromisoformat(str(holder.get("since")))
    except ValueError:
        return False  # a record we cannot read is someone's lock: wait for it, or remove it
    if since.tzinfo is None:
        return False
    if datetime.now(UTC) - since > STALE_AFTER:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(str(holder.get("pid"))), 0)
    except ProcessLookupError:
        return True  # the process that took it is gone
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _read(storage: Storage, key: str) -> dict[str, object] | None:
    try:
        data = loads(storage.get_bytes(key), where=key)
    except ObjectNotFound:
        return None
    except CorruptObject:
        data = None
    if not isinstance(data, dict):  # damaged or forged: someone's lock all the same
        return {"host": "?", "pid": 0, "since": datetime.now(UTC).isoformat()}
    return data


@contextmanager
def repository_lock(
    storage: Storage, name: str, *, wait: float = 0, poll: float = 0.5
) -> Iterator[None]:
    key = lock_key(name)
    deadline = time.monotonic() + wait
    while True:
        try:
            storage.put_bytes(key, json.dumps(_holder()).encode(), if_absent=True)
            break
        except ObjectExists:
            holder = _read(storage, key)
            if holder is None:
                continue  # released meanwhile: try again at once
            if _stale(holder):
                storage.delete(key)
                continue
            if time.monotonic() >= deadline:
                raise BackupLocked(
                    f"another {name} backup is running (host {holder.get('host')}, pid "
                    f"{holder.get('pid')}, since {holder.get('since')})",
                    hint=f"wait for it (--lock-wait SECONDS); if it is gone, remove {key} "
                    f"with: backup-engine storage unlock {name}",
                ) from None
            time.sleep(poll)
    try:
        yield
    finally:
        with contextlib.suppress(StorageError):  # else it goes stale and is taken over
            storage.delete(key)


def holders(storage: Storage, prefix: str) -> list[str]:
    """Names of the live locks (not stale) whose name starts with `prefix`."""
    live = []
    for info in storage.list(f"{LOCK_PREFIX}{prefix}"):
        holder = _read(storage, info.key)
        if holder is not None and not _stale(holder):  # unreadable counts as held
            live.append(info.key.removeprefix(LOCK_PREFIX).removesuffix(".lock"))
    return live
