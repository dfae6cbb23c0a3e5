"""`manage.py evaluate --dataset DIR [--mode M] [--k 10] [--json] [--keep] [--retriever R]
[--generate-questions N] [--expansion on|off]`: quality (M: keyword, dense, hybrid, or baseline, the model
alone on whole passages), optionally with generated questions as document expansion."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.datasets import dataset_load
from evaluation.services import (
    collection_delete,
    corpus_find_kept,
    corpus_is_complete,
    corpus_load,
    dataset_evaluate,
    dataset_evaluate_whole_passages,
)
from ingest.models import Chunk
from ingest.services import chunks_slot_fill
from retrievers.selectors import embedding_slot_active, embedding_slot_of, retriever_get
from search.generated_questions import GenerationProgress, expansions_apply, questions_generate
from search.retrieval import MODES


class Command(BaseCommand):
    help = (
        "Load a BEIR-layout dataset (corpus.jsonl, queries.jsonl, qrels/test.tsv) through the ingest code, "
        "run its queries through chunk_search and print nDCG@10, Recall@10, Recall@100 and MRR@10."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, help="directory in the BEIR layout")
        parser.add_argument(
            "--mode",
            choices=(*MODES, "baseline"),
            default="hybrid",
            help="baseline: each corpus entry embedded whole by the model, no chunks, no database",
        )
        parser.add_argument("--k", type=int, default=10, help="cut-off of nDCG, Recall and MRR (default 10)")
        parser.add_argument("--split", default="test", help="qrels file to use (qrels/<split>.tsv)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--keep",
            action="store_true",
            help="keep the loaded corpus, and reuse one kept earlier from the same data and ingest code",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="drop a kept corpus and load it again (after ingest changes)",
        )
        parser.add_argument("--workers", type=int, default=8, help="documents ingested concurrently")
        parser.add_argument(
            "--retriever",
            help="evaluate this retriever (name or id; it must own a vector slot) instead of the active one",
        )
        parser.add_argument(
            "--generate-questions",
            type=int,
            default=0,
            metavar="N",
            help="first generate questions for up to N more chunks of the corpus with the chat model "
            "(resumable with --keep) and use the kept ones as document expansion",
        )
        parser.add_argument(
            "--expansion",
            choices=("on", "off"),
            help="on: expand every chunk with its kept generated questions; off: evaluate without "
            "(default: on after --generate-questions, else as the corpus is)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per embedding request otherwise
        try:
            dataset = dataset_load(options["dataset"], split=options["split"])
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        slot = embedding_slot_active()
        if options["retriever"]:
            retriever = retriever_get(name=options["retriever"])
            if retriever is None or retriever.column is None:
                raise CommandError(
                    f"{options['retriever']!r} is not a retriever with vectors of its own; "
                    "see `manage.py retriever list` (activate it first)"
                )
            slot = embedding_slot_of(retriever=retriever)
        if options["mode"] == "baseline":
            started = time.monotonic()
            scores = dataset_evaluate_whole_passages(dataset=dataset, k=options["k"], model=slot.model_id)
            self._report(
                {
                    **scores,
                    "dataset": dataset.name,
                    "documents": len(dataset.corpus),
                    "search_s": round(time.monotonic() - started, 1),
                },
                options,
            )
            return
        keep = options["keep"] or options["reload"]
        started = time.monotonic()
        collection = corpus_find_kept(dataset=dataset) if keep else None
        if collection is not None and options["reload"]:
            collection_delete(collection=collection)
            collection = None
        reused = collection is not None and corpus_is_complete(collection)
        if not reused:
            collection = corpus_load(
                dataset=dataset,
                keep=keep,
                workers=options["workers"],
                on_progress=self._progress,
                resume=collection,
            )
        assert collection is not None
        loaded = time.monotonic()
        try:
            # Ingestion embedded the corpus for the active retriever; another one's vectors are added here.
            chunks_slot_fill(slot=slot, collection_id=collection.id)
            generation = None
            if options["generate_questions"] > 0:
                generation = questions_generate(
                    collection_ids=[collection.id],
                    budget=options["generate_questions"],
                    on_progress=self._generation_progress,
                ).as_dict()
            expansion = options["expansion"] or ("on" if generation else None)
            if expansion is not None:
                expansions_apply(collection_ids=[collection.id], enabled=expansion == "on")
            expanded = Chunk.objects.filter(collection=collection).exclude(expansion="").count()
            scores = dataset_evaluate(
                dataset=dataset, collection=collection, mode=options["mode"], k=options["k"], slot=slot
            )
        finally:
            if not keep:
                collection_delete(collection=collection)
        result = {
            **scores,
            "dataset": dataset.name,
            "documents": len(dataset.corpus),
            "corpus_reused": reused,
            "expanded_chunks": expanded,
            **({"question_generation": generation} if generation else {}),
            "load_s": round(loaded - started, 1),
            "search_s": round(time.monotonic() - loaded, 1),
        }
        self._report(result, options)

    def _report(self, result: dict[str, Any], options: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        k = options["k"]
        name, queries = result["dataset"], result["queries"]
        self.stdout.write(f"{name}: {queries} queries, mode {result['mode']}, model {result['model']}")
        for label, key in (
            (f"nDCG@{k}", f"ndcg_at_{k}"),
            (f"Recall@{k}", f"recall_at_{k}"),
            ("Recall@100", "recall_at_100"),
            (f"MRR@{k}", f"mrr_at_{k}"),
        ):
            self.stdout.write(f"  {label:<11} {result[key]:.4f}")

    def _generation_progress(self, progress: GenerationProgress) -> None:
        if progress.chunks_done == progress.chunks_total or progress.chunks_done % 10 == 0:
            print(
                f"questions for {progress.chunks_done}/{progress.chunks_total} chunks, "
                f"{progress.kept_rate:.0%} kept, {progress.seconds_per_chunk:.1f} s/chunk",
                file=sys.stderr,
                flush=True,
            )

    def _progress(self, done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            print(f"loaded {done}/{total} documents", file=sys.stderr, flush=True)
