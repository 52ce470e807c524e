"""The command line as users meet it: real process, real exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seed import seed_shop
from backup_engine.net import free_port
from backup_engine.servers import LocalPostgresBackend, PostgresServer


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    def one_error_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got: {self.stderr!r}"
        assert "Traceback" not in self.stderr
        assert lines[0].startswith("backup-engine: error: ")
        return lines[0]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Outcome:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "AWS_"))}
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "backup_engine", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def source() -> Iterator[PostgresServer]:
    with LocalPostgresBackend() as backend:
        server = backend.create()
        seed_shop(server.dsn(), users=100)
        yield server


@pytest.fixture
def repo_url(tmp_path: Path) -> str:
    (tmp_path / "repo").mkdir()
    return f"file://{tmp_path / 'repo'}"


def test_help_and_version(tmp_path: Path) -> None:
    assert cli("--help", cwd=tmp_path).code == 0
    version = cli("--version", cwd=tmp_path)
    assert version.code == 0 and "backup-engine" in version.stdout


def test_bad_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = cli("pg", "backup", "--bogus", cwd=tmp_path)
    assert out.code == 2
    assert "--bogus" in out.one_error_line()


def test_missing_repository_configuration(tmp_path: Path) -> None:
    out = cli("pg", "list", cwd=tmp_path)
    assert out.code == 2
    assert "no repository configured" in out.one_error_line()


def test_bad_config_file_names_the_option(tmp_path: Path) -> None:
    config = tmp_path / "backup-engine.toml"
    config.write_text("[repository]\nurll = 'x'\n")
    out = cli("pg", "list", cwd=tmp_path)
    assert out.code == 2
    assert "repository.urll" in out.one_error_line()


def test_unreachable_server_is_one_line_and_exit_3(tmp_path: Path, repo_url: str) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=3"
    out = cli("--repo", repo_url, "pg", "backup", "--dsn", dsn, cwd=tmp_path)
    assert out.code == 3
    assert "cannot connect to PostgreSQL at 127.0.0.1" in out.one_error_line()


def test_debug_shows_the_traceback(tmp_path: Path, repo_url: str) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=3"
    out = cli("--debug", "--repo", repo_url, "pg", "backup", "--dsn", dsn, cwd=tmp_path)
    assert out.code == 3 and "Traceback" in out.stderr


def test_missing_bucket_is_exit_3(tmp_path: Path, embedded_s3: EmbeddedS3) -> None:
    env = {
        "AWS_ENDPOINT_URL": embedded_s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
    }
    out = cli("--repo", "s3://not-a-bucket/p", "pg", "list", env=env, cwd=tmp_path)
    assert out.code == 3
    assert "bucket not-a-bucket does not exist" in out.one_error_line()


def test_backup_list_verify_restore_through_the_cli(
    tmp_path: Path, repo_url: str, source: PostgresServer
) -> None:
    base = ("--repo", repo_url, "pg")
    taken = cli(*base, "backup", "--dsn", source.dsn(), "--json", cwd=tmp_path)
    assert taken.code == 0, taken.stderr
    manifest = json.loads(taken.stdout)
    backup_id = manifest["backup_id"]

    listed = cli(*base, "list", "--json", cwd=tmp_path)
    assert [b["backup_id"] for b in json.loads(listed.stdout)["backups"]] == [backup_id]
    table = cli(*base, "list", cwd=tmp_path)
    assert backup_id in table.stdout and "BACKUP ID" in table.stdout

    verified = cli(*base, "verify", backup_id, "--json", cwd=tmp_path)
    assert verified.code == 0, verified.stderr
    assert json.loads(verified.stdout)["pg_verifybackup"] is True

    target = tmp_path / "pgdata"
    restored = cli(*base, "restore", "latest", "--pgdata", str(target), cwd=tmp_path)
    assert restored.code == 0, restored.stderr
    assert f"restored backup {backup_id}" in restored.stdout
    assert (target / "PG_VERSION").exists()

    again = cli(*base, "restore", "latest", "--pgdata", str(target), cwd=tmp_path)
    assert again.code == 2
    assert "is not empty" in again.one_error_line()

    missing = cli(
        *base, "restore", "20200101T000000Z", "--pgdata", str(tmp_path / "x"), cwd=tmp_path
    )
    assert missing.code == 5
    assert "no base backup '20200101T000000Z'" in missing.one_error_line()

    stored = Path(repo_url.removeprefix("file://")) / manifest["files"][0]["key"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x10
    stored.write_bytes(bytes(data))
    corrupt = cli(*base, "verify", "latest", cwd=tmp_path)
    assert corrupt.code == 4
    assert manifest["files"][0]["key"] in corrupt.one_error_line()


def test_shell_completion_scripts_and_answers() -> None:
    for shell in ("bash", "zsh", "fish"):
        script = cli("completion", shell)
        assert script.code == 0 and "_BACKUP_ENGINE_COMPLETE" in script.stdout, script.stderr
    env = {**os.environ, "COMP_WORDS": "backup-engine media re", "COMP_CWORD": "2",
           "_BACKUP_ENGINE_COMPLETE": "bash_complete"}  # fmt: skip
    answer = subprocess.run([sys.executable, "-m", "backup_engine"], env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert answer.stdout.split() == ["plain,restore"]


def test_log_format_json_and_quiet(tmp_path: Path) -> None:
    tree = tmp_path / "uploads"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    os.mkfifo(tree / "pipe")
    repo = f"file://{tmp_path / 'repo'}"
    (tmp_path / "repo").mkdir()
    taken = cli("--repo", repo, "--log-format", "json", "media", "backup", "--path", str(tree))
    assert taken.code == 0, taken.stderr
    (line,) = [json.loads(x) for x in taken.stderr.splitlines()]
    assert line["level"] == "warning" and line["path"] == "pipe" and line["time"].endswith("Z")
    failed = cli("--repo", repo, "--log-format", "json", "media", "restore", "nope", "--to",
                 str(tmp_path / "out"))  # fmt: skip
    assert failed.code != 0
    (error,) = [json.loads(x) for x in failed.stderr.splitlines()]
    assert error["level"] == "error" and "nope" in error["message"]
    quiet = cli("--repo", repo, "-q", "media", "backup", "--path", str(tree))
    assert quiet.stderr.startswith("warning: skipped pipe: fifo")
    env_json = cli("--repo", repo, "media", "backup", "--path", str(tree),
                   env={"BACKUP_ENGINE_LOG_FORMAT": "json"})  # fmt: skip
    assert json.loads(env_json.stderr.splitlines()[0])["level"] == "warning"
