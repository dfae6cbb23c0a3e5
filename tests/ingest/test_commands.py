"""`manage.py ingest` follows documents to the end; `manage.py load_demo` is idempotent."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from ingest.models import Collection, Document
from tests.processes import WorkerProcess


@pytest.mark.django_db(transaction=True)
def test_ingest_command_loads_a_folder_and_follows_it_to_ready(
    ingest_worker: WorkerProcess, tmp_path: Path
) -> None:
    (tmp_path / "a.md").write_bytes(b"# Alpha\n\nFirst file.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_bytes(b"Beta\n\nSecond file.\n")
    (tmp_path / "sub" / "copy.txt").write_bytes(b"Beta\n\nSecond file.\n")
    out, err = io.StringIO(), io.StringIO()

    call_command("ingest", str(tmp_path), collection="Manuals", stdout=out, stderr=err)

    assert "queued 2 document(s) into “Manuals”; 1 skipped" in out.getvalue()
    assert "skipped" in err.getvalue() and "the same content is already in “Manuals”" in err.getvalue()
    assert "2/2" in err.getvalue()  # the progress bar's last state
    documents = Document.objects.filter(collection__name="Manuals")
    assert sorted(documents.values_list("original_name", "status")) == [("a.md", "ready"), ("b.txt", "ready")]


@pytest.mark.django_db
def test_load_demo_queues_the_demo_documents_once_into_a_collection_staff_can_read() -> None:
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    call_command("load_demo", stdout=out)
    demo = Collection.objects.get(name="Demo")
    assert list(demo.groups.values_list("name", flat=True)) == ["Staff"]
    demo_files = sorted(p.name for p in (Path(__file__).parents[2] / "ingest" / "demo").iterdir())
    assert sorted(demo.documents.values_list("original_name", flat=True)) == demo_files
    assert "demo: 0 document(s) queued" in out.getvalue()
