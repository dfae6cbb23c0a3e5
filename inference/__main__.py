"""`python -m inference`: serve the API with uvicorn on INFERENCE_HOST:INFERENCE_PORT (127.0.0.1:8001)."""

from __future__ import annotations

import os

import uvicorn

from inference.config import Settings


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(
        "inference.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        backlog=int(os.environ.get("INFERENCE_BACKLOG", "4096")),
        timeout_keep_alive=int(os.environ.get("INFERENCE_KEEP_ALIVE_S", "30")),
        log_level=os.environ.get("INFERENCE_LOG_LEVEL", "info"),
        access_log=False,
    )


if __name__ == "__main__":
    main()
