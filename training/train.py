"""Fine-tune the sentence encoder on (anchor, positive) pairs with in-batch negatives.

Run under torchrun, one process per device; it resumes from the newest valid checkpoint by itself:

    torchrun --nproc-per-node 2 --max-restarts 3 -m training.train \\
        --pairs pairs.jsonl --output-dir runs/faq

The output directory gets ``model/`` (a sentence-transformers directory), ``metrics.json``,
``events.jsonl`` (what happened, for the bench) and ``checkpoints/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from training import manifest
from training.checkpoint import Checkpointer, Fault, load_checkpoint
from training.data import Pair, load_pairs, pairs_digest
from training.frequency import checkfreq_interval
from training.gradients import flat_gradient, micro_batch_seed, set_flat_gradient, sum_in_micro_batch_order
from training.model import (
    base_model_path,
    encode,
    load_encoder,
    save_sentence_transformer,
    tokenize,
    weights_digest,
)
from training.runtime import (
    EventLog,
    Process,
    init_distributed,
    leave_process_group,
    start_watchdog,
    warn_if_store_is_shared,
)
from training.sampler import GlobalBatchSampler, micro_batch_share
from training.samples import record_step
from training.watchdog import Watchdog

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
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="pairs per micro-batch: each pair's in-batch negatives are the other pairs of its micro-batch",
    )
    p.add_argument(
        "--global-batch-size",
        type=int,
        help="pairs per optimiser step, at any world size (default: batch size x world size of the "
        "first attempt; a resumed run keeps its checkpoint's)",
    )
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
    p.add_argument(
        "--hang-timeout",
        type=float,
        default=300.0,
        help="seconds without a heartbeat from a rank, or without a step, before the attempt is aborted",
    )
    p.add_argument("--collective-timeout", type=float, default=600.0, help="seconds any collective may wait")
    p.add_argument(
        "--record-samples", action="store_true", help="log each step's pair indices to samples.jsonl"
    )
    p.add_argument("--eval-beir", type=Path, help="BEIR dir: record nDCG@10 before and after")
    p.add_argument("--eval-max-length", type=int, default=256)
    p.add_argument("--eval-max-docs", type=int, help="evaluate on the relevant docs plus a sample")
    p.add_argument("--log-every", type=int, default=10)
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    """The same seed on every rank: nothing the loss depends on may come from a rank's own stream."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


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


@dataclass
class Trainer:
    args: argparse.Namespace
    process: Process
    events: EventLog
    watchdog: Watchdog
    preemption: threading.Event  # set by SIGTERM, from the start of the process

    def __post_init__(self) -> None:
        args = self.args
        self.rank, self.world_size, self.device = (
            self.process.rank,
            self.process.world_size,
            self.process.device,
        )
        self.base_dir = args.base_model or base_model_path()
        self.pairs: list[Pair] = load_pairs(args.pairs)
        self.data_sha256 = pairs_digest(self.pairs)
        self.tokenizer, self.model = load_encoder(self.base_dir, num_layers=args.num_layers)
        if args.freeze_embeddings:
            self.model.embeddings.requires_grad_(False)
        self.model.to(self.device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.numel = sum(p.numel() for p in self.params)
        self.optimizer = torch.optim.AdamW(self.params, lr=args.lr, weight_decay=args.weight_decay)
        self.checkpoint_root = args.checkpoint_dir or args.output_dir / "checkpoints"
        self.found = None if args.no_checkpoints else self.pick_checkpoint()
        self.sampler = GlobalBatchSampler(
            num_items=len(self.pairs),
            global_batch_size=self.choose_global_batch_size(),
            micro_batch_size=args.batch_size,
            seed=args.seed,
        )
        self.share = micro_batch_share(self.sampler.micro_batches_per_step, self.rank, self.world_size)
        self.max_steps = args.max_steps or args.epochs * self.sampler.batches_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_then_linear(args.warmup_steps, self.max_steps)
        )
        self.step = 0
        self.interval: int | None = args.checkpoint_every
        self.checkpointer: Checkpointer | None = None
        if not args.no_checkpoints:
            self.checkpointer = Checkpointer(
                root=self.checkpoint_root,
                keep=args.keep_checkpoints,
                rank=self.rank,
                group=dist.new_group(backend="gloo", timeout=timedelta(seconds=args.collective_timeout)),
                fault=Fault.from_env(self.rank),
                on_kill=lambda step: self.events.write("killed", step=step, phase="write"),
                on_sealed=lambda stats: self.events.write(
                    "sealed", step=stats.step, bytes=stats.bytes, persist_s=stats.persist_s
                ),
            )
        self.fault = Fault.from_env(self.rank)

    # -- state --------------------------------------------------------------------------------

    def pick_checkpoint(self) -> manifest.Checkpoint | None:
        """Collective: rank 0 picks the newest checkpoint that verifies, every rank learns which."""
        picked: list[Any] = [None]
        if self.rank == 0:
            found = manifest.newest_valid(self.checkpoint_root)
            manifest.discard_newer_than(self.checkpoint_root, found.step if found else 0)
            picked = [found]
        dist.broadcast_object_list(picked, src=0)
        return picked[0]

    def choose_global_batch_size(self) -> int:
        """The checkpoint's global batch, else --global-batch-size, else batch size x world size."""
        args = self.args
        if self.found is None:
            return int(args.global_batch_size or args.batch_size * self.world_size)
        saved = int(self.found.manifest["meta"]["sampler"]["global_batch_size"])
        if args.global_batch_size not in (None, saved):
            raise SystemExit(
                f"{self.found.path} was trained with a global batch of {saved}, this run asks for "
                f"{args.global_batch_size}: the steps would not be the same; resume without it"
            )
        return saved

    def state_dict(self) -> dict[str, Any]:
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        return {"model": model_state, "optimizer": optimizer_state, "scheduler": self.scheduler.state_dict()}

    def save_checkpoint(self) -> None:
        """Collective: every rank stages the state and writes its share in the background."""
        if self.checkpointer is None:
            return
        meta = {
            "step": self.step,
            "world_size": self.world_size,
            "samples_consumed": self.sampler.samples_consumed,
            "sampler": self.sampler.state_dict(),
            "data_sha256": self.data_sha256,
            "interval": self.interval,
            "attempt": self.process.attempt,
        }
        stats = self.checkpointer.save(self.step, self.state_dict(), meta=meta)
        self.watchdog.progress()
        self.events.write("snapshot", step=self.step, snapshot_s=stats.snapshot_s, stall_s=stats.stall_s)

    def resume(self) -> None:
        """Every rank loads the checkpoint rank 0 picked, whatever world size wrote it."""
        found = self.found
        if found is None:
            if not self.args.no_checkpoints:
                log.info("no checkpoint in %s: starting at step 0", self.checkpoint_root)
            return
        meta = found.manifest["meta"]
        if meta["data_sha256"] != self.data_sha256:
            raise SystemExit(f"checkpoint {found.path} was trained on different pairs than {self.args.pairs}")
        self.sampler.load_state_dict(meta["sampler"])
        if self.sampler.samples_consumed != meta["step"] * self.sampler.global_batch_size:
            raise SystemExit(f"checkpoint {found.path}: step and samples consumed disagree")
        state = self.state_dict()
        load_checkpoint(found, state)
        set_state_dict(
            self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
        )
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = meta["step"]
        self.interval = self.interval or meta["interval"]
        log.info(
            "resumed from %s at step %d (%d samples consumed; written by %d ranks, now %d)",
            found.path.name,
            self.step,
            self.sampler.samples_consumed,
            meta["world_size"],
            self.world_size,
        )
        self.events.write(
            "resumed",
            step=self.step,
            checkpoint=found.path.name,
            samples_consumed=self.sampler.samples_consumed,
            checkpoint_world_size=meta["world_size"],
        )

    # -- training -----------------------------------------------------------------------------

    def micro_batch_vector(self, indices: list[int], seed: int) -> torch.Tensor:
        """This micro-batch's gradient (trainable parameters, flattened) with its loss appended."""
        batch = [self.pairs[i] for i in indices]
        anchors = [pair.anchor for pair in batch]
        features = tokenize(
            self.tokenizer, anchors + [pair.positive for pair in batch], max_length=self.args.max_length
        )
        for p in self.params:
            p.grad = None
        torch.manual_seed(seed)  # dropout: from (seed, step, sample), never from a rank's stream
        embeddings = encode(self.model, {k: v.to(self.device) for k, v in features.items()})
        loss = contrastive_loss(embeddings[: len(batch)], embeddings[len(batch) :], anchors, self.args.scale)
        loss.backward()
        return torch.cat([flat_gradient(self.params), loss.detach().reshape(1)])

    def train_step(self) -> float:
        micro_batches = self.sampler.next_global_batch()
        first_sample = self.sampler.samples_consumed - self.sampler.global_batch_size
        size = self.sampler.micro_batch_size
        local = [
            self.micro_batch_vector(
                micro_batches[j], micro_batch_seed(self.args.seed, self.step, first_sample + j * size)
            )
            for j in self.share
        ]
        if self.fault is not None:
            self.fault.mid_step(self.step, lambda: self.events.write("stopped", step=self.step))
        total = sum_in_micro_batch_order(
            local, numel=self.numel + 1, rank=self.rank, world_size=self.world_size, device=self.device
        )
        total /= len(micro_batches)  # the step's loss is the mean of its micro-batches' losses
        set_flat_gradient(self.params, total[:-1])
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.args.record_samples:
            record_step(
                self.args.output_dir / "samples.jsonl",
                attempt=self.process.attempt,
                step=self.step,
                rank=self.rank,
                world_size=self.world_size,
                micro_batches={j: micro_batches[j] for j in self.share},
            )
        return float(total[-1])

    def agree(self, *flags: bool) -> list[bool]:
        """Whether any rank raised each flag: one tiny all-reduce keeps every rank's choices equal."""
        tensor = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [bool(v) for v in tensor.tolist()]

    def agree_max(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def announce(self) -> None:
        """Say in the log and events.jsonl what size this attempt runs at."""
        sampler = self.sampler
        if self.rank == 0:
            log.info(
                "attempt %s (torchrun restart %d): %d ranks; global batch %d = %d micro-batches of %d",
                self.process.attempt,
                self.events.restart,
                self.world_size,
                sampler.global_batch_size,
                sampler.micro_batches_per_step,
                sampler.micro_batch_size,
            )
        log.info("this rank computes micro-batches %s of each step", list(self.share))
        self.events.write(
            "attempt",
            global_batch_size=sampler.global_batch_size,
            micro_batch_size=sampler.micro_batch_size,
            micro_batches=list(self.share),
        )

    def run(self) -> None:
        self.resume()
        self.announce()
        checkpointing = self.checkpointer is not None
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
            stop, busy = self.agree(self.preemption.is_set(), busy)
            elapsed = time.perf_counter() - began
            step_times.append(elapsed)
            if self.step == started_step + 1:
                self.events.write("first_step", step=self.step)
                self.watchdog.arm()
            self.watchdog.progress()
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
                self.watchdog.close()
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
        self.watchdog.disarm()
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
            self.watchdog.progress()

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
                "global_batch_size": self.sampler.global_batch_size,
                "micro_batch_size": self.sampler.micro_batch_size,
                "samples_consumed": self.sampler.samples_consumed,
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
    # From the first moment: a notice that comes while the model loads is honoured at step one.
    preemption = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: preemption.set())
    process = init_distributed(timeout_s=args.collective_timeout)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [rank {process.rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    events = EventLog(args.output_dir / "events.jsonl", process.rank, process.attempt, process.world_size)
    events.write("start")
    if process.rank == 0:
        warn_if_store_is_shared()
    watchdog = start_watchdog(process, timeout_s=args.hang_timeout, events=events)
    trainer = Trainer(args=args, process=process, events=events, watchdog=watchdog, preemption=preemption)
    try:
        trainer.run()
    finally:
        # A crash elsewhere still lets an in-flight checkpoint reach the disk (torchrun allows 30 s).
        if trainer.checkpointer is not None:
            trainer.checkpointer.drain()
    watchdog.close()
    leave_process_group()
    if process.rank == 0:
        trainer.write_outputs()


if __name__ == "__main__":
    main()
