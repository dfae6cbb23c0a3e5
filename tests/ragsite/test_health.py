import logging
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client, override_settings

from ragsite.devstack import Redis, free_port


@pytest.mark.django_db
def test_healthz_reports_ok_when_database_and_broker_answer(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": {"status": "ok"}, "broker": {"status": "ok"}}


@pytest.mark.django_db
def test_healthz_names_a_stopped_broker_with_503_and_logs_why(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        broker = Redis(Path(directory) / "redis", port)
        broker.start()
        with override_settings(CELERY_BROKER_URL=broker.url()):
            assert client.get("/healthz").status_code == 200
            broker.stop()
            with caplog.at_level(logging.WARNING, logger="ragsite.health"):
                response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "checks": {"database": {"status": "ok"}, "broker": {"status": "down"}},
    }
    assert str(port) not in response.content.decode()
    assert any("Connection" in record.getMessage() and record.exc_info for record in caplog.records)


@pytest.mark.django_db
def test_healthz_does_not_show_the_database_error_to_the_public(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    reason = (
        'connection to server at "db-7.internal.example" failed: FATAL: role "ragsite_app" does not exist'
    )
    with (
        mock.patch("ragsite.health.connection.cursor", side_effect=OperationalError(reason)),
        caplog.at_level(logging.WARNING, logger="ragsite.health"),
    ):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"status": "down"}
    body = response.content.decode()
    assert "db-7.internal.example" not in body
    assert "ragsite_app" not in body
    assert "OperationalError" not in body
    assert any("db-7.internal.example" in record.getMessage() for record in caplog.records)
