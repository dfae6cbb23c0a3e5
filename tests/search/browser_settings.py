"""Settings of the browser tests' web app and worker: the test settings plus a private ingest queue."""

import os

from ragsite.settings.test import *  # noqa: F403

# Other suites' workers listen on "ingest"; the browser tests' documents go to a queue of their own.
RAGSITE_INGEST_QUEUE = os.environ["RAGSITE_INGEST_QUEUE"]
