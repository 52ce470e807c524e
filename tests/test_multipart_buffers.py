"""The multipart writer's part buffers: filled in place, uploaded without a copy, filled again
once their upload returns. A stand-in client copies each body when it is sent, as a socket
does, so a buffer refilled too early would show up as wrong bytes in the assembled object."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.storage import s3_transfer
from backup_engine.storage.s3_options import S3Options
from backup_engine.storage.s3_transfer import MultipartWriter

_T = TypeVar("_T")


class RecordingClient:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.parts: dict[int, bytes] = {}
        self.bodies: set[int] = set()  # the buffers sent, by identity
        self.objects: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def create_multipart_upload(self, **_: Any) -> dict[str, str]:
        return {"UploadId": "u1"}

    def upload_part(self, *, PartNumber: int, Body: bytes | bytearray, **_: Any) -> dict[str, str]:
        sent = bytes(Body)
        time.sleep(self.delay)  # in flight: the writer goes on filling other buffers meanwhile
        with self.lock:
            self.parts[PartNumber] = sent
            self.bodies.add(id(Body))
        return {"ETag": f"e{PartNumber}"}

    def complete_multipart_upload(self, *, Key: str, MultipartUpload: Any, **_: Any) -> None:
        numbers = [p["PartNumber"] for p in MultipartUpload["Parts"]]
        assert numbers == list(range(1, len(numbers) + 1))
        self.objects[Key] = b"".join(self.parts[n] for n in numbers)

    def put_object(self, *, Key: str, Body: bytes, **_: Any) -> None:
        self.objects[Key] = bytes(Body)


class Target:
    url = "s3://b"
    bucket = "b"

    def __init__(self, part_size: int, concurrency: int, delay: float) -> None:
        self.options = S3Options(part_size=part_size, max_concurrency=concurrency)
        self.client = RecordingClient(delay)

    def call(self, what: str, key: str | None, fn: Callable[[], _T]) -> _T:
        return fn()

    def full_key(self, key: str) -> str:
        return key

    def lock_args(self, key: str) -> dict[str, Any]:
        return {}  # no Object Lock: tests/test_object_lock.py covers the locked writes

    def confirm_lock(self, key: str, args: Mapping[str, Any]) -> None:
        assert not args


def _upload(target: Target, chunks: list[bytes]) -> bytes:
    writer = MultipartWriter(target, "k", metadata=None, if_absent=False)  # type: ignore[arg-type]
    for chunk in chunks:
        writer.write(chunk)
    writer.commit()
    return target.client.objects["k"]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), max_size=40),
    concurrency=st.integers(1, 3),
    delay=st.sampled_from([0.0, 0.002]),
)
def test_the_object_is_the_bytes_written_whatever_the_pieces(
    sizes: list[int], concurrency: int, delay: float
) -> None:
    chunks = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    target = Target(part_size=64, concurrency=concurrency, delay=delay)
    assert _upload(target, chunks) == b"".join(chunks)
    parts = target.client.parts
    assert all(len(parts[n]) == 64 for n in sorted(parts)[:-1])  # every part but the last full


def test_part_buffers_are_reused_not_made_per_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_transfer, "PARTS_PER_DOUBLING", 1000)
    target = Target(part_size=1024, concurrency=2, delay=0.001)
    data = bytes(range(256)) * 4 * 40  # 40 full parts
    assert _upload(target, [data[i : i + 100] for i in range(0, len(data), 100)]) == data
    # two in flight and one filling: three buffers serve all 40 parts
    assert len(target.client.bodies) <= 3


def test_parts_double_and_the_bytes_stay_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_transfer, "PARTS_PER_DOUBLING", 3)
    target = Target(part_size=32, concurrency=2, delay=0.0)
    data = bytes(i % 256 for i in range(32 * 3 + 64 * 3 + 128 * 2 + 5))
    assert _upload(target, [data[i : i + 7] for i in range(0, len(data), 7)]) == data
    sizes = [len(target.client.parts[n]) for n in sorted(target.client.parts)]
    assert sizes == [32, 32, 32, 64, 64, 64, 128, 128, 5]


def test_a_small_object_is_one_put_without_a_whole_part() -> None:
    target = Target(part_size=8 << 20, concurrency=4, delay=0.0)
    writer = MultipartWriter(target, "k", metadata=None, if_absent=False)  # type: ignore[arg-type]
    writer.write(b"hello")
    assert len(writer._part) < 1024  # grown as written, not a part's 8 MiB up front
    writer.commit()
    assert target.client.objects["k"] == b"hello" and not target.client.parts
