"""Creating, revoking and using tokens: checks, hashing, scope, audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import ApiToken
from api.selectors import ApiRefused, api_token_collection_ids
from api.services import TokenRefused, api_token_authenticate, api_token_create, api_token_revoke
from ops.models import AuditEvent
from tests.factories import UserFactory

from .factories import make_collection, make_group, make_staff, make_token

pytestmark = pytest.mark.django_db


def _authenticate(secret: str) -> object:
    return api_token_authenticate(raw=secret, method="POST", path="/api/v1/ask", request_id="req-1")


def test_creating_stores_only_the_hash_and_audits_it() -> None:
    readers = make_group()
    collection = make_collection(readers=readers)
    user = make_staff(groups=[readers])
    token, secret = make_token(user=user, collections=[collection])

    stored = ApiToken.objects.get()
    assert secret.startswith(f"rs_{stored.prefix}_")
    assert secret not in stored.token_hash and len(stored.token_hash) == 64
    assert list(stored.collections.all()) == [collection]
    event = AuditEvent.objects.get(action="api_token.create")
    assert event.actor == user and event.target_id == str(token.pk)
    assert secret not in str(event.details)


def test_a_token_cannot_reach_beyond_its_owner_or_live_too_long_or_be_made_by_non_staff() -> None:
    user = make_staff()
    foreign = make_collection(readers=make_group())
    with pytest.raises(TokenRefused, match="only collections you read"):
        make_token(user=user, collections=[foreign])
    with pytest.raises(TokenRefused, match="in the future"):
        make_token(user=user, days=-1)
    with pytest.raises(TokenRefused, match="at most 365 days"):
        make_token(user=user, days=400)
    with pytest.raises(TokenRefused, match="staff"):
        api_token_create(user=UserFactory.create(), name="x", expires_at=timezone.now() + timedelta(days=1))
    with pytest.raises(TokenRefused, match="name"):
        make_token(user=user, name="   ")
    assert not ApiToken.objects.exists()


def test_a_use_is_audited_and_marks_the_token_used() -> None:
    user = make_staff()
    token, secret = make_token(user=user)
    _authenticate(secret)
    token.refresh_from_db()
    assert token.last_used_at is not None
    event = AuditEvent.objects.get(action="api_token.use")
    assert event.actor == user and event.details["path"] == "/api/v1/ask"


def test_revoking_is_audited_once_and_ends_the_token() -> None:
    user = make_staff()
    token, secret = make_token(user=user)
    api_token_revoke(token=token, user=user)
    api_token_revoke(token=token, user=user)
    assert AuditEvent.objects.filter(action="api_token.revoke").count() == 1
    with pytest.raises(ApiRefused) as refused:
        _authenticate(secret)
    assert refused.value.code == "token_revoked" and refused.value.status == 401
    assert AuditEvent.objects.get(action="api_token.refused").details["code"] == "token_revoked"


def test_the_scope_is_the_tokens_collections_that_its_owner_reads_now() -> None:
    readers, others = make_group(), make_group()
    first, second = make_collection(readers=readers), make_collection(readers=readers)
    make_collection(readers=others)
    user = make_staff(groups=[readers])
    unscoped, _ = make_token(user=user)
    scoped, _ = make_token(user=user, collections=[second])

    assert api_token_collection_ids(token=unscoped, user=user) == (first.pk, second.pk)
    assert api_token_collection_ids(token=scoped, user=user) == (second.pk,)
    user.groups.remove(readers)  # the owner loses the group: the token loses its collections with it
    assert api_token_collection_ids(token=unscoped, user=user) == ()
    assert api_token_collection_ids(token=scoped, user=user) == ()
