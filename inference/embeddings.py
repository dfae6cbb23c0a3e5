"""The sentence-transformers embedding model: loading and batch encoding (in the encoder process).

A padded batch makes every input as long as the longest: on a batch of questions and sentences of 8 to 40
words about a third of the work is padding. For BERT-family models with mean pooling (all-MiniLM-L6-v2
and the retrievers trained from it) `PackedBert` runs the same weights on the batch's tokens packed end to
end, as text-embeddings-inference does: the linear layers, which are nearly all the work, see only real
tokens, in one large matrix product per layer; only attention is computed per input (padded). Vectors
match sentence-transformers' own `encode` to about 1e-7. Other models use `encode`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer


class EmbeddingModel:
    """all-MiniLM-L6-v2 (or another sentence-transformers directory) on the CPU."""

    def __init__(self, path: str, *, model_id: str, packed: bool = True) -> None:
        self.model_id = model_id
        self._model = SentenceTransformer(path, device="cpu")
        self._model.eval()
        self.max_tokens: int = int(self._model.max_seq_length or 256)
        self.dimensions: int = int(self._model.get_embedding_dimension() or 0)
        self._packed = PackedBert.of(self._model) if packed else None

    @property
    def packed(self) -> bool:
        return self._packed is not None

    def encode(self, texts: list[str], *, pass_size: int | None = None) -> np.ndarray:
        """Normalised float32 vectors for `texts`; inputs past max_tokens are cut.

        Packed models encode the whole batch in one pass. Otherwise one forward pass, or passes of
        `pass_size` inputs of similar length (less padding).
        """
        with torch.inference_mode():
            if self._packed is not None:
                return self._packed.encode(texts)
            vectors = self._model.encode(
                texts,
                batch_size=pass_size or len(texts),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


class PackedBert:
    """A BERT encoder on packed tokens, mean-pooled and normalised (all-MiniLM-L6-v2's three modules)."""

    def __init__(self, model: SentenceTransformer, bert: Any) -> None:
        self._model = model
        self._bert = bert
        self._heads = int(bert.config.num_attention_heads)
        self._hidden = int(bert.config.hidden_size)

    @classmethod
    def of(cls, model: SentenceTransformer) -> PackedBert | None:
        """The packed runner for `model`, or None when its modules or architecture are not the ones known."""
        modules = list(model)
        if [type(module).__name__ for module in modules] != ["Transformer", "Pooling", "Normalize"]:
            return None
        if getattr(modules[1], "pooling_mode", None) != "mean" or not hasattr(model, "preprocess"):
            return None
        # Prompts prepended to inputs, and truncated output dimensions, are applied by encode() alone.
        prompts = getattr(model, "prompts", None) or {}
        if any(prompts.values()) or getattr(model, "truncate_dim", None):
            return None
        bert = getattr(modules[0], "auto_model", None)
        config = getattr(bert, "config", None)
        if (
            bert is None
            or config is None
            or getattr(config, "model_type", None) != "bert"
            or getattr(config, "position_embedding_type", "absolute") != "absolute"
            or getattr(config, "hidden_act", None) not in ("gelu", "gelu_new", "relu")
            or config.hidden_size % config.num_attention_heads
            or any(parameter.dtype != torch.float32 for parameter in bert.parameters())
        ):
            return None
        return cls(model, bert)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._hidden), dtype=np.float32)
        # sentence-transformers' own tokenisation (casing, truncation to max_seq_length), padded.
        features = self._model.preprocess(texts)
        mask = features["attention_mask"].bool()
        lengths = mask.sum(dim=1)
        batch, longest = mask.shape
        input_ids = features["input_ids"][mask]
        token_types = features.get("token_type_ids")
        token_types = token_types[mask] if token_types is not None else torch.zeros_like(input_ids)
        positions = torch.arange(longest).expand(batch, longest)[mask]
        owner = torch.repeat_interleave(torch.arange(batch), lengths)

        bert = self._bert
        embeddings = bert.embeddings
        hidden = embeddings.LayerNorm(
            embeddings.word_embeddings(input_ids)
            + embeddings.position_embeddings(positions)
            + embeddings.token_type_embeddings(token_types)
        )
        heads, width = self._heads, self._hidden // self._heads
        # Additive mask over keys: padding positions of an input get -inf, so they receive no attention.
        key_mask = torch.zeros(batch, 1, 1, longest).masked_fill(~mask[:, None, None, :], float("-inf"))

        def padded(packed: torch.Tensor) -> torch.Tensor:
            out = packed.new_zeros(batch, longest, self._hidden)
            out[mask] = packed
            return out.view(batch, longest, heads, width).transpose(1, 2)

        for layer in bert.encoder.layer:
            attention = layer.attention
            context = torch.nn.functional.scaled_dot_product_attention(
                padded(attention.self.query(hidden)),
                padded(attention.self.key(hidden)),
                padded(attention.self.value(hidden)),
                attn_mask=key_mask,
            )
            context = context.transpose(1, 2).reshape(batch, longest, self._hidden)[mask]
            hidden = attention.output.LayerNorm(attention.output.dense(context) + hidden)
            intermediate = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(hidden))
            hidden = layer.output.LayerNorm(layer.output.dense(intermediate) + hidden)

        pooled = torch.zeros(batch, self._hidden).index_add_(0, owner, hidden) / lengths[:, None]
        return torch.nn.functional.normalize(pooled, dim=1).numpy().astype(np.float32, copy=False)
