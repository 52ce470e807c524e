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
    failures = []
    for row in TABLE_ROWS.rows(datatable):
        table, minimum = row["table"], row["rows"]
        actual = row_count(restored.server.dsn(), table)
        check = drill_record.check(
            f"rows in {table}", f">= {minimum}", actual, actual >= int(minimum)
        )
        if not check.passed:
            failures.append(f"{table}: {actual} rows, expected at least {minimum}")
    assert not failures, "; ".join(failures)


@then("these queries return these values:")
@takes_table(QUERY_VALUES)
def queries_return(
    restored: RestoredServer, drill_record: ScenarioRecord, datatable: list[list[str]]
) -> None:
    """A table with the columns `query | value`: each query's single value, as text."""
    failures = []
    for row in QUERY_VALUES.rows(datatable):
        query, expected = row["query"], row["value"]
        actual = query_value(restored.server.dsn(), query)
        check = drill_record.check(query, expected, actual, actual == expected)
        if not check.passed:
            failures.append(f"{query!r} returned {actual!r}, expected {expected!r}")
    assert not failures, "; ".join(failures)


@then("no foreign key has orphans")
def no_orphans(restored: RestoredServer, drill_record: ScenarioRecord) -> None:
    checks = foreign_key_orphans(restored.server.dsn())
    drill_record.check("foreign keys checked", ">= 1", len(checks), bool(checks))
    bad = [c for c in checks if c.orphans]
    for fk in checks:
        drill_record.check(
            f"orphans of {fk.constraint} ({fk.table} -> {fk.references})", 0, fk.orphans,
            fk.orphans == 0,
        )  # fmt: skip
    assert checks, "no foreign key found to check"
    assert not bad, ", ".join(f"{c.constraint}: {c.orphans} orphan rows" for c in bad)


@then("every index is valid and passes amcheck")
def indexes_valid(restored: RestoredServer, drill_record: ScenarioRecord) -> None:
    checks = index_health(restored.server.dsn())
    bad = [c for c in checks if not c.valid or c.amcheck not in ("ok", "not btree")]
    for index in checks:
        passed = index.valid and index.amcheck in ("ok", "not btree")
        drill_record.check(
            f"index {index.index}",
            "valid, amcheck ok",
            f"valid={index.valid}, amcheck={index.amcheck}",
            passed,
        )
    assert checks, "no index found to check"
    assert not bad, ", ".join(f"{c.index}: valid={c.valid} amcheck={c.amcheck}" for c in bad)


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
    drill_record.check(
        "indexes present", len(recorded_indexes), len(recorded_indexes & present), not missing
    )
    assert not missing, f"indexes missing after restore: {missing}"


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
    drill_record.check(f"GET {health_url}", status, actual, actual == status)
    assert actual == status, f"GET {health_url} answered {actual}"


@then(parsers.parse('GET "{url}" answers {status:d}'))
def url_answers(drill_record: ScenarioRecord, url: str, status: int) -> None:
    """For a real deployment: the URL may name environment variables, like ${APP_URL}/health."""
    resolved = os.path.expandvars(url)
    if not resolved.startswith(("http://", "https://")):
        raise ValueError(f"{resolved!r} is not an http(s) URL")
    actual = _status(resolved)
    drill_record.check(f"GET {resolved}", status, actual, actual == status)
    assert actual == status, f"GET {resolved} answered {actual}"
