"""Which audit controls a drill's scenarios support, by feature tag.

Auditors ask "which control does this prove, and when did it last pass?". Each scenario supports
the controls mapped to any of its tags; a run's report lists, per control, the scenarios that
support it and whether all of them passed; `drill history` shows when each control last passed
and the hash of that run's evidence. The shipped mapping can be replaced, tag by tag, with a
TOML file (`drill --controls FILE`):

    [controls]                       # id = "what it asks"   (added to or replacing the defaults)
    "ACME-BCP-7" = "Quarterly restore test of customer data"
    [tags]                           # tag = [control ids]   (replaces the default for that tag)
    postgres = ["ISO/IEC 27001:2022 A.8.13", "ACME-BCP-7"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backup_engine.errors import ConfigError

ISO = "ISO/IEC 27001:2022 A.8.13"
SOC2 = "SOC 2 A1.3"
CP4 = "NIST SP 800-53 CP-4"
CP9 = "NIST SP 800-53 CP-9(1)"
HIPAA = "HIPAA 164.308(a)(7)(ii)(D)"

CONTROLS: dict[str, str] = {
    ISO: "Information backup: backup copies are kept and tested as the backup policy says",
    SOC2: "Recovery plan procedures supporting system recovery are tested",
    CP4: "Contingency plan testing",
    CP9: "System backup: testing for reliability and integrity",
    HIPAA: "Testing and revision procedures for contingency plans",
}
_RESTORE = [ISO, SOC2, CP4, CP9, HIPAA]
TAG_CONTROLS: dict[str, list[str]] = {
    "full_restore": _RESTORE,
    "pitr": _RESTORE,
    "table_restore": _RESTORE,
    "timelines": _RESTORE,
    "latest_backup": _RESTORE,
    "restored_server": _RESTORE,
    "redis": _RESTORE,
    "media": _RESTORE,
    "rpo": [SOC2, CP4],
    "retention": [ISO],
    "faults": [ISO, CP9],
    "hostile": [ISO, CP9],
    "secure_store": [ISO, CP9],
}


@dataclass(frozen=True)
class ControlMap:
    titles: Mapping[str, str]
    by_tag: Mapping[str, list[str]]

    def for_tags(self, tags: Iterable[str]) -> list[str]:
        found: list[str] = []
        for tag in tags:
            for control in self.by_tag.get(tag, []):
                if control not in found:
                    found.append(control)
        return found

    def summarize(self, scenarios: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Per control: the scenarios supporting it in this run, and whether all passed."""
        rows: dict[str, list[Mapping[str, Any]]] = {}
        for scenario in scenarios:
            for control in self.for_tags(scenario["tags"]):
                rows.setdefault(control, []).append(scenario)
        return [
            {
                "id": control,
                "title": self.titles.get(control, ""),
                "scenarios": [f"{s['feature']} / {s['scenario']}" for s in supporting],
                "passed": all(s["status"] == "passed" for s in supporting),
            }
            for control, supporting in sorted(rows.items())
        ]


def load_controls(path: Path | None) -> ControlMap:
    if path is None:
        return ControlMap(CONTROLS, TAG_CONTROLS)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the controls file {path}: {exc}") from None
    titles, tags = data.get("controls", {}), data.get("tags", {})
    if not isinstance(titles, dict) or not all(isinstance(v, str) for v in titles.values()):
        raise ConfigError(f"[controls] in {path} maps control ids to descriptions (strings)")
    if not isinstance(tags, dict) or not all(
        isinstance(v, list) and all(isinstance(c, str) for c in v) for v in tags.values()
    ):
        raise ConfigError(f"[tags] in {path} maps tags to lists of control ids")
    return ControlMap({**CONTROLS, **titles}, {**TAG_CONTROLS, **tags})
