"""Redis servers as local processes, from the redis-server binary installed on this machine."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import redis

from backup_engine.errors import MissingBinary, ServerError
from backup_engine.net import free_port
from backup_engine.process import start_background
from backup_engine.servers.reaper import PID_FILE, record_pid
from backup_engine.servers.redis_base import RedisBackend, RedisServer
from backup_engine.servers.scratch import ScratchArea

DUMP_FILE = "dump.rdb"
START_TIMEOUT_S = 30
_INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install redis-server)"


def find_redis_server() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise MissingBinary("redis-server not found", hint=_INSTALL_HINT)
    return found


class LocalRedisServer(RedisServer):
    def __init__(
        self,
        binary: str,
        data_dir: Path,
        log_file: Path,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_file = log_file
        self._settings = dict(settings or {})
        self._process: subprocess.Popen[bytes] | None = start_background(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(data_dir), "--dbfilename", DUMP_FILE,
                "--save", "", "--appendonly", "no", "--enable-debug-command", "yes",
                "--daemonize", "no", "--protected-mode", "no",
                # Snapshots for replicas (and our backups) start at once, not after 5 s.
                "--repl-diskless-sync-delay", "0",
                *[arg for name, value in (settings or {}).items() for arg in (f"--{name}", value)],
            ],
            log_file=log_file,
        )  # fmt: skip
        record_pid(data_dir / PID_FILE, self._process.pid)  # for the reaper, should we be killed

    @property
    def url(self) -> str:
        password = self._settings.get("requirepass")
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.is_ready():
            if self._process is None or self._process.poll() is not None:
                tail = " | ".join(self.log_file.read_text(errors="replace").splitlines()[-3:])
                raise ServerError(f"redis-server did not start on {self.data_dir}: {tail}")
            if time.monotonic() > deadline:
                raise ServerError(f"redis-server on port {self.port} did not answer in time")
            time.sleep(0.05)

    def is_ready(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
            with client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()  # redis-server exits without saving: --save ""
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def destroy(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
        shutil.rmtree(self.data_dir, ignore_errors=True)


class LocalRedisBackend(RedisBackend):
    name = "local"

    def __init__(self, *, base_dir: Path | None = None) -> None:
        self.binary = find_redis_server()
        self._scratch: ScratchArea[LocalRedisServer] = ScratchArea("restore-drill-redis-", base_dir)
        self.root = self._scratch.root

    def new_data_dir(self) -> Path:
        return self._scratch.new_data_dir()

    def create(self, *, settings: Mapping[str, str] | None = None) -> RedisServer:
        return self.start_existing(self.new_data_dir(), settings=settings)

    def start_existing(
        self, data_dir: Path, *, settings: Mapping[str, str] | None = None
    ) -> RedisServer:
        log_file = self.root / f"{data_dir.name}.log"
        server = LocalRedisServer(self.binary, data_dir, log_file, settings)
        self._scratch.track(server)
        server.wait_ready()
        return server

    def close(self) -> None:
        self._scratch.close(LocalRedisServer.stop)
