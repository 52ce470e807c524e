"""`backup-engine redis ...`: RDB snapshots of a Redis server, listed, verified, restored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import (
    emit_json,
    human_bytes,
    json_option,
    progress_option,
    show_catalog,
    stopped,
)
from backup_engine.durations import format_duration
from backup_engine.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from backup_engine.config import Settings
    from backup_engine.redis.target import RedisTarget

url_option = click.option("--url", help="Redis URL (default: [redis] url, $REDIS_URL).")


@click.group()
def redis() -> None:
    """Redis: RDB snapshot backup, list, verify, restore."""


def _target(obj: CliContext, url: str | None) -> tuple[Settings, RedisTarget]:
    from backup_engine.redis.target import RedisTarget

    settings = obj.settings(**{"redis.url": url})
    if not settings.redis.url:
        raise ConfigError(
            "no Redis server configured", hint="set [redis] url, REDIS_URL or pass --url"
        )
    return settings, RedisTarget(settings.redis.url)


@redis.command()
@url_option
@progress_option
@json_option
@click.pass_obj
def backup(obj: CliContext, url: str | None, no_progress: bool, json_output: bool) -> None:
    """Fetch the server's RDB snapshot over the network and store it, manifest last."""
    from backup_engine.redis.backup import take_redis_backup

    settings, target = _target(obj, url)
    manifest = take_redis_backup(
        settings.open_write_storage(),
        settings.compression.get(),
        target,
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
    )
    if json_output:
        emit_json(manifest.to_dict())
        return
    keys = sum(manifest.keys.values())
    click.echo(
        f"redis backup {manifest.backup_id} complete: {keys} keys, "
        f"{human_bytes(manifest.raw_bytes)} RDB, {human_bytes(manifest.stored_bytes)} stored"
    )


@redis.command(name="list")
@json_option
@click.pass_obj
def list_backups(obj: CliContext, json_output: bool) -> None:
    """List complete Redis backups, oldest first."""
    from backup_engine.pins import read_pins
    from backup_engine.redis.manifest import REDIS_BACKUPS

    storage = obj.settings().open_storage()
    storage.check()
    show_catalog(
        REDIS_BACKUPS.list(storage),
        repository=storage.url,
        what="Redis backups",
        headers=("BACKUP ID", "STOPPED (UTC)", "KEYS", "RDB", "STORED", "REDIS", "SOURCE"),
        row=lambda m: (
            m.backup_id,
            stopped(m.stop_time),
            str(sum(m.keys.values())),
            human_bytes(m.raw_bytes),
            human_bytes(m.stored_bytes),
            m.redis_version,
            m.source,
        ),
        json_output=json_output,
        pins=read_pins(storage, "redis"),
    )


@redis.command()
@click.argument("backup_id", metavar="ID|latest")
@json_option
@click.pass_obj
def verify(obj: CliContext, backup_id: str, json_output: bool) -> None:
    """Check the snapshot's sha256 and have redis-check-rdb read all of it."""
    import shutil
    import tempfile

    from backup_engine.redis.restore import restore_to_dir

    storage = obj.settings().open_storage()
    scratch = Path(tempfile.mkdtemp(prefix="verify-redis-"))
    try:
        result = restore_to_dir(storage, backup_id, scratch / "data", verify=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if json_output:
        emit_json({"backup_id": result.backup_id, "ok": True, "rdb_bytes": result.rdb_bytes})
        return
    click.echo(
        f"redis backup {result.backup_id} OK: sha256 matches, redis-check-rdb passed "
        f"({format_duration(result.seconds)})"
    )


@redis.command()
@click.argument("backup_id", metavar="ID|latest")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write dump.rdb into this (empty) directory, for a new server started with --dir.",
)
@click.option("--into", "into_url", help="Copy every key into this running, empty server.")
@click.option("--force", is_flag=True, help="--dir: move contents aside; --into: overwrite keys.")
@json_option
@click.pass_obj
def restore(
    obj: CliContext,
    backup_id: str,
    directory: Path | None,
    into_url: str | None,
    force: bool,
    json_output: bool,
) -> None:
    """Restore a snapshot into a data directory (--dir) or a running server (--into)."""
    from backup_engine.redis.restore import restore_into_server, restore_to_dir
    from backup_engine.redis.target import RedisTarget
    from backup_engine.servers.local_redis import LocalRedisBackend

    if (directory is None) == (into_url is None):
        raise UsageError("give exactly one of --dir and --into")
    storage = obj.settings().open_storage()
    if directory is not None:
        result = restore_to_dir(storage, backup_id, directory, force=force)
    else:
        assert into_url is not None
        with LocalRedisBackend() as scratch:
            result = restore_into_server(
                storage, backup_id, RedisTarget(into_url), scratch, force=force
            )
    if json_output:
        emit_json(
            {
                "backup_id": result.backup_id,
                "destination": result.destination,
                "rdb_bytes": result.rdb_bytes,
                "keys": result.keys,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    what = f"{result.keys} keys" if result.keys is not None else human_bytes(result.rdb_bytes)
    click.echo(
        f"restored redis backup {result.backup_id} into {result.destination}: {what}, "
        f"in {format_duration(result.seconds)}"
    )
