"""Credentials encrypted at rest with Fernet, under a key derived from RAGSITE_SOURCES_KEY (or SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class CredentialsUnreadable(Exception):
    """Stored credentials that the current key cannot decrypt (the key was changed)."""


def _fernet() -> Fernet:
    secret = getattr(settings, "RAGSITE_SOURCES_KEY", "") or f"ragsite-sources:{settings.SECRET_KEY}"
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def credentials_encrypt(credentials: dict[str, str]) -> str:
    """A token of `credentials`; empty credentials store as ""."""
    if not any(credentials.values()):
        return ""
    return _fernet().encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()


def credentials_decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        data = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise CredentialsUnreadable(
            "The source's stored credentials cannot be decrypted (RAGSITE_SOURCES_KEY or SECRET_KEY was "
            "changed since they were saved). Enter the credentials again in the source's settings."
        ) from None
    return {str(key): str(value) for key, value in data.items()}
