"""infinity-emb's own CLI (`infinity_emb v2 …`) under the server settings bench/inference_load.py gives ours.

Run with .venv-infinity's python. infinity_emb starts uvicorn itself (httptools, uvloop) with uvicorn's
defaults otherwise: a 5 s keep-alive, a backlog of 2048 and an access log line per request. For the
comparison it gets what our service is run with: keep-alive 120 s, `--backlog` (BENCH_BACKLOG), uvloop,
httptools, no access log.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import uvicorn
from infinity_emb.cli import cli

_run = uvicorn.run


def run_as_ours(app: Any, **options: Any) -> None:
    options.update(
        timeout_keep_alive=120,
        backlog=int(os.environ.get("BENCH_BACKLOG", "16384")),
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
    _run(app, **options)


if __name__ == "__main__":
    uvicorn.run = run_as_ours
    sys.argv[0] = "infinity_emb"
    cli()
