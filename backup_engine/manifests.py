"""Manifests: the JSON record written last for every backup, and the objects it lists.

Each kind of backup is a frozen dataclass with `backup_id`, `start_time`, `stop_time`, `files`,
`kind` and `format_version` fields; `ManifestMixin` gives them JSON round trips that refuse
anything malformed, of another kind, or from a newer format, as `CorruptObject` with its
location.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime
from types import UnionType
from typing import Any, ClassVar, Protocol, Self, Union, get_args, get_origin, get_type_hints

from backup_engine.errors import CorruptObject
from backup_engine.jsonsafe import loads_object
from backup_engine.timefmt import iso_utc, parse_utc


class Encrypting(Protocol):
    def encryption_info(self) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class StoredFile:
    name: str  # name inside the backup, e.g. "base.tar.zst"
    key: str  # storage key
    size: int  # bytes in storage
    sha256: str  # of the stored bytes
    raw_size: int | None = None  # bytes before compression


class ManifestMixin:
    KIND: ClassVar[str]
    FORMAT_VERSION: ClassVar[int] = 1

    files: tuple[StoredFile, ...]
    backup_id: str

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
        data = asdict(self)  # type: ignore[call-overload]
        return {k: iso_utc(v) if isinstance(v, datetime) else v for k, v in data.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn kind-specific JSON values back into their types (a hook for subclasses)."""
        return data

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str) -> Self:
        data = loads_object(text, where=where)
        try:
            if data.get("kind") != cls.KIND:
                raise ValueError(f"kind is {data.get('kind')!r}, expected {cls.KIND!r}")
            if data.get("format_version", 0) > cls.FORMAT_VERSION:
                raise ValueError(
                    f"format_version {data['format_version']} is newer than this tool reads"
                )
            data["files"] = tuple(StoredFile(**f) for f in data["files"])
            for field in fields(cls):  # type: ignore[arg-type]
                if field.name.endswith("_time") and field.name in data:
                    data[field.name] = parse_utc(data[field.name])
            manifest = cls(**cls._decode(data))
            check_types(manifest)
            return manifest
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise CorruptObject(f"{where} is not a valid backup manifest: {exc}") from None


def _matches(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        item = get_args(hint)[0]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and is_dataclass(hint):
        if not isinstance(value, hint):
            return False
        check_types(value)  # raises with the nested field's name
        return True
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_types(record: Any) -> None:
    """Manifests come from the repository: every field must hold what its type says (a number
    where a number belongs), or the manifest is refused as a whole instead of crashing later."""
    hints = get_type_hints(type(record))
    for field in fields(record):
        value = getattr(record, field.name)
        if not _matches(value, hints[field.name]):
            raise ValueError(f"{field.name} is {type(value).__name__}, not {hints[field.name]}")


def encryption_extra(storage: Encrypting) -> dict[str, Any]:
    """What a manifest records about client-side encryption: algorithm and key id, not the key."""
    info = storage.encryption_info()
    return {"encryption": info} if info else {}
