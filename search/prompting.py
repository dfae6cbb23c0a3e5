"""The prompts sent to the chat model: numbered passages within a token budget, and follow-up rewriting."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# The chat model's tokenizer lives behind the inference API, so budgets use a deliberately pessimistic
# estimate: BPE tokenizers average about four characters per token on English prose and fewer on code.
CHARS_PER_TOKEN = 3
# Chat templates add role markers and separators around every message.
TOKENS_PER_MESSAGE = 8

ANSWER_SYSTEM_PROMPT = (
    "You answer questions for the staff of an organisation, using only the numbered passages from its "
    "documents that the user gives you.\n"
    "- Base every statement on the passages and cite the passage it comes from with its number in square "
    "brackets, for example [1] or [2][3].\n"
    "- If the passages do not answer the question, say that you do not know from the documents. "
    "Never guess and never use outside knowledge.\n"
    "- Answer concisely in Markdown."
)

REWRITE_SYSTEM_PROMPT = (
    "Rewrite the user's last question as one standalone question that can be understood without the "
    "conversation. Keep its meaning and its language. Reply with the question only."
)


class Passage(Protocol):
    """What a prompt needs of a retrieved chunk (search.selectors.RetrievedChunk has it)."""

    @property
    def document_title(self) -> str: ...

    @property
    def heading_path(self) -> str: ...

    @property
    def page(self) -> int | None: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class AnswerPrompt:
    messages: list[dict[str, str]]
    # The passages that fit, in the order (and so with the numbers, from 1) the prompt gives them.
    passages: tuple[Passage, ...]
    # Set when the last passage had to be cut to fit the budget.
    truncated: bool = False


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def passage_label(passage: Passage) -> str:
    """`Title › Heading › Sub, page 3`: where a passage sits, as the model and the reader see it."""
    parts = [passage.document_title or "Untitled document"]
    if passage.heading_path:
        parts.append(passage.heading_path)
    label = " › ".join(parts)
    if passage.page is not None:
        label += f", page {passage.page}"
    return label


def _format_passage(number: int, passage: Passage, text: str) -> str:
    return f"[{number}] ({passage_label(passage)})\n{text.strip()}"


def _question_block(question: str) -> str:
    # The reminder comes last because small models follow the instruction nearest to their answer best.
    return (
        f"Question: {question.strip()}\n\n"
        "Answer the question in full sentences using only the passages above, and put the number of the "
        "passage each fact comes from after it, like [1]. If the passages do not answer it, say you do not "
        "know."
    )


def answer_prompt(
    *,
    question: str,
    passages: Sequence[Passage],
    context_tokens: int,
    answer_tokens: int,
    max_passages: int = 8,
) -> AnswerPrompt:
    """Number the passages that fit in `context_tokens` after reserving `answer_tokens` for the answer.

    Passages are taken in retrieval order; the first is cut to fit rather than dropped, so a relevant
    passage always reaches the model. A passage that does not fit whole is never split across numbers.
    """
    question_block = _question_block(question)
    fixed = (
        estimate_tokens(ANSWER_SYSTEM_PROMPT)
        + estimate_tokens("Passages:\n\n")
        + estimate_tokens(question_block)
        + 2 * TOKENS_PER_MESSAGE
    )
    budget = context_tokens - answer_tokens - fixed
    blocks: list[str] = []
    included: list[Passage] = []
    truncated = False
    for passage in passages[:max_passages]:
        number = len(included) + 1
        block = _format_passage(number, passage, passage.text)
        cost = estimate_tokens(block) + 1
        if cost > budget:
            header_cost = estimate_tokens(_format_passage(number, passage, ""))
            room_chars = (budget - header_cost - 1) * CHARS_PER_TOKEN
            if included or room_chars < 200:
                break
            block = _format_passage(number, passage, _cut(passage.text, room_chars))
            cost = estimate_tokens(block) + 1
            truncated = True
        blocks.append(block)
        included.append(passage)
        budget -= cost
        if truncated:
            break
    user = "Passages:\n\n" + "\n\n".join(blocks) + "\n\n" + question_block
    messages = [
        {"role": "system", "content": ANSWER_SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]
    return AnswerPrompt(messages=messages, passages=tuple(included), truncated=truncated)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space > max_chars * 0.8:
        cut = cut[:space]
    return cut.rstrip() + " …"


def rewrite_messages(
    *, question: str, history: Sequence[tuple[str, str]], max_history_chars: int = 3000
) -> list[dict[str, str]]:
    """Ask for `question` as a standalone question, given the latest turns of `history` (question, answer)."""
    turns: list[str] = []
    used = 0
    for asked, answered in reversed(history):
        turn = f"User: {asked.strip()}\nAssistant: {_cut(answered.strip(), 600)}"
        if used + len(turn) > max_history_chars:
            break
        turns.append(turn)
        used += len(turn)
    conversation = "\n\n".join(reversed(turns))
    return [
        {"role": "system", "content": REWRITE_SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"Conversation:\n{conversation}\n\nLast question: {question.strip()}\n\n"
            "Standalone question:",
        },
    ]


_REWRITE_PREFIX = re.compile(r"^\s*(standalone question|question|rewritten question)\s*:\s*", re.IGNORECASE)


def rewritten_question(*, reply: str, question: str) -> str:
    """The model's rewrite cleaned up, or `question` itself when the reply is unusable."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return question
    candidate = _REWRITE_PREFIX.sub("", lines[0]).strip().strip("\"'`").strip()
    # A small model sometimes answers instead of rewriting; an answer is long, a question is not.
    if not candidate or len(candidate) > 3 * len(question) + 200:
        return question
    return candidate
