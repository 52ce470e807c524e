"""`pg show`, `pg pin`/`unpin` and `pg delete`, as an operator runs them, against a real server
archiving into the embedded S3 server; and retention honouring pins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seed import seed_shop
from backup_engine.pins import pin, read_pins
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.retention import RetentionPolicy, base_backup_decisions, snapshot_decisions
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import LocalStorage, S3Storage
from tests.operator_cli import cli


@pytest.fixture
def repo(embedded_s3: EmbeddedS3) -> S3Storage:
    return embedded_s3.storage(f"manage-{os.urandom(4).hex()}")


@pytest.mark.postgres
def test_show_pin_and_delete_one_base_backup(
    repo: S3Storage, backend: LocalPostgresBackend
) -> None:
    archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
    source = backend.create(
        settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
    )
    seed_shop(source.dsn(), users=20)
    for _ in range(2):
        assert cli(repo, "pg", "backup", "--dsn", source.dsn()).returncode == 0
    first, newest = [
        b["backup_id"] for b in json.loads(cli(repo, "pg", "list", "--json").stdout)["backups"]
    ]

    shown = json.loads(cli(repo, "pg", "show", "latest", "--json").stdout)
    assert shown["backup_id"] == newest and shown["retention"] == {
        "keep": True,
        "reason": "newest backup (always kept)",
    }
    assert shown["pitr"]["from"] == shown["stop_time"] and shown["stored_bytes"] > 0
    text = cli(repo, "pg", "show", first).stdout
    assert "WAL needed" in text and "retention   kept: daily" in text

    refused = cli(repo, "pg", "delete", newest)
    assert refused.returncode == 2 and "newest backup" in refused.stderr
    assert (
        cli(repo, "pg", "pin", first, "--reason", "legal hold\x1b\x07, ticket 42").returncode == 0
    )
    pinned = cli(repo, "pg", "delete", first)
    assert pinned.returncode == 2 and "pinned: legal hold, ticket 42" in pinned.stderr
    assert "unpin it first" in pinned.stderr and "\x1b" not in pinned.stderr
    assert "kept: pinned: legal hold" in cli(repo, "pg", "show", first).stdout
    listed = json.loads(cli(repo, "pg", "list", "--json").stdout)["backups"]
    assert [b["pinned"] for b in listed] == ["legal hold, ticket 42", None]
    assert "legal hold, ticket 42" in cli(repo, "pg", "list").stdout

    assert cli(repo, "pg", "unpin", first).returncode == 0
    dry = cli(repo, "pg", "delete", first, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith(f"would delete base backup {first}")
    assert len(json.loads(cli(repo, "pg", "list", "--json").stdout)["backups"]) == 2
    done = cli(repo, "pg", "delete", first)
    assert done.returncode == 0 and done.stdout.startswith(f"deleted base backup {first}")
    left = json.loads(cli(repo, "pg", "list", "--json").stdout)["backups"]
    assert [b["backup_id"] for b in left] == [newest]
    gone = cli(repo, "pg", "show", first)
    assert gone.returncode != 0 and "Traceback" not in gone.stderr


class _Backup:
    def __init__(self, backup_id: str, stop: datetime) -> None:
        self.backup_id, self.stop_time = backup_id, stop
        self.start_lsn_value = self.stop_lsn_value = 0
        self.parent_id: str | None = None


def test_retention_keeps_pinned_backups_whatever_their_age() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    old = [_Backup(f"2025010{d}T000000Z", now - timedelta(days=400 - d)) for d in range(1, 4)]
    newest = _Backup("20261130T000000Z", now)
    decisions = {d.backup_id: d for d in base_backup_decisions(
        [*old, newest], RetentionPolicy(), now, {old[0].backup_id: "audit 2025"})}  # fmt: skip
    assert decisions[old[0].backup_id].keep and decisions[old[0].backup_id].reason == (
        "pinned: audit 2025"
    )
    assert not decisions[old[1].backup_id].keep
    snapshots = {d.backup_id: d for d in snapshot_decisions(
        [*old, newest], 30, now, "media snapshot", {old[2].backup_id: "x"})}  # fmt: skip
    assert snapshots[old[2].backup_id].keep and not snapshots[old[0].backup_id].keep


def test_pins_are_untrusted_input(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    pin(repo, "postgres", "20260101T000000Z", "  keep\x00 me\n" + "x" * 500)
    repo.put_bytes("pins/postgres/20260102T000000Z.json", b"\xff not json")
    repo.put_bytes("pins/postgres/not-an-id.json", b"{}")
    pins = read_pins(repo, "postgres")
    assert pins["20260101T000000Z"].startswith("keep me") and len(pins["20260101T000000Z"]) == 200
    assert pins["20260102T000000Z"] == "(pin unreadable)"  # still keeps its backup
    assert "not-an-id" not in pins


def test_a_pinned_media_snapshot_survives_expire(tmp_path: Path) -> None:
    from backup_engine.codecs import get_codec
    from backup_engine.expire import apply_expire, plan_expire
    from backup_engine.media.manifest import MEDIA_SNAPSHOTS
    from backup_engine.media.snapshot import take_media_snapshot

    (tmp_path / "repo").mkdir()
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "a.txt").write_text("a")
    repo = LocalStorage(tmp_path / "repo")
    ids = []
    for month in (1, 2, 3):
        moment = datetime(2026, month, 1, tzinfo=UTC)

        def clock(m: datetime = moment) -> datetime:
            return m

        ids.append(take_media_snapshot(repo, get_codec("zstd"), tmp_path / "up", clock=clock)
                   .backup_id)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}
    pinned = subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", f"file://{tmp_path / 'repo'}",
         "media", "pin", ids[0], "--reason", "audit"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert pinned.returncode == 0 and f"pinned media snapshot {ids[0]}: audit" in pinned.stdout
    plan = plan_expire(repo, RetentionPolicy(media_days=30), datetime(2026, 11, 1, tzinfo=UTC))
    reasons = {i.name: (i.keep, i.reason) for i in plan.items if i.kind == "media"}
    assert reasons[ids[0]] == (True, "pinned: audit") and not reasons[ids[1]][0]
    apply_expire(repo, plan)
    assert [m.backup_id for m in MEDIA_SNAPSHOTS.list(repo).backups] == [ids[0], ids[2]]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backup_engine", "--repo", f"file://{tmp_path / 'repo'}",
             "media", *args],
            capture_output=True, text=True, env=env, check=False, timeout=60,
        )  # fmt: skip

    shown = json.loads(cli("show", ids[0], "--json").stdout)
    assert shown["retention"] == {"keep": True, "reason": "pinned: audit"}
    assert "entries" not in shown
    refused = cli("delete", ids[0])
    assert refused.returncode == 2 and "pinned: audit" in refused.stderr
    assert cli("unpin", ids[0]).returncode == 0
    assert cli("delete", ids[0]).returncode == 0
    assert cli("delete", ids[2]).returncode == 2  # the newest
    assert [m.backup_id for m in MEDIA_SNAPSHOTS.list(repo).backups] == [ids[2]]
