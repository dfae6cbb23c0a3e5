"""Why a single sign-on attempt failed, in words a person can act on, with the HTTP status to answer."""


class OidcLoginError(Exception):
    """A sign-in through the identity provider that did not succeed; nothing was changed."""

    status = 400
    title = "Single sign-on failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProviderUnavailable(OidcLoginError):
    """The identity provider could not be reached, or answered something that is not OpenID Connect."""

    status = 503
    title = "The identity provider cannot be reached"


class TokenRejected(OidcLoginError):
    """The ID token failed a check (signature, issuer, audience, expiry, nonce): a forgery or a mix-up."""

    status = 401
    title = "The sign-in could not be verified"


class LoginRefused(OidcLoginError):
    """The provider or this site refused this person (disabled, consent denied, session ended)."""

    status = 403
    title = "Sign-in refused"
