"""The smoke-test runner: the restored server's variables, the exit code, the timeout (the
whole process group stopped), the output's last lines for the failure message."""

from __future__ import annotations

from pathlib import Path

from backup_engine.drill.smoke import run_smoke, target_environment


def test_the_restored_server_is_named_the_ways_applications_read_it() -> None:
    env = target_environment("host=127.0.0.1 port=55432 user=postgres dbname=shop",
                             "redis://127.0.0.1:6390/0")  # fmt: skip
    assert env["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:55432/shop"
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"]) == ("127.0.0.1", "55432", "shop")
    assert env["REDIS_URL"] == "redis://127.0.0.1:6390/0" and "PGPASSWORD" not in env


def test_exit_code_output_and_timeout(tmp_path: Path) -> None:
    ok = run_smoke('echo "$PGPORT"; pwd', {"PGPORT": "5"}, cwd=tmp_path, timeout=30)
    assert ok.passed and ok.output.split() == ["5", str(tmp_path)]
    failed = run_smoke("for i in 1 2 3 4 5 6 7; do echo line $i; done; exit 3", {},
                       cwd=tmp_path, timeout=30)  # fmt: skip
    assert not failed.passed and failed.exit_code == 3
    assert failed.tail() == "line 3 | line 4 | line 5 | line 6 | line 7"
    hung = run_smoke("sleep 60 & sleep 60; echo never", {}, cwd=tmp_path, timeout=0.5)
    assert hung.exit_code is None and not hung.passed and hung.seconds < 30
    assert "timeout" in hung.describe()
