"""Chat admission is sized from the engine's own batch, unless INFERENCE_CHAT_MAX_ACTIVE or _QUEUE is set."""

from __future__ import annotations

from typing import Any

import pytest

from inference.backends import create_engine_from_env
from inference.config import DEFAULT_CHAT_MAX_ACTIVE, MIN_CHAT_QUEUE, ConfigError, Settings


def engine_from(**env: str) -> Any:
    """An engine configured as the service configures it; not started, so vLLM is not imported."""
    return create_engine_from_env({"INFERENCE_CHAT_MODEL": "/models/chat", **env})


def admission(engine: Any, *, max_active: int | None = None, max_queue: int | None = None) -> tuple[int, int]:
    settings = Settings(
        embedding_model_path="/models/minilm", chat_max_active=max_active, chat_max_queue=max_queue
    )
    return settings.chat_admission(getattr(engine, "max_num_seqs", None))


@pytest.mark.parametrize(
    ("max_num_seqs", "expected"), [(256, (256, 256)), (64, (64, 64)), (8, (8, MIN_CHAT_QUEUE))]
)
def test_with_vllm_the_derived_limits_follow_max_num_seqs(
    max_num_seqs: int, expected: tuple[int, int]
) -> None:
    """As many run as vLLM batches (INFERENCE_CHAT_MAX_SEQS); one more batch waits, at least 16."""
    engine = engine_from(INFERENCE_CHAT_ENGINE="vllm", INFERENCE_CHAT_MAX_SEQS=str(max_num_seqs))
    assert engine.max_num_seqs == max_num_seqs
    assert admission(engine) == expected


def test_llamacpp_runs_one_at_a_time_and_queues_the_minimum() -> None:
    assert admission(engine_from(INFERENCE_CHAT_ENGINE="llamacpp")) == (1, MIN_CHAT_QUEUE)


def test_explicit_settings_win_over_the_engine() -> None:
    engine = engine_from(INFERENCE_CHAT_ENGINE="vllm", INFERENCE_CHAT_MAX_SEQS="256")
    assert admission(engine, max_active=32) == (32, 32)
    assert admission(engine, max_queue=0) == (256, 0)
    assert admission(engine, max_active=2, max_queue=3) == (2, 3)


def test_an_engine_that_does_not_say_its_batch_gets_the_old_defaults() -> None:
    """vLLM on GPU before it has started (it picks its own default), or an engine without max_num_seqs."""
    engine = engine_from(INFERENCE_CHAT_ENGINE="vllm")
    assert engine.max_num_seqs is None
    assert admission(engine) == (DEFAULT_CHAT_MAX_ACTIVE, MIN_CHAT_QUEUE)
    assert admission(None) == (DEFAULT_CHAT_MAX_ACTIVE, MIN_CHAT_QUEUE)


def test_unset_admission_settings_are_derived_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_EMBEDDING_MODEL_PATH", "/models/minilm")
    monkeypatch.delenv("INFERENCE_CHAT_MAX_ACTIVE", raising=False)
    monkeypatch.setenv("INFERENCE_CHAT_MAX_QUEUE", " ")
    settings = Settings.from_env()
    assert (settings.chat_max_active, settings.chat_max_queue) == (None, None)
    monkeypatch.setenv("INFERENCE_CHAT_MAX_ACTIVE", "64")
    monkeypatch.setenv("INFERENCE_CHAT_MAX_QUEUE", "0")
    settings = Settings.from_env()
    assert (settings.chat_max_active, settings.chat_max_queue) == (64, 0)
    monkeypatch.setenv("INFERENCE_CHAT_MAX_ACTIVE", "0")
    with pytest.raises(ConfigError, match="INFERENCE_CHAT_MAX_ACTIVE"):
        Settings.from_env()
