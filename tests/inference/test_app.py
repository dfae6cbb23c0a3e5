"""The API's contract, against the real service process: shapes, validation, limits, deadlines."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx

from tests.inference.conftest import StartService
from tests.inference.helpers import MODEL, assert_openai_error, max_abs_difference
from tests.processes import InferenceProcess


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
    lines = [line for line in embedding_service.log().splitlines() if '"q-0123456789ab"' in line]
    assert lines, embedding_service.log()[-2000:]
    entry = json.loads(lines[-1])
    assert (entry["path"], entry["status"], entry["request_id"]) == ("/v1/embeddings", 200, "q-0123456789ab")
