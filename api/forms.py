from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from ingest.models import Collection


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=200, strip=True, widget=forms.TextInput(attrs={"placeholder": "e.g. Support chat bot"})
    )
    expires_on = forms.DateField(
        label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The token stops working at the start of this day (UTC).",
    )
    collections = forms.ModelMultipleChoiceField(
        queryset=Collection.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every collection you may read.",
    )

    def __init__(self, *args: Any, collections: QuerySet[Collection], **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"expires_on": timezone.now().date() + timedelta(days=90)})
        super().__init__(*args, **kwargs)
        self.fields["collections"].queryset = collections  # type: ignore[attr-defined]

    def expires_at(self) -> datetime:
        return datetime.combine(self.cleaned_data["expires_on"], time.min, tzinfo=UTC)
