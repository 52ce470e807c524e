"""Fleet plans: read and refused as a plan file, then run through the local pool on real
PostgreSQL and Redis servers: several targets at once, one backup corrupted, one repository
gone, and the report (signed, with metrics and the stale targets) says exactly that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.drill.fleet.cron import parse_cron
from backup_engine.drill.fleet.plan import parse_plan
from backup_engine.errors import ConfigError
from tests.fleet_repositories import made_repositories

BASE = {"config": "x.toml"}


def _plan(*targets: dict[str, object], **fleet: object) -> dict[str, object]:
    return {"fleet": fleet, "target": list(targets)}


@pytest.mark.parametrize(
    ("plan", "refusal"),
    [
        (_plan(), "has no \\[\\[target\\]\\]"),
        (_plan({"name": "a", **BASE}, {"name": "a", **BASE}), "two targets are named 'a'"),
        (_plan({"name": "../etc", **BASE}), "is not usable"),
        (_plan({"name": "", **BASE}), "is not usable"),
        (_plan({"name": "a"}), "has no config"),
        (_plan({"name": "a", "within_days": 0, **BASE}), "within_days = 0: a whole number from 1"),
        (_plan({"name": "a", "within_days": 10000, **BASE}), "from 1 to 365"),
        (_plan({"name": "a", "within_days": True, **BASE}), "within_days = True"),
        (_plan({"name": "a", "selection": "oldest", **BASE}), "latest or random"),
        (_plan({"name": "a", "kinds": ["media"], **BASE}), "kind 'media' has no drill"),
        (_plan({"name": "a", "kinds": [], **BASE}), "kinds is empty"),
        (_plan({"name": "a", "rto": "soon", **BASE}), "rto: cannot read the duration"),
        (_plan({"name": "a", "keep_in_repository": "yes", **BASE}), "true or false"),
        (_plan({"name": "a", "smoke": "a\nb", **BASE}), "one command line"),
        (_plan({"name": "a", "smoke": {"redis": "x"}, **BASE}), "does not drill"),
        (_plan({"name": "a", "smoke": "x", "features": "f", **BASE}), "do not go together"),
        (_plan({"name": "a", "colour": "red", **BASE}), "unknown option 'colour'"),
        (_plan({"name": "a", **BASE}, schedule={"cron": "0 3 * *"}), "has 4 fields"),
        (_plan({"name": "a", **BASE}, schedule={"cron": "61 3 * * *"}), "outside 0-59"),
        (
            _plan({"name": "a", **BASE}, schedule={"cron": "0 3 * * *", "timezone": "Mars/Base"}),
            "not a time zone",
        ),
        (_plan({"name": "a", **BASE}, concurrency=0), "concurrency = 0"),
        (_plan({"name": "a", **BASE}, per_repository=-1), "per_repository = -1"),
    ],
)
def test_a_bad_plan_is_refused_naming_what_is_wrong(plan: dict[str, object], refusal: str) -> None:
    with pytest.raises(ConfigError, match=refusal):
        parse_plan(plan, Path("/plans/fleet.toml"))


def test_a_plan_reads_defaults_under_each_target_and_selects_by_name_and_tag() -> None:
    plan = parse_plan({
        "fleet": {"name": "prod", "seed": 7, "schedule": {"cron": "30 2 * * sun",
                                                          "timezone": "Europe/Berlin"}},
        "defaults": {"selection": "random", "within_days": 7, "rto": "1h"},
        "target": [{"name": "orders", "config": "orders.toml", "tags": ["tier1"],
                    "kinds": ["postgres", "redis"]},
                   {"name": "cache", "config": "/etc/cache.toml", "selection": "latest",
                    "kinds": ["redis"]}],
    }, Path("/plans/fleet.toml"))  # fmt: skip
    orders, cache = plan.targets
    assert orders.config == Path("/plans/orders.toml") and cache.config == Path("/etc/cache.toml")
    assert (orders.selection, orders.within_days, orders.rto_seconds) == ("random", 7, 3600)
    assert cache.selection == "latest" and cache.within_days == 7
    assert [t.name for t in plan.select(tags=("tier1",))] == ["orders"]
    assert plan.schedule is not None
    sunday = plan.schedule.cron.next_after(datetime(2026, 12, 6, 17, 0, tzinfo=UTC),
                                           ZoneInfo("Europe/Berlin"))  # fmt: skip
    assert sunday is not None and sunday.isoformat() == "2026-12-13T02:30:00+01:00"
    from backup_engine.errors import UsageError

    with pytest.raises(UsageError, match="no target 'billing'"):
        plan.select(names=("billing",))


def test_random_choices_are_made_again_from_the_run_seed() -> None:
    from backup_engine.drill.fleet.pool import plan_jobs

    targets: list[dict[str, object]] = [
        {"name": f"t{n}", "kinds": ["postgres", "redis"], **BASE} for n in range(4)
    ]
    plan = parse_plan(_plan(*targets), Path("/p/fleet.toml"))
    first = [(j.key, j.seed) for j in plan_jobs(list(plan.targets), 42)]
    assert first == [(j.key, j.seed) for j in plan_jobs(list(plan.targets), 42)]
    assert first != [(j.key, j.seed) for j in plan_jobs(list(plan.targets), 43)]
    assert len({seed for _, seed in first}) == 8  # each drill its own draw


def test_cron_days_follow_crontab() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
    weekdays = parse_cron("*/15 * * * 1-5").next_after(start, berlin)
    assert weekdays is not None and weekdays.isoformat() == "2026-12-07T00:00:00+01:00"
    leap = parse_cron("0 0 29 feb *").next_after(start, berlin)
    assert leap is not None and leap.year == 2028
    assert parse_cron("0 3 30 2 *").next_after(start, berlin) is None
    either = parse_cron("0 12 1 * mon")  # both days restricted: either one is enough
    assert either.matches(datetime(2026, 12, 7, 12, 0)) and either.matches(datetime(2027, 1, 1, 12))


# ---- the local pool on real servers ----------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_repositories() -> Iterator[Path]:
    with made_repositories() as root:
        yield root


PLAN = """
[fleet]
name = "nightly"
evidence = "{evidence}"
concurrency = 2
seed = 42

[defaults]
rto = "30 min"

[[target]]
name = "orders"
config = "orders.toml"
kinds = ["postgres", "redis"]
tags = ["tier1"]

[target.smoke]
postgres = "psql -Atc 'SELECT count(*) FROM users' | grep -qx 60"
redis = "redis-cli -u $REDIS_URL dbsize | grep -qvx 0"

[[target]]
name = "billing"
config = "billing.toml"

[[target]]
name = "cache"
config = "cache.toml"
kinds = ["redis"]
selection = "random"
within_days = 7

[[target]]
name = "gone"
config = "gone.toml"
kinds = ["redis"]

[[target]]
name = "audit"
config = "sessions.toml"
kinds = ["redis"]
smoke = "echo the audit keys are missing; exit 3"

[[target]]
name = "hasty"
config = "sessions.toml"
kinds = ["redis"]
timeout = "1s"
"""


def _fleet(*args: str) -> subprocess.CompletedProcess[str]:
    # a repository in the fleet's own environment must not become every target's
    decoy = {"BACKUP_ENGINE_REPOSITORY": "file:///nonexistent", "BACKUP_ENGINE_STANZA": "x"}
    return subprocess.run([sys.executable, "-m", "backup_engine", "fleet", *args],
                          capture_output=True, text=True, check=False, timeout=900,
                          env={**os.environ, "NO_COLOR": "1", **decoy})  # fmt: skip


@pytest.mark.postgres
def test_the_local_pool_drills_every_target_and_the_report_says_what_came_of_it(
    fleet_repositories: Path, tmp_path: Path
) -> None:
    plans = tmp_path / "plans"
    plans.mkdir()
    for name in ("orders", "billing", "cache", "sessions"):
        (plans / f"{name}.toml").write_text(
            f'[repository]\nurl = "file://{fleet_repositories / name}"\n'
        )
    (plans / "gone.toml").write_text(f'[repository]\nurl = "file://{tmp_path / "nowhere"}"\n')
    plan = plans / "fleet.toml"
    plan.write_text(PLAN.format(evidence=tmp_path / "evidence"))

    checked = _fleet("check", str(plan), "--json")
    assert checked.returncode == 1, checked.stderr  # the target "gone" has no repository
    rows = {(r["target"], r["kind"]): r for r in json.loads(checked.stdout)["rows"]}
    assert "one of 1 backups of the last 7 days" in rows[("cache", "redis")]["would_drill"]
    assert "problem" in rows[("gone", "redis")] and "problem" not in rows[("orders", "postgres")]

    done = _fleet("run", str(plan), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    results = {(r["target"], r["kind"]): r for r in report["results"]}
    assert sorted(results) == [
        ("audit", "redis"), ("billing", "postgres"), ("cache", "redis"), ("gone", "redis"),
        ("hasty", "redis"), ("orders", "postgres"), ("orders", "redis"),
    ]  # fmt: skip
    for passing in (("orders", "postgres"), ("orders", "redis"), ("cache", "redis")):
        result = results[passing]
        assert result["status"] == "passed", result
        assert result["recovery_point"]["backup_id"] and result["rto_seconds"] > 0
        assert result["last_passed_at"] == result["started_at"] and not result["stale"]
    assert results[("billing", "postgres")]["status"] == "failed"
    assert "base.tar.zst" in results[("billing", "postgres")]["reason"]
    assert results[("gone", "redis")]["status"] == "failed"
    assert results[("gone", "redis")]["stale"] and results[("billing", "postgres")]["stale"]
    assert report["seed"] == 42 and "seed" in results[("cache", "redis")]["selection"]
    assert "smoke test" in results[("audit", "redis")]["reason"]  # the target's own check
    assert results[("hasty", "redis")]["reason"] == "stopped after its timeout of 1 s"
    assert report["summary"] == {"targets": 6, "drills": 7, "passed": 3, "failed": 4, "stale": 4}
    smoked = tmp_path / "evidence" / "latest" / "targets" / "orders" / "postgres" / "report.json"
    checks = json.loads(smoked.read_text())["scenarios"][0]["checks"]
    assert any("smoke" in c["name"] and c["passed"] for c in checks), checks
    run = Path(tmp_path / "evidence" / "latest").resolve()
    from backup_engine.drill.report.sums import verify_report

    for sealed in ("orders/postgres", "orders/redis", "cache/redis"):
        verify_report(run / "targets" / sealed)  # each target's drill evidence, sealed
    sums = (run / "SHA256SUMS").read_text()
    assert "fleet.json" in sums and "targets/orders/postgres/report.json" in sums
    metrics = (run / "fleet.prom").read_text()
    assert (
        'restore_drill_fleet_passed{kind="postgres",plan="nightly",target="billing"} 0.0' in metrics
    )
    assert 'restore_drill_fleet_stale{kind="redis",plan="nightly",target="orders"} 0.0' in metrics
    assert "orders" in (run / "fleet.html").read_text()
    verified = _fleet("verify", str(run))
    assert verified.returncode == 0 and "6 drill directories" in verified.stdout, verified
    (run / "targets" / "cache" / "redis" / "report.json").write_text("{}")  # tampered with
    tampered = _fleet("verify", str(run))
    assert tampered.returncode == 4 and "report.json does not match" in tampered.stderr
    kept = list((fleet_repositories / "orders" / "drill-reports").rglob("report.json"))
    assert len(kept) == 2  # each target's sealed evidence, in its own repository too

    again = _fleet("run", str(plan), "--target", "billing", "--json")  # still failing: history
    second = json.loads(again.stdout)
    assert second["results"][0]["last_passed_at"] is None and second["stale"]
    unknown = _fleet("run", str(plan), "--target", "payroll")
    assert unknown.returncode == 2 and "no target 'payroll'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12)
    | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)  # fmt: skip
_KEYS = st.sampled_from(["name", "config", "kinds", "tags", "selection", "within_days", "rto",
                         "rpo", "timeout", "features", "drill_tags",
                         "keep_in_repository"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    fleet=st.dictionaries(st.sampled_from(["name", "evidence", "stale_days", "timeout",
                                           "concurrency", "per_repository", "seed", "schedule",
                                           "temporal", "signing_key"]), _VALUES, max_size=4),
    targets=st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), max_size=3),
)  # fmt: skip
def test_any_plan_is_read_or_refused_in_one_line(
    fleet: dict[str, object], targets: list[dict[str, object]]
) -> None:
    """Whatever a plan file holds, reading it gives a plan or a ConfigError, never a crash."""
    try:
        parse_plan({"fleet": fleet, "target": targets}, Path("/plans/fleet.toml"))
    except ConfigError as exc:
        assert "\n" not in exc.message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789*,-/ abcdefghijklmnopqrstuvwxyz", max_size=30))
def test_any_cron_text_is_read_or_refused(text: str) -> None:
    try:
        cron = parse_cron(text)
    except ConfigError:
        return
    start = datetime(2026, 12, 6, tzinfo=UTC)
    found = cron.next_after(start, ZoneInfo("UTC"))
    assert found is None or (found > start and cron.matches(found))


def test_an_earlier_run_that_cannot_be_read_is_never_counted_as_a_pass(tmp_path: Path) -> None:
    import hashlib

    from backup_engine.drill.fleet.report import load_fleet_history

    run = tmp_path / "20261201T030000Z-0123abcd"
    run.mkdir()
    bomb = b"[" * 100_000  # sealed, but nested past anything this tool writes
    (run / "fleet.json").write_bytes(bomb)
    (run / "SHA256SUMS").write_text(f"{hashlib.sha256(bomb).hexdigest()}  fleet.json\n")
    assert load_fleet_history(tmp_path, "nightly") == []
