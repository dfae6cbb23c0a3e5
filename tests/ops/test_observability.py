import json
import logging

import pytest
from django.contrib.auth.models import User
from django.test import Client

from ops.context import request_id_set
from ops.logging import JsonFormatter
from ops.models import AuditEvent
from ops.services import audit_record
from tests.processes import WorkerProcess


@pytest.mark.django_db
def test_every_response_carries_a_request_id_and_adopts_a_well_formed_one(client: Client) -> None:
    fresh = client.get("/healthz")
    assert len(fresh["X-Request-ID"]) == 32
    adopted = client.get("/healthz", HTTP_X_REQUEST_ID="question-12345678")
    assert adopted["X-Request-ID"] == "question-12345678"
    forged = client.get("/healthz", HTTP_X_REQUEST_ID="<script>")
    assert forged["X-Request-ID"] != "<script>"


@pytest.mark.django_db
def test_responses_carry_a_csp_that_allows_only_our_own_scripts(client: Client) -> None:
    csp = client.get("/healthz")["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp


def test_json_logs_carry_the_request_id() -> None:
    request_id_set("req-abcdef123")
    record = logging.makeLogRecord(
        {"name": "search", "levelname": "INFO", "msg": "retrieved %d", "args": (3,)}
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "req-abcdef123"
    assert entry["message"] == "retrieved 3"


@pytest.mark.django_db
def test_metrics_expose_requests_and_queue_depths_to_loopback_only(client: Client) -> None:
    client.get("/healthz")
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'ragsite_http_requests_total{method="GET",route="healthz",status="200"}' in body
    assert 'ragsite_queue_depth{queue="ingest"}' in body
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


@pytest.mark.django_db
def test_metrics_token_opens_them_to_other_addresses(client: Client, settings: object) -> None:
    settings.RAGSITE_METRICS_TOKEN = "s3cret-token"  # type: ignore[attr-defined]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200


@pytest.mark.django_db
def test_repeated_login_failures_lock_out_that_address_and_user(client: Client, settings: object) -> None:
    settings.RAGSITE_LOGIN_MAX_FAILURES = 3  # type: ignore[attr-defined]
    User.objects.create_user("locked-out", password="right-password-123", is_staff=True)
    for _ in range(3):
        failed = client.post("/admin/login/", {"username": "locked-out", "password": "wrong"})
        assert failed.status_code == 200
    locked = client.post("/admin/login/", {"username": "locked-out", "password": "right-password-123"})
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert b"Too many failed logins" in locked.content
    other = Client()
    ok = other.post(
        "/admin/login/", {"username": "locked-out", "password": "right-password-123"}, REMOTE_ADDR="10.9.9.9"
    )
    assert ok.status_code == 302


@pytest.mark.django_db
def test_audit_log_records_actor_action_and_target() -> None:
    user = User.objects.create_user("auditor")
    event = audit_record(actor=user, action="delete", target=user, details={"why": "test"})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.actor, stored.action, stored.target_type, stored.target_id) == (
        user,
        "delete",
        "auth.user",
        str(user.pk),
    )


@pytest.mark.django_db(transaction=True)
def test_status_page_shows_queues_workers_and_a_down_inference_api(
    celery_worker: WorkerProcess, settings: object
) -> None:
    settings.INFERENCE_URL = "http://127.0.0.1:9"  # type: ignore[attr-defined]
    from ops import inference

    inference.clients_reset()
    staff = User.objects.create_user("operator", password="pw-operator-1", is_staff=True)
    client = Client()
    client.force_login(staff)
    # The page lists the workers that answer its broadcast within a second; on a loaded machine a worker can
    # miss one, so look a few times.
    for _ in range(10):
        page = client.get("/ops/status/").content.decode()
        if celery_worker.name in page:
            break
    inference.clients_reset()
    assert "ingest" in page
    assert celery_worker.name in page, celery_worker.log()[-3000:]
    assert "cannot be reached" in page


@pytest.mark.django_db
def test_status_page_is_staff_only(client: Client) -> None:
    client.force_login(User.objects.create_user("plain"))
    assert client.get("/ops/status/").status_code == 302


@pytest.mark.django_db
def test_staff_without_admin_access_log_in_on_the_site_and_reach_the_ask_page(client: Client) -> None:
    User.objects.create_user("employee", password="pw-employee-1")
    assert client.get("/")["Location"].startswith("/accounts/login/")
    response = client.post("/accounts/login/", {"username": "employee", "password": "pw-employee-1"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_the_site_login_is_throttled_too(client: Client, settings: object) -> None:
    settings.RAGSITE_LOGIN_MAX_FAILURES = 2  # type: ignore[attr-defined]
    User.objects.create_user("employee2", password="pw-employee-2")
    for _ in range(2):
        client.post("/accounts/login/", {"username": "employee2", "password": "wrong"})
    locked = client.post("/accounts/login/", {"username": "employee2", "password": "pw-employee-2"})
    assert locked.status_code == 429


@pytest.mark.django_db
def test_status_page_shows_failures_of_readable_collections_and_the_audit_log_to_its_permission_only(
    client: Client,
) -> None:
    from django.contrib.auth.models import Group, Permission

    from ingest.models import Collection, Document

    editors = Group.objects.create(name="status-editors")
    mine, theirs = Collection.objects.create(name="Handbooks"), Collection.objects.create(name="Board")
    mine.groups.set([editors])
    for collection, error in ((mine, "Our PDF is encrypted"), (theirs, "Salary table unreadable")):
        Document.objects.create(
            collection=collection, file="x.pdf", original_name="x.pdf", sha256=collection.name,
            status="failed", error=error,
        )  # fmt: skip
    audit_record(actor=None, action="document.delete", target=mine, details={})
    staff = User.objects.create_user("status-staff", is_staff=True)
    staff.groups.add(editors)
    staff.user_permissions.set(Permission.objects.filter(codename="view_document"))
    client.force_login(staff)

    page = client.get("/ops/status/").content.decode()

    assert "Our PDF is encrypted" in page and "Salary table unreadable" not in page
    assert "document.delete" not in page
    staff.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    assert "document.delete" in client.get("/ops/status/").content.decode()
