"""Reading the service's answers in tests."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

MODEL = "all-MiniLM-L6-v2"


def metric(url: str, name: str) -> float:
    """One sample's value from the service's /metrics (`name` with its labels, as printed)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    """The response has `status` and an OpenAI-style error object; returns that object."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def max_abs_difference(a: Sequence[float], b: Sequence[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))
