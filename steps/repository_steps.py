"""Steps about the backup repository."""

from __future__ import annotations

from pytest_bdd import given

from backup_engine.storage import Storage
from steps import StorageFactory


@given("an empty backup repository", target_fixture="repository")
def empty_repository(storage_factory: StorageFactory) -> Storage:
    return storage_factory()
