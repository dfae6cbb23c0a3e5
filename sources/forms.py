from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db.models import QuerySet

from ingest.models import Collection

from .connectors import connector_choices


class SourceForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=connector_choices)
    location = forms.CharField(
        max_length=2000, help_text="A repository or site URL, or an absolute path on the workers."
    )
    collection = forms.ModelChoiceField(queryset=Collection.objects.none(), empty_label=None)
    schedule_minutes = forms.IntegerField(
        min_value=0, initial=60, label="Sync every (minutes)", help_text="0: only by hand."
    )
    include_patterns = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="Glob patterns, one a line."
    )
    exclude_patterns = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    options = forms.CharField(
        required=False,
        initial="{}",
        help_text='JSON, per kind: {"branch": "main"} for git, {"max_pages": 500} for a web site '
        "(docs/connectors.md).",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    username = forms.CharField(required=False, max_length=500)
    password = forms.CharField(
        required=False,
        max_length=5000,
        label="Password or token",
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted, never shown again.",
    )

    def __init__(self, *args: Any, collections: QuerySet[Collection], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["collection"].queryset = collections  # type: ignore[attr-defined]

    def clean_options(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("options") or "").strip() or "{}"
        try:
            options = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f'Options must be JSON ({exc.msg}), for example {{"branch": "main"}}.'
            ) from None
        if not isinstance(options, dict):
            raise forms.ValidationError('Options must be a JSON object, for example {"branch": "main"}.')
        return options

    def credentials(self) -> dict[str, str]:
        return {key: self.cleaned_data[key] for key in ("username", "password") if self.cleaned_data.get(key)}
