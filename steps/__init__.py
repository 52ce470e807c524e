"""Step definitions for the drills, grouped by subject. Steps stay thin: they call the engine."""

from __future__ import annotations

from collections.abc import Callable

from backup_engine.storage import Storage

StorageFactory = Callable[[], Storage]

# Everything a drill needs loaded, in order: the evidence plugin, fixtures, then the steps.
# conftest.py loads this list for pytest in the checkout; `backup-engine drill` finds it through
# the `restore_drill.steps` entry point (the package is installed as `restore_drill_steps`), as
# it finds any other step library a project declares there. Names are relative to this package,
# so it works under either name.
STEP_MODULES = (
    "fixtures", "repository_steps", "postgres_steps", "pitr_steps", "wal_async_steps",
    "timeline_steps", "table_steps", "redis_steps", "media_steps", "retention_steps",
    "incremental_steps", "tablespace_steps", "checklist_steps", "smoke_steps",
    "latest_backup_steps", "fault_steps", "hostile_steps", "sql_steps", "evidence_steps",
    "object_lock_steps", "standby_steps", "archive_verify_steps", "delta_steps",
    "stanza_steps", "second_repository_steps", "latest_redis_steps",
)  # fmt: skip
PLUGINS = ["backup_engine.drill.pytest_plugin", *(f"{__name__}.{m}" for m in STEP_MODULES)]
