"""Save a deliberately damaged copy of a sentence-transformers model (run with .venv-inference's python).

`python tests/tuning/damage_model.py SRC OUT`: every weight gets seeded Gaussian noise twice its own
spread, so the copy still embeds (same files, same dimensions) but ranks much worse.
"""

from __future__ import annotations

import sys

import torch
from sentence_transformers import SentenceTransformer


def main(source: str, out: str) -> None:
    model = SentenceTransformer(source, device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() > 1:
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.add_(noise * 2 * parameter.std())
    model.save(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
