"""The embedded default store: moto's S3 server on loopback, so drills need no cloud account.

It speaks the real S3 protocol over HTTP, so the same botocore code paths run as against AWS or
MinIO. It keeps objects in memory: fine for drills, not a place to keep real backups.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from backup_engine.errors import MissingBinary
from backup_engine.net import free_port
from backup_engine.storage.s3 import S3Options, S3Storage, make_client

EMBEDDED_ACCESS_KEY = "restore-drill"
EMBEDDED_SECRET_KEY = "restore-drill-secret"
EMBEDDED_REGION = "us-east-1"


class LoopbackS3:
    """What every embedded S3 server shares: a bucket on a free loopback port, the drill's own
    credentials, `with Server() as s3:` and `s3.storage(prefix)`. Subclasses start and stop."""

    def __init__(self, bucket: str = "restore-drill") -> None:
        self.bucket = bucket
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"

    def options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint_url,
            region=EMBEDDED_REGION,
            access_key_id=EMBEDDED_ACCESS_KEY,
            secret_access_key=EMBEDDED_SECRET_KEY,
        )

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def storage(self, prefix: str = "") -> S3Storage:
        return S3Storage(self.bucket, prefix, self.options())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedS3(LoopbackS3):
    """moto's S3 server, in this process: `with EmbeddedS3() as s3: s3.storage(prefix)`."""

    def __init__(self, bucket: str = "restore-drill") -> None:
        super().__init__(bucket)
        self._server: object | None = None

    def start(self) -> Self:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise MissingBinary(
                "the embedded S3 server needs moto",
                hint="pip install 'restore-drill[drill]' or configure a real S3 endpoint",
            ) from exc
        # werkzeug logs every request; a drill's output should show the drill.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._server = server
        make_client(self.options()).create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None
