"""The request id that follows one question through the web app, retrieval, the workers and the model."""

import re
import uuid
from contextvars import ContextVar

_REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id_get() -> str:
    return _REQUEST_ID.get()


def request_id_set(value: str | None) -> str:
    """Adopt a well-formed incoming id or make a new one; return the id now in effect."""
    request_id = value if value and _VALID.match(value) else uuid.uuid4().hex
    _REQUEST_ID.set(request_id)
    return request_id
