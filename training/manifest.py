"""Checkpoint directories on disk: atomic files, a manifest written last, keep-last-K (stdlib only).

A checkpoint is ``<root>/step-00000040/`` holding its files and ``manifest.json``. Each file is
written under a temporary name, fsynced and renamed; the manifest, listing every file's size and
SHA-256, is written the same way and only after all of them. A directory without a manifest whose
checksums match is not a checkpoint: it is a write that a crash interrupted, or a corrupt one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# 2: the files are a torch.distributed.checkpoint directory that any world size can load (1 was
# one torch.save file per part, loadable only at the world size that wrote it).
FORMAT = "ragsite-checkpoint/2"
CHUNK_BYTES = 8 << 20
_STEP_DIR = re.compile(r"^step-(\d{8,})$")

log = logging.getLogger(__name__)

ChunkHook = Callable[[int, int], None]


class CheckpointInvalid(Exception):
    """A checkpoint directory that must not be loaded; the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    manifest: dict[str, Any]


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes | memoryview, *, on_chunk: ChunkHook | None = None) -> str:
    """Write ``data`` to ``path`` through a temporary name, fsync and rename; return its SHA-256.

    ``on_chunk(written, total)`` runs after each chunk reaches the temporary file (fault injection).
    """
    view = memoryview(data).cast("B")
    digest = hashlib.sha256()
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        for start in range(0, max(len(view), 1), CHUNK_BYTES):
            chunk = view[start : start + CHUNK_BYTES]
            out.write(chunk)
            digest.update(chunk)
            if on_chunk is not None:
                out.flush()
                on_chunk(start + len(chunk), len(view))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return digest.hexdigest()


def write_manifest(
    directory: Path, *, step: int, files: dict[str, tuple[int, str]], meta: dict[str, Any]
) -> None:
    """Seal a checkpoint: ``files`` maps each file name to its (size, sha256)."""
    manifest = {
        "format": FORMAT,
        "step": step,
        "files": {name: {"bytes": size, "sha256": sha} for name, (size, sha) in files.items()},
        "meta": meta,
    }
    write_file_atomic(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    fsync_dir(directory)


def seal_directory(
    directory: Path, *, step: int, meta: dict[str, Any], on_file: Callable[[int, int], None] | None = None
) -> int:
    """Checksum every file another writer left in ``directory`` and seal it; returns the bytes.

    For files written by several processes (each rank writes its own): they must all be complete
    and fsynced before this runs. ``on_file(done, total)`` runs after each file (fault injection).
    """
    names = sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")
    )
    files = {}
    for done, name in enumerate(names, start=1):
        path = directory / name
        files[name] = (path.stat().st_size, file_sha256(path))
        if on_file is not None:
            on_file(done, len(names))
    write_manifest(directory, step=step, files=files, meta=meta)
    return sum(size for size, _ in files.values())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(directory: Path) -> dict[str, Any]:
    """Return the manifest of a complete, intact checkpoint or raise CheckpointInvalid."""
    try:
        manifest = json.loads((directory / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise CheckpointInvalid("no manifest (the write never finished)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointInvalid(f"unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointInvalid("manifest has an unknown format")
    for name, entry in manifest["files"].items():
        path = directory / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CheckpointInvalid(f"{name} is missing") from None
        if size != entry["bytes"]:
            raise CheckpointInvalid(f"{name} has {size} bytes, the manifest says {entry['bytes']}")
        if file_sha256(path) != entry["sha256"]:
            raise CheckpointInvalid(f"{name} does not match its checksum")
    return manifest


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Every ``step-N`` directory under root, newest first, complete or not."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found, reverse=True)


def newest_valid(root: Path) -> Checkpoint | None:
    """The newest checkpoint that verifies, falling back past (and logging) broken ones."""
    skipped: list[str] = []
    for step, directory in step_dirs(root):
        try:
            manifest = verify(directory)
        except CheckpointInvalid as exc:
            log.warning("checkpoint %s is unusable: %s", directory.name, exc)
            skipped.append(directory.name)
            continue
        if skipped:
            log.warning(
                "falling back to checkpoint %s (step %d) because %s could not be used",
                directory.name,
                step,
                ", ".join(skipped),
            )
        return Checkpoint(step=step, path=directory, manifest=manifest)
    if skipped:
        log.warning("no usable checkpoint in %s; starting from scratch", root)
    return None


def remove_checkpoint(directory: Path) -> None:
    """Unseal first (drop the manifest), so a crash half-way leaves an invalid directory."""
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


def discard_newer_than(root: Path, step: int) -> None:
    """Set aside every step directory past the resume point: interrupted writes and broken ones.

    Corrupt checkpoints are renamed ``step-N.corrupt`` so a person can still inspect them; a
    directory that never got its manifest is simply removed.
    """
    for dir_step, directory in step_dirs(root):
        if dir_step <= step:
            break
        if (directory / MANIFEST).exists():
            quarantine = directory.with_name(directory.name + ".corrupt")
            shutil.rmtree(quarantine, ignore_errors=True)
            directory.rename(quarantine)
            log.warning("moved unusable checkpoint %s aside to %s", directory.name, quarantine.name)
        else:
            remove_checkpoint(directory)


def prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` sealed checkpoints; delete older ones and stale partial writes."""
    sealed = [(s, d) for s, d in step_dirs(root) if (d / MANIFEST).exists()]
    if len(sealed) <= keep:
        return
    oldest_kept = sealed[keep - 1][0]
    for dir_step, directory in step_dirs(root):
        if dir_step < oldest_kept:
            remove_checkpoint(directory)
