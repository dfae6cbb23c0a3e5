"""`python -m inference`: serve the API with uvicorn on INFERENCE_HOST:INFERENCE_PORT (127.0.0.1:8001)."""

from __future__ import annotations

import uvicorn

from inference.config import ConfigError, Settings


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"inference: {exc}") from None
    uvicorn.run(
        "inference.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        backlog=settings.backlog,
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
    )


if __name__ == "__main__":
    main()
