"""Signed evidence an auditor checks with only the public key; forgeries and tampering are
exit 4 from `drill verify-report`, through the command line as an auditor runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backup_engine.drill.evidence import DrillRun, ScenarioRecord
from backup_engine.drill.report import write_json
from backup_engine.drill.report.signing import generate_keys, load_private_key
from backup_engine.drill.report.sums import write_sums


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRILL_")}
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", *args],
        capture_output=True, text=True, cwd=cwd, env=env, check=False,
    )  # fmt: skip


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    made = cli("keygen", "--private-key", "k.key", "--public-key", "k.pub", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "ed25519:" in made.stdout
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    return tmp_path / "k.key", tmp_path / "k.pub"


def report(directory: Path, key: Path | None) -> Path:
    record = ScenarioRecord(feature="F", scenario="S", nodeid="n", status="passed")
    record.record_check("rows in users", 100, 100, True)
    write_json(DrillRun(scenarios=[record], finished_at=record.started_at).to_dict(), directory)
    (directory / "junit.xml").write_text("<testsuites/>")
    write_sums(directory, None, load_private_key(key) if key else None)
    return directory


def test_a_signed_report_verifies_with_the_public_key_alone(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    signed = report(tmp_path / "run", keys[0])
    done = cli("verify-report", str(signed), "--public-key", str(keys[1]), "--require-signature",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "signed by ed25519:" in done.stdout and "schema valid" in done.stdout


def test_a_changed_file_is_exit_4(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    signed = report(tmp_path / "run", keys[0])
    data = json.loads((signed / "report.json").read_text())
    data["scenarios"][0]["checks"][0]["actual"] = "99"
    (signed / "report.json").write_text(json.dumps(data))
    done = cli("verify-report", str(signed), "--public-key", str(keys[1]), cwd=tmp_path)
    assert done.returncode == 4 and "report.json does not match" in done.stderr


def test_stripping_the_signature_and_resumming_is_exit_4_when_signatures_are_required(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """With the HMAC, deleting it and re-running sha256sum gave "OK, not signed"."""
    signed = report(tmp_path / "run", keys[0])
    data = json.loads((signed / "report.json").read_text())
    data["passed"] = True
    data["scenarios"][0]["status"] = "passed"
    (signed / "report.json").write_text(json.dumps(data))
    (signed / "SHA256SUMS.sig").unlink()
    write_sums(signed)  # the forger recomputes every sum
    done = cli("verify-report", str(signed), "--public-key", str(keys[1]), "--require-signature",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 4 and "not signed" in done.stderr


def test_a_report_signed_with_another_key_is_exit_4(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    generate_keys(tmp_path / "forger.key", tmp_path / "forger.pub")
    forged = report(tmp_path / "run", tmp_path / "forger.key")
    done = cli("verify-report", str(forged), "--public-key", str(keys[1]), cwd=tmp_path)
    assert done.returncode == 4 and "not valid for this SHA256SUMS and public key" in done.stderr


def test_a_report_json_that_breaks_its_schema_is_exit_4(tmp_path: Path) -> None:
    directory = report(tmp_path / "run", None)
    data = json.loads((directory / "report.json").read_text())
    del data["scenarios"][0]["status"]
    (directory / "report.json").write_text(json.dumps(data))
    write_sums(directory)
    done = cli("verify-report", str(directory), cwd=tmp_path)
    assert done.returncode == 4 and "does not follow its schema" in done.stderr


def test_keys_are_never_overwritten_and_a_readable_private_key_is_refused(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    again = cli("keygen", "--private-key", "k.key", "--public-key", "k.pub", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    keys[0].chmod(0o644)
    refused = cli("--signing-key", str(keys[0]), "--tags", "nothing", cwd=tmp_path)
    assert refused.returncode == 2 and "chmod 600" in refused.stderr
