"""Settings of the ingestion tests' (and bench/ingest.py's) workers: a private queue, and test-only knobs."""

import os

from ragsite.settings.test import *  # noqa: F403

RAGSITE_INGEST_QUEUE = os.environ.get("RAGSITE_INGEST_QUEUE", "ingest")
# Holds a worker after each embedded batch so that the fault tests can kill it mid-document.
RAGSITE_INGEST_BATCH_DELAY_S = float(os.environ.get("RAGSITE_INGEST_BATCH_DELAY_S", "0"))
# Small batches, so that a short document already spans several.
RAGSITE_INGEST_BATCH_SIZE = int(os.environ.get("RAGSITE_INGEST_BATCH_SIZE", "64"))
# The model service's answer time (the benchmark lengthens it on busy machines).
INFERENCE_TIMEOUT_S = float(os.environ.get("INFERENCE_TIMEOUT_S", "60"))
