"""Pages under a slow-client attack: Gunicorn's gthread worker against the runner's.

    .venv/bin/python -m bench.slow_clients [--runs 3] [--requests 30]

For each worker class (Gunicorn's stock ``gthread`` and ``runner.web.read_ahead``), in
alternating order over ``--runs`` runs, a Gunicorn of the runner's default web shape
(1 worker x 2 threads) serving a small echo application is timed with ``--requests``
sequential ``GET`` requests while idle, then during the attack of
``tests.support.slow_clients.slow_client_attack`` (two one-byte clients, three trickling
header lines, two large bodies sent two bytes at a time). A request that takes more than
``TIMEOUT_SECONDS`` counts as failed; after three failures the attacked series stops
(the web is held). Prints a markdown table: answered share, median and slowest time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from tests.support.slow_clients import (
    READ_AHEAD_WORKER,
    STOCK_WORKER,
    slow_client_attack,
    start_gunicorn,
)

TIMEOUT_SECONDS = 3.0
GIVE_UP_AFTER_FAILURES = 3
NAMES = {STOCK_WORKER: "Gunicorn gthread (stock)", READ_AHEAD_WORKER: "runner.web.read_ahead"}


def series(base: str, count: int) -> tuple[int, int, list[float]]:
    """(answered, sent, durations of the answered) for ``count`` sequential requests."""
    answered, sent, durations, failures = 0, 0, [], 0
    for _ in range(count):
        sent += 1
        started = time.monotonic()
        try:
            requests.get(base + "/page", timeout=TIMEOUT_SECONDS).raise_for_status()
        except requests.RequestException:
            failures += 1
            if failures >= GIVE_UP_AFTER_FAILURES:
                break
            continue
        answered += 1
        durations.append(time.monotonic() - started)
    return answered, sent, durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[tuple[int, int, list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-slow-clients-") as tmp:
        for run in range(args.runs):
            order = (STOCK_WORKER, READ_AHEAD_WORKER)
            for worker in order if run % 2 == 0 else order[::-1]:
                server, base = start_gunicorn(Path(tmp), worker)
                with server:
                    results.setdefault((worker, "idle"), []).append(series(base, args.requests))
                    with slow_client_attack(base):
                        results.setdefault((worker, "attacked"), []).append(
                            series(base, args.requests)
                        )
    print(f"runs: {args.runs}, {args.requests} requests a series, timeout {TIMEOUT_SECONDS:g} s")
    print()
    print("| worker | while | answered | median ms | slowest ms |")
    print("|---|---|---|---|---|")
    for (worker, phase), runs in results.items():
        answered = sum(r[0] for r in runs)
        sent = sum(r[1] for r in runs)
        durations = [d for r in runs for d in r[2]]
        median = f"{statistics.median(durations) * 1000:.1f}" if durations else "-"
        slowest = f"{max(durations) * 1000:.1f}" if durations else "-"
        print(f"| {NAMES[worker]} | {phase} | {answered}/{sent} | {median} | {slowest} |")


if __name__ == "__main__":
    main()
