from django.urls import path

from . import views

app_name = "widget"
urlpatterns = [
    path("v1/widget.js", views.widget_script, name="script"),
    path("v1/<str:public_id>/config", views.widget_config, name="config"),
    path("v1/<str:public_id>/ask", views.widget_ask, name="ask"),
]
