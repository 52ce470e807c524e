"""Every evidence check in the step library goes through the call that records and asserts
(`expect`, `expect_all`, `expect_within`), and none is recorded as a constant: a check that
cannot fail is a defect, so the code is read for one."""

from __future__ import annotations

import ast
from pathlib import Path

STEPS = Path(__file__).parent.parent / "steps"
RECORD_ONLY = {"record_check", "measure"}  # record without asserting: for the evidence module


def problems(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        where = f"{name}:{node.lineno}"
        if node.func.attr in RECORD_ONLY:
            found.append(f"{where}: records without asserting (use drill_record.expect)")
        if node.func.attr != "expect":
            continue
        passed = node.args[3] if len(node.args) > 3 else next(
            (k.value for k in node.keywords if k.arg == "passed"), None)  # fmt: skip
        compared = node.args[1:3] if passed is None else []
        if isinstance(passed, ast.Constant) or (
            len(compared) == 2 and all(isinstance(a, ast.Constant) for a in compared)
        ):
            found.append(f"{where}: a check that cannot fail")
    return found


def test_every_step_check_records_and_asserts_and_can_fail() -> None:
    found = [p for path in sorted(STEPS.glob("*.py")) for p in problems(path.read_text(),
                                                                         path.name)]  # fmt: skip
    assert found == []


def test_the_reading_finds_what_it_looks_for() -> None:
    sample = "\n".join([
        'record.expect("a", 1, found, True)',
        'record.expect("b", 1, 1)',
        'record.expect("c", 1, found, passed=True)',
        'record.record_check("d", 1, found, found == 1)',
        'record.expect("e", 1, found, found == 1)',
        'record.expect("f", 1, found)',
    ])  # fmt: skip
    assert [p.split(":")[1] for p in problems(sample, "x")] == ["1", "2", "3", "4"]
