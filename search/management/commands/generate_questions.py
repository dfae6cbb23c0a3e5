"""`manage.py generate_questions --budget N [--collection NAME ...] [--seconds S] [--no-expand] [--json]`:
questions for live chunks from the chat model, kept when they retrieve their own chunk (docs/retrieval.md)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.selectors import collection_ids_named
from ops import inference
from search.generated_questions import CONSISTENCY_TOP_K, GenerationProgress, questions_generate


class Command(BaseCommand):
    help = (
        "Ask the chat model for the questions each live chunk answers, keep those that retrieve their own "
        f"chunk in the top {CONSISTENCY_TOP_K}, and add the kept ones to the chunk's full-text vector "
        "(document expansion) and to the fine-tuning pairs. Resumable: chunks done for the served model are "
        "skipped. Chunks are taken round-robin over documents (every document's first chunk first)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--budget", type=int, required=True, help="at most this many chunks this run")
        parser.add_argument("--seconds", type=float, help="stop starting new chunks after this many seconds")
        parser.add_argument(
            "--collection", action="append", default=[], help="only this collection (repeatable; default all)"
        )
        parser.add_argument(
            "--no-expand",
            action="store_true",
            help="store the questions but leave the chunks' expansion as is",
        )
        parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)
        if options["budget"] < 1:
            raise CommandError("--budget must be at least 1.")
        try:
            collection_ids = collection_ids_named(options["collection"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        try:
            summary = questions_generate(
                collection_ids=collection_ids or None,
                budget=options["budget"],
                seconds=options["seconds"],
                expand=not options["no_expand"],
                on_progress=self._progress,
            )
        except inference.InferenceError as exc:
            raise CommandError(f"The chat model cannot be used: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict()))
            return
        self.stdout.write(
            f"{summary.chunks_done} chunks ({summary.stopped_by}), {summary.questions} questions, "
            f"{summary.kept} kept ({summary.kept_rate:.0%}), {summary.seconds_per_chunk:.1f} s/chunk, "
            f"model {summary.model}"
        )

    def _progress(self, progress: GenerationProgress) -> None:
        print(
            f"chunks {progress.chunks_done}/{progress.chunks_total}: {progress.kept}/{progress.questions} "
            f"questions kept ({progress.kept_rate:.0%}), {progress.seconds_per_chunk:.1f} s/chunk",
            file=sys.stderr,
            flush=True,
        )
