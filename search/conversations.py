"""Selectors of the ask page: conversations, turns and passages, each read only for the user they belong to.

(Retrieval's own selectors live in `search/selectors.py`; these build on its `chunk_get_for_user`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from ingest.chunking import chunk_own_text
from ingest.models import Chunk, Document
from search.models import Conversation, Message
from search.selectors import chunk_get_for_user, collection_ids_readable_by

# How many passages either side of a cited one the passage page shows.
PASSAGE_CONTEXT = 6


def conversation_list_for_user(*, user: Any, limit: int = 50) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user).order_by("-updated_at", "-id")[:limit]


def conversation_get_for_user(*, user: Any, conversation_id: int) -> Conversation:
    conversation = Conversation.objects.filter(id=conversation_id, user=user).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def message_get_for_user(*, user: Any, message_id: int) -> Message:
    message = (
        Message.objects.select_related("conversation").filter(id=message_id, conversation__user=user).first()
    )
    if message is None:
        raise Http404("No such question.")
    return message


def conversation_messages(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.select_related("feedback").order_by("created_at", "id"))


def message_history(*, message: Message, limit: int = 6) -> list[tuple[str, str]]:
    """The answered turns before `message` in its conversation, oldest first, as (question, answer)."""
    earlier = (
        Message.objects.filter(
            conversation_id=message.conversation_id, status=Message.Status.ANSWERED, id__lt=message.id
        )
        .order_by("-id")
        .values_list("question", "answer")[:limit]
    )
    return [(question, answer) for question, answer in reversed(earlier)]


def readable_chunk_ids(*, user: Any, chunk_ids: list[int]) -> set[int]:
    """Which of these chunks `user` may still read (permissions can change after a question was answered)."""
    if not chunk_ids:
        return set()
    return set(
        Chunk.objects.filter(
            id__in=chunk_ids, collection_id__in=collection_ids_readable_by(user=user)
        ).values_list("id", flat=True)
    )


def sources_readable_by(*, user: Any, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored sources (SourceRef dicts) whose document `user` may read now; superusers read them all.

    By document rather than chunk: a re-ingested document's sources stay readable (its chunks are new).
    A source whose document is gone is shown to superusers only.
    """
    if user is not None and user.is_active and user.is_superuser:
        return list(sources)
    document_ids = [source.get("document_id") for source in sources]
    readable = set(
        Document.objects.filter(
            id__in=[pk for pk in document_ids if isinstance(pk, int)],
            collection_id__in=collection_ids_readable_by(user=user),
        ).values_list("id", flat=True)
    )
    return [source for source in sources if source.get("document_id") in readable]


@dataclass(frozen=True)
class PassageBlock:
    chunk: Chunk
    # The part of the chunk's text not already shown by the chunk before it (chunks may overlap).
    text: str
    cited: bool


@dataclass(frozen=True)
class PassageInDocument:
    chunk: Chunk
    document: Document
    blocks: list[PassageBlock]
    more_before: bool
    more_after: bool


def passage_in_document_for_user(*, user: Any, chunk_id: int) -> PassageInDocument:
    """The passage amid its neighbours in its document, if `user` may read it; else Http404."""
    chunk = chunk_get_for_user(user=user, chunk_id=chunk_id)
    neighbours = list(
        Chunk.objects.filter(
            document_id=chunk.document_id,
            generation=chunk.generation,
            ordinal__gte=chunk.ordinal - PASSAGE_CONTEXT,
            ordinal__lte=chunk.ordinal + PASSAGE_CONTEXT + 1,
        )
        .order_by("ordinal")
        .only("id", "ordinal", "text", "heading_path", "page", "char_start", "char_end")
    )
    more_after = len(neighbours) > 0 and neighbours[-1].ordinal > chunk.ordinal + PASSAGE_CONTEXT
    if more_after:
        neighbours = neighbours[:-1]
    blocks: list[PassageBlock] = []
    shown_until = 0
    for index, neighbour in enumerate(neighbours):
        cited = neighbour.id == chunk.id
        text = neighbour.text
        # A chunk that starts inside a table repeats the table's header: the document shows it once.
        own = chunk_own_text(text=text, char_start=neighbour.char_start, char_end=neighbour.char_end)
        header = text[: len(text) - len(own)]
        # Consecutive chunks overlap by a few sentences; show each stretch of the document once, and the
        # cited passage whole. Offsets are trusted only where they match the chunk's own text.
        if len(own) == neighbour.char_end - neighbour.char_start:
            start = neighbour.char_start if cited else max(neighbour.char_start, shown_until)
            end = neighbour.char_end
            following = neighbours[index + 1] if index + 1 < len(neighbours) else None
            if following is not None and following.id == chunk.id:
                end = max(start, min(end, following.char_start))
            text = own[start - neighbour.char_start : end - neighbour.char_start]
            if cited:
                text = header + text  # the cited rows with their columns' names
            shown_until = max(shown_until, end)
        if text.strip() or cited:
            blocks.append(PassageBlock(chunk=neighbour, text=text, cited=cited))
    return PassageInDocument(
        chunk=chunk,
        document=chunk.document,
        blocks=blocks,
        more_before=chunk.ordinal - PASSAGE_CONTEXT > 0,
        more_after=more_after,
    )
