from django.urls import path

from . import views

# mozilla-django-oidc and its session middleware find these views by these names.
urlpatterns = [
    path("authenticate/", views.OidcStartView.as_view(), name="oidc_authentication_init"),
    path("callback/", views.OidcCallbackView.as_view(), name="oidc_authentication_callback"),
]
