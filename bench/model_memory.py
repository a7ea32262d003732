"""Idle memory of the runner in the fork model and in the exec model, per program.

    .venv/bin/python -m bench.model_memory [--runs 2]

For each run and model (``RUNNER_FORK`` true, then false, alternated), the runner starts on
the local default with ``MEMORY_BUDGET_MB=512``, serves 8 pages and 6 tasks, and after 8 idle
seconds the PSS of supervisord's own process and of each program's tree is read. In the
fork model supervisord's process holds the preloaded project its programs share, so only
the total compares like with like; the per-program figures show where the memory sits
(the floors in ``runner/config/budget.py``). Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from runner.supervise.memory import MB, sample_tree
from tests.support.ports import free_port
from tests.support.processes import program_of
from tests.support.runner import build_runner_env, run_client, start_runner, wait_http_ok

START_TIMEOUT = 120
IDLE_SECONDS = 8  # after the work: what an idle instance holds, not the start's peak
ADD = "from app.celery import app; print(app.send_task('app.tasks.add', (2, 3)).get(timeout=30))"


def measure(fork: str, work: Path) -> dict[str, float]:
    env = build_runner_env(os.environ, work, free_port())
    env |= {"RUNNER_FORK": fork, "MEMORY_BUDGET_MB": "512"}
    runner = start_runner(env, work)
    with runner:
        url = f"http://127.0.0.1:{env['PORT']}"
        wait_http_ok(f"{url}/healthz", START_TIMEOUT, runner)
        for _ in range(8):
            wait_http_ok(f"{url}/", START_TIMEOUT, runner)
        for _ in range(6):
            run_client(env, ADD, 60)
        time.sleep(IDLE_SECONDS)  # the idle period being measured
        tree = sample_tree(runner.pid)
        figures = {"supervisord": next(p.pss for p in tree.processes if p.pid == runner.pid) / MB}
        for child in psutil.Process(runner.pid).children():
            name = program_of(child) or child.name()
            figures[name] = sum(p.pss for p in sample_tree(child.pid).processes) / MB
        figures["total"] = sum(p.pss for p in tree.processes) / MB
        runner.kill_tree()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_memory", description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {"true": [], "false": []}
    with tempfile.TemporaryDirectory(prefix="bench-model-memory-") as tmp:
        for number in range(args.runs):
            for fork in ("true", "false") if number % 2 == 0 else ("false", "true"):
                work = Path(tmp) / f"{fork}-{number}"
                work.mkdir()
                results[fork].append(measure(fork, work))
                print(f"run {number + 1} RUNNER_FORK={fork}: {results[fork][-1]}", file=sys.stderr)
    names = ("supervisord", "web", "worker", "total")
    print("| RUNNER_FORK | " + " | ".join(f"{n} PSS (MB)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for fork, runs in results.items():
        cells = [f"{statistics.median(r.get(n, 0.0) for r in runs):.1f}" for n in names]
        print(f"| {fork} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
