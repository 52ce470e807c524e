"""The tests' own fixtures: the tests of the engine never borrow the step library's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seaweedfs import SeaweedS3
from backup_engine.servers import LocalPostgresBackend


@pytest.fixture(scope="session")
def embedded_s3() -> Iterator[EmbeddedS3]:
    """A moto S3 server on 127.0.0.1 for the tests of this directory, started once."""
    with EmbeddedS3() as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[SeaweedS3]:
    """A real S3 server (SeaweedFS) on 127.0.0.1, started once: the store suite runs on it and
    on moto, so our S3 code is proven on more than one implementation."""
    with SeaweedS3() as server:
        yield server


@pytest.fixture
def backend() -> Iterator[LocalPostgresBackend]:
    """Local PostgreSQL servers, stopped and removed after the test."""
    with LocalPostgresBackend() as servers:
        yield servers
