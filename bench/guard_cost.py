"""What the memory guard's sampling costs per tick, and so what a faster cadence would cost.

    .venv/bin/python -m bench.guard_cost [--ticks 200] [--pool threads|prefork]

Starts ``python -m runner`` (the local default, a fresh database), waits until it is idle,
then does what ``runner.supervise.memory_guard.MemoryGuard.samples`` does at each tick
(the PSS of supervisord and of every program's process tree, ``runner.supervise.memory``)
``--ticks`` times, timing the CPU it takes. Prints the CPU of one tick and what cadences of
1 s and 5 s cost: as a share of one core here, and of Render's free instance (0.1 CPU), on
which the same work takes about ten times the share.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import startup
from runner.supervise.memory import sample_process, sample_tree
from tests.support.pss import tree_pss_mb
from tests.support.runner import start_runner, wait_http_ok

START_TIMEOUT = 120
RENDER_FREE_CPU = 0.1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guard_cost", description=__doc__)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--pool", choices=("threads", "prefork"), default="threads")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        work = Path(tmp)
        env = startup.environment(work, None) | {"CELERY_POOL": args.pool}
        runner = start_runner(env, work)
        with runner:
            wait_http_ok(f"http://127.0.0.1:{env['PORT']}/healthz", START_TIMEOUT, runner)
            runner.wait_for_output("celery@", START_TIMEOUT)
            startup.settled_pss_mb(lambda: tree_pss_mb(runner), startup.SETTLE_DEADLINE)
            supervisord = json.loads((work / "data" / "runner.json").read_text())["pid"]
            programs = [child.pid for child in psutil.Process(supervisord).children()]
            processes = len(runner.tree())
            started = time.process_time()
            for _ in range(args.ticks):
                sample_process(supervisord)
                for pid in programs:
                    sample_tree(pid)
            tick = (time.process_time() - started) / args.ticks
            runner.send_signal(signal.SIGTERM)
            runner.wait(timeout=60)
    print(f"{args.pool} pool, {processes} processes, {args.ticks} ticks")
    print()
    print("| cadence | CPU a tick (ms) | share of one core | share of Render's 0.1 CPU |")
    print("|---|---|---|---|")
    for seconds in (1, 5):
        core = tick / seconds
        print(
            f"| every {seconds} s | {tick * 1000:.1f} | {core:.2%} | {core / RENDER_FREE_CPU:.1%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
