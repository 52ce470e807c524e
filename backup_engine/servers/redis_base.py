"""The interface of throwaway Redis servers (local processes today, containers later)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self


class RedisServer(ABC):
    host: str = "127.0.0.1"
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @abstractmethod
    def is_ready(self) -> bool: ...

    @abstractmethod
    def stop(self) -> None:
        """Shut down without saving; stopping a stopped server does nothing."""

    @abstractmethod
    def destroy(self) -> None:
        """Simulate losing the server: kill it and delete its data directory."""


class RedisBackend(ABC):
    name: str

    @abstractmethod
    def create(self, *, settings: Mapping[str, str] | None = None) -> RedisServer:
        """Start an empty server; `settings` are redis.conf directives (requirepass, ...)."""

    @abstractmethod
    def new_data_dir(self) -> Path: ...

    @abstractmethod
    def start_existing(
        self, data_dir: Path, *, settings: Mapping[str, str] | None = None
    ) -> RedisServer:
        """Start a server that loads `data_dir/dump.rdb`."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
