"""The chat engines behind the inference API, chosen by name.

    engine = create_engine(engine, model_path, **opts)   # in the lifespan
    if engine is not None:
        await engine.start()
        ...
        await engine.stop()

`engine` is "llamacpp", "vllm" or "none" (no chat model: returns None, the chat endpoints answer 503).
The service reads them from `INFERENCE_CHAT_ENGINE` (default "llamacpp") and `INFERENCE_CHAT_MODEL`; an
empty `model_path` means the engine's packaged default (see `default_model_path`). `create_engine_from_env`
does exactly that, plus the optional `INFERENCE_CHAT_*` settings below.

Options (keyword arguments; the environment variable `create_engine_from_env` reads is in brackets):
  model_name        name reported to clients; default the file or folder name   [INFERENCE_CHAT_MODEL_NAME]
  context_tokens    context window in tokens; default 4096                      [INFERENCE_CHAT_CONTEXT]
  max_waiting       requests queued beyond those running; more raise EngineOverloaded
                                                                                [INFERENCE_CHAT_MAX_WAITING]
  prompt_format     "chat" (the model's chat template) or "completion" (plain prompt, for base models);
                    default: what the packaged model needs, else "chat"         [INFERENCE_CHAT_PROMPT_FORMAT]
  n_threads         llamacpp: CPU threads; default all cores                    [INFERENCE_CHAT_THREADS]
  nice              llamacpp: the generating threads' niceness, 0 (default) to 19: the embedder, the web app
                    and the database go first where they share the cores       [INFERENCE_CHAT_NICE]
  max_num_seqs      vllm: sequences batched at once; default 8 on CPU, vLLM's own on GPU
                                                                                [INFERENCE_CHAT_MAX_SEQS]
  tensor_parallel_size, gpu_memory_utilization, enforce_eager, load_format, stream_interval, dtype, ...:
                    vllm (AsyncEngineArgs)    [INFERENCE_VLLM_TP, INFERENCE_VLLM_GPU_MEMORY,
                    INFERENCE_VLLM_ENFORCE_EAGER, INFERENCE_VLLM_LOAD_FORMAT, INFERENCE_VLLM_STREAM_INTERVAL]

An engine may say how many sequences it generates at once as `max_num_seqs` (known once started); the
service sizes its chat admission from it (`inference.config.Settings.chat_admission`).

Errors a caller maps to HTTP answers, both raised by the first `__anext__` of `generate`, before any work:
EngineOverloaded (429 with Retry-After) and ValueError for a prompt longer than the context (400).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

from inference.backends.base import ChatEngine, ChatMessage

ENGINES = ("llamacpp", "vllm", "none")
PromptFormat = Literal["chat", "completion"]


class EngineOverloaded(RuntimeError):
    """The engine's bounded queue is full: answer 429 at once."""


def render_completion_prompt(messages: list[ChatMessage]) -> str:
    """Messages as a plain prompt, for base models (which in chat form only repeat the prompt)."""
    speaker = {"user": "User: ", "assistant": "Assistant: ", "system": ""}
    turns = [speaker[m.role] + m.content.strip() for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def default_model_path(engine: str) -> str:
    """The packaged model an engine runs when INFERENCE_CHAT_MODEL is empty."""
    from inference import models

    if engine == "vllm":
        return str(models.converted_path(models.DEFAULT_CPU_MODEL))
    return str(models.model_path(models.DEFAULT_CPU_MODEL))


def create_engine(engine: str, model_path: str = "", **opts: Any) -> ChatEngine | None:
    """A not yet started chat engine of kind `engine` on `model_path`; None for "none"."""
    if engine not in ENGINES:
        raise ValueError(f"INFERENCE_CHAT_ENGINE={engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "none":
        return None
    from inference import models

    model_path = model_path or default_model_path(engine)
    if opts.get("prompt_format") is None:
        opts["prompt_format"] = models.prompt_format_for(model_path) or "chat"
    if engine == "llamacpp":
        from inference.backends.llamacpp import LlamaCppEngine

        return LlamaCppEngine(model_path, **opts)
    from inference.backends.vllm_engine import VllmEngine

    return VllmEngine(model_path, **opts)


def parse_flag(raw: str) -> bool:
    """A boolean setting: 1, true, yes, on or 0, false, no, off."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected 1 or 0 (true or false)")


# variable: (option, cast, the engines that take it)
_ENV_OPTIONS: dict[str, tuple[str, Callable[[str], Any], tuple[str, ...]]] = {
    "INFERENCE_CHAT_MODEL_NAME": ("model_name", str, ("llamacpp", "vllm")),
    "INFERENCE_CHAT_CONTEXT": ("context_tokens", int, ("llamacpp", "vllm")),
    "INFERENCE_CHAT_MAX_WAITING": ("max_waiting", int, ("llamacpp", "vllm")),
    "INFERENCE_CHAT_PROMPT_FORMAT": ("prompt_format", str, ("llamacpp", "vllm")),
    "INFERENCE_CHAT_THREADS": ("n_threads", int, ("llamacpp",)),
    "INFERENCE_CHAT_NICE": ("nice", int, ("llamacpp",)),
    "INFERENCE_CHAT_MAX_SEQS": ("max_num_seqs", int, ("vllm",)),
    "INFERENCE_VLLM_TP": ("tensor_parallel_size", int, ("vllm",)),
    "INFERENCE_VLLM_GPU_MEMORY": ("gpu_memory_utilization", float, ("vllm",)),
    "INFERENCE_VLLM_ENFORCE_EAGER": ("enforce_eager", parse_flag, ("vllm",)),
    "INFERENCE_VLLM_LOAD_FORMAT": ("load_format", str, ("vllm",)),
    "INFERENCE_VLLM_STREAM_INTERVAL": ("stream_interval", int, ("vllm",)),
}


def create_engine_from_env(environ: Mapping[str, str] = os.environ) -> ChatEngine | None:
    """create_engine configured by INFERENCE_CHAT_ENGINE, INFERENCE_CHAT_MODEL and INFERENCE_CHAT_*."""
    engine = environ.get("INFERENCE_CHAT_ENGINE", "llamacpp") or "llamacpp"
    opts: dict[str, Any] = {}
    for var, (option, cast, engines) in _ENV_OPTIONS.items():
        raw = environ.get(var, "").strip()
        if raw and engine in engines:
            try:
                opts[option] = cast(raw)
            except ValueError as exc:
                raise ValueError(f"{var}={raw!r}: {exc}") from None
    return create_engine(engine, environ.get("INFERENCE_CHAT_MODEL", ""), **opts)
