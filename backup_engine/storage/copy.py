"""`storage copy --from 1 --to 2`: fill a repository from another, object by object.

A new second repository, one that missed segments while `acknowledge = "any"` let it, or a
copy of a repository before it is retired: every object the target lacks is streamed from the
source (through each one's own encryption and Object Lock), with its metadata, never staged.
Objects the target holds are left as they are (repository keys are written once: a backup id,
a WAL name). Manifests go last, each after the files it names, so a reader of the target never
sees a backup whose files are still on the way; locks (held by running commands) are not data
and are not copied. Run twice, the second run copies nothing. An object that is not the size
its source reported (changed while copied) is never committed in the target; `pg verify --repo
N` then checks content against the manifests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from backup_engine.errors import CorruptObject, ObjectExists
from backup_engine.progress import Progress
from backup_engine.storage.base import ObjectInfo, Storage

CHUNK = 1 << 20
MANIFESTS = ("backup.json", "snapshot.json")  # what makes a backup visible: after its files


@dataclass
class CopyReport:
    copied: list[str] = field(default_factory=list)
    bytes: int = 0
    present: int = 0  # already in the target

    def to_dict(self) -> dict[str, object]:
        return {"copied": len(self.copied), "bytes": self.bytes, "present": self.present,
                "keys": self.copied}  # fmt: skip


def plan_copy(
    source: Storage, target: Storage, *, skip: tuple[str, ...] = ()
) -> tuple[list[ObjectInfo], int]:
    """What the target lacks, manifests last, but keys under `skip` (locks: not data); and how
    many it already holds."""
    held = {info.key for info in target.list("")}
    missing, present = [], 0
    for info in source.list(""):
        if info.key.startswith(skip):
            continue
        if info.key in held:
            present += 1
        else:
            missing.append(info)
    missing.sort(key=lambda info: (info.key.rsplit("/", 1)[-1] in MANIFESTS, info.key))
    return missing, present


def copy_objects(
    source: Storage, target: Storage, objects: Iterable[ObjectInfo], progress: Progress
) -> CopyReport:
    report = CopyReport()
    for info in objects:
        exact = source.stat(info.key)  # listings carry no metadata
        try:
            with (
                progress.task(f"copy {info.key}", exact.size) as task,
                source.open_reader(info.key) as raw,
                target.writer(info.key, metadata=exact.metadata, if_absent=True) as out,
            ):
                while chunk := raw.read(CHUNK):
                    if out.size + len(chunk) > exact.size:  # changing under us: never stored
                        raise _changed(info.key, exact.size)
                    out.write(chunk)
                    task.advance(len(chunk))
                if out.size != exact.size:
                    raise _changed(info.key, exact.size)
                stored = out.commit()
        except ObjectExists:  # written meanwhile (a backup running): the target has it
            report.present += 1
            continue
        report.copied.append(info.key)
        report.bytes += stored.size
    return report


def _changed(key: str, size: int) -> CorruptObject:
    return CorruptObject(
        f"{key} in the source is not the {size} bytes it held when listed (changed while copied); "
        "nothing was stored for it: run the copy again"
    )
