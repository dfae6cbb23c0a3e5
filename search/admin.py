from django.contrib import admin

from search.models import Conversation, Feedback, Message


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
    readonly_fields = ["request_id", "created_at", "answered_at"]


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Ratings with the exact question, answer and passages judged: the evaluation and fine-tuning data."""

    list_display = ["question", "rating", "user", "updated_at"]
    list_filter = ["rating", "updated_at"]
    search_fields = ["question", "answer", "comment"]
    raw_id_fields = ["message", "user"]
    readonly_fields = ["created_at", "updated_at"]
