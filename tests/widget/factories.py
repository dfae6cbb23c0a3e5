"""Widget keys, made through the same service the admin uses, and the admins who make them."""

from __future__ import annotations

import itertools
from typing import Any

import factory
from django.contrib.auth.models import User

from ingest.models import Collection
from tests.search.factories import CollectionFactory
from widget.models import WidgetKey
from widget.services import widget_key_create

HOST_ORIGIN = "https://helpdesk.example.com"
_serial = itertools.count()


class SuperuserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"widget-admin-{n}")
    is_staff = True
    is_superuser = True


def make_key(
    *,
    collections: list[Collection] | None = None,
    origins: list[str] | None = None,
    created_by: User | None = None,
    **options: Any,
) -> tuple[WidgetKey, str]:
    """A key (and its secret) on the helpdesk origin, reading a fresh collection unless told otherwise.

    Made by a superuser (a key reads only what its creator may read), and without visitor tokens unless
    told otherwise, although new keys require them (tests/widget/test_models.py): most tests ask without one.
    """
    options.setdefault("requires_visitor_token", False)
    key, secret = widget_key_create(
        name=f"helpdesk-{next(_serial)}",
        created_by=created_by if created_by is not None else SuperuserFactory.create(),
        collections=collections if collections is not None else [CollectionFactory.create()],
        allowed_origins=origins if origins is not None else [HOST_ORIGIN],
        **options,
    )
    return key, secret
