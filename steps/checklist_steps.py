"""The restore checklist as reusable Then-steps. Each records what it expected and what it
found in the evidence, then asserts. New checks can be written in Gherkin alone, with data
tables of tables and minimum rows, or of SQL queries and the values they must return."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from pytest_bdd import given, parsers, then, when

from backup_engine.drill.catalog import TableShape, takes_table
from backup_engine.drill.checklist import (
    foreign_key_orphans,
    index_health,
    index_names,
    query_value,
    row_count,
)
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.health_app import HealthApp
from backup_engine.drill.recovery import RestoredServer
from backup_engine.servers import PostgresServer


@pytest.fixture
def health_apps() -> Iterator[list[HealthApp]]:
    apps: list[HealthApp] = []
    yield apps
    for app in apps:
        app.stop()


TABLE_ROWS = TableShape(("table", "rows"), integers=("rows",))
QUERY_VALUES = TableShape(("query", "value"))


@then("these tables have at least these rows:")
@takes_table(TABLE_ROWS)
def tables_have_rows(
    restored: RestoredServer, drill_record: ScenarioRecord, datatable: list[list[str]]
) -> None:
    """A table with the columns `table | rows`: each table holds at least that many rows."""
    checks = []
    for row in TABLE_ROWS.rows(datatable):
        table, minimum = row["table"], int(row["rows"])
        actual = row_count(restored.server.dsn(), table)
        checks.append((f"rows in {table}", f">= {minimum}", actual, actual >= minimum))
    drill_record.expect_all(checks)


@then("these queries return these values:")
@takes_table(QUERY_VALUES)
def queries_return(
    restored: RestoredServer, drill_record: ScenarioRecord, datatable: list[list[str]]
) -> None:
    """A table with the columns `query | value`: each query's single value, as text."""
    checks = []
    for row in QUERY_VALUES.rows(datatable):
        query, expected = row["query"], row["value"]
        actual = query_value(restored.server.dsn(), query)
        checks.append((query, expected, actual, actual == expected))
    drill_record.expect_all(checks)


@then("no foreign key has orphans")
def no_orphans(restored: RestoredServer, drill_record: ScenarioRecord) -> None:
    checks = foreign_key_orphans(restored.server.dsn())
    drill_record.expect_all(
        [("foreign keys checked", ">= 1", len(checks), bool(checks))]
        + [(f"orphans of {fk.constraint} ({fk.table} -> {fk.references})", 0, fk.orphans,
            fk.orphans == 0) for fk in checks]
    )  # fmt: skip


@then("every index is valid and passes amcheck")
def indexes_valid(restored: RestoredServer, drill_record: ScenarioRecord) -> None:
    checks = index_health(restored.server.dsn())
    drill_record.expect_all(
        [("indexes checked", ">= 1", len(checks), bool(checks))]
        + [(f"index {index.index}", "valid, amcheck ok",
            f"valid={index.valid}, amcheck={index.amcheck}",
            index.valid and index.amcheck in ("ok", "not btree")) for index in checks]
    )  # fmt: skip


@given("the indexes are recorded", target_fixture="recorded_indexes")
@when("the indexes are recorded", target_fixture="recorded_indexes")
def record_indexes(source_server: PostgresServer) -> set[str]:
    return index_names(source_server.dsn())


@then("every index recorded before the loss is present")
def indexes_present(
    restored: RestoredServer, drill_record: ScenarioRecord, recorded_indexes: set[str]
) -> None:
    present = index_names(restored.server.dsn())
    missing = sorted(recorded_indexes - present)
    drill_record.expect(
        "indexes present", len(recorded_indexes), len(recorded_indexes & present), not missing
    )


@when("an app is started against the restored database", target_fixture="health_url")
def start_health_app(restored: RestoredServer, health_apps: list[HealthApp]) -> str:
    app = HealthApp(restored.server.dsn()).start()
    health_apps.append(app)
    return app.url


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@then(parsers.parse("its health endpoint answers {status:d}"))
def app_health(health_url: str, drill_record: ScenarioRecord, status: int) -> None:
    actual = _status(health_url)
    drill_record.expect(f"GET {health_url}", status, actual)


@then(parsers.parse('GET "{url}" answers {status:d}'))
def url_answers(drill_record: ScenarioRecord, url: str, status: int) -> None:
    """For a real deployment: the URL may name environment variables, like ${APP_URL}/health."""
    resolved = os.path.expandvars(url)
    if not resolved.startswith(("http://", "https://")):
        raise ValueError(f"{resolved!r} is not an http(s) URL")
    actual = _status(resolved)
    drill_record.expect(f"GET {resolved}", status, actual)
