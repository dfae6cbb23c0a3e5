"""Answer quality of the packaged chat models on fixed RAG cases; prints one JSON line.

Each case is numbered passages plus a question, as the answer service sends them. An answer is correct when
it contains the expected fact, and cites when it has a [n] citation of the passage holding it.

    .venv-inference/bin/python bench/chat_quality.py [--engine llamacpp] [--models NAME ...] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import models  # noqa: E402
from inference.backends import create_engine  # noqa: E402
from inference.backends.base import ChatMessage, SamplingParams  # noqa: E402

SYSTEM = (
    "Answer the question using only the numbered passages below. Cite the passage you used as [n], "
    "for example [2]. If the passages do not contain the answer, say you do not know.\n\n"
)


@dataclass(frozen=True)
class Case:
    passages: tuple[str, ...]
    question: str
    expected: tuple[str, ...]  # any of these, case-insensitive
    source: int  # the passage number that holds the fact


CASES = (
    Case(
        (
            "The Orion backup service runs every night at 02:00 UTC and keeps copies for 30 days.",
            "Orion's web console is available at port 8443 on the admin network.",
            "Invoices are archived by the finance team at the end of each quarter.",
        ),
        "How many days does the Orion backup service keep copies?",
        ("30",),
        1,
    ),
    Case(
        (
            "The cafeteria on floor 2 serves lunch from 11:30 to 14:00.",
            "New employees receive their laptop from the IT desk in room B-114.",
            "Parking permits are renewed every January.",
        ),
        "In which room do new employees get their laptop?",
        ("B-114", "B114"),
        2,
    ),
    Case(
        (
            "The Kestrel API rate limit is 600 requests per minute per key.",
            "Kestrel API keys expire after 90 days unless renewed.",
            "Kestrel returns errors as JSON objects with a code field.",
        ),
        "After how many days do Kestrel API keys expire?",
        ("90",),
        2,
    ),
    Case(
        (
            "Project Falcon was started in 2019 by the logistics group.",
            "Falcon's lead engineer is Marta Okafor, who joined in 2021.",
            "The Falcon dashboard refreshes every five minutes.",
        ),
        "Who is the lead engineer of Project Falcon?",
        ("Okafor",),
        2,
    ),
    Case(
        (
            "Support tickets marked urgent must be answered within 4 hours.",
            "Normal tickets must be answered within 2 business days.",
            "Ticket statistics are published on the first Monday of each month.",
        ),
        "How quickly must urgent support tickets be answered?",
        ("4 hours", "four hours"),
        1,
    ),
    Case(
        (
            "The Lisbon office moved to Avenida da Liberdade 110 in March 2024.",
            "The Porto office has 45 desks.",
            "Both offices close on 13 June for a public holiday.",
        ),
        "How many desks does the Porto office have?",
        ("45",),
        2,
    ),
    Case(
        (
            "To reset a password, open Settings, choose Security and click 'Reset password'.",
            "Two-factor authentication uses the Authy or Google Authenticator apps.",
            "Accounts are locked after 5 failed login attempts.",
        ),
        "After how many failed login attempts is an account locked?",
        ("5", "five"),
        3,
    ),
    Case(
        (
            "The staging database is refreshed from production every Sunday.",
            "The production database runs PostgreSQL 16 on three nodes.",
            "Database credentials are rotated every 60 days.",
        ),
        "Which PostgreSQL version does the production database run?",
        ("16",),
        2,
    ),
    Case(
        (
            "The company's travel policy allows economy class for flights under 6 hours.",
            "Hotel bookings must be made through the TravelDesk portal.",
            "Meal allowances are 40 euros per day abroad.",
        ),
        "What is the daily meal allowance abroad?",
        ("40",),
        3,
    ),
    Case(
        (
            "The Nimbus cluster has 12 GPU nodes, each with 8 accelerators.",
            "Jobs on Nimbus are scheduled with Slurm.",
            "Nimbus storage is backed up weekly to tape.",
        ),
        "Which scheduler does the Nimbus cluster use?",
        ("Slurm",),
        2,
    ),
)


def messages_for(case: Case) -> list[ChatMessage]:
    passages = "\n".join(f"[{i}] {text}" for i, text in enumerate(case.passages, start=1))
    return [ChatMessage("system", SYSTEM + passages), ChatMessage("user", case.question)]


def grade(case: Case, answer: str) -> tuple[bool, bool]:
    correct = any(e.lower() in answer.lower() for e in case.expected)
    cited = f"[{case.source}]" in answer or bool(re.search(rf"\[\s*{case.source}\s*\]", answer))
    return correct, cited


async def evaluate(engine_name: str, model: str, threads: int) -> dict[str, object]:
    path = models.provision(model) if engine_name == "llamacpp" else models.converted_path(model)
    opts = {"n_threads": threads} if engine_name == "llamacpp" else {}
    engine = create_engine(engine_name, str(path), context_tokens=2048, **opts)
    assert engine is not None
    await engine.start()
    correct = cited = tokens = 0
    answers = []
    try:
        for n, case in enumerate(CASES):
            params = SamplingParams(max_tokens=96, temperature=0.0, seed=0)
            deltas = [
                d
                async for d in engine.generate(request_id=f"q{n}", messages=messages_for(case), params=params)
            ]
            answer = "".join(d.text for d in deltas).strip()
            ok, cite = grade(case, answer)
            correct, cited, tokens = correct + ok, cited + cite, tokens + deltas[-1].completion_tokens
            answers.append(answer[:200])
    finally:
        await engine.stop()
    return {
        "model": model,
        "correct": correct,
        "cited": cited,
        "cases": len(CASES),
        "mean_completion_tokens": round(tokens / len(CASES), 1),
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="llamacpp", choices=["llamacpp", "vllm"])
    parser.add_argument("--models", nargs="*", default=list(models.PACKAGED_MODELS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = [asyncio.run(evaluate(args.engine, m, args.threads)) for m in args.models]
    print(json.dumps({"engine": args.engine, "results": results}))


if __name__ == "__main__":
    main()
