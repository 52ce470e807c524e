"""A fault-injecting proxy on loopback, in front of an S3 endpoint, for fault drills.

Each client request gets its own upstream connection (the proxy asks both sides for
`Connection: close`), so faults can be decided per request: answer 503 or 500 without
forwarding, drop the connection, or delay it. Rules match on the request line (method, path,
query) and fire a set number of times, or forever.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

HEADER_END = b"\r\n\r\n"
ERROR_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?>"
    b"<Error><Code>{code}</Code><Message>injected fault</Message></Error>"
)
RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close sends a reset
STATUS = {
    503: (b"Service Unavailable", "SlowDown"),
    500: (b"Internal Server Error", "InternalError"),
}


@dataclass
class Rule:
    kind: str  # "503", "500", "drop" or "delay"
    match: str = ""  # substring of the request line, e.g. "partNumber=" or "PUT "
    times: int | None = 1  # None: forever
    delay_s: float = 0.0
    after: int = 0  # let this many matching requests through first
    seen: int = 0

    def fires(self, request_line: str) -> bool:
        if self.match not in request_line:
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.times is None:
            return True
        if self.times > 0:
            self.times -= 1
            return True
        return False


@dataclass
class FaultProxy:
    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # "<fault> <request line>" for each request

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._server.close()
        self._thread.join(timeout=5)

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _decide(self, request_line: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.fires(request_line):
                    self.log.append(f"{rule.kind} {request_line}")
                    return rule
            self.log.append(f"pass {request_line}")
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while HEADER_END not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
            rule = self._decide(request_line)
            if rule is not None and rule.kind == "drop":
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                return  # reset: the client sees the connection die mid-request
            if rule is not None and rule.kind in ("503", "500"):
                reason, code = STATUS[int(rule.kind)]
                body = ERROR_BODY.replace(b"{code}", code.encode())
                client.sendall(
                    b"HTTP/1.1 %s %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n%s" % (rule.kind.encode(), reason, len(body), body)
                )
                return
            if rule is not None and rule.kind == "delay":
                time.sleep(rule.delay_s)
            self._forward(client, _close_after(head))

    def _forward(self, client: socket.socket, head: bytes) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60)
        except OSError:
            return
        with upstream:
            upstream.sendall(head)
            pump = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
            pump.start()
            _pipe(upstream, client)
            pump.join(timeout=60)


def _close_after(head: bytes) -> bytes:
    """Ask for one request per connection, so every request meets the rules afresh."""
    headers, _, rest = head.partition(HEADER_END)
    lines = [line for line in headers.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + HEADER_END + rest


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
