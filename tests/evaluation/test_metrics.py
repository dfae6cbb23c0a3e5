"""The retrieval metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import documents_in_rank_order, mrr_at_k, ndcg_at_k, recall_at_k, scores_compute
from search.retrieval import RetrievedChunk


def test_ndcg_of_binary_judgements() -> None:
    # Relevant d2 at rank 2 among 3 relevant documents: DCG = 1/log2(3); ideal = 1 + 1/log2(3) + 1/log2(4).
    ranked, relevance = ["d1", "d2", "d3", "d4"], {"d2": 1, "d4": 1, "d9": 1}
    assert ndcg_at_k(ranked, relevance, 3) == pytest.approx(0.63093 / 2.13093, abs=1e-5)
    assert ndcg_at_k(["d2", "d4", "d9"], relevance, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], relevance, 10) == 0.0


def test_ndcg_of_graded_judgements_uses_linear_gain() -> None:
    # DCG = 1/1 + 2/log2(3); ideal = 2/1 + 1/log2(3).
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.85972, abs=1e-5)


def test_recall_counts_relevant_documents_within_the_cutoff() -> None:
    ranked, relevance = ["d1", "d2", "d3", "d4"], {"d2": 1, "d4": 1, "d9": 1, "d0": 0}
    assert recall_at_k(ranked, relevance, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevance, 4) == pytest.approx(2 / 3)


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_document_within_the_cutoff() -> None:
    assert mrr_at_k(["d1", "d2", "d3"], {"d2": 1, "d3": 1}, 10) == 0.5
    assert mrr_at_k(["d1", "d2", "d3"], {"d3": 1}, 2) == 0.0


def test_scores_are_means_over_queries_with_relevant_documents() -> None:
    runs = {"q1": ["a", "b"], "q2": ["c", "d"], "q3": ["e"]}
    qrels = {"q1": {"a": 1}, "q2": {"d": 1}, "q3": {"e": 0}, "q4": {"z": 1}}
    scores = scores_compute(runs, qrels, k=10)
    assert scores["queries"] == 2  # q3 has nothing relevant, q4 was not run
    assert scores["mrr_at_10"] == pytest.approx((1 + 0.5) / 2)
    assert scores["recall_at_10"] == 1.0
    assert scores["ndcg_at_10"] == pytest.approx(round((1 + 1 / math.log2(3)) / 2, 4))


def _chunk(chunk_id: int, document_id: int) -> RetrievedChunk:
    return RetrievedChunk(chunk_id, document_id, "", 1, "", "", None, 0, 0, 0.0, None, None)


def test_documents_are_ranked_by_their_best_chunk() -> None:
    results = [_chunk(1, 20), _chunk(2, 10), _chunk(3, 20), _chunk(4, 30)]
    assert documents_in_rank_order(results, {10: "b", 20: "a", 30: "c"}) == ["a", "b", "c"]
