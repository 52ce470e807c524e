"""`[repository] ca_bundle`: an S3 endpoint behind TLS signed by a private CA (a TLS proxy in
front of the embedded S3 server, with a CA made for the test)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backup_engine.config import load_settings
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.errors import BackupEngineError, ConfigError


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificates(where: Path) -> tuple[Path, Path, Path]:
    """A private CA, and a server certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = where / "ca.pem", where / "server.pem", where / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return paths


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def tls_endpoint(
    tmp_path: Path, embedded_s3: EmbeddedS3, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # boto3's own lookup
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    ca, cert, key = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    backend = int(embedded_s3.endpoint_url.rsplit(":", 1)[1])

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                client = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()  # a client that refused our certificate
                continue
            upstream = socket.create_connection(("127.0.0.1", backend))
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{port}", ca
    listener.close()


def _settings(tmp_path: Path, endpoint: str, bucket: str, ca: Path | None) -> object:
    line = f'ca_bundle = "{ca}"\n' if ca else ""
    config = tmp_path / "backup-engine.toml"
    config.write_text(
        f'[repository]\nurl = "s3://{bucket}/tls"\nendpoint_url = "{endpoint}"\n{line}'
        'region = "us-east-1"\n'
    )
    return load_settings(config, env={})


def test_a_private_ca_is_trusted_only_when_configured(
    tmp_path: Path, tls_endpoint: tuple[str, Path], embedded_s3: EmbeddedS3
) -> None:
    endpoint, ca = tls_endpoint
    trusted = _settings(tmp_path, endpoint, embedded_s3.bucket, ca).open_storage()  # type: ignore[attr-defined]
    trusted.put_bytes("hello", b"over TLS")
    assert trusted.get_bytes("hello") == b"over TLS"
    assert trusted.environment()["AWS_CA_BUNDLE"] == str(ca)  # archive_command gets it too
    untrusted = _settings(tmp_path, endpoint, embedded_s3.bucket, None).open_storage()  # type: ignore[attr-defined]
    with pytest.raises(BackupEngineError) as refused:
        untrusted.check()
    assert "TLS certificate of the S3 endpoint" in refused.value.one_line()
    assert "set [repository] ca_bundle" in refused.value.one_line()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), (b"not a certificate", "holds no PEM certificate")],
)
def test_a_bad_ca_bundle_is_one_clear_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    settings = _settings(tmp_path, "https://s3.internal", "bucket", bundle)
    with pytest.raises(ConfigError, match=message) as bad:
        settings.open_storage()  # type: ignore[attr-defined]
    assert "ca_bundle" in bad.value.one_line()
    # A plain-http endpoint (MinIO, the embedded server) never uses it, as boto3 never does:
    # a stray AWS_CA_BUNDLE from the host must not break it (it once broke the compose drill).
    _settings(tmp_path, "http://minio:9000", "bucket", bundle).open_storage()  # type: ignore[attr-defined]
