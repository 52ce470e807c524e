"""URLs from configuration: checked before use (one clear line instead of a library's traceback)
and never printed with credentials in them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_S3_BUCKET = re.compile(r"^[A-Za-z0-9._\-]{1,255}$")  # what boto3 accepts (legacy names too)
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@")


_CONNINFO_PASSWORD = re.compile(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def redact(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://***@host`, wherever it appears in `text`;
    and libpq's `password=...` (quoted or not) -> `password=***`."""
    return _CONNINFO_PASSWORD.sub("password=***", _CREDENTIALS.sub(r"\1***@", text))


def _port_problem(url: str) -> str | None:
    try:
        urlsplit(url).port  # noqa: B018 - parsing it is the check
    except ValueError:
        return "its port is not a number from 0 to 65535"
    return None


def repository_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("s3", "file"):
        return "it must start with s3:// (a bucket) or file:// (a local directory)"
    if "@" in parts.netloc:
        return "credentials do not belong in it (use AWS_* variables or a profile)"
    if parts.scheme == "s3" and not _S3_BUCKET.match(parts.netloc):
        return "the bucket name is not a valid S3 bucket name"
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path):
        return "write it as file:///absolute/path"
    return None


def endpoint_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it must look like https://host[:port]"
    if "@" in parts.netloc:
        return "credentials do not belong in it (use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    return _port_problem(url)


def redis_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "it must start with redis://, rediss:// or unix://"
    if parts.scheme != "unix" and not parts.hostname:
        return "it names no host"
    return _port_problem(url)


def ca_bundle_problem(path: str) -> str | None:
    """A CA bundle must be a readable PEM file: found now, not at the first TLS handshake."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    return None if b"-----BEGIN CERTIFICATE-----" in head else "it holds no PEM certificate"
