"""`backup-engine runbook`: the team's recovery runbook, written from the configuration and
timed by the latest drill. The commands are the exact ones for this repository; each step
carries the duration the newest drill report measured for it, and the plan's RTO/RPO table
carries the latest measured values. The report is read as data (report.json); nothing here
runs a drill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from backup_engine import __version__
from backup_engine.config import Settings
from backup_engine.durations import format_duration
from backup_engine.errors import CorruptObject, UsageError
from backup_engine.jsonsafe import loads_object
from backup_engine.urls import redact

PLAN_TARGETS = {"RTO": 4 * 3600.0, "RPO": 15 * 60.0}  # the plan's database row


@dataclass
class Section:
    title: str
    text: str = ""
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # step, command, last drill
    headers: tuple[str, str, str] = ("step", "command", "last drill")


def newest_report(where: Path) -> Path | None:
    """`where` itself (a report.json or a report directory), or the newest report under it."""
    if where.is_file():
        return where
    if (where / "report.json").is_file():
        return where / "report.json"
    found = sorted(where.glob("*/report.json")) if where.is_dir() else []
    return found[-1] if found else None


def _load(report: Path | None) -> dict[str, Any] | None:
    if report is None:
        return None
    try:
        return loads_object(report.read_bytes(), where=str(report))
    except OSError as exc:
        raise UsageError(f"cannot read the drill report {report}: {exc.strerror}") from None
    except CorruptObject as exc:
        raise UsageError(f"cannot read the drill report: {exc.message}") from None


def _phases(report: dict[str, Any] | None) -> dict[str, float]:
    """Each restore phase's longest duration among the report's scenarios."""
    longest: dict[str, float] = {}
    for scenario in (report or {}).get("scenarios", []):
        for phase in scenario.get("phases", []):
            name, seconds = str(phase.get("name")), float(phase.get("seconds", 0))
            longest[name] = max(seconds, longest.get(name, 0.0))
    return longest


def _verifying(report: dict[str, Any] | None) -> float | None:
    """The longest time a drill spent checking the data after its restore."""
    spans = []
    for scenario in (report or {}).get("scenarios", []):
        milestones = {m.get("milestone"): m.get("seconds", 0) for m in scenario.get("runbook", [])}
        restored = milestones.get("backup restored, server recovered")
        verified = milestones.get("data verified")
        if restored is not None and verified is not None:
            spans.append(float(verified) - float(restored))
    return max(spans) if spans else None


def _measured(report: dict[str, Any] | None, name: str) -> tuple[float, str] | None:
    worst: tuple[float, str] | None = None
    for scenario in (report or {}).get("scenarios", []):
        for m in scenario.get("measurements", []):
            if m.get("name") == name and (worst is None or m["seconds"] > worst[0]):
                worst = (float(m["seconds"]), str(scenario.get("scenario")))
    return worst


def build(settings: Settings, report: dict[str, Any] | None, pgdata: str) -> list[Section]:
    repo = redact(settings.repository.url or "(no repository configured)")
    phases = _phases(report)
    checking = _verifying(report)

    def took(*names: str) -> str:
        known = [phases[n] for n in names if n in phases]
        return format_duration(sum(known)) if known else "not drilled yet"

    tool = "backup-engine" + (f" --config {settings.source}" if settings.source else "")
    sections = [
        Section(
            "Complete database loss",
            "The plan's timeline: recovery begins at +5 min, the backup is restored by +30 min, "
            "the data verified by +45 min, service restored by +60 min.",
            [
                ("1. Find the backup", f"{tool} pg list && {tool} pg show latest",
                 took("find the backup and plan the recovery")),
                ("2. Restore it (PostgreSQL stopped, directory empty)",
                 f"{tool} pg restore latest --pgdata {pgdata}",
                 took("download, check and extract", "verify the files (pg_verifybackup)",
                      "write the recovery settings")),
                ("3. Start PostgreSQL; it replays the archived WAL and promotes",
                 "systemctl start postgresql", took("start the server and replay WAL")),
                ("4. Verify the data", f"{tool} pg verify latest --hashes-only; then the "
                 "application's own checks (row counts, latest orders)",
                 format_duration(checking) if checking is not None else "not drilled yet"),
            ],
        ),
        Section(
            "Point-in-time recovery (a bad migration, a mass delete)",
            "Recover to just before the damage, on a new timeline; the old one stays readable.",
            [
                ("1. See the recoverable window", f"{tool} pg list", ""),
                ("2. Restore to the moment", f'{tool} pg restore auto --pgdata {pgdata} '
                 '--target-time "2026-11-25 14:29:00"', took("download, check and extract")),
            ],
        ),
        Section(
            "One table",
            "Bring one table back beside the damaged one, without touching the rest.",
            [("1. Restore the table", f'{tool} pg restore-table --table public.orders --into '
              f'"$DSN" --target-time "2026-11-25 14:29:00"', "")],
        ),
    ]  # fmt: skip
    if settings.redis.url:
        sections.append(Section("Redis", "", [
            ("1. Restore the latest snapshot", f"{tool} redis restore latest --into "
             f"{redact(settings.redis.url)}", "")]))  # fmt: skip
    for path in settings.media.paths:
        sections.append(Section(f"Media files ({path})", "", [
            ("1. Restore into a new directory", f"{tool} media restore latest --to "
             f"{path}.restored", ""),
            ("2. Or one folder", f"{tool} media restore latest --to /tmp/folder --include "
             "users/0042", "")]))  # fmt: skip
    objectives = Section("Recovery objectives", f"Repository: {repo}.",
                         headers=("objective", "plan target", "last measured"))  # fmt: skip
    for name, target in PLAN_TARGETS.items():
        measured = _measured(report, name)
        shown = f"{format_duration(measured[0])} ({measured[1]})" if measured else "not drilled yet"
        objectives.rows.append((name, format_duration(target), shown))
    sections.append(objectives)
    return sections


def render(sections: list[Section], fmt: str, report: Path | None) -> str:
    made = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by backup-engine {__version__}"
    source = f"timed by the drill report {report}" if report else "no drill report found yet"
    if fmt == "md":
        lines = ["# Recovery runbook", "", f"Written {made}, {source}.", ""]
        for section in sections:
            lines += [f"## {section.title}", ""] + ([section.text, ""] if section.text else [])
            lines += [f"| {' | '.join(section.headers)} |", "|---|---|---|"]
            lines += [f"| {a} | `{b}` | {c} |" if section.headers[1] == "command"
                      else f"| {a} | {b} | {c} |" for a, b, c in section.rows]  # fmt: skip
            lines.append("")
        return "\n".join(lines)
    body = [f"<h1>Recovery runbook</h1><p>Written {escape(made)}, {escape(source)}.</p>"]
    for section in sections:
        body.append(f"<h2>{escape(section.title)}</h2><p>{escape(section.text)}</p><table>")
        body.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in section.headers) + "</tr>")
        for a, b, c in section.rows:
            middle = f"<code>{escape(b)}</code>" if section.headers[1] == "command" else escape(b)
            body.append(f"<tr><td>{escape(a)}</td><td>{middle}</td><td>{escape(c)}</td></tr>")
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:60em}td,th{border:1px solid #ccc;padding:4px}"
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Recovery runbook</title>'
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")  # fmt: skip


def write_runbook(settings: Settings, report_path: Path | None, fmt: str, pgdata: str) -> str:
    return render(build(settings, _load(report_path), pgdata), fmt, report_path)
