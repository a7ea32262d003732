"""The leaking-task scenario on the default 512 MB plan: recycled in time, nothing lost.

    .venv/bin/python -m bench.leak [--runs 3] [--recycles 2] [--broker local|redis|both]
                                   [--scenario slow|fast] [--pool threads|prefork|both]

Per run: ``python -m runner`` with its defaults and ``MEMORY_BUDGET_MB=512``, the test-only
task module ``tests/e2e/leaky_tasks.py`` as the Celery app (the demo's app plus
``leaky.hold``). HTTP traffic (``/`` and ``/healthz``, ``tests.support.traffic``) runs
throughout. A client keeps ``--in-flight`` tasks queued at all times, each of which makes
the process that runs it keep ``--leak-mb`` MB more for good and sleep ``--hold-seconds``:
a steady leak, which only recycling the worker gives back. The run ends once the watchdog
has acted ``--recycles`` times and every task sent has been answered (or a deadline
passed, which then counts the missing tasks as lost).

``--scenario fast`` is the leak a sampler cannot follow: ``--burst`` tasks (12) of
``--leak-mb`` (40 by default there) sent at once, no hold, and the run ends when all are
answered: what gives the memory back is the worker's own check after each task
(``runner.worker.memory_check`` for threads; Celery's ``--max-memory-per-child`` for a
prefork child). ``--pool`` chooses ``CELERY_POOL`` (the plan's own choice by default).

Figures per run, medians over runs: idle and peak total PSS of the tree (sampled every
0.25 s: four times per watchdog tick; every 20 ms in the fast scenario) against the
budget; graceful recycles (over the soft line) and hard restarts (over the last-resort
line), read from the runner's own lines; HTTP requests sent and failed; tasks sent,
answered, lost (never answered) and answered twice (late acknowledgement is at least
once). Failed requests, lost tasks and hard restarts must be 0; the exit status is 1 when
they are not.

Every process started is stopped by PID; files only in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import startup
from bench.process_costs import celery_client, machine
from runner.config.budget import resolve_budget
from tests.e2e.leaky_tasks import HOLD_TASK
from tests.support.processes import ProcessHandle
from tests.support.pss import tree_pss_mb
from tests.support.redis_server import RedisServer
from tests.support.runner import start_runner, wait_http_ok
from tests.support.traffic import Traffic

BUDGET_MB = 512
START_TIMEOUT = 120
RESULT_TIMEOUT = 180  # after the last send: a restart, then the re-delivered tasks
STOP_TIMEOUT = 60
SAMPLE_SECONDS = 0.25
FAST_SAMPLE_SECONDS = 0.02
# The runner's lines for the watchdog's actions (runner.supervise.watchdog).
GRACEFUL = "over the soft line"
HARD = "over the last-resort line"
ACTIONS = (": restarting ", ": recycling the ")
# The threads-pool worker's own graceful restart after a task (runner.worker.memory_check).
SELF_RESTART = "the next would pass its"


@dataclass
class Figures:
    idle_pss_mb: float
    peak_pss_mb: float
    budget_mb: int
    soft_line_mb: int
    last_resort_mb: int
    graceful_recycles: int
    hard_restarts: int
    requests_sent: int
    requests_failed: int
    tasks_sent: int
    tasks_answered: int
    tasks_lost: int
    tasks_answered_twice: int
    seconds: float


def count_actions(output: str) -> tuple[int, int]:
    """(graceful, hard): the watchdog's recycles and restarts in the runner's output."""
    graceful = hard = 0
    for line in output.splitlines():
        if SELF_RESTART in line:
            graceful += 1
            continue
        if "runner" not in line or not any(action in line for action in ACTIONS):
            continue
        if HARD in line:
            hard += 1
        elif GRACEFUL in line:
            graceful += 1
    return graceful, hard


class PeakSampler(threading.Thread):
    """The largest total PSS of the runner's tree seen until stop()."""

    def __init__(self, runner: ProcessHandle, every: float = SAMPLE_SECONDS) -> None:
        super().__init__(daemon=True)
        self.runner = runner
        self.every = every
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.peak = max(self.peak, tree_pss_mb(self.runner))

    def stop(self) -> float:
        self.done.set()
        self.join(timeout=10)
        return self.peak


def run_once(env: dict[str, str], work: Path, args: argparse.Namespace) -> Figures:
    budget = resolve_budget(BUDGET_MB, None)
    env = env | {"MEMORY_BUDGET_MB": str(BUDGET_MB), "CELERY_APP": "tests.e2e.leaky_tasks"}
    if args.pool_now:
        env["CELERY_POOL"] = args.pool_now
    began = time.monotonic()
    runner = start_runner(env, work)
    traffic = Traffic(env["PORT"])
    # A fast leak is over in a second: sampled as often as a sample allows (~20 ms each).
    sampler = PeakSampler(
        runner, FAST_SAMPLE_SECONDS if args.scenario == "fast" else SAMPLE_SECONDS
    )
    client = None
    try:
        wait_http_ok(f"http://127.0.0.1:{env['PORT']}/healthz", START_TIMEOUT, runner)
        runner.wait_for_output("celery@", START_TIMEOUT)
        idle = startup.settled_pss_mb(lambda: tree_pss_mb(runner), startup.SETTLE_DEADLINE)
        traffic.start()
        sampler.start()
        client = celery_client(env)
        pending = []
        sent = 0
        answers: dict[str, int] = {}
        deadline = time.monotonic() + args.max_seconds
        if args.scenario == "fast":  # all at once; nothing more is sent
            for _ in range(args.burst):
                answers[client.send_task(HOLD_TASK, (args.leak_mb, 0)).id] = 0
                sent += 1
        # Keep the queue fed until the watchdog has acted often enough.
        while args.scenario == "slow" and sum(count_actions(runner.output())) < args.recycles:
            if runner.poll() is not None:
                raise AssertionError(f"the runner exited with {runner.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {sum(count_actions(runner.output()))} watchdog action(s) in "
                    f"{args.max_seconds} s"
                )
            pending = [result for result in pending if not result.ready()]
            while len(pending) < args.in_flight:
                result = client.send_task(HOLD_TASK, (args.leak_mb, args.hold_seconds))
                pending.append(result)
                answers[result.id] = 0
                sent += 1
            time.sleep(SAMPLE_SECONDS)  # pacing the sender, not waiting for an event
        # Every task sent must be answered, the last ones after the recycling.
        for task_id in answers:
            try:
                client.AsyncResult(task_id).get(timeout=RESULT_TIMEOUT, propagate=True)
                answers[task_id] = 1
            except Exception:  # lost, or failed: both count as not answered
                answers[task_id] = 0
        graceful, hard = count_actions(runner.output())
        peak = sampler.stop()
        traffic.stop()
        ran = [line for line in runner.output().splitlines() if f"Task {HOLD_TASK}[" in line]
        succeeded = [line for line in ran if "succeeded" in line]
        ids = [line.split(f"{HOLD_TASK}[", 1)[1].split("]", 1)[0] for line in succeeded]
        repeated = sorted({task_id for task_id in ids if ids.count(task_id) > 1})
        for task_id in repeated:  # say why: the lines of each task that ran more than once
            said = [line for line in runner.output().splitlines() if task_id in line]
            print(f"ran twice: {task_id}\n" + "\n".join(said), file=sys.stderr, flush=True)
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=STOP_TIMEOUT)
        return Figures(
            idle_pss_mb=idle,
            peak_pss_mb=max(peak, idle),
            budget_mb=BUDGET_MB,
            soft_line_mb=budget.usable_mb,
            last_resort_mb=budget.last_resort_mb,
            graceful_recycles=graceful,
            hard_restarts=hard,
            requests_sent=traffic.sent,
            requests_failed=len(traffic.failures),
            tasks_sent=sent,
            tasks_answered=sum(answers.values()),
            tasks_lost=sent - sum(answers.values()),
            tasks_answered_twice=len(repeated),
            seconds=time.monotonic() - began,
        )
    finally:
        sampler.done.set()
        traffic.done.set()
        if client is not None:
            client.close()
        runner.kill_tree()


# What a row shows, besides the budget.
FIGURES = (
    "idle_pss_mb",
    "peak_pss_mb",
    "graceful_recycles",
    "hard_restarts",
    "requests_sent",
    "requests_failed",
    "tasks_sent",
    "tasks_lost",
    "tasks_answered_twice",
)


def table(
    medians: dict[str, dict[str, float]],
    runs: int,
    args: argparse.Namespace,
    raised: dict[str, int] | None = None,
) -> str:
    """Medians per case; ``raised``: runs of each case that raised, left out of its medians
    (counted, and failing the benchmark, never hidden)."""
    raised = raised or {}
    lines = [
        f"Medians of {runs} run(s), {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores. "
        f"`python -m runner` defaults, MEMORY_BUDGET_MB={BUDGET_MB}; "
        + (
            f"{args.burst} tasks sent at once, each keeping {args.leak_mb} MB for good"
            if args.scenario == "fast"
            else f"{args.in_flight} tasks in flight, each keeping {args.leak_mb} MB for good "
            f"after {args.hold_seconds:g} s"
        )
        + "; HTTP traffic on `/` and `/healthz` throughout.",
        "",
        "| broker, pool | runs measured / raised | PSS at start, before traffic (MB) "
        "| peak PSS (MB) | peak / budget | graceful recycles "
        "| hard restarts | requests sent / failed | tasks sent / lost / twice |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for broker, m in medians.items():
        lines.append(
            f"| {broker} | {m['runs']:g} / {raised.get(broker, 0)} "
            f"| {m['idle_pss_mb']:.0f} | {m['peak_pss_mb']:.0f} "
            f"| {m['peak_pss_mb'] / m.get('budget_mb', BUDGET_MB):.2f} "
            f"| {m['graceful_recycles']:g} "
            f"| {m['hard_restarts']:g} | {m['requests_sent']:.0f} / {m['requests_failed']:g} "
            f"| {m['tasks_sent']:.0f} / {m['tasks_lost']:g} / {m['tasks_answered_twice']:g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.leak", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--recycles", type=int, default=2, help="watchdog actions per run")
    parser.add_argument("--broker", choices=("local", "redis", "both"), default="both")
    parser.add_argument("--scenario", choices=("slow", "fast"), default="slow")
    parser.add_argument("--pool", choices=("plan", "threads", "prefork", "both"), default="plan")
    parser.add_argument("--burst", type=int, default=12, help="fast: tasks sent at once")
    parser.add_argument("--leak-mb", type=int, default=None, help="6 (slow), 40 (fast)")
    parser.add_argument("--hold-seconds", type=float, default=2.0)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=600, help="per run, to recycle")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure here")
    args = parser.parse_args(argv)
    if args.leak_mb is None:
        args.leak_mb = 40 if args.scenario == "fast" else 6
    brokers = ("local", "redis") if args.broker == "both" else (args.broker,)
    pools = {"plan": (None,), "both": ("threads", "prefork")}.get(args.pool, (args.pool,))
    cases = [(broker, pool) for broker in brokers for pool in pools]

    def case_name(broker: str, pool: str | None) -> str:
        return f"{broker}, {pool or 'the plan pool'}"

    results: dict[str, list[dict]] = {case_name(*case): [] for case in cases}
    errors: list[str] = []
    raised: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-leak-") as tmp_name:
        tmp = Path(tmp_name)
        with RedisServer(tmp / "redis", password="bench") as server:
            for number in range(args.runs):
                for broker, pool in cases if number % 2 == 0 else cases[::-1]:
                    name = case_name(broker, pool)
                    args.pool_now = pool
                    work = tmp / f"{broker}-{pool}-{number}"
                    work.mkdir()
                    env = startup.environment(work, server.url() if broker == "redis" else None)
                    if broker == "redis":
                        with server.client() as redis_client:
                            redis_client.flushall()
                    try:
                        figures = asdict(run_once(env, work, args))
                    except Exception as error:  # report, and carry on with the others
                        errors.append(f"run {number + 1} {name}: {error!r}")
                        raised[name] = raised.get(name, 0) + 1
                        print(errors[-1], file=sys.stderr, flush=True)
                        continue
                    results[name].append(figures)
                    print(f"run {number + 1} {name}: {figures}", file=sys.stderr, flush=True)

    medians = {
        broker: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        | {"runs": len(runs)}
        for broker, runs in results.items()
        if runs
    }
    for name in results:
        if not results[name]:  # every run raised: a row that says so, not a missing one
            medians[name] = dict.fromkeys(FIGURES, float("nan")) | {"runs": 0}
    text = table(medians, args.runs, args, raised)
    print(text, end="")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine(), "runs": results, "medians": medians, "errors": errors},
                indent=2,
            )
        )
    failed = any(
        run["requests_failed"] or run["tasks_lost"] or run["hard_restarts"]
        for runs in results.values()
        for run in runs
    )
    return 1 if errors or failed else 0


if __name__ == "__main__":
    sys.exit(main())
