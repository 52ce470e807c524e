"""Throwaway database servers for drills: real server processes, started and always cleaned up.

A backend (local processes today, containers later) creates servers from scratch or starts one
on a restored data directory; steps and fixtures only see the `PostgresBackend` interface.
"""

from __future__ import annotations

from backup_engine.errors import ConfigError
from backup_engine.servers.base import PostgresBackend, PostgresServer
from backup_engine.servers.local_postgres import LocalPostgresBackend

__all__ = ["BACKENDS", "LocalPostgresBackend", "PostgresBackend", "PostgresServer", "make_backend"]

BACKENDS = ("local",)


def make_backend(name: str) -> PostgresBackend:
    """The server backend drills run on, by name (`DRILL_BACKEND`, `--backend`)."""
    if name == "local":
        return LocalPostgresBackend()
    raise ConfigError(f"unknown server backend {name!r}", hint=f"use one of: {', '.join(BACKENDS)}")
