from __future__ import annotations

import io

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.codecs import get_codec
from backup_engine.errors import ConfigError


def _compress(name: str, chunks: list[bytes], **kwargs: int) -> bytes:
    compressor = get_codec(name, **kwargs).compressor()
    return b"".join(compressor.compress(c) for c in chunks) + compressor.flush()


def _decompress_all(name: str, blob: bytes, read_size: int) -> bytes:
    stream = get_codec(name).open_decompressed(io.BytesIO(blob))
    out = bytearray()
    while piece := stream.read(read_size):
        out += piece
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["zstd", "none"]),
    chunks=st.lists(st.binary(max_size=5000), max_size=8),
    read_size=st.integers(1, 70_000),
)
def test_round_trip_in_any_chunking(name: str, chunks: list[bytes], read_size: int) -> None:
    blob = _compress(name, chunks)
    assert _decompress_all(name, blob, read_size) == b"".join(chunks)


def test_multithreaded_zstd_is_readable_by_the_plain_decoder() -> None:
    data = bytes(range(256)) * 40_000
    assert _decompress_all("zstd", _compress("zstd", [data], threads=2), 1 << 20) == data


def test_decompression_output_is_bounded_by_the_read_size() -> None:
    blob = _compress("zstd", [b"\0" * (64 << 20)])  # 64 MiB of zeros -> a few kB
    stream = get_codec("zstd").open_decompressed(io.BytesIO(blob))
    first = stream.read(1 << 20)
    assert 0 < len(first) <= 1 << 20 and first == bytes(len(first))  # some output, never more
    assert len(blob) < 1 << 20  # and the input really did expand past the read size


def test_damaged_zstd_stream_is_detected() -> None:
    blob = bytearray(_compress("zstd", [bytes(range(256)) * 1000]))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(zstandard.ZstdError):
        _decompress_all("zstd", bytes(blob), 1 << 16)


def test_unknown_codec_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="zstd"):
        get_codec("lzma")
