"""A second repository: configuration refusals, one stream written to both, WAL to each with
acknowledge all/any, --repo 2, storage copy (manifests last, run twice copies nothing), and a
repository lost whole then a restore from the other, on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

import pytest

from backup_engine.config import load_settings
from backup_engine.errors import ConfigError, CorruptObject, StorageUnreachable
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery import wait_for_recovery
from backup_engine.progress import Progress
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import LocalStorage
from backup_engine.storage.base import Storage
from backup_engine.storage.copy import copy_objects, plan_copy
from backup_engine.storage.faults import FailingWrites, StorageWrapper
from backup_engine.storage.mirror import MirroredStorage
from tests.operator_cli import cli_with_config as _cli

TWO = """
[repository]
url = "file://{one}"
acknowledge = "{ack}"

[repository.2]
url = "file://{two}"
"""


def _config(tmp_path: Path, ack: str = "all", two: Path | None = None) -> Path:
    one, two = tmp_path / "one", two or tmp_path / "two"
    for path in (one, two):
        path.mkdir(exist_ok=True)
    config = tmp_path / "backup-engine.toml"
    config.write_text(TWO.format(one=one, two=two, ack=ack))
    return config


def test_the_second_repository_is_configured_apart_and_must_be_another_store(
    tmp_path: Path,
) -> None:
    settings = load_settings(_config(tmp_path), env={})
    assert [r.url for r in settings.repositories] == [f"file://{tmp_path}/one",
                                                      f"file://{tmp_path}/two"]  # fmt: skip
    assert settings.repositories[1].acknowledge == "all" and settings.selected is None
    second = load_settings(_config(tmp_path), env={}, overrides={"repository.url": "2"})
    assert str(second.repository.url).endswith("/two") and second.selected == 2
    assert len(second.open_storages()) == 1
    with pytest.raises(ConfigError, match="numbered 1 and 2"):
        load_settings(_config(tmp_path), env={}, overrides={"repository.url": "3"})
    for clash, refusal in ((tmp_path / "one", "same repository"),
                           (tmp_path / "one" / "inner", "one inside the other")):  # fmt: skip
        with pytest.raises(ConfigError, match=refusal):
            load_settings(_config(tmp_path, two=clash), env={})
    bad = tmp_path / "bad.toml"
    bad.write_text('[repository]\nurl = "file:///x"\n[repository.3]\nurl = "file:///y"\n')
    with pytest.raises(ConfigError, match=r"only a second repository"):
        load_settings(bad, env={})
    bad.write_text('[repository]\nurl = "file:///x"\n[repository.2]\nregion = "eu"\n')
    with pytest.raises(ConfigError, match="has no url"):
        load_settings(bad, env={})
    stanza = load_settings(_config(tmp_path), env={}, stanza=None)
    assert stanza.repository.acknowledge == "all"
    alone = _cli(_config(tmp_path), "--repo", "2", "pg", "list", "--json")
    assert alone.returncode == 0 and json.loads(alone.stdout)["repository"].endswith("/two")


def test_a_stream_reaches_both_or_with_any_the_one_that_answers(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    one, two = LocalStorage(_dir(tmp_path / "a")), LocalStorage(_dir(tmp_path / "b"))
    data = os.urandom(3_000_000)
    stored = MirroredStorage([one, two]).put_bytes("x/data", data)
    assert one.get_bytes("x/data") == two.get_bytes("x/data") == data
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    broken = FailingWrites(two, lambda key: True)
    with pytest.raises(StorageUnreachable):
        MirroredStorage([one, broken], acknowledge="all").put_bytes("x/all", b"z")
    assert not one.exists("x/all")  # aborted everywhere: nothing half-acknowledged
    MirroredStorage([one, broken], acknowledge="any").put_bytes("x/any", b"z")
    assert one.get_bytes("x/any") == b"z" and not two.exists("x/any")
    assert "storage copy --from 1 --to 2" in capfd.readouterr().err
    MirroredStorage([FailingWrites(one, lambda k: True), two],
                    acknowledge="any").put_bytes("x/first", b"z")  # fmt: skip
    assert two.exists("x/first") and "storage copy --from 2 --to 1" in capfd.readouterr().err
    with pytest.raises(StorageUnreachable):
        MirroredStorage([FailingWrites(one, lambda k: True), broken],
                        acknowledge="any").put_bytes("x/none", b"z")  # fmt: skip


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def test_copy_fills_what_is_missing_manifests_last_and_twice_copies_nothing(
    tmp_path: Path,
) -> None:
    one, two = LocalStorage(_dir(tmp_path / "a")), LocalStorage(_dir(tmp_path / "b"))
    one.put_bytes("postgres/base/1/backup.json", b"{}", metadata={"sha256": "m"})
    one.put_bytes("postgres/base/1/base.tar.zst", b"t" * 5000, metadata={"sha256": "t"})
    one.put_bytes("postgres/wal/000000010000000000000001.zst", b"w")
    one.put_bytes("locks/postgres-backup.lock", b"host 1")
    two.put_bytes("postgres/wal/000000010000000000000001.zst", b"w")
    missing, present = plan_copy(one, two, skip=("locks/",))
    assert [i.key for i in missing] == ["postgres/base/1/base.tar.zst",
                                        "postgres/base/1/backup.json"] and present == 1  # fmt: skip
    report = copy_objects(one, two, missing, Progress())
    assert report.bytes == 5002 and two.stat("postgres/base/1/base.tar.zst").metadata == {
        "sha256": "t"}  # fmt: skip
    assert not two.exists("locks/postgres-backup.lock")
    assert plan_copy(one, two, skip=("locks/",))[0] == []


@pytest.mark.postgres
def test_a_repository_lost_whole_the_other_restores() -> None:
    """Backups and WAL written to both, repository 1 deleted whole, a restore with --repo 2 to
    the end of the archive brings back rows committed after the backup; copy then fills a new
    repository 1 from 2."""
    with LocalPostgresBackend() as backend:
        tmp_path = backend.new_data_dir()  # the restored server reads repository 2 as postgres
        config = _config(tmp_path)
        server = backend.create()
        with connect(server.dsn()) as conn:
            conn.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
        backed = _cli(config, "pg", "backup", "--dsn", server.dsn(), "--no-progress", "--json")
        assert backed.returncode == 0, backed.stderr
        with connect(server.dsn()) as conn:
            conn.execute("INSERT INTO t SELECT g FROM generate_series(1001, 1500) g")
            segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
            conn.execute("SELECT pg_switch_wal()")
        assert segment is not None
        wal = server.data_dir / "pg_wal" / str(segment[0])
        pushed = _cli(config, "pg", "wal-push", str(wal))
        assert pushed.returncode == 0, pushed.stderr
        assert "in repository 1" in pushed.stderr and "in repository 2" in pushed.stderr
        for repo in ("one", "two"):  # each holds the backup and the segment
            assert list((tmp_path / repo / "postgres" / "wal").glob(f"{wal.name}*"))
            assert len(list((tmp_path / repo / "postgres" / "base").iterdir())) == 1
        server.stop()
        shutil.rmtree(tmp_path / "one")
        (tmp_path / "one").mkdir()
        lost = _cli(config, "pg", "restore", "latest", "--pgdata", str(tmp_path / "x"))
        assert lost.returncode == 5, lost.stderr  # repository 1 holds nothing now
        target = backend.new_data_dir()
        done = _cli(config, "--repo", "2", "pg", "restore", "latest", "--pgdata", str(target),
                    "--no-progress")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "two" in (target / "postgresql.auto.conf").read_text()  # fetches from repo 2
        subprocess.run(["chown", "-R", "postgres:", str(tmp_path / "two")], check=True)
        restored = backend.start_existing(target, wait=False)
        wait_for_recovery(restored)  # to the end of repository 2's archive, then promoted
        with connect(restored.dsn()) as conn:
            row = conn.execute("SELECT count(*) FROM t").fetchone()
        assert row == (1500,), restored.log_tail(30)
        filled = _cli(config, "storage", "copy", "--from", "2", "--to", "1", "--json")
        assert filled.returncode == 0, filled.stderr
        assert json.loads(filled.stdout)["copied"] >= 3
        again = _cli(config, "storage", "copy", "--from", "2", "--to", "1", "--json")
        assert json.loads(again.stdout)["copied"] == 0


def test_check_finds_a_second_repository_that_is_the_first_under_another_url(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    found = _findings(_cli(config, "check", "--json"))
    assert found["repository 2"]["state"] == "OK", found
    (tmp_path / "two").rmdir()
    (tmp_path / "two").symlink_to(tmp_path / "one")  # another url, the same store
    same = _findings(_cli(config, "check", "--json"))
    assert same["repository 2"]["state"] == "CRITICAL"
    assert "under another url" in same["repository 2"]["message"]


def _findings(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {f["name"]: f for f in json.loads(done.stdout)["findings"]}


def test_the_second_repository_keeps_its_own_retention(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config.write_text(config.read_text() + "\n[retention]\ndaily_days = 30\n"
                      "\n[retention.2]\ndaily_days = 365\nfull_keep = 0\n")  # fmt: skip
    first = load_settings(config, env={})
    assert first.retention.daily_days == 30 and first.retentions[1].daily_days == 365
    second = load_settings(config, env={}, overrides={"repository.url": "2"})
    assert second.retention.daily_days == 365 and second.retention.weekly_days == 90
    lone = tmp_path / "lone.toml"
    lone.write_text('[repository]\nurl = "file:///x"\n[retention.2]\ndaily_days = 1\n')
    with pytest.raises(ConfigError, match=r"no \[repository\.2\]"):
        load_settings(lone, env={})
    config.write_text(config.read_text() + "bogus = 1\n")
    with pytest.raises(ConfigError, match=r"unknown option retention\.2\.bogus"):
        load_settings(config, env={})


def test_an_object_changing_while_copied_is_never_stored(tmp_path: Path) -> None:
    one, two = LocalStorage(_dir(tmp_path / "a")), LocalStorage(_dir(tmp_path / "b"))
    one.put_bytes("postgres/base/1/base.tar.zst", b"t" * 5000)
    missing, _ = plan_copy(one, two)
    for served in (b"t" * 9000, b"t" * 100):  # grown, then cut, between its stat and its read
        with pytest.raises(CorruptObject, match="changed while copied"):
            copy_objects(_Serving(one, served), two, missing, Progress())
        assert not two.exists("postgres/base/1/base.tar.zst")


class _Serving(StorageWrapper):
    """A store whose objects read back as `served`, whatever their stat says."""

    def __init__(self, inner: Storage, served: bytes) -> None:
        super().__init__(inner)
        self.served = served

    def open_reader(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.served)


def test_expire_keeps_each_repository_by_its_own_retention_and_goes_on_past_a_failing_one(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    config.write_text(config.read_text() + "\n[retention]\nmedia_days = 30\n"
                      "\n[retention.2]\nmedia_days = 1\n")  # fmt: skip
    media = _dir(tmp_path / "uploads")
    for n in range(2):
        (media / f"photo-{n}.jpg").write_bytes(os.urandom(2000))
        assert _cli(config, "media", "backup", "--path", str(media)).returncode == 0
        if n == 0:  # the first taken three days ago, in both repositories
            for manifest in (tmp_path / "one").rglob("snapshot.json"):
                _backdate(manifest, days=3)
            for manifest in (tmp_path / "two").rglob("snapshot.json"):
                _backdate(manifest, days=3)
    done = _cli(config, "expire", "--json")
    assert done.returncode == 0, done.stderr
    one, two = json.loads(done.stdout)["repositories"]
    assert (one["repository"], two["repository"]) == (1, 2)
    doomed = [(i["kind"], i["keep"]) for i in two["items"] if i["kind"] == "media"]
    assert not any(i["kind"] == "media" and not i["keep"] for i in one["items"])
    assert doomed == [("media", False), ("media", True)]  # the older gone, the newest kept
    listed = _cli(config, "--repo", "2", "media", "list", "--json")
    assert len(json.loads(listed.stdout)["backups"]) == 1
    assert len(json.loads(_cli(config, "media", "list", "--json").stdout)["backups"]) == 2
    shutil.rmtree(tmp_path / "one")  # repository 1 gone: repository 2 is still expired
    failed = _cli(config, "expire")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "repository 1" in failed.stderr and "repository 2 (" in failed.stdout
    assert "0 items to delete" in failed.stdout


def _backdate(manifest: Path, days: int) -> None:
    from datetime import datetime, timedelta

    data = json.loads(manifest.read_text())
    for name in ("start_time", "stop_time"):
        data[name] = (datetime.fromisoformat(data[name]) - timedelta(days=days)).isoformat()
    manifest.write_text(json.dumps(data))


def test_metrics_name_each_repository_and_one_that_cannot_be_read(tmp_path: Path) -> None:
    """With two repositories every backup series carries `repository`, so BackupMissing fires
    for the one that fell behind; one that cannot be read is written as holding nothing."""
    config = _config(tmp_path)
    config.write_text(config.read_text() + f'\n[media]\npaths = ["{tmp_path / "up"}"]\n')
    _dir(tmp_path / "up")
    (tmp_path / "up" / "a.jpg").write_bytes(os.urandom(1000))
    assert _cli(config, "media", "backup").returncode == 0
    textfile = tmp_path / "backups.prom"
    done = _cli(config, "metrics", "--textfile", str(textfile), "--usage")
    assert done.returncode == 0, done.stderr
    text = textfile.read_text()
    for number in ("1", "2"):
        assert (
            f'restore_drill_backup_last_timestamp_seconds{{kind="media",repository="{number}"}}'
            in text
        )
        assert f'repository="{number}",type="Media backups"' not in text  # types are plain words
        assert (
            f'restore_drill_repository_bytes{{repository="{number}",type="media_backups"}}' in text
        )
    shutil.rmtree(tmp_path / "two")
    done = _cli(config, "metrics", "--textfile", str(textfile))
    assert done.returncode == 0 and "repository 2" in done.stderr, done.stderr
    text = textfile.read_text()
    assert 'restore_drill_backup_last_timestamp_seconds{kind="media",repository="2"} 0.0' in text
    assert 'kind="media",repository="1"} 0.0' not in text
