"""The on-disk checkpoint contract: atomic files, a manifest sealed last, fallback and keep-last-K."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from training import manifest


def seal(root: Path, step: int, payload: bytes = b"weights") -> Path:
    directory = manifest.step_dir(root, step)
    directory.mkdir(parents=True)
    sha = manifest.write_file_atomic(directory / "model.pt", payload)
    manifest.write_manifest(directory, step=step, files={"model.pt": (len(payload), sha)}, meta={})
    return directory


def test_atomic_write_leaves_no_temporary_file_and_returns_the_checksum(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"

    sha = manifest.write_file_atomic(target, b"abc")

    assert target.read_bytes() == b"abc"
    assert sha == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_interrupted_write_keeps_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    monkeypatch.setattr(manifest, "CHUNK_BYTES", 2)

    def crash(written: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        manifest.write_file_atomic(target, b"new bytes", on_chunk=crash)

    assert target.read_bytes() == b"old"


def test_sealed_checkpoint_verifies(tmp_path: Path) -> None:
    directory = seal(tmp_path, 4)

    sealed = manifest.verify(directory)

    assert sealed["step"] == 4
    assert sealed["files"]["model.pt"]["bytes"] == len(b"weights")


def test_directory_without_manifest_is_not_a_checkpoint(tmp_path: Path) -> None:
    directory = manifest.step_dir(tmp_path, 4)
    directory.mkdir()
    manifest.write_file_atomic(directory / "model.pt", b"weights")

    with pytest.raises(manifest.CheckpointInvalid, match="no manifest"):
        manifest.verify(directory)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: (d / "model.pt").write_bytes(b"weightz"), "does not match its checksum"),
        (lambda d: (d / "model.pt").write_bytes(b"weights and more"), "has 16 bytes"),
        (lambda d: (d / "model.pt").unlink(), "model.pt is missing"),
        (lambda d: (d / manifest.MANIFEST).write_text("{truncated"), "unreadable manifest"),
    ],
)
def test_damaged_checkpoint_is_rejected(
    tmp_path: Path, damage: Callable[[Path], object], reason: str
) -> None:
    directory = seal(tmp_path, 4)
    damage(directory)

    with pytest.raises(manifest.CheckpointInvalid, match=reason):
        manifest.verify(directory)


def test_newest_valid_falls_back_past_a_corrupt_checkpoint_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seal(tmp_path, 4)
    newest = seal(tmp_path, 8)
    (newest / "model.pt").write_bytes(b"weightz")

    with caplog.at_level(logging.WARNING):
        found = manifest.newest_valid(tmp_path)

    assert found is not None and found.step == 4
    assert "checkpoint step-00000008 is unusable: model.pt does not match its checksum" in caplog.text
    assert "falling back to checkpoint step-00000004 (step 4)" in caplog.text


def test_newest_valid_with_nothing_usable_starts_from_scratch(tmp_path: Path) -> None:
    manifest.step_dir(tmp_path, 3).mkdir()

    assert manifest.newest_valid(tmp_path) is None
    assert manifest.newest_valid(tmp_path / "missing") is None


def test_discard_newer_than_removes_partial_writes_and_quarantines_corrupt_ones(tmp_path: Path) -> None:
    seal(tmp_path, 4)
    corrupt = seal(tmp_path, 8)
    (corrupt / "model.pt").write_bytes(b"x")
    manifest.step_dir(tmp_path, 12).mkdir()

    manifest.discard_newer_than(tmp_path, 4)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004", "step-00000008.corrupt"]


def test_prune_keeps_the_newest_sealed_checkpoints_and_an_unfinished_newer_write(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        seal(tmp_path, step)
    manifest.step_dir(tmp_path, 1).mkdir()  # stale partial write
    manifest.step_dir(tmp_path, 10).mkdir()  # being written right now

    manifest.prune(tmp_path, keep=2)

    assert [s for s, _ in manifest.step_dirs(tmp_path)] == [10, 8, 6]


def test_manifest_lists_every_file_with_size_and_checksum(tmp_path: Path) -> None:
    directory = seal(tmp_path, 4, payload=b"0123456789")

    sealed = json.loads((directory / manifest.MANIFEST).read_text())

    assert sealed["format"] == manifest.FORMAT
    assert sealed["files"] == {
        "model.pt": {"bytes": 10, "sha256": manifest.file_sha256(directory / "model.pt")}
    }
