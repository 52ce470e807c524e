"""The evidence a drill run leaves: report.json (with its JSON Schema), report.html,
SHA256SUMS and an optional HMAC signature. junit.xml and cucumber.json come from pytest and
pytest-bdd themselves."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def report_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("report.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def write_json(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REPORT_JSON
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
