"""Run the training job under torchrun from .venv-inference, as production does."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.processes import ROOT

ML_BIN = ROOT / ".venv-inference" / "bin"

# A one-layer MiniLM on short texts with frozen embeddings: the whole job state (model, AdamW,
# scheduler, sampler, per-rank RNG) is still checkpointed, and a run takes seconds on two cores.
TINY_JOB = [
    "--num-layers", "1",
    "--freeze-embeddings",
    "--max-length", "24",
    "--batch-size", "4",
    "--lr", "1e-4",
    "--warmup-steps", "2",
    "--max-steps", "16",
    "--log-every", "1",
]  # fmt: skip


def synthetic_pairs(path: Path, count: int = 48) -> Path:
    """Pairs whose anchors repeat now and then, like several chunks under one heading."""
    words = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
    ]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            anchor = f"{words[i % 12]} {words[(i // 12) % 12]} guide"
            if i % 7 == 0:
                anchor = "common questions"
            positive = " ".join(words[(i * k) % 12] for k in range(1, 12)) + f" section {i}"
            f.write(json.dumps({"anchor": anchor, "positive": positive}) + "\n")
    return path


def run_training(
    output_dir: Path,
    pairs: Path,
    *extra: str,
    fault: str | None = None,
    max_restarts: int = 1,
) -> subprocess.CompletedProcess[str]:
    """Two CPU ranks under torchrun; ``fault`` is a RAGSITE_TRAIN_FAULT spec for the first attempt."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RAGSITE_TRAIN_FAULT", None)
    if fault:
        env["RAGSITE_TRAIN_FAULT"] = fault
    command = [
        str(ML_BIN / "torchrun"),
        "--standalone",
        "--nproc-per-node", "2",
        "--max-restarts", str(max_restarts),
        "--monitor-interval", "0.5",
        "-m", "training.train",
        "--pairs", str(pairs),
        "--output-dir", str(output_dir),
        *TINY_JOB,
        *extra,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def events(output_dir: Path, name: str) -> list[dict[str, Any]]:
    lines = (output_dir / "events.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["event"] == name]


def weights_sha256(output_dir: Path) -> str:
    return str(json.loads((output_dir / "metrics.json").read_text())["weights_sha256"])
