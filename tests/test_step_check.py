"""drill --check fits each step's data table and docstring to its definition, before any
server starts: a wrong header, a word where a number belongs, a missing or unused table."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup_engine.drill.catalog import DrillCannotRun, TableShape, check_features
from steps import PLUGINS

STEPS = [name for name in PLUGINS if not name.startswith("backup_engine.")]

FEATURE = '''Feature: ours
  Scenario: misfits
    Given a running Redis server holding these keys:
      | key   | value | ttl seconds |
      | a     | 1     |             |
      | b     | 2     | 60          |
    And a running Redis server holding these keys:
    And the database "app" has:
    When the server is destroyed
      """
      DROP TABLE x;
      """
    Then these tables have at least these rows:
      | table    | count |
      | invoices | 3     |
    And these tables have at least these rows:
      | table    | rows |
      | invoices | many |
    And these queries return these values:
      | query |
    Given a running Redis server holding these keys:
      | key | value | ttl seconds |
      | a   | 1     | 5           |
      | b   | 1     | -5          |
'''


def test_each_misfit_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ours.feature"
    path.write_text(FEATURE)
    found = {p.line: p.describe() for p in check_features([path], STEPS)}
    assert 3 not in found  # the optional column left empty is fine
    assert "needs a data table" in found[7]
    assert "needs a docstring" in found[8]
    assert "takes no docstring" in found[9]
    assert "header is | table | count |, expected | table | rows |" in found[13]
    assert "row 1: rows 'many' is not a whole number" in found[16]
    assert "header is | query |, expected | query | value |" in found[19]
    assert "row 2: ttl seconds '-5'" in found[21]
    assert all(text.startswith(f"{path}:") for text in found.values())
    assert len(found) == 7


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ([], "the table is empty"),
        ([["key", "value"]], "a header and no rows"),
        ([["value", "key"], ["a", "b"]], "expected | key | value | [ttl seconds] |"),
        ([["key", "value", "ttl seconds", "extra"], ["a", "b", "1", "x"]], "header is"),
        ([["key", "value", "ttl seconds"], ["a", "b", "1 0"]], "not a whole number"),
        ([["key", "value", "ttl seconds"], ["a", "b", "\u0661"]], "not a whole number"),
    ],
)
def test_table_shapes_refuse_what_a_step_cannot_use(table: list[list[str]], problem: str) -> None:
    shape = TableShape(("key", "value"), optional=("ttl seconds",), integers=("ttl seconds",))
    assert problem in "; ".join(shape.problems(table))
    with pytest.raises(DrillCannotRun, match=problem.split("|")[0]):
        shape.rows(table)


def test_rows_fill_in_optional_columns_left_out() -> None:
    shape = TableShape(("key", "value"), optional=("ttl seconds",), integers=("ttl seconds",))
    assert shape.rows([["Key", " value "], [" a ", "b"]]) == [
        {"key": "a", "value": "b", "ttl seconds": ""}
    ]
    assert shape.rows([["key", "value", "ttl seconds"], ["a", "b", " 7"]])[0]["ttl seconds"] == "7"
