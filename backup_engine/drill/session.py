"""The pytest session behind `backup-engine drill`: which files it runs, with which plugins and
selection, and `drill list`, which asks the same session which scenarios it would run (so the
list and the run can never disagree about --tags and -k)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backup_engine.errors import MissingExtra

EXIT_NO_SCENARIOS = 5  # pytest's "no tests collected"
EXIT_PYTEST_USAGE = 4


def default_features_dir() -> Path:
    """The checkout's features/, or the scenarios installed with the package."""
    checkout = Path(__file__).resolve().parent.parent.parent / "features"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "scenarios"


RUN_NEEDS = ("pytest", "pytest_bdd", "jinja2")  # looked up, not imported: pytest imports them


def need_drill_extra(modules: tuple[str, ...] = RUN_NEEDS) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(
                f"backup-engine drill needs {module}, which comes with the drill extra",
                hint="pip install 'restore-drill[drill]'",
            )


STEP_LIBRARIES = "restore_drill.steps"  # the entry-point group of step libraries


def step_plugins() -> list[str]:
    """The pytest plugins of every step library declared in the `restore_drill.steps` entry
    point group (this project's, installed as `restore_drill_steps`, and any other project's):
    each names a module whose PLUGINS lists its fixture and step modules. Inside a server image
    the checkout is on the path without being installed: its `steps` package, then."""
    from importlib.metadata import entry_points

    # Only libraries that are importable here: a checkout on the path carries the metadata of
    # its editable install (restore_drill.egg-info) without the package name it maps.
    modules = [e.value for e in entry_points(group=STEP_LIBRARIES) if _importable(e.value)]
    if not modules and _importable("steps"):
        modules = ["steps"]
    if not modules:
        raise MissingExtra(
            f"no step library is installed (entry point group {STEP_LIBRARIES})",
            hint="pip install 'restore-drill[drill]'",
        )
    plugins: list[str] = []
    for name in modules:
        for plugin in importlib.import_module(name).PLUGINS:
            if plugin not in plugins:
                plugins.append(plugin)
    return plugins


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def step_modules(plugins: list[str]) -> list[str]:
    """The step libraries' own modules (not the drill's evidence plugin)."""
    return [name for name in plugins if not name.startswith("backup_engine.")]


def bound(features: Path) -> Path:
    """What pytest runs: the directory, when it binds its .feature files itself (a test_*.py
    calling pytest-bdd's scenarios()); otherwise a binding module written for it, so a
    directory of .feature files alone is enough."""
    if any(features.glob("test_*.py")) or any(features.glob("*_test.py")):
        return features
    binding = Path(tempfile.mkdtemp(prefix="drill-binding-")) / "test_drill_scenarios.py"
    binding.write_text(f"from pytest_bdd import scenarios\n\nscenarios({str(features)!r})\n")
    return binding


def pytest_args(
    features: Path, plugins: list[str], tags: str | None, keyword: str | None
) -> list[str]:
    """The arguments common to a run and a listing."""
    args = [
        str(bound(features)),
        f"--rootdir={features.parent}",
        *[arg for plugin in plugins for arg in ("-p", plugin)],
        "-p", "no:cacheprovider",
        # The step check imported the steps: their asserts stay plain (the drill reports its
        # own expected/found lines), which pytest would otherwise warn about.
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
        "--no-header", "-p", "no:randomly",
    ]  # fmt: skip
    if tags:
        args += ["-m", tags]
    if keyword:
        args += ["-k", keyword]
    return args


@dataclass(frozen=True)
class Listed:
    feature: str
    scenario: str
    tags: list[str]
    file: str
    nodeid: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class _Collector:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def pytest_collection_finish(self, session: Any) -> None:
        self.items = list(session.items)  # after -m and -k deselected what they do not match


def list_scenarios(args: list[str]) -> tuple[int, list[Listed], str]:
    """pytest's exit code, the scenarios the run would execute, and what pytest printed."""
    import pytest
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    collector = _Collector()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = int(pytest.main([*args, "--collect-only", "-q"], plugins=[collector]))
    listed = []
    for item in collector.items:
        function = getattr(item, "function", None)
        template = scenario_wrapper_template_registry.get(function) if function else None
        if template is None:
            continue  # a plain test beside the features: not a scenario
        tags = sorted(set(template.tags) | set(template.feature.tags))
        listed.append(Listed(template.feature.name, template.name, tags,
                             str(template.feature.rel_filename), item.nodeid))  # fmt: skip
    return code, listed, printed.getvalue()
