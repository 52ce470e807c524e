"""Fixtures every drill and test can use.

Drills run on the embedded defaults unless told otherwise:
- storage: an S3 server on loopback, one per session, a fresh prefix per scenario:
  SeaweedFS (a real S3 server, DRILL_S3_SERVER=seaweedfs, the default) or moto's model
  (DRILL_S3_SERVER=moto); set DRILL_REPOSITORY (s3://bucket/prefix or file:///path) to drill
  against a store of your own.
- servers: local PostgreSQL processes (DRILL_BACKEND=local).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from backup_engine.config import load_settings
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seaweedfs import SeaweedS3
from backup_engine.errors import ConfigError
from backup_engine.servers import PostgresBackend, make_backend
from backup_engine.storage import Storage, open_storage

from . import StorageFactory

REPOSITORY_ENV = "DRILL_REPOSITORY"
BACKEND_ENV = "DRILL_BACKEND"


S3_SERVER_ENV = "DRILL_S3_SERVER"


@pytest.fixture(scope="session")
def embedded_s3() -> Iterator[EmbeddedS3 | SeaweedS3]:
    """The embedded S3 server on 127.0.0.1, started once per test session."""
    kind = os.environ.get(S3_SERVER_ENV, "seaweedfs")
    if kind not in ("seaweedfs", "moto"):
        raise ConfigError(f"{S3_SERVER_ENV}={kind!r}", hint="use seaweedfs or moto")
    with SeaweedS3() if kind == "seaweedfs" else EmbeddedS3() as server:
        yield server


@pytest.fixture
def storage_factory(request: pytest.FixtureRequest) -> StorageFactory:
    """Make empty stores, each under its own prefix, in the configured or embedded S3."""
    configured = os.environ.get(REPOSITORY_ENV)

    def make() -> Storage:
        prefix = f"drill-{uuid.uuid4().hex[:12]}"
        if configured:
            options = load_settings().repository.s3_options()
            return open_storage(f"{configured.rstrip('/')}/{prefix}", options)
        embedded: EmbeddedS3 | SeaweedS3 = request.getfixturevalue("embedded_s3")
        return embedded.storage(prefix)

    return make


@pytest.fixture
def pg_backend() -> Iterator[PostgresBackend]:
    """Throwaway PostgreSQL servers; all stopped and deleted when the test ends."""
    with make_backend(os.environ.get(BACKEND_ENV, "local")) as backend:
        yield backend
