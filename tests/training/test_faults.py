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


def newest_sealed(output_dir: Path) -> int:
    """The newest checkpoint the first attempt sealed (rank 0 logs each one)."""
    return max(e["step"] for e in events(output_dir, "sealed") if e["restart"] == 0)


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
    # Step 6's checkpoint is sealed unless rank 1 died before its share of it was written.
    sealed = newest_sealed(tmp_path)
    assert sealed in (3, 6)
    assert [e["step"] for e in events(tmp_path, "resumed")] == [sealed, sealed]
    assert f"resumed from step-{sealed:08d} at step {sealed}" in log
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
    newest = newest_sealed(tmp_path)  # 9, or 6 if rank 1 died before its share of 9 was written
    previous = newest - 3
    damaged = tmp_path / "checkpoints" / f"step-{newest:08d}" / "__0_0.distcp"  # rank 0's share
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(data)

    log = succeeded(run_training(tmp_path, pairs, *CHECKPOINTED))

    assert f"checkpoint step-{newest:08d} is unusable: __0_0.distcp does not match its checksum" in log
    assert f"falling back to checkpoint step-{previous:08d} (step {previous})" in log
    assert (tmp_path / "checkpoints" / f"step-{newest:08d}.corrupt").is_dir()
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
