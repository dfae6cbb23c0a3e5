"""The INFERENCE_VLLM_* and INFERENCE_CHAT_* settings reach vLLM's AsyncEngineArgs (built in .venv-vllm)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from inference.backends import create_engine_from_env
from tests.processes import ROOT

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# vLLM checks that the model exists (a folder, or a hub id).
TINY_LLAMA = ROOT / ".data" / "models" / "tiny-llama"
# Prints the AsyncEngineArgs that create_engine_from_env(settings) leads to; then, with extra keyword
# arguments declared optional, the engine args of create_engine(**extra) and what the engine logged.
SCRIPT = """
import json, logging, sys
from inference.backends import create_engine, create_engine_from_env, vllm_engine
settings, extra, model = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("LOGGED %(message)s"))
logging.getLogger("inference").addHandler(handler)
FIELDS = ["model", "max_model_len", "max_num_seqs", "enforce_eager", "load_format", "stream_interval",
          "tensor_parallel_size", "gpu_memory_utilization"]
def described(engine):
    args = engine.engine_args()
    return {name: getattr(args, name) for name in FIELDS + list(extra) if hasattr(args, name)}
env = {"INFERENCE_CHAT_ENGINE": "vllm", "INFERENCE_CHAT_MODEL": model, **settings}
print("ENGINE_ARGS " + json.dumps(described(create_engine_from_env(env))), flush=True)
vllm_engine.OPTIONAL_ENGINE_ARGS += tuple(extra)
print("WITH_EXTRA " + json.dumps(described(create_engine("vllm", model, **extra))), flush=True)
"""


def run_script(settings: dict[str, str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The script's lines by their first word; LOGGED ones as a list of messages."""
    for need in (VLLM_PYTHON, TINY_LLAMA):
        if not need.exists():
            pytest.fail(f"{need} is missing: `make test` installs it (mk/engines.mk)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-c", SCRIPT, json.dumps(settings), json.dumps(extra or {}), str(TINY_LLAMA)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = {"LOGGED": []}
    for line in proc.stdout.splitlines():
        head, _, rest = line.partition(" ")
        if head == "LOGGED":
            result["LOGGED"].append(rest)
        elif head in ("ENGINE_ARGS", "WITH_EXTRA"):
            result[head] = json.loads(rest)
    return result


@pytest.mark.slow
def test_settings_reach_the_engine_args_and_unsupported_ones_are_left_out() -> None:
    """Each setting lands on its AsyncEngineArgs field; an optional one this vLLM lacks is dropped, logged."""
    result = run_script(
        {
            "INFERENCE_CHAT_MAX_SEQS": "256",
            "INFERENCE_CHAT_CONTEXT": "8192",
            "INFERENCE_VLLM_ENFORCE_EAGER": "false",
            "INFERENCE_VLLM_LOAD_FORMAT": "safetensors",
            "INFERENCE_VLLM_STREAM_INTERVAL": "4",
            "INFERENCE_VLLM_TP": "2",
            "INFERENCE_VLLM_GPU_MEMORY": "0.85",
        },
        extra={"no_such_engine_arg": 1, "stream_interval": 2},
    )
    assert result["ENGINE_ARGS"] == {
        "model": str(TINY_LLAMA),
        "max_model_len": 8192,
        "max_num_seqs": 256,
        "enforce_eager": False,
        "load_format": "safetensors",
        "stream_interval": 4,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.85,
    }
    assert result["WITH_EXTRA"]["stream_interval"] == 2
    assert "no_such_engine_arg" not in result["WITH_EXTRA"]
    [logged] = result["LOGGED"]
    assert logged.startswith("vLLM ") and logged.endswith(
        " has no engine argument no_such_engine_arg: ignored"
    )


@pytest.mark.slow
def test_on_cpu_unset_settings_take_the_cpu_defaults() -> None:
    """No graph capture, 8 sequences, 0.3 of RAM; the load format and stream interval are vLLM's own."""
    args = run_script({})["ENGINE_ARGS"]
    assert (args["enforce_eager"], args["max_num_seqs"], args["gpu_memory_utilization"]) == (True, 8, 0.3)
    assert (args["load_format"], args["stream_interval"]) == ("auto", 1)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("INFERENCE_VLLM_ENFORCE_EAGER", "maybe"), ("INFERENCE_VLLM_STREAM_INTERVAL", "often")],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        create_engine_from_env(
            {"INFERENCE_CHAT_ENGINE": "vllm", "INFERENCE_CHAT_MODEL": "/m", variable: value}
        )
