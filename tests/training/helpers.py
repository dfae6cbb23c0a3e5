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
# scheduler, sampler position) is still checkpointed, and a run takes seconds on two cores.
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

# The elastic tests: 96 pairs, global batches of 24 = 6 micro-batches of 4 at any world size (2
# each on 3 ranks, 3 each on 2), so 4 steps an epoch and 24 steps in six epochs.
ELASTIC_PAIRS = 96
ELASTIC_JOB = [
    "--num-layers", "1",
    "--freeze-embeddings",
    "--max-length", "24",
    "--batch-size", "4",
    "--global-batch-size", "24",
    "--lr", "1e-4",
    "--warmup-steps", "2",
    "--max-steps", "24",
    "--log-every", "1",
    "--record-samples",
]  # fmt: skip
ELASTIC_STEPS_PER_EPOCH = 4


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
    nproc: int = 2,
    job: list[str] = TINY_JOB,
) -> subprocess.CompletedProcess[str]:
    """CPU ranks under torchrun; ``fault`` is a RAGSITE_TRAIN_FAULT spec for the first attempt."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RAGSITE_TRAIN_FAULT", None)
    if fault:
        env["RAGSITE_TRAIN_FAULT"] = fault
    command = [
        str(ML_BIN / "torchrun"),
        "--standalone",
        "--nproc-per-node", str(nproc),
        "--max-restarts", str(max_restarts),
        "--monitor-interval", "0.5",
        "-m", "training.train",
        "--pairs", str(pairs),
        "--output-dir", str(output_dir),
        *job,
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


def synthetic_beir(directory: Path, pairs: Path, count: int = 24) -> Path:
    """A BEIR set from the first ``count`` pairs: each anchor a query, its positive the answer."""
    rows = [json.loads(line) for line in pairs.read_text().splitlines()][:count]
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    with open(directory / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": row["positive"]}) + "\n")
    with open(directory / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"_id": f"q{i}", "text": row["anchor"]}) + "\n")
    with open(directory / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"q{i}\td{i}\t1\n" for i in range(len(rows)))
    return directory


def metrics(output_dir: Path) -> dict[str, Any]:
    return dict(json.loads((output_dir / "metrics.json").read_text()))
