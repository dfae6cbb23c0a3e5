from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from .throttle import login_failure_record


@receiver(user_login_failed)
def on_login_failed(sender: object, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if request is not None:
        login_failure_record(
            ip=str(request.META.get("REMOTE_ADDR") or ""),
            username=str(credentials.get("username", "")),
            attempt=getattr(request, "login_attempt", None),
        )
