"""The ops views: the metrics endpoint's token check."""

from __future__ import annotations

import hmac
from typing import Any
from unittest import mock

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_metrics_token_is_compared_in_constant_time_as_bytes(client: Client, settings: Any) -> None:
    settings.RAGSITE_METRICS_TOKEN = "s3cret-token"
    with mock.patch("hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-token")
        wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-tokeN")
    assert (ok.status_code, wrong.status_code) == (200, 403)
    assert compare.call_count == 2
    assert all(isinstance(argument, bytes) for call in compare.call_args_list for argument in call.args)


@pytest.mark.parametrize(
    ("token", "header"),
    [("s3cret-token", "Bearer s3cret-tökén"), ("tökén-ünïcode", "Bearer s3cret-token"), ("s3cret", "")],
)
def test_a_non_ascii_or_missing_metrics_token_is_refused_not_an_error(
    client: Client, settings: Any, token: str, header: str
) -> None:
    settings.RAGSITE_METRICS_TOKEN = token
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=header)
    assert response.status_code == 403
