"""The retriever tests' worker: the ingestion tests' settings, and a pause after re-embedded batches."""

import os

from tests.ingest.worker_settings import *  # noqa: F403

# Holds the re-embedding after each batch, so that a test can ask questions while it is under way.
RAGSITE_REEMBED_BATCH_DELAY_S = float(os.environ.get("RAGSITE_REEMBED_BATCH_DELAY_S", "0"))
