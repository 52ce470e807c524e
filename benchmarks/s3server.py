"""The S3 server the benchmarks run against: SeaweedFS (a real S3 server, the drills' default)
unless S3_SERVER=moto asks for moto's Python model, whose speed says little about a real store
(printed once beside SeaweedFS in docs/benchmarks.md so the difference is on record)."""

from __future__ import annotations

import os

from backup_engine.drill.embedded_s3 import EmbeddedS3, LoopbackS3
from backup_engine.drill.seaweedfs import SeaweedS3


def bench_s3(bucket: str = "restore-drill") -> LoopbackS3:
    kind = os.environ.get("S3_SERVER", "seaweedfs")
    if kind not in ("seaweedfs", "moto"):
        raise SystemExit(f"S3_SERVER={kind!r}: use seaweedfs or moto")
    print(f"S3 server: {kind} (S3_SERVER=seaweedfs|moto)", flush=True)
    return SeaweedS3(bucket) if kind == "seaweedfs" else EmbeddedS3(bucket)
