"""The token API through Django's test client, on the real PostgreSQL and Redis: ask (JSON and server-sent
events), documents, and every refusal a clean 4xx in the same JSON shape."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from ingest.models import Collection, Document
from ops.models import AuditEvent
from search import retrieval_gate
from tests.search.answer_scripts import crowded_retrieval
from tests.search.factories import add_chunks, make_document
from tests.search.fake_inference import FakeInference, Reply

from .factories import make_collection, make_group, make_staff, make_token

pytestmark = pytest.mark.django_db

REFUNDS = "Customers may return a laptop within 30 days of delivery for a full refund."


@pytest.fixture
def client() -> Client:
    # CSRF is enforced as in production: a token-authenticated API must not depend on it.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def readers() -> Group:
    return make_group()


@pytest.fixture
def owner(readers: Group) -> User:
    return make_staff(groups=[readers])


@pytest.fixture
def returns(readers: Group) -> Collection:
    document = make_document(title="Returns policy", collection=make_collection(readers=readers))
    add_chunks(document, "Our shop sells laptops and phones.", heading_path="Intro", page=1)
    add_chunks(document, REFUNDS, heading_path="Returns > Laptops", page=2)
    return document.collection


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def ask(client: Client, secret: str | None, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(
        "/api/v1/ask",
        data=data,
        content_type="application/json",
        headers={**(bearer(secret) if secret else {}), **headers},
    )


def error_of(response: Any, status: int) -> dict[str, str]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    return json.loads(response.content)["error"]


async def _read_all(response: Any) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def sse_events(response: Any) -> list[tuple[str, dict[str, Any]]]:
    assert response["Content-Type"] == "text/event-stream"
    body = async_to_sync(_read_all)(response).decode()
    events = []
    for block in body.split("\n\n"):
        if block.strip():
            name = re.search(r"^event: (.*)$", block, re.MULTILINE)
            data = "".join(line[6:] for line in block.splitlines() if line.startswith("data: "))
            events.append((name.group(1) if name else "message", json.loads(data)))
    return events


# --- ask ----------------------------------------------------------------------------------------------------


def test_ask_answers_as_json_with_its_cited_sources(
    client: Client, owner: User, returns: Collection, fake_inference: FakeInference
) -> None:
    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    _, secret = make_token(user=owner)

    response = ask(client, secret, {"question": "How long can I return a laptop?"})

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["answer"].startswith("Within 30 days [1]") and not answer["refused"]
    assert answer["origin"] == "model" and answer["collections"] == [returns.pk]
    cited = [source for source in answer["sources"] if source["cited"]]
    assert cited and cited[0]["title"] == "Returns policy" and cited[0]["page"] == 2
    assert cited[0]["passage_url"] == f"http://testserver/passages/{cited[0]['chunk_id']}/#passage"
    assert AuditEvent.objects.filter(action="api_token.use", details__path="/api/v1/ask").count() == 1


def test_ask_streams_server_sent_events_when_asked_to(
    client: Client, owner: User, returns: Collection, fake_inference: FakeInference
) -> None:
    fake_inference.default_reply = Reply(["Within ", "30 days [1]."])
    _, secret = make_token(user=owner)

    events = sse_events(
        ask(client, secret, {"question": "How long to return a laptop?"}, Accept="text/event-stream")
    )

    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and "token" in names
    assert events[0][1]["sources"][0]["title"] == "Returns policy"
    assert "".join(data["text"] for name, data in events if name == "token") == "Within 30 days [1]."
    assert events[-1][1]["answer"].startswith("Within 30 days [1]") and events[-1][1]["refused"] is False


def test_a_question_the_documents_do_not_answer_is_refused_in_the_answer(
    client: Client, owner: User, returns: Collection, fake_inference: FakeInference
) -> None:
    _, secret = make_token(user=owner)
    response = ask(client, secret, {"question": "Which submarine did Zeppelin quantum pancakes?"})
    assert response.status_code == 200
    assert response.json()["refused"] is True and response.json()["sources"] == []


def test_the_same_question_again_reuses_the_finished_answer_as_the_page_does(
    client: Client, owner: User, returns: Collection, fake_inference: FakeInference
) -> None:
    fake_inference.default_reply = Reply(["Within 30 days [1]."])
    _, secret = make_token(user=owner)
    first = ask(client, secret, {"question": "How long can I return a laptop?"}).json()
    second = ask(client, secret, {"question": "How long can I return a laptop?"}).json()
    assert first["reused_at"] is None and second["reused_at"] is not None
    assert second["answer"] == first["answer"]
    assert len(fake_inference.answer_requests) == 1


# --- bad tokens ---------------------------------------------------------------------------------------------


def test_a_request_without_a_token_is_refused_401_saying_how_to_send_one(client: Client) -> None:
    response = ask(client, None, {"question": "Hello?"})
    error = error_of(response, 401)
    assert error["code"] == "token_missing" and "Authorization: Bearer" in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer rs_123", "Bearer not-a-token",
     "Bearer rs_zzzzzzzzzzzz_" + "a" * 43, "Bearer " + "x" * 5000, "Token rs_0123456789ab_" + "a" * 43],
)  # fmt: skip
def test_malformed_tokens_are_refused_401(client: Client, header: str) -> None:
    error = error_of(ask(client, None, {"question": "Hello?"}, Authorization=header), 401)
    assert error["code"] == "token_malformed"


def test_a_token_with_a_wrong_secret_or_an_unknown_prefix_is_refused_401(client: Client, owner: User) -> None:
    token, secret = make_token(user=owner)
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert error_of(ask(client, forged, {"question": "Hello?"}), 401)["code"] == "token_invalid"
    unknown = f"rs_{'0' * 12}_{secret.split('_', 2)[2]}"
    assert error_of(ask(client, unknown, {"question": "Hello?"}), 401)["code"] == "token_invalid"
    assert AuditEvent.objects.get(action="api_token.refused").details["code"] == "token_invalid"


def test_an_expired_token_is_refused_401_with_its_date(client: Client, owner: User) -> None:
    token, secret = make_token(user=owner)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    error = error_of(ask(client, secret, {"question": "Hello?"}), 401)
    assert error["code"] == "token_expired" and "expired on" in error["message"]


def test_a_revoked_token_is_refused_401(client: Client, owner: User) -> None:
    token, secret = make_token(user=owner)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert error_of(ask(client, secret, {"question": "Hello?"}), 401)["code"] == "token_revoked"


def test_a_token_of_a_disabled_owner_is_refused_403(client: Client, owner: User) -> None:
    _, secret = make_token(user=owner)
    owner.is_active = False
    owner.save()
    assert error_of(ask(client, secret, {"question": "Hello?"}), 403)["code"] == "owner_not_allowed"


# --- scope --------------------------------------------------------------------------------------------------


def test_asking_of_a_collection_outside_the_tokens_scope_is_refused_403(
    client: Client, owner: User, readers: Group, returns: Collection, fake_inference: FakeInference
) -> None:
    other = make_collection(readers=readers)
    foreign = make_collection(readers=make_group())
    _, secret = make_token(user=owner, collections=[returns])
    for outside in (other.pk, foreign.pk, 999_999):
        response = ask(client, secret, {"question": "How long?", "collections": [returns.pk, outside]})
        error = error_of(response, 403)
        assert error["code"] == "collection_out_of_scope" and str(outside) in error["message"]
    assert fake_inference.answer_requests == []


def test_an_owner_who_loses_a_group_loses_its_collections_through_the_token(
    client: Client, owner: User, readers: Group, returns: Collection, fake_inference: FakeInference
) -> None:
    _, secret = make_token(user=owner, collections=[returns])
    owner.groups.remove(readers)
    assert error_of(ask(client, secret, {"question": "How long?"}), 403)["code"] == "no_collections"
    response = ask(client, secret, {"question": "How long?", "collections": [returns.pk]})
    assert error_of(response, 403)["code"] == "collection_out_of_scope"


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", "{}", json.dumps({"question": 3}), json.dumps({"question": "x" * 2001}),
     json.dumps({"question": "ok", "collections": "all"}),
     json.dumps({"question": "ok", "collections": [-1.5]})],
)  # fmt: skip
def test_malformed_bodies_are_refused_400_in_words(client: Client, owner: User, body: str) -> None:
    _, secret = make_token(user=owner)
    error = error_of(ask(client, secret, body), 400)
    assert error["code"] in ("invalid_request", "bad_request") and error["message"]


def test_a_blank_question_is_refused_400(client: Client, owner: User) -> None:
    _, secret = make_token(user=owner)
    assert error_of(ask(client, secret, {"question": "   "}), 400)["code"] == "question_missing"


def test_the_tokens_rate_limit_answers_429_with_retry_after(client: Client, owner: User) -> None:
    _, secret = make_token(user=owner, rate_limit_per_minute=2)
    for _ in range(2):
        assert client.get("/api/v1/documents", headers=bearer(secret)).status_code == 200
    response = client.get("/api/v1/documents", headers=bearer(secret))
    assert error_of(response, 429)["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    _, other = make_token(user=owner)  # limits are per token
    assert client.get("/api/v1/documents", headers=bearer(other)).status_code == 200


def test_without_redis_the_limits_fail_closed_in_words(client: Client, owner: User, settings: Any) -> None:
    from ragsite.devstack import free_port

    settings.RAGSITE_API_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    _, secret = make_token(user=owner)
    response = client.get("/api/v1/documents", headers=bearer(secret))
    assert error_of(response, 503)["code"] == "limits_unavailable" and response["Retry-After"] == "5"


# --- documents ----------------------------------------------------------------------------------------------


def test_documents_are_listed_within_the_tokens_scope_only(
    client: Client, owner: User, readers: Group, returns: Collection
) -> None:
    other = make_collection(readers=readers)
    make_document(collection=other, title="Other")
    make_document(collection=make_collection(readers=make_group()), title="Foreign")
    _, scoped = make_token(user=owner, collections=[returns])
    _, unscoped = make_token(user=owner)

    titles = [d["title"] for d in client.get("/api/v1/documents", headers=bearer(scoped)).json()["documents"]]
    assert titles == ["Returns policy"]
    listed = client.get("/api/v1/documents", headers=bearer(unscoped)).json()["documents"]
    assert sorted(d["title"] for d in listed) == ["Other", "Returns policy"]
    response = client.get(f"/api/v1/documents?collection={other.pk}", headers=bearer(scoped))
    assert error_of(response, 403)["code"] == "collection_out_of_scope"


def test_an_upload_is_stored_and_queued_like_the_upload_pages(
    client: Client, owner: User, returns: Collection
) -> None:
    _, secret = make_token(user=owner, collections=[returns])
    upload = SimpleUploadedFile("warranty.md", b"# Warranty\n\nTwo years on laptops.\n")
    response = client.post(
        "/api/v1/documents", {"collection": returns.pk, "file": upload}, headers=bearer(secret)
    )

    assert response.status_code == 201, response.content
    document = Document.objects.get(pk=response.json()["id"])
    assert document.collection == returns and document.uploaded_by == owner
    assert document.status == Document.Status.QUEUED and response.json()["status"] == "queued"
    assert AuditEvent.objects.filter(action="document.upload", actor=owner).exists()


def test_uploads_outside_the_scope_empty_or_duplicate_are_refused_in_words(
    client: Client, owner: User, readers: Group, returns: Collection
) -> None:
    other = make_collection(readers=readers)
    _, secret = make_token(user=owner, collections=[returns])

    def upload(collection: int, data: bytes, name: str = "a.txt") -> Any:
        return client.post(
            "/api/v1/documents",
            {"collection": collection, "file": SimpleUploadedFile(name, data)},
            headers=bearer(secret),
        )

    assert error_of(upload(other.pk, b"text"), 403)["code"] == "collection_out_of_scope"
    assert "empty" in error_of(upload(returns.pk, b""), 400)["message"]
    assert upload(returns.pk, b"same text").status_code == 201
    error = error_of(upload(returns.pk, b"same text", "copy.txt"), 409)
    assert error["code"] == "duplicate" and "already in" in error["message"]
    missing = client.post("/api/v1/documents", {"collection": returns.pk}, headers=bearer(secret))
    assert error_of(missing, 400)["code"] == "invalid_request"


def test_uploads_need_the_owners_add_permission(client: Client, readers: Group, returns: Collection) -> None:
    viewer = make_staff(groups=[readers], document_actions=("view",))
    _, secret = make_token(user=viewer)
    response = client.post(
        "/api/v1/documents",
        {"collection": returns.pk, "file": SimpleUploadedFile("a.txt", b"text")},
        headers=bearer(secret),
    )
    assert error_of(response, 403)["code"] == "not_permitted"


def test_the_openapi_document_is_published(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/ask", "/api/v1/documents"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiTokenAuth"] == {"type": "http", "scheme": "bearer"}
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and "/static/ninja/swagger-ui-bundle.js" in docs.content.decode()


def test_a_question_retrieval_could_not_take_in_time_is_refused_429_at_once(
    client: Client, owner: User, returns: Collection, monkeypatch: Any
) -> None:
    """Told now, with when to come back, instead of after waiting its turn (search.shared_answers)."""
    _, secret = make_token(user=owner)
    # 599 waiting and this one, at one a second: 600 s, 480 past retrieval's 120 s.
    monkeypatch.setattr(retrieval_gate, "_latest", crowded_retrieval(ahead=599, per_second=1.0))
    response = ask(client, secret, {"question": "How long can I return a laptop?"})
    error = error_of(response, 429)
    assert error["code"] == "busy" and "ask again" in error["message"]
    assert 470 <= int(response["Retry-After"]) <= 490
