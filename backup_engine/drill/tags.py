"""The feature tags the shipped scenarios use, with what each selects (`drill --tags`).

They are pytest markers, registered by the drill's pytest plugin; a tag of a user's own feature
that is not listed here is registered as it is met, so it never warns."""

from __future__ import annotations

TAGS: dict[str, str] = {
    "postgres": "drills and tests that start a real PostgreSQL server",
    "redis": "drills and tests that start a real Redis server",
    "media": "media file drills",
    "nightly": "part of the nightly restore drill",
    "slow": "takes more than a few seconds",
    "full_restore": "complete data loss scenarios",
    "pitr": "point-in-time recovery scenarios",
    "incremental": "incremental backups and their chains (PostgreSQL 17 and later)",
    "rpo": "scenarios that measure the data loss window",
    "table_restore": "single-table recovery scenarios",
    "streaming": "WAL streaming scenarios",
    "retention": "retention and expire scenarios",
    "latest_backup": "restore tests of the latest backup in the configured repository",
    "faults": "fault drills: failing store, damaged objects, concurrent backups",
    "secure_store": "client-side encryption and store safety",
    "restored_server": "checks of a restored server (DRILL_TARGET_DSN, or one the drill restores)",
    "timelines": "restores across timelines: PITR then backups, copies, ambiguous targets",
    "tablespaces": "clusters with tablespaces, and backups taken from a hot standby",
    "hostile": "a repository written by someone else: forged tars, entries and manifests",
    "app": "examples for an application of your own, written with the generic steps only",
    "corruption": "damaged data pages found by their checksum and recovered",
    "disk": "a full data disk: the writes refused, the committed rows restored",
}
