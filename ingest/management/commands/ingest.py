"""`manage.py ingest PATH… --collection NAME`: queue files (or folders of them) and follow them to the end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from ingest import selectors, services
from ingest.models import Document


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder")
    return found


class Command(BaseCommand):
    help = "Queue documents for ingestion into a collection and follow them until they are ready or failed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="files, or folders to take every file from")
        parser.add_argument("--collection", required=True, help="collection name (created if missing)")
        parser.add_argument("--no-wait", action="store_true", help="queue them and return at once")
        parser.add_argument("--timeout", type=float, default=0, help="stop following after this many seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        files = _files(options["paths"])
        collection = services.collection_get_or_create(name=options["collection"])
        queued: list[int] = []
        refused = 0
        for path in files:
            try:
                with path.open("rb") as handle:
                    document = services.document_create(
                        collection=collection, file=File(handle, name=path.name), name=path.name
                    )
            except services.DocumentRefused as exc:
                refused += 1
                self.stderr.write(f"skipped {path}: {exc.message}")
                continue
            queued.append(document.id)
        self.stdout.write(f"queued {len(queued)} document(s) into “{collection.name}”; {refused} skipped")
        if options["no_wait"] or not queued:
            return
        failed = self._follow(queued, timeout=options["timeout"])
        if failed:
            raise CommandError(f"{len(failed)} document(s) failed")

    def _follow(self, document_ids: list[int], *, timeout: float) -> list[int]:
        """A progress bar over all documents (each counts 100) until every one is ready or failed."""
        done = {Document.Status.READY, Document.Status.FAILED}
        deadline = time.monotonic() + timeout if timeout else None
        states: dict[int, tuple[str, int]] = {}
        with tqdm(total=100 * len(document_ids), unit="%", desc="ingesting", file=self.stderr) as bar:
            while True:
                states = selectors.documents_in_progress(document_ids=document_ids)
                finished = sum(1 for status, _ in states.values() if status in done)
                total = sum(100 if status in done else progress for status, progress in states.values())
                bar.update(total - bar.n)
                bar.set_postfix(finished=f"{finished}/{len(document_ids)}")
                if finished == len(states):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    self.stderr.write("stopped following; the documents go on in the background")
                    break
                time.sleep(0.5)
        failed = [i for i, (status, _) in states.items() if status == Document.Status.FAILED]
        for document in Document.objects.filter(id__in=failed):
            self.stderr.write(f"failed {document.original_name}: {document.error}")
        return failed
