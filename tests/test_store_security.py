"""The backup store's safety, against moto's S3 server with IAM enforcement switched on:
least-privilege roles, versioning that keeps overwritten data, and `storage init/check`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seed import seed_shop
from backup_engine.net import free_port
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import S3Options, S3Storage
from backup_engine.storage.iam import role_policy
from backup_engine.storage.s3 import make_client

BUCKET = "secure-backups"
PREFIX = "prod"
REGION = "us-east-1"
ADMIN_CALLS = 11  # every request moto serves before it starts checking signatures and policies


@dataclass(frozen=True)
class Credentials:
    key: str
    secret: str

    def env(self, endpoint: str) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": REGION,
        }  # fmt: skip

    def s3(self, endpoint: str) -> S3Storage:
        options = S3Options(endpoint_url=endpoint, region=REGION, access_key_id=self.key,
                            secret_access_key=self.secret)  # fmt: skip
        return S3Storage(BUCKET, PREFIX, options)


@dataclass(frozen=True)
class SecureStore:
    endpoint: str
    users: dict[str, Credentials]


@pytest.fixture(scope="module")
def secure_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStore]:
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(ADMIN_CALLS)}
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        session = boto3.session.Session(
            aws_access_key_id="admin", aws_secret_access_key="admin", region_name=REGION
        )
        s3 = session.client("s3", endpoint_url=endpoint)
        iam = session.client("iam", endpoint_url=endpoint)
        for _ in range(100):  # wait for the port without spending an admin call
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        s3.create_bucket(Bucket=BUCKET)  # 1
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # 2
        users = {}
        for name, policy in (
            ("backup", role_policy("backup", BUCKET, PREFIX)),
            ("restore", role_policy("restore", BUCKET, PREFIX)),
            ("auditor", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}]}),
        ):  # fmt: skip
            iam.create_user(UserName=name)  # 3, 6, 9
            iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=name)["AccessKey"]  # 5, 8, 11
            users[name] = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        yield SecureStore(endpoint, users)
    finally:
        server.terminate()
        server.wait(timeout=10)


def cli(store: SecureStore, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_ENGINE"))}
    env.update(store.users[user].env(store.endpoint))
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", f"s3://{BUCKET}/{PREFIX}", *args],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


def _denied(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except botocore.exceptions.ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


@pytest.mark.postgres
def test_least_privilege_roles(secure_store: SecureStore, tmp_path: Path) -> None:
    backup_user = secure_store.users["backup"]
    with LocalPostgresBackend() as servers:
        repo = backup_user.s3(secure_store.endpoint)
        archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
        server = servers.create(
            settings={"archive_mode": "on", "archive_command": archive},
            env=backup_user.env(secure_store.endpoint),
        )
        seed_shop(server.dsn(), users=20)
        taken = cli(secure_store, "backup", "pg", "backup", "--dsn", server.dsn(), "--json")
        assert taken.returncode == 0, taken.stderr
        switch_and_wait_archived(server.dsn(), repo)  # wal-push worked as the backup user

        manifest = json.loads(taken.stdout)
        key = next(f["key"] for f in manifest["files"] if f["name"] == "base.tar.zst")
        full_key = f"{PREFIX}/{key}"
        client = make_client(S3Options(endpoint_url=secure_store.endpoint, region=REGION,
                                       access_key_id=backup_user.key,
                                       secret_access_key=backup_user.secret))  # fmt: skip
        assert _denied(lambda: client.delete_object(Bucket=BUCKET, Key=full_key))
        # IAM cannot forbid an overwrite; versioning keeps the original, and the backup role
        # may neither delete that version nor switch versioning off.
        original = client.get_object(Bucket=BUCKET, Key=full_key)["Body"].read()
        client.put_object(Bucket=BUCKET, Key=full_key, Body=b"vandalised")
        auditor = secure_store.users["auditor"].s3(secure_store.endpoint).client
        versions = auditor.list_object_versions(Bucket=BUCKET, Prefix=full_key)["Versions"]
        assert len(versions) == 2
        # the version the overwrite replaced (LastModified has one-second steps: two can tie)
        oldest = next(v for v in versions if not v["IsLatest"])
        kept = auditor.get_object(Bucket=BUCKET, Key=full_key, VersionId=oldest["VersionId"])
        assert kept["Body"].read() == original
        assert _denied(
            lambda: client.delete_object(Bucket=BUCKET, Key=full_key, VersionId=oldest["VersionId"])
        )
        assert _denied(
            lambda: client.put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}
            )
        )

        restore_user = secure_store.users["restore"]
        reader = restore_user.s3(secure_store.endpoint).client
        assert _denied(lambda: reader.put_object(Bucket=BUCKET, Key=f"{PREFIX}/x", Body=b"x"))
        assert _denied(lambda: reader.delete_object(Bucket=BUCKET, Key=full_key))
        listed = cli(secure_store, "restore", "pg", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [b["backup_id"] for b in json.loads(listed.stdout)["backups"]] == [
            manifest["backup_id"]
        ]
        refused = cli(secure_store, "restore", "pg", "backup", "--dsn", server.dsn())
        assert refused.returncode == 3 and "access denied" in refused.stderr


def _store_cli(s3: EmbeddedS3, repo: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_ENGINE"))}
    env.update(s3.storage("x").environment())
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", repo, "storage", *args],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip


def test_storage_init_is_idempotent_and_check_finds_drift(embedded_s3: EmbeddedS3) -> None:
    repo = "s3://store-init-test/prod"
    planned = _store_cli(embedded_s3, repo, "init", "--dry-run")
    assert planned.returncode == 0 and "would set bucket: missing" in planned.stdout
    assert _store_cli(embedded_s3, repo, "check").returncode == 1  # dry run changed nothing
    done = _store_cli(embedded_s3, repo, "init")
    assert done.returncode == 0 and done.stdout.strip().endswith("configured")
    again = _store_cli(embedded_s3, repo, "init")
    assert "nothing to change" in again.stdout
    assert _store_cli(embedded_s3, repo, "check").returncode == 0

    client = embedded_s3.storage("x").client
    client.put_bucket_versioning(
        Bucket="store-init-test", VersioningConfiguration={"Status": "Suspended"}
    )
    rule = client.get_bucket_lifecycle_configuration(Bucket="store-init-test")["Rules"][0]
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rule["Filter"]["Prefix"] == "prod/"
    drift = _store_cli(embedded_s3, repo, "check")
    assert drift.returncode == 1 and "drift: versioning is Suspended" in drift.stdout
    assert _store_cli(embedded_s3, repo, "init").returncode == 0
    assert _store_cli(embedded_s3, repo, "check").returncode == 0


def test_object_lock_on_a_new_bucket(embedded_s3: EmbeddedS3) -> None:
    repo = "s3://locked-store-test/p"
    short = _store_cli(embedded_s3, repo, "init", "--object-lock-days", "30")
    assert short.returncode == 2 and "shorter than the retention plan" in short.stderr
    assert short.stderr.count("\n") == 1 and "created" not in short.stdout  # nothing made
    assert _store_cli(embedded_s3, repo, "init", "--object-lock", "governance").returncode == 0
    checked = _store_cli(embedded_s3, repo, "check", "--object-lock-days", "90")
    assert checked.returncode == 0, checked.stdout
    stricter = _store_cli(embedded_s3, repo, "check", "--object-lock-days", "120")
    assert stricter.returncode == 1 and "object lock" in stricter.stdout
    harder = _store_cli(embedded_s3, repo, "check", "--object-lock", "compliance")
    assert harder.returncode == 1 and "COMPLIANCE" in harder.stdout


def test_evidence_kept_in_a_locked_repository_cannot_be_deleted(
    embedded_s3: EmbeddedS3, tmp_path: Path
) -> None:
    """`drill --keep-in-repository` into a bucket made with Object Lock: each evidence file
    takes the bucket's default retention, and deleting its version is refused."""
    from backup_engine.drill.history import store_report

    assert _store_cli(embedded_s3, "s3://locked-evidence/p", "init", "--object-lock-days",
                      "90").returncode == 0  # fmt: skip
    store = S3Storage("locked-evidence", "p", embedded_s3.options())
    run = tmp_path / "20261206T031700Z-3f2a9c1e"
    run.mkdir()
    (run / "report.json").write_text("{}")
    key = f"p/{store_report(store, run)}report.json"
    head = store.client.head_object(Bucket="locked-evidence", Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"]
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        store.client.delete_object(Bucket="locked-evidence", Key=key, VersionId=head["VersionId"])


def test_policies_and_a_local_repository(tmp_path: Path, embedded_s3: EmbeddedS3) -> None:
    printed = _store_cli(embedded_s3, "s3://b/p", "policy", "--role", "expire")
    statements = json.loads(printed.stdout)["Statement"]
    assert {"s3:DeleteObject"} <= {a for s in statements for a in s["Action"]}
    local = _store_cli(embedded_s3, f"file://{tmp_path}/new-repo", "init")
    assert local.returncode == 0, local.stderr
    assert "belongs to root" in local.stdout or "belongs to" in local.stdout
    assert (tmp_path / "new-repo").stat().st_mode & 0o777 == 0o700
    checked = _store_cli(embedded_s3, f"file://{tmp_path}/new-repo", "check")
    assert checked.returncode == 0 and "must run as" in checked.stdout
    locked = _store_cli(embedded_s3, f"file://{tmp_path}/new-repo", "init", "--object-lock-days",
                        "7")  # fmt: skip
    assert locked.returncode == 2 and "Object Lock is a feature of S3" in locked.stderr
    policy = _store_cli(embedded_s3, f"file://{tmp_path}", "policy", "--role", "backup")
    assert policy.returncode == 2 and "S3 buckets" in policy.stderr
