"""factory_boy factories for users, groups and collections, shared by the suites."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group, User

from ingest.models import Collection
from sources.models import Source


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class StaffUserFactory(UserFactory):
    is_staff = True


class GroupFactory(factory.django.DjangoModelFactory[Group]):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"group{n}")


class CollectionFactory(factory.django.DjangoModelFactory[Collection]):
    class Meta:
        model = Collection

    name = factory.Sequence(lambda n: f"Collection {n}")
    description = ""


class SourceFactory(factory.django.DjangoModelFactory[Source]):
    """A git source (`location` a repository path) syncing into a new collection, by hand only."""

    class Meta:
        model = Source

    name = factory.Sequence(lambda n: f"Source {n}")
    kind = "git"
    location = "/nonexistent"
    collection = factory.SubFactory(CollectionFactory)
    schedule_minutes = 0
