"""One exception tree for the whole engine.

Every error carries a one-line message that says what went wrong and, where we know it, a hint
saying how to fix it. Only the CLI entry point turns these into exit codes; library callers (the
drill steps, tests) catch the class they care about.

Exit codes (documented in the README):
  1  the operation failed (a tool failed, a backup could not be taken or restored)
  2  bad usage or configuration (flag, config file, target directory not empty)
  3  something could not be reached (database server, storage endpoint, bucket)
  4  integrity failure (a stored object does not match its recorded hash, pg_verifybackup failed)
  5  not found (no such backup, no backup at all)
"""

from __future__ import annotations


class BackupEngineError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __str__(self) -> str:
        return self.one_line()


class UsageError(BackupEngineError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration file or environment is invalid."""


class TargetNotEmpty(UsageError):
    """A restore would overwrite an existing directory."""


class MissingBinary(BackupEngineError):
    """A required external program (pg_basebackup, redis-server, ...) is not installed."""

    exit_code = 2


class MissingExtra(UsageError):
    """A command needs an optional part of the package that is not installed."""


class Unreachable(BackupEngineError):
    """A server or endpoint could not be contacted."""

    exit_code = 3


class ServerUnreachable(Unreachable):
    """The database server refused or timed out."""


class StorageError(BackupEngineError):
    """The backup store failed an operation."""


class StorageUnreachable(StorageError, Unreachable):
    """The storage endpoint cannot be reached or refuses our credentials."""

    exit_code = 3


class BucketNotFound(StorageUnreachable):
    """The configured bucket does not exist."""


class ObjectExists(StorageError):
    """A write that must not overwrite found the key already taken."""


class NotFound(BackupEngineError):
    exit_code = 5


class ObjectNotFound(StorageError, NotFound):
    """A key is not in the store. Storage implementations raise exactly this for a missing key."""

    exit_code = 5


class BackupNotFound(NotFound):
    """No complete backup matches the requested id."""


class IntegrityError(BackupEngineError):
    """Stored data does not match what was recorded when it was written."""

    exit_code = 4


class CorruptObject(IntegrityError):
    """An object's size or sha256 differs from the manifest."""


class VerificationFailed(IntegrityError):
    """pg_verifybackup (or another content check) rejected a backup."""


class TargetWriteFailed(BackupEngineError):
    """The restore target cannot be written (disk full, permissions): named, never a traceback."""


class CommandFailed(BackupEngineError):
    """An external program exited with an error."""


class ServerError(BackupEngineError):
    """A throwaway server could not be created, started or stopped."""
