"""Step definitions for the drills, grouped by subject. Steps stay thin: they call the engine."""

from __future__ import annotations

from collections.abc import Callable

from backup_engine.storage import Storage

StorageFactory = Callable[[], Storage]
