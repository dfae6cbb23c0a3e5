"""Token strings: shape, lookup prefix, hash comparison."""

from __future__ import annotations

from api.tokens import TOKEN_RE, token_hash, token_matches, token_new, token_prefix


def test_a_new_token_has_a_public_prefix_and_a_high_entropy_secret_and_only_its_hash_is_kept() -> None:
    new = token_new()
    assert TOKEN_RE.fullmatch(new.token)
    assert new.token.startswith(f"rs_{new.prefix}_")
    assert new.token_hash == token_hash(new.token) and new.token not in new.token_hash
    assert token_new().token != new.token


def test_the_prefix_is_read_only_from_a_well_formed_token() -> None:
    new = token_new()
    assert token_prefix(new.token) == new.prefix
    malformed_tokens = [
        "", "rs_", f"rs_{new.prefix}", new.token[:-1], new.token + "x", "Bearer " + new.token,
        new.token.replace("rs_", "RS_"), "rs_" + "é" * 12 + "_" + "a" * 43, "x" * 10_000,
    ]  # fmt: skip
    for malformed in malformed_tokens:
        assert token_prefix(malformed) is None, malformed


def test_only_the_very_token_matches_its_hash() -> None:
    new = token_new()
    assert token_matches(token=new.token, stored_hash=new.token_hash)
    other = new.token[:-1] + ("A" if new.token[-1] != "A" else "B")
    assert not token_matches(token=other, stored_hash=new.token_hash)
    assert not token_matches(token="ünïcode", stored_hash=new.token_hash)
