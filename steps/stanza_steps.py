"""Steps about several PostgreSQL clusters in one configuration (stanzas): one `run-all` backs
them all up, each into its own prefix, and each comes back from its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

from backup_engine.config import Settings, load_settings
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import record_restore, restore_into_new_server
from backup_engine.drill.seed import seed_shop
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.inspect import TableFingerprint, table_fingerprints
from backup_engine.runall import run_all_backups
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.stanzas import STANZA_ENV
from backup_engine.storage import Storage


@dataclass
class Stanzas:
    config: Path
    environment: dict[str, str]
    servers: dict[str, PostgresServer]
    recorded: dict[str, dict[str, TableFingerprint]]

    def settings(self, stanza: str | None = None) -> Settings:
        return load_settings(self.config, env=self.environment, stanza=stanza)


@given(
    parsers.parse('PostgreSQL clusters "{first}" ({a:d} users) and "{second}" ({b:d} users) '
                  "configured as stanzas of one repository"),
    target_fixture="stanzas",
)  # fmt: skip
def two_clusters(
    pg_backend: PostgresBackend, repository: Storage, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, first: str, a: int, second: str, b: int,
) -> Stanzas:  # fmt: skip
    servers = {first: pg_backend.create(), second: pg_backend.create()}
    seed_shop(servers[first].dsn(), users=a)
    seed_shop(servers[second].dsn(), users=b, seed=0.7)
    config = tmp_path / "backup-engine.toml"
    config.write_text(
        f'[repository]\nurl = "{repository.url}"\n\n[postgres]\ncheckpoint = "fast"\n'
        + "".join(f'\n[stanza.{name}]\ndsn = "{s.dsn()}"\n' for name, s in servers.items())
    )
    for name, value in repository.environment().items():  # botocore reads os.environ
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(STANZA_ENV, raising=False)
    return Stanzas(config, dict(os.environ), servers, {})


@when("run-all backs up every stanza")
def run_all(stanzas: Stanzas, drill_record: ScenarioRecord) -> None:
    for name, server in stanzas.servers.items():
        stanzas.recorded[name] = table_fingerprints(server.dsn())
    results = run_all_backups(stanzas.settings(), stanza=stanzas.settings)
    drill_record.expect_all(
        (f"run-all job {r.job}", "ok", r.status if not r.error else f"{r.status}: {r.error}",
         r.status == "ok") for r in results
    )  # fmt: skip
    expected = sorted(f"postgres {name}" for name in stanzas.servers)
    drill_record.expect("run-all jobs", expected, sorted(r.job for r in results))


@when("every stanza's server is destroyed")
def destroy_all(stanzas: Stanzas) -> None:
    for server in stanzas.servers.values():
        server.destroy()


@then("each stanza lists one backup, of its own cluster")
def one_each(stanzas: Stanzas, drill_record: ScenarioRecord) -> None:
    identities = set()
    for name in stanzas.servers:
        backups = BASE_BACKUPS.list(stanzas.settings(name).open_storage()).backups
        drill_record.expect(f"backups listed in stanza {name}", 1, len(backups))
        identities.add(backups[0].system_identifier)
    drill_record.expect("distinct clusters", len(stanzas.servers), len(identities))


@then("each stanza restores its own cluster with every table as recorded")
def restore_each(
    stanzas: Stanzas, pg_backend: PostgresBackend, drill_record: ScenarioRecord
) -> None:
    for name in stanzas.servers:
        storage = stanzas.settings(name).open_storage()
        restored = restore_into_new_server(storage, "latest", pg_backend)
        record_restore(drill_record, restored)
        actual = table_fingerprints(restored.server.dsn())
        drill_record.expect(f"stanza {name}: tables, rows and content checksums",
                            stanzas.recorded[name], actual)  # fmt: skip
        restored.server.destroy()
