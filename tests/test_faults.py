"""Faults outside the store: a backup killed at random moments, and bad input of every kind."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.cli import main
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seed import seed_shop
from backup_engine.postgres.catalog import list_base_backups
from backup_engine.postgres.connection import connect
from backup_engine.postgres.verify import verify_base_backup
from backup_engine.servers import LocalPostgresBackend, PostgresServer
from backup_engine.storage import S3Storage


@pytest.fixture(scope="module")
def big_server() -> Iterator[PostgresServer]:
    with LocalPostgresBackend() as backend:
        server = backend.create()
        seed_shop(server.dsn(), users=2000)
        with connect(server.dsn()) as conn:  # ~40 MB that does not compress: a slow backup
            conn.execute(
                "CREATE TABLE blobs AS SELECT i, decode((SELECT string_agg(md5(random()::text"
                " || i || j), '') FROM generate_series(1, 64) j), 'hex') AS b"
                " FROM generate_series(1, 40000) i"
            )
        yield server


@pytest.mark.postgres
@pytest.mark.slow
def test_a_backup_killed_at_any_moment_never_looks_complete(
    big_server: PostgresServer, embedded_s3: EmbeddedS3
) -> None:
    repo: S3Storage = embedded_s3.storage(f"killed-{os.urandom(4).hex()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_ENGINE"))}
    env.update(repo.environment())
    outcomes = []
    # A backup compressed on the server takes well under a second here: kill it early and often
    for delay in (0.05, 0.15, 0.25, 0.35, 0.45, 0.6, 0.8, 1.1, None):  # None: let it finish
        proc = subprocess.Popen(
            [sys.executable, "-m", "backup_engine", "--repo", repo.url, "pg", "backup",
             "--dsn", big_server.dsn(), "--no-progress"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        if delay is None:
            assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
            outcomes.append("finished")
        else:
            time.sleep(delay)
            killed = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            outcomes.append("killed" if killed else "finished early")
        catalog = list_base_backups(repo)
        for backup in catalog.backups:  # whatever is listed is whole
            verify_base_backup(repo, backup.backup_id, hashes_only=True)
    assert outcomes.count("killed") >= 4, outcomes
    catalog = list_base_backups(repo)
    # A process killed in its last milliseconds may have written its manifest: then it is
    # complete, and verified above. What must never happen is a listed backup that is not.
    # Killed runs leave at most unlisted remains (an uncommitted multipart upload is not even
    # an object), and their stale lock did not stop the last run.
    finished = outcomes.count("finished") + outcomes.count("finished early")
    assert finished <= len(catalog.backups) < len(outcomes)
    assert outcomes[-1] == "finished"


BAD_ARGV = [
    ["pg", "backup", "--bogus"],
    ["pg", "backup", "--lock-wait", "soon"],
    ["pg", "restore", "latest"],  # --pgdata missing
    ["pg", "restore", "auto", "--pgdata", "x", "--target-time", "yesterday"],
    ["pg", "restore", "auto", "--pgdata", "x", "--target-lsn", "nowhere"],
    ["pg", "restore", "auto", "--pgdata", "x", "--target-xid", "12ab"],
    ["pg", "restore", "auto", "--pgdata", "x", "--target-action", "explode"],
    [
        "pg",
        "restore",
        "auto",
        "--pgdata",
        "x",
        "--target-time",
        "2026-01-01",
        "--target-lsn",
        "0/1",
    ],
    ["pg", "wal-push"],
    ["redis", "restore", "latest"],
    ["media", "backup"],
    ["storage", "policy", "--role", "god"],
    ["drill", "--backend", "kubernetes"],
    ["nonsense"],
    ["pg", "list"],  # no repository configured
]


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue()
    return 0, err.getvalue()


def assert_one_line_usage_error(code: int, stderr: str) -> None:
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("backup-engine: error: "), stderr


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("BACKUP_ENGINE", "AWS_", "REDIS_URL")):
            monkeypatch.delenv(name)
    return tmp_path


junk = st.text(st.characters(codec="utf-8"), max_size=12).filter(lambda s: "\x00" not in s)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(base=st.sampled_from(BAD_ARGV), noise=st.lists(junk.map(lambda s: f"--x{s}"), max_size=2))
def test_bad_command_lines_are_one_line_and_exit_2(
    empty_cwd: Path, base: list[str], noise: list[str]
) -> None:
    assert_one_line_usage_error(*run_main([*base, *noise]))
    assert sorted(p.name for p in empty_cwd.iterdir()) == []  # nothing written


toml_value = st.one_of(
    st.integers(),
    st.booleans(),
    junk,
    st.lists(st.integers(), max_size=2),
    st.floats(allow_nan=False),
)
section = st.sampled_from(["repository", "compression", "postgres", "retention", "check", "nope"])
option = st.sampled_from(["level", "codec", "part_size_mb", "sse", "daily_days", "weekly_day",
                          "dsn", "warn_age_hours", "unknown_key"])  # fmt: skip


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc=st.dictionaries(section, st.dictionaries(option, toml_value, max_size=3), max_size=3),
    garbage=st.binary(max_size=40),
    as_garbage=st.booleans(),
)
def test_bad_config_files_are_one_line_and_exit_2(
    empty_cwd: Path,
    tmp_path_factory: pytest.TempPathFactory,
    doc: dict[str, dict[str, object]],
    garbage: bytes,
    as_garbage: bool,
) -> None:
    """Every generated file names a real (empty) repository, so the command can succeed: a
    value that breaks it must be the reason for the one-line refusal, never a crash."""
    import tomli_w

    repo = tmp_path_factory.mktemp("repo")
    doc = {**doc, "repository": {**doc.get("repository", {}), "url": f"file://{repo}"}}
    config = empty_cwd / "backup-engine.toml"
    config.write_bytes(garbage if as_garbage else tomli_w.dumps(doc).encode())
    code, stderr = run_main(["pg", "list"])
    if code == 0:  # a valid configuration: the listing of an empty repository
        assert stderr == "" and not as_garbage
    else:
        assert_one_line_usage_error(code, stderr)
    assert [p.name for p in empty_cwd.iterdir()] == ["backup-engine.toml"]
    assert list(repo.iterdir()) == []


def test_a_valid_config_file_lists_the_repository(empty_cwd: Path, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (empty_cwd / "backup-engine.toml").write_text(
        f'[repository]\nurl = "file://{tmp_path / "repo"}"\n[compression]\nlevel = 3\n'
    )
    assert run_main(["pg", "list"]) == (0, "")
