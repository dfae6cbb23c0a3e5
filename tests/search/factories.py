"""factory_boy factories for the asking tests: users, groups, collections, documents and their chunks."""

from __future__ import annotations

from typing import Any, cast

import factory
from django.contrib.auth.models import Group, User

from ingest.models import Chunk, Collection, Document
from search.models import Conversation, Message
from tests.search.fake_inference import embed_text

PASSWORD = "pass-word-123"


class GroupFactory(factory.django.DjangoModelFactory[Group]):
    class Meta:
        model = Group

    name = factory.Sequence(lambda n: f"group-{n}")


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user-{n}")

    @factory.post_generation
    def groups(obj: User, create: bool, extracted: Any, **kwargs: Any) -> None:
        obj.set_password(PASSWORD)
        if create:
            obj.save()
        if create and extracted:
            obj.groups.set(extracted)


class CollectionFactory(factory.django.DjangoModelFactory[Collection]):
    class Meta:
        model = Collection
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"collection-{n}")

    @factory.post_generation
    def groups(obj: Collection, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create and extracted:
            obj.groups.set(extracted)


class DocumentFactory(factory.django.DjangoModelFactory[Document]):
    class Meta:
        model = Document

    collection = factory.SubFactory(CollectionFactory)
    file = factory.Sequence(lambda n: f"documents/doc-{n}.txt")
    original_name = factory.Sequence(lambda n: f"doc-{n}.txt")
    title = factory.Sequence(lambda n: f"Document {n}")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    generation = 1
    status = Document.Status.READY


def add_chunks(
    document: Document, *texts: str, heading_path: str = "", page: int | None = None
) -> list[Chunk]:
    """Chunks of `document`'s live generation, contiguous in its text, embedded like the fake API does."""
    chunks = []
    start = sum(len(c.text) for c in Chunk.objects.filter(document=document, generation=document.generation))
    ordinal = Chunk.objects.filter(document=document, generation=document.generation).count()
    for text in texts:
        chunks.append(
            Chunk.objects.create(
                document=document,
                collection_id=document.collection_id,
                generation=document.generation,
                ordinal=ordinal,
                text=text,
                heading_path=heading_path,
                page=page,
                char_start=start,
                char_end=start + len(text),
                token_count=len(text.split()),
                embedding=embed_text(f"{heading_path} {text}"),
            )
        )
        ordinal += 1
        start += len(text)
    return chunks


class ConversationFactory(factory.django.DjangoModelFactory[Conversation]):
    class Meta:
        model = Conversation

    user = factory.SubFactory(UserFactory)
    title = "A conversation"


class MessageFactory(factory.django.DjangoModelFactory[Message]):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    question = "What is the refund window?"
    request_id = factory.Sequence(lambda n: f"req-{n}")


# Typed shorthands: factory_boy's call returns the model instance, which mypy cannot see.
def make_group(**fields: Any) -> Group:
    return cast(Group, GroupFactory(**fields))


def make_user(**fields: Any) -> User:
    return cast(User, UserFactory(**fields))


def make_collection(**fields: Any) -> Collection:
    return cast(Collection, CollectionFactory(**fields))


def make_document(**fields: Any) -> Document:
    return cast(Document, DocumentFactory(**fields))


def make_message(**fields: Any) -> Message:
    return cast(Message, MessageFactory(**fields))
