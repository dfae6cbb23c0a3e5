"""Embeddings kept by model and text, so a question (or a passage's sentence) is not embedded twice.

Only where a caller turns it on (`question_embeddings_cached`, which shared answers do around each answer):
there a question asked again, and the sentences of popular passages that every extractive answer scores,
come from here. Each web process keeps its last `RAGSITE_EMBED_CACHE_LOCAL_ENTRIES` vectors; Redis keeps
them (as float32) for `RAGSITE_ANSWER_CACHE_TTL_S`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from django.conf import settings
from redis.exceptions import RedisError

from ops import inference
from ops.metrics import EMBEDDING_CACHE_LOOKUPS
from search.answer_redis import KEY_PREFIX, answer_redis

logger = logging.getLogger(__name__)

_local: OrderedDict[str, bytes] = OrderedDict()


@contextlib.contextmanager
def question_embeddings_cached() -> Iterator[None]:
    """Within this block (and the tasks it starts), embeddings are looked up before they are made."""
    with inference.embeddings_cached_in(_CACHE):
        yield


def embedding_key(*, model: str, text: str) -> str:
    """A text's key: the model, and the text with its spacing collapsed (as the tokenizer sees it)."""
    digest = hashlib.sha256(f"{model}\0{' '.join(text.split())}".encode()).hexdigest()
    return f"{KEY_PREFIX}embedding:{digest}"


def _local_limit() -> int:
    return int(getattr(settings, "RAGSITE_EMBED_CACHE_LOCAL_ENTRIES", 4096))


def _remember(key: str, value: bytes) -> None:
    _local[key] = value
    _local.move_to_end(key)
    while len(_local) > _local_limit():
        _local.popitem(last=False)


async def embeddings_cached(*, model: str, texts: Sequence[str]) -> list[list[float] | None]:
    """Each text's vector, or None where it has not been kept."""
    keys = [embedding_key(model=model, text=text) for text in texts]
    values: list[bytes | None] = [_local.get(key) for key in keys]
    missing = [index for index, value in enumerate(values) if value is None]
    if missing:
        try:
            stored = await answer_redis().mget([keys[index] for index in missing])
        except RedisError as exc:
            logger.warning("the embedding cache is unavailable: %s", exc)
            stored = [None] * len(missing)
        for index, value in zip(missing, stored, strict=True):
            values[index] = value if isinstance(value, bytes) else None
    vectors: list[list[float] | None] = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            vectors.append(None)
        else:
            _remember(key, value)
            vectors.append(array("f", value).tolist())
    hits = sum(vector is not None for vector in vectors)
    EMBEDDING_CACHE_LOOKUPS.labels("hit").inc(hits)
    EMBEDDING_CACHE_LOOKUPS.labels("miss").inc(len(vectors) - hits)
    return vectors


async def embeddings_store(*, model: str, texts: Sequence[str], vectors: Sequence[list[float]]) -> None:
    ttl = int(getattr(settings, "RAGSITE_ANSWER_CACHE_TTL_S", 86400))
    try:
        pipe = answer_redis().pipeline(transaction=False)
        for text, vector in zip(texts, vectors, strict=True):
            key = embedding_key(model=model, text=text)
            value = array("f", vector).tobytes()
            _remember(key, value)
            pipe.set(key, value, ex=ttl)
        await pipe.execute()
    except RedisError as exc:
        logger.warning("the embedding cache is unavailable: %s", exc)


class _RedisEmbeddingCache:
    """This module's lookup and store, as the inference client's `EmbeddingCache`."""

    async def cached(self, *, model: str, texts: Sequence[str]) -> list[list[float] | None]:
        return await embeddings_cached(model=model, texts=texts)

    async def store(self, *, model: str, texts: Sequence[str], vectors: Sequence[list[float]]) -> None:
        await embeddings_store(model=model, texts=texts, vectors=vectors)


_CACHE = _RedisEmbeddingCache()
