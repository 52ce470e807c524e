"""Throwaway database servers for drills: real server processes, started and always cleaned up.

A backend (local processes today, containers later) creates servers from scratch or starts one
on a restored data directory; steps and fixtures only see the `PostgresBackend` interface.
"""

from backup_engine.servers.base import PostgresBackend, PostgresServer
from backup_engine.servers.local_postgres import LocalPostgresBackend

__all__ = ["LocalPostgresBackend", "PostgresBackend", "PostgresServer"]
