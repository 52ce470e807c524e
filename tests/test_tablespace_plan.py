"""Where a restore puts tablespaces: every destination a forged manifest or a careless map can
name is refused before anything is written (tablespaces.py), and a manifest whose tablespaces
contradict its files is not a manifest at all."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.errors import CorruptObject, UsageError
from backup_engine.manifests import StoredFile
from backup_engine.postgres.manifest import PROTOCOL, BaseBackupManifest, Tablespace
from backup_engine.postgres.tablespaces import (
    SYSTEM_DIRS,
    TablespaceLinks,
    TablespaceMapping,
    plan_tablespaces,
)

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _manifest(*spaces: tuple[int, str, str]) -> BaseBackupManifest:
    tablespaces = tuple(
        Tablespace(oid, name, where, f"{oid}.tar.zst") for oid, name, where in spaces
    )
    files = (
        StoredFile("base.tar.zst", "postgres/base/x/base.tar.zst", 1, "0" * 64, 1),
        *(
            StoredFile(t.archive, f"postgres/base/x/{t.archive}", 1, "0" * 64, 1)
            for t in tablespaces
        ),
        StoredFile("backup_manifest", "postgres/base/x/backup_manifest", 1, "0" * 64),
    )
    return BaseBackupManifest(
        backup_id="20261206T000000Z", label="x", start_time=NOW, stop_time=NOW,
        start_lsn="0/2000028", stop_lsn="0/2000100", start_wal_file="0" * 24,
        stop_wal_file="0" * 24, timeline=1, pg_version="15.18", pg_version_num=150018,
        system_identifier="1", wal_segment_size=16 << 20, compression="zstd", files=files,
        tool_version="t", source="s", tablespaces=tablespaces, method=PROTOCOL,
    )  # fmt: skip


def test_tablespaces_go_back_where_they_were_or_where_the_map_says(tmp_path: Path) -> None:
    manifest = _manifest(
        (16384, "fast", str(tmp_path / "fast")), (16385, "idx", str(tmp_path / "i"))
    )
    pgdata = tmp_path / "pgdata"
    assert plan_tablespaces(manifest, TablespaceMapping(), pgdata) == {
        16384: tmp_path / "fast",
        16385: tmp_path / "i",
    }
    mapping = TablespaceMapping.parse([f"fast={tmp_path / 'new'}", f"16385={tmp_path / 'n2'}"])
    assert plan_tablespaces(manifest, mapping, pgdata) == {
        16384: tmp_path / "new",
        16385: tmp_path / "n2",
    }
    every = TablespaceMapping(all_under=tmp_path / "all")
    assert plan_tablespaces(manifest, every, pgdata) == {
        16384: tmp_path / "all" / "fast",
        16385: tmp_path / "all" / "idx",
    }


def test_a_map_naming_no_tablespace_of_the_backup_is_refused(tmp_path: Path) -> None:
    manifest = _manifest((16384, "fast", str(tmp_path / "fast")))
    with pytest.raises(UsageError, match=r"names slow, not a tablespace.*its tablespaces: fast"):
        plan_tablespaces(manifest, TablespaceMapping.parse([f"slow={tmp_path}"]), tmp_path / "d")
    for bad in ("fast", "=x", "fast="):
        with pytest.raises(UsageError, match="NAME_OR_OID=/new/directory"):
            TablespaceMapping.parse([bad])


FORGED = [
    "relative/dir",
    "/srv/../etc/cron.d",
    "/etc",
    "/etc/postgresql",
    "/usr/lib/x",
    "/proc/self",
    "/",
    "/boot/fast",
]


@pytest.mark.parametrize("location", FORGED)
def test_a_forged_location_is_refused_as_the_repository_s_fault(
    tmp_path: Path, location: str
) -> None:
    manifest = _manifest((16384, "fast", location))
    with pytest.raises(CorruptObject, match="the backup records tablespace fast"):
        plan_tablespaces(manifest, TablespaceMapping(), tmp_path / "pgdata")


def test_destinations_overlapping_the_data_directory_or_each_other_are_refused(
    tmp_path: Path,
) -> None:
    pgdata = tmp_path / "pgdata"
    cases = [
        ((16384, "a", str(pgdata / "pg_tblspc" / "x")),),  # inside the data directory
        ((16384, "a", str(pgdata)),),  # the data directory itself
        ((16384, "a", str(tmp_path)),),  # above it
        ((16384, "a", str(tmp_path / "t")), (16385, "b", str(tmp_path / "t"))),  # one place
        ((16384, "a", str(tmp_path / "t")), (16385, "b", str(tmp_path / "t" / "u"))),  # nested
    ]
    for spaces in cases:
        with pytest.raises(CorruptObject, match="overlaps"):
            plan_tablespaces(_manifest(*spaces), TablespaceMapping(), pgdata)
    # the same through the operator's map: their mistake (exit 2), not the repository's
    manifest = _manifest((16384, "a", str(tmp_path / "t")))
    with pytest.raises(UsageError, match="overlaps the data directory"):
        plan_tablespaces(manifest, TablespaceMapping.parse([f"a={pgdata}/ts"]), pgdata)


def test_a_symlink_or_a_file_as_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("x")
    pgdata = tmp_path / "pgdata"
    with pytest.raises(CorruptObject, match="is a symbolic link"):
        plan_tablespaces(
            _manifest((16384, "a", str(tmp_path / "link"))), TablespaceMapping(), pgdata
        )
    with pytest.raises(CorruptObject, match="not a directory"):
        plan_tablespaces(
            _manifest((16384, "a", str(tmp_path / "file"))), TablespaceMapping(), pgdata
        )
    # a symlink that leads into the data directory is found through its real path
    os.symlink(pgdata, tmp_path / "into")
    pgdata.mkdir()
    mapping = TablespaceMapping.parse([f"a={tmp_path / 'into'}/ts"])
    with pytest.raises(UsageError, match="overlaps the data directory"):
        plan_tablespaces(_manifest((16384, "a", "/nowhere")), mapping, pgdata)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(min_size=0, max_size=12),
    location=st.text(alphabet="/.ab\0", min_size=0, max_size=16),
)
def test_any_name_under_map_all_stays_under_its_directory(
    tmp_path: Path, name: str, location: str
) -> None:
    """A hostile tablespace name ("..", "a/../../etc", "") never leaves --tablespace-map-all."""
    under = tmp_path / "all"
    manifest = _manifest((16384, name, location or "x"))
    planned = plan_tablespaces(manifest, TablespaceMapping(all_under=under), tmp_path / "pgdata")
    assert planned[16384].parent == under


def test_manifest_tablespaces_must_agree_with_its_files() -> None:
    good = json.loads(_manifest((16384, "fast", "/srv/fast")).to_json())
    forged = []
    twice = json.loads(json.dumps(good))
    twice["tablespaces"].append(dict(twice["tablespaces"][0]))  # two entries for one oid
    forged.append(twice)
    missing = json.loads(json.dumps(good))
    missing["files"] = [f for f in missing["files"] if f["name"] != "16384.tar.zst"]
    forged.append(missing)
    base = json.loads(json.dumps(good))
    base["tablespaces"][0]["archive"] = "base.tar.zst"
    forged.append(base)
    for oid in (0, -1, 1 << 32, "16384", True):
        bad = json.loads(json.dumps(good))
        bad["tablespaces"][0]["oid"] = oid
        forged.append(bad)
    other = json.loads(json.dumps(good))
    other["tablespaces"][0]["archive"] = "16385.tar.zst"  # names another oid's archive
    forged.append(other)
    not_list = json.loads(json.dumps(good))
    not_list["tablespaces"] = {"16384": "x"}
    forged.append(not_list)
    for data in forged:
        with pytest.raises(CorruptObject, match="not a valid backup manifest"):
            BaseBackupManifest.from_json(json.dumps(data), where="backup.json")
    assert BaseBackupManifest.from_json(json.dumps(good), where="x").tablespaces[0].oid == 16384


def test_links_in_the_data_directory_archive_go_where_the_plan_says() -> None:
    links = TablespaceLinks({16384: Path("/restore/fast"), 16385: Path("/restore/idx")}, "base")
    assert links.target("pg_tblspc/16384/", "/etc") == "/restore/fast"  # never where it points
    for name in ("pg_tblspc/99999", "pg_tblspc/16384", "pg_wal", "base/1/x", "pg_tblspc/1/2"):
        with pytest.raises(CorruptObject):  # unlisted, twice, or outside pg_tblspc
            links.target(name, "/etc")
    assert links.missing() == {"pg_tblspc/16385": "/restore/idx"}


def test_the_manifest_round_trips_with_its_tablespaces() -> None:
    manifest = _manifest((16384, "fast", "/srv/fast"))
    again = BaseBackupManifest.from_json(manifest.to_json(), where="x")
    assert again == manifest


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(location=st.text(alphabet="/.etcusrb\0x", min_size=0, max_size=24))
def test_any_recorded_location_is_refused_or_lands_somewhere_safe(
    tmp_path: Path, location: str
) -> None:
    """Whatever a manifest records, the plan is one refusal or an absolute, normalised path
    outside the data directory and the system directories: never a crash."""
    pgdata = tmp_path / "pgdata"
    try:
        planned = plan_tablespaces(_manifest((16384, "a", location)), TablespaceMapping(), pgdata)
    except (CorruptObject, UsageError):
        return
    where = planned[16384]
    assert where.is_absolute() and ".." not in where.parts and where != Path("/")
    assert not where.is_relative_to(pgdata) and not pgdata.is_relative_to(where)
    assert not any(where == s or where.is_relative_to(s) for s in SYSTEM_DIRS)
