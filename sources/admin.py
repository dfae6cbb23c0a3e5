from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ingest.selectors import collections_readable_by

from . import services
from .models import Source, SourceItem, SyncRun


class SourceAdminForm(forms.ModelForm):
    """Credentials are write-only: empty fields keep the stored ones; "clear" removes them."""

    username = forms.CharField(
        required=False, max_length=500, help_text="Leave empty to keep the stored one."
    )
    password = forms.CharField(
        required=False,
        max_length=5000,
        label="Password or token",
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown; leave empty to keep the stored one.",
    )
    clear_credentials = forms.BooleanField(required=False, help_text="Remove the stored credentials.")

    class Meta:
        model = Source
        fields = [
            "name",
            "kind",
            "location",
            "collection",
            "schedule_minutes",
            "include_patterns",
            "exclude_patterns",
            "options",
            "enabled",
        ]


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceAdminForm
    list_display = ["name", "kind", "location", "collection", "schedule_minutes", "enabled"]
    list_filter = ["kind", "enabled", "collection"]
    search_fields = ["name", "location"]
    actions = ["sync_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Source]:
        readable = collections_readable_by(user=request.user).values("id")
        return super().get_queryset(request).filter(collection_id__in=readable)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "collection":
            kwargs["queryset"] = collections_readable_by(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Source, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        data = form.cleaned_data
        if data.get("clear_credentials"):
            services.source_credentials_set(source=obj, credentials={})
        elif data.get("username") or data.get("password"):
            services.source_credentials_set(
                source=obj,
                credentials={k: data[k] for k in ("username", "password") if data.get(k)},
            )

    @admin.action(description="Sync the selected sources now", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        count = 0
        for source in queryset:
            try:
                services.source_sync_queue(source=source)
            except services.SourceRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                count += 1
        if count:
            self.message_user(request, f"{count} sync(s) queued.", messages.SUCCESS)


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = [
        "source",
        "status",
        "started_at",
        "finished_at",
        "seen",
        "new",
        "changed",
        "deleted",
        "failed",
    ]
    list_filter = ["status", "source"]
    readonly_fields = [f.name for f in SyncRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SourceItem)
class SourceItemAdmin(admin.ModelAdmin):
    list_display = ["identity", "source", "version", "document", "updated_at"]
    list_filter = ["source"]
    search_fields = ["identity"]
    readonly_fields = [f.name for f in SourceItem._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
