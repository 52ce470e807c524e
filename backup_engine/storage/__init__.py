"""Backup stores: pick an implementation from a repository URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from backup_engine.errors import ConfigError
from backup_engine.storage.base import ObjectInfo, ObjectWriter, Storage, StoredObject
from backup_engine.storage.local import LocalStorage
from backup_engine.storage.s3_options import S3Options

if TYPE_CHECKING:
    from backup_engine.storage.s3 import S3Storage


def __getattr__(name: str) -> Any:
    """S3Storage on first use: botocore is imported only by commands that reach S3."""
    if name == "S3Storage":
        from backup_engine.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "ObjectWriter",
    "S3Options",
    "S3Storage",
    "Storage",
    "StoredObject",
    "open_storage",
]


def open_storage(url: str, s3: S3Options | None = None) -> Storage:
    """`s3://bucket/prefix` or `file:///absolute/path` (a bare absolute path works too)."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(
                f"repository url {url!r} has no bucket", hint="use s3://bucket/prefix"
            )
        from backup_engine.storage.s3 import S3Storage

        return S3Storage(parsed.netloc, parsed.path.strip("/"), s3 or S3Options())
    if parsed.scheme == "file" or (parsed.scheme == "" and url.startswith("/")):
        path = Path(unquote(parsed.path))
        if parsed.netloc or not path.is_absolute():
            raise ConfigError(
                f"repository url {url!r} is not an absolute file url",
                hint="use file:///absolute/path (three slashes)",
            )
        return LocalStorage(path)
    raise ConfigError(
        f"unsupported repository url {url!r}", hint="use s3://bucket/prefix or file:///path"
    )
