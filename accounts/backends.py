"""mozilla-django-oidc's authorization-code backend, with the checks it leaves out and our group mapping.

mozilla-django-oidc 5 verifies the ID token's signature (keys from the provider's JWKS) and its nonce, but
not its audience or issuer; `_verify_jws` adds both (and requires exp, iat and sub). Every failure becomes an
`OidcLoginError` the callback view shows as a page, never a 500.
"""

from __future__ import annotations

from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .errors import LoginRefused, ProviderUnavailable, TokenRejected
from .provider import oidc_enabled, provider_metadata
from .services import oidc_user_sign_in

# Clocks of the provider and this site may differ a little.
CLOCK_SKEW_S = 60


class OidcBackend(OIDCAuthenticationBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django loads the backend for every request of a signed-in user: the provider's endpoints are
        # looked up only when a login needs them (the properties below), never here.
        self.UserModel = get_user_model()

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:  # noqa: N802 (mozilla-django-oidc's attribute names)
        return str(settings.OIDC_RP_CLIENT_ID)

    @property
    def OIDC_RP_CLIENT_SECRET(self) -> str:  # noqa: N802
        return str(settings.OIDC_RP_CLIENT_SECRET)

    @property
    def OIDC_RP_SIGN_ALGO(self) -> str:  # noqa: N802
        return str(settings.OIDC_RP_SIGN_ALGO)

    @property
    def OIDC_RP_IDP_SIGN_KEY(self) -> None:  # noqa: N802
        return None

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802
        return str(provider_metadata()["token_endpoint"])

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str | None:  # noqa: N802
        endpoint = provider_metadata().get("userinfo_endpoint")
        return str(endpoint) if endpoint else None

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:  # noqa: N802
        return str(provider_metadata()["jwks_uri"])

    def authenticate(self, request: Any, **kwargs: Any) -> User | None:
        # Only the callback view passes a nonce; a password form's ?code=&state= query must not start a login.
        if request is None or "nonce" not in kwargs or "password" in kwargs or not oidc_enabled():
            return None
        user: User | None = super().authenticate(request, **kwargs)
        return user

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            token_info = super().get_token(payload)
        except requests.HTTPError as exc:
            # invalid_grant: the code was used already, expired, or its account is gone or disabled.
            raise LoginRefused(
                "The identity provider would not exchange this sign-in for tokens (the link was used "
                "already, expired, or your account there is disabled). Sign in again."
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise ProviderUnavailable(
                f"The identity provider's token endpoint could not be reached ({type(exc).__name__}). "
                "Try again in a moment."
            ) from exc
        if not isinstance(token_info, dict) or not isinstance(token_info.get("id_token"), str):
            raise TokenRejected("The identity provider's answer held no ID token.")
        return token_info

    def retrieve_matching_jwk(self, token: str) -> Any:
        try:
            return super().retrieve_matching_jwk(token)
        except requests.RequestException as exc:
            raise ProviderUnavailable(
                f"The identity provider's signing keys could not be fetched ({type(exc).__name__})."
            ) from exc
        except (SuspiciousOperation, jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
            raise TokenRejected(
                "The ID token is not signed by any key the identity provider publishes."
            ) from exc

    def _verify_jws(self, payload: str, key: Any) -> dict[str, Any]:
        try:
            algorithm = jwt.get_unverified_header(payload).get("alg")
        except jwt.PyJWTError as exc:
            raise TokenRejected("The ID token is not a well-formed signed JWT.") from exc
        if algorithm != self.OIDC_RP_SIGN_ALGO:
            raise TokenRejected(
                f"The ID token is signed with {algorithm!r}, not {self.OIDC_RP_SIGN_ALGO!r} as configured."
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=provider_metadata()["issuer"],
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected(
                "The ID token's signature does not verify: it was not made by the provider."
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected(
                "The ID token was issued to another application (its audience is wrong)."
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected("The ID token was issued by another provider (its issuer is wrong).") from exc
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("The ID token has expired. Sign in again.") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"The ID token is not valid ({exc}).") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise TokenRejected("The ID token was issued to another application (its azp is wrong).")
        return claims

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        nonce = kwargs.get("nonce")
        payload: dict[str, Any] = self._verify_jws(token, self.retrieve_matching_jwk(token))
        if "nonce" in kwargs and (nonce is None or payload.get("nonce") != nonce):
            raise TokenRejected(
                "The ID token belongs to another sign-in (its nonce does not match): a replay?"
            )
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        if not self.OIDC_OP_USER_ENDPOINT:
            return payload
        try:
            info: dict[str, Any] = super().get_userinfo(access_token, id_token, payload)
        except (requests.RequestException, ValueError) as exc:
            raise ProviderUnavailable(
                f"The identity provider's userinfo endpoint failed ({type(exc).__name__})."
            ) from exc
        if not isinstance(info, dict) or info.get("sub") != payload.get("sub"):
            # OpenID Connect Core 1.0, 5.3.2: a userinfo answer about someone else must not be used.
            raise TokenRejected("The provider's userinfo answer is about another subject than the ID token.")
        return info

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User:
        claims = {**payload, **self.get_userinfo(access_token, id_token, payload)}
        return oidc_user_sign_in(
            issuer=str(payload["iss"]),
            claims=claims,
            groups_claim=settings.RAGSITE_OIDC_GROUPS_CLAIM,
            groups_prefix=settings.RAGSITE_OIDC_GROUPS_PREFIX,
        )
