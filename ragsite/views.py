from django.http import HttpRequest, JsonResponse

from .health import broker_check, database_check


def healthz(request: HttpRequest) -> JsonResponse:
    """Report whether the database and the broker answer; 503 names the one that is down."""
    checks = {"database": database_check(), "broker": broker_check()}
    body = {
        "status": "ok" if not any(checks.values()) else "down",
        "checks": {
            name: ({"status": "ok"} if error is None else {"status": "down", "error": error})
            for name, error in checks.items()
        },
    }
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)
