"""Writes: signing a person in from their OpenID Connect claims, and mapping their groups claim."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from ops.services import audit_record

from .errors import LoginRefused
from .models import OidcIdentity

GROUP_NAME_MAX = Group._meta.get_field("name").max_length or 150


@dataclass(frozen=True)
class GroupChange:
    added: list[str]
    removed: list[str]


def group_names_from_claim(*, claims: Mapping[str, Any], claim: str, prefix: str) -> list[str]:
    """The Django group names a groups claim asks for: its names that start with `prefix`, sorted.

    A missing claim means no groups (the safe direction: access is taken, never kept by accident).
    """
    value = claims.get(claim)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise LoginRefused(
            f"The provider's {claim!r} claim is not a list of group names, so your access cannot be worked "
            "out. Ask an administrator to check the provider's group mapping."
        )
    names = {name.strip() for name in value if name.strip().startswith(prefix) and name.strip()}
    too_long = sorted(name for name in names if len(name) > GROUP_NAME_MAX)
    if too_long:
        raise LoginRefused(
            f"Group names longer than {GROUP_NAME_MAX} characters: {', '.join(too_long)[:300]}."
        )
    return sorted(names)


def user_groups_sync(*, identity: OidcIdentity, group_names: list[str]) -> GroupChange:
    """Make the user's SSO-managed groups exactly `group_names`; groups given by hand are left alone."""
    user = identity.user
    wanted = {Group.objects.get_or_create(name=name)[0] for name in group_names}
    managed = set(identity.managed_groups.all())
    current = set(user.groups.all())
    to_add = wanted - current
    # Only what a claim once granted may be taken away by a claim.
    to_remove = (managed - wanted) & current
    user.groups.add(*to_add)
    user.groups.remove(*to_remove)
    # A group the user already had by hand stays theirs if the claim later drops it.
    identity.managed_groups.set((managed & wanted) | to_add)
    return GroupChange(
        added=sorted(group.name for group in to_add), removed=sorted(group.name for group in to_remove)
    )


def _username_for(*, claims: Mapping[str, Any], subject: str) -> str:
    email = claims.get("email") if isinstance(claims.get("email"), str) else ""
    wanted = claims.get("preferred_username") or email or subject
    base = re.sub(r"[^\w.@+-]+", "-", str(wanted)).strip("-")[:120] or "user"
    if not User.objects.filter(username=base).exists():
        return base
    # Another account (local, or another provider's) has this name: never share it.
    return f"{base}-{hashlib.sha256(subject.encode()).hexdigest()[:8]}"


@transaction.atomic
def oidc_user_sign_in(
    *, issuer: str, claims: Mapping[str, Any], groups_claim: str, groups_prefix: str
) -> User:
    """The user for a verified sign-in (created on the first), with claims and groups brought up to date."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise LoginRefused("The provider's answer names no subject (sub claim), so it cannot be trusted.")
    group_names = group_names_from_claim(claims=claims, claim=groups_claim, prefix=groups_prefix)
    identity = (
        OidcIdentity.objects.select_for_update()
        .select_related("user")
        .filter(issuer=issuer, subject=subject)
        .first()
    )
    if identity is None:
        user = User.objects.create_user(_username_for(claims=claims, subject=subject))
        user.set_unusable_password()
        identity = OidcIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        created = True
    else:
        user = identity.user
        created = False
        if not user.is_active:
            raise LoginRefused("Your account here is disabled. Ask an administrator to enable it.")
    email = claims.get("email")
    user.email = email if isinstance(email, str) else user.email
    name = claims.get("name")
    if isinstance(name, str) and name:
        first, _, last = name.partition(" ")
        user.first_name, user.last_name = first[:150], last[:150]
    user.save()
    change = user_groups_sync(identity=identity, group_names=group_names)
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    audit_record(
        actor=user,
        action="user.oidc_login",
        target=user,
        details={
            "issuer": issuer,
            "created": created,
            "groups_added": change.added,
            "groups_removed": change.removed,
        },
    )
    return user
