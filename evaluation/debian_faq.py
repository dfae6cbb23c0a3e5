"""A second public retrieval set, in the BEIR layout, from the Debian FAQ (the `debian-faq` package).

Built like python-faq, so that a choice tuned on one is checked on documentation nobody tuned for: each of
the FAQ's questions (a section heading ending in "?") is a query, its answer (the section's own text,
without its heading or its subsections) is the one relevant passage, and passages carry no title, so that
the question's wording cannot be matched from the heading. Answers too short to hold an answer (under
`MIN_ANSWER_WORDS`) are left out with their question.

    python -m evaluation.debian_faq <the package's usr/share/doc/debian/FAQ directory> <out directory>

(`make debian-faq` downloads the package with apt and runs this.)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from bs4 import BeautifulSoup, Tag, XMLParsedAsHTMLWarning

# An answer of fewer words is a pointer ("See section 4.2."), not a passage that answers.
MIN_ANSWER_WORDS = 12
SECTION_NUMBER = re.compile(r"^\s*\d+(\.\d+)*\.\s*")


@dataclass(frozen=True)
class FaqEntry:
    anchor: str
    question: str
    answer: str


def _text(node: Tag) -> str:
    return " ".join(node.get_text(" ").split())


def _section_answer(section: Tag) -> str:
    """The section's own paragraphs, lists and examples: not its heading, not its subsections."""
    parts: list[str] = []
    for child in section.children:
        if not isinstance(child, Tag):
            continue
        classes: list[str] = list(child.get("class") or [])
        if "titlepage" in classes or "section" in classes or "toc" in classes:
            continue
        text = _text(child)
        if text:
            parts.append(text)
    return "\n\n".join(parts)


def faq_entries(html: str) -> list[FaqEntry]:
    """The questions of one FAQ chapter page with their answers, in page order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # the pages are XHTML; read as HTML
        soup = BeautifulSoup(html, "lxml")
    entries: list[FaqEntry] = []
    for section in soup.find_all("div", class_="section"):
        heading = section.find(["h2", "h3", "h4"], class_="title")
        if heading is None:
            continue
        question = SECTION_NUMBER.sub("", _text(heading))
        if not question.endswith("?"):
            continue
        answer = _section_answer(section)
        if len(answer.split()) < MIN_ANSWER_WORDS:
            continue
        anchor = heading.find("a", id=True)
        entries.append(
            FaqEntry(anchor=str(anchor["id"]) if anchor else question, question=question, answer=answer)
        )
    return entries


def dataset_build(*, faq_dir: Path, out: Path) -> int:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv under `out`; the number of questions."""
    pages = sorted(faq_dir.glob("*.en.html"))
    if not pages:
        raise FileNotFoundError(f"no *.en.html pages of the Debian FAQ in {faq_dir}")
    entries = [entry for page in pages for entry in faq_entries(page.read_text(encoding="utf-8"))]
    if not entries:
        raise ValueError(f"no questions found in the pages of {faq_dir}")
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (
        (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus,
        (out / "queries.jsonl").open("w", encoding="utf-8") as queries,
        (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as qrels,
    ):
        qrels.write("query-id\tcorpus-id\tscore\n")
        for number, entry in enumerate(entries):
            corpus.write(json.dumps({"_id": f"faq-{number}", "title": "", "text": entry.answer}) + "\n")
            queries.write(json.dumps({"_id": f"q{number}", "text": entry.question}) + "\n")
            qrels.write(f"q{number}\tfaq-{number}\t1\n")
    return len(entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faq_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        count = dataset_build(faq_dir=args.faq_dir, out=args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps({"dataset": str(args.out), "questions": count}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
