"""Chunks follow the document's structure and always fit the embedding model, measured in its own tokens."""

from __future__ import annotations

from ingest.chunking import MAX_HEADING_TOKENS, chunk_document, chunk_own_text
from ingest.parsers import ParsedDocument, Section, parse
from ingest.tokens import MODEL_MAX_TOKENS, count_tokens


def _sentences(n: int, topic: str = "leave") -> str:
    return " ".join(f"Sentence {i} explains the {topic} policy in some detail." for i in range(n))


def test_each_chunk_carries_the_title_first_then_its_headings_and_page() -> None:
    parsed = ParsedDocument(
        title="Handbook",
        content_type="text/markdown",
        sections=[
            Section(text="Intro.", heading_path=()),
            Section(text="25 days.", heading_path=("Time off", "Annual leave"), page=3),
        ],
    )
    chunks = chunk_document(parsed)
    assert [(c.heading_path, c.page, c.text) for c in chunks] == [
        (("Handbook",), None, "Intro."),
        (("Handbook", "Time off", "Annual leave"), 3, "25 days."),
    ]
    assert chunks[1].embedding_input == "Handbook > Time off > Annual leave\n\n25 days."


def test_a_heading_equal_to_the_title_is_not_repeated() -> None:
    parsed = parse(b"# Guide\n\nIntro.\n\n## Setup\n\nRun it.\n", filename="g.md")
    assert [c.heading_path for c in chunk_document(parsed)] == [("Guide",), ("Guide", "Setup")]


def test_chunks_never_exceed_the_model_limit_including_the_heading() -> None:
    long_heading = ("Very long heading words " * 30).strip()
    text = "\n\n".join(_sentences(12, topic=f"topic{p}") for p in range(20))
    parsed = ParsedDocument(
        title="T", content_type="text/plain", sections=[Section(text=text, heading_path=(long_heading,))]
    )
    chunks = chunk_document(parsed)
    assert len(chunks) > 5
    for chunk in chunks:
        assert count_tokens(chunk.embedding_input) == chunk.token_count <= MODEL_MAX_TOKENS
        assert count_tokens(chunk.heading) <= MAX_HEADING_TOKENS


def test_no_text_is_lost_and_offsets_point_into_the_extracted_text() -> None:
    text = "\n\n".join(_sentences(25, topic=f"t{p}") for p in range(6))
    parsed = parse(f"# Doc\n\n{text}\n\n## Tail\n\nLast words.".encode(), filename="d.md")
    chunks = chunk_document(parsed)
    covered = [False] * len(parsed.text)
    for chunk in chunks:
        assert parsed.text[chunk.char_start : chunk.char_end] == chunk.text
        for i in range(chunk.char_start, chunk.char_end):
            covered[i] = True
    missing = "".join(ch for ch, seen in zip(parsed.text, covered, strict=True) if not seen)
    assert missing.strip() == ""


def test_long_sections_are_split_with_overlap_and_sections_are_never_merged() -> None:
    parsed = ParsedDocument(
        title="T",
        content_type="text/plain",
        sections=[Section(text=_sentences(80), page=1), Section(text="Short page.", page=2)],
    )
    chunks = chunk_document(parsed)
    first_page = [c for c in chunks if c.page == 1]
    assert len(first_page) >= 3
    for previous, following in zip(first_page, first_page[1:], strict=False):
        assert following.char_start < previous.char_end  # overlapping sentences
    assert chunks[-1].text == "Short page." and chunks[-1].page == 2


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    paragraphs = [_sentences(6, topic=f"p{i}") for i in range(8)]
    parsed = ParsedDocument(
        title="", content_type="text/plain", sections=[Section(text="\n\n".join(paragraphs))]
    )
    for chunk in chunk_document(parsed):
        assert chunk.text.startswith("Sentence 0 ")
        assert chunk.text.endswith("in some detail.")


def test_a_sentence_longer_than_the_model_limit_is_cut_at_token_boundaries() -> None:
    sentence = " ".join(f"word{i}" for i in range(2000))
    chunks = chunk_document(
        ParsedDocument(title="", content_type="text/plain", sections=[Section(text=sentence)])
    )
    assert len(chunks) > 5
    assert all(c.token_count <= MODEL_MAX_TOKENS for c in chunks)
    words = sentence.split()
    position = 0
    for chunk in chunks:  # each chunk is a run of whole words; together (minus overlap) they are all of them
        run = chunk.text.split()
        start = words.index(run[0], max(position - 40, 0))
        assert words[start : start + len(run)] == run
        assert start <= position
        position = start + len(run)
    assert position == len(words)


def test_a_table_split_across_chunks_repeats_its_header_in_each_and_keeps_its_rows_whole() -> None:
    rows = [f"| office {i} | {100 + i} Main Street, Springfield | +1 555 {1000 + i} |" for i in range(60)]
    table = "\n".join(["| Office | Address | Phone |", "| --- | --- | --- |", *rows])
    parsed = ParsedDocument(
        title="Offices", content_type="text/html", sections=[Section(text=f"Our offices.\n\n{table}")]
    )
    chunks = chunk_document(parsed)
    assert len(chunks) >= 3
    assert chunks[0].text.startswith("Our offices.\n\n| Office | Address | Phone |\n| --- | --- | --- |\n")
    for chunk in chunks:
        assert count_tokens(chunk.embedding_input) == chunk.token_count <= MODEL_MAX_TOKENS
        own = chunk_own_text(text=chunk.text, char_start=chunk.char_start, char_end=chunk.char_end)
        assert parsed.text[chunk.char_start : chunk.char_end] == own
        lines = chunk.text.split("\n")
        assert all(line in rows for line in lines[2:] if line.startswith("| office"))
    for chunk in chunks[1:]:
        assert chunk.text.startswith("| Office | Address | Phone |\n| --- | --- | --- |\n| office ")
    assert {row for chunk in chunks for row in chunk.text.split("\n")} >= set(rows)


def test_a_chunk_that_starts_at_a_tables_header_does_not_repeat_it() -> None:
    table = "| Key | Value |\n| --- | --- |\n| a | 1 |"
    parsed = ParsedDocument(title="", content_type="text/html", sections=[Section(text=table)])
    assert [chunk.text for chunk in chunk_document(parsed)] == [table]
