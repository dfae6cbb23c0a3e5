"""The widget API's checks, against the real PostgreSQL and Redis: key, origin, token, limits, sizes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.http import HttpResponse, HttpResponseBase
from django.test import Client

from search import retrieval_gate
from tests.search.answer_scripts import crowded_retrieval
from widget.models import WidgetExchange
from widget.tokens import token_mint

from .factories import HOST_ORIGIN, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    # CSRF is enforced as in production: the widget API must not depend on it.
    return Client(enforce_csrf_checks=True)


def ask(
    client: Client,
    public_id: str,
    body: dict[str, Any] | str,
    *,
    origin: str | None = HOST_ORIGIN,
    ip: str = "10.0.0.1",
) -> HttpResponseBase:
    headers = {"Origin": origin} if origin else {}
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(
        f"/widget/v1/{public_id}/ask",
        data=data,
        content_type="application/json",
        headers=headers,
        REMOTE_ADDR=ip,
    )


def error_of(response: HttpResponseBase) -> dict[str, str]:
    assert response["Content-Type"] == "application/json"
    assert isinstance(response, HttpResponse)
    return json.loads(response.content)["error"]


def test_an_accepted_question_streams_server_sent_events_readable_by_its_origin(client: Client) -> None:
    key, _ = make_key()
    response = ask(client, key.public_id, {"question": "How do I reset a password?"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Access-Control-Allow-Origin"] == HOST_ORIGIN
    assert response["Vary"] == "Origin"


def test_an_unknown_key_is_refused_in_words(client: Client) -> None:
    response = ask(client, "wk_nonexistent", {"question": "Hello?"})
    assert response.status_code == 404
    assert error_of(response)["code"] == "unknown_key"
    assert "check the snippet" in error_of(response)["message"]


def test_a_disabled_key_is_refused(client: Client) -> None:
    key, _ = make_key(is_enabled=False)
    response = ask(client, key.public_id, {"question": "Hello?"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "key_disabled"


def test_a_disallowed_origin_is_refused_and_may_read_only_the_refusal(client: Client) -> None:
    key, _ = make_key()
    response = ask(client, key.public_id, {"question": "Hello?"}, origin="https://evil.example")
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "origin_not_allowed"
    assert "not allowed on https://evil.example" in error["message"]
    # Readable so that the widget can say why; it holds nothing but the reason.
    assert response["Access-Control-Allow-Origin"] == "https://evil.example"
    assert not WidgetExchange.objects.exists()


def test_a_request_without_origin_is_refused(client: Client) -> None:
    key, _ = make_key()
    response = ask(client, key.public_id, {"question": "Hello?"}, origin=None)
    assert response.status_code == 403
    assert error_of(response)["code"] == "origin_missing"


def test_the_preflight_admits_allowed_origins_only(client: Client) -> None:
    key, _ = make_key()
    url = f"/widget/v1/{key.public_id}/ask"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = client.options(url, headers={"Origin": HOST_ORIGIN, **preflight})
    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == HOST_ORIGIN
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    assert allowed["Access-Control-Allow-Headers"] == "Content-Type"

    refused = client.options(url, headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused


def test_origins_match_exactly_scheme_host_and_port(client: Client) -> None:
    key, _ = make_key(origins=["https://helpdesk.example.com"])
    for origin in ["http://helpdesk.example.com", "https://helpdesk.example.com:8443", "https://example.com"]:
        assert ask(client, key.public_id, {"question": "Hi?"}, origin=origin).status_code == 403


def test_a_key_that_requires_tokens_refuses_a_copied_snippet_without_one(client: Client) -> None:
    key, _ = make_key(requires_visitor_token=True)
    response = ask(client, key.public_id, {"question": "Hello?"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_required"


def test_a_valid_token_is_accepted_and_names_the_visitor(client: Client) -> None:
    key, secret = make_key(requires_visitor_token=True)
    token = token_mint(secret=secret, public_id=key.public_id, visitor_id="agent-42")
    response = ask(client, key.public_id, {"question": "Hello?", "token": token})
    assert response.status_code == 200


@pytest.mark.parametrize("required", [True, False])
def test_expired_and_forged_tokens_are_refused_whether_or_not_the_key_requires_them(
    client: Client, required: bool
) -> None:
    key, secret = make_key(requires_visitor_token=required)
    other_key, other_secret = make_key()
    cases = {
        "token_expired": token_mint(secret=secret, public_id=key.public_id, visitor_id="a", ttl_s=-60),
        "token_forged": token_mint(secret=other_secret, public_id=key.public_id, visitor_id="a"),
        "token_malformed": "not-a-token",
    }
    for code, token in cases.items():
        response = ask(client, key.public_id, {"question": "Hello?", "token": token})
        assert response.status_code == 401, code
        assert error_of(response)["code"] == code
    # A good token of another key is no token for this one.
    theirs = token_mint(secret=other_secret, public_id=other_key.public_id, visitor_id="a")
    assert (
        error_of(ask(client, key.public_id, {"question": "Hi?", "token": theirs}))["code"] == "token_forged"
    )


def test_tokens_with_non_ascii_signatures_or_expiries_are_refused_with_401_not_500(client: Client) -> None:
    key, secret = make_key()
    visitor, expiry, signature = token_mint(secret=secret, public_id=key.public_id, visitor_id="a").split(".")
    for token in (f"{visitor}.{expiry}.{'é' * len(signature)}", f"{visitor}.\u00b9\u00b2\u00b3.{signature}"):
        response = ask(client, key.public_id, {"question": "Hello?", "token": token})
        assert response.status_code == 401
        assert error_of(response)["code"] == "token_malformed"


def test_the_visitor_limit_answers_429_with_retry_after(client: Client) -> None:
    key, _ = make_key(visitor_rate_limit_per_minute=2, rate_limit_per_minute=100)
    statuses = [ask(client, key.public_id, {"question": "Hi?"}).status_code for _ in range(2)]
    assert statuses == [200, 200]
    refused = ask(client, key.public_id, {"question": "Hi?"})
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Retry-After" in refused["Access-Control-Expose-Headers"]
    # Another visitor of the same key still gets through.
    assert ask(client, key.public_id, {"question": "Hi?"}, ip="10.0.0.2").status_code == 200


def test_token_visitors_are_limited_one_by_one(client: Client) -> None:
    key, secret = make_key(visitor_rate_limit_per_minute=1, rate_limit_per_minute=100)

    def token(visitor: str) -> str:
        return token_mint(secret=secret, public_id=key.public_id, visitor_id=visitor)

    assert ask(client, key.public_id, {"question": "Hi?", "token": token("a")}).status_code == 200
    assert ask(client, key.public_id, {"question": "Hi?", "token": token("a")}).status_code == 429
    assert ask(client, key.public_id, {"question": "Hi?", "token": token("b")}).status_code == 200


def test_the_key_limit_counts_all_visitors_together(client: Client) -> None:
    key, _ = make_key(rate_limit_per_minute=2, visitor_rate_limit_per_minute=100)
    statuses = [
        ask(client, key.public_id, {"question": "Hi?"}, ip=f"10.0.1.{n}").status_code for n in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_a_refused_question_does_not_count_against_the_limit(client: Client) -> None:
    key, _ = make_key(visitor_rate_limit_per_minute=1)
    assert ask(client, key.public_id, {"question": "x" * 5000}).status_code == 413
    assert ask(client, key.public_id, {"question": "Hi?"}).status_code == 200


def test_an_oversized_question_is_refused_with_its_length_and_the_limit(client: Client) -> None:
    key, _ = make_key()
    response = ask(client, key.public_id, {"question": "x" * 2001})
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "question_too_long"
    assert "2,001 characters" in error["message"] and "2,000" in error["message"]


def test_an_oversized_body_is_refused_before_it_is_parsed(client: Client) -> None:
    key, _ = make_key()
    response = ask(client, key.public_id, {"question": "Hi?", "padding": "x" * 70_000})
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


@pytest.mark.parametrize(
    "body",
    ["not json", "[1, 2]", json.dumps({"question": "  "}), json.dumps({"question": "Hi", "history": "x"})],
)
def test_malformed_bodies_are_refused_with_400(client: Client, body: str) -> None:
    key, _ = make_key()
    response = ask(client, key.public_id, body)
    assert response.status_code == 400
    assert error_of(response)["message"]


def test_a_key_without_collections_is_refused(client: Client) -> None:
    key, _ = make_key(collections=[])
    response = ask(client, key.public_id, {"question": "Hi?"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "no_collections"


def test_the_configuration_is_readable_by_allowed_origins_and_refused_in_words_to_others(
    client: Client,
) -> None:
    key, _ = make_key(requires_visitor_token=True)
    allowed = client.get(f"/widget/v1/{key.public_id}/config", headers={"Origin": HOST_ORIGIN})
    assert allowed.status_code == 200
    assert allowed["Access-Control-Allow-Origin"] == HOST_ORIGIN
    assert json.loads(allowed.content)["requires_visitor_token"] is True
    refused = client.get(f"/widget/v1/{key.public_id}/config", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "origin_not_allowed"


def test_the_script_is_served_for_any_site_to_load(client: Client) -> None:
    response = client.get("/widget/v1/widget.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert b"RagsiteWidget" in b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_without_redis_the_limits_fail_closed_in_words(client: Client, settings: Any) -> None:
    from ragsite.devstack import free_port

    settings.WIDGET_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    key, _ = make_key()
    response = ask(client, key.public_id, {"question": "Hi?"})
    assert response.status_code == 503
    assert error_of(response)["code"] == "limits_unavailable"
    assert response["Retry-After"] == "5"


def test_a_question_retrieval_could_not_take_in_time_is_refused_429_at_once(
    client: Client, monkeypatch: Any
) -> None:
    """Told now, with when to come back, instead of after waiting its turn (search.shared_answers)."""
    key, _ = make_key()
    # 599 waiting and this one, at one a second: 600 s, 480 past retrieval's 120 s.
    monkeypatch.setattr(retrieval_gate, "_latest", crowded_retrieval(ahead=599, per_second=1.0))
    refused = ask(client, key.public_id, {"question": "How do I reset a password?"})
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "busy" and "ask again" in error_of(refused)["message"]
    assert 470 <= int(refused["Retry-After"]) <= 490
    assert not WidgetExchange.objects.exists()
