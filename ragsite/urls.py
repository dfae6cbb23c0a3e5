from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path

from accounts.views import admin_login
from accounts.views import login as login_view
from api.endpoints import api as api_v1
from ops.views import login_throttled
from ops.views import metrics as metrics_view

from . import status, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/login/", login_throttled(admin_login(admin.site.login))),
    path("accounts/login/", login_throttled(login_view), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("oidc/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("ops/", include(([path("status/", status.status, name="status")], "ops"))),
    path("ingest/", include("ingest.urls")),
    path("sources/", include("sources.urls")),
    path("widget/", include("widget.urls")),
    path("api/v1/", api_v1.urls),
    path("api/", include("api.urls")),
    path("", include("search.urls")),
]
