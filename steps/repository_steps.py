"""Steps about the backup repository."""

from __future__ import annotations

import base64
import os

from pytest_bdd import given, then

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.storage import Storage
from backup_engine.storage.encrypted import KEY_ENV, MAGIC, EncryptedStorage

from . import StorageFactory


@given("an empty backup repository", target_fixture="repository")
def empty_repository(storage_factory: StorageFactory, drill_record: ScenarioRecord) -> Storage:
    repository = storage_factory()
    drill_record.source(repository.url, data="synthetic")  # everything in it the drill made
    return repository


@given("an empty client-side encrypted backup repository", target_fixture="repository")
def empty_encrypted_repository(
    storage_factory: StorageFactory, drill_record: ScenarioRecord
) -> Storage:
    key = os.urandom(32)
    # The key travels to archive_command / restore_command through the environment.
    env = {KEY_ENV: base64.b64encode(key).decode()}
    repository = EncryptedStorage(storage_factory(), key, env)
    drill_record.source(repository.url, data="synthetic")
    return repository


@then("the store holds nothing but ciphertext")
def only_ciphertext(repository: Storage, drill_record: ScenarioRecord) -> None:
    assert isinstance(repository, EncryptedStorage), "this step needs an encrypted repository"
    raw = repository.inner
    keys = [info.key for info in raw.list()]
    clear = []
    for key in keys:
        with raw.open_reader(key) as stream:
            if stream.read(len(MAGIC)) != MAGIC:
                clear.append(key)
    drill_record.expect_all([
        ("objects in the store", ">= 1", len(keys), bool(keys)),
        ("objects stored in the clear", [], clear, not clear),
    ])  # fmt: skip
