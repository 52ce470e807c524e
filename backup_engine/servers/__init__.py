"""Throwaway database servers for drills: real server processes, started and always cleaned up.

A backend (local processes today, containers later) creates servers from scratch or starts one
on a restored data directory; steps and fixtures only see the `PostgresBackend` interface.
"""

from __future__ import annotations

from backup_engine.errors import ConfigError
from backup_engine.servers.base import PostgresBackend, PostgresServer
from backup_engine.servers.local_postgres import LocalPostgresBackend
from backup_engine.servers.redis_base import RedisBackend
from backup_engine.servers.scratch import SmallDiskUnavailable

__all__ = [
    "BACKENDS",
    "LocalPostgresBackend",
    "PostgresBackend",
    "PostgresServer",
    "RedisBackend",
    "SmallDiskUnavailable",
    "make_backend",
    "make_redis_backend",
    "preflight",
]

BACKENDS = ("local", "docker")


def make_backend(name: str) -> PostgresBackend:
    """The PostgreSQL server backend drills run on, by name (`DRILL_BACKEND`, `--backend`)."""
    if name == "local":
        return LocalPostgresBackend()
    if name == "docker":
        from backup_engine.servers.docker_servers import DockerPostgresBackend

        return DockerPostgresBackend()
    raise ConfigError(f"unknown server backend {name!r}", hint=f"use one of: {', '.join(BACKENDS)}")


def preflight(name: str) -> None:
    """Fail now, in one line, if the backend cannot run here (before any scenario starts)."""
    if name == "docker":
        from backup_engine.servers.docker_servers import check_docker

        check_docker()
    elif name not in BACKENDS:
        raise ConfigError(
            f"unknown server backend {name!r}", hint=f"use one of: {', '.join(BACKENDS)}"
        )


def make_redis_backend(name: str) -> RedisBackend:
    """The Redis server backend, chosen the same way."""
    if name == "local":
        from backup_engine.servers.local_redis import LocalRedisBackend

        return LocalRedisBackend()
    if name == "docker":
        from backup_engine.servers.docker_servers import DockerRedisBackend

        return DockerRedisBackend()
    raise ConfigError(f"unknown server backend {name!r}", hint=f"use one of: {', '.join(BACKENDS)}")
