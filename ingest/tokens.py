"""Token counts in the embedding model's own tokens (its `tokenizer.json`, vendored; no torch needed)."""

from __future__ import annotations

import functools
from pathlib import Path

from django.conf import settings
from tokenizers import Encoding, Tokenizer

# all-MiniLM-L6-v2 reads at most 256 tokens, [CLS] and [SEP] included; the inference API refuses more.
MODEL_MAX_TOKENS = 256
DEFAULT_TOKENIZER_PATH = Path(__file__).resolve().parent / "tokenizer" / "all-MiniLM-L6-v2.json"


@functools.cache
def _tokenizer(path: str) -> Tokenizer:
    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def tokenizer() -> Tokenizer:
    return _tokenizer(str(getattr(settings, "RAGSITE_TOKENIZER_PATH", DEFAULT_TOKENIZER_PATH)))


def count_tokens(text: str) -> int:
    """Tokens the model sees for `text` as one input, special tokens included."""
    return len(tokenizer().encode(text, add_special_tokens=True).ids)


def count_tokens_batch(texts: list[str]) -> list[int]:
    """Tokens of each text on its own, special tokens excluded (for sizing pieces of a chunk)."""
    if not texts:
        return []
    return [len(e.ids) for e in tokenizer().encode_batch(texts, add_special_tokens=False)]


def encode(text: str) -> Encoding:
    """The encoding of `text` without special tokens; `.offsets` map tokens back to characters."""
    return tokenizer().encode(text, add_special_tokens=False)
