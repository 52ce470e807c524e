"""Steps about immutable backups: a bucket with S3 Object Lock, an attacker holding the bucket's
own keys, and the rollback that undoes what such an attacker can still do."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import botocore.exceptions
import pytest
from pytest_bdd import given, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.history import store_report
from backup_engine.postgres.catalog import list_base_backups
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.retention import RetentionPolicy
from backup_engine.storage import Storage
from backup_engine.storage.object_lock import plan_lock
from backup_engine.storage.rollback import apply_rollback, plan_rollback
from backup_engine.storage.s3 import S3Storage

from . import StorageFactory

EVIDENCE_DAYS = 90  # [drill] keep_days' default


@dataclass
class Attack:
    before: datetime  # the store's time just before the first attacking request
    targets: dict[str, str]  # key -> sha256 of its genuine bytes
    refused: list[str]  # "key@version" of every version delete the store refused
    removed: list[str]  # ... and of every one it carried out


@given("an empty backup repository in a bucket with Object Lock", target_fixture="repository")
def locked_repository(storage_factory: StorageFactory, drill_record: ScenarioRecord) -> Storage:
    plain = storage_factory()
    if not isinstance(plain, S3Storage):
        pytest.skip(f"environment limit: Object Lock needs an S3 store; DRILL_REPOSITORY is "
                    f"{plain.url}")  # fmt: skip
    bucket = f"locked-{uuid.uuid4().hex[:12]}"  # Object Lock is switched on only at creation
    plain.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    lock = plan_lock("governance", RetentionPolicy(), EVIDENCE_DAYS)
    repository = S3Storage(bucket, "drill", replace(plain.options, lock=lock))
    drill_record.source(repository.url, data="synthetic")
    return repository


def _sha(storage: Storage, key: str) -> str:
    return hashlib.sha256(storage.get_bytes(key)).hexdigest()


@when(
    "an attacker with the bucket's keys deletes every version of the base backup, "
    "a WAL segment and a drill report",
    target_fixture="attack",
)
def delete_versions(repository: Storage, tmp_path: Path) -> Attack:
    assert isinstance(repository, S3Storage), "this step needs an S3 repository"
    run = tmp_path / "20261206T031700Z-3f2a9c1e"  # a sealed drill run, kept in the repository
    run.mkdir()
    (run / "report.json").write_text('{"result": "passed"}')
    report = store_report(repository, run) + "report.json"
    (backup,) = list_base_backups(repository).backups
    segment = next(i.key for i in repository.list(WAL_PREFIX) if i.key.endswith(".zst"))
    keys = [*(f.key for f in backup.files), f"postgres/base/{backup.backup_id}/backup.json",
            segment, report]  # fmt: skip
    targets = {key: _sha(repository, key) for key in keys}
    time.sleep(1.1)  # the store keeps times to the second: "before" falls between them
    attack = Attack(repository.store_now(), targets, [], [])
    time.sleep(1.1)
    client, bucket = repository.client, repository.bucket
    for key in keys:
        full = repository.full_key(key)
        for version in client.list_object_versions(Bucket=bucket, Prefix=full).get("Versions", []):
            name = f"{key}@{version['VersionId']}"
            try:
                client.delete_object(Bucket=bucket, Key=full, VersionId=version["VersionId"])
                attack.removed.append(name)
            except botocore.exceptions.ClientError:
                attack.refused.append(name)
    return attack


@then("the store refused every deletion and every object still reads back whole")
def refused(repository: Storage, attack: Attack, drill_record: ScenarioRecord) -> None:
    whole = [key for key, sha in attack.targets.items() if _sha(repository, key) == sha]
    drill_record.expect_all([
        ("versions the store deleted", [], attack.removed, not attack.removed),
        ("version deletions refused", f">= {len(attack.targets)}", len(attack.refused),
         len(attack.refused) >= len(attack.targets)),
        ("objects reading back whole", len(attack.targets), len(whole),
         len(whole) == len(attack.targets)),
    ])  # fmt: skip


@when("the attacker hides every object behind a delete marker and overwrites the base backup")
def hide_and_overwrite(repository: Storage, attack: Attack) -> None:
    assert isinstance(repository, S3Storage), "this step needs an S3 repository"
    for info in list(repository.list()):
        repository.delete(info.key)  # a delete without a version: the store allows it
    base_tar = next(k for k in attack.targets if k.endswith("/base.tar.zst"))
    repository.client.put_object(Bucket=repository.bucket, Key=repository.full_key(base_tar),
                                 Body=b"encrypted by ransomware")  # fmt: skip


@then("the repository lists no backup")
def lists_none(repository: Storage, drill_record: ScenarioRecord) -> None:
    catalog = list_base_backups(repository)
    drill_record.expect("base backups listed", 0, len(catalog.backups))


@when("the repository is rolled back to just before the attack")
def roll_back(repository: Storage, attack: Attack, drill_record: ScenarioRecord) -> None:
    assert isinstance(repository, S3Storage), "this step needs an S3 repository"
    steps = plan_rollback(repository, attack.before)
    apply_rollback(repository, steps)
    reverted = sorted(s.key for s in steps if s.action == "revert")
    overwritten = sorted(k for k in attack.targets if k.endswith("/base.tar.zst"))
    whole = [key for key, sha in attack.targets.items() if _sha(repository, key) == sha]
    drill_record.expect_all([
        ("keys undeleted", ">= 1", sum(s.action == "undelete" for s in steps),
         any(s.action == "undelete" for s in steps)),
        ("keys reverted", overwritten, reverted, reverted == overwritten),
        ("attacked objects whole again", len(attack.targets), len(whole),
         len(whole) == len(attack.targets)),
    ])  # fmt: skip
