"""report.html and the history page: Jinja2 templates (templates/), autoescaped, rendered into
one self-contained page each (no network, no script) a person can read, print and archive."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2

from backup_engine.durations import format_duration


@cache
def _environment() -> jinja2.Environment:
    templates = resources.files("backup_engine.drill.report") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (templates / name).read_text()),
        autoescape=True,
    )
    env.filters["duration"] = format_duration
    return env


def render(template: str, **values: Any) -> str:
    style = (resources.files("backup_engine.drill.report") / "templates" / "style.css").read_text()
    return _environment().get_template(template).render(style=style, **values)


def render_html(report: dict[str, Any]) -> str:
    return render("report.html.j2", report=report)


def render_history(runs: list[Any], source: str, last: int | None = None) -> str:
    """The history page: a chart per scenario and measure, and the controls' grid."""
    from backup_engine.drill.history import series
    from backup_engine.drill.report.charts import controls_chart, measure_chart

    shown = runs[-last:] if last else runs
    charts = [{"series": s, "svg": measure_chart(s.measure, s.points)} for s in series(shown)]
    controls = sorted({c for run in shown for c in run.controls})
    grid = {(row, column): run.controls[control]
            for row, control in enumerate(controls)
            for column, run in enumerate(shown) if control in run.controls}  # fmt: skip
    started = [run.started_at for run in shown]
    chart = controls_chart(controls, started, grid) if controls else ""
    return render("history.html.j2", runs=shown, source=source, charts=charts,
                  controls_chart=chart)  # fmt: skip
