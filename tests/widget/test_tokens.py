"""Visitor tokens: what a host backend mints verifies; anything else is refused with a reason."""

from pathlib import Path
from typing import Any

import pytest

from widget.tokens import TokenInvalid, derive_secret, token_mint, token_verify

SECRET = derive_secret(public_id="wk_test", secret_salt="salt")


def test_a_minted_token_names_its_visitor_even_with_dots_in_it() -> None:
    token = token_mint(secret=SECRET, public_id="wk_test", visitor_id="agent.one@example.com")
    assert token_verify(token=token, secret=SECRET, public_id="wk_test").visitor_id == "agent.one@example.com"


def test_the_secret_depends_on_the_salt_so_a_rotation_replaces_it() -> None:
    assert derive_secret(public_id="wk_test", secret_salt="other") != SECRET


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("", "token_malformed"),
        ("agent", "token_malformed"),
        ("agent.soon.abc", "token_malformed"),
        ("agent 1.99999999999.abc", "token_malformed"),
    ],
)
def test_malformed_tokens_are_refused(token: str, code: str) -> None:
    with pytest.raises(TokenInvalid) as refused:
        token_verify(token=token, secret=SECRET, public_id="wk_test")
    assert refused.value.code == code


def test_a_token_with_a_non_ascii_signature_is_refused_not_an_error() -> None:
    visitor, expiry, signature = token_mint(secret=SECRET, public_id="wk_test", visitor_id="agent-1").split(
        "."
    )
    for forged in ("é" * len(signature), signature[:-1] + "é", "ünïcode"):
        with pytest.raises(TokenInvalid) as refused:
            token_verify(token=f"{visitor}.{expiry}.{forged}", secret=SECRET, public_id="wk_test")
        assert refused.value.code in ("token_malformed", "token_forged")


@pytest.mark.parametrize("expiry", ["\u00b9\u00b2\u00b3", "1\u00b2", "\u0661\u0662\u0663", "\uff11\uff12"])
def test_an_expiry_of_digits_other_than_ascii_ones_is_malformed(expiry: str) -> None:
    """Superscript and other Unicode digits pass str.isdigit(); int() rejects some and accepts others."""
    with pytest.raises(TokenInvalid) as refused:
        token_verify(token=f"agent-1.{expiry}.{'0' * 64}", secret=SECRET, public_id="wk_test")
    assert refused.value.code == "token_malformed"


def test_an_expired_token_is_refused() -> None:
    token = token_mint(secret=SECRET, public_id="wk_test", visitor_id="agent-1", ttl_s=-1)
    with pytest.raises(TokenInvalid) as refused:
        token_verify(token=token, secret=SECRET, public_id="wk_test")
    assert refused.value.code == "token_expired"


def test_a_token_signed_with_another_secret_or_for_another_key_or_visitor_is_forged() -> None:
    other_secret = derive_secret(public_id="wk_test", secret_salt="someone else's")
    for token, public_id in [
        (token_mint(secret=other_secret, public_id="wk_test", visitor_id="agent-1"), "wk_test"),
        (token_mint(secret=SECRET, public_id="wk_other", visitor_id="agent-1"), "wk_test"),
    ]:
        with pytest.raises(TokenInvalid) as refused:
            token_verify(token=token, secret=SECRET, public_id=public_id)
        assert refused.value.code == "token_forged"
    visitor, expiry, signature = token_mint(secret=SECRET, public_id="wk_test", visitor_id="agent-1").split(
        "."
    )
    with pytest.raises(TokenInvalid) as refused:
        token_verify(token=f"agent-2.{expiry}.{signature}", secret=SECRET, public_id="wk_test")
    assert refused.value.code == "token_forged"


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    token = token_mint(secret=SECRET, public_id="wk_test", visitor_id="agent-1", ttl_s=2 * 3600)
    with pytest.raises(TokenInvalid) as refused:
        token_verify(token=token, secret=SECRET, public_id="wk_test")
    assert refused.value.code == "token_too_long_lived"


def test_the_documented_host_backend_example_mints_tokens_that_verify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "widget.md").read_text()
    code = docs.split("<!-- token-example -->\n```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.setenv("RAGSITE_WIDGET_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(code.replace('"wk_3xAmPlE"', '"wk_test"'), namespace)

    token = namespace["ragsite_widget_token"]("agent.7@example.com")

    assert token_verify(token=token, secret=SECRET, public_id="wk_test").visitor_id == "agent.7@example.com"
