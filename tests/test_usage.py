"""`backup-engine usage`: bytes per kind and month, old versions of a versioned bucket, cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.storage import S3Storage
from backup_engine.storage.s3 import make_client
from backup_engine.usage import measure


def test_usage_counts_each_kind_and_the_old_versions(embedded_s3: EmbeddedS3) -> None:
    bucket = f"usage-{os.urandom(3).hex()}"
    client = make_client(embedded_s3.options())
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    repo = S3Storage(bucket, "prod", embedded_s3.options())
    repo.put_bytes("postgres/wal/000000010000000000000001.zst", b"w" * 1000)
    repo.put_bytes("media/packs/ab/ab" + "0" * 62, b"m" * 3000)
    repo.put_bytes("redis/20261101T000000Z/dump.rdb.zst", b"r" * 500)
    repo.delete("redis/20261101T000000Z/dump.rdb.zst")  # stays billed as an old version
    repo.put_bytes("redis/20261102T000000Z/dump.rdb.zst", b"r" * 400)
    found = measure(repo, weekly_day=6)
    sizes = {k.kind: (k.objects, k.bytes) for k in found.kinds.values()}
    assert sizes["WAL archives"] == (1, 1000) and sizes["Media backups"] == (1, 3000)
    assert sizes["Redis snapshots"] == (1, 400)
    assert (found.noncurrent_objects, found.noncurrent_bytes) == (1, 500)
    assert found.total_bytes == 4900


def test_usage_command_prints_the_plan_table(tmp_path: Path) -> None:
    (tmp_path / "repo" / "media" / "packs" / "ab").mkdir(parents=True)
    (tmp_path / "repo" / "media" / "packs" / "ab" / ("ab" + "1" * 62)).write_bytes(b"x" * 2000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backup_engine", "--repo", f"file://{tmp_path / 'repo'}",
             "usage", *args],
            capture_output=True, text=True, env=env, check=False, timeout=60,
        )  # fmt: skip

    table = cli()
    assert table.returncode == 0, table.stderr
    assert "Media backups" in table.stdout and "150.0 GB" in table.stdout
    data = json.loads(cli("--json", "--price-per-gb", "1000000").stdout)
    media = next(k for k in data["kinds"] if k["kind"] == "Media backups")
    assert media["bytes"] == 2000 and media["monthly_cost"] == 2.0
    assert data["noncurrent_bytes"] is None  # not a versioned bucket
    metrics = subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", f"file://{tmp_path / 'repo'}",
         "metrics", "--textfile", str(tmp_path / "b.prom"), "--usage"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert metrics.returncode == 0, metrics.stderr
    written = (tmp_path / "b.prom").read_text()
    assert 'restore_drill_repository_bytes{type="media_backups"} 2000.0' in written
    assert 'restore_drill_repository_bytes{type="daily_database"} 0.0' in written
