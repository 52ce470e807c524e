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
imports only os, fcntl, time and a builtin sha256 (pathlib, json, re and hashlib would double
the ~12 ms an answer costs), and works on plain path strings; it takes Paths as well.
"""

from __future__ import annotations

import fcntl
import os
import time

TYPE_CHECKING = False  # typing itself imports re: ~4 ms
if TYPE_CHECKING:
    from pathlib import Path

    StrPath = str | Path

try:  # the interpreter's own sha256, without loading OpenSSL (hashlib does: ~3 ms)
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        from hashlib import sha256 as _sha256  # type: ignore[assignment,unused-ignore]

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


def spool_of(pg_wal: StrPath, repo_url: str) -> Path:
    from pathlib import Path

    return Path(pg_wal, SPOOL_NAME, _digest(repo_url))


def _digest(text: str) -> str:
    return str(_sha256(text.encode()).hexdigest())[:16]


def _inputs(config: str | None, repo: str | None) -> str:
    """Everything the repository URL is resolved from (flag, environment, the config file as
    it is now): the same inputs always resolve to the same URL."""
    path = config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        st = os.stat(path)
        stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    return repr((repo, os.environ.get(REPOSITORY_ENV), os.path.abspath(path), stamp))


def _resolved(pg_wal: StrPath, config: str | None, repo: str | None) -> str:
    return os.path.join(pg_wal, SPOOL_NAME, "resolved", _digest(_inputs(config, repo)))


def remember_repository(pg_wal: StrPath, config: str | None, repo: str | None, url: str) -> None:
    """Let the fast path find this URL's spool from the same inputs without reading the
    configuration (the full command resolved them to `url`)."""
    target = _resolved(pg_wal, config, repo)
    if not os.path.exists(target):
        write_atomically(target, _digest(url).encode())


def _remembered_spool(pg_wal: str, config: str | None, repo: str | None) -> str | None:
    key = _read(_resolved(pg_wal, config, repo))
    if key is None or len(key) != 16 or not key.isalnum():
        return None
    return os.path.join(pg_wal, SPOOL_NAME, key)


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _stamp(st: os.stat_result) -> str:
    return f"size={st.st_size} ino={st.st_ino} mtime_ns={st.st_mtime_ns}"


def _out(spool: StrPath, name: str, kind: str) -> str:
    return os.path.join(spool, "out", f"{name}.{kind}")


def record_pushed(spool: StrPath, wal_file: StrPath, before: os.stat_result, sha256: str) -> None:
    """Say that `wal_file`, as it was when stat'ed before reading (`before`), is stored."""
    name = os.path.basename(wal_file)
    write_atomically(_out(spool, name, "ok"), f"{_stamp(before)} sha256={sha256}\n".encode())
    _unlink(_out(spool, name, "error"))  # an earlier attempt's


def record_push_error(spool: StrPath, name: str, reason: str) -> None:
    write_atomically(_out(spool, name, "error"), reason.encode())


def pushed(spool: StrPath, wal_file: StrPath) -> bool:
    """Whether the worker stored exactly this file (same size, inode and mtime)."""
    recorded = _read(_out(spool, os.path.basename(wal_file), "ok"))
    if recorded is None:
        return False
    try:
        return recorded.startswith(_stamp(os.stat(wal_file)) + " sha256=")
    except OSError:
        return False


def take_push_error(spool: StrPath, name: str) -> str | None:
    """The worker's reason for NAME's failure, consumed (the next call tries again)."""
    path = _out(spool, name, "error")
    reason = _read(path)
    if reason is None:
        return None
    _unlink(path)
    return reason.strip() or "the archive worker could not store it"


def take_prefetched(spool: StrPath, name: str, destination: StrPath) -> bool:
    """Move a prefetched NAME to `destination` (where PostgreSQL asked for it)."""
    try:
        os.replace(os.path.join(spool, "in", name), destination)
    except OSError:
        return False
    return True


def _unlink(path: str) -> None:
    try:  # noqa: SIM105 - contextlib is one import more on the fast path
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_atomically(path: StrPath, body: bytes) -> None:
    """A record a reader sees whole or not at all (renamed into place). Not fsynced: the spool
    holds answers, never data. A record is written only after what it says is durable in the
    repository, and each one is checked when read (a segment's stamp, a name, a digest), so
    a record a crash loses or tears only means the segment is pushed (or fetched) again. Two
    fsyncs per segment saved: the worker's disk is the repository's, on file://."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, body)
    finally:
        os.close(fd)
    os.replace(tmp, path)


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
    path = words[2] if push else words[3]
    spool = _remembered_spool(os.path.dirname(path) or ".", given.get("--config"),
                              given.get("--repo"))  # fmt: skip
    if spool is None:
        return None
    if push and _await_pushed(spool, path, time.monotonic() + FAST_WAIT):
        os.write(2, f"{os.path.basename(path)} archived (asynchronously)\n".encode())
        return 0
    if fetch and _await_prefetched(spool, words[2], path, time.monotonic() + FAST_WAIT):
        os.write(2, f"{words[2]} restored from the prefetch spool\n".encode())
        return 0
    return None


# A call that finds the worker busy with its file waits here, in the light process, rather
# than starting the full command (~0.3 s of imports) to wait there: at 20-40 segments/s the
# next call often comes before the worker's answer. Past this, the full command takes over.
FAST_WAIT = 30.0
POLL = 0.004


def held(lock: StrPath) -> bool:
    """Whether a worker holds `lock`, probed with a shared lock held for microseconds (a
    worker starting meanwhile retries for a moment: walasync.WORKER_PATIENCE)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's shared lock, if it got one
    return False


def _await_pushed(spool: str, wal_file: str, deadline: float) -> bool:
    """True once the worker stored exactly `wal_file`. False (the full command decides) when
    the worker recorded an error for it, is not running, or the file is not one it pushes."""
    name = os.path.basename(wal_file)
    ready = os.path.join(os.path.dirname(wal_file) or ".", "archive_status", f"{name}.ready")
    error = _out(spool, name, "error")
    lock = os.path.join(spool, PUSH_LOCK)
    while True:
        running = held(lock)  # probed before the answer: no exit between unseen
        if pushed(spool, wal_file):
            return True
        if not running or os.path.exists(error) or not os.path.exists(ready):
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)


def _await_prefetched(spool: str, name: str, destination: str, deadline: float) -> bool:
    """Move a prefetched NAME into place, waiting while the worker is downloading it (a
    hidden file of its name is in the inbox). False when it is neither there nor coming."""
    inbox = os.path.join(spool, "in")
    lock = os.path.join(spool, FETCH_LOCK)
    while True:
        running = held(lock)
        if take_prefetched(spool, name, destination):
            return True
        if not running or time.monotonic() > deadline:
            return False
        try:
            coming = any(e.startswith(".") and name in e for e in os.listdir(inbox))
        except OSError:
            return False
        if not coming:  # or renamed into place just now
            return take_prefetched(spool, name, destination)
        time.sleep(POLL)
