"""Settings of the ingestion tests' own workers: the test settings plus a private queue (and a pause hook)."""

import os

from ragsite.settings.test import *  # noqa: F403

RAGSITE_INGEST_QUEUE = os.environ["RAGSITE_INGEST_QUEUE"]
# Holds a worker after each embedded batch so that the fault tests can kill it mid-document.
RAGSITE_INGEST_BATCH_DELAY_S = float(os.environ.get("RAGSITE_INGEST_BATCH_DELAY_S", "0"))
# Small batches, so that a short document already spans several.
RAGSITE_INGEST_BATCH_SIZE = int(os.environ.get("RAGSITE_INGEST_BATCH_SIZE", "64"))
