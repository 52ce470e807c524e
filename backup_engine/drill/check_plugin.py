"""pytest plugin: before any scenario runs (and so before any server starts), every step of
every feature must have a definition. `drill --check` stops there; a drill with an undefined
step ends with exit code CANNOT_RUN, which the drill command turns into its own exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup_engine.drill.catalog import check_features, feature_files

CANNOT_RUN = 9  # pytest's own codes stop at 5


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("restore drill")
    group.addoption("--drill-features", help="the feature files to check before running")
    group.addoption(
        "--drill-check-only", action="store_true", help="check the features, run nothing"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    directory = config.getoption("--drill-features")
    if not directory:
        return
    problems = check_features(feature_files(Path(directory)), _steps())
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for problem in problems:
        if reporter is not None:
            reporter.write_line(problem.describe())
    if problems:
        pytest.exit(f"{len(problems)} step(s) have no definition", returncode=CANNOT_RUN)
    if config.getoption("--drill-check-only"):
        files = len(feature_files(Path(directory)))
        pytest.exit(f"{files} feature files: every step has a definition", returncode=0)


def _steps() -> list[str]:
    from steps import PLUGINS

    return [name for name in PLUGINS if name.startswith("steps.")]
