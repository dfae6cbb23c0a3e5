"""db_sync_to_async: database work from async code returns its connection to the pool when it is done."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection

from ops.db import db_sync_to_async, release_connections


def user_count() -> int:
    return User.objects.count()


def holds_a_connection() -> bool:
    return connection.connection is not None


@pytest.mark.django_db(transaction=True)
def test_the_connection_is_handed_back_after_the_call() -> None:
    async def scenario() -> tuple[int, bool, bool]:
        plain = await sync_to_async(user_count)()
        held_after_plain = await sync_to_async(holds_a_connection)()
        await db_sync_to_async(user_count)()
        return plain, held_after_plain, await sync_to_async(holds_a_connection)()

    count, held_after_plain, held_after = asyncio.run(scenario())
    assert count == 0
    assert held_after_plain, "plain sync_to_async keeps the connection until the request ends"
    assert not held_after


@pytest.mark.django_db
def test_a_connection_inside_a_transaction_is_left_alone() -> None:
    User.objects.create(username="inside")  # pytest-django's test transaction is open
    release_connections()
    assert connection.connection is not None
    assert User.objects.filter(username="inside").exists()
