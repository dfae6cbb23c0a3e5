from django.urls import path

from . import views

app_name = "sources"
urlpatterns = [
    path("", views.source_list, name="list"),
    path("<int:source_id>/", views.source_row, name="row"),
    path("<int:source_id>/sync", views.source_sync, name="sync"),
]
