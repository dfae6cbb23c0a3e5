from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from .forms import WidgetKeyForm
from .models import WidgetExchange, WidgetKey
from .selectors import widget_collections_grantable_by, widget_exchange_sources_for, widget_snippet
from .services import (
    widget_exchange_set_feedback,
    widget_key_delete,
    widget_key_rotate_secret,
    widget_key_save,
)


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@admin.register(WidgetKey)
class WidgetKeyAdmin(admin.ModelAdmin):
    form = WidgetKeyForm
    list_display = ["name", "public_id", "is_enabled", "requires_visitor_token", "last_used_at", "created_by"]
    list_filter = ["is_enabled", "requires_visitor_token"]
    search_fields = ["name", "public_id"]
    filter_horizontal = ["collections"]
    readonly_fields = ["public_id", "secret", "created_by", "created_at", "last_used_at"]
    change_form_template = "widget/admin_key_change_form.html"
    actions = ["disable_keys", "enable_keys"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        main = ["name", "collections", "allowed_origins", "is_enabled", "requires_visitor_token"]
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": main}),
            ("Rate limits", {"fields": ["rate_limit_per_minute", "visitor_rate_limit_per_minute"]}),
        ]
        if obj is not None:
            fieldsets.insert(0, ("Embedding", {"fields": ["public_id", "secret"]}))
            fieldsets.append(("History", {"fields": ["created_by", "created_at", "last_used_at"]}))
        return fieldsets

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "collections":
            kwargs["queryset"] = widget_collections_grantable_by(user=request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="Signing secret")
    def secret(self, obj: WidgetKey) -> str:
        url = reverse("admin:widget_widgetkey_rotate_secret", args=[obj.pk])
        return format_html(
            "Shown once, when the key is created or its secret rotated. <a href='{}'>Rotate the secret…</a>",
            url,
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        key = self.get_object(request, object_id)
        if key is not None:
            extra_context = {
                **(extra_context or {}),
                "snippet": widget_snippet(key=key, base_url=_base_url(request)),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_model(self, request: HttpRequest, obj: WidgetKey) -> None:
        widget_key_delete(key=obj, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WidgetKey]) -> None:
        for key in queryset:
            widget_key_delete(key=key, user=request.user)

    def save_model(self, request: HttpRequest, obj: WidgetKey, form: Any, change: bool) -> None:
        secret = widget_key_save(key=obj, user=request.user)
        if secret is not None:
            request._widget_new_secret = secret  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: WidgetKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, "_widget_new_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, secret, created=True)

    def _secret_page(
        self, request: HttpRequest, key: WidgetKey, secret: str, *, created: bool
    ) -> HttpResponse:
        # Rendered in the response to the POST and never stored: reloading cannot show it again.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Widget key “{key.name}”",
            "key": key,
            "secret": secret,
            "created": created,
            "snippet": widget_snippet(key=key, base_url=_base_url(request)),
            "change_url": reverse("admin:widget_widgetkey_change", args=[key.pk]),
        }
        response = TemplateResponse(request, "widget/admin_secret.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "<int:key_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="widget_widgetkey_rotate_secret",
            )
        ]
        return custom + super().get_urls()

    def rotate_secret_view(self, request: HttpRequest, key_id: int) -> HttpResponse:
        key = get_object_or_404(WidgetKey, pk=key_id)
        if not self.has_change_permission(request, key):
            return HttpResponseRedirect(reverse("admin:index"))
        if request.method == "POST":
            secret = widget_key_rotate_secret(key=key, user=request.user)
            return self._secret_page(request, key, secret, created=False)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Rotate the secret of “{key.name}”?",
            "key": key,
            "change_url": reverse("admin:widget_widgetkey_change", args=[key.pk]),
        }
        return TemplateResponse(request, "widget/admin_rotate_secret.html", context)

    @admin.action(description="Disable the selected keys")
    def disable_keys(self, request: HttpRequest, queryset: QuerySet[WidgetKey]) -> None:
        for key in queryset:
            key.is_enabled = False
            widget_key_save(key=key, user=request.user)
        self.message_user(
            request, "Disabled. Widgets using these keys now refuse every question.", messages.SUCCESS
        )

    @admin.action(description="Enable the selected keys")
    def enable_keys(self, request: HttpRequest, queryset: QuerySet[WidgetKey]) -> None:
        for key in queryset:
            key.is_enabled = True
            widget_key_save(key=key, user=request.user)
        self.message_user(request, "Enabled.", messages.SUCCESS)


@admin.register(WidgetExchange)
class WidgetExchangeAdmin(admin.ModelAdmin):
    list_display = ["created_at", "key", "visitor", "question_preview", "status", "feedback"]
    list_filter = ["status", "feedback", "key"]
    search_fields = ["question", "answer", "visitor"]
    date_hierarchy = "created_at"
    list_select_related = ["key"]
    fields = (
        "key",
        "visitor",
        "origin",
        "created_at",
        "finished_at",
        "status",
        "question",
        "answer",
        "sources_list",
        "error",
        "request_id",
        "feedback",
        "feedback_note",
        "feedback_by",
    )
    readonly_fields = tuple(name for name in fields if name not in ("feedback", "feedback_note"))
    actions = ["mark_helpful", "mark_wrong"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Question")
    def question_preview(self, obj: WidgetExchange) -> str:
        return obj.question if len(obj.question) <= 80 else obj.question[:79] + "…"

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        exchange = super().get_object(request, object_id, from_field)
        if exchange is not None:
            exchange.readable_sources = widget_exchange_sources_for(
                user=request.user, sources=exchange.sources
            )
        return exchange

    @admin.display(description="Sources")
    def sources_list(self, obj: WidgetExchange) -> str:
        # Only what the viewer may read (see get_object); nothing when the sources were not filtered.
        sources = getattr(obj, "readable_sources", None)
        if not sources:
            return "—"
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                "<li><strong>{}</strong> {}<br><small>{}</small></li>",
                (
                    (source.get("title", ""), source.get("heading", ""), source.get("excerpt", ""))
                    for source in sources
                ),
            ),
        )

    def save_model(self, request: HttpRequest, obj: WidgetExchange, form: Any, change: bool) -> None:
        widget_exchange_set_feedback(
            exchange=obj, feedback=obj.feedback, note=obj.feedback_note, user=request.user
        )

    @admin.action(description="Feedback: helpful")
    def mark_helpful(self, request: HttpRequest, queryset: QuerySet[WidgetExchange]) -> None:
        for exchange in queryset:
            widget_exchange_set_feedback(
                exchange=exchange, feedback=WidgetExchange.Feedback.HELPFUL, user=request.user
            )

    @admin.action(description="Feedback: wrong or unhelpful")
    def mark_wrong(self, request: HttpRequest, queryset: QuerySet[WidgetExchange]) -> None:
        for exchange in queryset:
            widget_exchange_set_feedback(
                exchange=exchange, feedback=WidgetExchange.Feedback.WRONG, user=request.user
            )
