"""The Debian FAQ as a BEIR-layout retrieval set: questions from section headings, answers from their text."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.datasets import dataset_load
from evaluation.debian_faq import dataset_build, faq_entries, main

# The shape of the package's DocBook XHTML: a chapter with a table of contents, sections with numbered
# headings, a section nested in another, a heading that is not a question and an answer that only points on.
CHAPTER = """<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter 6. Debian releases</title></head><body>
<div class="chapter"><div class="titlepage"><div><div><h1 class="title"><a id="ftparchives"></a>
Chapter 6. The Debian FTP archives</h1></div></div></div>
<div class="toc"><p><strong>Table of Contents</strong></p><dl class="toc"><dt><span class="section">
<a href="ftparchives.en.html#dirtree">6.1. What are all those directories at the Debian archives?</a>
</span></dt>
</dl></div>
<div class="section"><div class="titlepage"><div><div><h2 class="title"><a id="dirtree"></a>6.1. What are all
those directories at the Debian archives?</h2></div></div></div><p>
The software that has been packaged for Debian is available in one of several directory trees on each
Debian mirror site.</p><p>The <code>dists</code> directory is short for distributions.</p>
<div class="section"><div class="titlepage"><div><div><h3 class="title"><a id="pool"></a>6.1.1. What is in
the pool directory?</h3></div></div></div><p>Packages are kept in a large pool, structured according to the
name of the source package, so that no package is stored twice.</p></div>
</div>
<div class="section"><div class="titlepage"><div><div><h2 class="title"><a id="codenames"></a>6.2. Code names
</h2></div></div></div><p>Every release of Debian has a code name taken from a film about toys and their
owners, which stays with it for good.</p></div>
<div class="section"><div class="titlepage"><div><div><h2 class="title"><a id="sid"></a>6.3. What about
sid?</h2></div></div></div><p>See Section 6.2.</p></div>
</div></body></html>
"""


def test_questions_are_headings_ending_in_a_question_mark_and_answers_their_own_text() -> None:
    entries = faq_entries(CHAPTER)

    assert [(entry.anchor, entry.question) for entry in entries] == [
        ("dirtree", "What are all those directories at the Debian archives?"),
        ("pool", "What is in the pool directory?"),
    ]
    # The section's paragraphs, not its heading, its table of contents or its subsection's answer.
    assert entries[0].answer.startswith("The software that has been packaged for Debian")
    assert "dists" in entries[0].answer
    assert "pool" not in entries[0].answer
    assert "directories" not in entries[0].answer
    assert entries[1].answer.startswith("Packages are kept in a large pool")


def test_the_dataset_is_written_in_the_beir_layout_the_evaluation_reads(tmp_path: Path) -> None:
    faq_dir = tmp_path / "FAQ"
    faq_dir.mkdir()
    (faq_dir / "ftparchives.en.html").write_text(CHAPTER, encoding="utf-8")
    (faq_dir / "ftparchives.html").write_text("<html>the same page again, not read</html>", encoding="utf-8")

    assert dataset_build(faq_dir=faq_dir, out=tmp_path / "debian-faq") == 2

    dataset = dataset_load(tmp_path / "debian-faq")
    assert dataset.queries == {
        "q0": "What are all those directories at the Debian archives?",
        "q1": "What is in the pool directory?",
    }
    assert dataset.qrels == {"q0": {"faq-0": 1}, "q1": {"faq-1": 1}}
    assert [entry.title for entry in dataset.corpus] == ["", ""]


@pytest.mark.parametrize(
    ("page", "message"), [(None, "no *.en.html pages"), ("<html><p>nothing</p></html>", "no questions")]
)
def test_a_directory_without_the_faq_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], page: str | None, message: str
) -> None:
    if page is not None:
        (tmp_path / "index.en.html").write_text(page, encoding="utf-8")

    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
