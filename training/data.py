"""Training pairs: a JSONL file of ``{"anchor": ..., "positive": ...}`` objects, one per line."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    anchor: str
    positive: str


def load_pairs(path: Path) -> list[Pair]:
    """Read the pairs in file order; other keys on a line (a source id, say) are ignored."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            anchor, positive = row.get("anchor"), row.get("positive")
            if not isinstance(anchor, str) or not isinstance(positive, str):
                raise ValueError(f"{path}:{number}: needs string 'anchor' and 'positive' fields")
            if anchor.strip() and positive.strip():
                pairs.append(Pair(anchor=anchor, positive=positive))
    return pairs


def pairs_digest(pairs: list[Pair]) -> str:
    """SHA-256 of the pairs as trained on, so a model records exactly which data made it."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps([pair.anchor, pair.positive]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def write_pairs(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
