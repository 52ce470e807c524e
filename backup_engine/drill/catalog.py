"""The step catalog, read from the step library's code, and a check of feature files against it.

`drill steps` prints the catalog (with each step's docstring); `drill --check`, also run before
every drill, parses every feature and names each step no definition matches, with its file and
line and the closest steps that exist, and each step whose data table or docstring does not fit
its definition (a missing or unused table or docstring, a wrong header, a word where a number
belongs), before any server starts.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pytest_bdd.parser import FeatureParser, ScenarioTemplate
from pytest_bdd.steps import step_function_context_registry

from backup_engine.errors import UsageError

KEYWORDS = {"given": "Given", "when": "When", "then": "Then", None: "Given/When/Then"}


class DrillCannotRun(UsageError):
    """The scenarios cannot run as written (exit 2, distinct from a drill that failed: 1)."""


@dataclass(frozen=True)
class StepDef:
    type: str | None  # given / when / then; None: any
    pattern: str
    doc: str
    module: str

    def describe(self) -> str:
        return f"{KEYWORDS[self.type]} {self.pattern}"


@dataclass(frozen=True)
class Undefined:
    file: str
    line: int
    text: str
    closest: tuple[str, ...]

    def describe(self) -> str:
        hint = f"; closest: {' | '.join(self.closest)}" if self.closest else ""
        return f"{self.file}:{self.line}: no step definition matches {self.text!r}{hint}"


@dataclass(frozen=True)
class Misfit:
    """A step that a definition matches but whose table or docstring does not fit it."""

    file: str
    line: int
    text: str
    reason: str

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.text!r}: {self.reason}"


Problem = Undefined | Misfit


@dataclass(frozen=True)
class TableShape:
    """The data table a step takes: a header row naming `columns` in order (then any of
    `optional`), at least one row, and whole numbers >= 0 in the `integers` columns."""

    columns: tuple[str, ...]
    optional: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()

    def header(self) -> str:
        optional = "".join(f" [{name}] |" for name in self.optional)
        return "| " + " | ".join(self.columns) + " |" + optional

    def problems(self, table: Sequence[Sequence[object]]) -> list[str]:
        if not table:
            return [f"the table is empty: it needs the header {self.header()} and rows"]
        header = [str(cell).strip().lower() for cell in table[0]]
        allowed = [*self.columns, *self.optional]
        if header[: len(self.columns)] != list(self.columns) or header != allowed[: len(header)]:
            return [f"the table's header is | {' | '.join(header)} |, expected {self.header()}"]
        if len(table) < 2:
            return [f"the table has a header and no rows: add rows under {self.header()}"]
        found = []
        for number, row in enumerate(table[1:], start=1):
            for name, cell in zip(header, row, strict=False):
                value = str(cell).strip()
                if name in self.integers and value and not (value.isdigit() and value.isascii()):
                    found.append(f"row {number}: {name} {value!r} is not a whole number >= 0")
        return found

    def rows(self, table: Sequence[Sequence[object]]) -> list[dict[str, str]]:
        """The rows as column -> stripped cell ("" for an optional column left out)."""
        problems = self.problems(table)
        if problems:
            raise DrillCannotRun("; ".join(problems))
        header = [str(cell).strip().lower() for cell in table[0]]
        return [
            {name: (str(row[i]).strip() if i < len(row) else "") for i, name in
             enumerate([*header, *self.optional[len(header) - len(self.columns):]])}
            for row in table[1:]
        ]  # fmt: skip


Step = TypeVar("Step", bound=Callable[..., Any])


def takes_table(shape: TableShape) -> Callable[[Step], Step]:
    """Declare a step's table shape, so `drill --check` can check each use of it (put it under
    the @given/@when/@then decorator)."""

    def mark(func: Step) -> Step:
        func.__drill_table__ = shape  # type: ignore[attr-defined]
        return func

    return mark


def load_catalog(modules: Iterable[str]) -> list[StepDef]:
    """Every step the given modules define, in their order of definition."""
    found: list[StepDef] = []
    for name in modules:
        module = importlib.import_module(name)
        for context in list(step_function_context_registry.values()):
            if context.step_func.__module__ != module.__name__:
                continue
            doc = (context.step_func.__doc__ or "").strip().split("\n\n")[0]
            found.append(StepDef(context.type, str(context.parser.name), " ".join(doc.split()),
                                 module.__name__))  # fmt: skip
    unique = {(s.type, s.pattern, s.module): s for s in found}
    return list(unique.values())


def _contexts(modules: Iterable[str]) -> list[Any]:
    names = {importlib.import_module(name).__name__ for name in modules}
    return [c for c in step_function_context_registry.values() if c.step_func.__module__ in names]


def _rendered(template: ScenarioTemplate) -> list[Any]:
    """Every concrete scenario of a template (one per Examples row, or itself)."""
    rows = [
        dict(zip(examples.example_params, row, strict=False))
        for examples in template.examples
        for row in examples.examples
    ]
    return [template.render(row) for row in rows] or [template.render({})]


def _misfit(func: Callable[..., Any], step: Any) -> str | None:
    """Why this step's table or docstring does not fit the definition, if it does not."""
    params = inspect.signature(func).parameters
    table = step.datatable.raw() if step.datatable is not None else None
    for name, given, what in (("datatable", table, "data table"),
                              ("docstring", step.docstring, "docstring")):  # fmt: skip
        if name in params and given is None:
            return f"this step needs a {what} under it"
        if name not in params and given is not None:
            return f"this step takes no {what}: the one under it would be ignored"
    shape: TableShape | None = getattr(func, "__drill_table__", None)
    if shape is not None and table is not None:
        return "; ".join(shape.problems(table)) or None
    return None


def check_features(features: Sequence[Path], modules: Sequence[str]) -> list[Problem]:
    """Each step of each feature that no definition matches, or that does not fit it."""
    contexts = _contexts(modules)
    problems: dict[tuple[str, int], Problem] = {}
    for path in features:
        try:
            feature = FeatureParser(str(path.parent), path.name).parse()
        except Exception as exc:  # noqa: BLE001 - any parser complaint is the user's to fix
            raise DrillCannotRun(f"{path}: not a readable feature file: {exc}") from None
        for template in feature.scenarios.values():
            for scenario in _rendered(template):
                for step in scenario.steps:
                    problem = _check_step(str(path), step, contexts)
                    if problem is not None:
                        problems.setdefault((problem.file, problem.line), problem)
    return list(problems.values())


def _check_step(file: str, step: Any, contexts: list[Any]) -> Problem | None:
    text = f"{step.keyword.strip()} {step.name}"
    for context in contexts:
        if context.type in (None, step.type) and context.parser.is_matching(step.name):
            reason = _misfit(context.step_func, step)
            return Misfit(file, step.line_number, text, reason) if reason else None
    known = [f"{KEYWORDS[c.type]} {c.parser.name}" for c in contexts]
    closest = difflib.get_close_matches(f"{KEYWORDS[step.type]} {step.name}", known, n=3,
                                        cutoff=0.5)  # fmt: skip
    return Undefined(file, step.line_number, text, tuple(closest))


def feature_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.feature"))
