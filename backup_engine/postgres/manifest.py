"""`backup.json`: the record of one PostgreSQL base backup, written last.

A backup directory without a readable `backup.json` is incomplete and is never offered for
restore. The manifest holds what a restore needs to trust the data: every object's size and
sha256, and what PostgreSQL itself said about the backup (LSNs, timeline, system identifier).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from backup_engine.errors import CorruptObject
from backup_engine.postgres.lsn import parse_lsn

FORMAT_VERSION = 1
KIND = "postgres-base"
BASE_PREFIX = "postgres/base/"
MANIFEST_NAME = "backup.json"


@dataclass(frozen=True)
class StoredFile:
    name: str  # name inside the backup, e.g. "base.tar.zst"
    key: str  # storage key
    size: int  # bytes in storage
    sha256: str  # of the stored bytes
    raw_size: int | None = None  # bytes before compression


@dataclass(frozen=True)
class BaseBackupManifest:
    backup_id: str
    label: str
    start_time: datetime
    stop_time: datetime
    start_lsn: str
    stop_lsn: str
    start_wal_file: str
    stop_wal_file: str
    timeline: int
    pg_version: str
    pg_version_num: int
    system_identifier: str
    wal_segment_size: int
    compression: str
    files: tuple[StoredFile, ...]
    tool_version: str
    source: str
    next_xid: int | None = None  # first xid not yet assigned when the backup ended
    kind: str = KIND
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pg_major(self) -> int:
        return self.pg_version_num // 10000

    @property
    def start_lsn_value(self) -> int:
        return parse_lsn(self.start_lsn)

    @property
    def stop_lsn_value(self) -> int:
        return parse_lsn(self.stop_lsn)

    @property
    def stored_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def raw_bytes(self) -> int:
        return sum(f.raw_size or f.size for f in self.files)

    def file(self, name: str) -> StoredFile:
        for stored in self.files:
            if stored.name == name:
                return stored
        raise CorruptObject(f"backup {self.backup_id} has no {name} in its manifest")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start_time"] = _iso(self.start_time)
        data["stop_time"] = _iso(self.stop_time)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str) -> BaseBackupManifest:
        try:
            data = json.loads(text)
            if data.get("kind") != KIND:
                raise ValueError(f"kind is {data.get('kind')!r}, expected {KIND!r}")
            if data.get("format_version", 0) > FORMAT_VERSION:
                raise ValueError(
                    f"format_version {data['format_version']} is newer than this tool reads"
                )
            data["files"] = tuple(StoredFile(**f) for f in data["files"])
            data["start_time"] = _parse_time(data["start_time"])
            data["stop_time"] = _parse_time(data["stop_time"])
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CorruptObject(f"{where} is not a valid backup manifest: {exc}") from None


def base_backup_prefix(backup_id: str) -> str:
    return f"{BASE_PREFIX}{backup_id}/"


def manifest_key(backup_id: str) -> str:
    return f"{base_backup_prefix(backup_id)}{MANIFEST_NAME}"


_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")


def new_backup_id(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def is_backup_id(text: str) -> bool:
    return bool(_BACKUP_ID.match(text))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment
