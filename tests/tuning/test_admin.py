"""Where operators see the registry: the read-only admin and the status page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from retrievers.models import Retriever
from tuning.services import retriever_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw-root-123456"))
    return client


def test_the_admin_shows_retrievers_read_only(admin_client: Client, base_copy_output: Path) -> None:
    retriever = retriever_register(source=base_copy_output, name="admin-copy")

    listing = admin_client.get("/admin/retrievers/retriever/").content.decode()
    page = admin_client.get(f"/admin/retrievers/retriever/{retriever.id}/change/").content.decode()

    assert "admin-copy" in listing and "all-MiniLM-L6-v2" in listing
    assert "1.0" in page and 'name="name"' not in page  # the metrics are shown, nothing is editable
    assert admin_client.get("/admin/retrievers/retriever/add/").status_code == 403
    response = admin_client.post(f"/admin/retrievers/retriever/{retriever.id}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Retriever.objects.filter(id=retriever.id).exists()


def test_the_status_page_names_the_active_retriever(admin_client: Client, base_copy_output: Path) -> None:
    assert "no retriever registered" in admin_client.get("/ops/status/").content.decode()
    retriever_register(source=base_copy_output, name="status-copy")

    page = admin_client.get("/ops/status/").content.decode()
    section = page.split("<h2>Retrievers</h2>")[1].split("</section>")[0]

    assert "all-MiniLM-L6-v2" in section and "active" in section
    assert "status-copy" not in section  # registered only: nothing to watch yet
    assert "retriever.register" in page  # the audit log has it
