"""The S3 client loads botocore's data lean (the endpoint table an S3 repository needs, cached
trimmed; plain dicts with the prose emptied): the addresses it sends requests to and the way it
signs them are the ones a stock botocore client uses, on AWS partitions and on custom endpoints
alike. Nothing is sent: the request is stopped at `before-send`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session
import pytest

from backup_engine.storage.s3 import make_client
from backup_engine.storage.s3_models import lean_loader
from backup_engine.storage.s3_options import S3Options


class Stop(Exception):
    pass


def _first_url(client: Any) -> str:
    seen: list[str] = []

    def stop(request: Any, **_: Any) -> None:
        # The URL, and the signature's scheme and scope (the date aside, its credential part)
        scope = request.headers["Authorization"].decode().split(", ")[0].split("/", 2)[2]
        seen.append(f"{request.url} {scope}")
        raise Stop

    client.meta.events.register("before-send.s3", stop)
    with pytest.raises(Stop):
        client.get_object(Bucket="repo-bucket", Key="postgres/base/x/base.tar.zst")
    return seen[0]


@pytest.mark.parametrize(
    "region, endpoint",
    [
        ("us-east-1", None),
        ("eu-west-1", None),
        ("ap-southeast-2", None),
        ("cn-north-1", None),
        ("us-gov-west-1", None),
        ("eu-central-1", "http://127.0.0.1:9000"),
    ],
)
def test_requests_go_where_stock_botocore_sends_them(region: str, endpoint: str | None) -> None:
    options = S3Options(
        endpoint_url=endpoint, region=region, access_key_id="a", secret_access_key="b"
    )
    ours = make_client(options)
    stock = botocore.session.Session().create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=ours.meta.config,
    )
    assert _first_url(ours) == _first_url(stock)
    assert ours.meta.region_name == stock.meta.region_name


def test_the_endpoint_table_holds_only_what_an_s3_client_needs() -> None:
    stock = botocore.session.Session().get_component("data_loader").load_data("endpoints")
    everything = {name for p in stock["partitions"] for name in p["services"]}
    assert "ec2" in everything and len(everything) > 100
    lean = lean_loader(botocore.session.Session()).load_data("endpoints")
    kept = {name for p in lean["partitions"] for name in p["services"]}
    assert "s3" in kept and kept <= {"s3", "sts", "sso", "sso-oidc", "signin"}


def _blank_prose(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: "" if k in ("documentation", "documentationUrl") and isinstance(v, str)
            else _blank_prose(v)
            for k, v in data.items()
        }  # fmt: skip
    if isinstance(data, list):
        return [_blank_prose(v) for v in data]
    return data


def test_the_s3_model_is_botocores_with_its_prose_emptied() -> None:
    stock = botocore.session.Session().get_component("data_loader")
    lean = lean_loader(botocore.session.Session())
    for name in ("service-2", "endpoint-rule-set-1"):
        ours = lean.load_service_model("s3", name)
        assert ours == _blank_prose(stock.load_service_model("s3", name))
        assert type(ours) is dict  # not botocore's OrderedDicts, a third heavier


def test_the_trimmed_table_is_cached_and_a_damaged_cache_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = lean_loader(botocore.session.Session()).load_data("endpoints")
    (cached,) = (tmp_path / "backup-engine").glob("botocore-endpoints-*.json")
    assert lean_loader(botocore.session.Session()).load_data("endpoints") == first
    for damage in (b"[", b"[]", b"{}", b"[" * 100_000):
        cached.write_bytes(damage)
        assert lean_loader(botocore.session.Session()).load_data("endpoints") == first
    cached.unlink()
    cached.symlink_to(tmp_path / "elsewhere.json")  # a link is never followed
    (tmp_path / "elsewhere.json").write_text('{"partitions": [], "version": 3}')
    assert lean_loader(botocore.session.Session()).load_data("endpoints") == first


def test_a_cache_that_cannot_be_written_costs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # not a directory
    table = lean_loader(botocore.session.Session()).load_data("endpoints")
    assert {n for p in table["partitions"] for n in p["services"]} >= {"s3", "sts"}
