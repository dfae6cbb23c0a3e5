"""An embedding model in a spawned process of its own, reached over a pipe.

The service's event loop handles thousands of connections. With the model on a thread of the same
process the two fought for the GIL and, under a flood, the loop starved the model; in a child process
they never share one. A batch of texts goes down the pipe and a float32 array comes back.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

logger = logging.getLogger("inference")

# Inputs per forward pass within one batch, for models that sentence-transformers encodes (a packed
# model takes the whole batch in one pass: it does no padding work). sentence-transformers sorts a batch
# by length before it cuts it into passes, so short inputs are not padded to the batch's longest: on
# MiniLM with one thread, 64 texts of 8 to 40 words encode about 1.4x faster in passes of 16 than in one
# pass of 64.
ENCODE_PASS_SIZE = 16
START_TIMEOUT_S = 300.0
# By default, an encoder that answers no batch within this long is stuck: it is killed, and started again
# (INFERENCE_ENCODER_STALL_TIMEOUT_S).
STALL_TIMEOUT_S = 120.0

_VECTORS = b"VECS"
_FAILED = b"FAIL"


class EncoderUnavailable(Exception):
    """The encoder process died, hung or would not start; the inputs sent to it were not encoded."""


class EncoderProcess:
    """A sentence-transformers model in a child process, with EmbeddingModel's surface.

    Tokens are counted here, with a tokenizer of our own; only `encode` crosses to the child. If the
    child dies, the batch in it raises EncoderUnavailable and the next `encode` starts a new child.
    """

    def __init__(
        self,
        path: str,
        *,
        model_id: str,
        torch_threads: int = 1,
        packed: bool = True,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.model_id = model_id
        self.torch_threads = torch_threads
        self.packed = packed
        self.stall_timeout_s = stall_timeout_s
        self.max_tokens = 0
        self.dimensions = 0
        self.restarts = 0
        self._starting = False
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._counter = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        with self._lock:
            self._start()

    @property
    def alive(self) -> bool:
        """Whether the child is running and not being replaced."""
        process = self._process
        return process is not None and process.is_alive() and not self._starting

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model sees them, special tokens included, before truncation."""
        return [len(self._counter.encode(text, add_special_tokens=True).ids) for text in texts]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors for `texts`, encoded in the child; inputs past max_tokens are cut."""
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._reap()
                self.restarts += 1
                logger.warning("restarting the encoder process of %s", self.model_id)
                self._start()
            assert self._conn is not None
            try:
                self._conn.send(texts)
                if not self._conn.poll(self.stall_timeout_s):
                    self._reap()
                    raise EncoderUnavailable(
                        f"The encoder of {self.model_id} answered nothing in {self.stall_timeout_s:g} s "
                        "and was stopped; it restarts with the next request."
                    )
                reply = self._conn.recv_bytes()
            except (EOFError, OSError) as exc:
                exitcode = self._reap()
                raise EncoderUnavailable(
                    f"The encoder process of {self.model_id} exited (code {exitcode}) while encoding; "
                    "it restarts with the next request."
                ) from exc
        tag, body = reply[:4], memoryview(reply)[4:]
        if tag == _FAILED:
            raise RuntimeError(bytes(body).decode("utf-8", "replace"))
        return np.frombuffer(body, dtype=np.float32).reshape(len(texts), self.dimensions)

    def stop(self) -> None:
        """Stop the child: closing the pipe ends its loop; a child that lingers is killed."""
        with self._lock:
            self._reap(grace_s=5.0)

    def _start(self) -> None:
        self._starting = True
        try:
            self._spawn()
        finally:
            self._starting = False

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe()
        process = context.Process(
            target=serve,
            args=(child_conn, self.path, self.model_id, self.torch_threads, self.packed),
            name=f"encoder-{self.model_id}",
            daemon=True,  # multiprocessing ends it when this process exits
        )
        process.start()
        # Only the child holds its end now, so its death reads as end-of-file here.
        child_conn.close()
        self._process, self._conn = process, conn
        try:
            if not conn.poll(START_TIMEOUT_S):
                raise EncoderUnavailable(
                    f"The encoder of {self.model_id} did not start in {START_TIMEOUT_S:.0f} s."
                )
            kind, detail = conn.recv()
        except (EOFError, OSError):
            exitcode = self._reap()
            raise EncoderUnavailable(
                f"The encoder process of {self.model_id} exited (code {exitcode}) while loading."
            ) from None
        except EncoderUnavailable:
            self._reap()
            raise
        if kind != "ready":
            self._reap()
            raise EncoderUnavailable(f"The encoder of {self.model_id} failed to load: {detail}")
        self.max_tokens, self.dimensions = detail["max_tokens"], detail["dimensions"]
        logger.info(
            "encoder process of %s started (pid %s), encoding %s",
            self.model_id,
            process.pid,
            "packed tokens" if detail["packed"] else "padded passes (sentence-transformers)",
        )

    def _reap(self, grace_s: float = 0.0) -> int | None:
        """Close the pipe and make sure the child is gone; its exit code."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        process.join(grace_s)
        if process.is_alive():
            process.kill()
            process.join()
        exitcode = process.exitcode
        process.close()
        return exitcode


def serve(conn: Connection, path: str, model_id: str, torch_threads: int, packed: bool = True) -> None:
    """The child's loop: load the model, then encode each batch that arrives until the pipe closes."""
    # Ctrl-C reaches the whole process group; the child ends when its parent closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import torch

        torch.set_num_threads(torch_threads)
        from inference.embeddings import EmbeddingModel

        model = EmbeddingModel(path, model_id=model_id, packed=packed)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    ready: dict[str, Any] = {
        "max_tokens": model.max_tokens,
        "dimensions": model.dimensions,
        "packed": model.packed,
    }
    conn.send(("ready", ready))
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):
            return
        try:
            vectors = model.encode(texts, pass_size=ENCODE_PASS_SIZE)
        except Exception as exc:
            conn.send_bytes(_FAILED + f"{type(exc).__name__}: {exc}".encode())
            continue
        conn.send_bytes(_VECTORS + np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
