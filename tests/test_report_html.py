"""report.html in a real browser (Debian's headless Chromium): it loads with no console
errors and shows the scenario table. A screenshot is kept beside the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backup_engine.drill.evidence import DrillRun, ScenarioRecord, StepRecord
from backup_engine.drill.report import REPORT_HTML, write_json
from backup_engine.drill.report.html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="environment limit: Debian's chromium and chromium-driver packages are not installed "
    "(make test installs them when run as root)",
)


def sample_run() -> DrillRun:
    good = ScenarioRecord(
        "Complete data loss", "Restore <latest> & check", "a", ["postgres"], "passed"
    )
    good.measure("RTO", 42.0, 4 * 3600)
    good.record_check("rows in users", ">= 1", 2000, True)
    good.used_backup("20261125T020000Z", {"postgres/base/x/base.tar.zst": "ab" * 32})
    good.steps.append(StepRecord("When", "a full backup is taken", 0.4, "passed"))
    bad = ScenarioRecord("PITR", "Recover by time", "b", ["pitr"], "failed")
    bad.measure("RTO", 7200, 3600)
    bad.measure("RPO", 30, 900)
    bad.error = "Then marker <safe> is present: AssertionError: marker 'safe' was not recovered"
    for record in (good, bad):
        record.finished_at = record.started_at
    run = DrillRun(scenarios=[good, bad], versions={"postgresql": "15.18", "redis": "7.0.15"})
    run.finished_at = run.started_at
    return run


def test_the_page_escapes_everything_and_needs_no_network() -> None:
    html = render_html(sample_run().to_dict())
    assert "Restore &lt;latest&gt; &amp; check" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert 'id="scenarios"' in html and "OVER" in html


@needs_chromium
def test_the_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    report = sample_run().to_dict()
    write_json(report, tmp_path)
    page = tmp_path / REPORT_HTML
    page.write_text(render_html(report))

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)  # fmt: skip
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_window_size(1400, 1000)
        driver.get(page.as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "table#scenarios tbody tr")
        assert len(rows) == 2
        assert "Recover by time" in rows[1].text and "failed" in rows[1].text
        assert "FAILED" in driver.find_element(By.TAG_NAME, "h1").text
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        assert driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000
