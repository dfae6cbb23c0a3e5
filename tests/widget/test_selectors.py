"""A key reads its collections only while its creator may read them too."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, User

from ingest.models import Collection
from tests.search.factories import CollectionFactory
from widget.models import WidgetKey
from widget.selectors import AuthorizedWidget, WidgetRefused, widget_request_authorize
from widget.services import widget_key_create

from .factories import HOST_ORIGIN, SuperuserFactory

pytestmark = pytest.mark.django_db


def authorize(key: WidgetKey) -> AuthorizedWidget:
    return async_to_sync(widget_request_authorize)(
        public_id=key.public_id, origin=HOST_ORIGIN, token="", client_ip="10.0.0.1"
    )


def key_by(creator: User | None, collections: list[Collection]) -> WidgetKey:
    key, _ = widget_key_create(
        name="helpdesk",
        created_by=creator,
        collections=collections,
        allowed_origins=[HOST_ORIGIN],
        requires_visitor_token=False,
    )
    return key


@pytest.fixture
def support() -> Group:
    return Group.objects.create(name="support")


def test_a_key_stops_reading_a_collection_its_creator_no_longer_may_read(support: Group) -> None:
    legal = Group.objects.create(name="legal")
    handbook = CollectionFactory.create(groups=[support])
    contracts = CollectionFactory.create(groups=[legal])
    creator = User.objects.create_user("lead", is_staff=True)
    creator.groups.set([support, legal])
    key = key_by(creator, [handbook, contracts])
    assert authorize(key).collection_ids == tuple(sorted([handbook.pk, contracts.pk]))

    creator.groups.remove(legal)

    assert authorize(key).collection_ids == (handbook.pk,)


@pytest.mark.parametrize("change", ["leaves every group", "is deactivated", "is deleted"])
def test_a_key_whose_creator_may_read_none_of_its_collections_is_refused(support: Group, change: str) -> None:
    handbook = CollectionFactory.create(groups=[support])
    creator = User.objects.create_user("lead", is_staff=True)
    creator.groups.set([support])
    key = key_by(creator, [handbook])
    assert authorize(key).collection_ids == (handbook.pk,)

    if change == "leaves every group":
        creator.groups.clear()
    elif change == "is deactivated":
        User.objects.filter(pk=creator.pk).update(is_active=False)
    else:
        creator.delete()

    with pytest.raises(WidgetRefused) as refused:
        authorize(key)
    assert (refused.value.status, refused.value.code) == (403, "no_collections")


def test_a_superusers_key_reads_every_collection_it_names() -> None:
    collections = [CollectionFactory.create(), CollectionFactory.create()]
    key = key_by(SuperuserFactory.create(), collections)
    assert authorize(key).collection_ids == tuple(sorted(c.pk for c in collections))
