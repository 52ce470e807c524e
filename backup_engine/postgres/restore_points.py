"""Named restore points, created on the server and recorded in the repository.

PostgreSQL can recover to a restore point by name, but nothing outside the WAL says where it
is. Recording its LSN and time when it is created lets a restore pick the right backup and
refuse a name that does not exist before any WAL is replayed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from backup_engine.errors import CorruptObject, ObjectNotFound, UsageError
from backup_engine.jsonsafe import loads_object
from backup_engine.manifests import check_types
from backup_engine.postgres.lsn import parse_lsn
from backup_engine.storage.base import Storage

PREFIX = "postgres/restore-points/"


@dataclass(frozen=True)
class RestorePoint:
    name: str
    lsn: str
    time: str  # ISO 8601, server clock
    timeline: int

    @property
    def lsn_value(self) -> int:
        return parse_lsn(self.lsn)

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.time)


def _key(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise UsageError(
            f"restore point name {name!r} cannot be stored", hint="avoid '/' and a leading '.'"
        )
    return f"{PREFIX}{name}.json"


def create_restore_point(
    storage: Storage, dsn: str, name: str, *, switch_wal: bool = True
) -> RestorePoint:
    """Create the restore point on the server, make its WAL archivable, record it."""
    import psycopg  # here: a restore reads restore points and never needs psycopg's 13 MB

    from backup_engine.postgres.connection import connect

    key = _key(name)
    if storage.exists(key):
        raise UsageError(
            f"restore point {name!r} already exists in {storage.url}", hint="pick a new name"
        )
    with connect(dsn) as conn:
        try:
            row = conn.execute(
                "SELECT pg_create_restore_point(%s)::text, clock_timestamp(),"
                " (SELECT timeline_id FROM pg_control_checkpoint())",
                (name,),
            ).fetchone()
            if switch_wal:
                conn.execute("SELECT pg_switch_wal()")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UsageError(
                f"the role cannot create restore points: {exc.diag.message_primary}",
                hint="connect as a superuser, or GRANT EXECUTE ON FUNCTION "
                "pg_create_restore_point(text), pg_switch_wal(), pg_control_checkpoint() to it",
            ) from None
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:  # e.g. wal_level = minimal
            raise UsageError(f"cannot create a restore point: {exc.diag.message_primary}") from None
    assert row is not None
    lsn, created, timeline = row
    assert isinstance(created, datetime)
    point = RestorePoint(name, str(lsn), created.isoformat(), int(str(timeline)))
    storage.put_bytes(key, json.dumps(asdict(point), indent=2).encode(), if_absent=True)
    return point


def read_restore_point(storage: Storage, name: str) -> RestorePoint:
    key = _key(name)
    try:
        data = loads_object(storage.get_bytes(key), where=f"{storage.url}/{key}")
        point = RestorePoint(**data)
        check_types(point)  # a number where a number belongs, or refused here
        point.lsn_value, point.moment  # noqa: B018 - both must parse, or refused here
        return point
    except ObjectNotFound:
        raise UsageError(
            f"restore point {name!r} is not recorded in {storage.url}",
            hint="create restore points with: backup-engine pg restore-point NAME "
            "(or pass a backup id to restore from explicitly)",
        ) from None
    except (ValueError, TypeError, UsageError) as exc:  # UsageError: an LSN that does not parse
        raise CorruptObject(f"{key} is not a valid restore point record: {exc}") from None
