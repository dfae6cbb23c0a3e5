from django.http import HttpRequest, JsonResponse

from .health import broker_check, database_check


def healthz(request: HttpRequest) -> JsonResponse:
    """Whether the database and the broker answer; 503 names the one that is down (the log says why)."""
    checks = {"database": database_check(), "broker": broker_check()}
    body = {
        "status": "ok" if all(checks.values()) else "down",
        "checks": {name: {"status": "ok" if answers else "down"} for name, answers in checks.items()},
    }
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)
