"""One target's drill of one kind, run as its own `backup-engine drill` process: its own
scratch area (TMPDIR), its own servers and ports, its own sealed evidence directory, stopped at
its timeout and cleaned up whatever happens. Its verdict is read back from the evidence it
sealed, never from its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backup_engine.drill.fleet.plan import Target
from backup_engine.drill.fleet.scratch import (
    die_with_parent,
    make_scratch,
    reap_abandoned,
    remove_scratch,
)
from backup_engine.drill.report import REPORT_JSON
from backup_engine.jsonsafe import loads

STOP_GRACE_S = 30.0  # after SIGTERM, before SIGKILL: the drill stops its servers itself
PASSED, FAILED = "passed", "failed"


@dataclass(frozen=True)
class Job:
    """One drill to run: a target and one of its kinds, with the recovery point selection."""

    target: Target
    kind: str
    seed: int | None  # for selection "random": recorded in the report

    @property
    def key(self) -> str:
        return f"{self.target.name}/{self.kind}"

    def selection(self) -> str:
        window = f" within {self.target.within_days} days" if self.target.within_days else ""
        seed = f" (seed {self.seed})" if self.target.selection == "random" else ""
        return f"{self.target.selection}{window}{seed}"


@dataclass
class Verdict:
    target: str
    kind: str
    status: str  # passed | failed
    reason: str | None  # the failing check or why the drill could not run
    started_at: str
    seconds: float
    selection: str
    recovery_point: dict[str, Any] | None = None  # backup id, stop time, age
    rto_seconds: float | None = None
    rto_target_seconds: float | None = None
    rpo_seconds: float | None = None  # the recovery point's age when drilled
    rpo_target_seconds: float | None = None
    evidence: str | None = None  # the target's sealed drill directory, relative to the run
    exit_code: int | None = None
    attempts: int = 1
    worker: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed_to_run(job: Job, reason: str) -> Verdict:
    return Verdict(job.target.name, job.kind, FAILED, reason, datetime.now(UTC).isoformat(), 0.0,
                   job.selection())  # fmt: skip


def drill_command(job: Job, report_dir: Path, signing_key: Path | None) -> list[str]:
    target = job.target
    tags = f"latest_backup and {job.kind}"
    if target.features is not None:  # its own scenarios: its own marker expression, if any
        tags = target.drill_tags or job.kind
    elif target.drill_tags:
        tags = f"({tags}) and ({target.drill_tags})"
    command = [sys.executable, "-m", "backup_engine", "drill", "--config", str(target.config),
               "--tags", tags, "--report-dir", str(report_dir),
               "--pick", target.selection]  # fmt: skip
    if target.within_days:
        command += ["--within-days", str(target.within_days)]
    if target.selection == "random" and job.seed is not None:
        command += ["--seed", str(job.seed)]
    if target.features is not None:
        command += ["--features", str(target.features)]
    elif job.kind in target.smoke:
        command += ["--features", str(with_smoke(job, report_dir.parent / f"{job.kind}.features"))]
    if signing_key is not None:
        command += ["--signing-key", str(signing_key)]
    if target.keep_in_repository:
        command += ["--keep-in-repository"]
    return command


def drill_environment(target: Target, scratch: Path) -> dict[str, str]:
    """This process's environment, less what would make the drill read another repository than
    its target's (BACKUP_ENGINE_REPOSITORY on a fleet host would be every target's): the
    target's configuration alone decides, with its stanza."""
    kept = ("BACKUP_ENGINE_LOG_FORMAT",)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BACKUP_ENGINE_") or name in kept}  # fmt: skip
    env.pop("DRILL_BACKUP_SELECTION", None)
    env["TMPDIR"] = str(scratch)
    if target.stanza is not None:
        env["BACKUP_ENGINE_STANZA"] = target.stanza
    return env


SHIPPED = {"postgres": "latest_backup.feature", "redis": "latest_redis_backup.feature"}


def with_smoke(job: Job, directory: Path) -> Path:
    """The shipped scenario of the job's kind with the target's smoke command as its last step
    (written beside its evidence: what ran is kept)."""
    from backup_engine.drill.session import default_features_dir
    from backup_engine.durations import format_duration

    directory.mkdir(parents=True, exist_ok=True)
    text = (default_features_dir() / SHIPPED[job.kind]).read_text().rstrip("\n")
    within = format_duration(job.target.smoke_timeout_seconds)
    text += (f'\n    And the smoke test "{job.target.smoke[job.kind]}" passes against the restored '
             f"copy within {within}\n")  # fmt: skip
    (directory / SHIPPED[job.kind]).write_text(text)
    return directory


def run_job(
    job: Job,
    run_dir: Path,
    signing_key: Path | None = None,
    *,
    attempt: int = 1,
    tick: Callable[[], None] = lambda: None,
) -> Verdict:
    """Run one job's drill to its end or its timeout; the evidence goes to
    `run_dir/targets/<target>/<kind>/` (an earlier attempt's, if any, kept beside it as
    `<kind>.attempt-N`). `tick` is called every few seconds while the drill runs (a Temporal
    heartbeat); whatever it raises stops the drill."""
    relative = Path("targets") / job.target.name / job.kind
    report_dir = run_dir / relative
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    log = report_dir.parent / f"{job.kind}.log"
    if attempt > 1:
        _keep_earlier(report_dir, log, attempt - 1)
    started, began = datetime.now(UTC), time.monotonic()
    reap_abandoned()
    scratch = make_scratch()
    env = drill_environment(job.target, scratch)
    code: int | None = None
    timed_out = False
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                drill_command(job, report_dir, signing_key), stdout=out, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, cwd=scratch, preexec_fn=die_with_parent,
            )  # fmt: skip
            try:
                code, timed_out = _wait(process, job.target.timeout_seconds, tick)
            except BaseException:
                _stop(process)  # cancelled: the drill and its servers go now
                raise
    finally:
        remove_scratch(scratch)
    verdict = Verdict(
        job.target.name, job.kind, FAILED, None, started.isoformat(),
        round(time.monotonic() - began, 3), job.selection(), exit_code=code, attempts=attempt,
        rto_target_seconds=job.target.rto_seconds, rpo_target_seconds=job.target.rpo_seconds,
    )  # fmt: skip
    if timed_out:
        verdict.reason = f"stopped after its timeout of {job.target.timeout_seconds:.0f} s"
        return verdict
    return read_verdict(verdict, report_dir, relative, log, job)


TICK_S = 1.0


def _wait(
    process: subprocess.Popen[bytes], timeout: float, tick: Callable[[], None]
) -> tuple[int | None, bool]:
    """(exit code, whether it was stopped at its timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return _stop(process), True
        try:
            return process.wait(timeout=min(TICK_S, left)), False
        except subprocess.TimeoutExpired:
            tick()


def _keep_earlier(report_dir: Path, log: Path, attempt: int) -> None:
    """An interrupted attempt's evidence stays, renamed: the retry writes into a fresh one."""
    for path in (report_dir, log):
        if path.exists():
            path.rename(path.with_name(f"{path.name}.attempt-{attempt}"))


def read_verdict(
    verdict: Verdict, report_dir: Path, relative: Path, log: Path, job: Job
) -> Verdict:
    """The verdict from the drill's sealed report.json; without one, the drill could not run and
    the last line it printed is the reason."""
    report_file = report_dir / REPORT_JSON
    if not report_file.is_file():
        verdict.reason = _last_line(log) or f"the drill exited {verdict.exit_code} with no evidence"
        return verdict
    report = loads(report_file.read_bytes(), where=str(report_file))
    verdict.evidence = relative.as_posix()
    scenarios = report.get("scenarios", [])
    if not scenarios:
        verdict.reason = "no scenario ran for this kind"
        return verdict
    failing = next((s for s in scenarios if s.get("status") != PASSED), None)
    if failing is None and report.get("passed") is True:
        verdict.status = PASSED
    else:
        verdict.reason = _reason(failing) if failing else "the drill did not pass"
    _measures(verdict, scenarios, job)
    return verdict


def _reason(scenario: dict[str, Any]) -> str:
    if scenario.get("status") == "skipped":
        return f"skipped: {scenario.get('error') or 'no reason given'}"
    for check in scenario.get("checks", []):
        if not check.get("passed"):
            return (f"{check['name']}: expected {check['expected']}, found {check['actual']}"
                    f" ({scenario.get('scenario')})")  # fmt: skip
    error = (scenario.get("error") or "failed").strip().splitlines()
    return f"{scenario.get('scenario')}: {error[-1] if error else 'failed'}"[:500]


def _measures(verdict: Verdict, scenarios: list[dict[str, Any]], job: Job) -> None:
    for scenario in scenarios:
        for measure in scenario.get("measurements", []):
            if measure.get("name") == "RTO":
                verdict.rto_seconds = float(measure["seconds"])
        backups = scenario.get("provenance", {}).get("backups", [])
        if backups:
            point = backups[0]
            verdict.recovery_point = {k: point[k] for k in ("backup_id", "stop_time", "age_hours")
                                      if k in point}  # fmt: skip
            if "age_hours" in point:
                verdict.rpo_seconds = float(point["age_hours"]) * 3600
        selection = scenario.get("provenance", {}).get("selection")
        if selection:
            verdict.extra["selection_recorded"] = selection
    if verdict.status == PASSED:
        _against_targets(verdict)


def _against_targets(verdict: Verdict) -> None:
    """The plan's own RTO and RPO for this target: a drill that restored but too slowly, or
    from a recovery point older than the plan allows, fails here."""
    rto, rto_target = verdict.rto_seconds, verdict.rto_target_seconds
    if rto_target and rto is not None and rto > rto_target:
        verdict.status = FAILED
        verdict.reason = f"RTO {rto:.1f} s, above the plan's {rto_target:.0f} s"
    rpo, rpo_target = verdict.rpo_seconds, verdict.rpo_target_seconds
    if rpo_target and rpo is not None and rpo > rpo_target:
        verdict.status = FAILED
        verdict.reason = (f"recovery point {rpo / 3600:.1f} h old, above the plan's RPO of "
                          f"{rpo_target / 3600:.1f} h")  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM to the drill's process group, SIGKILL after the grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            return process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return process.poll()


def _last_line(log: Path) -> str | None:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1].strip()[:500] if lines else None


def as_json(verdicts: list[Verdict]) -> str:
    return json.dumps([v.to_dict() for v in verdicts], indent=2)
