"""llama-cpp-python on a GGUF file: the light CPU engine.

Its high-level API runs one sequence at a time, so one worker thread generates for one request while up
to `max_waiting` more wait their turn. Tokens travel from the thread to the asyncio side as they come;
closing or cancelling the iterator sets a flag the thread checks between tokens, so the slot frees promptly.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.backends import EngineOverloaded, PromptFormat, render_completion_prompt
from inference.backends.base import ChatMessage, GenerationDelta, SamplingParams


@dataclass
class _Job:
    request_id: str
    prompt_tokens: list[int]
    params: SamplingParams
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JobRecord:
    """What one finished job did; the engine keeps the latest few for metrics and tests."""

    request_id: str
    completion_tokens: int
    cancelled: bool


class _StopMatcher:
    """Holds back text that may be the start of a stop string, and cuts at the first full match."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = [s for s in stop if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stop) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _thread_nice(nice: int) -> None:
    """Lower the scheduling priority of this thread (and of the threads llama.cpp starts from it), not the
    process's: on a machine whose cores the web app, the database and the embedder share with the model,
    the embedding of a question (every asker waits for it) goes before the next token of an answer, and the
    model writes with the CPU they leave. Linux takes a thread id for PRIO_PROCESS."""
    if nice > 0:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + nice))


class LlamaCppEngine:
    """A ChatEngine over llama_cpp.Llama: one request generates at a time, `max_waiting` more queue."""

    def __init__(
        self,
        model_path: str,
        *,
        model_name: str | None = None,
        context_tokens: int = 4096,
        n_threads: int | None = None,
        nice: int = 0,
        max_waiting: int = 8,
        prompt_format: PromptFormat = "chat",
        **llama_kwargs: Any,
    ) -> None:
        self.model_path = model_path
        self.model_name = model_name or Path(model_path).stem
        self.context_tokens = context_tokens
        self.n_threads = n_threads or os.cpu_count() or 1
        if not 0 <= nice <= 19:
            raise ValueError(f"nice must be 0 to 19 (added to the process's), not {nice}")
        self.nice = nice
        self.prompt_format = prompt_format
        self.history: deque[JobRecord] = deque(maxlen=64)
        # Its high-level API generates one sequence at a time.
        self.max_num_seqs = 1
        self._max_jobs = self.max_num_seqs + max_waiting
        self._jobs = 0
        self._llama_kwargs = llama_kwargs
        self._llm: Any = None
        self._formatter: Any = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llamacpp", initializer=_thread_nice, initargs=(self.nice,)
        )
        self._llm = await asyncio.get_running_loop().run_in_executor(
            self._executor,
            lambda: Llama(
                model_path=self.model_path,
                n_ctx=self.context_tokens,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                verbose=False,
                **self._llama_kwargs,
            ),
        )
        template = self._llm.metadata.get("tokenizer.chat_template")
        if self.prompt_format == "chat" and template:
            vocab = self._llm
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.detokenize([vocab.token_eos()], special=True).decode(),
                bos_token=vocab.detokenize([vocab.token_bos()], special=True).decode(),
            )

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    def _render(self, messages: list[ChatMessage]) -> tuple[str, tuple[str, ...]]:
        """The prompt text, and the stop strings the format adds."""
        if self._formatter is None:
            return render_completion_prompt(messages), ("\nUser:",)
        rendered = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return rendered.prompt, tuple(stop)

    def generate(
        self, *, request_id: str, messages: list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        return self._generate(request_id, messages, params)

    async def _generate(
        self, request_id: str, messages: list[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        if self._jobs >= self._max_jobs:
            raise EngineOverloaded(f"{self._jobs} requests running or waiting")
        prompt, format_stop = self._render(messages)
        tokens = self._llm.tokenize(prompt.encode(), add_bos=True, special=True)
        room = self.context_tokens - len(tokens)
        if room <= 0:
            raise ValueError(f"prompt has {len(tokens)} tokens; the context holds {self.context_tokens}")
        params = SamplingParams(
            max_tokens=min(params.max_tokens, room),
            temperature=params.temperature,
            top_p=params.top_p,
            stop=params.stop + format_stop,
            seed=params.seed,
        )
        job = _Job(request_id, tokens, params)
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[GenerationDelta | BaseException] = asyncio.Queue()

        def emit(item: GenerationDelta | BaseException) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, item)

        def run() -> None:
            try:
                for delta in self._run_job(job):
                    emit(delta)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                emit(exc)

        assert self._executor is not None, "start() the engine first"
        self._jobs += 1
        self._executor.submit(run)
        try:
            while True:
                item = await deltas.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            # The place frees as the consumer leaves: the thread drops a cancelled job within a token.
            job.cancelled.set()
            self._jobs -= 1

    def _run_job(self, job: _Job) -> Iterator[GenerationDelta]:
        """Runs in the worker thread: yields deltas until a stop, the token limit or cancellation."""
        from llama_cpp import llama_vocab_is_eog

        llm, params = self._llm, job.params
        if job.cancelled.is_set():
            self.history.append(JobRecord(job.request_id, 0, True))
            return
        if params.seed is not None:
            llm.set_seed(params.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = _StopMatcher(params.stop)
        completion_tokens = 0
        finish_reason: str | None = None
        stopped = False
        generator = llm.generate(
            job.prompt_tokens,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=0,
            min_p=0.0,
            reset=True,
        )
        try:
            for token in generator:
                if job.cancelled.is_set():
                    break
                if llama_vocab_is_eog(llm._model.vocab, token):
                    finish_reason = "stop"
                    break
                completion_tokens += 1
                text, stopped = matcher.feed(decoder.decode(llm.detokenize([token])))
                if stopped:
                    finish_reason = "stop"
                    if text:
                        yield GenerationDelta(text=text)
                    break
                if text:
                    yield GenerationDelta(text=text)
                if completion_tokens >= params.max_tokens:
                    finish_reason = "length"
                    break
        finally:
            generator.close()
            self.history.append(JobRecord(job.request_id, completion_tokens, job.cancelled.is_set()))
        if finish_reason is None:
            return
        tail = "" if stopped else matcher.feed(decoder.decode(b"", final=True))[0] + matcher.flush()
        yield GenerationDelta(
            text=tail,
            finish_reason="stop" if finish_reason == "stop" else "length",
            prompt_tokens=len(job.prompt_tokens),
            completion_tokens=completion_tokens,
        )
