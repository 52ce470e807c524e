"""The history page's charts as static SVG (matplotlib, no script): each scenario's RTO or RPO
over the runs against its target, and each control's pass or fail per run. Deterministic
output (fixed ids, no date), so the same history draws the same bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure  # drawn with no GUI backend and no global pyplot state
from matplotlib.patches import Rectangle

GREEN, RED, GREY, INK = "#1f883d", "#cf222e", "#d0d7de", "#1d2430"
RC: dict[Any, Any] = {"svg.fonttype": "none", "svg.hashsalt": "restore-drill", "font.size": 9}


def _svg(figure: Figure) -> str:
    out = io.StringIO()
    with matplotlib.rc_context(RC):
        figure.savefig(out, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = out.getvalue()
    return text[text.index("<svg") :]  # inline in the page: no XML prologue or doctype


def _labels(started: Sequence[str]) -> list[str]:
    return [f"{s[5:10]}\n{s[11:16]}" for s in started]  # "12-06" over "03:17"


def measure_chart(measure: str, points: Sequence[tuple[str, float, float]]) -> str:
    """Measured seconds per run (red where over target) and the target, dashed."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 1.9))
        axes = figure.add_subplot()
        xs = list(range(len(points)))
        values = [seconds for _, seconds, _ in points]
        targets = [target for _, _, target in points]
        axes.plot(xs, values, color=INK, linewidth=1.2)
        axes.scatter(
            xs,
            values,
            s=14,
            zorder=3,
            color=[RED if v > t else GREEN for v, t in zip(values, targets, strict=True)],
        )
        finite = [t for t in targets if t != float("inf")]
        if finite and max(finite) <= 4 * max(values):  # a target far above says nothing drawn
            axes.plot(xs, targets, color=RED, linestyle="--", linewidth=0.9, label="target")
            axes.legend(loc="upper left", frameon=False)
        axes.set_ylabel(f"{measure} (s)")
        axes.set_ylim(bottom=0)
        step = max(1, len(xs) // 7)
        axes.set_xticks(xs[::step], _labels([p[0] for p in points])[::step])
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        return _svg(figure)


def controls_chart(controls: Sequence[str], started: Sequence[str],
                   status: dict[tuple[int, int], bool]) -> str:  # fmt: skip
    """One row per control, one column per run: green passed, red failed, grey not drilled."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(6.4, 0.35 * len(controls) + 0.8))
        axes = figure.add_subplot()
        for row in range(len(controls)):
            for column in range(len(started)):
                passed = status.get((row, column))
                color = GREY if passed is None else GREEN if passed else RED
                axes.add_patch(Rectangle(
                    (column + 0.05, row + 0.05), 0.9, 0.9, color=color))  # fmt: skip
        axes.set_xlim(0, len(started))
        axes.set_ylim(0, len(controls))
        axes.set_yticks([r + 0.5 for r in range(len(controls))], list(controls))
        step = max(1, len(started) // 7)
        axes.set_xticks([c + 0.5 for c in range(len(started))][::step],
                        _labels(started)[::step])  # fmt: skip
        axes.invert_yaxis()
        for side in ("top", "right", "left", "bottom"):
            axes.spines[side].set_visible(False)
        axes.tick_params(length=0)
        return _svg(figure)
