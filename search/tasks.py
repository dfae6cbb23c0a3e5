"""Celery tasks of the search app: thin wrappers that call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import IntegrityError, InterfaceError, OperationalError

from ops.inference import InferenceError
from search import sentence_vectors

logger = logging.getLogger(__name__)

# A run stops taking new chunks after this long, so that one run never holds the re-embedding queue from a
# retriever build for more than about a step; Celery beat starts the next (RAGSITE_SENTENCE_VECTORS_EVERY_S).
FILL_BUDGET_S = 60.0


@shared_task(name="search.sentence_vectors_fill", ignore_result=True)
def sentence_vectors_fill() -> None:
    """Embed the quotable sentences of new chunks (docs/asking.md, *The extractive answer*)."""
    try:
        sentence_vectors.sentence_vectors_fill(budget_s=FILL_BUDGET_S)
    except (InferenceError, OperationalError, InterfaceError, IntegrityError) as exc:
        # The next beat tries again (a chunk deleted while its row was written is an IntegrityError);
        # until then extracts embed those sentences while the asker waits.
        logger.warning("sentence vectors not filled this time: %s", exc)
