"""Our token counts are the inference API's: a chunk at the limit is accepted, one token more is refused."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.tokens import MODEL_MAX_TOKENS, count_tokens
from ops.inference import InferenceError, embed
from tests.processes import InferenceProcess


def _text_of(tokens: int) -> str:
    text = " ".join(["policy"] * (tokens - 2))  # one token a word, plus [CLS] and [SEP]
    assert count_tokens(text) == tokens
    return text


def test_the_model_accepts_exactly_what_the_chunker_counts_as_fitting(
    embedding_server: InferenceProcess, settings: Any
) -> None:
    settings.INFERENCE_URL = embedding_server.url
    assert len(embed([_text_of(MODEL_MAX_TOKENS)])[0]) == 384
    with pytest.raises(InferenceError, match=f"takes at most {MODEL_MAX_TOKENS}"):
        embed([_text_of(MODEL_MAX_TOKENS) + " policy"])
