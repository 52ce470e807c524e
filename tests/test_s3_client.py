"""The S3 client keeps only the endpoint table an S3 repository needs (7 MB less in every process
that opens a bucket); the addresses it sends requests to are the ones a stock botocore client
uses, on AWS partitions and on custom endpoints alike. Nothing is sent: the request is stopped
at `before-send`."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest

from backup_engine.storage.s3 import _lean_loader, make_client
from backup_engine.storage.s3_options import S3Options


class Stop(Exception):
    pass


def _first_url(client: Any) -> str:
    seen: list[str] = []

    def stop(request: Any, **_: Any) -> None:
        seen.append(request.url)
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
    lean = _lean_loader(botocore.session.Session()).load_data("endpoints")
    kept = {name for p in lean["partitions"] for name in p["services"]}
    assert "s3" in kept and kept <= {"s3", "sts", "sso", "sso-oidc", "signin"}
