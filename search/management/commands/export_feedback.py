"""`manage.py export_feedback --out PATH [--format jsonl|pairs|beir] [--rating up|down] [--since DATE]`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from search.models import Feedback
from search.selectors import feedback_list

_CITATION = re.compile(r"\[(\d+)\]")


def _passages(feedback: Feedback) -> list[dict[str, Any]]:
    return [p for p in (feedback.passages or []) if isinstance(p, dict)]


def _query(feedback: Feedback) -> str:
    """What retrieval searched for: the follow-up rewritten to stand alone, else the question as asked."""
    return (feedback.standalone_question or feedback.question).strip()


def cited_passages(feedback: Feedback) -> list[dict[str, Any]]:
    """The passages the answer cites as [n]."""
    cited = {int(n) for n in _CITATION.findall(feedback.answer or "")}
    return [p for p in _passages(feedback) if p.get("number") in cited and str(p.get("text") or "").strip()]


def as_record(feedback: Feedback) -> dict[str, Any]:
    return {
        "id": feedback.id,
        "message_id": feedback.message_id,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "question": feedback.question,
        "standalone_question": feedback.standalone_question,
        "answer": feedback.answer,
        "cited": [p.get("number") for p in cited_passages(feedback)],
        "passages": _passages(feedback),
        "created_at": feedback.created_at.isoformat(),
        "updated_at": feedback.updated_at.isoformat(),
    }


def _passage_text(passage: dict[str, Any]) -> str:
    heading = str(passage.get("heading_path") or "").strip()
    text = str(passage.get("text") or "").strip()
    return f"{heading}\n\n{text}" if heading else text


def as_pairs(feedback: Feedback) -> list[dict[str, Any]]:
    """Training pairs (training/data.py): the query and each passage a helpful answer cited."""
    if feedback.rating != Feedback.Rating.UP:
        return []
    return [
        {"anchor": _query(feedback), "positive": _passage_text(p), "source": f"feedback:{feedback.id}"}
        for p in cited_passages(feedback)
    ]


def write_beir(feedback: Iterable[Feedback], out: Path) -> dict[str, int]:
    """An evaluation set for `manage.py evaluate`: every passage shown, cited passages of helpful answers
    judged relevant. Only helpful answers make queries: an unhelpful one says nothing about which passage
    would have been relevant."""
    corpus: dict[str, dict[str, str]] = {}
    queries: dict[str, str] = {}
    qrels: list[tuple[str, str]] = []
    for item in feedback:
        for passage in _passages(item):
            if passage.get("chunk_id") is not None and str(passage.get("text") or "").strip():
                corpus.setdefault(
                    f"chunk-{passage['chunk_id']}",
                    {"title": str(passage.get("document_title") or ""), "text": str(passage["text"])},
                )
        cited = [p for p in cited_passages(item) if p.get("chunk_id") is not None]
        if item.rating == Feedback.Rating.UP and cited:
            query_id = f"feedback-{item.id}"
            queries[query_id] = _query(item)
            qrels.extend((query_id, f"chunk-{p['chunk_id']}") for p in cited)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for corpus_id, entry in corpus.items():
            handle.write(json.dumps({"_id": corpus_id, **entry}) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{query_id}\t{corpus_id}\t1\n" for query_id, corpus_id in sorted(set(qrels)))
    return {"documents": len(corpus), "queries": len(queries), "judgements": len(set(qrels))}


class Command(BaseCommand):
    help = (
        "Export feedback on answers: every record (jsonl), training pairs from helpful answers' cited "
        "passages (pairs, for training/), or a BEIR-layout evaluation set (beir, for `manage.py evaluate`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="a file (jsonl, pairs) or a directory (beir)")
        parser.add_argument("--format", choices=("jsonl", "pairs", "beir"), default="jsonl")
        parser.add_argument("--rating", choices=[choice for choice, _ in Feedback.Rating.choices])
        parser.add_argument(
            "--since", help="only feedback given or changed on or after this date (YYYY-MM-DD)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            try:
                day = date.fromisoformat(options["since"])
            except ValueError as exc:
                raise CommandError(
                    f"--since must be a date like 2026-01-31, not {options['since']!r}"
                ) from exc
            since = timezone.make_aware(datetime.combine(day, time.min))
        feedback = feedback_list(rating=options["rating"], since=since).iterator()
        out = Path(options["out"])
        if options["format"] == "beir":
            counts = write_beir(feedback, out)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            rows = 0
            with out.open("w", encoding="utf-8") as handle:
                for item in feedback:
                    for row in as_pairs(item) if options["format"] == "pairs" else [as_record(item)]:
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                        rows += 1
            counts = {"rows": rows}
        self.stdout.write(json.dumps({"format": options["format"], "out": str(out), **counts}))
