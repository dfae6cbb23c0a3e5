"""The sentence-transformers embedding model: loading and batch encoding (in the encoder process)."""

from __future__ import annotations

import numpy as np
import torch
from sentence_transformers import SentenceTransformer


class EmbeddingModel:
    """all-MiniLM-L6-v2 (or another sentence-transformers directory) on the CPU."""

    def __init__(self, path: str, *, model_id: str) -> None:
        self.model_id = model_id
        self._model = SentenceTransformer(path, device="cpu")
        self._model.eval()
        self.max_tokens: int = int(self._model.max_seq_length or 256)
        self.dimensions: int = int(self._model.get_embedding_dimension() or 0)

    def encode(self, texts: list[str], *, pass_size: int | None = None) -> np.ndarray:
        """Normalised float32 vectors for `texts`; inputs past max_tokens are cut.

        One forward pass, or passes of `pass_size` inputs of similar length (less padding).
        """
        with torch.inference_mode():
            vectors = self._model.encode(
                texts,
                batch_size=pass_size or len(texts),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
