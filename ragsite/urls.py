from django.contrib import admin
from django.contrib.auth.views import LoginView, LogoutView
from django.urls import include, path

from ops.views import login_throttled
from ops.views import metrics as metrics_view

from . import status, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/login/", login_throttled(admin.site.login)),
    path("accounts/login/", login_throttled(LoginView.as_view()), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("ops/", include(([path("status/", status.status, name="status")], "ops"))),
    path("ingest/", include("ingest.urls")),
    path("sources/", include("sources.urls")),
    path("widget/", include("widget.urls")),
    path("", include("search.urls")),
]
