"""Incremental backups: the chain read from an untrusted repository, retention that never
orphans an incremental, and the refusals. (The PostgreSQL 17 drills of
features/postgres_incremental.feature take, restore and expire real chains.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.errors import CorruptObject, UsageError
from backup_engine.expire import ExpireRefused, apply_expire, plan_expire
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.chain import MAX_CHAIN, BrokenChain, backup_chain, choose_type
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import FULL, INCREMENTAL, BaseBackupManifest, manifest_key
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.retention import Decision, keep_chains
from backup_engine.storage import LocalStorage
from tests.test_expire_forgery import NOW, POLICY, SEG, daily
from tests.test_manifest import sample_manifest, store_backup

MONDAY = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def incr(day: int) -> BaseBackupManifest:
    return replace(daily(day), backup_type=INCREMENTAL, parent_id=daily(day - 1).backup_id)


def chain_repo(tmp_path: Path, fulls: set[int]) -> LocalStorage:
    """Ten daily backups (expire_forgery's days 0-9): full on the days in `fulls`, else
    incremental on the day before."""
    store = LocalStorage(tmp_path)
    for day in range(10):
        store_backup(store, daily(day) if day in fulls else incr(day))
    return store


def test_a_chain_is_followed_to_its_full_backup(tmp_path: Path) -> None:
    store = chain_repo(tmp_path, {0, 5})
    chain = backup_chain(store, BASE_BACKUPS.read(store, daily(8).backup_id))
    assert [b.backup_id for b in chain] == [daily(d).backup_id for d in (5, 6, 7, 8)]
    assert [b.backup_type for b in chain] == [FULL, INCREMENTAL, INCREMENTAL, INCREMENTAL]
    full = BASE_BACKUPS.read(store, daily(5).backup_id)
    assert backup_chain(store, full) == (full,)


@pytest.mark.parametrize(
    ("forge", "refusal"),
    [
        (lambda m: {"parent_id": "../../etc"}, "not a valid backup manifest"),
        (lambda m: {"parent_id": None}, "not a valid backup manifest"),
        (lambda m: {"backup_type": "delta"}, "not a valid backup manifest"),
        (lambda m: {"backup_type": "full"}, "not a valid backup manifest"),  # full, with parent
        (lambda m: {"parent_id": "20200101T000000Z"}, "which is not in the repository"),
        (lambda m: {"parent_id": m["backup_id"]}, "loops at"),
        (lambda m: {"system_identifier": "1"}, "is of another server"),
        (lambda m: {"pg_version_num": 140005}, "is of PostgreSQL 15, not 14"),
        (lambda m: {"start_lsn": "0/1000000", "start_wal_file": "000000010000000000000001"},
         "stops at"),
    ],
)  # fmt: skip
def test_a_forged_link_is_refused(tmp_path: Path, forge: object, refusal: str) -> None:
    store = chain_repo(tmp_path, {0})
    key = manifest_key(daily(9).backup_id)
    data = json.loads(store.get_bytes(key))
    data.update(forge(data))  # type: ignore[operator]
    store.put_bytes(key, json.dumps(data).encode())
    with pytest.raises((BrokenChain, CorruptObject), match=refusal):
        backup_chain(store, BASE_BACKUPS.read(store, daily(9).backup_id))


def test_a_loop_between_two_backups_is_refused(tmp_path: Path) -> None:
    store = chain_repo(tmp_path, {0})
    key = manifest_key(daily(3).backup_id)
    data = json.loads(store.get_bytes(key))
    data["parent_id"] = daily(5).backup_id  # 5 -> 4 -> 3 -> 5: each link stops before the next?
    data["start_lsn"] = "0/FFFFFFFF"  # so the LSN check passes and the loop itself is met
    store.put_bytes(key, json.dumps(data).encode())
    with pytest.raises(BrokenChain, match=r"loops at|stops at"):
        backup_chain(store, BASE_BACKUPS.read(store, daily(5).backup_id))


def test_a_chain_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    previous = None
    for n in range(MAX_CHAIN + 1):
        stop = start + timedelta(hours=n)
        manifest = replace(
            sample_manifest(), backup_id=stop.strftime("%Y%m%dT%H%M%SZ"),
            start_time=stop, stop_time=stop, start_lsn=format_lsn((n + 2) * SEG + 0x28),
            stop_lsn=format_lsn((n + 2) * SEG + 0x100),
            backup_type=FULL if previous is None else INCREMENTAL, parent_id=previous,
        )  # fmt: skip
        previous = store_backup(store, manifest).backup_id
    last = BASE_BACKUPS.read(store, str(previous))
    with pytest.raises(BrokenChain, match=f"longer than {MAX_CHAIN}"):
        backup_chain(store, last)


def test_a_broken_chain_is_refused_before_the_target_is_created(tmp_path: Path) -> None:
    store = chain_repo(tmp_path / "repo", {0})
    for info in list(store.list(BASE_BACKUPS.backup_prefix(daily(0).backup_id))):
        store.delete(info.key)
    target = tmp_path / "restored"
    with pytest.raises(BrokenChain, match="which is not in the repository"):
        restore_base_backup(store, daily(9).backup_id, target, recovery=None)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no staging left behind


def test_retention_keeps_the_chain_of_every_kept_incremental(tmp_path: Path) -> None:
    store = chain_repo(tmp_path, {0, 5})
    plan = plan_expire(store, POLICY, NOW)
    deleted = [i.name for i in plan.deletions if i.kind == "postgres"]
    assert deleted == [daily(d).backup_id for d in range(5)]  # 5-9: one chain, all needed
    reasons = {i.name: i.reason for i in plan.items if i.kind == "postgres"}
    assert reasons[daily(5).backup_id].startswith("parent of kept incremental")
    apply_expire(store, plan)
    left = BASE_BACKUPS.list(store).backups
    assert [b.backup_id for b in left] == [daily(d).backup_id for d in range(5, 10)]
    backup_chain(store, left[-1])  # still whole


def test_one_unbroken_chain_is_never_expired(tmp_path: Path) -> None:
    store = chain_repo(tmp_path, {0})
    assert [i for i in plan_expire(store, POLICY, NOW).deletions if i.kind == "postgres"] == []


def test_expire_deletes_the_newest_backup_first(tmp_path: Path) -> None:
    """Interrupted after any deletion, it never leaves an incremental without its parent."""
    store = chain_repo(tmp_path, {0, 5})
    plan = plan_expire(store, POLICY, NOW)
    order: list[str] = []
    original = store.delete

    def delete(key: str) -> None:
        order.append(key)
        original(key)

    store.delete = delete  # type: ignore[method-assign]
    apply_expire(store, plan)
    manifests = [k for k in order if k.endswith("backup.json")]
    assert manifests == [manifest_key(daily(d).backup_id) for d in (4, 3, 2, 1, 0)]


def test_an_orphaned_incremental_makes_expire_refuse(tmp_path: Path) -> None:
    store = chain_repo(tmp_path, {0, 5})
    for info in list(store.list(BASE_BACKUPS.backup_prefix(daily(5).backup_id))):
        store.delete(info.key)
    before = sorted(i.key for i in store.list())
    with pytest.raises(ExpireRefused, match=f"needs {daily(5).backup_id}.*pg delete"):
        plan_expire(store, POLICY, NOW)
    assert sorted(i.key for i in store.list()) == before


@settings(max_examples=200, deadline=None)
@given(
    parents=st.lists(st.integers(min_value=-1, max_value=40), min_size=1, max_size=40),
    keep=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_keep_chains_keeps_every_ancestor_and_nothing_else(
    parents: list[int], keep: list[bool]
) -> None:
    """Random forests (a parent may be missing, later, or the backup itself): after
    keep_chains every ancestor of a kept backup is kept, a kept backup stays kept, and only
    ancestors of kept backups change."""

    class B:
        def __init__(self, n: int, parent: int) -> None:
            self.backup_id = str(n)
            self.parent_id = None if parent < 0 else str(parent)
            self.stop_time = NOW
            self.start_lsn_value = self.stop_lsn_value = 0

    backups = [B(n, p) for n, p in enumerate(parents)]
    decisions = [Decision(b.backup_id, keep[n], "policy") for n, b in enumerate(backups)]
    after = {d.backup_id: d for d in keep_chains(decisions, backups)}
    by_id = {b.backup_id: b for b in backups}

    def ancestors(backup_id: str) -> set[str]:
        found: set[str] = set()
        parent = by_id[backup_id].parent_id
        while parent in by_id and parent not in found and parent != backup_id:
            found.add(str(parent))
            parent = by_id[str(parent)].parent_id
        return found

    needed = set().union(*(ancestors(d.backup_id) for d in decisions if d.keep))
    for decision in decisions:
        kept = after[decision.backup_id].keep
        assert kept == (decision.keep or decision.backup_id in needed)


@pytest.mark.parametrize(
    ("requested", "full_on", "moment", "expected"),
    [
        ("incr", "sunday", MONDAY, INCREMENTAL),
        ("incr", "sunday", MONDAY - timedelta(days=1), FULL),
        ("incr", "", MONDAY - timedelta(days=1), INCREMENTAL),
        ("full", "monday", MONDAY, FULL),
    ],
)
def test_the_type_of_a_scheduled_backup(
    requested: str, full_on: str, moment: datetime, expected: str
) -> None:
    assert choose_type(requested, full_on, moment) == expected


def test_an_unknown_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="use full or incr"):
        choose_type("differential", "", MONDAY)


def test_pg_delete_refuses_a_parent_and_list_shows_types(tmp_path: Path) -> None:
    store = chain_repo(tmp_path / "repo", {0, 5})
    env = {"BACKUP_ENGINE_REPOSITORY": f"file://{store.root}", "PATH": "/usr/bin:/bin"}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "backup_engine", *args], capture_output=True, text=True,
        env=env, timeout=60, check=False,
    )  # fmt: skip
    refused = run("pg", "delete", daily(6).backup_id)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"incremental backup {daily(7).backup_id} builds on it" in refused.stderr
    listed = json.loads(run("pg", "list", "--json").stdout)["backups"]
    assert [(b["backup_type"], b["parent_id"]) for b in listed][4:6] == [
        ("incr", daily(3).backup_id), ("full", None)
    ]  # fmt: skip
    shown = run("pg", "show", daily(7).backup_id)
    assert shown.returncode == 0, shown.stderr
    assert (
        f"incremental on {daily(6).backup_id}; restores with {daily(5).backup_id}" in shown.stdout
    )
    data = json.loads(run("pg", "show", daily(7).backup_id, "--json").stdout)
    assert [link["backup_id"] for link in data["chain"]] == [daily(d).backup_id for d in (5, 6, 7)]


@pytest.mark.postgres
def test_an_incremental_backup_of_an_older_server_is_refused_in_one_line(tmp_path: Path) -> None:
    from backup_engine.servers import LocalPostgresBackend

    (tmp_path / "repo").mkdir()
    with LocalPostgresBackend() as servers:
        server = servers.create()
        done = subprocess.run(
            [sys.executable, "-m", "backup_engine", "--repo", f"file://{tmp_path}/repo", "pg",
             "backup", "--type", "incr", "--dsn", server.dsn(), "--no-progress"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        major = servers.binaries.major
    if major is not None and major >= 17:
        pytest.skip(
            f"environment limit: this host runs PostgreSQL {major}, and the refusal tested "
            "here is for servers older than 17"
        )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "incremental backups need PostgreSQL 17 or later" in done.stderr
    assert [i.key for i in LocalStorage(tmp_path / "repo").list("postgres/")] == []


def _stub_bindir(path: Path) -> str:
    """pg_basebackup, pg_verifybackup and pg_combinebackup of version 15 that do nothing: the
    refusals below come before any of them runs."""
    path.mkdir()
    for program in ("pg_basebackup", "pg_verifybackup", "pg_combinebackup"):
        script = path / program
        script.write_text("#!/bin/sh\necho 'pg_basebackup (PostgreSQL) 15.1'\n")
        script.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("staging", ["missing", "file"])
def test_a_staging_directory_that_cannot_hold_the_chain_is_refused_first(
    tmp_path: Path, staging: str
) -> None:
    store = chain_repo(tmp_path / "repo", {0})
    bindir = _stub_bindir(tmp_path / "bin")
    (tmp_path / "file").write_text("not a directory")
    target = tmp_path / "restored"
    with pytest.raises(UsageError, match="not a writable directory"):
        restore_base_backup(store, daily(3).backup_id, target, recovery=None, bindir=bindir,
                            staging=tmp_path / staging)  # fmt: skip
    assert not target.exists()


def test_a_chain_larger_than_the_free_space_is_refused_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = chain_repo(tmp_path / "repo", {0})
    bindir = _stub_bindir(tmp_path / "bin")
    monkeypatch.setattr("shutil.disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9, 10))
    target = tmp_path / "restored"
    with pytest.raises(UsageError, match=r"chain of 4 backups needs .* GB unpacked"):
        restore_base_backup(store, daily(3).backup_id, target, recovery=None, bindir=bindir)
    assert not target.exists()


def test_without_pg_combinebackup_the_package_is_named_before_anything_is_written(
    tmp_path: Path,
) -> None:
    from backup_engine.errors import MissingBinary

    store = chain_repo(tmp_path / "repo", {0})
    bindir = tmp_path / "bin"
    _stub_bindir(bindir)
    (bindir / "pg_combinebackup").unlink()
    target = tmp_path / "restored"
    with pytest.raises(MissingBinary, match="pg_combinebackup not found") as caught:
        restore_base_backup(store, daily(2).backup_id, target, recovery=None, bindir=str(bindir))
    assert caught.value.hint is not None and "postgresql-client-17" in caught.value.hint
    assert not target.exists()


def test_an_incremental_never_extends_a_chain_a_restore_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The parent is the newest backup, unless its chain is broken or already at the limit:
    then a full backup is taken, said so (the server itself is PostgreSQL 17 here)."""
    from backup_engine.postgres import basebackup
    from backup_engine.postgres.connection import ServerFacts

    store = LocalStorage(tmp_path)
    for day in range(4):
        manifest = daily(day) if day == 0 else incr(day)
        store_backup(store, replace(manifest, pg_version="17.2", pg_version_num=170002))
    monkeypatch.setattr(basebackup, "setting", lambda dsn, name: "on")
    monkeypatch.setattr(basebackup, "system_identifier", lambda dsn: None)
    facts = ServerFacts("17.2", 170002, SEG, None)
    parent = basebackup._incremental_parent(store, "dsn", facts)
    assert parent is not None and parent.backup_id == daily(3).backup_id
    monkeypatch.setattr(basebackup, "MAX_CHAIN", 4)
    assert basebackup._incremental_parent(store, "dsn", facts) is None
    assert "ends a chain of 4: taking a full backup" in capsys.readouterr().err
    monkeypatch.setattr(basebackup, "MAX_CHAIN", 64)
    for info in list(store.list(BASE_BACKUPS.backup_prefix(daily(0).backup_id))):
        store.delete(info.key)
    assert basebackup._incremental_parent(store, "dsn", facts) is None
    assert "not in the repository): taking a full backup" in capsys.readouterr().err
    monkeypatch.setattr(basebackup, "setting", lambda dsn, name: "off")
    with pytest.raises(UsageError, match="summarize_wal = on"):
        basebackup._incremental_parent(store, "dsn", facts)
