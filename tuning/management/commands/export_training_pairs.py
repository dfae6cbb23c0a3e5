"""`manage.py export_training_pairs --out-dir DIR [--collection NAME ...] [--source KIND ...]
[--heldout-pct 10]`."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.selectors import collection_ids_named
from tuning.training_data import PAIR_KINDS, TrainingPair, training_pairs_list


def is_held_out(group: str, *, heldout_pct: int) -> bool:
    """The same rule as training.pairs_from_beir: a hash of the group's id, stable across exports."""
    bucket = int.from_bytes(hashlib.sha256(group.encode()).digest()[:4], "big") % 100
    return bucket < heldout_pct


def _write_pairs(path: Path, pairs: list[TrainingPair]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for pair in pairs:
            row = {"anchor": pair.anchor, "positive": pair.positive, "source": pair.source}
            handle.write(json.dumps(row) + "\n")


def _write_beir(out: Path, pairs: list[TrainingPair]) -> dict[str, int]:
    """The held-out pairs as an evaluation set: each anchor a query, the passages it names its relevant
    documents, every held-out passage a candidate (for `evaluate` and `retriever activate --eval-dataset`)."""
    passages: dict[str, str] = {}
    relevant: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        passage_id = "p-" + hashlib.sha256(pair.positive.encode()).hexdigest()[:16]
        passages[passage_id] = pair.positive
        relevant[pair.anchor].add(passage_id)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for passage_id, text in passages.items():
            handle.write(json.dumps({"_id": passage_id, "title": "", "text": text}) + "\n")
    query_ids = {anchor: f"q-{n}" for n, anchor in enumerate(sorted(relevant))}
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for anchor, query_id in query_ids.items():
            handle.write(json.dumps({"_id": query_id, "text": anchor}) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for anchor, query_id in query_ids.items():
            handle.writelines(f"{query_id}\t{passage_id}\t1\n" for passage_id in sorted(relevant[anchor]))
    return {"documents": len(passages), "queries": len(query_ids)}


class Command(BaseCommand):
    help = (
        "Export fine-tuning pairs from the organisation's own data (heading path -> chunk, kept "
        "generated question -> chunk, helpful answers' question -> cited passage) for training/, split "
        "into train.jsonl and heldout.jsonl, and the held-out pairs as a BEIR evaluation set in "
        "heldout-beir/ for the quality gate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out-dir", required=True)
        parser.add_argument(
            "--collection", action="append", default=[], help="only this collection (repeatable)"
        )
        parser.add_argument(
            "--source",
            action="append",
            choices=PAIR_KINDS,
            default=[],
            help="only pairs of this kind (repeatable; default every kind): heading path, kept generated "
            "question, or helpful answer",
        )
        parser.add_argument("--heldout-pct", type=int, default=10, help="share of documents held out")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 < options["heldout_pct"] < 100:
            raise CommandError("--heldout-pct must be between 1 and 99.")
        try:
            collection_ids = collection_ids_named(options["collection"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        kinds = options["source"] or PAIR_KINDS
        pairs = training_pairs_list(collection_ids=collection_ids or None, kinds=kinds)
        if not pairs:
            raise CommandError(
                "There is nothing to export: no document has headed chunks or kept generated questions, "
                "and no answer was marked helpful."
            )
        train = [p for p in pairs if not is_held_out(p.group, heldout_pct=options["heldout_pct"])]
        heldout = [p for p in pairs if is_held_out(p.group, heldout_pct=options["heldout_pct"])]
        out = Path(options["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        _write_pairs(out / "train.jsonl", train)
        _write_pairs(out / "heldout.jsonl", heldout)
        beir = _write_beir(out / "heldout-beir", heldout) if heldout else {"documents": 0, "queries": 0}
        summary = {
            "train": len(train),
            "heldout": len(heldout),
            "from_feedback": sum(p.source.startswith("feedback:") for p in pairs),
            "from_generated_questions": sum(p.source.startswith("generated:") for p in pairs),
            "heldout_beir": beir,
            "out_dir": str(out),
        }
        self.stdout.write(json.dumps(summary))
