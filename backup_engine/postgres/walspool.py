"""The spool of asynchronous WAL archiving and prefetching, and the answers PostgreSQL gets
from it in milliseconds.

The spool is `pg_wal/.restore-drill/<repository>/` of the server itself: one per server and
repository (an answer about one repository is never given for another: the archive_command may
change), on the same filesystem as pg_wal (a prefetched segment is renamed into place, never
copied), kept across restarts, and never in a base backup (pg_basebackup sends no pg_wal
subdirectory but archive_status). PostgreSQL ignores files in pg_wal whose names are not WAL
names.

- `out/NAME.ok`: NAME was stored in the repository (object and metadata committed) by the push
  worker; it records the size, inode and mtime of the very file it read, so a different file of
  the same name is never answered from it. Written only after the store acknowledged the object,
  atomically (a crash leaves it absent, and PostgreSQL simply calls again).
- `out/NAME.error`: the worker's one-line reason it could not store NAME; the next call for NAME
  reports it and exits non-zero, so PostgreSQL keeps the segment and retries.
- `in/NAME`: a prefetched file, verified against its recorded sha256 before it was renamed here.

This module is imported by the fast path of every archive_command and restore_command call: it
imports nothing but the standard library's lightest modules.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

SPOOL_NAME = ".restore-drill"
PUSH_LOCK = "push.lock"
FETCH_LOCK = "fetch.lock"
WANT = "want"  # the name the last slow wal-fetch call asked for: where prefetching goes next


def is_segment_name(name: str) -> bool:
    return len(name) == 24 and all(c in "0123456789ABCDEF" for c in name)


def next_segment(name: str, segment_size: int) -> str:
    """The segment after NAME on the same timeline (names count 4 GiB per middle part)."""
    per_id = 0x1_0000_0000 // segment_size
    number = int(name[8:16], 16) * per_id + int(name[16:], 16) + 1
    return f"{name[:8]}{number // per_id:08X}{number % per_id:08X}"


# What decides the repository URL (see options.py, [repository] url): a test keeps them equal.
REPOSITORY_ENV = "BACKUP_ENGINE_REPOSITORY"
CONFIG_ENV = "BACKUP_ENGINE_CONFIG"
DEFAULT_CONFIG = "backup-engine.toml"


def spool_of(pg_wal: Path, repo_url: str) -> Path:
    return pg_wal / SPOOL_NAME / _digest(repo_url)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _inputs(config: str | None, repo: str | None) -> str:
    """Everything the repository URL is resolved from (flag, environment, the config file as
    it is now): the same inputs always resolve to the same URL."""
    path = config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        st = os.stat(path)
        stamp: list[int] | None = [st.st_ino, st.st_mtime_ns, st.st_size]
    except OSError:
        stamp = None
    return json.dumps([repo, os.environ.get(REPOSITORY_ENV), os.path.abspath(path), stamp])


def remember_repository(pg_wal: Path, config: str | None, repo: str | None, url: str) -> None:
    """Let the fast path find this URL's spool from the same inputs without reading the
    configuration (the full command resolved them to `url`)."""
    target = pg_wal / SPOOL_NAME / "resolved" / _digest(_inputs(config, repo))
    if not target.exists():
        write_atomically(target, _digest(url).encode())


def _remembered_spool(pg_wal: Path, config: str | None, repo: str | None) -> Path | None:
    try:
        key = (pg_wal / SPOOL_NAME / "resolved" / _digest(_inputs(config, repo))).read_text()
    except OSError:
        return None
    return pg_wal / SPOOL_NAME / key if len(key) == 16 and key.isalnum() else None


def _stamp(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns}


def record_pushed(spool: Path, wal_file: Path, before: os.stat_result, sha256: str) -> None:
    """Say that `wal_file`, as it was when stat'ed before reading (`before`), is stored."""
    body = json.dumps({**_stamp(before), "sha256": sha256}).encode()
    write_atomically(spool / "out" / f"{wal_file.name}.ok", body)
    (spool / "out" / f"{wal_file.name}.error").unlink(missing_ok=True)  # an earlier attempt's


def record_push_error(spool: Path, name: str, reason: str) -> None:
    write_atomically(spool / "out" / f"{name}.error", reason.encode())


def pushed(spool: Path, wal_file: Path) -> bool:
    """Whether the worker stored exactly this file (same size, inode and mtime)."""
    try:
        recorded = json.loads((spool / "out" / f"{wal_file.name}.ok").read_bytes())
        return bool(recorded == {**recorded, **_stamp(os.stat(wal_file))})
    except (OSError, ValueError, TypeError):
        return False


def take_push_error(spool: Path, name: str) -> str | None:
    """The worker's reason for NAME's failure, consumed (the next call tries again)."""
    path = spool / "out" / f"{name}.error"
    try:
        reason = path.read_text(errors="replace").strip()
    except OSError:
        return None
    path.unlink(missing_ok=True)
    return reason or "the archive worker could not store it"


def take_prefetched(spool: Path, name: str, destination: Path) -> bool:
    """Move a prefetched NAME to `destination` (where PostgreSQL asked for it)."""
    try:
        os.replace(spool / "in" / name, destination)
    except OSError:
        return False
    return True


def write_atomically(path: Path, body: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fast_answer(argv: list[str]) -> int | None:
    """Answer `pg wal-push PATH` or `pg wal-fetch NAME DEST` from the spool of the repository
    this command line resolves to (as the full command last resolved the same flags,
    environment and config file), or None to run the full command."""
    words = list(argv)
    given: dict[str, str] = {}
    while words and words[0] in ("--config", "--repo", "--debug"):
        flag = words.pop(0)
        if flag != "--debug":
            if not words:
                return None
            given[flag] = words.pop(0)
    push = len(words) == 3 and words[:2] == ["pg", "wal-push"]
    fetch = len(words) == 4 and words[:2] == ["pg", "wal-fetch"] and is_segment_name(words[2])
    if not (push or fetch):
        return None
    path = Path(words[2] if push else words[3])
    spool = _remembered_spool(path.parent, given.get("--config"), given.get("--repo"))
    if spool is None:
        return None
    if push and pushed(spool, path):
        os.write(2, f"{path.name} archived (asynchronously)\n".encode())
        return 0
    if fetch and take_prefetched(spool, words[2], path):
        os.write(2, f"{words[2]} restored from the prefetch spool\n".encode())
        return 0
    return None
