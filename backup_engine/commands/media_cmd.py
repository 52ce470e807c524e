"""`backup-engine media ...`: incremental, content-addressed snapshots of upload directories."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from backup_engine import logs
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

if TYPE_CHECKING:
    from backup_engine.media.manifest import MediaSnapshotManifest


@click.group()
def media() -> None:
    """Media files: snapshot backup, list, verify, restore."""


@media.command()
@click.option(
    "--path",
    "roots",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The directory to snapshot (repeatable); default: [media] paths of the configuration.",
)
@progress_option
@json_option
@click.pass_obj
def backup(obj: CliContext, roots: tuple[Path, ...], no_progress: bool, json_output: bool) -> None:
    """Snapshot directories: new content packed and uploaded once, unchanged files not read."""
    from backup_engine.errors import UsageError
    from backup_engine.kinds import media_snapshots

    settings = obj.settings()
    roots = roots or tuple(Path(p) for p in settings.media.paths)
    if not roots:
        raise UsageError(
            "no directory to snapshot",
            hint="pass --path DIR, or list directories in [media] paths of the configuration",
        )
    progress = obj.progress(json_output=json_output, enabled=not no_progress)
    for root in roots:
        taken = media_snapshots(settings, root, progress)
        manifest = taken[0][1]
        if json_output:
            emit_json(_summary(manifest))
            continue
        click.echo(
            f"media snapshot {manifest.backup_id} of {root} complete: {manifest.file_count} "
            f"files, {human_bytes(manifest.total_bytes)}; new: {manifest.new_objects} blobs, "
            f"{human_bytes(manifest.new_bytes)} stored"
        )
        for skipped in manifest.skipped:  # never dropped silently
            logs.warning(f"skipped {skipped.path}: {skipped.reason}", path=skipped.path)


@media.command(name="list")
@json_option
@click.pass_obj
def list_snapshots(obj: CliContext, json_output: bool) -> None:
    """List complete media snapshots, oldest first."""
    from backup_engine.media.manifest import MEDIA_SNAPSHOTS
    from backup_engine.pins import read_pins

    storage = obj.settings().open_storage()
    storage.check()
    show_catalog(
        MEDIA_SNAPSHOTS.list(storage),
        repository=storage.url,
        what="media snapshots",
        headers=("SNAPSHOT", "STOPPED (UTC)", "FILES", "SIZE", "NEW", "SOURCE"),
        row=lambda m: (
            m.backup_id,
            stopped(m.stop_time),
            str(m.file_count),
            human_bytes(m.total_bytes),
            human_bytes(m.new_bytes),
            m.source,
        ),
        json_output=json_output,
        pins=read_pins(storage, "media"),
        as_dict=_summary,
    )


def _summary(manifest: MediaSnapshotManifest) -> dict[str, Any]:
    """A snapshot without its (possibly huge) list of entries."""
    data = manifest.to_dict()
    data.pop("entries")
    data.update(file_count=manifest.file_count, total_bytes=manifest.total_bytes)
    return data


@media.command()
@click.argument("backup_id", metavar="ID|latest")
@progress_option
@json_option
@click.pass_obj
def verify(obj: CliContext, backup_id: str, no_progress: bool, json_output: bool) -> None:
    """Every object a snapshot refers to exists and matches its sha256."""
    from backup_engine.media.restore import verify_media

    settings = obj.settings()
    result = verify_media(
        settings.open_storage(),
        backup_id,
        concurrency=settings.media.concurrency,
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
    )
    if json_output:
        emit_json({"backup_id": result.backup_id, "ok": True, "objects": result.objects})
        return
    click.echo(
        f"media snapshot {result.backup_id} OK: {result.objects} blobs match their sha256 "
        f"({format_duration(result.seconds)})"
    )


@media.command()
@click.argument("backup_id", metavar="ID|latest")
@click.option(
    "--to",
    "destination",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to restore into; must be empty or not exist.",
)
@click.option(
    "--include",
    "include",
    multiple=True,
    metavar="PATTERN",
    help="Restore only entries matching this path (or below a matching folder), e.g. "
    "'users/0042' or 'photos/2026-*' (repeatable).",
)
@click.option("--force", is_flag=True, help="Move a non-empty --to aside first (never deleted).")
@click.option(
    "--keep-setid",
    is_flag=True,
    help="Restore setuid/setgid bits too (dropped by default: the repository is untrusted).",
)
@progress_option
@json_option
@click.pass_obj
def restore(
    obj: CliContext,
    backup_id: str,
    destination: Path,
    include: tuple[str, ...],
    force: bool,
    keep_setid: bool,
    no_progress: bool,
    json_output: bool,
) -> None:
    """Restore a snapshot: every file byte-identical, with its mode and modification time.

    Nothing is written outside --to, whatever the snapshot says. An object that is missing or
    damaged is named and skipped; everything else is restored, and the exit code is 4.
    """
    from backup_engine.media.restore import restore_media

    settings = obj.settings()
    result = restore_media(
        settings.open_storage(),
        backup_id,
        destination,
        force=force,
        keep_setid=keep_setid,
        include=include,
        concurrency=settings.media.concurrency,
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
    )
    if json_output:
        emit_json(
            {
                "backup_id": result.backup_id,
                "destination": str(result.destination),
                "files": result.files,
                "bytes": result.bytes,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    click.echo(
        f"restored media snapshot {result.backup_id} into {result.destination}: "
        f"{result.files} files, {human_bytes(result.bytes)}, in {format_duration(result.seconds)}"
    )
