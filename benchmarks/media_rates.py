"""Media backups side by side with restic, in one run: file:// / local and the embedded S3.

Builds a tree of FILES small files (random bytes, 1-40 KB, as user uploads are: already
compressed) plus LARGE files of 64 MB, then for each tool and store times, as separate processes
(peak RSS from the kernel for that child):

  first backup; second backup after 2 files changed (one small rewritten, one large appended);
  restore of the second snapshot into an empty directory (checked byte-identical);

and prints seconds, peak RSS, objects in the repository and repository bytes, with our time
over restic's. restic (Debian package `restic`) is skipped with a line when it is missing.
These are figures, not assertions.

    .venv/bin/python benchmarks/media_rates.py                 # FILES=20000 LARGE=4
    FILES=200000 LARGE=0 MAX_BYTES=2000 STORES=file,s3 .venv/bin/python benchmarks/media_rates.py
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3server import bench_s3

from backup_engine.drill.embedded_s3 import LoopbackS3

FILES = int(os.environ.get("FILES", "20000"))
LARGE = int(os.environ.get("LARGE", "4"))
MAX_BYTES = int(os.environ.get("MAX_BYTES", "40000"))  # small files: 1/40 of this up to this
STORES = os.environ.get("STORES", "file,s3").split(",")
PASSWORD = "benchmark-only"


@dataclass
class Row:
    tool: str
    store: str
    step: str
    seconds: float
    rss_mb: float
    objects: int = 0
    stored_mb: float = 0.0


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS. The RSS comes from GNU time (Debian package `time`): the kernel
    charges a child forked from this process (which holds the embedded S3 server) with this
    process's RSS at exec, so wait4's figure would be ours, not the tool's."""
    with tempfile.NamedTemporaryFile("r") as rss:
        timer = (
            ["/usr/bin/time", "-f", "%M", "-o", rss.name] if Path("/usr/bin/time").exists() else []
        )
        started = time.monotonic()
        done = subprocess.run([*timer, *argv], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)  # fmt: skip
        seconds = time.monotonic() - started
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace")
            raise SystemExit(f"{' '.join(argv[:4])} ... failed: {err.strip()[-600:]}")
        peak = rss.read().strip().splitlines()
    return seconds, int(peak[-1]) / 1024 if peak and peak[-1].isdigit() else float("nan")


def build_tree(root: Path) -> int:
    rng = __import__("random").Random(18)
    total = 0
    for n in range(FILES):
        folder = root / f"users/{n % 500:04d}/{n // 500 % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(MAX_BYTES // 40, MAX_BYTES)
        (folder / f"upload-{n:07d}.jpg").write_bytes(os.urandom(size))
        total += size
    for n in range(LARGE):
        with (root / f"video-{n}.mp4").open("wb") as fh:
            for _ in range(64):
                fh.write(os.urandom(1 << 20))
        total += 64 << 20
    return total


def change_two(root: Path) -> None:
    small = next((root / "users").rglob("*.jpg"))
    small.write_bytes(os.urandom(small.stat().st_size))
    large = root / "video-0.mp4"
    if large.exists():
        with large.open("ab") as fh:
            fh.write(os.urandom(1 << 20))
    else:
        next(p for p in (root / "users").rglob("*.jpg") if p != small).write_bytes(b"changed")


def same_tree(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return names == theirs and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def local_usage(path: Path) -> tuple[int, float]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files) / 1e6


def s3_usage(s3: LoopbackS3, prefix: str) -> tuple[int, float]:
    client = s3.storage().client
    count, size = 0, 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            count += 1
            size += item["Size"]
    return count, size / 1e6


def run_tool(tool: str, store: str, tree: Path, work: Path, s3: LoopbackS3 | None) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "AWS_"))}
    if s3 is not None:
        env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_ENDPOINT_URL=s3.endpoint_url, AWS_DEFAULT_REGION="us-east-1",
                   AWS_REGION="us-east-1")  # fmt: skip
        options = s3.options()
        env.update(AWS_ACCESS_KEY_ID=options.access_key_id or "",
                   AWS_SECRET_ACCESS_KEY=options.secret_access_key or "")  # fmt: skip
    repo_dir = work / f"{tool}-{store}-repo"
    prefix = f"{tool}-{store}"
    engine = [str(Path(sys.executable).parent / "backup-engine")]
    if tool == "ours":
        repo = f"file://{repo_dir}" if store == "file" else f"s3://{s3.bucket}/{prefix}"  # type: ignore[union-attr]
        backup = [*engine, "--repo", repo, "media", "backup", "--path", str(tree), "--no-progress"]
        restore = [*engine, "--repo", repo, "media", "restore", "latest", "--to"]
        repo_dir.mkdir()
    else:
        env["RESTIC_PASSWORD"] = PASSWORD
        repo = str(repo_dir) if store == "file" else f"s3:{s3.endpoint_url}/{s3.bucket}/{prefix}"  # type: ignore[union-attr]
        subprocess.run(["restic", "-r", repo, "init"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        backup = ["restic", "-r", repo, "backup", "--quiet", str(tree)]
        restore = ["restic", "-r", repo, "restore", "latest", "--target"]
    rows = []

    def usage() -> tuple[int, float]:
        return local_usage(repo_dir) if store == "file" else s3_usage(s3, prefix)  # type: ignore[arg-type]

    seconds, rss = measured(backup, env)
    rows.append(Row(tool, store, "first backup", seconds, rss, *usage()))
    change_two(tree)
    seconds, rss = measured(backup, env)
    rows.append(Row(tool, store, "second backup", seconds, rss, *usage()))
    out = work / f"{tool}-{store}-out"
    seconds, rss = measured([*restore, str(out)], env)
    restored = out if tool == "ours" else out / tree.relative_to("/")
    same = same_tree(tree, restored)
    rows.append(Row(tool, store, "restore" + ("" if same else " (DIFFERS)"), seconds, rss))
    shutil.rmtree(out)
    return rows


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="media-bench-"))
    tree = work / "tree"
    print(f"building {FILES} small files + {LARGE} x 64 MB in {tree} ...", flush=True)
    total = build_tree(tree)
    print(f"tree: {total / 1e6:.0f} MB", flush=True)
    tools = ["ours"] + (["restic"] if shutil.which("restic") else [])
    if "restic" not in tools:
        print("restic not installed (apt-get install restic): its rows are left out")
    rows: list[Row] = []
    with bench_s3(bucket="bench") as s3:
        for store in STORES:
            for tool in tools:
                pristine = work / "pristine"
                shutil.copytree(tree, pristine, symlinks=True)  # each tool sees the same change
                rows += run_tool(tool, store, tree, work, s3 if store == "s3" else None)
                shutil.rmtree(tree)
                pristine.rename(tree)
    print(f"\n{'tool':7} {'store':5} {'step':14} {'seconds':>8} {'RSS MB':>7} {'objects':>8} "
          f"{'repo MB':>8}  ours/restic")  # fmt: skip
    restic = {(r.store, r.step): r.seconds for r in rows if r.tool == "restic"}
    for r in rows:
        ratio = ""
        if r.tool == "ours" and restic.get((r.store, r.step)):
            ratio = f"{r.seconds / restic[(r.store, r.step)]:.2f}x"
        objects = f"{r.objects:8d}" if r.objects else " " * 8
        stored = f"{r.stored_mb:8.0f}" if r.stored_mb else " " * 8
        print(f"{r.tool:7} {r.store:5} {r.step:14} {r.seconds:8.2f} {r.rss_mb:7.0f} {objects} "
              f"{stored}  {ratio}")  # fmt: skip
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
