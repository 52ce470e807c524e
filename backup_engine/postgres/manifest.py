"""`backup.json`: the record of one PostgreSQL base backup, written last.

A backup directory without a readable `backup.json` is incomplete and is never offered for
restore. The manifest holds what a restore needs to trust the data: every object's size and
sha256, and what PostgreSQL itself said about the backup (LSNs, timeline, system identifier).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from backup_engine.manifests import ManifestMixin, StoredFile
from backup_engine.postgres.lsn import parse_lsn
from backup_engine.timefmt import backup_id_for

FORMAT_VERSION = 1
KIND = "postgres-base"
BASE_PREFIX = "postgres/base/"
BASE_TAR = "base.tar"  # the one stream of a base backup, named in its manifest
MANIFEST_NAME = "backup.json"
FULL = "full"
INCREMENTAL = "incr"
BACKUP_TYPES = (FULL, INCREMENTAL)
PG_BASEBACKUP = "pg_basebackup"  # piped from pg_basebackup -D - (one tablespace; 13 and 14)
PROTOCOL = "replication"  # our own BASE_BACKUP client (replication.py): PostgreSQL 15+
METHODS = (PG_BASEBACKUP, PROTOCOL)
MAX_OID = 0xFFFFFFFF


@dataclass(frozen=True)
class Tablespace:
    """A tablespace of the backed-up cluster: its own archive, and where it lived. Read from the
    repository, so `location` is checked at restore time before anything is written there."""

    oid: int
    name: str
    location: str  # its path on the backed-up host
    archive: str  # its archive's name in `files`: <oid>.tar with the codec's suffix

    def __post_init__(self) -> None:
        if not 0 < self.oid <= MAX_OID:
            raise ValueError(f"tablespace oid {self.oid} is out of range")
        if not self.archive.startswith(f"{self.oid}.tar"):
            raise ValueError(f"tablespace {self.oid}'s archive is named {self.archive!r}")


@dataclass(frozen=True)
class BaseBackupManifest(ManifestMixin):
    KIND: ClassVar[str] = KIND

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
    start_next_xid: int | None = None  # the same, read just before the backup started
    backup_type: str = "full"  # or "incr": PostgreSQL 17's incremental, restored with its chain
    parent_id: str | None = None  # an incremental's previous backup (full or incremental)
    tablespaces: tuple[Tablespace, ...] = ()  # besides the data directory (base.tar)
    method: str = PG_BASEBACKUP  # how it was taken: pg_basebackup, or our replication client
    compressed_on: str = "client"  # where compression ran: "client" (this tool) or "server"
    from_standby: bool = False  # taken from a hot standby (the primary carried no load)
    kind: str = KIND
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A forged type or parent would make a restore combine the wrong backups.
        if self.backup_type not in BACKUP_TYPES:
            raise ValueError(f"backup_type {self.backup_type!r} is not one of {BACKUP_TYPES}")
        if self.backup_type == FULL and self.parent_id is not None:
            raise ValueError("a full backup names a parent")
        if self.backup_type == INCREMENTAL and not is_backup_id(str(self.parent_id)):
            raise ValueError(f"parent_id {self.parent_id!r} is not a backup id")
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {METHODS}")
        oids = [t.oid for t in self.tablespaces]
        archives = [t.archive for t in self.tablespaces]
        if len(set(oids)) != len(oids) or len(set(archives)) != len(archives):
            raise ValueError("two tablespaces share an oid or an archive")
        names = {f.name for f in self.files}
        if any(a not in names or a.startswith(BASE_TAR) for a in archives):
            raise ValueError("a tablespace's archive is not among the backup's files")

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        spaces = data.get("tablespaces", ())
        if not isinstance(spaces, list):
            raise ValueError("tablespaces is not a list")
        data["tablespaces"] = tuple(Tablespace(**t) for t in spaces)
        return data

    @property
    def pg_major(self) -> int:
        return self.pg_version_num // 10000

    @property
    def incremental(self) -> bool:
        return self.backup_type == INCREMENTAL

    @property
    def start_lsn_value(self) -> int:
        return parse_lsn(self.start_lsn)

    @property
    def stop_lsn_value(self) -> int:
        return parse_lsn(self.stop_lsn)


def base_backup_prefix(backup_id: str) -> str:
    return f"{BASE_PREFIX}{backup_id}/"


def manifest_key(backup_id: str) -> str:
    return f"{base_backup_prefix(backup_id)}{MANIFEST_NAME}"


_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")


def new_backup_id(now: datetime) -> str:
    return backup_id_for(now)


def is_backup_id(text: str) -> bool:
    return bool(_BACKUP_ID.match(text))
