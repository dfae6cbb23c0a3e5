from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError

from .models import WidgetKey


def normalize_origin(value: str) -> str:
    """`https://Help.Example.com:443/` → `https://help.example.com`, the form browsers send in `Origin`."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"“{value}” is not an origin: write it as https://host or https://host:port.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValidationError(f"“{value}” has more than an origin: drop the path, query and user name.")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"“{value}” has an invalid port.") from exc
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port and port != default_port else ""
    return f"{parts.scheme}://{host}{suffix}"


class OriginsField(forms.Field):
    """One origin per line in a textarea; a list of normalised origins in Python."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60, "placeholder": "https://helpdesk.example.com"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value

    def to_python(self, value: Any) -> list[str]:
        text = str(value or "")
        origins: list[str] = []
        for line in text.splitlines():
            if line.strip():
                origin = normalize_origin(line)
                if origin not in origins:
                    origins.append(origin)
        return origins


class WidgetKeyForm(forms.ModelForm):
    allowed_origins = OriginsField(
        required=False,
        help_text="One origin per line (scheme, host and port; no path), e.g. https://helpdesk.example.com. "
        "Only pages on these origins may use the key.",
    )

    class Meta:
        model = WidgetKey
        fields = [
            "name",
            "collections",
            "allowed_origins",
            "is_enabled",
            "requires_visitor_token",
            "rate_limit_per_minute",
            "visitor_rate_limit_per_minute",
        ]
