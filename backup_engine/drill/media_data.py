"""A media tree for drills: nested folders, binary files, a large file, unicode names, a
symlink, an empty directory and odd permissions."""

from __future__ import annotations

import os
import random
from pathlib import Path

LARGE_FILE_MB = 20


def make_media_tree(root: Path, *, seed: int = 7, large_mb: int = LARGE_FILE_MB) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for user in range(1, 6):
        folder = root / "users" / f"{user:04d}" / "avatars"
        folder.mkdir(parents=True)
        for n in range(3):
            (folder / f"avatar-{n}.png").write_bytes(rng.randbytes(rng.randint(1_000, 60_000)))
    docs = root / "documents" / "2026" / "11"
    docs.mkdir(parents=True)
    (docs / "invoice-0001.pdf").write_bytes(b"%PDF-1.7\n" + rng.randbytes(30_000))
    (docs / "notes.txt").write_text("plain text, repeated\n" * 500)
    unicode_dir = root / "téléchargements" / "日本語"
    unicode_dir.mkdir(parents=True)
    (unicode_dir / "résumé \u2013 final (1).docx").write_bytes(rng.randbytes(12_345))
    (unicode_dir / "émoji 🎉.txt").write_text("🎉" * 100)
    with (root / "videos-large.bin").open("wb") as fh:  # written in chunks: never whole in RAM
        for _ in range(large_mb):
            fh.write(rng.randbytes(1 << 20))
    (root / "empty-folder").mkdir()
    (root / "empty-file").write_bytes(b"")
    secret = root / "private.key"
    secret.write_text("not really a key\n")
    secret.chmod(0o600)
    os.symlink("documents/2026/11/notes.txt", root / "latest-notes")
    (root / "duplicate-of-notes.txt").write_text("plain text, repeated\n" * 500)
