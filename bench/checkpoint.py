"""Checkpointing cost and crash recovery of the training job; prints one JSON object last.

    make bench-checkpoint      (or: PYTHONPATH=. .venv-inference/bin/python bench/checkpoint.py)

Three torchrun jobs on synthetic pairs, two CPU ranks (or one per GPU):

1. checkpointing off; 2. checkpointing on, the interval chosen by CheckFreq's rule for the target
   overhead. Same steps and seed, so ``overhead_pct`` compares their steady-state throughput (steps
   after the warm-up). ``blocking_pct`` is the share of the "on" run that the training thread spent
   in snapshots or waiting for a persist: the part of the cost that machine noise does not blur.
3. a rank SIGKILLed after step 7 with checkpoints every 5 steps: ``recovery_s`` is the wall time
   from the kill to the first completed step after torchrun restarts the job (failure detection,
   restart, imports, checkpoint load, one step).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = ROOT / ".venv-inference" / "bin" / "torchrun"
WORDS = [
    *("index", "query", "vector", "chunk", "embed", "rank", "score", "token", "model", "batch"),
    *("search", "answer", "cosine", "passage", "document", "heading", "section", "python"),
    *("worker", "queue", "cache", "retry", "commit", "manifest", "snapshot"),
]


def write_pairs(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            anchor = " ".join(WORDS[(i * k + 3) % len(WORDS)] for k in range(1, 5))
            positive = " ".join(WORDS[(i * k + 7) % len(WORDS)] for k in range(1, 40))
            f.write(json.dumps({"anchor": f"{anchor} {i}", "positive": f"{positive} {i}"}) + "\n")


def train(
    out: Path, pairs: Path, args: argparse.Namespace, *extra: str, fault: str = ""
) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("RAGSITE_TRAIN_FAULT", None)
    if fault:
        env["RAGSITE_TRAIN_FAULT"] = fault
    command = [
        str(TORCHRUN), "--standalone", "--nproc-per-node", str(args.nproc), "--max-restarts", "1",
        "--monitor-interval", "0.5", "-m", "training.train", "--pairs", str(pairs), "--output-dir", str(out),
        "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--log-every", "1000",
        *(["--num-layers", str(args.num_layers)] if args.num_layers else []),
        *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"training run in {out} failed with exit code {result.returncode}")
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def only(events: list[dict[str, Any]], name: str, **match: Any) -> dict[str, Any]:
    found = [e for e in events if e["event"] == name and all(e[k] == v for k, v in match.items())]
    if not found:
        raise SystemExit(f"no {name} event matching {match}")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="steps per throughput run")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=2, help="MiniLM layers kept (6: all)")
    parser.add_argument("--target", type=float, default=0.035)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        work = Path(tmp)
        pairs = work / "pairs.jsonl"
        write_pairs(pairs, count=args.steps * args.batch_size * args.nproc)
        common = ("--max-steps", str(args.steps), "--warmup-steps", "10")
        off = only(train(work / "off", pairs, args, *common, "--no-checkpoints"), "trained", rank=0)
        on_events = train(
            work / "on",
            pairs,
            args,
            *common,
            "--checkpoint-overhead",
            str(args.target),
            "--keep-checkpoints",
            "2",
        )
        on = only(on_events, "trained", rank=0)
        chosen = only(on_events, "interval", rank=0)
        crash = train(
            work / "crash",
            pairs,
            args,
            "--max-steps",
            "12",
            "--checkpoint-every",
            "5",
            fault="kill:rank=1:step=7",
        )

    off_rate = off["steady_steps"] / off["steady_s"]
    on_rate = on["steady_steps"] / on["steady_s"]
    saves = on["checkpoints"]
    in_loop = [s for s in saves if s["step"] < args.steps]  # the final save comes after the timed steps
    blocking_s = sum(s["snapshot_s"] + s["stall_s"] for s in in_loop)
    killed = only(crash, "killed")
    back = only(crash, "first_step", restart=1, rank=0)
    print(
        json.dumps(
            {
                "overhead_pct": round((off_rate / on_rate - 1) * 100, 2),
                "recovery_s": round(back["t"] - killed["t"], 2),
                "blocking_pct": round(blocking_s / on["steady_s"] * 100, 2),
                "target_pct": round(args.target * 100, 2),
                "steps_per_s_off": round(off_rate, 3),
                "steps_per_s_on": round(on_rate, 3),
                "steps": args.steps,
                "interval_steps": chosen["interval"],
                "checkpoints_taken": len(saves),
                "checkpoint_mb": round(statistics.fmean(s["bytes"] for s in saves) / 2**20, 1),
                "snapshot_ms": round(statistics.fmean(s["snapshot_s"] for s in saves) * 1e3, 1),
                "persist_ms": round(statistics.fmean(s["persist_s"] for s in saves) * 1e3, 1),
                "stall_ms": round(sum(s["stall_s"] for s in saves) * 1e3, 1),
                "step_ms": round(chosen["step_s"] * 1e3, 1),
                "resumed_from_step": only(crash, "resumed", rank=0)["step"],
                "killed_at_step": killed["step"],
                "nproc": args.nproc,
                "num_layers": args.num_layers,
                "batch_size_per_rank": args.batch_size,
                "max_length": args.max_length,
            }
        )
    )


if __name__ == "__main__":
    main()
