"""The API's contract, against the real service process: shapes, validation, limits, deadlines."""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ragsite.devstack import free_port
from tests.inference.conftest import StartService
from tests.inference.helpers import MODEL, assert_openai_error, max_abs_difference
from tests.processes import ROOT, InferenceProcess


def test_health_readiness_models_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [card["id"] for card in models["data"]] == [MODEL]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/embeddings", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz"} <= set(paths)


def test_embeddings_answer_in_openai_shape_one_vector_per_input_in_order(client: httpx.Client) -> None:
    texts = ["first input", "a second, longer input about retrieval", "third"]
    body = client.post("/v1/embeddings", json={"model": MODEL, "input": texts}).json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    vectors = [item["embedding"] for item in body["data"]]
    assert [len(vector) for vector in vectors] == [384, 384, 384]
    assert all(abs(math.hypot(*vector) - 1.0) < 1e-5 for vector in vectors)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 3
    single = client.post("/v1/embeddings", json={"model": MODEL, "input": texts[1]}).json()
    assert max_abs_difference(single["data"][0]["embedding"], vectors[1]) < 1e-5


def test_base64_encoding_carries_the_same_float32_vector(client: httpx.Client) -> None:
    request = {"model": MODEL, "input": "the same text"}
    floats = client.post("/v1/embeddings", json=request).json()["data"][0]["embedding"]
    encoded = client.post("/v1/embeddings", json={**request, "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert max_abs_difference(decoded, floats) < 1e-7


def test_input_past_256_tokens_is_refused_unless_truncation_is_asked_for(client: httpx.Client) -> None:
    long_text = "word " * 300
    error = assert_openai_error(client.post("/v1/embeddings", json={"model": MODEL, "input": long_text}), 400)
    assert error["code"] == "context_length_exceeded" and "256" in str(error["message"])
    truncated = client.post("/v1/embeddings", json={"model": MODEL, "input": long_text, "truncate": True})
    assert truncated.status_code == 200
    assert truncated.json()["usage"]["prompt_tokens"] == 256


def test_unknown_model_is_404_model_not_found(client: httpx.Client) -> None:
    error = assert_openai_error(client.post("/v1/embeddings", json={"model": "gpt-9", "input": "x"}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"


def test_bad_input_is_a_4xx_with_an_openai_error_never_a_5xx(client: httpx.Client) -> None:
    cases: list[tuple[dict[str, object], int]] = [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400),
        ({"data": {"model": MODEL, "input": "x"}}, 400),
        ({"json": {"model": MODEL}}, 400),
        ({"json": {"model": MODEL, "input": 42}}, 400),
        ({"json": {"model": MODEL, "input": [1, 2, 3]}}, 400),
        ({"json": {"model": MODEL, "input": []}}, 400),
        ({"json": {"model": MODEL, "input": ""}}, 400),
        ({"json": {"model": MODEL, "input": ["ok", ""]}}, 400),
        ({"json": {"model": MODEL, "input": ["x"] * 257}}, 400),
        ({"json": {"model": MODEL, "input": "x", "encoding_format": "int8"}}, 400),
        ({"json": {"model": MODEL, "input": "x", "dimensions": 100}}, 400),
        ({"json": {"model": 7, "input": "x"}}, 400),
        ({"json": {"model": MODEL, "messages": "hello"}}, 400),
    ]
    for kwargs, status in cases:
        path = "/v1/chat/completions" if "messages" in str(kwargs) else "/v1/embeddings"
        assert_openai_error(client.post(path, **kwargs), status)  # type: ignore[arg-type]
    assert_openai_error(client.get("/v1/nothing-here"), 404)
    assert_openai_error(client.delete("/v1/embeddings"), 405)
    # Each refused request gave back the queue room it was let in with.
    assert 'inference_queue_depth{queue="embeddings"} 0.0' in client.get("/metrics").text


def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_chunked(client: httpx.Client) -> None:
    huge = b'{"model": "all-MiniLM-L6-v2", "input": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    headers = {"content-type": "application/json"}
    error = assert_openai_error(client.post("/v1/embeddings", content=huge, headers=headers), 413)
    assert error["code"] == "request_too_large"

    def chunks() -> object:
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    chunked = client.post("/v1/embeddings", content=chunks(), headers=headers)  # type: ignore[arg-type]
    assert_openai_error(chunked, 413)
    assert client.post("/v1/embeddings", json={"model": MODEL, "input": "still serving"}).status_code == 200
    assert 'inference_queue_depth{queue="embeddings"} 0.0' in client.get("/metrics").text


def test_chat_without_an_engine_is_a_clean_503(client: httpx.Client) -> None:
    request = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}
    error = assert_openai_error(client.post("/v1/chat/completions", json=request), 503)
    assert error["code"] == "chat_unavailable"


def test_a_request_past_its_deadline_is_answered_504_and_leaves_the_queue(
    start_service: StartService,
) -> None:
    # The batch waits far longer than the deadline, so the deadline is what ends the request.
    service = start_service(INFERENCE_EMBEDDING_MAX_WAIT_MS="60000", INFERENCE_REQUEST_TIMEOUT_S="1")
    with httpx.Client(base_url=service.url, timeout=30) as http:
        error = assert_openai_error(http.post("/v1/embeddings", json={"model": MODEL, "input": "late"}), 504)
        assert error["code"] == "timeout"
        metrics = http.get("/metrics").text
    assert 'inference_queue_depth{queue="embeddings"} 0.0' in metrics
    assert 'inference_rejections_total{endpoint="/v1/embeddings",reason="timeout"} 1.0' in metrics


def test_each_api_request_is_logged_with_the_callers_request_id(
    client: httpx.Client, embedding_service: InferenceProcess
) -> None:
    """The web app's request id reaches the model service's logs, so one question can be followed."""
    response = client.post(
        "/v1/embeddings",
        json={"model": MODEL, "input": "follow me"},
        headers={"X-Request-ID": "q-0123456789ab"},
    )
    assert response.status_code == 200
    # The access line is written as the response ends, by another process: wait for it (bounded), not once.
    deadline = time.monotonic() + 30
    while (
        not (lines := [line for line in embedding_service.log().splitlines() if '"q-0123456789ab"' in line])
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert lines, embedding_service.log()[-2000:]
    entry = json.loads(lines[-1])
    assert (entry["path"], entry["status"], entry["request_id"]) == ("/v1/embeddings", 200, "q-0123456789ab")


API_KEYS = ("first-key-0123456789", "second-key-9876543210")


def test_with_api_keys_every_endpoint_but_health_and_readiness_needs_one(start_service: StartService) -> None:
    """INFERENCE_API_KEYS, like vLLM's and TEI's --api-key: any of them, as a bearer token."""
    service = start_service(INFERENCE_API_KEYS=",".join(API_KEYS))
    body = {"model": MODEL, "input": "hello"}
    with httpx.Client(base_url=service.url, timeout=60) as http:
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
        refused = [
            http.post("/v1/embeddings", json=body, headers=headers)
            for headers in (
                {},
                {"Authorization": "Bearer wrong-key"},
                {"Authorization": API_KEYS[0]},
                {"Authorization": f"Basic {API_KEYS[0]}"},
                {"Authorization": f"Bearer {API_KEYS[0][:-1]}"},
                {"Authorization": f"Bearer {API_KEYS[0]}x"},
            )
        ]
        for response in refused:
            assert assert_openai_error(response, 401)["code"] == "invalid_api_key"
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert http.get("/v1/models").status_code == 401
        assert http.get("/openapi.json").status_code == 401
        for key in API_KEYS:
            served = http.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {key}"})
            assert served.status_code == 200
        authorized = {"Authorization": f"Bearer {API_KEYS[1]}"}
        paths = http.get("/openapi.json", headers=authorized).json()["paths"]
        assert "401" in paths["/v1/embeddings"]["post"]["responses"]
        assert "401" in paths["/v1/chat/completions"]["post"]["responses"]
        # /metrics follows the web app's rule: loopback, or the metrics token when one is set.
        assert http.get("/metrics").status_code == 200


def test_a_metrics_token_is_then_needed_for_metrics_even_over_loopback(start_service: StartService) -> None:
    service = start_service(INFERENCE_METRICS_TOKEN="metrics-token-123")
    with httpx.Client(base_url=service.url, timeout=60) as http:
        assert http.get("/metrics").status_code == 403
        assert http.get("/metrics", headers={"Authorization": "Bearer metrics-token-12"}).status_code == 403
        assert http.get("/metrics", headers={"Authorization": "Bearer metrics-token-123"}).status_code == 200
        assert http.get("/v1/models").status_code == 200  # no INFERENCE_API_KEYS, and over loopback


def test_without_api_keys_only_loopback_connections_are_served(inference_logs: Path) -> None:
    """Plain uvicorn bound to every address, no keys: what arrives on another address is refused."""
    outside = _non_loopback_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    port = free_port()
    log_path = inference_logs / f"inference-{port}.log"
    command = [str(ROOT / ".venv-inference" / "bin" / "python"), "-m", "uvicorn", "--factory"]
    command += ["inference.app:create_app", "--host", "0.0.0.0", "--port", str(port), "--no-access-log"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFERENCE_CHAT_ENGINE": "none", "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = InferenceProcess(process=process, log_path=log_path, port=port)
    try:
        server.wait_ready(timeout=180)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 200
        assert httpx.get(f"http://{outside}:{port}/healthz", timeout=10).status_code == 200
        error = assert_openai_error(httpx.get(f"http://{outside}:{port}/v1/models", timeout=10), 401)
        assert "INFERENCE_API_KEYS" in str(error["message"])
    finally:
        server.stop()


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if ipaddress.ip_address(address).is_loopback else address


def test_the_service_refuses_to_start_on_a_non_loopback_address_without_api_keys(
    inference_logs: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "INFERENCE_CHAT_ENGINE": "none",
        "INFERENCE_HOST": "0.0.0.0",
        "INFERENCE_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("INFERENCE_API_KEYS", None)
    log_path = inference_logs / f"inference-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(ROOT / ".venv-inference" / "bin" / "python"), "-m", "inference"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = InferenceProcess(process=process, log_path=log_path, port=port)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the service started on 0.0.0.0 without INFERENCE_API_KEYS")
    finally:
        server.stop()
    assert process.returncode != 0
    assert "INFERENCE_API_KEYS" in server.log()
