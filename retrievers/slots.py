"""The vector slot chunks are written to, held steady against a switch: a lock chunk writers share.

Chunk writes (ingest) hold it in shared mode, a switch (the retriever workflow) in exclusive mode, so no chunk
is stored into a slot that stops being read. This module sits below ingest: it imports no app above it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.db import DatabaseError, connection, transaction

from .selectors import EmbeddingSlot, embedding_slot_active

logger = logging.getLogger(__name__)

# Advisory lock key (32-bit namespace, key) of chunk writes against a switch. ingest.services uses 0x1A6E57
# for its per-document locks, tuning.services 0x1A6E59 for one build step per retriever.
_SLOT_LOCK = (0x1A6E58, 0)


@contextlib.contextmanager
def embedding_slot_for_writes() -> Iterator[EmbeddingSlot]:
    """The active retriever's model and column, held steady while chunks are embedded and stored.

    A session lock in shared mode: writers never wait for each other, and a switch (exclusive) waits until
    the writes in flight are stored, so every chunk lands in the slot that is read after the switch too.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock_shared(%s, %s)", _SLOT_LOCK)
    try:
        yield embedding_slot_active()
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock_shared(%s, %s)", _SLOT_LOCK)
        except DatabaseError:
            logger.warning("could not release the chunk-writes lock; it went with the connection")


def chunk_writes_pause(*, timeout_s: float) -> None:
    """Wait for chunk writes in flight and hold new ones until the caller's transaction ends.

    Raises OperationalError when the writes in flight take longer than `timeout_s`.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'")
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _SLOT_LOCK)
