"""report.html: one self-contained page (no network, no script) a person can read and archive."""

from __future__ import annotations

from html import escape
from typing import Any

from backup_engine.durations import format_duration

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d2430}
h1{margin:0 0 .2rem}h2{margin-top:2rem}.muted{color:#5b6576}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;color:#fff}
.passed{background:#1f883d}.failed{background:#cf222e}.skipped,.running{background:#6e7781}
.incomplete{background:#9a6700}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #d8dee4;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#eaeef2;border-radius:3px;height:.6rem;width:12rem;position:relative}
.bar span{position:absolute;left:0;top:0;bottom:0;border-radius:3px;background:#1f883d}
.bar span.over{background:#cf222e}.error{color:#cf222e;white-space:pre-wrap}
section{margin:1rem 0;break-inside:avoid}h3{margin:.8rem 0 .2rem}code{font-size:12px}
.data-synthetic{color:#9a6700}.data-existing{color:#1f883d}
"""


def _bar(measurement: dict[str, Any]) -> str:
    share = (
        measurement["seconds"] / measurement["target_seconds"]
        if measurement["target_seconds"]
        else 1
    )
    width = max(1.0, min(100.0, share * 100))
    css = "" if measurement["passed"] else ' class="over"'
    return (
        f'<div class="bar" title="{share:.2%} of target"><span{css} style="width:{width:.1f}%">'
        f"</span></div>"
    )


def _measurements(scenario: dict[str, Any]) -> str:
    parts = []
    for m in scenario["measurements"]:
        verdict = "within" if m["passed"] else "OVER"
        parts.append(
            f"<div><b>{escape(m['name'])}</b> {format_duration(m['seconds'])} "
            f'<span class="muted">{verdict} {format_duration(m["target_seconds"])}</span>'
            f"{_bar(m)}</div>"
        )
    return "".join(parts) or '<span class="muted">-</span>'


def _runbook(scenario: dict[str, Any]) -> str:
    """The restore's phases, cumulative, and the runbook's milestones they must meet."""
    phases = scenario.get("phases") or []
    if not phases:
        return ""
    rows = "".join(
        f'<tr><td>{escape(p["name"])}</td><td class="num">{format_duration(p["seconds"])}</td>'
        f'<td class="num">+{format_duration(p["cumulative_seconds"])}</td><td></td></tr>'
        for p in phases
    ) + "".join(
        f"<tr><td><b>{escape(m['milestone'])}</b></td><td></td>"
        f'<td class="num">+{format_duration(m["seconds"])}</td>'
        f"<td>{'within' if m['passed'] else 'OVER'} the runbook's "
        f"+{format_duration(m['target_seconds'])}</td></tr>"
        for m in scenario.get("runbook") or []
    )
    return (
        '<table class="runbook"><tr><th>restore phase</th><th>took</th><th>cumulative</th>'
        f"<th>runbook</th></tr>{rows}</table>"
    )


def _details(scenario: dict[str, Any]) -> str:
    checks = "".join(
        f"<tr><td>{escape(c['name'])}</td><td>{escape(c['expected'])}</td>"
        f"<td>{escape(c['actual'])}</td><td>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in scenario["checks"]
    )
    steps = "".join(
        f"<tr><td>{escape(s['keyword'])} {escape(s['text'])}</td>"
        f'<td class="num">{s["seconds"]:.2f} s</td><td>{escape(s["status"])}</td></tr>'
        for s in scenario["steps"]
    )
    backups = "".join(
        f"<li><code>{escape(b['backup_id'])}</code> "
        + " ".join(
            f"<code>{escape(k)}</code> sha256 <code>{escape(v)}</code>"
            for k, v in b["sha256"].items()
        )
        + "</li>"
        for b in scenario["backups"]
    )
    parts = [f"<section><h3>{escape(scenario['feature'])} / {escape(scenario['scenario'])}</h3>"]
    if checks:
        parts.append(
            "<table><tr><th>check</th><th>expected</th><th>actual</th><th>result</th></tr>"
            f"{checks}</table>"
        )
    if backups:
        parts.append(f"<p>Backups restored:</p><ul>{backups}</ul>")
    parts.append(_runbook(scenario))
    parts.append(f"<table><tr><th>step</th><th>time</th><th>status</th></tr>{steps}</table>")
    parts.append("</section>")
    return "".join(parts)


def _provenance(scenario: dict[str, Any]) -> str:
    """Where the data came from, on the first screen: synthetic data must never pass for a
    drill of production's backups."""
    found = scenario.get("provenance") or {}
    data = found.get("data", "none")
    label = {
        "synthetic": "SYNTHETIC: seeded by the drill",
        "existing": "existing backup",
        "attached": "server restored by someone else",
    }.get(data, "-")
    lines = [f'<b class="data-{escape(data)}">{escape(label)}</b>']
    if found.get("repository"):
        lines.append(f"<code>{escape(found['repository'])}</code>")
    if found.get("selection"):
        lines.append(f"chosen: {escape(found['selection'])}")
    for backup in found.get("backups", []):
        facts = [f"<code>{escape(backup['backup_id'])}</code>"]
        if "age_hours" in backup:
            facts.append(f"{backup['age_hours']:.1f} h old")
        if "system_identifier" in backup:
            facts.append(f"system {escape(str(backup['system_identifier']))}")
        if "stored_bytes" in backup:
            facts.append(f"{backup['stored_bytes'] / 1e6:.1f} MB")
        wal = backup.get("wal_replayed")
        if wal:
            facts.append(
                f"WAL {escape(str(wal.get('from_lsn')))} to {escape(str(wal.get('to_lsn')))}"
            )
        lines.append(", ".join(facts))
    return "<br>".join(lines)


def _controls(report: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td><b>{escape(c["id"])}</b><div class="muted">{escape(c["title"])}</div></td>'
        f'<td><span class="badge {"passed" if c["passed"] else "failed"}">'
        f"{'passed' if c['passed'] else 'FAILED'}</span></td>"
        f"<td>{'<br>'.join(escape(s) for s in c['scenarios'])}</td></tr>"
        for c in report.get("controls", [])
    )
    if not rows:
        return ""
    return (
        '<h2>Controls</h2><table id="controls"><tr><th>Control</th><th>This run</th>'
        f"<th>Scenarios supporting it</th></tr>{rows}</table>"
    )


def render_html(report: dict[str, Any]) -> str:
    status = report.get("result") or ("passed" if report["passed"] else "failed")
    summary = report["summary"]
    rows = "".join(
        f"<tr><td>{escape(s['feature'])}</td><td>{escape(s['scenario'])}</td>"
        f'<td><span class="badge {escape(s["status"])}">{escape(s["status"])}</span></td>'
        f'<td>{_measurements(s)}</td><td class="num">{format_duration(s["duration_seconds"])}</td>'
        f"<td>{len([c for c in s['checks'] if c['passed']])}/{len(s['checks'])}</td>"
        f"<td>{_provenance(s)}</td></tr>"
        for s in report["scenarios"]
    )
    failures = "".join(
        f"<li><b>{escape(s['feature'])} / {escape(s['scenario'])}</b>"
        f'<div class="error">{escape(s["error"] or "failed")}</div></li>'
        for s in report["scenarios"]
        if s["status"] != "passed"
    )
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in report["versions"].items())
    tool = report["tool"]
    sha = f" ({escape(tool['git_sha'][:12])})" if tool["git_sha"] else ""
    details = "".join(_details(s) for s in report["scenarios"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Restore drill {escape(report["started_at"])}: {status}</title>
<style>{STYLE}</style></head>
<body>
<h1>Restore drill <span class="badge {status}">{status.upper()}</span></h1>
<p class="muted">Run <code>{escape(report["run_id"])}</code> on {escape(report["host"])},
{escape(report["started_at"])} to {escape(str(report["finished_at"]))}.
{escape(tool["name"])} {escape(tool["version"])}{sha};
{versions}.</p>
<p><b>{summary["passed"]}</b> of {summary["scenarios"]} scenarios passed,
<b>{summary["failed"]}</b> failed, {summary["skipped"]} skipped.</p>
<h2>Scenarios</h2>
<table id="scenarios"><thead><tr><th>Feature</th><th>Scenario</th><th>Status</th>
<th>RTO / RPO against target</th><th>Duration</th><th>Checks</th><th>Data restored</th></tr>
</thead><tbody>{rows}</tbody></table>
{_controls(report)}
{f"<h2>Failed or skipped</h2><ul>{failures}</ul>" if failures else ""}
<h2>Evidence</h2>
<p class="muted">Every file of this directory is listed with its sha256 in SHA256SUMS, signed
(SHA256SUMS.sig, Ed25519) when the drill has a signing key; check it with only the public key:
<code>backup-engine drill verify-report DIR --public-key drill-signing.pub
--require-signature</code>.
Every check below shows what was expected and what was found.</p>
{details}
</body></html>
"""
