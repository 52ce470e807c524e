"""restore-drill: backup and restore engine for PostgreSQL, Redis and media files."""

from __future__ import annotations

__version__ = "0.1.0"
