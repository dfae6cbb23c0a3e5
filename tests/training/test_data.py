"""Pairs in and out: the JSONL reader, its digest, pairs from a BEIR corpus, nDCG and the interval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from training.data import Pair, load_pairs, pairs_digest
from training.evaluate import ndcg_at_k, read_qrels, sample_corpus
from training.frequency import checkfreq_interval
from training.pairs_from_beir import main as pairs_from_beir_main
from training.pairs_from_beir import pairs_from_beir


def write_beir(root: Path, docs: list[dict[str, str]]) -> Path:
    root.mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n")
    return root


def test_load_pairs_reads_anchor_and_positive_and_skips_blank_ones(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"anchor": "a", "positive": "p", "doc_id": "d1"}\n\n{"anchor": " ", "positive": "q"}\n')

    assert load_pairs(path) == [Pair(anchor="a", positive="p")]


def test_load_pairs_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"anchor": "a", "positive": "p"}\n{"anchor": "a"}\n')

    with pytest.raises(ValueError, match="pairs.jsonl:2"):
        load_pairs(path)


def test_pairs_digest_changes_with_content_and_order() -> None:
    a, b = Pair("a", "p"), Pair("b", "q")

    assert pairs_digest([a, b]) == pairs_digest([Pair("a", "p"), Pair("b", "q")])
    assert pairs_digest([a, b]) != pairs_digest([b, a])


def test_pairs_from_beir_uses_titled_documents_only_and_splits_them_stably(tmp_path: Path) -> None:
    docs = [{"_id": f"doc-{i}", "title": f"section/{i}", "text": f"passage {i}"} for i in range(200)]
    docs.append({"_id": "faq-0", "title": "", "text": "an answer the queries point at"})
    beir = write_beir(tmp_path / "beir", docs)

    train, heldout = pairs_from_beir(beir, heldout_pct=20)

    assert len(train) + len(heldout) == 200
    assert 20 <= len(heldout) <= 60
    assert {r["doc_id"] for r in train}.isdisjoint(r["doc_id"] for r in heldout)
    row = next(r for r in train + heldout if r["doc_id"] == "doc-7")
    assert row == {"anchor": "section/7", "positive": "passage 7", "doc_id": "doc-7"}
    assert (train, heldout) == pairs_from_beir(beir, heldout_pct=20)


def test_pairs_from_beir_command_writes_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beir = write_beir(tmp_path / "beir", [{"_id": "d1", "title": "t", "text": "x"}])

    pairs_from_beir_main([str(beir), "--out-dir", str(tmp_path / "out")])

    counts = json.loads(capsys.readouterr().out)
    assert counts["train"] + counts["heldout"] == 1
    assert load_pairs(tmp_path / "out" / "train.jsonl") + load_pairs(tmp_path / "out" / "heldout.jsonl") == [
        Pair("t", "x")
    ]


def test_ndcg_at_10_of_known_rankings() -> None:
    assert ndcg_at_k(["d1", "x"], {"d1": 1}) == 1.0
    assert ndcg_at_k(["x", "d1"], {"d1": 1}) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([f"x{i}" for i in range(10)] + ["d1"], {"d1": 1}) == 0.0
    assert ndcg_at_k(["d2", "d1"], {"d1": 2, "d2": 1}) == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    )


def test_read_qrels_keeps_positive_grades_only(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "beir", [])

    assert read_qrels(beir / "qrels" / "test.tsv") == {"q1": {"d1": 1}, "q2": {"d3": 2}}


def test_checkfreq_interval_holds_the_overhead_under_target() -> None:
    interval = checkfreq_interval(
        step_s=0.1, snapshot_s=0.02, interference_s=0.05, persist_s=0.5, target=0.035
    )

    assert interval == 20
    assert (0.02 + 0.05) / (interval * 0.1) <= 0.035


def test_checkfreq_interval_lets_each_persist_finish_before_the_next_snapshot() -> None:
    interval = checkfreq_interval(step_s=0.1, snapshot_s=0.0, interference_s=0.0, persist_s=3.0, target=0.5)

    assert interval == 31


def test_sample_corpus_keeps_every_relevant_document_and_is_seeded() -> None:
    corpus = [{"_id": f"d{i}"} for i in range(100)]
    qrels = {"q1": {"d5": 1}, "q2": {"d77": 1}}

    sample = sample_corpus(corpus, qrels, max_docs=10)

    assert len(sample) == 10
    assert {"d5", "d77"} <= {row["_id"] for row in sample}
    assert sample == sample_corpus(corpus, qrels, max_docs=10)
    assert sample_corpus(corpus, qrels, max_docs=None) == corpus
