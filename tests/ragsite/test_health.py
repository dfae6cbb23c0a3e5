import tempfile
from pathlib import Path

import pytest
from django.test import Client, override_settings

from ragsite.devstack import Redis, free_port


@pytest.mark.django_db
def test_healthz_reports_ok_when_database_and_broker_answer(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": {"status": "ok"}, "broker": {"status": "ok"}}


@pytest.mark.django_db
def test_healthz_names_a_stopped_broker_with_503(client: Client) -> None:
    with tempfile.TemporaryDirectory() as directory:
        broker = Redis(Path(directory) / "redis", free_port())
        broker.start()
        with override_settings(CELERY_BROKER_URL=broker.url()):
            assert client.get("/healthz").status_code == 200
            broker.stop()
            response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["broker"]["status"] == "down"
    assert "Connection" in body["checks"]["broker"]["error"]
