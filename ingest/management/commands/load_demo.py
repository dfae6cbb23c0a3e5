"""`manage.py load_demo`: queue the demo documents into a "Demo" collection read by "Staff"; idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth.models import Group
from django.core.files import File
from django.core.management.base import BaseCommand

from ingest import services

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"


class Command(BaseCommand):
    help = "Queue the demo documents (ingest/demo/) into the Demo collection, readable by the Staff group."

    def handle(self, *args: Any, **options: Any) -> None:
        staff, _ = Group.objects.get_or_create(name="Staff")
        collection = services.collection_get_or_create(name="Demo", groups=[staff])
        queued = 0
        for path in sorted(p for p in DEMO_DIR.iterdir() if p.is_file() and not p.name.startswith(".")):
            try:
                with path.open("rb") as handle:
                    services.document_create(
                        collection=collection, file=File(handle, name=path.name), name=path.name
                    )
            except services.DocumentDuplicate:
                continue
            queued += 1
        self.stdout.write(f"demo: {queued} document(s) queued into “{collection.name}”")
