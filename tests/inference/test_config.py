"""Settings come from INFERENCE_* variables, cast once, and bad values stop the service early."""

from __future__ import annotations

import pytest

from inference.config import ConfigError, Settings


@pytest.fixture(autouse=True)
def model_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The web venv lacks the model package; any directory name will do for reading settings.
    monkeypatch.setenv("INFERENCE_EMBEDDING_MODEL_PATH", "/models/minilm")


def test_settings_are_read_from_the_environment_with_casts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_EMBEDDING_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("INFERENCE_EMBEDDING_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("INFERENCE_CHAT_ENGINE", "NONE")
    settings = Settings.from_env()
    assert settings.embedding_max_batch_size == 16
    assert settings.embedding_max_wait_ms == 2.5
    assert settings.chat_engine == "none"
    assert settings.host == "127.0.0.1"
    assert settings.embedding_model_path == "/models/minilm"
    assert settings.torch_threads == 1
    assert settings.embedding_packed is True
    assert settings.encoder_stall_timeout_s == 120.0
    monkeypatch.setenv("INFERENCE_ENCODER_STALL_TIMEOUT_S", "2.5")
    assert Settings.from_env().encoder_stall_timeout_s == 2.5
    monkeypatch.setenv("INFERENCE_EMBEDDING_PACKED", "off")
    assert Settings.from_env().embedding_packed is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INFERENCE_EMBEDDING_MAX_QUEUE", "many"),
        ("INFERENCE_EMBEDDING_MAX_BATCH_SIZE", "0"),
        ("INFERENCE_REQUEST_TIMEOUT_S", "-1"),
        ("INFERENCE_ENCODER_STALL_TIMEOUT_S", "0"),
        ("INFERENCE_CHAT_ENGINE", "gpt"),
        ("INFERENCE_EMBEDDING_PACKED", "maybe"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        Settings.from_env()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "inference.internal"])
def test_a_non_loopback_address_needs_api_keys(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("INFERENCE_HOST", host)
    monkeypatch.delenv("INFERENCE_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="INFERENCE_API_KEYS"):
        Settings.from_env()
    monkeypatch.setenv("INFERENCE_API_KEYS", " key-one , ,key-two ")
    assert Settings.from_env().api_keys == ("key-one", "key-two")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_address_needs_no_api_keys(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("INFERENCE_HOST", host)
    monkeypatch.delenv("INFERENCE_API_KEYS", raising=False)
    assert Settings.from_env().api_keys == ()
