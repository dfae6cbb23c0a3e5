"""Elastic training: a node lost for good, a node that comes back, a rank that freezes; one JSON object last.

    make bench-elastic      (or: PYTHONPATH=. .venv-inference/bin/python bench/elastic.py)

Three CPU jobs on the same synthetic pairs (one-layer MiniLM, global batches of 24 = 6
micro-batches of 4, a checkpoint every 3 steps), compared with the first:

1. *reference*: 3 ranks under one torchrun, never interrupted, no checkpoints;
2. *elastic*: three one-worker torchrun agents (``--nnodes 2:3``, ``training.local_nodes``); after
   a random step the node holding rank 2 is lost for good (its agent and worker SIGKILLed), the
   job goes on with 2 ranks by itself; once it has, a fourth agent starts and the job grows back
   to 3 and finishes. ``recovery_s``: from the loss to the first step at 2 ranks; ``grow_s``: from
   the new agent's start to the first step at 3;
3. *hang*: 3 ranks under one torchrun with ``--max-restarts 1``; rank 1 is SIGSTOPped in the middle
   of a step. ``hang_detected_s``: from the stop to the first rank's verdict (the watchdog's
   limit is ``hang_timeout_s``); ``hang_recovery_s``: from the stop to the first step of the
   restarted attempt.

``max_weight_diff`` is the largest absolute difference of any weight between the reference and
runs 2 and 3 (0.0 when bitwise equal); ``samples_skipped`` / ``samples_repeated`` compare, step by
step, the micro-batches runs 2 and 3 trained on (``--record-samples``) with the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from training.local_nodes import LocalNodes, wait_for
from training.samples import count_against, lineage, read_rows

ROOT = Path(__file__).resolve().parent.parent
ML_BIN = ROOT / ".venv-inference" / "bin"

WORDS = [
    *("index", "query", "vector", "chunk", "embed", "rank", "score", "token", "model", "batch"),
    *("search", "answer", "cosine", "passage", "document", "heading", "section", "python"),
]
GLOBAL_BATCH = 24


def write_pairs(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            anchor = " ".join(WORDS[(i * k + 3) % len(WORDS)] for k in range(1, 4))
            positive = " ".join(WORDS[(i * k + 7) % len(WORDS)] for k in range(1, 20))
            f.write(json.dumps({"anchor": f"{anchor} {i}", "positive": f"{positive} {i}"}) + "\n")


def job_args(pairs: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        *("--pairs", str(pairs), "--output-dir", str(out)),
        *("--num-layers", "1", "--freeze-embeddings", "--max-length", "24"),
        *("--batch-size", "4", "--global-batch-size", str(GLOBAL_BATCH)),
        *("--lr", "1e-4", "--warmup-steps", "2", "--max-steps", str(args.steps), "--log-every", "1000"),
        *("--record-samples", "--hang-timeout", str(args.hang_timeout)),
    ]


def torchrun(out: Path, pairs: Path, args: argparse.Namespace, *extra: str, fault: str = "") -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("RAGSITE_TRAIN_FAULT", None)
    if fault:
        env["RAGSITE_TRAIN_FAULT"] = fault
    command = [
        str(ML_BIN / "torchrun"), "--standalone", "--nproc-per-node", "3", "--max-restarts", "1",
        "--monitor-interval", "0.5", "-m", "training.train", *job_args(pairs, out, args), *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"training run in {out} failed with exit code {result.returncode}")


def events(out: Path) -> list[dict[str, Any]]:
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def first(rows: list[dict[str, Any]], name: str, **match: Any) -> dict[str, Any]:
    for row in rows:
        if row["event"] == name and all(row.get(k) == v for k, v in match.items()):
            return row
    raise SystemExit(f"no {name} event matching {match}")


def max_weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    left, right = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    if left.keys() != right.keys():
        raise SystemExit(f"{a} and {b} hold different tensors")
    return max(float((left[k].double() - right[k].double()).abs().max()) for k in left)


def elastic_run(out: Path, pairs: Path, args: argparse.Namespace, step: int) -> dict[str, Any]:
    nodes = LocalNodes(
        root=ROOT,
        ml_bin=ML_BIN,
        log_dir=out.parent / f"{out.name}-logs",
        train_args=[*job_args(pairs, out, args), "--checkpoint-every", "3"],
    )
    try:
        nodes.start_store()
        agents = [nodes.start_node(name, fault=f"lose-node:rank=2:step={step}") for name in "abc"]
        wait_for(
            lambda: any(e["event"] == "start" and e["world_size"] == 2 for e in events(out)),
            timeout=600,
            what="the job going on with 2 ranks",
        )
        returned_at = time.time()
        agents.append(nodes.start_node("d"))
        for agent in agents:
            agent.wait(timeout=900)
    finally:
        nodes.stop()
    if sorted(agent.returncode for agent in agents) != [-9, 0, 0, 0]:
        sys.stderr.write(nodes.logs())
        raise SystemExit("the elastic job failed")
    rows = events(out)
    killed = first(rows, "killed")
    shrunk = first(rows, "first_step", world_size=2, rank=0)
    grown = [e for e in rows if e["event"] == "first_step" and e["world_size"] == 3 and e["rank"] == 0][-1]
    sizes = [e["world_size"] for e in rows if e["event"] == "attempt" and e["rank"] == 0]
    return {
        "world_sizes": sizes,
        "killed_at_step": killed["step"],
        "resumed_from_step": first(rows, "resumed", world_size=2, rank=0)["step"],
        "recovery_s": round(shrunk["t"] - killed["t"], 2),
        "grow_s": round(grown["t"] - returned_at, 2),
    }


def hang_run(out: Path, pairs: Path, args: argparse.Namespace, step: int) -> dict[str, Any]:
    torchrun(out, pairs, args, "--checkpoint-every", "3", fault=f"sigstop:rank=1:step={step}")
    rows = events(out)
    stopped = first(rows, "stopped")
    verdicts = [e for e in rows if e["event"] == "hang"]
    if not verdicts:
        raise SystemExit("the frozen rank was not detected")
    back = first(rows, "first_step", restart=1, rank=0)
    return {
        "hang_detected_s": round(min(e["t"] for e in verdicts) - stopped["t"], 2),
        "hang_verdicts": sorted({e["reason"].split(" for ")[0] for e in verdicts}),
        "hang_recovery_s": round(back["t"] - stopped["t"], 2),
        "hang_stopped_at_step": stopped["step"] + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--hang-timeout", type=float, default=8.0, help="the watchdog's limit, seconds")
    parser.add_argument("--seed", type=int, help="picks the steps the faults hit (default: random)")
    args = parser.parse_args()
    chooser = random.Random(args.seed)
    lost_step = chooser.randint(6, max(6, args.steps // 2))
    frozen_step = chooser.randint(6, max(6, args.steps // 2))

    with tempfile.TemporaryDirectory(prefix="bench-elastic-") as tmp:
        work = Path(tmp)
        pairs = work / "pairs.jsonl"
        write_pairs(pairs, count=4 * GLOBAL_BATCH)
        torchrun(work / "reference", pairs, args, "--no-checkpoints")
        elastic = elastic_run(work / "elastic", pairs, args, lost_step)
        hang = hang_run(work / "hang", pairs, args, frozen_step)
        expected = lineage(read_rows(work / "reference" / "samples.jsonl"))
        runs = ("elastic", "hang")
        counts = [count_against(lineage(read_rows(work / run / "samples.jsonl")), expected) for run in runs]
        diffs = {run: max_weight_diff(work / "reference", work / run) for run in runs}

    print(
        json.dumps(
            {
                "world_before": elastic["world_sizes"][0],
                "world_after": elastic["world_sizes"][1],
                "world_final": elastic["world_sizes"][-1],
                "max_weight_diff": max(diffs.values()),
                "samples_skipped": sum(c["samples_skipped"] for c in counts),
                "samples_repeated": sum(c["samples_repeated"] for c in counts),
                "hang_detected_s": hang["hang_detected_s"],
                "hang_timeout_s": args.hang_timeout,
                "recovery_s": elastic["recovery_s"],
                "grow_s": elastic["grow_s"],
                "hang_recovery_s": hang["hang_recovery_s"],
                "world_sizes": elastic["world_sizes"],
                "killed_at_step": elastic["killed_at_step"],
                "resumed_from_step": elastic["resumed_from_step"],
                "hang_stopped_at_step": hang["hang_stopped_at_step"],
                "hang_verdicts": hang["hang_verdicts"],
                "weight_diff_by_run": diffs,
                "samples_trained_by_run": {
                    run: c["samples_trained"] for run, c in zip(runs, counts, strict=True)
                },
                "steps": args.steps,
                "global_batch_size": GLOBAL_BATCH,
            }
        )
    )


if __name__ == "__main__":
    main()
