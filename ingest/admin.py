from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .models import Collection, Document
from .selectors import collections_readable_by


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]
    filter_horizontal = ["groups"]


def _each(modeladmin: DocumentAdmin, request: HttpRequest, queryset: QuerySet[Document], action: str) -> None:
    act = {"retry": services.document_retry, "reindex": services.document_reindex}[action]
    done = 0
    for document in queryset:
        try:
            act(document=document)
            done += 1
        except services.InvalidTransition as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{done} document(s) queued.", messages.SUCCESS)


class DocumentAdminForm(forms.ModelForm):
    def clean_collection(self) -> Collection:
        collection: Collection = self.cleaned_data["collection"]
        existing = (
            Document.objects.filter(collection=collection, sha256=self.instance.sha256)
            .exclude(id=self.instance.id)
            .first()
        )
        if existing is not None:
            raise forms.ValidationError(f"“{collection}” already holds the same content as “{existing}”.")
        return collection


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    form = DocumentAdminForm
    list_display = ["__str__", "collection", "status", "progress", "generation", "size", "created_at"]
    list_filter = ["status", "collection"]
    search_fields = ["title", "original_name", "sha256"]
    readonly_fields = [
        "file",
        "original_name",
        "content_type",
        "sha256",
        "size",
        "status",
        "progress",
        "error",
        "generation",
        "attempts",
        "uploaded_by",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    ]
    fields = ["collection", "title", *readonly_fields]
    actions = ["retry", "reindex"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploads go through /ingest/, which deduplicates and queues them

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        """Only documents of the collections the user reads; model permissions say what they may do."""
        readable = collections_readable_by(user=request.user).values("id")
        return super().get_queryset(request).filter(collection_id__in=readable)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "collection":
            kwargs["queryset"] = collections_readable_by(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.action(description="Retry the selected failed documents", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        _each(self, request, queryset, "retry")

    @admin.action(description="Re-index the selected documents", permissions=["change"])
    def reindex(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        _each(self, request, queryset, "reindex")

    def save_model(self, request: HttpRequest, obj: Document, form: Any, change: bool) -> None:
        """A new collection goes through the service (the chunks move with it); other edits save themselves.

        Saving the whole row would write back the status and generation read when the page was loaded, over
        those of an ingestion that finished meanwhile.
        """
        if not change:
            super().save_model(request, obj, form, change)
            return
        if "collection" in form.changed_data:
            services.document_move(
                document=obj, collection=form.cleaned_data["collection"], moved_by=request.user
            )
        edited = [name for name in form.changed_data if name != "collection"]
        if edited:
            obj.save(update_fields=[*edited, "updated_at"])

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj, deleted_by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            services.document_delete(document=document, deleted_by=request.user)
