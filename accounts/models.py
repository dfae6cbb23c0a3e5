from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class OidcIdentity(models.Model):
    """A user's identity at the OpenID Connect provider (issuer and subject), and the groups it manages.

    Users are matched by (issuer, subject), never by e-mail: an address the provider lets someone choose must
    not open a local account (the demo admin's, say) that happens to share it.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identity"
    )
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    # The groups this identity's groups claim granted at the last login: the ones a later login may take away.
    # Groups an administrator gave the user by hand are not in it and are left alone.
    managed_groups = models.ManyToManyField(Group, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="accounts_oidcidentity_issuer_subject")
        ]
        verbose_name = "OpenID Connect identity"
        verbose_name_plural = "OpenID Connect identities"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
