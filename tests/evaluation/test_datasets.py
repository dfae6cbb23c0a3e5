"""Reading a BEIR-layout dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.datasets import dataset_load
from tests.evaluation.beir import write_dataset


def test_dataset_load_reads_the_beir_layout(tmp_path: Path) -> None:
    dataset = dataset_load(write_dataset(tmp_path / "tiny"))
    assert dataset.name == "tiny"
    assert [entry.id for entry in dataset.corpus] == ["cats", "volcano", "tax", "coffee", "empty"]
    assert dataset.corpus[0].title == "Cats"
    assert dataset.queries["q2"] == "How does lava come out of a volcano?"
    assert dataset.qrels == {"q1": {"cats": 1}, "q2": {"volcano": 1}, "q3": {"tax": 1, "coffee": 0}}
    assert dataset_load(tmp_path / "tiny").fingerprint == dataset.fingerprint


def test_dataset_load_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="queries.jsonl"):
        (tmp_path / "corpus.jsonl").write_text("")
        dataset_load(tmp_path)
