"""The product's own report.json schema check gives the jsonschema package's answer on real
reports and on reports changed at random (a value replaced anywhere, a key added or removed)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.drill.evidence import DrillRun, ScenarioRecord
from backup_engine.drill.report import report_schema
from backup_engine.drill.report.schema_check import SchemaViolation, validate


def sample_report() -> dict[str, Any]:
    run = DrillRun()
    record = ScenarioRecord("Full restore", "A restore", "features/x.feature::test_x", ["postgres"])
    record.status = "passed"
    record.record_check("rows in users", ">= 1", 10, True)
    record.measure("RTO", 12.5, 3600)
    record.phase("download, check and extract", 2.0)
    record.used_backup("20261206T030000Z", {"base.tar.zst": "ab" * 32}, {"size": 1})
    record.source("s3://bucket/prefix", data="synthetic")
    skipped = ScenarioRecord("Incremental", "A chain", "features/y.feature::test_y")
    skipped.status, skipped.error = "skipped", "skipped: needs PostgreSQL 17"
    run.scenarios += [record, skipped]
    run.finished_at = run.started_at
    return run.to_dict()


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*prefix, i))
    return found


def agree(document: Any) -> None:
    schema = report_schema()
    try:
        jsonschema.validate(document, schema)
        expected = None
    except jsonschema.ValidationError as exc:
        expected = exc
    try:
        validate(document, schema)
        found = None
    except SchemaViolation as exc:
        found = exc
    assert (expected is None) == (found is None), (expected, found)


def test_a_real_report_is_valid() -> None:
    validate(sample_report(), report_schema())
    agree(sample_report())


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=False),
    st.sampled_from(["", "passed", "failed", "skipped", "incomplete", "ab" * 16, "x"]),
    st.just([]), st.just({}),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(data=st.data(), value=JSON_VALUES, action=st.sampled_from(["replace", "add", "remove"]))
def test_a_changed_report_gets_the_same_answer_as_jsonschema(
    data: st.DataObject, value: Any, action: str
) -> None:
    report = sample_report()
    target = data.draw(st.sampled_from(paths(report)[1:]))
    document = copy.deepcopy(report)
    parent: Any = document
    for part in target[:-1]:
        parent = parent[part]
    last = target[-1]
    if action == "replace":
        parent[last] = value
    elif action == "add" and isinstance(parent, dict):
        parent[f"extra_{last}"] = value
    elif action == "remove":
        del parent[last]
    agree(document)


def test_a_schema_with_a_keyword_it_does_not_know_is_refused() -> None:
    with pytest.raises(SchemaViolation, match="does not know"):
        validate({}, {"type": "object", "propertyNames": {"pattern": "^a"}})
