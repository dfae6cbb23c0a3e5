"""The claim checker and the evidence gate on their own, with hand-written passages and sentences."""

from __future__ import annotations

import pytest

from search import grounding, textual
from search.answers import (
    Candidate,
    Extract,
    ScoredSentence,
    citations,
    cite,
    quotes_beside,
    sentence_scores,
    trimmed_text,
    verify,
)
from search.retrieval import RetrievedChunk

MEMORY = (
    "Decompression memory depends on the block size. For a file compressed with -5, bunzip2 needs "
    "2300k in normal mode. In small-memory mode (-s) it needs 1350k instead."
)
POLICY = (
    "Lost or stolen devices must be reported to the IT Service Desk within 1 hour, on extension 4400. "
    "Exceptions to this policy are approved by the Head of IT Security, Priya Raman, for at most 90 days."
)
# A small corpus's document frequencies: common words are in most chunks, names and numbers in few.
FREQUENCIES = {"need": 40, "mode": 30, "file": 60, "compress": 50, "memori": 12, "bunzip2": 8, "report": 20}
ALL_CHUNKS = 200


def weights(text: str) -> grounding.TermWeights:
    return grounding.term_weights(text, frequencies=FREQUENCIES, all_chunks=ALL_CHUNKS)


def check(claim: str, passage: str) -> grounding.ClaimCheck:
    return grounding.claim_check(claim, grounding.windows(1, passage), weights=weights(claim))


@pytest.mark.parametrize(
    "claim",
    [
        "In small-memory mode bunzip2 needs 1350k for a file compressed with -5.",
        "bunzip2 needs 1350k in small-memory mode.",
        "Decompression memory depends on the block size.",
    ],
)
def test_claims_the_passage_states_are_supported(claim: str) -> None:
    assert check(claim, MEMORY).supported


@pytest.mark.parametrize(
    ("claim", "why"),
    [
        ("In small-memory mode bunzip2 needs 1200k for a file compressed with -5.", "a changed number"),
        ("bunzip2 needs 1350k in small-memory mode, as Julian Seward wrote.", "a name the passage lacks"),
        ("The SHA-256 checksum of the bzip2 tarball is published on the website.", "a topic it lacks"),
        ("Compression is twice as fast with multithreading enabled on modern processors.", "other words"),
    ],
)
def test_claims_the_passage_does_not_state_are_not(claim: str, why: str) -> None:
    assert not check(claim, MEMORY).supported, why


def test_a_claim_joining_a_name_to_a_role_the_passage_does_not_give_it_is_not_supported() -> None:
    assert check("Exceptions are approved by Priya Raman, the Head of IT Security.", POLICY).supported
    assert not check("Alderbank's Data Protection Officer is Priya Raman.", POLICY).supported


def test_numbers_match_in_their_usual_spellings() -> None:
    passage = "The default block size is 900k; -1 selects 100k."
    assert check("The default block size is 900,000 bytes.", passage).supported
    assert not check("The default block size is 800,000 bytes.", passage).supported


def test_refusals_in_the_models_words_are_recognised() -> None:
    for text in (
        "I don't know from the documents.",
        "The passages do not mention a chair.",
        "No information.",
    ):
        assert grounding.is_refusal(text)
    assert not grounding.is_refusal("Report it within 1 hour on extension 4400 [1].")


def test_malformed_citations_cite_nothing_and_are_removed() -> None:
    assert citations("It needs 1350k [1].", passages=2) == ("It needs 1350k.", [1])
    assert citations("It needs 1350k [0][99][1-3] [2, 1].", passages=2) == ("It needs 1350k.", [2, 1])
    assert citations("See [the manual] and [a].", passages=2) == ("See [the manual] and.", [])


def _candidate(number: int, text: str, title: str = "Policy") -> Candidate:
    passage = RetrievedChunk(
        chunk_id=number,
        document_id=number,
        document_title=title,
        collection_id=1,
        text=text,
        heading_path="",
        page=None,
        char_start=0,
        char_end=len(text),
        score=1.0,
        dense_rank=1,
        keyword_rank=1,
    )
    return Candidate(number=number, passage=passage, evidence=grounding.PassageEvidence(1.0, 1.0))


def test_verify_keeps_supported_sentences_recites_miscited_ones_and_drops_the_rest() -> None:
    answer = (
        "Report a lost laptop within 1 hour on extension 4400 [2]. "
        "Small-memory mode needs 1350k for -5 files. "
        "The laptop is replaced every 3 years [1]. "
        "I hope this helps!"
    )
    candidates = [_candidate(1, POLICY), _candidate(2, MEMORY, title="bzip2 manual")]
    sentences = [citations(span.text, passages=2)[0] for span in textual.sentences(answer)]
    result = verify(
        answer=answer, candidates=candidates, weights_for={text: weights(text) for text in sentences}
    )

    assert [claim.number for claim in result.kept] == [1, 2]
    assert result.text().startswith("Report a lost laptop within 1 hour on extension 4400 [1].")
    assert "3 years" not in result.text()
    # The laptop claim and the pleasantry: neither is in a passage.
    assert result.unsupported == 2
    assert not result.refused


def test_the_extract_stays_under_the_models_answer_unless_the_answer_already_says_it() -> None:
    candidates = [_candidate(1, POLICY), _candidate(2, MEMORY, title="bzip2 manual")]
    answer = (
        "Lost or stolen devices must be reported to the IT Service Desk within 1 hour, on extension 4400 [1]."
    )
    text = citations(answer, passages=2)[0]
    result = verify(answer=answer, candidates=candidates, weights_for={text: weights(text)})
    assert [claim.number for claim in result.kept] == [1]
    policy, memory = textual.sentences(POLICY)[0], textual.sentences(MEMORY)[-1]
    extract = Extract(
        sentences=(
            ScoredSentence(number=1, span=policy, coverage=1.0),
            ScoredSentence(number=2, span=memory, coverage=0.5),
        ),
        answers=True,
    )

    quotes = quotes_beside(result, extract)

    # The policy sentence says nothing the model's answer does not; the memory sentence does, so it stays.
    assert quotes == {2: cite(" ".join(memory.text.split()), 2)}
    assert quotes_beside(result, None) == {}


def test_verify_notes_a_refusal_and_keeps_nothing_from_it() -> None:
    candidates = [_candidate(1, POLICY)]
    answer = "I don't know from the documents."
    result = verify(answer=answer, candidates=candidates, weights_for={})
    assert result.refused and not result.kept


@pytest.mark.parametrize(
    ("question", "passage", "relevant"),
    [
        ("How much memory does bunzip2 need in small-memory mode?", MEMORY, True),
        ("What is the capital of Australia?", MEMORY, False),
        ("How do I report a lost laptop?", POLICY, True),
        ("Who is the Data Protection Officer?", POLICY, False),
    ],
)
def test_the_gate_weighs_the_questions_rare_terms(question: str, passage: str, relevant: bool) -> None:
    evidence = grounding.passage_evidence(
        question=weights(question), passage_text=passage, context="", similarity=None
    )
    assert evidence.relevant is relevant


def test_sentences_keep_their_offsets_and_split_lists_and_rows() -> None:
    text = "First, e.g. this one. Second one here.\n- an item\n| a | b |\nWrapped line\ncontinues here."
    spans = textual.sentences(text)
    assert [span.text for span in spans] == [
        "First, e.g. this one.",
        "Second one here.",
        "- an item",
        "| a | b |",
        "Wrapped line\ncontinues here.",
    ]
    assert all(text[span.start : span.end] == span.text for span in spans)
    assert textual.sentences("%%% *** ---") == []


def test_file_names_and_options_match_after_a_dot_or_a_dash_but_numbers_do_not_continue_others() -> None:
    passage = "Ninja keeps its log in a file called .ninja_log; bunzip2 -s needs 1350k. Version 1.350 is old."
    assert textual.contains_exact(passage, "ninja_log")
    assert textual.contains_exact(passage, "1350")
    assert not textual.contains_exact(passage, "350")
    assert check("The log is kept in a file called .ninja_log.", passage).supported


def test_a_number_the_question_asks_about_must_be_in_the_window_too() -> None:
    passage = "GNU General Public License, Version 3, 29 June 2007. Everyone may copy it."
    question = "In what year was version 2 of the GNU General Public License published?"
    claim = "In 2007, version 2 of the GNU General Public License was published."
    checked = grounding.claim_check(
        claim,
        grounding.windows(1, passage),
        weights=weights(claim),
        question=grounding.term_weights(question, frequencies={}, all_chunks=ALL_CHUNKS, question=True),
        question_text=question,
    )
    assert not checked.grounded and checked.missing_exact == ("2",)


def test_stemming_from_many_threads_at_once_gives_each_word_its_own_stem() -> None:
    # One Snowball stemmer shared by the web process's threads mixed up their words (an IndexError under
    # load); each thread now stems with its own. Words are made unique so that the cache cannot answer.
    from concurrent.futures import ThreadPoolExecutor

    words = [
        f"{base}{suffix}" for base in ("connect", "relat", "generaliz", "hop") for suffix in ("ing", "ed")
    ]
    expected = {word: textual.snowballstemmer.stemmer("english").stemWord(word) for word in words}

    def run(_: int) -> list[tuple[str, str]]:
        return [(word, textual._stemmer().stemWord(word)) for _ in range(2000) for word in words]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for results in pool.map(run, range(8)):
            assert all(stem == expected[word] for word, stem in results)


@pytest.mark.parametrize(
    ("question", "text", "answers"),
    [
        ("Who chairs the Technical Steering Committee?", "The committee's agenda is set weekly [1].", False),
        ("Who approves exceptions?", "Exceptions are approved by the Head of IT Security [1].", True),
        ("Who approves exceptions?", "Ask your line manager [1].", True),
        ("Who should I cc about c-ares?", "Cc @rvagg on such issues [1].", True),
        (
            "Who is Alderbank's Data Protection Officer?",
            "It protects Alderbank's data and IT systems.",
            False,
        ),
        ("In what year was version 2 published?", "New versions are published from time to time [1].", False),
        ("In what year was version 2 published?", "Version 2 was published in June 1991 [1].", True),
        ("How often is it released, and in which months?", "A major release comes every 6 months.", False),
        ("How often is it released, and in which months?", "Every 6 months, in April and October.", True),
        ("How long must the offer remain valid?", "For at least three years [1].", True),
        ("How long must the offer remain valid?", "For as long as spare parts are offered [1].", False),
        ("How quickly must I report it?", "Report it straight away [1].", True),
        ("Which tool salvages a damaged archive?", "Use bzip2recover [1].", True),
        # A number the question states is not its answer; a new one is.
        ("What block size does -1 to -9 give?", "The flags -1 to -9 are ignored when decompressing.", False),
        ("What block size does -1 to -9 give?", "The flags -1 to -9 give 100,000 to 900,000 bytes.", True),
        ("What's the minimum length of a password?", "Passwords must be long and unique.", False),
        ("What's the minimum length of a password?", "Passwords need at least 14 characters.", True),
    ],
)
def test_an_answer_must_hold_the_kind_of_thing_its_question_asks_for(
    question: str, text: str, answers: bool
) -> None:
    assert grounding.has_answer_type(text, question=question) is answers


def test_the_model_sees_a_long_tables_best_rows_as_rows_under_the_tables_header() -> None:
    rows = [f"| office {i} | {100 + i} Main Street | +1 555 {1000 + i} |" for i in range(40)]
    table = "\n".join(["| Office | Address | Phone |", "| --- | --- | --- |", *rows])
    candidate = _candidate(1, f"Our offices and how to call them.\n\n{table}", title="Offices")
    question = weights("What is the phone number of office 31?")
    scored = sentence_scores(question=question, candidates=[candidate])

    text = trimmed_text(candidate, scored)

    assert len(text) < len(candidate.passage.text)
    lines = text.split("\n")
    assert lines[:2] == ["| Office | Address | Phone |", "| --- | --- | --- |"] or lines[1:3] == [
        "| Office | Address | Phone |",
        "| --- | --- | --- |",
    ]
    assert "| office 31 | 131 Main Street | +1 555 1031 |" in lines
    assert all(line.startswith(("|", "…", "Our offices")) for line in lines)


def test_a_table_row_is_read_under_its_tables_header() -> None:
    table = "Memory by flag.\n\n| Flag | Decompress -s usage |\n| --- | --- |\n| -4 | 1100k |\n| -5 | 1350k |"
    candidate = _candidate(1, table, title="Manual")
    question = weights("How much memory does decompressing with -s need for a file made with -5?")

    scored = sentence_scores(question=question, candidates=[candidate])

    row = next(sentence for sentence in scored if sentence.span.text == "| -5 | 1350k |")
    assert row.reading == "| Flag | Decompress -s usage |\n| -5 | 1350k |"
    # The row's own cells hold none of the question's words; its header holds "decompress" and "-s".
    assert row.coverage > 0
