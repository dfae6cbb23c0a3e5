from django.contrib import admin
from django.http import HttpRequest

from retrievers.models import Retriever


@admin.register(Retriever)
class RetrieverAdmin(admin.ModelAdmin):
    """Read-only: registering, activating and rolling back are `manage.py retriever` commands."""

    list_display = ["name", "status", "slot", "activated_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    fields = (
        "name",
        "status",
        "slot",
        "message",
        "gate",
        "metrics",
        "model_dir",
        "source_dir",
        "created_at",
        "updated_at",
        "activated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
