"""Checkpointing cost and crash recovery of the training job; prints one JSON object last.

    make bench-checkpoint      (or: PYTHONPATH=. .venv-inference/bin/python bench/checkpoint.py)

torchrun jobs on synthetic pairs, two CPU ranks (or one per GPU):

1. ``--pairs`` pairs of runs (3 by default), alternating: checkpointing off, then on with the interval
   chosen by CheckFreq's rule for the target overhead. Same steps and seed. Alternating spreads a busy
   machine's load over both kinds of run; each figure is the median over the pairs, with its spread.
   ``overhead_pct`` counts CPU time: the whole job's (every rank and thread, user and system, from the
   kernel's accounting of torchrun and its workers), on against off. The background persist runs on a
   thread beside training; on an idle machine with cores to spare it costs the training thread nothing,
   but its CPU seconds are taken from whatever else the machine runs, so they count.
   ``throughput_overhead_pct`` compares the steady-state steps/s (after the warm-up), and
   ``blocking_pct`` is the share of the "on" run that the training thread spent in snapshots or waiting
   for a persist.
2. a rank SIGKILLed after step 7 with checkpoints every 5 steps: ``recovery_s`` is the wall time
   from the kill to the first completed step after torchrun restarts the job (failure detection,
   restart, imports, checkpoint load, one step).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def children_cpu_s() -> float:
    """CPU seconds (user + system) of every child process ended and waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(
    out: Path, pairs: Path, args: argparse.Namespace, *extra: str, fault: str = ""
) -> tuple[list[dict[str, Any]], float]:
    """The job's events, and the CPU seconds it used (torchrun waits for its workers, so theirs count)."""
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
    cpu_before = children_cpu_s()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    cpu_s = children_cpu_s() - cpu_before
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"training run in {out} failed with exit code {result.returncode}")
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()], cpu_s


def steps_per_s(trained: dict[str, Any]) -> float:
    return round(trained["steady_steps"] / trained["steady_s"], 3)


def median_and_spread(values: list[float]) -> tuple[float, list[float]]:
    return round(statistics.median(values), 2), [round(min(values), 2), round(max(values), 2)]


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
    parser.add_argument("--pairs", type=int, default=3, help="off/on pairs of runs, alternating (at least 3)")
    args = parser.parse_args()
    if args.pairs < 3:
        parser.error("--pairs must be at least 3: one pair on a loaded machine says little")

    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        work = Path(tmp)
        pairs = work / "pairs.jsonl"
        write_pairs(pairs, count=args.steps * args.batch_size * args.nproc)
        common = ("--max-steps", str(args.steps), "--warmup-steps", "10")
        on_flags = ("--checkpoint-overhead", str(args.target), "--keep-checkpoints", "2")
        runs: list[dict[str, Any]] = []
        for pair in range(args.pairs):
            off_events, off_cpu = train(work / f"off-{pair}", pairs, args, *common, "--no-checkpoints")
            on_events, on_cpu = train(work / f"on-{pair}", pairs, args, *common, *on_flags)
            off, on = only(off_events, "trained", rank=0), only(on_events, "trained", rank=0)
            runs.append(
                {
                    "off": off,
                    "on": on,
                    "off_cpu_s": off_cpu,
                    "on_cpu_s": on_cpu,
                    "interval": only(on_events, "interval", rank=0),
                }
            )
            print(
                json.dumps({"pair": pair, "off_cpu_s": round(off_cpu, 1), "on_cpu_s": round(on_cpu, 1)}),
                file=sys.stderr,
            )
        crash, _ = train(
            work / "crash",
            pairs,
            args,
            "--max-steps",
            "12",
            "--checkpoint-every",
            "5",
            fault="kill:rank=1:step=7",
        )

    throughput_overheads, cpu_overheads, blocking = [], [], []
    for run in runs:
        off_rate = run["off"]["steady_steps"] / run["off"]["steady_s"]
        on_rate = run["on"]["steady_steps"] / run["on"]["steady_s"]
        throughput_overheads.append((off_rate / on_rate - 1) * 100)
        cpu_overheads.append((run["on_cpu_s"] / run["off_cpu_s"] - 1) * 100)
        in_loop = [s for s in run["on"]["checkpoints"] if s["step"] < args.steps]  # the last save is after
        blocking_s = sum(s["snapshot_s"] + s["stall_s"] for s in in_loop)
        blocking.append(blocking_s / run["on"]["steady_s"] * 100)
    overhead, overhead_spread = median_and_spread(cpu_overheads)
    throughput_overhead, throughput_spread = median_and_spread(throughput_overheads)
    blocking_pct, blocking_spread = median_and_spread(blocking)
    saves = [save for run in runs for save in run["on"]["checkpoints"]]
    killed = only(crash, "killed")
    back = only(crash, "first_step", restart=1, rank=0)
    print(
        json.dumps(
            {
                "overhead_pct": overhead,
                "overhead_spread_pct": overhead_spread,
                "throughput_overhead_pct": throughput_overhead,
                "throughput_overhead_spread_pct": throughput_spread,
                "blocking_pct": blocking_pct,
                "blocking_spread_pct": blocking_spread,
                "recovery_s": round(back["t"] - killed["t"], 2),
                "target_pct": round(args.target * 100, 2),
                "pairs": args.pairs,
                "cpu_s_off": [round(run["off_cpu_s"], 1) for run in runs],
                "cpu_s_on": [round(run["on_cpu_s"], 1) for run in runs],
                "steps_per_s_off": [
                    round(run["off"]["steady_steps"] / run["off"]["steady_s"], 3) for run in runs
                ],
                "steps_per_s_on": [
                    round(run["on"]["steady_steps"] / run["on"]["steady_s"], 3) for run in runs
                ],
                "steps": args.steps,
                "interval_steps": [run["interval"]["interval"] for run in runs],
                "checkpoints_taken": [len(run["on"]["checkpoints"]) for run in runs],
                "checkpoint_mb": round(statistics.fmean(s["bytes"] for s in saves) / 2**20, 1),
                "snapshot_ms": round(statistics.fmean(s["snapshot_s"] for s in saves) * 1e3, 1),
                "persist_ms": round(statistics.fmean(s["persist_s"] for s in saves) * 1e3, 1),
                "stall_ms": round(statistics.fmean(s["stall_s"] for s in saves) * 1e3, 1),
                "step_ms": round(statistics.median(run["interval"]["step_s"] for run in runs) * 1e3, 1),
                "resumed_from_step": only(crash, "resumed", rank=0)["step"],
                "killed_at_step": killed["step"],
                "nproc": args.nproc,
                "num_layers": args.num_layers,
                "batch_size_per_rank": args.batch_size,
                "max_length": args.max_length,
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
