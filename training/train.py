"""Fine-tune the sentence encoder on (anchor, positive) pairs with in-batch negatives.

Run under torchrun, one process per device; it resumes from the newest valid checkpoint by itself:

    torchrun --nproc-per-node 2 --max-restarts 3 -m training.train \\
        --pairs pairs.jsonl --output-dir runs/faq

The output directory gets ``model/`` (a sentence-transformers directory), ``metrics.json``,
``events.jsonl`` (what happened, for the bench) and ``checkpoints/``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from training import manifest
from training.checkpoint import Checkpointer, Fault, load_parts
from training.data import Pair, load_pairs, pairs_digest
from training.frequency import checkfreq_interval
from training.model import (
    base_model_path,
    encode,
    load_encoder,
    save_sentence_transformer,
    tokenize,
    weights_digest,
)
from training.sampler import DistributedBatchSampler

log = logging.getLogger("training")

PREEMPTED_EXIT = 128 + signal.SIGTERM
# Adaptive interval: skip these first steps (allocator and thread-pool warm-up), then time these.
WARMUP_STEPS = 3
TIMED_STEPS = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=Path, required=True, help="JSONL of anchor/positive objects")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--checkpoint-dir", type=Path, help="default: OUTPUT_DIR/checkpoints")
    p.add_argument("--base-model", type=Path, help="default: the bundled all-MiniLM-L6-v2")
    p.add_argument("--num-layers", type=int, help="keep only the first N layers (tests, smoke runs)")
    p.add_argument(
        "--freeze-embeddings", action="store_true", help="train the transformer layers only (smaller state)"
    )
    p.add_argument("--max-length", type=int, default=128, help="tokens per text")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per rank per step")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--scale", type=float, default=20.0, help="cosine-similarity temperature")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="default: EPOCHS passes over the pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, help="fixed interval in steps; default: chosen from costs")
    p.add_argument("--checkpoint-overhead", type=float, default=0.035, help="target, as a fraction")
    p.add_argument("--keep-checkpoints", type=int, default=3)
    p.add_argument("--no-checkpoints", action="store_true", help="neither save nor resume")
    p.add_argument("--eval-beir", type=Path, help="BEIR dir: record nDCG@10 before and after")
    p.add_argument("--eval-max-length", type=int, default=256)
    p.add_argument("--eval-max-docs", type=int, help="evaluate on the relevant docs plus a sample")
    p.add_argument("--log-every", type=int, default=10)
    return p.parse_args(argv)


@dataclass
class EventLog:
    """JSON lines any rank appends to (one write each): timings the bench and tests read."""

    path: Path
    rank: int
    restart: int = field(default_factory=lambda: int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)))

    def write(self, event: str, **values: Any) -> None:
        row = {"event": event, "t": time.time(), "rank": self.rank, "restart": self.restart}
        line = json.dumps(row | values) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def warmup_then_linear(warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def contrastive_loss(
    anchors: torch.Tensor, positives: torch.Tensor, texts: list[str], scale: float
) -> torch.Tensor:
    """In-batch negatives (MultipleNegativesRankingLoss): each anchor must pick its own positive.

    Another pair with the same anchor text is a second right answer, not a negative, so it is
    masked out rather than pushed away.
    """
    scores = anchors @ positives.T * scale
    same = torch.tensor([[a == b for b in texts] for a in texts], device=scores.device)
    same.fill_diagonal_(False)
    scores = scores.masked_fill(same, float("-inf"))
    return F.cross_entropy(scores, torch.arange(len(texts), device=scores.device))


def init_distributed() -> tuple[int, int, int, torch.device]:
    """Join torchrun's process group (a world of one when run as plain python)."""
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    # Keys of a crashed attempt can linger in torchrun's store and point the new ranks at dead
    # peers (pytorch/pytorch#167288); a prefix per attempt keeps each restart's mesh to itself.
    store, rank, world_size = next(dist.rendezvous("env://"))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"ragsite-train/attempt-{attempt}", store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
    return rank, world_size, local_rank, device


@dataclass
class Trainer:
    args: argparse.Namespace
    rank: int
    world_size: int
    device: torch.device
    events: EventLog

    def __post_init__(self) -> None:
        args = self.args
        self.base_dir = args.base_model or base_model_path()
        self.pairs: list[Pair] = load_pairs(args.pairs)
        self.data_sha256 = pairs_digest(self.pairs)
        self.tokenizer, self.model = load_encoder(self.base_dir, num_layers=args.num_layers)
        if args.freeze_embeddings:
            self.model.embeddings.requires_grad_(False)
        self.model.to(self.device).train()
        self.ddp = DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=args.lr,
            weight_decay=args.weight_decay,
        )
        self.sampler = DistributedBatchSampler(
            num_items=len(self.pairs),
            batch_size=args.batch_size,
            world_size=self.world_size,
            rank=self.rank,
            seed=args.seed,
        )
        self.max_steps = args.max_steps or args.epochs * self.sampler.batches_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_then_linear(args.warmup_steps, self.max_steps)
        )
        self.step = 0
        self.interval: int | None = args.checkpoint_every
        self.checkpoint_root = args.checkpoint_dir or args.output_dir / "checkpoints"
        self.checkpointer: Checkpointer | None = None
        if self.rank == 0 and not args.no_checkpoints:
            self.checkpointer = Checkpointer(
                root=self.checkpoint_root,
                keep=args.keep_checkpoints,
                fault=Fault.from_env(self.rank),
                on_kill=lambda step: self.events.write("killed", step=step, phase="write"),
            )
        self.fault = Fault.from_env(self.rank)
        self.stop_requested = False

    # -- state --------------------------------------------------------------------------------

    def trainer_state(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "rng": rng_states,
            "world_size": self.world_size,
            "data_sha256": self.data_sha256,
            "interval": self.interval,
        }

    def save_checkpoint(self) -> None:
        """Collective: every rank hands its RNG streams to rank 0, which snapshots and persists."""
        gathered: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(rng_state(), gathered, dst=0)
        if self.checkpointer is None or gathered is None:
            return
        parts = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "trainer": self.trainer_state(gathered),
        }
        stats = self.checkpointer.save(self.step, parts, meta={"world_size": self.world_size})
        self.events.write("snapshot", step=self.step, snapshot_s=stats.snapshot_s, stall_s=stats.stall_s)

    def resume(self) -> None:
        """Every rank loads the checkpoint rank 0 picked: the newest one that verifies."""
        if self.args.no_checkpoints:
            return
        picked: list[Any] = [None]
        if self.rank == 0:
            found = manifest.newest_valid(self.checkpoint_root)
            manifest.discard_newer_than(self.checkpoint_root, found.step if found else 0)
            picked = [(str(found.path), found.manifest) if found else None]
        dist.broadcast_object_list(picked, src=0)
        if picked[0] is None:
            log.info("no checkpoint in %s: starting at step 0", self.checkpoint_root)
            return
        path, sealed = picked[0]
        parts = load_parts(manifest.Checkpoint(step=sealed["step"], path=Path(path), manifest=sealed))
        state = parts["trainer"]
        if state["world_size"] != self.world_size:
            raise SystemExit(
                f"checkpoint {path} was taken with {state['world_size']} ranks, this run has "
                f"{self.world_size}: per-rank RNG streams cannot be replayed; use the same world size"
            )
        if state["data_sha256"] != self.data_sha256:
            raise SystemExit(f"checkpoint {path} was trained on different pairs than {self.args.pairs}")
        self.model.load_state_dict(parts["model"])
        self.optimizer.load_state_dict(parts["optimizer"])
        self.scheduler.load_state_dict(parts["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"][self.rank])
        self.step = state["step"]
        self.interval = self.interval or state["interval"]
        log.info("resumed from %s at step %d", Path(path).name, self.step)
        self.events.write("resumed", step=self.step, checkpoint=Path(path).name)

    # -- training -----------------------------------------------------------------------------

    def train_step(self) -> float:
        batch = [self.pairs[i] for i in self.sampler.next_batch()]
        anchors = [pair.anchor for pair in batch]
        texts = anchors + [pair.positive for pair in batch]
        features = tokenize(self.tokenizer, texts, max_length=self.args.max_length)
        embeddings = encode(self.ddp, {k: v.to(self.device) for k, v in features.items()})
        loss = contrastive_loss(embeddings[: len(batch)], embeddings[len(batch) :], anchors, self.args.scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach())

    def agree(self, *flags: bool) -> list[bool]:
        """Whether any rank raised each flag: one tiny all-reduce keeps every rank's choices equal."""
        tensor = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [bool(v) for v in tensor.tolist()]

    def agree_max(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def run(self) -> None:
        self.resume()
        checkpointing = not self.args.no_checkpoints
        started_step = self.step
        step_times: list[float] = []
        profiling: list[float] | None = None  # step times while the profiling persist runs
        profile_snapshot_s = 0.0
        last_saved = self.step
        loop_started = steady_started = time.perf_counter()
        while self.step < self.max_steps:
            began = time.perf_counter()
            if self.step - started_step == WARMUP_STEPS:
                steady_started = began  # throughput is measured past the warm-up steps
            loss = self.train_step()
            busy = self.checkpointer is not None and self.checkpointer.busy
            stop, busy = self.agree(self.stop_requested, busy)
            elapsed = time.perf_counter() - began
            step_times.append(elapsed)
            if self.step == started_step + 1:
                self.events.write("first_step", step=self.step)
            if self.fault is not None:
                self.fault.after_step(
                    self.step, lambda: self.events.write("killed", step=self.step, phase="train")
                )
            if self.rank == 0 and self.step % self.args.log_every == 0:
                log.info("step %d/%d loss %.4f (%.0f ms)", self.step, self.max_steps, loss, elapsed * 1e3)
            if stop:
                log.warning("preemption notice: checkpointing step %d before exit", self.step)
                if checkpointing and last_saved != self.step:
                    self.save_checkpoint()
                self.finish_writes()
                self.events.write("preempted", step=self.step)
                raise SystemExit(PREEMPTED_EXIT)
            if not checkpointing or self.step == self.max_steps:
                continue
            if self.interval is None:
                done = self.step - started_step
                if done == WARMUP_STEPS + TIMED_STEPS and profiling is None:
                    began = time.perf_counter()
                    self.save_checkpoint()
                    profile_snapshot_s = time.perf_counter() - began
                    last_saved, profiling = self.step, []
                elif profiling is not None and busy:
                    profiling.append(elapsed)
                elif profiling is not None:
                    profiling.append(elapsed)
                    self.interval = self.choose_interval(
                        step_times[WARMUP_STEPS : WARMUP_STEPS + TIMED_STEPS], profiling, profile_snapshot_s
                    )
            elif self.step - last_saved >= self.interval:
                self.save_checkpoint()
                last_saved = self.step
        steady_s = time.perf_counter() - steady_started
        if checkpointing and last_saved != self.step:
            self.save_checkpoint()
        self.finish_writes()
        loop_s = time.perf_counter() - loop_started
        self.events.write(
            "trained",
            steps=self.step - started_step,
            loop_s=loop_s,
            steady_steps=max(0, self.step - started_step - WARMUP_STEPS),
            steady_s=steady_s,
            step_times=step_times,
            interval=self.interval,
            checkpoints=[vars(s) for s in self.checkpointer.history] if self.checkpointer else [],
        )

    def choose_interval(self, quiet: list[float], during_persist: list[float], snapshot_s: float) -> int:
        """CheckFreq's rule, from this run's own timings; every rank agrees on the largest."""
        step_s = fmean(quiet)
        interference = sum(t - step_s for t in during_persist)
        persist_s = sum(during_persist)
        interval = checkfreq_interval(
            step_s=step_s,
            snapshot_s=snapshot_s,
            interference_s=interference,
            persist_s=persist_s,
            target=self.args.checkpoint_overhead,
        )
        interval = self.agree_max(interval)
        log.info(
            "checkpoint every %d steps (step %.0f ms, snapshot %.0f ms, persist %.0f ms, "
            "slowdown while persisting %.0f ms, target %.1f %%)",
            interval,
            step_s * 1e3,
            snapshot_s * 1e3,
            persist_s * 1e3,
            interference * 1e3,
            self.args.checkpoint_overhead * 100,
        )
        self.events.write(
            "interval",
            interval=interval,
            step_s=step_s,
            snapshot_s=snapshot_s,
            persist_s=persist_s,
            interference_s=interference,
        )
        return interval

    def finish_writes(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.wait()

    def write_outputs(self) -> None:
        """Rank 0: the model directory and metrics.json the registration step consumes."""
        args = self.args
        model_dir = args.output_dir / "model"
        save_sentence_transformer(self.model, self.tokenizer, base_dir=self.base_dir, out_dir=model_dir)
        metrics: dict[str, Any] = {
            "model_dir": "model",
            "base_model": str(self.base_dir),
            "num_layers": self.model.config.num_hidden_layers,
            "data": {"pairs": str(args.pairs), "count": len(self.pairs), "sha256": self.data_sha256},
            "train": {
                "steps": self.step,
                "epochs": self.step / self.sampler.batches_per_epoch,
                "world_size": self.world_size,
                "batch_size_per_rank": args.batch_size,
                "lr": args.lr,
                "max_length": args.max_length,
                "seed": args.seed,
            },
            "weights_sha256": weights_digest(self.model),
            "eval": None,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if args.eval_beir:
            from training.evaluate import evaluate_beir

            after = evaluate_beir(
                self.tokenizer,
                self.model,
                args.eval_beir,
                max_length=args.eval_max_length,
                max_docs=args.eval_max_docs,
            )
            base_tokenizer, base_model = load_encoder(self.base_dir, num_layers=args.num_layers)
            before = evaluate_beir(
                base_tokenizer,
                base_model.to(self.device),
                args.eval_beir,
                max_length=args.eval_max_length,
                max_docs=args.eval_max_docs,
            )
            metrics["eval"] = after | {"base_score": before["score"]}
            log.info("%s: %.4f before, %.4f after", after["metric"], before["score"], after["score"])
        (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        log.info("wrote %s and metrics.json", model_dir)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank, world_size, _, device = init_distributed()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed, rank)
    events = EventLog(args.output_dir / "events.jsonl", rank)
    events.write("start")
    trainer = Trainer(args=args, rank=rank, world_size=world_size, device=device, events=events)
    signal.signal(signal.SIGTERM, lambda *_: setattr(trainer, "stop_requested", True))
    try:
        trainer.run()
    finally:
        # A crash elsewhere still lets an in-flight checkpoint reach the disk (torchrun allows 30 s).
        if trainer.checkpointer is not None:
            trainer.checkpointer.drain()
    leave_process_group(trainer)
    if rank == 0:
        trainer.write_outputs()


def leave_process_group(trainer: Trainer) -> None:
    """End the process group on every rank together, while the interpreter is fully alive.

    DistributedDataParallel's reducer holds the process group, so `destroy_process_group` alone left
    gloo's connections and threads to be torn down at interpreter exit, one rank while its peer was
    still connected: that once ended a finished run in SIGABRT ("terminate called without an active
    exception", as pytorch/pytorch#179291 describes). So all ranks meet at a barrier first, the
    wrapper is dropped, and then the group is destroyed.
    """
    dist.barrier()
    del trainer.ddp
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
