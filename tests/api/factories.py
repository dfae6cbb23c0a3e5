"""API tokens, made through the same service as the tokens page, and the staff members who own them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from api.models import ApiToken
from api.services import api_token_create
from ingest.models import Collection
from tests.factories import CollectionFactory, GroupFactory, StaffUserFactory


def make_staff(
    *, groups: list[Group] | None = None, document_actions: tuple[str, ...] = ("view", "add")
) -> User:
    """A staff member of `groups` holding ingest's document permissions for `document_actions`."""
    user = StaffUserFactory.create()
    user.groups.set(groups or [])
    codenames = [f"{action}_document" for action in document_actions]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="ingest", codename__in=codenames)
    )
    return user


def make_collection(*, readers: Group | None = None) -> Collection:
    collection = CollectionFactory.create()
    if readers is not None:
        collection.groups.add(readers)
    return collection


def make_group() -> Group:
    return GroupFactory.create()


def make_token(
    *,
    user: User,
    collections: list[Collection] | None = None,
    days: float = 30,
    **options: Any,
) -> tuple[ApiToken, str]:
    """A token for `user` (and its secret), expiring in `days`, scoped to `collections` if given."""
    return api_token_create(
        user=user,
        name=options.pop("name", "test script"),
        expires_at=timezone.now() + timedelta(days=days),
        collections=collections or [],
        **options,
    )
