"""API token strings: `rs_<12 hex prefix>_<43-character URL-safe secret>`, 256 bits of randomness.

The prefix finds the row; the SHA-256 of the whole token is what is stored and compared (a fast hash is
enough for a high-entropy secret, and constant-time comparison keeps the check from leaking it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_RE = re.compile(r"rs_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class NewToken:
    prefix: str
    token: str
    token_hash: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_new() -> NewToken:
    prefix = secrets.token_hex(6)
    token = f"rs_{prefix}_{secrets.token_urlsafe(32)}"
    return NewToken(prefix=prefix, token=token, token_hash=token_hash(token))


def token_prefix(token: str) -> str | None:
    """The token's lookup prefix, or None when it is not shaped like one of ours."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    match = TOKEN_RE.fullmatch(token)
    return match.group(1) if match else None


def token_matches(*, token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token).encode(), stored_hash.encode())
