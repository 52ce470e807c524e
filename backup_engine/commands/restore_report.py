"""What `pg restore` tells the operator: where recovery will stop, on which timeline and why,
whether the restored server archives, what was removed from the backup's configuration, and
the two commands to run next."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from backup_engine.commands.output import human_bytes
from backup_engine.durations import format_duration
from backup_engine.postgres.restore import RestoreResult
from backup_engine.urls import redact


@dataclass(frozen=True)
class RestoreSummary:
    lines: list[str]
    data: dict[str, Any]


def restore_summary(result: RestoreResult) -> RestoreSummary:
    plan, config = result.plan, result.config
    assert plan is not None and config is not None
    pgdata = result.pgdata
    log = pgdata.with_name(f"{pgdata.name}.recovery.log")
    verified = "NOT verified"
    if result.verified:
        verified = "verified against backup_manifest" + (
            " (checksums as written, pg_verifybackup --skip-checksums)"
            if result.summed_while_written
            else " by pg_verifybackup"
        )
    lines = []
    if result.previous_contents:
        lines.append(f"previous contents of {pgdata} moved to {result.previous_contents}")
    if len(result.chain) > 1:
        lines.append(
            f"backup {result.backup_id} is incremental: combined {' + '.join(result.chain)} "
            "with pg_combinebackup"
        )
    lines.append(
        f"restored backup {result.backup_id} into {pgdata}: {result.files} files, "
        f"{human_bytes(result.restored_bytes)}, {verified}, in {format_duration(result.seconds)}"
    )
    if result.delta is not None:
        delta = result.delta
        share = delta.written / result.restored_bytes if result.restored_bytes else 0.0
        lines.append(
            f"delta: wrote {human_bytes(delta.written)} ({share:.1%} of the backup; "
            f"{human_bytes(delta.wal_written)} of it its WAL), compared "
            f"{human_bytes(delta.compared)} in place; {delta.kept} files unchanged, "
            f"{delta.changed} written, {delta.removed} entries the backup does not hold removed"
        )
    if result.tablespaces:
        where = ", ".join(f"{name} in {path}" for name, path in result.tablespaces)
        lines.append(f"tablespaces: {where}")
    conninfo = config.written.get("primary_conninfo")
    if result.standby:
        follows = (
            f"then streams from its primary (primary_conninfo {redact(conninfo)})"
            if conninfo
            else "with no primary_conninfo: from the archive only, as segments arrive"
        )
        lines.append(
            f"standby: replays the archive along timeline {plan.timeline} ({plan.why}), "
            f"{follows}; it never promotes (pg_ctl promote makes it a primary)"
        )
    else:
        action = "" if plan.target.kind == "latest" else f", then {plan.target.action}"
        lines.append(
            f"recovery: to {plan.target.describe()} along timeline {plan.timeline} "
            f"({plan.why}){action}; it ends on a new timeline"
        )
    if result.archive_mode == "off":
        lines.append(
            "archiving: off (archive_mode = off written: the restored server never writes to "
            "the repository; restore with --archive-mode preserve to make it the new primary)"
        )
    else:
        lines.append("archiving: preserved from the backup (on the new timeline)")
    for removed in config.removed:
        lines.append(f"removed from the backup's configuration: {removed}")
    for name in config.files_removed:
        lines.append(f"removed from the backup: {name}")
    lines.append(f"start it with: pg_ctl --pgdata {pgdata} --log {log} start")
    if result.standby:
        lines.append("follow it with: SELECT pg_last_wal_replay_lsn() on it, and "
                     "pg_stat_replication on the primary")  # fmt: skip
    else:
        lines.append(
            f"follow recovery with: backup-engine pg wait-recovery --pgdata {pgdata} --log {log} "
            "--dsn 'host=... port=...'"
        )
    data = {
        "backup_id": result.backup_id,
        "chain": list(result.chain),
        "pgdata": str(pgdata),
        "files": result.files,
        "restored_bytes": result.restored_bytes,
        "stored_bytes": result.stored_bytes,
        "verified": result.verified,
        "checksums_while_written": result.summed_while_written,
        "tablespaces": {name: str(where) for name, where in result.tablespaces},
        "seconds": round(result.seconds, 3),
        "previous_contents": str(result.previous_contents) if result.previous_contents else None,
        "recovery_target": plan.target.describe(),
        "timeline": plan.timeline,
        "timeline_reason": plan.why,
        "archive_mode": result.archive_mode,
        "standby": result.standby,
        "delta": asdict(result.delta) if result.delta is not None else None,
        "settings_written": {
            k: redact(v) for k, v in config.written.items() if k != "restore_command"
        },
        "settings_removed": list(config.removed),
        "files_removed": list(config.files_removed),
    }
    return RestoreSummary(lines, data)
