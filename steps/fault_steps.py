"""Steps that break things on purpose: a failing or vanishing store, damaged objects, two
backups at once. Each scenario checks that nothing is lost and the message says what happened."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest
from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.faultproxy import FaultProxy, Rule
from backup_engine.drill.recovery import recovery_from
from backup_engine.drill.seaweedfs import SeaweedS3
from backup_engine.errors import BackupEngineError
from backup_engine.health import CRITICAL, Finding, check_backups
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.catalog import list_base_backups
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.verify import verify_base_backup
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import S3Storage, Storage

from . import StorageFactory

ZSTD = get_codec("zstd")


@dataclass
class Outcome:
    manifest: BaseBackupManifest | None = None
    error: BackupEngineError | None = None


@pytest.fixture
def fault_proxy(embedded_s3: EmbeddedS3 | SeaweedS3) -> Iterator[FaultProxy]:
    proxy = FaultProxy(embedded_s3.port).start()
    yield proxy
    proxy.stop()


@given("an empty backup repository behind a fault-injecting proxy", target_fixture="repository")
def repository_behind_proxy(fault_proxy: FaultProxy, storage_factory: StorageFactory) -> Storage:
    direct = storage_factory()
    assert isinstance(direct, S3Storage)
    # 5 MiB parts (the S3 minimum) so even a small backup is a multipart upload.
    options = replace(direct.options, endpoint_url=fault_proxy.url, part_size=5 * 1024 * 1024)
    return S3Storage(direct.bucket, direct.prefix, options)


@when(
    parsers.parse("the next {failing:d} part uploads answer 503 and {dropped:d} more are dropped")
)
def flaky_parts(fault_proxy: FaultProxy, failing: int, dropped: int) -> None:
    fault_proxy.add(Rule("503", "partNumber=", times=failing))
    fault_proxy.add(Rule("drop", "partNumber=", times=dropped))


@when("every part upload fails with HTTP 500")
def failing_parts(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("500", "partNumber=", times=None))


@when("every request to the store is slowed down by 200 milliseconds")
def slow_store(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("delay", "", times=None, delay_s=0.2))


@when("the store stops answering")
def store_gone(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("drop", "", times=None))


@when("a full backup is attempted", target_fixture="outcome")
def attempt_backup(repository: Storage, source_server: PostgresServer) -> Outcome:
    try:
        return Outcome(
            take_base_backup(repository, ZSTD, BaseBackupOptions(dsn=source_server.dsn()))
        )
    except BackupEngineError as exc:
        return Outcome(error=exc)


@then(parsers.parse('the backup failed with a message saying "{text}"'))
def failed_with(outcome: Outcome, drill_record: ScenarioRecord, text: str) -> None:
    message = str(outcome.error) if outcome.error else "the backup did not fail"
    ok = outcome.error is not None and text in message and "\n" not in message
    drill_record.expect("backup failed with one line", f"saying {text!r}", message, ok)


@then("the backup succeeded")
def succeeded(
    outcome: Outcome, backups_taken: list[BaseBackupManifest], drill_record: ScenarioRecord
) -> None:
    drill_record.expect("backup", "complete", str(outcome.error) if outcome.error else "complete")
    assert outcome.manifest is not None
    backups_taken.append(outcome.manifest)


@then("no backup is listed as complete")
def none_listed(repository: Storage, fault_proxy: FaultProxy, drill_record: ScenarioRecord) -> None:
    fault_proxy.clear()
    drill_record.expect("backups listed as complete", 0, len(list_base_backups(repository).backups))


@then("no multipart upload is left behind")
def no_uploads(repository: Storage, fault_proxy: FaultProxy, drill_record: ScenarioRecord) -> None:
    fault_proxy.clear()
    assert isinstance(repository, S3Storage), "this step needs an S3 repository"
    uploads = repository.client.list_multipart_uploads(Bucket=repository.bucket).get("Uploads", [])
    ours = [u for u in uploads if u["Key"].startswith(repository.prefix)]
    drill_record.expect("multipart uploads left open", 0, len(ours))


@then(parsers.parse("the store saw {count:d} injected faults"))
def faults_seen(fault_proxy: FaultProxy, drill_record: ScenarioRecord, count: int) -> None:
    injected = [line for line in fault_proxy.log if not line.startswith("pass")]
    drill_record.expect("faults the store injected", count, len(injected))


# --- damaged objects ----------------------------------------------------------------------


@when(
    parsers.parse("one byte of the latest base backup is flipped in the store"),
    target_fixture="damaged_key",
)
def flip_byte(repository: Storage) -> str:
    key = list_base_backups(repository).backups[-1].file("base.tar.zst").key
    data = bytearray(repository.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    repository.put_bytes(key, bytes(data))  # a raw overwrite: what bit rot or a vandal does
    return key


@when("the base tar of the latest backup is deleted from the store", target_fixture="damaged_key")
def delete_object(repository: Storage) -> str:
    key = list_base_backups(repository).backups[-1].file("base.tar.zst").key
    repository.delete(key)
    return key


@then("verify names the damaged object")
def _refusal(action: Callable[[], object]) -> str:
    """What an operation that should refuse said, or that it did not refuse."""
    try:
        action()
    except BackupEngineError as exc:
        return f"refused (exit {exc.exit_code}): {exc}"
    return "completed without a refusal"


@then("verify names the damaged object")
def verify_names(repository: Storage, damaged_key: str, drill_record: ScenarioRecord) -> None:
    found = _refusal(lambda: verify_base_backup(repository, "latest", hashes_only=True))
    drill_record.expect("verify refuses", f"naming {damaged_key}", found, damaged_key in found)


@then("a restore names the damaged object and leaves the target directory empty")
def restore_names(
    repository: Storage, pg_backend: PostgresBackend, damaged_key: str,
    drill_record: ScenarioRecord,
) -> None:  # fmt: skip
    target = pg_backend.new_data_dir()
    recovery = recovery_from(repository, None)
    found = _refusal(lambda: restore_base_backup(repository, "latest", target, recovery=recovery))
    left = sum(1 for _ in target.iterdir())
    drill_record.expect_all([
        ("restore refuses", f"naming {damaged_key}", found, damaged_key in found),
        ("entries left in the target directory", 0, left, left == 0),
    ])  # fmt: skip


def _critical(findings: list[Finding], key: str, drill_record: ScenarioRecord, name: str) -> None:
    damaged = [f.message for f in findings if f.state == CRITICAL]
    found = damaged[0] if damaged else "no critical finding"
    drill_record.expect(name, f"critical, naming {key}", found, bool(damaged) and key in found)


@then("the deep check reports the damaged object as critical")
def check_reports(repository: Storage, damaged_key: str, drill_record: ScenarioRecord) -> None:
    findings = check_backups(repository, deep=True)
    _critical(findings, damaged_key, drill_record, "check --deep")


@then("the quick check reports the missing object as critical")
def quick_check_reports(
    repository: Storage, damaged_key: str, drill_record: ScenarioRecord
) -> None:
    _critical(check_backups(repository), damaged_key, drill_record, "check")


# --- two at once ------------------------------------------------------------------------


@when("two full backups start at the same time", target_fixture="outcomes")
def two_at_once(repository: Storage, source_server: PostgresServer) -> list[Outcome]:
    outcomes = [Outcome(), Outcome()]
    start = threading.Barrier(2)

    def run(outcome: Outcome) -> None:
        start.wait()
        try:
            # At 8 MB/s a backup holds the lock for seconds: "at once" stays at once on a store
            # that answers a racing conditional PUT with a retryable conflict (SeaweedFS, AWS's
            # ConditionalRequestConflict), whose retry would otherwise come after a fast first
            # backup released the lock, and both would rightly run, one after the other.
            options = BaseBackupOptions(dsn=source_server.dsn(), max_rate_kb=8192)
            outcome.manifest = take_base_backup(repository, ZSTD, options)
        except BackupEngineError as exc:
            outcome.error = exc

    threads = [threading.Thread(target=run, args=(o,)) for o in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return outcomes


@then(parsers.parse('one completes and the other fails saying "{text}"'))
def one_wins(outcomes: list[Outcome], drill_record: ScenarioRecord, text: str) -> None:
    done = [o for o in outcomes if o.manifest is not None]
    refused = [o for o in outcomes if o.error is not None]
    drill_record.expect("backups completed / refused", "1 / 1", f"{len(done)} / {len(refused)}")
    drill_record.expect("the refusal", f"saying {text!r}", str(refused[0].error),
                        text in str(refused[0].error))  # fmt: skip


@then(parsers.parse("exactly {count:d} backup is listed and it verifies"))
def listed_and_verifies(repository: Storage, drill_record: ScenarioRecord, count: int) -> None:
    backups = list_base_backups(repository).backups
    drill_record.expect("backups listed as complete", count, len(backups))
    result = verify_base_backup(repository, "latest")
    drill_record.expect("pg_verifybackup on the one listed", True, result.pg_verifybackup)
