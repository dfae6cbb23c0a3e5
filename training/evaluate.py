"""nDCG@10 of an encoder on a BEIR-format dataset, by exact cosine search in numpy.

``python -m training.evaluate --model DIR --beir /work/shared/eval/python-faq`` prints one JSON
object. Documents are embedded from their text alone (as ragsite embeds a chunk), queries from
theirs; each query ranks the whole corpus by cosine similarity. nDCG@10 uses graded relevance from
the qrels: DCG = sum over the top 10 of rel / log2(rank + 1), divided by the DCG of the ideal
ordering, averaged over the queries that have any relevant document.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path
from typing import Any

K = 10


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {document id: relevance}, keeping only relevance above zero."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        next(f)  # header: query-id, corpus-id, score
        for line in f:
            if line.strip():
                query_id, doc_id, score = line.rstrip("\n").split("\t")
                if int(score) > 0:
                    qrels.setdefault(query_id, {})[doc_id] = int(score)
    return qrels


def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = K) -> float:
    """nDCG@k of one ranking: ``ranked`` doc ids best first, ``relevant`` doc id -> grade."""
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(grade / math.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def sample_corpus(
    corpus: list[dict[str, Any]], qrels: dict[str, dict[str, int]], max_docs: int | None
) -> list[dict[str, Any]]:
    """Every relevant document plus a seeded random sample of the rest, ``max_docs`` in all.

    Embedding a large corpus on a CPU takes long; a sample keeps the queries' targets and enough
    distractors to rank them against. Scores on a sample are higher than on the whole corpus.
    """
    if max_docs is None or max_docs >= len(corpus):
        return corpus
    relevant = {doc for grades in qrels.values() for doc in grades}
    others = [i for i, row in enumerate(corpus) if row["_id"] not in relevant]
    keep = set(random.Random(0).sample(others, max(0, max_docs - (len(corpus) - len(others)))))
    return [row for i, row in enumerate(corpus) if row["_id"] in relevant or i in keep]


def evaluate_beir(
    tokenizer: Any,
    model: Any,
    beir_dir: Path,
    *,
    max_length: int = 256,
    split: str = "test",
    max_docs: int | None = None,
) -> dict[str, Any]:
    """Mean nDCG@10 over the split's queries (model in eval mode, on its current device)."""
    import numpy as np

    queries = {row["_id"]: row["text"] for row in read_jsonl(beir_dir / "queries.jsonl")}
    qrels = read_qrels(beir_dir / "qrels" / f"{split}.tsv")
    corpus = sample_corpus(read_jsonl(beir_dir / "corpus.jsonl"), qrels, max_docs)
    query_ids = [qid for qid in qrels if qid in queries]
    doc_ids = [row["_id"] for row in corpus]
    doc_vectors = embed_texts(tokenizer, model, [row["text"] for row in corpus], max_length)
    query_vectors = embed_texts(tokenizer, model, [queries[q] for q in query_ids], max_length)
    scores = query_vectors @ doc_vectors.T  # unit vectors: dot product is cosine
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    per_query = [
        ndcg_at_k([doc_ids[j] for j in row], qrels[qid]) for qid, row in zip(query_ids, top, strict=True)
    ]
    return {
        "metric": f"ndcg@{K}",
        "score": float(np.mean(per_query)) if per_query else 0.0,
        "queries": len(per_query),
        "documents": len(doc_ids),
        "dataset": str(beir_dir),
        "max_length": max_length,
    }


def embed_texts(tokenizer: Any, model: Any, texts: list[str], max_length: int) -> Any:
    """Unit embeddings in input order, batched by length so padding stays small."""
    import numpy as np
    import torch

    from training.model import encode, tokenize

    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            features = tokenize(tokenizer, [texts[i] for i in idx], max_length=max_length)
            vectors = encode(model, {key: v.to(device) for key, v in features.items()})
            out[idx] = vectors.float().cpu().numpy()
    model.train(was_training)
    return out


def main(argv: list[str] | None = None) -> None:
    from training.model import base_model_path, load_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled MiniLM")
    parser.add_argument("--beir", type=Path, required=True)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-docs", type=int, help="relevant documents plus a seeded sample")
    args = parser.parse_args(argv)
    tokenizer, model = load_encoder(args.model or base_model_path())
    result = evaluate_beir(tokenizer, model, args.beir, max_length=args.max_length, max_docs=args.max_docs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
