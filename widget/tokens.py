"""Visitor tokens: HMAC-SHA256 over key id, visitor id and expiry, minted by the host site's backend.

A token is `<visitor id>.<expiry, unix seconds>.<hex HMAC-SHA256 of "<key id>:<visitor id>:<expiry>">`,
signed with the key's secret. The visitor id may contain dots, so a token is split from the right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils.crypto import salted_hmac

# Printable ASCII without spaces: room for a user id, an email address or a hash of either.
VISITOR_ID_RE = re.compile(r"[\x21-\x7e]{1,200}")
# ASCII digits only: str.isdigit() also passes superscripts and other scripts' digits, which int() may refuse.
EXPIRY_RE = re.compile(r"[0-9]{1,12}")
SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
SECRET_DERIVATION_SALT = "ragsite.widget.WidgetKey.secret"


class TokenInvalid(Exception):
    """A visitor token is malformed, forged, expired or too long-lived; `message` is fit to show."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class VisitorToken:
    visitor_id: str
    expires_at: int


def new_secret_salt() -> str:
    return secrets.token_hex(32)


def derive_secret(*, public_id: str, secret_salt: str) -> str:
    """The key's signing secret: recomputed from SECRET_KEY, never stored."""
    return salted_hmac(SECRET_DERIVATION_SALT, f"{public_id}:{secret_salt}", algorithm="sha256").hexdigest()


def _signature(*, secret: str, public_id: str, visitor_id: str, expires_at: int) -> str:
    message = f"{public_id}:{visitor_id}:{expires_at}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def token_mint(*, secret: str, public_id: str, visitor_id: str, ttl_s: int = 300) -> str:
    """What the host site's backend does (docs/widget.md has the same in ten lines)."""
    if not VISITOR_ID_RE.fullmatch(visitor_id):
        raise ValueError("visitor_id must be 1-200 printable ASCII characters without spaces")
    expires_at = int(time.time()) + ttl_s
    signature = _signature(secret=secret, public_id=public_id, visitor_id=visitor_id, expires_at=expires_at)
    return f"{visitor_id}.{expires_at}.{signature}"


def token_verify(*, token: str, secret: str, public_id: str) -> VisitorToken:
    """The token's visitor if its signature, expiry and lifetime are good; else TokenInvalid."""
    parts = token.rsplit(".", 2)
    if (
        len(parts) != 3
        or not VISITOR_ID_RE.fullmatch(parts[0])
        or not EXPIRY_RE.fullmatch(parts[1])
        or not SIGNATURE_RE.fullmatch(parts[2])
    ):
        raise TokenInvalid("The visitor token is malformed.", code="token_malformed")
    visitor_id, expiry, signature = parts[0], int(parts[1]), parts[2]
    expected = _signature(secret=secret, public_id=public_id, visitor_id=visitor_id, expires_at=expiry)
    # Bytes, so that no input can make the comparison raise (str arguments must be ASCII).
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise TokenInvalid(
            "The visitor token's signature is wrong (minted with another key's secret?).", code="token_forged"
        )
    now = int(time.time())
    if expiry <= now:
        raise TokenInvalid(
            "The visitor token has expired; reload the page for a new one.", code="token_expired"
        )
    max_ttl = int(getattr(settings, "WIDGET_TOKEN_MAX_TTL_S", 3600))
    if expiry > now + max_ttl:
        raise TokenInvalid(
            f"The visitor token lives too long: mint tokens that expire within {max_ttl // 60} minutes.",
            code="token_too_long_lived",
        )
    return VisitorToken(visitor_id=visitor_id, expires_at=expiry)
