"""The API's request and response shapes (pydantic, through django-ninja), which make its OpenAPI document."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema
from pydantic import Field

QUESTION_MAX_CHARS = 2000


class ErrorDetail(Schema):
    code: str = Field(description="What a program matches, e.g. token_expired, collection_out_of_scope.")
    message: str = Field(description="What went wrong and what to do, in words a person can act on.")


class ErrorOut(Schema):
    error: ErrorDetail


class AskIn(Schema):
    question: str = Field(
        min_length=1, max_length=QUESTION_MAX_CHARS, description="The question, as on the page."
    )
    collections: list[int] | None = Field(
        default=None,
        max_length=1000,
        description="Read only these collections (each within the token's scope); absent: all it may read.",
    )


class SourceOut(Schema):
    number: int = Field(description="The `[n]` the answer cites it by.")
    document_id: int
    chunk_id: int
    title: str
    heading: str
    page: int | None
    excerpt: str
    cited: bool
    passage_url: str = Field(description="The passage in its document on the site (needs a login there).")


class AskOut(Schema):
    answer: str = Field(
        description="The checked answer in Markdown, citing sources as [n]; or why it refuses."
    )
    refused: bool = Field(description="True when the documents do not answer the question.")
    origin: str = Field(description="How it was made: model, extract or refusal.")
    reused_at: datetime | None = Field(
        description="Set when a finished answer to the same question was reused."
    )
    retry_after: int | None = Field(
        description="The model had no room: the full answer may be asked for again after this many seconds."
    )
    collections: list[int] = Field(description="The collections the answer was drawn from.")
    sources: list[SourceOut]


class CollectionOut(Schema):
    id: int
    name: str


class DocumentOut(Schema):
    id: int
    title: str
    original_name: str
    collection: CollectionOut
    status: str = Field(description="queued, parsing, embedding, ready or failed.")
    error: str
    size: int
    created_at: datetime


class DocumentsOut(Schema):
    documents: list[DocumentOut]
