"""A tiny BEIR-layout dataset: five documents (one empty), three judged queries and one unjudged."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    {"_id": "cats", "title": "Cats", "text": "Domestic cats sleep for most of the day and hunt at dusk."},
    {"_id": "volcano", "title": "Volcanoes", "text": "Magma rising through the crust erupts as lava."},
    {"_id": "tax", "title": "Tax returns", "text": "File your income tax return before the end of April."},
    {
        "_id": "coffee",
        "title": "Espresso",
        "text": "Espresso is brewed by forcing hot water through ground coffee.",
    },
    {"_id": "empty", "title": "Nothing", "text": ""},
]
QUERIES = [
    {"_id": "q1", "text": "Why do cats sleep so much?"},
    {"_id": "q2", "text": "How does lava come out of a volcano?"},
    {"_id": "q3", "text": "When is the deadline for income tax?"},
    {"_id": "q4", "text": "An unjudged question"},
]


def write_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    (root / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in QUERIES))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tcats\t1\nq2\tvolcano\t1\nq3\ttax\t1\nq3\tcoffee\t0\n"
    )
    return root
