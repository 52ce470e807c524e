"""PostgreSQL servers as local processes, from the binaries installed on this machine.

initdb refuses to run as root, so when we are root every server program runs as the
unprivileged `postgres` OS user, and the directories it needs are handed over to that user.
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
import tempfile
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import NoReturn

from backup_engine.errors import CommandFailed, ServerError
from backup_engine.net import free_port
from backup_engine.postgres.binaries import PgBinaries, find_pg_binaries
from backup_engine.postgres.recovery_config import conf_quote
from backup_engine.process import RunAs, run
from backup_engine.servers.base import PostgresBackend, PostgresServer, tablespaces_beside
from backup_engine.servers.scratch import ScratchArea, remove_data_dir

SERVER_OS_USER = "postgres"
START_TIMEOUT_S = 120

# Settings for throwaway drill servers. fsync is off because the data directory is destroyed
# after the drill anyway; nothing about backup or recovery behaviour depends on it.
DRILL_SETTINGS: dict[str, str] = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "fsync": "off",
    "max_connections": "40",
}


def _run_as_for_current_user() -> RunAs | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise ServerError(
            f"running as root, and there is no {SERVER_OS_USER!r} OS user to run PostgreSQL as",
            hint="install the postgresql package (it creates the user) or run as a normal user",
        ) from None
    return RunAs(SERVER_OS_USER)


def _check_reachable(directory: Path, user: str) -> None:
    """The server runs as `user`, so every directory above its data must be searchable by it;
    otherwise it fails to start with no log at all. Say so before anything is created."""
    entry = pwd.getpwnam(user)
    path = directory.resolve()
    for step in (*reversed(path.parents), path):
        try:
            st = step.stat()
        except FileNotFoundError:
            return  # created later, by us, searchable
        if st.st_uid == entry.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == entry.pw_gid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            raise ServerError(
                f"PostgreSQL runs as the {user!r} OS user, which cannot enter {step}",
                hint=f"choose a scratch directory under /tmp, or let it in: chmod o+x {step}",
            )


def _tablespace_links(data_dir: Path) -> list[Path]:
    """Where the data directory's pg_tblspc links lead (os.walk does not follow them)."""
    try:
        links = [entry for entry in (data_dir / "pg_tblspc").iterdir() if entry.is_symlink()]
    except OSError:
        return []
    return [Path(os.path.realpath(link)) for link in links]


class LocalPostgresServer(PostgresServer):
    def __init__(
        self,
        backend: LocalPostgresBackend,
        data_dir: Path,
        *,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._backend = backend
        self.data_dir = data_dir
        self.port = free_port()
        self.log_file = backend.root / f"{data_dir.name}.log"
        self._log_from = 0  # where this start's lines begin (a repaired server reuses the log)
        self._settings = dict(settings or {})
        self._env = dict(env or {})

    def _pg_ctl(self, *args: str, check: bool = True, timeout: float = START_TIMEOUT_S) -> int:
        return self._backend.run_pg(
            "pg_ctl",
            "--pgdata",
            str(self.data_dir),
            *args,
            check=check,
            timeout=timeout,
            env=self._env,
        )

    def start(self, *, wait: bool = True) -> None:
        # pg_ctl hands -o to a shell: every value is quoted.
        overrides = {
            **self._settings,
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self._backend.socket_dir),
        }
        options = " ".join(f"-c {name}={shlex.quote(v)}" for name, v in overrides.items())
        with suppress(FileNotFoundError):
            self._log_from = self.log_file.stat().st_size
        try:
            self._pg_ctl(
                "start",
                "--wait" if wait else "--no-wait",
                f"--timeout={START_TIMEOUT_S}",
                "--log",
                str(self.log_file),
                "-o",
                options,
            )
        except CommandFailed:
            self._fail_to_start()
        if not wait:
            self._wait_for_postmaster()

    def _wait_for_postmaster(self) -> None:
        """pg_ctl --no-wait returns before the postmaster exists; wait until it does (or died)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.data_dir / "postmaster.pid").exists():
            log = self.log_tail(5)
            if "database system is shut down" in log:  # e.g. recovery_target_action=shutdown
                return
            if time.monotonic() > deadline or "FATAL" in log:
                self._fail_to_start()
            time.sleep(0.05)

    def _fail_to_start(self) -> NoReturn:
        tail = " | ".join(self.log_tail().splitlines())
        raise ServerError(
            f"PostgreSQL did not start on {self.data_dir}: {tail}",
            hint=f"see {self.log_file}",
        ) from None

    def log_tail(self, lines: int = 3) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_from)
                text = log.read().decode(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log written"
        return "\n".join(text[-lines:]) or "empty log"

    def is_running(self) -> bool:
        return self.data_dir.exists() and self._pg_ctl("status", check=False) == 0

    def stop(self, *, mode: str = "fast") -> None:
        if not self.is_running():
            return
        if self._pg_ctl("stop", "--wait", f"--mode={mode}", check=False) != 0:
            self._pg_ctl("stop", "--wait", "--mode=immediate", check=False)

    def destroy(self) -> None:
        self.stop(mode="immediate")
        remove_data_dir(self.data_dir)


class LocalPostgresBackend(PostgresBackend):
    name = "local"

    def __init__(self, *, bindir: str | None = None, base_dir: Path | None = None) -> None:
        self.binaries: PgBinaries = find_pg_binaries(bindir)
        for program in ("initdb", "pg_ctl", "postgres", "pg_isready"):
            self.binaries.path(program)
        self.run_as = _run_as_for_current_user()
        if self.run_as is not None:
            _check_reachable(Path(base_dir or tempfile.gettempdir()), self.run_as.user)
        self._scratch: ScratchArea[LocalPostgresServer] = ScratchArea("restore-drill-pg-", base_dir)
        self.root = self._scratch.root
        self._hand_over(self.root)
        self.socket_dir = self.root / "sockets"
        self.socket_dir.mkdir()
        self._hand_over(self.socket_dir)

    def run_pg(
        self,
        program: str,
        *args: str,
        check: bool = True,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
    ) -> int:
        argv = [str(self.binaries.path(program)), *args]
        return run(argv, run_as=self.run_as, check=check, timeout=timeout, env=env).returncode

    def _hand_over(self, path: Path) -> None:
        """Give a path to the server's OS user (a no-op unless we are root)."""
        if self.run_as is None:
            return
        entry = pwd.getpwnam(self.run_as.user)
        os.lchown(path, entry.pw_uid, entry.pw_gid)

    def _hand_over_tree(self, top: Path) -> None:
        if self.run_as is None:
            return
        self._hand_over(top)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in (*dirnames, *filenames):
                self._hand_over(Path(dirpath) / name)

    def new_tablespace_dir(self, server: PostgresServer, name: str) -> Path:
        path = super().new_tablespace_dir(server, name)
        self._hand_over(path.parent)
        self._hand_over(path)
        return path

    def new_data_dir(self, *, disk_mb: int | None = None) -> Path:
        path = self._scratch.new_data_dir(disk_mb=disk_mb)
        self._hand_over(path)
        return path

    def create(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        checksums: bool = False,
        disk_mb: int | None = None,
    ) -> PostgresServer:
        data_dir = self.new_data_dir(disk_mb=disk_mb)
        self.run_pg(
            "initdb",
            "--pgdata",
            str(data_dir),
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            *(["--data-checksums"] if checksums else []),
        )
        merged = {**DRILL_SETTINGS, **(settings or {})}
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# restore-drill throwaway server\n")
            for name, value in merged.items():
                conf.write(f"{name} = {conf_quote(value)}\n")
        return self._start(LocalPostgresServer(self, data_dir, env=env), wait=True)

    def start_existing(
        self,
        data_dir: Path,
        *,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> PostgresServer:
        self._hand_over_tree(data_dir)
        data_dir.chmod(0o700)
        beside = tablespaces_beside(data_dir)
        if beside.is_dir():  # where a restored backup's tablespaces go
            self._hand_over(beside)
        for link in _tablespace_links(data_dir):
            if link.is_relative_to(self.root.resolve()):  # never anything outside our scratch
                self._hand_over_tree(link)
        server = LocalPostgresServer(self, data_dir, settings=settings, env=env)
        return self._start(server, wait=wait)

    def _start(self, server: LocalPostgresServer, *, wait: bool) -> LocalPostgresServer:
        self._scratch.track(server)
        server.start(wait=wait)
        return server

    def close(self) -> None:
        self._scratch.close(lambda server: server.stop(mode="immediate"))
