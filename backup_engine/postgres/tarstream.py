"""Pick small members out of a tar stream as it flows past, without buffering the stream.

pg_basebackup writes `backup_label` near the start of its tar output and `backup_manifest` at
the very end. The backup pipeline reads those two from the same bytes it compresses and uploads,
so the backup is read exactly once.
"""

from __future__ import annotations

from backup_engine.errors import CommandFailed

BLOCK = 512


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").lstrip(b" ")
    return int(text, 8) if text else 0


class TarMemberCapture:
    """Feed it the tar stream in chunks of any size; read `captured` at the end."""

    def __init__(self, wanted: set[str], *, max_member_size: int = 256 * 1024 * 1024) -> None:
        self.wanted = wanted
        self.max_member_size = max_member_size
        self.captured: dict[str, bytes] = {}
        self.members = 0
        self._header = bytearray()
        self._skip = 0  # bytes of member data + padding still to pass over
        self._take = 0  # of those, bytes to keep
        self._name: str | None = None
        self._data = bytearray()

    def feed(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while view:
            if self._skip:
                n = min(self._skip, len(view))
                if self._take:
                    keep = min(self._take, n)
                    self._data += view[:keep]
                    self._take -= keep
                self._skip -= n
                view = view[n:]
                if not self._skip and self._name is not None:
                    self.captured[self._name] = bytes(self._data)
                    self._name = None
                    self._data.clear()
                continue
            need = BLOCK - len(self._header)
            self._header += view[:need]
            view = view[need:]
            if len(self._header) == BLOCK:
                self._start_member(bytes(self._header))
                self._header.clear()

    def _start_member(self, header: bytes) -> None:
        if header == b"\0" * BLOCK:
            return  # end-of-archive padding
        name = header[0:100].split(b"\0", 1)[0].decode(errors="replace")
        if header[257:262] == b"ustar" and header[345] != 0:
            prefix = header[345:500].split(b"\0", 1)[0].decode(errors="replace")
            name = f"{prefix}/{name}"
        size = _octal(header[124:136])
        typeflag = header[156:157]
        self.members += 1
        self._skip = -(-size // BLOCK) * BLOCK
        if name in self.wanted and typeflag in (b"0", b"\0"):
            if size > self.max_member_size:
                raise CommandFailed(
                    f"tar member {name} is larger than {self.max_member_size} bytes"
                )
            self._name = name
            self._take = size
            if size == 0:
                self.captured[name] = b""
                self._name = None
