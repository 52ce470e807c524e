"""The step catalog, read from the step library's code, and a check of feature files against it.

`drill steps` prints the catalog (with each step's docstring); `drill --check`, also run before
every drill, parses every feature and names each step no definition matches, with its file and
line and the closest steps that exist, before any server starts.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    names = set(modules)
    return [c for c in step_function_context_registry.values() if c.step_func.__module__ in names]


def _rendered(template: ScenarioTemplate) -> list[Any]:
    """Every concrete scenario of a template (one per Examples row, or itself)."""
    rows = [
        dict(zip(examples.example_params, row, strict=False))
        for examples in template.examples
        for row in examples.examples
    ]
    return [template.render(row) for row in rows] or [template.render({})]


def check_features(features: Sequence[Path], modules: Sequence[str]) -> list[Undefined]:
    """Each step of each feature that no definition matches."""
    contexts = _contexts(modules)
    known = [f"{KEYWORDS[c.type]} {c.parser.name}" for c in contexts]
    problems: dict[tuple[str, int], Undefined] = {}
    for path in features:
        try:
            feature = FeatureParser(str(path.parent), path.name).parse()
        except Exception as exc:  # noqa: BLE001 - any parser complaint is the user's to fix
            raise DrillCannotRun(f"{path}: not a readable feature file: {exc}") from None
        for template in feature.scenarios.values():
            for scenario in _rendered(template):
                for step in scenario.steps:
                    if any(
                        c.type in (None, step.type) and c.parser.is_matching(step.name)
                        for c in contexts
                    ):
                        continue
                    text = f"{step.keyword.strip()} {step.name}"
                    closest = difflib.get_close_matches(
                        f"{KEYWORDS[step.type]} {step.name}", known, n=3, cutoff=0.5
                    )
                    key = (str(path), step.line_number)
                    problems.setdefault(key, Undefined(str(path), step.line_number, text,
                                                       tuple(closest)))  # fmt: skip
    return list(problems.values())


def feature_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.feature"))
