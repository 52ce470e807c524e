from __future__ import annotations

import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.postgres.tarstream import TarMemberCapture

names = st.text("abcdefgh/_.", min_size=1, max_size=150).filter(
    lambda n: not n.startswith("/") and "//" not in n and not n.endswith("/")
)


def _tar(members: dict[str, bytes], fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@settings(max_examples=80, deadline=None)
@given(
    members=st.dictionaries(names, st.binary(max_size=1500), min_size=1, max_size=6),
    chunk=st.integers(1, 2000),
    fmt=st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
    data=st.data(),
)
def test_captures_wanted_members_from_any_chunking(
    members: dict[str, bytes], chunk: int, fmt: int, data: st.DataObject
) -> None:
    if fmt == tarfile.USTAR_FORMAT:
        members = {n: b for n, b in members.items() if len(n) <= 100}
    wanted = set(data.draw(st.sets(st.sampled_from(sorted(members)))) if members else set())
    blob = _tar(members, fmt)
    capture = TarMemberCapture(wanted)
    for start in range(0, len(blob), chunk):
        capture.feed(blob[start : start + chunk])
    assert capture.captured == {name: members[name] for name in wanted}


def test_ustar_prefix_names_are_joined() -> None:
    long_name = "d" * 120 + "/backup_label"
    capture = TarMemberCapture({long_name})
    capture.feed(_tar({long_name: b"START WAL LOCATION"}, tarfile.USTAR_FORMAT))
    assert capture.captured[long_name] == b"START WAL LOCATION"
