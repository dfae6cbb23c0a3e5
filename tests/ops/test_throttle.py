"""Login throttling, end to end through the login pages, on the real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "right-password-123"


def full_width(text: str) -> str:
    """ａｌｉｃｅ for alice: what NFKC folds back to the ASCII name."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


def login(username: str, password: str, *, path: str = "/accounts/login/") -> int:
    return Client().post(path, {"username": username, "password": password}).status_code


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_a_locked_out_user_name_stays_locked_in_every_spelling_the_login_form_accepts(
    settings: Any, path: str
) -> None:
    settings.RAGSITE_LOGIN_MAX_FAILURES = 3
    name = f"alice-{uuid.uuid4().hex[:8]}"
    User.objects.create_user(name, password=PASSWORD, is_staff=True)
    for _ in range(3):
        assert login(name, "wrong", path=path) == 200
    for variant in [name, f"{name} ", f"  {name}\t", full_width(name), f" {full_width(name)} "]:
        assert login(variant, PASSWORD, path=path) == 429, repr(variant)


def test_failures_under_any_spelling_count_towards_the_same_lockout(settings: Any) -> None:
    settings.RAGSITE_LOGIN_MAX_FAILURES = 3
    name = f"bob-{uuid.uuid4().hex[:8]}"
    User.objects.create_user(name, password=PASSWORD)
    for variant in [f"{name} ", full_width(name), name.upper()]:
        assert login(variant, "wrong") == 200
    assert login(name, PASSWORD) == 429


class SlowRefusingBackend(BaseBackend):
    """Refuses everyone, slowly, counting the attempts that reach it (password hashing is slow too)."""

    attempts = 0
    lock = threading.Lock()

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        with self.lock:
            SlowRefusingBackend.attempts += 1
        time.sleep(0.5)
        return None


def test_a_parallel_burst_gets_no_more_attempts_than_the_limit(settings: Any) -> None:
    settings.RAGSITE_LOGIN_MAX_FAILURES = 3
    settings.AUTHENTICATION_BACKENDS = [f"{__name__}.SlowRefusingBackend"]
    SlowRefusingBackend.attempts = 0
    name = f"carol-{uuid.uuid4().hex[:8]}"

    def attempt(_: int) -> int:
        try:
            return login(name, "guess")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(attempt, range(12)))

    assert SlowRefusingBackend.attempts == 3
    assert sorted(statuses) == [200] * 3 + [429] * 9
    assert login(name, "guess") == 429


def test_successful_logins_do_not_count_towards_the_lockout(settings: Any) -> None:
    settings.RAGSITE_LOGIN_MAX_FAILURES = 2
    name = f"dave-{uuid.uuid4().hex[:8]}"
    User.objects.create_user(name, password=PASSWORD)
    for _ in range(4):
        assert login(name, PASSWORD) == 302
    assert login(name, "wrong") == 200
    assert login(name, PASSWORD) == 302
    assert login(name, "wrong") == 200
    assert login(name, PASSWORD) == 429
