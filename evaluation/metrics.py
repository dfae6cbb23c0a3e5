"""Retrieval metrics, binary or graded relevance with linear gain, as trec_eval and BEIR compute them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from search.retrieval import RetrievedChunk

RECALL_DEPTH = 100


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    ideal = sorted((score for score in relevance.values() if score > 0), reverse=True)[:k]
    ideal_dcg = sum(score / math.log2(rank + 2) for rank, score in enumerate(ideal))
    if ideal_dcg == 0:
        return 0.0
    dcg = sum(max(relevance.get(doc, 0), 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    return dcg / ideal_dcg


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, score in relevance.items() if score > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranked[:k], start=1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def scores_compute(
    runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], *, k: int = 10
) -> dict[str, float | int]:
    """Mean metrics over the judged queries (those with at least one relevant document) that were run."""
    judged = [q for q, rels in qrels.items() if q in runs and any(score > 0 for score in rels.values())]
    if not judged:
        raise ValueError("no query has both a run and a relevant document in the qrels")

    def mean(metric: Callable[[Sequence[str], Mapping[str, int], int], float], at: int) -> float:
        return round(sum(metric(runs[q], qrels[q], at) for q in judged) / len(judged), 4)

    return {
        f"ndcg_at_{k}": mean(ndcg_at_k, k),
        f"recall_at_{k}": mean(recall_at_k, k),
        f"recall_at_{RECALL_DEPTH}": mean(recall_at_k, RECALL_DEPTH),
        f"mrr_at_{k}": mean(mrr_at_k, k),
        "queries": len(judged),
    }


def documents_in_rank_order(results: Sequence[RetrievedChunk], corpus_ids: Mapping[int, str]) -> list[str]:
    """Corpus ids ranked by each document's best chunk."""
    ranked: dict[str, None] = {}
    for result in results:
        ranked.setdefault(corpus_ids[result.document_id], None)
    return list(ranked)
