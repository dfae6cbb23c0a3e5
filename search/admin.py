from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from search.conversations import sources_readable_by
from search.models import Conversation, Feedback, Message


def _sources_html(sources: list[dict[str, Any]] | None) -> str:
    """The passages as a numbered list; None (not filtered for a viewer) shows nothing."""
    if not sources:
        return "—"
    return format_html(
        "<ol>{}</ol>",
        format_html_join(
            "",
            "<li value='{}'><strong>{}</strong> {}<br><small>{}</small></li>",
            (
                (
                    source.get("number", ""),
                    source.get("document_title", ""),
                    source.get("heading_path", ""),
                    source.get("excerpt", ""),
                )
                for source in sources
            ),
        ),
    )


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["question", "status", "answer", "created_at"]
    readonly_fields = ["question", "status", "answer", "created_at"]
    can_delete = False
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "updated_at"]
    list_filter = ["updated_at"]
    search_fields = ["title", "user__username"]
    raw_id_fields = ["user"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["question", "status", "conversation", "created_at"]
    list_filter = ["status"]
    search_fields = ["question", "standalone_question", "answer"]
    raw_id_fields = ["conversation"]
    # The stored sources are shown filtered by what the viewer may read, and never edited.
    exclude = ["sources"]
    readonly_fields = ["sources_list", "request_id", "created_at", "answered_at"]

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        message = super().get_object(request, object_id, from_field)
        if message is not None:
            message.readable_sources = sources_readable_by(user=request.user, sources=message.sources)
        return message

    @admin.display(description="Sources")
    def sources_list(self, obj: Message) -> str:
        return _sources_html(getattr(obj, "readable_sources", None))


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Ratings with the exact question, answer and passages judged: the evaluation and fine-tuning data."""

    list_display = ["question", "rating", "user", "updated_at"]
    list_filter = ["rating", "updated_at"]
    search_fields = ["question", "answer", "comment"]
    raw_id_fields = ["message", "user"]
    exclude = ["passages"]
    readonly_fields = ["passages_list", "created_at", "updated_at"]

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        feedback = super().get_object(request, object_id, from_field)
        if feedback is not None:
            feedback.readable_passages = sources_readable_by(user=request.user, sources=feedback.passages)
        return feedback

    @admin.display(description="Passages")
    def passages_list(self, obj: Feedback) -> str:
        return _sources_html(getattr(obj, "readable_passages", None))
