"""Packed encoding (no padding work) gives sentence-transformers' own vectors, batched or alone."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.inference.conftest import StartService
from tests.inference.helpers import MODEL, max_abs_difference, metric
from tests.processes import ROOT

VENV_PYTHON = ROOT / ".venv-inference" / "bin" / "python"
# Lengths from one token to past the model's 256 (cut, as asked), odd spacing and scripts.
TEXTS = [
    "a",
    "How do I reset my password?",
    "Ünïcödé, emoji 🙂 and\ttabs\nand new lines",
    "The quarterly report covers revenue, costs and the outlook for the next year in some detail. " * 3,
    "retrieval augmented generation over many documents " * 60,
    "   spaces   around   ",
]


def reference(texts: list[str]) -> dict[str, Any]:
    completed = subprocess.run(
        [
            str(VENV_PYTHON),
            str(Path(__file__).with_name("reference_encode.py")),
        ],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
        },
        timeout=300,
    )
    return json.loads(completed.stdout)


def embed(http: httpx.Client, texts: list[str]) -> list[list[float]]:
    response = http.post("/v1/embeddings", json={"model": MODEL, "input": texts, "truncate": True})
    assert response.status_code == 200, response.text
    return [item["embedding"] for item in response.json()["data"]]


def test_packed_and_padded_services_match_sentence_transformers_in_a_batch_and_alone(
    start_service: StartService,
) -> None:
    expected = reference(TEXTS)
    assert expected["packed"], "all-MiniLM-L6-v2 should be encoded packed"
    packed = start_service(INFERENCE_EMBEDDING_MAX_WAIT_MS="200")
    padded = start_service(INFERENCE_EMBEDDING_PACKED="0")
    for service in (packed, padded):
        with httpx.Client(base_url=service.url, timeout=120) as http:
            together = embed(http, TEXTS)
            for ours, theirs in zip(together, expected["vectors"], strict=True):
                assert max_abs_difference(ours, theirs) < 1e-5
    # Alone and merged by the batcher with the others (one request each, sent at once).
    with httpx.Client(base_url=packed.url, timeout=120) as http:
        batches_before = metric(packed.url, "inference_embedding_batch_size_count")
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            alone = list(pool.map(lambda text: embed(http, [text])[0], TEXTS))
        assert metric(packed.url, "inference_embedding_batch_size_count") - batches_before < len(TEXTS)
    for ours, theirs in zip(alone, expected["vectors"], strict=True):
        assert max_abs_difference(ours, theirs) < 1e-5
