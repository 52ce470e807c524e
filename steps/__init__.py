"""Step definitions for the drills, grouped by subject. Steps stay thin: they call the engine."""

from __future__ import annotations

from collections.abc import Callable

from backup_engine.storage import Storage

StorageFactory = Callable[[], Storage]

# Everything a drill needs loaded, in order: the evidence plugin, fixtures, then the steps.
# conftest.py and `backup-engine drill` both load this list.
PLUGINS = [
    "backup_engine.drill.pytest_plugin",
    "steps.fixtures",
    "steps.repository_steps",
    "steps.postgres_steps",
    "steps.pitr_steps",
    "steps.wal_async_steps",
    "steps.timeline_steps",
    "steps.table_steps",
    "steps.redis_steps",
    "steps.media_steps",
    "steps.retention_steps",
    "steps.incremental_steps",
    "steps.tablespace_steps",
    "steps.checklist_steps",
    "steps.smoke_steps",
    "steps.latest_backup_steps",
    "steps.fault_steps",
    "steps.hostile_steps",
    "steps.sql_steps",
    "steps.evidence_steps",
]
