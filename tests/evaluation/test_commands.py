"""`manage.py evaluate` end to end: the real inference API, ingestion and retrieval on a tiny dataset."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ingest.models import Chunk, Collection, Document
from ops import inference
from tests.evaluation.beir import write_dataset
from tests.processes import InferenceProcess, start_inference


@pytest.fixture(scope="module")
def embeddings_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceProcess]:
    server = start_inference(log_dir=tmp_path_factory.mktemp("inference-logs"), chat_engine="none")
    yield server
    server.stop()


@pytest.fixture
def use_embeddings(embeddings_api: InferenceProcess, settings: Any) -> None:
    settings.INFERENCE_URL = embeddings_api.url
    assert inference.embed(["ready"])


def evaluate(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("evaluate", *args, "--json", "--workers", "2", stdout=out)
    last_line = out.getvalue().strip().splitlines()[-1]
    result: dict[str, Any] = json.loads(last_line)
    return result


# The loader ingests from worker threads with their own connections, so the data must really be committed.
@pytest.mark.django_db(transaction=True)
def test_evaluate_scores_a_tiny_dataset_and_cleans_up(tmp_path: Path, use_embeddings: None) -> None:
    dataset = str(write_dataset(tmp_path / "tiny"))

    results = {
        mode: evaluate("--dataset", dataset, "--mode", mode) for mode in ("keyword", "dense", "hybrid")
    }

    for mode, result in results.items():
        assert result["mode"] == mode
        assert result["queries"] == 3
        assert set(result) >= {"ndcg_at_10", "recall_at_10", "recall_at_100", "mrr_at_10"}
        assert result["recall_at_100"] == 1.0 or mode == "keyword"
        assert result["corpus_reused"] is False
    assert results["dense"]["mrr_at_10"] == 1.0
    assert results["hybrid"]["ndcg_at_10"] == 1.0
    assert not Collection.objects.exists()
    assert not Document.objects.exists()
    assert not Chunk.objects.exists()


# The loader ingests from worker threads with their own connections, so the data must really be committed.
@pytest.mark.django_db(transaction=True)
def test_an_untitled_entrys_opening_line_is_indexed_not_lost(tmp_path: Path, use_embeddings: None) -> None:
    root = tmp_path / "lines"
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "light", "title": "", "text": "Keepers of the Eddystone lighthouse.\n\nThey trimmed wicks."},
        {"_id": "bread", "title": "", "text": "Sourdough bread rises slowly overnight in a cool kitchen."},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "Eddystone keepers"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tlight\t1\n")

    result = evaluate("--dataset", str(root), "--mode", "keyword")

    # The short first line became the document's title (as for an uploaded .txt), so its words are searched.
    assert result["mrr_at_10"] == 1.0


@pytest.mark.django_db
def test_evaluate_baseline_ranks_whole_passages_by_the_model_alone_and_stores_nothing(
    tmp_path: Path, use_embeddings: None
) -> None:
    dataset = str(write_dataset(tmp_path / "tiny"))

    result = evaluate("--dataset", dataset, "--mode", "baseline")

    assert (result["mode"], result["queries"], result["documents"]) == ("baseline", 3, 5)
    assert result["mrr_at_10"] == 1.0
    assert result["recall_at_100"] == 1.0
    assert not Collection.objects.exists()
    assert not Chunk.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_evaluate_keep_reuses_the_loaded_corpus(tmp_path: Path, use_embeddings: None) -> None:
    dataset = str(write_dataset(tmp_path / "tiny"))

    first = evaluate("--dataset", dataset, "--mode", "dense", "--keep")
    chunks = set(Chunk.objects.values_list("id", flat=True))
    second = evaluate("--dataset", dataset, "--mode", "keyword", "--keep")

    assert (first["corpus_reused"], second["corpus_reused"]) == (False, True)
    assert set(Chunk.objects.values_list("id", flat=True)) == chunks
    assert Collection.objects.count() == 1
    assert Document.objects.filter(status=Document.Status.READY).count() == 4  # the empty entry failed
    third = evaluate("--dataset", dataset, "--mode", "dense", "--reload")
    assert third["corpus_reused"] is False
    # Seen once in a full run (0.3333 against 1.0; not reproduced in dozens of runs since): say what loaded.
    loaded = list(Document.objects.values_list("original_name", "status", "generation", "error"))
    assert third["ndcg_at_10"] == first["ndcg_at_10"], (loaded, Chunk.objects.count(), first, third)


def test_evaluate_refuses_a_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="corpus.jsonl"):
        call_command("evaluate", "--dataset", str(tmp_path))


@pytest.mark.django_db(transaction=True)
def test_evaluate_generates_questions_once_and_compares_with_and_without_expansion(
    tmp_path: Path, use_inference: Any
) -> None:
    """With the CPU chat model: questions for the kept corpus, resumed (not remade) by the next run."""
    dataset = str(write_dataset(tmp_path / "tiny"))

    first = evaluate("--dataset", dataset, "--mode", "keyword", "--keep", "--generate-questions", "2")
    resumed = evaluate("--dataset", dataset, "--mode", "keyword", "--keep", "--generate-questions", "2")
    without = evaluate("--dataset", dataset, "--mode", "keyword", "--keep", "--expansion", "off")
    again = evaluate("--dataset", dataset, "--mode", "keyword", "--keep", "--expansion", "on")

    generation = first["question_generation"]
    assert generation["chunks_done"] == 2 and generation["questions"] >= 1
    assert first["expanded_chunks"] == generation["chunks_with_kept"]
    assert resumed["question_generation"]["chunks_done"] == min(2, Chunk.objects.count() - 2)
    assert without["expanded_chunks"] == 0
    assert again["expanded_chunks"] == resumed["expanded_chunks"] >= first["expanded_chunks"]
