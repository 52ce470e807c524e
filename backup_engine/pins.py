"""Pins: an operator's "keep this backup" (`pg pin ID --reason ...`), honoured by expire.

A pin is a small object `pins/<kind>/<backup id>.json` beside the backups, never inside one.
A forged pin can only make expire keep more; a pin that cannot be read still keeps its backup
(what we cannot read, we do not reason from toward deletion). Reasons are shown to people:
control characters are dropped and the length is bounded.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from backup_engine.errors import StorageError, UsageError
from backup_engine.storage.base import Storage
from backup_engine.timefmt import BACKUP_ID

PINS_PREFIX = "pins/"
_KIND = re.compile(r"[a-z]{1,16}")  # pins/<kind>/: a registered kind's name (kinds.py)
_ID = BACKUP_ID
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_REASON = 200


@dataclass(frozen=True)
class Pin:
    backup_id: str
    reason: str
    pinned_at: str
    host: str


def _key(kind: str, backup_id: str) -> str:
    if not _KIND.fullmatch(kind) or not _ID.match(backup_id):
        raise UsageError(f"{backup_id!r} is not a backup id", hint="see: backup-engine pg list")
    return f"{PINS_PREFIX}{kind}/{backup_id}.json"


def clean(text: str) -> str:
    return _CONTROL.sub("", text).strip()[:MAX_REASON]


def pin(storage: Storage, kind: str, backup_id: str, reason: str) -> Pin:
    if not clean(reason):
        raise UsageError("a pin needs a reason", hint='say why: --reason "legal hold, ticket 42"')
    made = Pin(backup_id, clean(reason), datetime.now(UTC).isoformat(), socket.gethostname())
    key = _key(kind, backup_id)
    storage.delete(key)  # a new reason replaces the old one
    storage.put_bytes(key, json.dumps(made.__dict__).encode())
    return made


def unpin(storage: Storage, kind: str, backup_id: str) -> bool:
    key = _key(kind, backup_id)
    present = storage.exists(key)
    storage.delete(key)
    return present


def hold(storage: Storage, keys: list[str], on: bool) -> str | None:
    """Under Object Lock, a pin puts a legal hold on the backup's objects (a base backup
    carries its own WAL), so it outlives its retention date; unpin lifts it. Returns why it
    could not, for one warning line: the pin itself stands either way."""
    if storage.object_lock is None:
        return None
    try:
        for key in keys:
            storage.set_legal_hold(key, on)
    except StorageError as exc:
        return (
            f"legal hold not {'set' if on else 'lifted'} ({exc.message}): it needs "
            "s3:PutObjectLegalHold, an operator's permission none of the backup roles has"
        )
    return None


def read_pins(storage: Storage, kind: str) -> dict[str, str]:
    """Backup id -> reason, for every pin of `kind` (unreadable pins keep their backup too)."""
    pins: dict[str, str] = {}
    prefix = f"{PINS_PREFIX}{kind}/"
    for info in storage.list(prefix):
        backup_id = info.key.removeprefix(prefix).removesuffix(".json")
        if not _ID.match(backup_id):
            continue
        try:
            reason = json.loads(storage.get_bytes(info.key)).get("reason")
        except Exception:  # noqa: BLE001 - damaged, forged, not decryptable: still a pin
            reason = None
        pins[backup_id] = clean(reason) if isinstance(reason, str) else "(pin unreadable)"
    return pins
