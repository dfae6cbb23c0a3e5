from django.urls import path

from . import views

app_name = "ingest"
urlpatterns = [
    path("", views.upload, name="upload"),
    path("documents/<int:document_id>/", views.document_row, name="document_row"),
    path("documents/<int:document_id>/retry", views.document_retry, name="document_retry"),
    path("documents/<int:document_id>/reindex", views.document_reindex, name="document_reindex"),
    path("documents/<int:document_id>/delete", views.document_delete, name="document_delete"),
]
