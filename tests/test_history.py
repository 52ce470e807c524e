"""`drill history`: trends per scenario against targets, in the terminal (a sparkline per
measure) and as a page of static SVG charts (no script), controls run by run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from backup_engine.drill.evidence import DrillRun, ScenarioRecord
from backup_engine.drill.history import load_history, series, sparkline


def _write_runs(root: Path, rtos: list[float]) -> None:
    for day, rto in enumerate(rtos, start=1):
        run = DrillRun(started_at=f"2026-11-{day:02d}T03:17:00Z")
        record = ScenarioRecord("Full restore", "Total loss", "f::t", ["full_restore"])
        record.status = "passed" if rto <= 60 else "failed"
        record.record_check("rows", 10, 10, True)
        record.measure("RTO", rto, 60)
        run.scenarios.append(record)
        run.finished_at = run.started_at
        directory = root / f"202611{day:02d}T031700Z-{day:08x}"
        directory.mkdir(parents=True)
        (directory / "report.json").write_text(json.dumps(run.to_dict()))


def test_series_and_sparkline(tmp_path: Path) -> None:
    _write_runs(tmp_path, [10, 20, 30, 90, 15])
    [found] = series(load_history(tmp_path), last=4)
    assert [p[1] for p in found.points] == [20, 30, 90, 15] and found.over == 1
    assert sparkline([1, 2, 3, 8]) == "▁▂▃█" and sparkline([5, 5]) == "▁▁"


def test_history_prints_trends_and_draws_a_page_of_charts(tmp_path: Path) -> None:
    _write_runs(tmp_path / "runs", [10, 20, 30, 90, 15])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "DRILL_"))}
    page = tmp_path / "history.html"
    out = subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", "history", "--report-root",
         str(tmp_path / "runs"), "--html", str(page)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("Full restore"))
    assert "RTO" in row and "▁▂▃█▁" in row and "1 min 00 s" in row and row.rstrip().endswith("1")
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html
    assert html.count("<svg") == 2  # the RTO chart and the controls' grid
    assert "Full restore / Total loss: RTO" in html and "1 over target" in html
    again = subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", "history", "--report-root",
         str(tmp_path / "runs"), "--html", str(tmp_path / "again.html")],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0 and (tmp_path / "again.html").read_text() == html  # stable
