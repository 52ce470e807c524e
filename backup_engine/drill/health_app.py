"""A tiny application health endpoint backed by a database, for the checklist's "API health"
line: `GET /health/ready` answers 200 when it can query the database, 503 when it cannot.
It stands in for the real application in the embedded default, so the HTTP step is exercised
for real; against a real deployment the same step takes the application's own URL."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

from backup_engine.errors import ServerUnreachable
from backup_engine.postgres.connection import connect

READY_PATH = "/health/ready"


class HealthApp:
    def __init__(self, dsn: str) -> None:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != READY_PATH:
                    self._answer(404, {"error": "not found"})
                    return
                try:
                    with connect(app.dsn) as conn:
                        conn.execute("SELECT 1")
                    self._answer(200, {"status": "ready", "database": "ok"})
                except (ServerUnreachable, psycopg.Error) as exc:
                    self._answer(503, {"status": "unavailable", "error": str(exc)})

            def _answer(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the drill reports what matters

        self.dsn = dsn
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{READY_PATH}"

    def start(self) -> HealthApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
