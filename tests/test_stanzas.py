"""Stanzas: several PostgreSQL clusters in one configuration, each under its own prefix of the
repository. Names that would leave the prefix are refused wherever they come from; a pg command
without a stanza is refused when the configuration has several; `run-all` backs up every
cluster, and each is listed and restored from its own prefix only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backup_engine.config import load_settings
from backup_engine.errors import ConfigError
from backup_engine.postgres.connection import connect
from backup_engine.servers import LocalPostgresBackend
from backup_engine.stanzas import stanza_url
from tests.operator_cli import cli_with_config as _cli

CONFIG = """
[repository]
url = "file://{repo}"

[postgres]
checkpoint = "fast"

[stanza.main]
dsn = "{main}"

[stanza.reports-2]
dsn = "{reports}"
backup_type = "full"
"""


def _config(tmp_path: Path, main: str = "port=1", reports: str = "port=2") -> Path:
    path = tmp_path / "backup-engine.toml"
    path.write_text(CONFIG.format(repo=tmp_path / "repo", main=main, reports=reports))
    return path


def test_a_stanza_brings_its_options_and_its_own_prefix(tmp_path: Path) -> None:
    config = _config(tmp_path)
    root = load_settings(config, env={})
    assert root.stanzas == ("main", "reports-2") and root.stanza is None and root.needs_stanza
    main = load_settings(config, env={}, stanza="main")
    assert main.postgres.dsn == "port=1" and main.postgres.checkpoint == "fast"
    assert main.repository.url == f"file://{tmp_path / 'repo'}/stanzas/main"
    assert main.redis.url is None and main.media.paths == () and not main.needs_stanza
    from_env = load_settings(config, env={"BACKUP_ENGINE_STANZA": "reports-2"})
    assert from_env.postgres.dsn == "port=2" and from_env.origins["stanza"].startswith("$")
    assert stanza_url("s3://b/p/stanzas/main", "main") == "s3://b/p/stanzas/main"  # idempotent
    assert stanza_url("s3://b/p/", "main") == "s3://b/p/stanzas/main"
    explicit = load_settings(config, env={}, overrides={"repository.url": "file:///x/stanzas/m"})
    assert not explicit.needs_stanza  # a restore_command names one stanza's repository


@pytest.mark.parametrize("name", ["../etc", "/", "", "a/b", ".", "..", "-x", "é", "x" * 64])
def test_a_name_that_would_leave_its_prefix_is_refused(tmp_path: Path, name: str) -> None:
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match=r"not usable|no stanza") as given:
        load_settings(config, env={}, stanza=name or None) if name else load_settings(
            config, env={"BACKUP_ENGINE_STANZA": "x/"}
        )
    assert "Traceback" not in str(given.value)
    forged = tmp_path / "forged.toml"
    forged.write_text(f'[stanza."{name}"]\ndsn = "port=1"\n'.replace("\\", "\\\\"))
    with pytest.raises(ConfigError, match="not usable"):
        load_settings(forged, env={})


def test_unknown_stanzas_and_options_are_named(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match=r"no stanza 'nope'.*main, reports-2"):
        load_settings(config, env={}, stanza="nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('[stanza.main]\ndsn = "port=1"\nurl = "redis://x"\n')
    with pytest.raises(ConfigError, match=r"unknown option stanza\.main\.url"):
        load_settings(bad, env={})
    bad.write_text('[stanza.main]\ndsn = "port=1"\n[stanza.other]\nbackup_type = "daily"\n')
    with pytest.raises(ConfigError, match=r"postgres\.backup_type .*stanza\.other"):
        load_settings(bad, env={})  # checked though stanza "other" is not the one selected
    bad.write_text('stanza = "main"\n')
    with pytest.raises(ConfigError, match=r"must hold tables"):
        load_settings(bad, env={})
    refused = _cli(config, "pg", "list")
    assert refused.returncode == 2 and "--stanza NAME" in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1
    escape = _cli(config, "--stanza", "../main", "pg", "list")
    assert escape.returncode == 2 and "not usable" in escape.stderr
    (tmp_path / "repo").mkdir()
    root = json.loads(_cli(config, "check", "--json").stdout)["findings"]
    names = {f["name"]: f for f in root}
    assert sorted(names) == ["config", "stanzas", "storage"], names  # no root cluster checked
    assert "check each with --stanza NAME" in names["stanzas"]["message"]


@pytest.mark.postgres
def test_two_clusters_are_backed_up_listed_and_restored_separately(tmp_path: Path) -> None:
    with LocalPostgresBackend() as backend:
        main, reports = backend.create(), backend.create()
        for server, name in ((main, "main"), (reports, "reports")):
            with connect(server.dsn()) as conn:
                conn.execute(f"CREATE TABLE whoami AS SELECT '{name}'::text AS cluster")
        config = _config(tmp_path, main.dsn(), reports.dsn())
        (tmp_path / "repo").mkdir()
        ran = _cli(config, "run-all", "--json", "--no-progress")
        assert ran.returncode == 0, ran.stdout
        jobs = {r["job"]: r for r in json.loads(ran.stdout)}
        assert sorted(jobs) == ["postgres main", "postgres reports-2"]
        assert all(r["status"] == "ok" for r in jobs.values())
        for stanza in ("main", "reports-2"):
            out = _cli(config, "--stanza", stanza, "pg", "list", "--json").stdout
            listed = json.loads(out)["backups"]
            assert [b["backup_id"] for b in listed] == [jobs[f"postgres {stanza}"]["backup_id"]]
        assert sorted(p.name for p in (tmp_path / "repo" / "stanzas").iterdir()) == [
            "main", "reports-2"]  # fmt: skip
        target = backend.new_data_dir()
        done = _cli(config, "--stanza", "reports-2", "pg", "restore", "latest", "--pgdata",
                    str(target), "--no-progress", "--target", "immediate")  # fmt: skip
        assert done.returncode == 0, done.stderr
        restored = backend.start_existing(target, settings={"restore_command": "false"})
        with connect(restored.dsn()) as conn:
            row = conn.execute("SELECT cluster FROM whoami").fetchone()
        assert row == ("reports",)
