"""Title -> passage training pairs from a BEIR corpus, with a held-out split.

``python -m training.pairs_from_beir /work/shared/eval/python-faq --out-dir runs/faq-pairs`` writes
``train.jsonl`` and ``heldout.jsonl``. Each document with a title gives the pair (title, text), the
same shape as ragsite's (heading path, chunk) pairs. Documents without a title (in python-faq, the
FAQ answers its queries point at) give none, so the evaluation targets are never trained on. The
split is by a hash of the document id: stable across runs and corpus reorderings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from training.data import write_pairs
from training.evaluate import read_jsonl


def is_held_out(doc_id: str, *, heldout_pct: int) -> bool:
    bucket = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:4], "big") % 100
    return bucket < heldout_pct


def pairs_from_beir(
    beir_dir: Path, *, heldout_pct: int = 10
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, held-out) rows of ``{"anchor", "positive", "doc_id"}`` in corpus order."""
    train: list[dict[str, str]] = []
    heldout: list[dict[str, str]] = []
    for doc in read_jsonl(beir_dir / "corpus.jsonl"):
        title, text = doc.get("title", "").strip(), doc.get("text", "").strip()
        if not title or not text:
            continue
        row = {"anchor": title, "positive": text, "doc_id": doc["_id"]}
        (heldout if is_held_out(doc["_id"], heldout_pct=heldout_pct) else train).append(row)
    return train, heldout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir_dir", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--heldout-pct", type=int, default=10)
    args = parser.parse_args(argv)
    train, heldout = pairs_from_beir(args.beir_dir, heldout_pct=args.heldout_pct)
    write_pairs(args.out_dir / "train.jsonl", train)
    write_pairs(args.out_dir / "heldout.jsonl", heldout)
    print(json.dumps({"train": len(train), "heldout": len(heldout), "out_dir": str(args.out_dir)}))


if __name__ == "__main__":
    main()
