"""Settings of the browser tests' web app and worker: the test settings plus a private ingest queue."""

import os

from ragsite.settings.test import *  # noqa: F403

# Other suites' workers listen on "ingest"; the browser tests' documents go to a queue of their own.
RAGSITE_INGEST_QUEUE = os.environ["RAGSITE_INGEST_QUEUE"]
# A small CPU model on a busy test machine may take minutes to its first token: the tests check what the
# page does, not how fast the model is. Shorter answers keep the run short.
INFERENCE_TIMEOUT_S = 600.0
RAGSITE_ANSWER_MAX_TOKENS = 64
