from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiToken
from .selectors import api_collections_grantable_by
from .services import TokenRefused, api_token_create, api_token_revoke, api_token_validate


class ApiTokenAddForm(forms.ModelForm):
    """A new token for the signed-in staff member; the service's checks are the form's."""

    user: Any = None

    class Meta:
        model = ApiToken
        fields = ["name", "expires_at", "collections", "rate_limit_per_minute"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            api_token_validate(
                user=self.user,
                name=cleaned["name"],
                expires_at=cleaned["expires_at"],
                collections=cleaned.get("collections") or [],
            )
        except TokenRefused as exc:
            raise forms.ValidationError(exc.message) from exc
        return cleaned


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff see and revoke their own tokens (superusers everyone's); a new one is shown once, on creation."""

    list_display = ["name", "user", "prefix", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    filter_horizontal = ["collections"]
    actions = ["revoke_tokens"]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        tokens = super().get_queryset(request).select_related("user")
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user  # type: ignore[attr-defined]
        return form

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["name", "expires_at", "collections", "rate_limit_per_minute"]
        return ["name", "user", "prefix", "expires_at", "collections", "rate_limit_per_minute"] + [
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A token's grant is fixed when it is made: revoke it and make another instead.
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoked, never deleted: the audit log keeps naming it.
        return False

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "collections":
            kwargs["queryset"] = api_collections_grantable_by(user=request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        token, secret = api_token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data["expires_at"],
            collections=form.cleaned_data.get("collections") or [],
            rate_limit_per_minute=form.cleaned_data.get("rate_limit_per_minute"),
        )
        obj.pk, obj.user, obj.prefix = token.pk, token.user, token.prefix
        messages.warning(request, f"Copy the token “{token.name}” now; it is shown this once: {secret}")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The service set the collections."""

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token, user=request.user)
        self.message_user(request, "The selected tokens are revoked.")
