"""The API keys' comparison: constant time on bytes, every key compared, only `Bearer <key>` accepted."""

from __future__ import annotations

import hmac
from unittest import mock

import pytest

from inference.auth import bearer_token_matches

KEYS = [b"first-key-0123456789", b"second-key-9876543210"]


def test_every_key_is_compared_in_constant_time_as_bytes() -> None:
    with mock.patch("hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        assert bearer_token_matches(b"Bearer first-key-0123456789", KEYS)
    assert compare.call_count == len(KEYS), "a match must not end the comparison early"
    assert all(isinstance(argument, bytes) for call in compare.call_args_list for argument in call.args)


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"first-key-0123456789",
        b"Basic first-key-0123456789",
        b"Bearer first-key-012345678",
        b"Bearer first-key-0123456789x",
        "Bearer first-kéy-0123456789".encode(),
    ],
)
def test_anything_but_bearer_and_a_key_is_refused(header: bytes | None) -> None:
    assert not bearer_token_matches(header, KEYS)


def test_the_scheme_is_case_insensitive_and_no_keys_match_nothing() -> None:
    assert bearer_token_matches(b"bearer second-key-9876543210", KEYS)
    assert not bearer_token_matches(b"Bearer ", [])
