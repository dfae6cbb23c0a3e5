"""The groups claim maps to Django groups at every sign-in: added, removed, and only the ones it manages."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from accounts.errors import LoginRefused
from accounts.services import group_names_from_claim, oidc_user_sign_in
from ingest.models import Collection
from search.selectors import collection_ids_readable_by
from tests.search.factories import make_collection, make_group

pytestmark = pytest.mark.django_db
ISSUER = "http://127.0.0.1:1"


def sign_in(groups: Any, *, prefix: str = "", sub: str = "alice") -> User:
    return oidc_user_sign_in(
        issuer=ISSUER, claims={"sub": sub, "groups": groups}, groups_claim="groups", groups_prefix=prefix
    )


def group_names(user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def test_groups_are_added_and_removed_at_every_sign_in_and_collections_follow() -> None:
    handbook = make_collection(name="Handbook", groups=[make_group(name="staff")])

    user = sign_in(["staff", "hr"])
    assert group_names(user) == ["hr", "staff"]
    assert collection_ids_readable_by(user=user) == [handbook.id]

    user = sign_in(["hr"])
    assert group_names(user) == ["hr"]
    assert collection_ids_readable_by(user=user) == []
    assert User.objects.count() == 1


def test_groups_given_by_hand_are_left_alone() -> None:
    user = sign_in(["hr"])
    user.groups.add(make_group(name="auditors"))

    assert group_names(sign_in([])) == ["auditors"]


def test_a_group_held_by_hand_before_the_claim_named_it_stays_when_the_claim_drops_it() -> None:
    user = sign_in([])
    user.groups.add(make_group(name="staff"))
    sign_in(["staff"])

    assert group_names(sign_in([])) == ["staff"]


def test_only_names_with_the_prefix_are_mapped() -> None:
    user = sign_in(["ragsite-hr", "everyone", "vpn-users"], prefix="ragsite-")

    assert group_names(user) == ["ragsite-hr"]
    assert not Collection.objects.exists()


def test_a_missing_claim_means_no_managed_groups() -> None:
    sign_in(["hr"])
    user = oidc_user_sign_in(issuer=ISSUER, claims={"sub": "alice"}, groups_claim="groups", groups_prefix="")

    assert group_names(user) == []


def test_a_single_name_is_read_as_a_list_of_one() -> None:
    assert group_names_from_claim(claims={"groups": " hr "}, claim="groups", prefix="") == ["hr"]


@pytest.mark.parametrize("claim", [{"hr": True}, [1, 2], ["x" * 151]])
def test_a_claim_that_is_not_a_list_of_names_is_refused_and_changes_nothing(claim: Any) -> None:
    with pytest.raises(LoginRefused):
        sign_in(claim)
    assert not User.objects.exists()
