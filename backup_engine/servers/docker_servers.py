"""PostgreSQL and Redis servers as Docker containers (testcontainers), for drills run where
Docker is the norm.

The containers use host networking and bind 127.0.0.1 on a free port, so the host's
pg_basebackup, pg_receivewal and the drill reach them exactly as they reach local servers. The
backend does not rely on an image's entrypoint: it starts the server binaries itself, so any
Debian-based image with PostgreSQL (and python3, for archive/restore commands run inside the
server) works, including the one scripts/build-test-image.sh builds without a registry. Data
directories are bind-mounted host directories: a restore writes into one on the host, then a
new container starts on it. This checkout and its virtualenv are mounted read-only at the same
paths, so archive_command / restore_command run this very tool inside the container.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backup_engine.errors import ConfigError, MissingBinary, ServerError, Unreachable
from backup_engine.net import free_port
from backup_engine.postgres.binaries import PgBinaries, find_pg_binaries
from backup_engine.postgres.recovery_config import conf_quote
from backup_engine.servers.base import PostgresBackend, PostgresServer, tablespaces_beside
from backup_engine.servers.reaper import CONTAINER_LABEL
from backup_engine.servers.redis_base import RedisBackend, RedisServer
from backup_engine.servers.scratch import ScratchArea, remove_data_dir

DEFAULT_IMAGE = "restore-drill/servers:bookworm"
POSTGRES_IMAGE_ENV = "DRILL_POSTGRES_IMAGE"
REDIS_IMAGE_ENV = "DRILL_REDIS_IMAGE"
DATA = "/data"
START_TIMEOUT_S = 120
_SUGGEST = "or run the drill with --backend local"

# The Ryuk reaper image cannot be pulled where there is no registry; this backend removes its
# own containers (close()), so testcontainers need not.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def _docker_client() -> Any:
    try:
        import docker
    except ImportError:
        raise MissingBinary(
            "the docker backend needs the docker and testcontainers packages",
            hint=f"pip install 'restore-drill[docker]', {_SUGGEST}",
        ) from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        reason = (
            "Docker is not installed"
            if shutil.which("docker") is None
            else "the Docker daemon is not reachable"
        )
        raise Unreachable(f"{reason}: {str(exc).splitlines()[0]}", hint=_SUGGEST) from None
    return client


def _check_image(client: Any, image: str) -> None:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ConfigError(
            f"Docker image {image} is not available here",
            hint=f"build it with scripts/build-test-image.sh, or pull it, {_SUGGEST}",
        ) from None


def check_docker() -> None:
    """Docker reachable and the server images present, or one line saying what is missing."""
    client = _docker_client()
    for image in {os.environ.get(POSTGRES_IMAGE_ENV, DEFAULT_IMAGE),
                  os.environ.get(REDIS_IMAGE_ENV, DEFAULT_IMAGE)}:  # fmt: skip
        _check_image(client, image)


def _tool_mounts() -> list[tuple[str, str, str]]:
    """This checkout and the interpreter's environment, read-only, at the same paths."""
    checkout = Path(__file__).resolve().parents[2]
    mounts = {str(checkout)}
    if not Path(sys.prefix).resolve().is_relative_to(checkout):
        mounts.add(str(Path(sys.prefix).resolve()))
    return [(path, path, "ro") for path in sorted(mounts)]


class _Container:
    """A started container and the few things the servers need from it."""

    def __init__(
        self,
        image: str,
        command: str,
        *,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        spaces: Path | None = None,
    ) -> None:
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(image).with_command(["sh", "-c", command])
        # The host's network and pids: a drill reaches the server on 127.0.0.1 and can signal
        # its processes (a SIGKILLed server, a killed archive worker) by the pids they record.
        # Labelled with its scratch area: a killed drill's containers are found and removed.
        container = container.with_kwargs(
            network_mode="host", pid_mode="host", labels={CONTAINER_LABEL: str(data_dir.parent)}
        )
        container = container.with_volume_mapping(str(data_dir), DATA, "rw")
        if spaces is not None:  # tablespaces: links name host paths, seen at the same path
            spaces.mkdir(exist_ok=True)
            container = container.with_volume_mapping(str(spaces), str(spaces), "rw")
        for host, inside, mode in _tool_mounts():
            container = container.with_volume_mapping(host, inside, mode)
        for name, value in (env or {}).items():
            container = container.with_env(name, value)
        self._container = container.start()

    def running(self) -> bool:
        wrapped = self._container.get_wrapped_container()
        try:
            wrapped.reload()
        except Exception:  # noqa: BLE001 - gone is not running
            return False
        return bool(wrapped.status == "running")

    def logs(self) -> str:
        out, err = self._container.get_logs()
        return (out + err).decode(errors="replace")

    def run(self, *argv: str) -> None:
        """A command inside the running container (as root)."""
        code, out = self._container.exec(list(argv))
        if code != 0:
            raise ServerError(f"{' '.join(argv)} failed in the container: {out!r}")

    def signal(self, name: str) -> None:
        if self.running():
            self._container.get_wrapped_container().kill(signal=name)

    def wait_stopped(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove(self) -> None:
        self._container.stop(force=True)


# --- PostgreSQL ---------------------------------------------------------------------------


def _postgres_command(
    port: int, settings: Mapping[str, str], initdb: bool, spaces: Path, checksums: bool = False
) -> str:
    """A new cluster keeps its settings in postgresql.conf, as a real server does (a backup of
    it then carries them, archive_command included); an existing one gets them for this run."""
    overrides = {
        **({} if initdb else settings),
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "/tmp",
    }
    flags = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in overrides.items())
    bindir = '"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"'
    as_postgres = "setpriv --reuid=postgres --regid=postgres --init-groups"
    steps = [
        "set -e",
        f"BIN={bindir}",
        f"chown -R postgres:postgres {DATA}",
        f"chmod 700 {DATA}",
        f"chown -R postgres:postgres {shlex.quote(str(spaces))}",
    ]
    if initdb:
        steps.append(
            f'{as_postgres} "$BIN/initdb" -D {DATA} -U postgres --auth=trust -E UTF8 --no-locale'
            f" --no-sync{' --data-checksums' if checksums else ''} >/dev/null"
        )
        conf = "".join(f"{k} = {conf_quote(v)}\n" for k, v in settings.items())
        steps.append(f"printf %s {shlex.quote(conf)} >> {DATA}/postgresql.conf")
    steps.append(f'exec {as_postgres} "$BIN/postgres" -D {DATA} {flags}')
    return "; ".join(steps)


class DockerPostgresServer(PostgresServer):
    def __init__(
        self,
        backend: DockerPostgresBackend,
        data_dir: Path,
        *,
        settings: Mapping[str, str],
        env: Mapping[str, str] | None,
        initdb: bool,
        checksums: bool = False,
    ) -> None:
        self._backend = backend
        self.data_dir = data_dir
        self.port = free_port()
        self._env = env
        # A new cluster keeps its settings in postgresql.conf; an existing one is given them
        # on each start.
        self._settings: Mapping[str, str] = {} if initdb else settings
        spaces = tablespaces_beside(data_dir)  # a restored backup's, or new ones
        command = _postgres_command(self.port, settings, initdb, spaces, checksums)
        self._container = _Container(backend.image, command, data_dir=data_dir, env=env,
                                     spaces=spaces)  # fmt: skip

    def start(self, *, wait: bool = True) -> None:
        """A container stopped is removed: a new one on the same data directory and port."""
        if self.is_running():
            return
        spaces = tablespaces_beside(self.data_dir)
        command = _postgres_command(self.port, self._settings, False, spaces)
        self._container = _Container(self._backend.image, command, data_dir=self.data_dir,
                                     env=self._env, spaces=spaces)  # fmt: skip
        self.wait_started(ready=wait)

    def wait_started(self, *, ready: bool) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready and self.is_ready():
                return
            if not ready and (self.data_dir / "postmaster.pid").exists():
                return
            if not self._container.running():
                if "database system is shut down" in self.log_tail(5):
                    return  # reached its recovery target and stopped, as asked
                tail = " | ".join(self.log_tail().splitlines())
                raise ServerError(f"PostgreSQL container did not start: {tail}")
            time.sleep(0.1)
        raise ServerError(f"PostgreSQL container on port {self.port} did not start in time")

    def is_running(self) -> bool:
        return self._container.running()

    def log_tail(self, lines: int = 3) -> str:
        text = self._container.logs().strip().splitlines()
        return "\n".join(text[-lines:]) or "empty log"

    def stop(self, *, mode: str = "fast") -> None:
        signal = {"smart": "SIGTERM", "fast": "SIGINT", "immediate": "SIGQUIT"}[mode]
        self._container.signal(signal)
        self._container.wait_stopped(60)
        self._container.remove()

    def destroy(self) -> None:
        self._container.signal("SIGKILL")
        self._container.remove()
        remove_data_dir(self.data_dir)

    def give(self, path: Path) -> None:
        """Hand a directory made on the host to the server's user inside its container."""
        self._container.run("chown", "postgres:postgres", str(path))


class DockerPostgresBackend(PostgresBackend):
    name = "docker"

    def __init__(self, *, image: str | None = None, base_dir: Path | None = None) -> None:
        self.image = image or os.environ.get(POSTGRES_IMAGE_ENV, DEFAULT_IMAGE)
        _check_image(_docker_client(), self.image)
        self.binaries: PgBinaries = find_pg_binaries()  # the host's clients: pg_isready & co
        self._scratch: ScratchArea[DockerPostgresServer] = ScratchArea(
            "restore-drill-docker-pg-", base_dir
        )

    def new_data_dir(self) -> Path:
        return self._scratch.new_data_dir()

    def new_tablespace_dir(self, server: PostgresServer, name: str) -> Path:
        path = super().new_tablespace_dir(server, name)
        if isinstance(server, DockerPostgresServer):
            server.give(path)
        return path

    def _start(self, data_dir: Path, settings: Mapping[str, str], env: Mapping[str, str] | None,
               *, initdb: bool, wait: bool, checksums: bool = False,
               ) -> DockerPostgresServer:  # fmt: skip
        server = DockerPostgresServer(self, data_dir, settings=settings, env=env, initdb=initdb,
                                      checksums=checksums)  # fmt: skip
        self._scratch.track(server)
        server.wait_started(ready=wait)
        return server

    def create(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        checksums: bool = False,
        disk_mb: int | None = None,
    ) -> PostgresServer:
        from backup_engine.servers.local_postgres import DRILL_SETTINGS

        merged = {**DRILL_SETTINGS, **(settings or {})}
        data_dir = self._scratch.new_data_dir(disk_mb=disk_mb)  # bind-mounted, tmpfs and all
        return self._start(data_dir, merged, env, initdb=True, wait=True, checksums=checksums)

    def start_existing(
        self,
        data_dir: Path,
        *,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> PostgresServer:
        return self._start(data_dir, settings or {}, env, initdb=False, wait=wait)

    def close(self) -> None:
        self._scratch.close(lambda server: server.destroy())


# --- Redis --------------------------------------------------------------------------------


class DockerRedisServer(RedisServer):
    def __init__(self, image: str, data_dir: Path, settings: Mapping[str, str] | None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self._settings = dict(settings or {})
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", DATA,
            "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
            "--enable-debug-command", "yes", "--daemonize", "no", "--protected-mode", "no",
            "--repl-diskless-sync-delay", "0",
            *[arg for name, value in self._settings.items() for arg in (f"--{name}", value)],
        ]  # fmt: skip
        command = f"chown -R redis:redis {DATA} 2>/dev/null || true; exec " + shlex.join(args)
        self._container = _Container(image, command, data_dir=data_dir)

    @property
    def url(self) -> str:
        password = self._settings.get("requirepass")
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.is_ready():
            if not self._container.running() or time.monotonic() > deadline:
                raise ServerError(f"redis container did not start: {self._container.logs()[-300:]}")
            time.sleep(0.1)

    def is_ready(self) -> bool:
        import redis as redislib

        try:
            with redislib.Redis.from_url(self.url, socket_connect_timeout=1) as client:
                return bool(client.ping())
        except redislib.RedisError:
            return False

    def stop(self) -> None:
        self._container.signal("SIGTERM")
        self._container.wait_stopped(30)
        self._container.remove()

    def destroy(self) -> None:
        self._container.signal("SIGKILL")
        self._container.remove()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class DockerRedisBackend(RedisBackend):
    name = "docker"

    def __init__(self, *, image: str | None = None, base_dir: Path | None = None) -> None:
        self.image = image or os.environ.get(REDIS_IMAGE_ENV, DEFAULT_IMAGE)
        _check_image(_docker_client(), self.image)
        # readable by others: the container's redis user takes it over (chown) on start
        self._scratch: ScratchArea[DockerRedisServer] = ScratchArea(
            "restore-drill-docker-redis-", base_dir, dir_mode=0o777
        )

    def new_data_dir(self) -> Path:
        return self._scratch.new_data_dir()

    def create(self, *, settings: Mapping[str, str] | None = None) -> RedisServer:
        return self.start_existing(self.new_data_dir(), settings=settings)

    def start_existing(
        self, data_dir: Path, *, settings: Mapping[str, str] | None = None
    ) -> RedisServer:
        server = DockerRedisServer(self.image, data_dir, settings)
        self._scratch.track(server)
        server.wait_ready()
        return server

    def close(self) -> None:
        self._scratch.close(lambda server: server.destroy())
