"""BEIR-layout datasets: a directory holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`,
`text`) and `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`, with a header row)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import inference


@dataclass(frozen=True)
class CorpusEntry:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Dataset:
    name: str
    corpus: list[CorpusEntry]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    fingerprint: str


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or (number == 0 and not fields[2].strip().lstrip("-").isdigit()):
                continue  # the header row, or a blank line
            query_id, corpus_id, score = fields[0], fields[1], int(fields[2])
            qrels.setdefault(query_id, {})[corpus_id] = score
    return qrels


def dataset_load(path: Path | str, *, split: str = "test") -> Dataset:
    """Read a BEIR-layout dataset; raises FileNotFoundError naming what is missing."""
    root = Path(path)
    corpus_path, queries_path, qrels_path = (
        root / "corpus.jsonl",
        root / "queries.jsonl",
        root / "qrels" / f"{split}.tsv",
    )
    for required in (corpus_path, queries_path, qrels_path):
        if not required.is_file():
            raise FileNotFoundError(f"{required} is missing: a BEIR dataset needs corpus, queries and qrels")
    corpus = [
        CorpusEntry(id=str(row["_id"]), title=str(row.get("title") or ""), text=str(row.get("text") or ""))
        for row in _read_jsonl(corpus_path)
    ]
    queries = {str(row["_id"]): str(row["text"]) for row in _read_jsonl(queries_path)}
    # Keyed by the data and the embedding model; `--reload` refreshes a kept corpus after ingest changes.
    digest = hashlib.sha256(inference.EMBEDDING_MODEL.encode() + b"\0")
    digest.update(corpus_path.read_bytes())
    return Dataset(
        name=root.resolve().name,
        corpus=corpus,
        queries=queries,
        qrels=_read_qrels(qrels_path),
        fingerprint=digest.hexdigest(),
    )
