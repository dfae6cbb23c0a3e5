"""`manage.py retriever register|list|activate|rollback`: the registry of embedding models and the switch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retrievers.models import Retriever
from retrievers.selectors import retriever_get, retriever_list
from tuning.services import (
    BUILDING,
    RetrieverRefused,
    retriever_activate,
    retriever_base_ensure,
    retriever_register,
    retriever_rollback,
)


def _score(retriever: Retriever) -> str:
    score = (retriever.metrics.get("eval") or {}).get("score") if retriever.metrics else None
    return f"{score:.4f}" if isinstance(score, int | float) else "-"


def _gate(retriever: Retriever) -> str:
    gate = retriever.gate or {}
    if "candidate" not in gate:
        return "-"
    ours, theirs = gate["candidate"].get("ndcg_at_10"), gate["current"].get("ndcg_at_10")
    return f"{ours:.4f} vs {theirs:.4f} ({gate['current'].get('name')})"


class Command(BaseCommand):
    help = (
        "Register a fine-tuned retriever (the training job's --output-dir), list them, activate one "
        "(re-embed every chunk, evaluate it against the active one, switch only if no worse) or roll back."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        register = commands.add_parser("register", help="copy DIR/model into RAGSITE_RETRIEVERS_DIR")
        register.add_argument("directory", help="the training job's --output-dir (model/ and metrics.json)")
        register.add_argument("--name", help="its model id (default: the directory's name and weights hash)")
        commands.add_parser("list", help="every retriever, its status, slot and scores")
        activate = commands.add_parser("activate", help="re-embed every chunk with it, then gate and switch")
        activate.add_argument("retriever", help="name or id")
        activate.add_argument(
            "--eval-dataset",
            help="the held-out BEIR-layout directory of the gate (default: metrics.json's eval.dataset)",
        )
        activate.add_argument(
            "--wait", action="store_true", help="wait for the outcome; exit 1 if it is refused or fails"
        )
        commands.add_parser("rollback", help="switch back to the retriever that was active before")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except RetrieverRefused as exc:
            raise CommandError(exc.message) from None

    def _register(self, options: dict[str, Any]) -> None:
        retriever = retriever_register(source=Path(options["directory"]), name=options["name"])
        self.stdout.write(
            f"registered {retriever.name} (id {retriever.id}, its own nDCG@10 {_score(retriever)}); "
            f"`manage.py retriever activate {retriever.name}` re-embeds the chunks and gates the switch"
        )

    def _list(self, options: dict[str, Any]) -> None:
        retriever_base_ensure()
        self.stdout.write(f"{'id':>4}  {'name':<32} {'status':<11} {'slot':<4} {'own':>6}  gate (nDCG@10)")
        for retriever in retriever_list():
            self.stdout.write(
                f"{retriever.id:>4}  {retriever.name:<32} {retriever.status:<11} {retriever.slot or '-':<4} "
                f"{_score(retriever):>6}  {_gate(retriever)}"
            )
            if retriever.message:
                self.stdout.write(f"      {retriever.message}")

    def _activate(self, options: dict[str, Any]) -> None:
        retriever = retriever_get(name=options["retriever"])
        if retriever is None:
            raise CommandError(f"no retriever {options['retriever']!r}; see `manage.py retriever list`")
        retriever = retriever_activate(retriever=retriever, eval_dataset=options["eval_dataset"])
        self.stdout.write(
            f"{retriever.name}: re-embedding every chunk into slot {retriever.slot} on the reembed queue; "
            "questions use the active retriever until it is evaluated and switched"
        )
        if not options["wait"]:
            return
        while retriever.status in BUILDING:
            time.sleep(2)
            retriever.refresh_from_db()
        self.stdout.write(f"{retriever.name}: {retriever.status}. {retriever.message}")
        if retriever.status != Retriever.Status.ACTIVE:
            raise CommandError(f"{retriever.name} was not switched to: {retriever.message}")

    def _rollback(self, options: dict[str, Any]) -> None:
        retriever = retriever_rollback()
        self.stdout.write(f"{retriever.name} is active again. {retriever.message}")
