"""Single sign-on in Debian's chromium against a real OpenID Connect provider (npm oidc-provider under Node).

The web app runs under uvicorn as in production, with a scripted model (the provider, not the model, is under
test here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.accounts.oidc import CLIENT_ID, CLIENT_SECRET, OidcProviderProcess, start_oidc_provider
from tests.browser import screenshot
from tests.processes import WebProcess, start_web
from tests.search.factories import add_chunks, make_collection, make_document, make_group
from tests.search.fake_inference import FakeInference, Reply

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

QUESTION = "Within how many days can a Zephyr laptop be returned?"
POLICY = (
    "A Zephyr laptop may be returned within 45 days of delivery for a full refund. Phones may be "
    "returned within 14 days."
)


@pytest.fixture(scope="module")
def scripted_model() -> Iterator[FakeInference]:
    from ragsite.devstack import free_port

    fake = FakeInference(port=free_port())
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def provider_port() -> int:
    from ragsite.devstack import free_port

    return free_port()


@pytest.fixture(scope="module")
def web(
    test_database_name: str, logs_dir: Path, scripted_model: FakeInference, provider_port: int
) -> Iterator[WebProcess]:
    web = start_web(
        database_name=test_database_name,
        log_dir=logs_dir,
        inference_url=scripted_model.url,
        extra_env={
            "RAGSITE_OIDC_ISSUER": f"http://127.0.0.1:{provider_port}",
            "RAGSITE_OIDC_CLIENT_ID": CLIENT_ID,
            "RAGSITE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "RAGSITE_OIDC_PROVIDER_NAME": "Test IdP",
        },
    )
    yield web
    web.stop()


@pytest.fixture(scope="module")
def provider(web: WebProcess, provider_port: int, logs_dir: Path) -> Iterator[OidcProviderProcess]:
    server = start_oidc_provider(
        port=provider_port, log_dir=logs_dir, redirect_uris=[f"{web.url}/oidc/callback/"]
    )
    yield server
    server.stop()


@pytest.fixture
def handbook(scripted_model: FakeInference) -> Any:
    scripted_model.reset()
    scripted_model.default_reply = Reply(["A Zephyr laptop ", "can be returned within 45 days [1]."])
    collection = make_collection(name="Handbook", groups=[make_group(name="handbook-readers")])
    document = make_document(title="Returns policy", collection=collection)
    add_chunks(document, POLICY, heading_path="Zephyr laptops")
    return collection


def sign_in(page: Page, web: WebProcess, login: str) -> None:
    """From a page that needs a login, through the provider's form (skipped if signed in there) and back."""
    page.goto(f"{web.url}/")
    page.wait_for_url(f"{web.url}/accounts/login/?next=/")
    page.click("#sso-login")
    if "/interaction/" in page.url:
        page.fill("#login", login)
        page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/")


def ask(page: Page, question: str) -> Any:
    before = page.locator("#turns .turn").count()
    page.fill("#ask-form textarea", question)
    page.click("#ask-form button[type=submit]")
    turn = page.locator("#turns .turn").nth(before)
    turn.locator(".answer-text.rendered, .status.error").wait_for(timeout=120_000)
    return turn


def test_sign_in_through_the_provider_to_the_first_answer(
    page: Page, web: WebProcess, provider: OidcProviderProcess, handbook: Any
) -> None:
    provider.account_set("ada", email="ada@example.org", groups=["handbook-readers"])

    sign_in(page, web, "ada")
    screenshot(page, "sso-signed-in")
    turn = ask(page, QUESTION)

    assert "45 days" in turn.locator(".answer-text.rendered").inner_text()
    assert turn.locator(".sources li").count() == 1
    assert "Log out ada" in page.locator(".site-header").inner_text()
    screenshot(page, "sso-first-answer")


def test_a_group_removed_between_two_sign_ins_takes_the_collection_away(
    page: Page, web: WebProcess, provider: OidcProviderProcess, handbook: Any
) -> None:
    from django.contrib.auth.models import User

    provider.account_set("bob", email="bob@example.org", groups=["handbook-readers"])
    sign_in(page, web, "bob")
    first = ask(page, QUESTION)
    assert first.locator(".sources li").count() == 1
    passage = first.locator(".sources li a").first.get_attribute("href")

    page.click(".site-header form button")
    page.wait_for_url(f"{web.url}/accounts/login/")
    provider.account_set("bob", email="bob@example.org", groups=[])
    sign_in(page, web, "bob")
    second = ask(page, QUESTION)

    assert "could not find anything" in second.locator(".answer-text.rendered").inner_text()
    assert second.locator(".sources").count() == 0
    screenshot(page, "sso-group-removed")
    assert page.goto(f"{web.url}{passage}").status == 404  # type: ignore[union-attr]
    assert not User.objects.get(username="bob").groups.exists()


def _recheck_due(page: Page) -> None:
    """Say in the browser's session that RAGSITE_OIDC_SESSION_RECHECK_S has passed since the last check."""
    from django.contrib.sessions.backends.db import SessionStore

    session_key = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    session = SessionStore(session_key=session_key)
    session["oidc_id_token_expiration"] = 0
    session.save()


def test_a_recheck_maps_groups_afresh_and_ends_the_session_of_a_user_disabled_at_the_provider(
    page: Page, web: WebProcess, provider: OidcProviderProcess, handbook: Any
) -> None:
    from django.contrib.auth.models import User

    provider.account_set("cy", email="cy@example.org", groups=["handbook-readers"])
    sign_in(page, web, "cy")
    assert User.objects.get(username="cy").groups.filter(name="handbook-readers").exists()

    # Still enabled: the silent recheck comes straight back, with the provider's groups of now.
    provider.account_set("cy", email="cy@example.org", groups=[])
    _recheck_due(page)
    page.goto(f"{web.url}/?after=recheck")
    page.wait_for_url(f"{web.url}/?after=recheck")
    assert "Log out cy" in page.locator(".site-header").inner_text()
    assert not User.objects.get(username="cy").groups.exists()

    provider.account_set("cy", email="cy@example.org", groups=["handbook-readers"], disabled=True)
    _recheck_due(page)
    page.goto(f"{web.url}/")

    page.locator("#sso-error").wait_for()
    assert "Sign-in refused" in page.locator("h1").inner_text()
    screenshot(page, "sso-disabled-session-ended")
    page.goto(f"{web.url}/")
    page.wait_for_url(f"{web.url}/accounts/login/?next=/")
    page.click("#sso-login")
    page.fill("#login", "cy")
    page.click("button[type=submit]")
    assert "This account is disabled." in page.locator("[role=alert]").inner_text()
