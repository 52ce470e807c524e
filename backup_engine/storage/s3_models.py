"""botocore's data files, loaded lean: every process that opens a bucket parses botocore's S3
model and endpoint tables, and as botocore loads them (OrderedDicts, documentation included,
the endpoint table of every AWS service) they are about 12 MB of the ~60 MB a backup to S3 holds
before its first byte. Here they load as plain dicts with the documentation emptied, and the
endpoint table keeps only the services an S3 client calls, cached trimmed so later processes
never parse the whole table (4.5 MB of transient peak). Addresses and signatures are unchanged
(tested)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import botocore
from botocore.loaders import JSONFileLoader, Loader, create_loader
from botocore.session import Session

# The services whose endpoints an S3 client can need: S3, and the ones credential providers
# call (assumed roles, web identity, SSO). A service missing from the table still resolves
# through its endpoint rules, so trimming it changes no address.
ENDPOINT_SERVICES = frozenset({"s3", "sts", "sso", "sso-oidc", "signin"})

# Prose for humans (docstrings, `help()`). botocore expects the keys in places (client context
# parameters), so the text becomes "" rather than the key going.
_PROSE = frozenset({"documentation", "documentationUrl"})


def _without_prose(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Only string values: a model member could in principle be named like a prose key.
    return {k: "" if k in _PROSE and isinstance(v, str) else v for k, v in pairs}


def trim_endpoints(data: Any) -> Any:
    for partition in data.get("partitions", []):
        services = partition.get("services", {})
        partition["services"] = {
            name: services[name] for name in ENDPOINT_SERVICES & services.keys()
        }
    return data


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backup-engine"


class LeanFileLoader(JSONFileLoader):
    """botocore's JSON loader: plain dicts, prose emptied, a trimmed endpoint table."""

    def _load_file(self, full_path: str, open_method: Callable[..., IO[bytes]]) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            payload = fp.read()
        return json.loads(payload, object_pairs_hook=_without_prose)

    def load_file(self, file_path: str) -> Any:
        if os.path.basename(file_path) != "endpoints":
            return super().load_file(file_path)
        source = file_path + ".json"
        cached = _cached_table(source)
        if cached is not None:
            return cached
        data = super().load_file(file_path)
        if data is not None:
            trim_endpoints(data)
            _save_table(source, data)
        return data


def _cache_file(source: str) -> Path | None:
    try:
        st = os.stat(source)
    except OSError:
        return None  # a .json.gz table, or none: no cache, the loader reads it as botocore does
    # The table belongs to one botocore release; a different one (or an edited file) is a miss.
    key = f"{botocore.__version__}-{st.st_size}-{st.st_mtime_ns}"
    return _cache_dir() / f"botocore-endpoints-{key}.json"


def _cached_table(source: str) -> Any:
    path = _cache_file(source)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fp:
            data = json.loads(fp.read())
    except (OSError, ValueError, RecursionError):
        return None  # no cache yet, or a damaged one: parse the real table
    ok = isinstance(data, dict) and isinstance(data.get("partitions"), list)
    return data if ok else None


def _save_table(source: str, data: Any) -> None:
    """Best effort: a home without a writable cache only costs the next process the parse."""
    path = _cache_file(source)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".endpoints-")
        try:
            with os.fdopen(fd, "w") as fp:
                json.dump(data, fp)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def lean_loader(session: Session) -> Loader:
    """botocore's data loader, on the same search path (AWS_DATA_PATH included)."""
    loader = create_loader(session.get_config_variable("data_path"))
    loader.file_loader = LeanFileLoader()
    return loader
