"""What the tool says on stderr while it works (not its results, which go to stdout): one line
per event, as text for people or as JSON lines for log collectors (`--log-format json`), with
`-q` (warnings and errors only) and `-v` (details too). Credentials are masked either way."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backup_engine.urls import redact

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


@dataclass
class _Config:
    threshold: int = LEVELS["info"]
    json: bool = False
    timestamps: bool = False  # text lines get a UTC time (long-running commands, workers)


_config = _Config()


def configure(*, quiet: bool = False, verbose: bool = False, fmt: str = "text") -> None:
    _config.threshold = LEVELS["warning" if quiet else "debug" if verbose else "info"]
    _config.json = fmt == "json"


def with_timestamps() -> None:
    """For commands that run for hours (wal-stream, the WAL workers): each line says when."""
    _config.timestamps = True


def enabled(level: str) -> bool:
    return LEVELS[level] >= _config.threshold


def log(level: str, message: str, **fields: Any) -> None:
    if not enabled(level):
        return
    now = datetime.now(UTC)
    if _config.json:
        record = {"time": now.isoformat().replace("+00:00", "Z"), "level": level,
                  "message": redact(message), **fields}  # fmt: skip
        line = json.dumps(record, default=str)
    else:
        stamp = f"{now:%Y-%m-%dT%H:%M:%SZ} " if _config.timestamps else ""
        prefix = "" if level == "info" else f"{level}: "
        line = f"{stamp}{prefix}{redact(message)}"
    print(line, file=sys.stderr, flush=True)


def info(message: str, **fields: Any) -> None:
    log("info", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("warning", message, **fields)


def error_line(message: str) -> str:
    """The one line an error exit prints, in the chosen format."""
    if _config.json:
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return json.dumps({"time": stamp, "level": "error", "message": redact(message)})
    return f"backup-engine: error: {redact(message)}"
