from django.conf import settings


def content_security_policy() -> str:
    """Only our own scripts; inline styles stay allowed for the admin's and htmx's style attributes."""
    return str(
        getattr(
            settings,
            "RAGSITE_CSP",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
            "form-action 'self'; object-src 'none'",
        )
    )
