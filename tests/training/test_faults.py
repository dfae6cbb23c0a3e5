"""Crashes, preemption and corruption: the job still ends bitwise equal to one that never failed.

The reference run never checkpoints at all, so these also show that checkpointing itself leaves
the training maths untouched. Every run uses the same seed, pairs and fixed checkpoint interval.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.training.helpers import ML_BIN, events, run_training, synthetic_pairs, weights_sha256

pytestmark = pytest.mark.slow

CHECKPOINTED = ("--checkpoint-every", "3", "--keep-checkpoints", "2")


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert (ML_BIN / "torchrun").exists(), "training tests need .venv-inference (make test builds it)"
    return synthetic_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


@pytest.fixture(scope="module")
def reference_sha(pairs: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Final weights of an uninterrupted run that takes no checkpoints."""
    out = tmp_path_factory.mktemp("reference")
    succeeded(run_training(out, pairs, "--no-checkpoints"))
    return weights_sha256(out)


def test_rank_killed_mid_training_resumes_to_identical_weights(
    pairs: Path, reference_sha: str, tmp_path: Path
) -> None:
    log = succeeded(run_training(tmp_path, pairs, *CHECKPOINTED, fault="kill:rank=1:step=8"))

    assert [e["step"] for e in events(tmp_path, "killed")] == [8]
    assert [e["step"] for e in events(tmp_path, "resumed")] == [6, 6]
    assert "resumed from step-00000006 at step 6" in log
    assert weights_sha256(tmp_path) == reference_sha


def test_rank_killed_during_checkpoint_write_resumes_from_previous(
    pairs: Path, reference_sha: str, tmp_path: Path
) -> None:
    log = succeeded(run_training(tmp_path, pairs, *CHECKPOINTED, fault="kill-in-write:rank=0:step=9"))

    assert [(e["step"], e["phase"]) for e in events(tmp_path, "killed")] == [(9, "write")]
    assert "checkpoint step-00000009 is unusable: no manifest" in log
    assert [e["step"] for e in events(tmp_path, "resumed")] == [6, 6]
    assert weights_sha256(tmp_path) == reference_sha


def test_corrupt_newest_checkpoint_falls_back_to_previous(
    pairs: Path, reference_sha: str, tmp_path: Path
) -> None:
    crashed = run_training(tmp_path, pairs, *CHECKPOINTED, fault="kill:rank=1:step=11", max_restarts=0)
    assert crashed.returncode != 0
    newest = tmp_path / "checkpoints" / "step-00000009" / "model.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(data)

    log = succeeded(run_training(tmp_path, pairs, *CHECKPOINTED))

    assert "checkpoint step-00000009 is unusable: model.pt does not match its checksum" in log
    assert "falling back to checkpoint step-00000006 (step 6)" in log
    assert (tmp_path / "checkpoints" / "step-00000009.corrupt").is_dir()
    assert weights_sha256(tmp_path) == reference_sha


def test_sigterm_checkpoints_before_exit_and_resumes_there(
    pairs: Path, reference_sha: str, tmp_path: Path
) -> None:
    log = succeeded(run_training(tmp_path, pairs, *CHECKPOINTED, fault="sigterm:rank=1:step=7"))

    preempted = {e["step"] for e in events(tmp_path, "preempted")}
    assert preempted == {8}, "every rank stops at the same step boundary"
    assert "preemption notice: checkpointing step 8 before exit" in log
    assert [e["step"] for e in events(tmp_path, "resumed")] == [8, 8]
    assert weights_sha256(tmp_path) == reference_sha
