"""Steps for a repository someone else has written to: forged tars, forged media entries, forged
manifests. The attacker has the backup role's rights: put objects under the prefix (and, where
versioning allows, replace them). What a restore or expire does with that must never reach past
its target or delete what retention keeps."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import recovery_from
from backup_engine.errors import BackupEngineError
from backup_engine.expire import apply_expire, plan_expire
from backup_engine.media.entries import encode_entry, iter_entries
from backup_engine.media.manifest import MEDIA_SNAPSHOTS, MediaEntry, MediaSnapshotManifest
from backup_engine.media.restore import restore_media
from backup_engine.postgres.catalog import list_base_backups
from backup_engine.postgres.manifest import BaseBackupManifest, manifest_key
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.retention import RetentionPolicy
from backup_engine.servers import PostgresBackend
from backup_engine.storage import Storage

from .pitr_steps import Attempt

ZSTD = get_codec("zstd")


@dataclass(frozen=True)
class Outside:
    """A directory no restore targets, with what it held before the attack."""

    path: Path
    before: dict[str, tuple[int, bytes]]


def _snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    found = {}
    for item in sorted(path.rglob("*")):
        st = item.lstat()
        content = item.read_bytes() if item.is_file() else b""
        found[str(item.relative_to(path))] = (st.st_mode, content)
    return found


@given("a directory outside every restore target holding a sentinel file", target_fixture="outside")
def outside_directory(tmp_path: Path) -> Outside:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "sentinel").write_text("must never change")
    (path / "sentinel").chmod(0o600)
    return Outside(path, _snapshot(path))


def _hostile_tar(outside: Path) -> bytes:
    """A symlink to the outside directory, then files through it and over it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        link = tarfile.TarInfo("PG_VERSION_LINK")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        for name in ("PG_VERSION_LINK/sentinel", "PG_VERSION_LINK/planted"):
            data = b"owned\n"
            member = tarfile.TarInfo(name)
            member.size, member.mode = len(data), 0o4755
            tar.addfile(member, io.BytesIO(data))
    return out.getvalue()


def _replace(repository: Storage, key: str, data: bytes) -> tuple[int, str]:
    """As an attacker with write access does: a new object under an existing name."""
    repository.delete(key)
    stored = repository.put_bytes(key, data)
    return stored.size, stored.sha256


@when("the latest base backup's tar is replaced by one that links outside and writes through it")
def forge_base_tar(repository: Storage, outside: Outside) -> None:
    manifest = list_base_backups(repository).backups[-1]
    stored = manifest.file("base.tar.zst")
    raw = _hostile_tar(outside.path)
    compressor = ZSTD.compressor()
    size, sha256 = _replace(repository, stored.key, compressor.compress(raw) + compressor.flush())
    forged = replace(stored, size=size, sha256=sha256, raw_size=len(raw))
    files = tuple(forged if f.key == stored.key else f for f in manifest.files)
    forged_manifest = replace(manifest, files=files).to_json().encode()
    _replace(repository, manifest_key(manifest.backup_id), forged_manifest)


@when("the latest media snapshot gets entries that link outside and write through the link")
def forge_media(repository: Storage, outside: Outside) -> None:
    """The attacker rewrites the list of entries and the manifest's record of its sha256."""
    manifest = MEDIA_SNAPSHOTS.list(repository).backups[-1]
    assert manifest.entries_object is not None
    entries = list(iter_entries(repository, manifest))
    some_file = next(e for e in entries if e.type == "file")
    hostile = [
        MediaEntry("escape", "symlink", 0o777, 0, target=str(outside.path)),
        replace(some_file, path="escape/sentinel", mode=0o4777),
        MediaEntry("escape2", "hardlink", 0o644, 0, target=str(outside.path / "sentinel")),
    ]
    # In the walk's order (each directory's entries together, directories depth first), as an
    # attacker who read the code writes them: a list out of that order is refused before this.
    forged_list = sorted(entries + hostile, key=lambda e: tuple(e.path.split("/")[:-1]))
    lines = b"".join(encode_entry(e) for e in forged_list)
    compressor = ZSTD.compressor()
    size, sha256 = _replace(
        repository, manifest.entries_object.key, compressor.compress(lines) + compressor.flush()
    )
    forged: MediaSnapshotManifest = replace(
        manifest,
        entries_object=replace(manifest.entries_object, size=size, sha256=sha256),
        entry_count=len(entries) + len(hostile),
    )
    _replace(
        repository, MEDIA_SNAPSHOTS.manifest_key(manifest.backup_id), forged.to_json().encode()
    )


@when("the latest base backup is restored into a new directory", target_fixture="attempt")
def attempt_base_restore(repository: Storage, pg_backend: PostgresBackend) -> Attempt:
    target = pg_backend.new_data_dir()
    try:
        restore_base_backup(repository, "latest", target, recovery=recovery_from(repository, None))
    except BackupEngineError as exc:
        return Attempt(exc, target, [])
    return Attempt(None, target, [])


@when("the latest media snapshot is restored into a new directory", target_fixture="attempt")
def attempt_media_restore(repository: Storage, tmp_path: Path) -> Attempt:
    target = tmp_path / "restored-media"
    try:
        restore_media(repository, "latest", target)
    except BackupEngineError as exc:
        return Attempt(exc, target, [])
    return Attempt(None, target, [])


@then("nothing outside the restore target changed")
def outside_unchanged(outside: Outside, attempt: Attempt, drill_record: ScenarioRecord) -> None:
    same = _snapshot(outside.path) == outside.before
    drill_record.expect("files outside the target", "unchanged", "unchanged" if same else "CHANGED")
    left = attempt.target_dir.exists() and any(attempt.target_dir.iterdir())
    drill_record.expect(
        "restore target after the refusal", "empty", "not empty" if left else "empty"
    )


# --- forged manifests and expire ----------------------------------------------------------------


@when(
    "a copy of the newest base backup's manifest is planted with a new id, a week back, "
    "starting at LSN FF/0"
)
def plant_manifest(repository: Storage, backups_taken: list[BaseBackupManifest]) -> None:
    newest = backups_taken[-1]
    data = json.loads(repository.get_bytes(manifest_key(newest.backup_id)))
    backdated = newest.stop_time.replace(year=newest.stop_time.year - 1)
    forged_id = backdated.strftime("%Y%m%dT%H%M%SZ")
    data.update(backup_id=forged_id, start_lsn="FF/0", start_time=backdated.isoformat(),
                stop_time=backdated.isoformat())  # fmt: skip
    repository.put_bytes(manifest_key(forged_id), json.dumps(data).encode())


@when("the WAL archive is counted", target_fixture="wal_before")
def count_wal(repository: Storage) -> list[str]:
    return sorted(info.key for info in repository.list(WAL_PREFIX))


@when("expire runs a month later with a one-day PITR window", target_fixture="attempt")
def expire_month_later(repository: Storage, backups_taken: list[BaseBackupManifest]) -> Attempt:
    policy = RetentionPolicy(daily_days=1, weekly_days=1, wal_days=1)
    later = backups_taken[-1].stop_time + timedelta(days=30)
    try:
        apply_expire(repository, plan_expire(repository, policy, later))
    except BackupEngineError as exc:
        return Attempt(exc, Path(os.devnull), [])
    return Attempt(None, Path(os.devnull), [])


@when("the repository's objects are counted", target_fixture="objects_before")
def count_objects(repository: Storage) -> list[str]:
    return sorted(info.key for info in repository.list())


@then("the repository holds every object it held before")
def objects_intact(
    repository: Storage, objects_before: list[str], drill_record: ScenarioRecord
) -> None:
    gone = set(objects_before) - {info.key for info in repository.list()}
    drill_record.expect("objects deleted by expire", 0, len(gone))


@then("every archived WAL segment is still there")
def wal_intact(repository: Storage, wal_before: list[str], drill_record: ScenarioRecord) -> None:
    # The server keeps archiving (archive_timeout): segments may be added, none may be gone.
    gone = sorted(set(wal_before) - {info.key for info in repository.list(WAL_PREFIX)})
    drill_record.expect("archived WAL segments deleted", 0, len(gone))


@then(parsers.parse("every base backup taken is still listed"))
def backups_intact(
    repository: Storage, backups_taken: list[BaseBackupManifest], drill_record: ScenarioRecord
) -> None:
    listed = {b.backup_id for b in list_base_backups(repository).backups}
    missing = sorted({b.backup_id for b in backups_taken} - listed)
    drill_record.expect("backups taken that are no longer listed", [], missing)


@when("the newest base backup's manifest is overwritten with bytes that do not parse")
def garble_manifest(repository: Storage, backups_taken: list[BaseBackupManifest]) -> None:
    key = manifest_key(backups_taken[-1].backup_id)
    _replace(repository, key, hashlib.sha256(b"garbage").digest())


@then(parsers.parse('expire is refused with "{text}"'))
def expire_refused(attempt: Attempt, drill_record: ScenarioRecord, text: str) -> None:
    found = str(attempt.error) if attempt.error else "expire ran without complaint"
    ok = text in found and attempt.error is not None and attempt.error.exit_code == 4
    drill_record.expect("expire refused (exit 4)", f"refused, saying {text!r}", found, ok)
