"""A fleet plan (TOML): which targets to drill, which recovery point of each, how many at once,
when, and where the evidence goes. Every value is checked when the plan is read, so a bad plan
is refused by `fleet check` in CI, not found at 3 a.m.

```toml
[fleet]
name = "production"
evidence = "/var/lib/restore-drill/fleet"   # each run's report, and each target's own evidence
stale_days = 7            # a target with no passing drill this long is stale
timeout = "2h"            # one target's drill; then it is stopped and fails
concurrency = 2           # drills at once on this machine (default: what cores and memory allow)
per_repository = 1        # drills reading one repository at once

[fleet.temporal]          # `fleet worker`, `fleet schedule`, `fleet run --temporal`
address = "temporal.internal:7233"
task_queue = "restore-drill-fleet"
heartbeat_timeout = "60s" # a worker silent this long is taken for dead: its drill runs again
attempts = 3              # in all, on whichever worker; a failed restore is a result, never retried

[fleet.schedule]          # used by `fleet schedule` (Temporal); `fleet check` prints the next run
cron = "0 3 * * *"
timezone = "Europe/Berlin"
start_window = "2h"       # a run that could not start in this time is skipped, not run late

[defaults]                # any target option; a target's own value wins
selection = "random"      # latest | random
within_days = 7           # 1 to 365: the window a recovery point is chosen in
rto = "4h"

[[target]]
name = "orders"                           # 1-63 letters, digits, - or _
config = "/etc/backup-engine/orders.toml" # its configuration: repository, keys, encryption
kinds = ["postgres", "redis"]             # what to drill (default: postgres)
tags = ["tier1", "eu"]
keep_in_repository = true                 # its sealed drill evidence also in drill-reports/
smoke = {postgres = "psql -Atc 'SELECT count(*) FROM orders' | grep -qv '^0$'"}  # on the copy
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backup_engine.drill.fleet.cron import Cron, parse_cron
from backup_engine.drill.selection import MAX_WINDOW_DAYS
from backup_engine.durations import parse_duration
from backup_engine.errors import ConfigError, UsageError
from backup_engine.stanzas import check_name

KINDS = ("postgres", "redis")  # the kinds with a drill of an existing repository
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
_TARGET_KEYS = {"name", "config", "kinds", "tags", "selection", "within_days", "rto", "rpo",
                "features", "drill_tags", "timeout", "keep_in_repository", "smoke",
                "smoke_timeout", "stanza"}  # fmt: skip
_DEFAULT_KEYS = _TARGET_KEYS - {"name", "config", "tags"}
_FLEET_KEYS = {"name", "evidence", "stale_days", "timeout", "concurrency", "per_repository",
               "schedule", "signing_key", "seed", "temporal"}  # fmt: skip
_TEMPORAL_KEYS = {"address", "namespace", "task_queue", "heartbeat_timeout", "attempts"}
_SCHEDULE_KEYS = {"cron", "timezone", "start_window"}


@dataclass(frozen=True)
class Schedule:
    cron: Cron
    timezone: str
    start_window_seconds: float

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class TemporalSettings:
    """Where `fleet worker`, `fleet schedule` and `fleet run --temporal` meet."""

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "restore-drill-fleet"
    heartbeat_timeout_seconds: float = 60.0  # a worker silent this long is taken for dead
    attempts: int = 3  # a drill whose worker died is run again, this many times in all


@dataclass(frozen=True)
class Target:
    name: str
    config: Path
    kinds: tuple[str, ...]
    tags: tuple[str, ...]
    selection: str  # "latest" | "random"
    within_days: int | None
    rto_seconds: float | None
    rpo_seconds: float | None
    timeout_seconds: float
    features: Path | None = None  # its own scenarios, instead of the shipped @latest_backup ones
    drill_tags: str | None = None  # a marker expression narrowing them
    keep_in_repository: bool = True  # its sealed evidence also kept in its own repository
    smoke: dict[str, str] = field(default_factory=dict)  # kind -> its check of the restored copy
    smoke_timeout_seconds: float = 120.0
    stanza: str | None = None  # the cluster of a configuration with [stanza.NAME] tables


@dataclass(frozen=True)
class Plan:
    name: str
    source: Path
    evidence: Path
    targets: tuple[Target, ...]
    stale_days: int = 7
    concurrency: int | None = None  # None: what this machine allows
    per_repository: int = 1
    schedule: Schedule | None = None
    signing_key: Path | None = None
    seed: int | None = None
    temporal: TemporalSettings = field(default_factory=TemporalSettings)

    def select(self, names: tuple[str, ...] = (), tags: tuple[str, ...] = ()) -> list[Target]:
        """The targets named (each must exist) and/or carrying one of `tags`; all if neither."""
        known = {t.name: t for t in self.targets}
        for name in names:
            if name not in known:
                raise UsageError(f"the plan has no target {name!r}",
                                 hint=f"its targets: {', '.join(known)}")  # fmt: skip
        chosen = [t for t in self.targets if (not names and not tags) or t.name in names
                  or set(t.tags) & set(tags)]  # fmt: skip
        if not chosen:
            raise UsageError(f"no target of the plan carries the tags {', '.join(tags)}")
        return chosen


def load_plan(path: Path) -> Plan:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no fleet plan at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the fleet plan {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_plan(data, path)


def parse_plan(data: dict[str, Any], path: Path) -> Plan:
    where = str(path)
    _known(data, {"fleet", "defaults", "target"}, where)
    fleet = _table(data.get("fleet", {}), "[fleet]", where)
    _known(fleet, _FLEET_KEYS, f"{where} [fleet]")
    defaults = _table(data.get("defaults", {}), "[defaults]", where)
    _known(defaults, _DEFAULT_KEYS, f"{where} [defaults]")
    base = path.absolute().parent
    raw_targets = data.get("target", [])
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError(f"{where} has no [[target]]", hint="add one [[target]] per database")
    fleet_timeout = _duration(fleet.get("timeout", "2h"), "[fleet] timeout", where)
    targets: list[Target] = []
    for number, raw in enumerate(raw_targets, 1):
        table = _table(raw, f"[[target]] number {number}", where)
        targets.append(_target({**defaults, **table}, number, base, fleet_timeout, where))
    seen: set[str] = set()
    for target in targets:
        if target.name in seen:
            raise ConfigError(f"{where}: two targets are named {target.name!r}",
                              hint="each target's name must be its own")  # fmt: skip
        seen.add(target.name)
    name = str(fleet.get("name", path.stem))
    if not _NAME.match(name):
        raise ConfigError(f"{where} [fleet] name {name!r}: 1-63 letters, digits, '-' or '_'")
    return Plan(
        name=name, source=path.absolute(),
        evidence=_path(fleet.get("evidence", "fleet-evidence"), base),
        targets=tuple(targets),
        stale_days=_int(fleet.get("stale_days", 7), "[fleet] stale_days", 1, 3650, where),
        concurrency=(_int(fleet["concurrency"], "[fleet] concurrency", 1, 64, where)
                     if "concurrency" in fleet else None),
        per_repository=_int(fleet.get("per_repository", 1), "[fleet] per_repository", 1, 64,
                            where),
        schedule=_schedule(fleet["schedule"], where) if "schedule" in fleet else None,
        signing_key=_path(fleet["signing_key"], base) if "signing_key" in fleet else None,
        seed=_int(fleet["seed"], "[fleet] seed", 0, 2**31 - 1, where) if "seed" in fleet else None,
        temporal=_temporal(fleet.get("temporal", {}), where),
    )  # fmt: skip


def _target(table: dict[str, Any], number: int, base: Path, timeout: float, where: str) -> Target:
    _known(table, _TARGET_KEYS, f"{where} [[target]] number {number}")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where} [[target]] number {number}: name {name!r} is not usable",
            hint="1 to 63 letters, digits, '-' or '_' (it names the target's evidence directory)",
        )
    here = f"{where} target {name!r}"
    if "config" not in table:
        raise ConfigError(f"{here} has no config", hint="config = the target's backup-engine.toml")
    kinds = _strings(table.get("kinds", ["postgres"]), "kinds", here)
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"{here}: kind {kind!r} has no drill of its own: {', '.join(KINDS)}")
    if not kinds:
        raise ConfigError(f"{here}: kinds is empty")
    selection = table.get("selection", "latest")
    if selection not in ("latest", "random"):
        raise ConfigError(f"{here}: selection {selection!r}: latest or random")
    within = table.get("within_days")
    return Target(
        name=name, config=_path(table["config"], base), kinds=tuple(dict.fromkeys(kinds)),
        tags=tuple(_strings(table.get("tags", []), "tags", here)), selection=selection,
        within_days=_int(within, "within_days", 1, MAX_WINDOW_DAYS, here)
        if within is not None else None,
        rto_seconds=_duration(table["rto"], "rto", here) if "rto" in table else None,
        rpo_seconds=_duration(table["rpo"], "rpo", here) if "rpo" in table else None,
        timeout_seconds=_duration(table["timeout"], "timeout", here) if "timeout" in table
        else timeout,
        features=_path(table["features"], base) if "features" in table else None,
        drill_tags=str(table["drill_tags"]) if "drill_tags" in table else None,
        keep_in_repository=_bool(table.get("keep_in_repository", True), "keep_in_repository",
                                 here),
        smoke=_smoke(table.get("smoke"), kinds, here, "features" in table),
        smoke_timeout_seconds=_duration(table.get("smoke_timeout", "2 min"), "smoke_timeout",
                                        here),
        stanza=check_name(str(table["stanza"]), here) if "stanza" in table else None,
    )  # fmt: skip


def _schedule(raw: Any, where: str) -> Schedule:
    table = _table(raw, "[fleet.schedule]", where)
    _known(table, _SCHEDULE_KEYS, f"{where} [fleet.schedule]")
    if "cron" not in table:
        raise ConfigError(f"{where} [fleet.schedule] has no cron", hint='cron = "0 3 * * *"')
    zone = str(table.get("timezone", "UTC"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where} [fleet.schedule] timezone {zone!r} is not a time zone",
            hint='an IANA name such as "Europe/Berlin" or "UTC"',
        ) from None
    window = _duration(table.get("start_window", "1h"), "start_window", where)
    return Schedule(parse_cron(str(table["cron"])), zone, window)


def _temporal(raw: Any, where: str) -> TemporalSettings:
    table = _table(raw, "[fleet.temporal]", where)
    _known(table, _TEMPORAL_KEYS, f"{where} [fleet.temporal]")
    default = TemporalSettings()
    heartbeat = table.get("heartbeat_timeout")
    return TemporalSettings(
        address=str(table.get("address", default.address)),
        namespace=str(table.get("namespace", default.namespace)),
        task_queue=str(table.get("task_queue", default.task_queue)),
        heartbeat_timeout_seconds=_duration(heartbeat, "heartbeat_timeout", where)
        if heartbeat is not None else default.heartbeat_timeout_seconds,
        attempts=_int(table.get("attempts", default.attempts), "[fleet.temporal] attempts", 1, 10,
                      where),
    )  # fmt: skip


def _known(table: dict[str, Any], keys: set[str], where: str) -> None:
    for key in table:
        if key not in keys:
            raise ConfigError(f"unknown option {key!r} in {where}",
                              hint=f"known: {', '.join(sorted(keys))}")  # fmt: skip


def _table(value: Any, what: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} in {where} must be a table")
    return value


def _int(value: Any, what: str, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: {what} = {value!r}: a whole number from {low} to {high}")
    return value


def _smoke(value: Any, kinds: list[str], where: str, own_features: bool) -> dict[str, str]:
    """`smoke = "cmd"` for every kind of the target, or `smoke = {postgres = "...", ...}`."""
    if value is None:
        return {}
    commands = value if isinstance(value, dict) else dict.fromkeys(kinds, value)
    for kind, command in commands.items():
        if kind not in kinds:
            raise ConfigError(f"{where}: smoke for {kind!r}, which the target does not drill")
        if not isinstance(command, str) or not command.strip() or "\n" in command or (
                "\r" in command):  # fmt: skip
            raise ConfigError(f"{where}: smoke must be one command line")
    if own_features:
        raise ConfigError(f"{where}: smoke and features do not go together",
                          hint="put the smoke test step in the target's own scenarios")  # fmt: skip
    return {kind: command.strip() for kind, command in commands.items()}


def _bool(value: Any, what: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {what} = {value!r}: true or false")
    return value


def _duration(value: Any, what: str, where: str) -> float:
    try:
        seconds = parse_duration(str(value))
    except UsageError as exc:
        raise ConfigError(f"{where}: {what}: {exc.message}") from None
    if seconds <= 0:
        raise ConfigError(f"{where}: {what} must be longer than 0")
    return seconds


def _strings(value: Any, what: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {what} must be a list of words")
    return list(value)


def _path(value: Any, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path
