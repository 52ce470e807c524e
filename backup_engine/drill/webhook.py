"""The drill summary as a Slack-compatible webhook message (`text` + `attachments`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from backup_engine.drill.evidence import DrillRun

WEBHOOK_ENV = "DRILL_WEBHOOK_URL"


def summary_message(run: DrillRun, report_dir: str) -> dict[str, Any]:
    icon = {"passed": ":white_check_mark:", "incomplete": ":warning:"}.get(run.result, ":x:")
    color = {"passed": "good", "incomplete": "warning"}.get(run.result, "danger")
    fields = []
    for scenario in run.scenarios:
        figures = "; ".join(m.describe() for m in scenario.measurements)
        value = scenario.status.upper() + (f" - {figures}" if figures else "")
        if scenario.error and scenario.status != "passed":
            value += f"\n{scenario.error}"
        fields.append({"title": f"{scenario.feature} / {scenario.scenario}", "value": value,
                       "short": False})  # fmt: skip
    return {
        "text": f"{icon} {run.verdict()} (run {run.run_id}, evidence in {report_dir})",
        "attachments": [{"color": color, "fields": fields}],
    }


def post_summary(url: str, message: dict[str, Any], *, timeout: float = 10) -> str | None:
    """POST the message; return None on success, else a one-line reason (never raises)."""
    if not url.startswith(("http://", "https://")):
        return f"webhook URL {url!r} is not http(s)"
    request = urllib.request.Request(
        url,
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if 200 <= response.status < 300:
                return None
            return f"webhook answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"webhook answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"webhook unreachable: {getattr(exc, 'reason', exc)}"
