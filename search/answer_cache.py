"""Finished answers kept for reuse: the same question, over the same readable collections, the same documents.

The key holds what an answer depends on: the question normalised (case, spacing, punctuation), the sorted ids
of the collections the asker may read (so nothing can come out of a collection they cannot), where those
collections' documents stand (a counter each, moved by a re-ingest, an addition, a deletion, a move or a new
title), the active retriever's model and column, and the answering settings. A change of permissions
changes the asker's readable set, and so the key. Entries expire after `RAGSITE_ANSWER_CACHE_TTL_S`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from ops.db import db_sync_to_async
from retrievers.selectors import embedding_slot_active
from search.answer_redis import KEY_PREFIX, answer_redis, answer_redis_sync
from search.answers import MODEL_UNAVAILABLE_NOTE
from search.models import CollectionDocumentsVersion
from search.services import AnswerEvent, SourceRef

logger = logging.getLogger(__name__)

# Bump when answers made before a change must not be reused after it.
VERSION = 1
# Stripped from a word's end, and (quotes and brackets) from its start: "laptop?" and "laptop" ask the same;
# "c++", "-s", ".bz2" keep theirs.
_CLOSING_PUNCTUATION = "?!.,;:…\"'“”‘’«»()[]{}"
_OPENING_PUNCTUATION = "¿¡\"'“”‘’«»([{"
_SETTINGS = (
    "RAGSITE_RETRIEVAL_K",
    "RAGSITE_ANSWER_MAX_PASSAGES",
    "RAGSITE_ANSWER_MAX_TOKENS",
    "RAGSITE_CHAT_CONTEXT_TOKENS",
)


def question_normalised(question: str) -> str:
    """The question as its key sees it: NFKC, case-folded, one space between words, edge punctuation gone."""
    text = unicodedata.normalize("NFKC", question).casefold()
    words = (word.lstrip(_OPENING_PUNCTUATION).rstrip(_CLOSING_PUNCTUATION) for word in text.split())
    return " ".join(word for word in words if word)


def documents_fingerprint(*, collection_ids: Sequence[int]) -> str:
    """Where the collections' documents stand: each collection's counter of changes to its documents.

    A document added, deleted, moved, renamed or given a new live generation draws its collection a new value
    (`CollectionDocumentsVersion`, kept by triggers), so this costs one primary-key lookup per collection,
    however many documents they hold.
    """
    ids = sorted(set(collection_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT collection_id, version FROM {CollectionDocumentsVersion._meta.db_table}"
            " WHERE collection_id = ANY(%s)",
            [ids],
        )
        versions = dict(cursor.fetchall())
    return ",".join(f"{collection_id}:{versions.get(collection_id, 0)}" for collection_id in ids)


def _key_parts(*, collection_ids: Sequence[int]) -> dict[str, Any]:
    slot = embedding_slot_active()
    return {
        "retriever": [slot.model_id, slot.column],
        "documents": documents_fingerprint(collection_ids=collection_ids),
    }


def answer_key_blocking(*, collection_ids: Sequence[int], question: str) -> str:
    """The cache and single-flight key of `question` asked over `collection_ids` (those the asker reads)."""
    collections = sorted(set(collection_ids))
    material = {
        "version": VERSION,
        "collections": collections,
        "settings": [getattr(settings, name, None) for name in _SETTINGS],
        "question": question_normalised(question),
        **_key_parts(collection_ids=collections),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


async def answer_key(*, collection_ids: Sequence[int], question: str) -> str:
    """`answer_key_blocking` from async code (its database read in a thread)."""
    return await db_sync_to_async(answer_key_blocking)(collection_ids=collection_ids, question=question)


def event_as_dict(event: AnswerEvent) -> dict[str, Any]:
    return dataclasses.asdict(event)


def event_from_dict(data: dict[str, Any]) -> AnswerEvent:
    fields = {name: data[name] for name in AnswerEvent.__dataclass_fields__ if name in data}
    fields["sources"] = tuple(SourceRef.from_dict(source) for source in data.get("sources", ()))
    return AnswerEvent(**fields)


@dataclass(frozen=True)
class CachedAnswer:
    """An answer's sources, extractive answer and final answer, and when it was written."""

    events: tuple[AnswerEvent, ...]
    written_at: datetime


def answer_cacheable(*, events: Sequence[AnswerEvent]) -> bool:
    """A finished, checked answer: not one cut short by a busy or failing model, and no error."""
    if not events or events[-1].kind != "done":
        return False
    if any(event.kind in ("busy", "error") for event in events):
        return False
    done = events[-1]
    return not (done.origin == "extract" and done.text.startswith(f"*{MODEL_UNAVAILABLE_NOTE}"))


def cache_key(key: str) -> str:
    return f"{KEY_PREFIX}cache:{key}"


def _cached_answer(raw: bytes | str | None) -> CachedAnswer | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return CachedAnswer(
            events=tuple(event_from_dict(event) for event in data["events"]),
            written_at=datetime.fromisoformat(data["written_at"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("a cached answer could not be read: %s", exc)
        return None


async def answer_cache_get(key: str) -> CachedAnswer | None:
    return _cached_answer(await answer_redis().get(cache_key(key)))


def answer_cache_get_blocking(key: str) -> CachedAnswer | None:
    """`answer_cache_get` for code in a request's thread (a view)."""
    raw: Any = answer_redis_sync().get(cache_key(key))
    return _cached_answer(raw)


async def answer_cache_set(key: str, *, events: Sequence[AnswerEvent]) -> CachedAnswer | None:
    """Keep a finished answer (its sources, extract and final events) when it is worth reusing."""
    if not answer_cacheable(events=events):
        return None
    kept = tuple(event for event in events if event.kind in ("sources", "extract", "done"))
    written_at = datetime.now(tz=UTC)
    raw = json.dumps(
        {"written_at": written_at.isoformat(), "events": [event_as_dict(event) for event in kept]}
    ).encode()
    if len(raw) > int(getattr(settings, "RAGSITE_ANSWER_CACHE_MAX_BYTES", 256 * 1024)):
        logger.info("an answer of %d bytes is too large to keep", len(raw))
        return None
    try:
        await answer_redis().set(
            cache_key(key), raw, ex=int(getattr(settings, "RAGSITE_ANSWER_CACHE_TTL_S", 86400))
        )
    except RedisError as exc:
        logger.warning("the answer cache is unavailable: %s", exc)
        return None
    return CachedAnswer(events=kept, written_at=written_at)
