"""Which Redis server to back up or restore into: a URL, as redis-py and redis-cli take it.

`redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS (with `ssl_ca_certs` /
`ssl_cert_reqs` query options, as redis-py reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import ParseResult, parse_qs, unquote, urlparse

import redis
from redis.connection import parse_url

from backup_engine.errors import ConfigError, ServerUnreachable


@dataclass(frozen=True)
class RedisTarget:
    url: str

    def __post_init__(self) -> None:
        if urlparse(self.url).scheme not in ("redis", "rediss"):
            raise ConfigError(
                f"bad Redis URL {self.describe()!r}",
                hint="use redis://[:password@]host:port[/db] or rediss:// for TLS",
            )

    @property
    def _parsed(self) -> ParseResult:
        return urlparse(self.url)

    @property
    def host(self) -> str:
        return self._parsed.hostname or "localhost"

    @property
    def port(self) -> int:
        return self._parsed.port or 6379

    @property
    def tls(self) -> bool:
        return bool(self._parsed.scheme == "rediss")

    @property
    def username(self) -> str | None:
        return unquote(self._parsed.username) if self._parsed.username else None

    @property
    def password(self) -> str | None:
        return unquote(self._parsed.password) if self._parsed.password else None

    @property
    def ca_file(self) -> str | None:
        values = parse_qs(self._parsed.query).get("ssl_ca_certs")
        return values[0] if values else None

    def describe(self) -> str:
        """host:port without credentials, for messages."""
        parsed = urlparse(self.url)
        return f"{parsed.scheme}://{parsed.hostname or 'localhost'}:{parsed.port or 6379}"

    def client(self, db: int | None = None) -> redis.Redis:
        """A client for the URL's database, or for `db` on the same server."""
        options = parse_url(self.url)
        if db is not None:
            options["db"] = db
        options.setdefault("socket_connect_timeout", 10)
        options.setdefault("socket_timeout", 60)
        return redis.Redis(connection_pool=redis.ConnectionPool(**options))

    def check(self) -> redis.Redis:
        client = self.client()
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise ServerUnreachable(
                f"Redis at {self.describe()} refused the credentials: {exc}"
            ) from None
        except redis.RedisError as exc:
            raise ServerUnreachable(
                f"cannot connect to Redis at {self.describe()}: {exc}",
                hint="check the URL ([redis] url, --url) and that the server runs",
            ) from None
        return client
