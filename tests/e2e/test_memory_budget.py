"""The memory budget enforced on a real service: a leaking task is recycled, nothing is lost.

A test-only task (tests/e2e/leaky_tasks.py) makes one Celery pool child hold enough memory
to push the whole tree over the plan's soft line. The watchdog inside supervisord must see
it within a few ticks and retire that child after its task, while the web keeps answering:
the task's result arrives, every HTTP request succeeds, and the tree never reaches the budget.
"""

from __future__ import annotations

import ast
import signal
import threading
from pathlib import Path

import psutil
import pytest
import requests

from runner.budget import resolve_budget
from tests.support.processes import ProcessHandle, wait_for
from tests.support.runner import run_client, start_runner, wait_http_ok

pytestmark = pytest.mark.e2e

START_TIMEOUT = 60
# A budget whose window between the soft line (recycle) and the last-resort line (restart)
# is wide enough (62 MB) for PSS noise on a shared machine.
BUDGET_MB = 1024
TASK_SECONDS = 15  # the leaking task stays busy while the watchdog decides
REQUEST_INTERVAL = 0.1


def tree_pss_mb(runner: ProcessHandle) -> float:
    total = 0
    for process in runner.tree():
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


class Traffic(threading.Thread):
    """Requests the home page and /healthz until stopped, counting failures."""

    def __init__(self, port: str) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.sent = 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(REQUEST_INTERVAL):
            for path in ("/", "/healthz"):
                self.sent += 1
                try:
                    response = requests.get(self.base + path, timeout=10)
                    if response.status_code != 200:
                        self.failures.append(f"{path}: {response.status_code}")
                except requests.RequestException as error:
                    self.failures.append(f"{path}: {error}")


def test_a_leaking_task_is_recycled_without_losing_work(runner_env, tmp_path: Path):
    """Over the soft line the child furthest over its share is retired after its task: the
    task's result arrives, HTTP requests all succeed, and the tree stays under the budget."""
    budget = resolve_budget(BUDGET_MB, None)
    runner_env |= {
        "MEMORY_BUDGET_MB": str(BUDGET_MB),
        "CELERY_APP": "tests.e2e.leaky_tasks",
        "RUN_BEAT": "false",
    }
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        runner.wait_for_output("celery@", START_TIMEOUT)
        traffic = Traffic(runner_env["PORT"])
        traffic.start()
        idle = tree_pss_mb(runner)
        # Aim at the middle of the window between the soft and the last-resort lines.
        leak = int((budget.usable_mb + budget.last_resort_mb) / 2 - idle)
        assert leak > 0, f"the idle tree ({idle:.0f} MB) is already over the soft line"
        task_id = run_client(
            runner_env,
            f"from app.celery import app; print(app.send_task('leaky.hold', ({leak}, "
            f"{TASK_SECONDS})).id)",
            30,
        )
        peak = [idle]

        def recycled() -> bool:
            peak[0] = max(peak[0], tree_pss_mb(runner))
            return "recycling the child after its current task" in runner.output()

        wait_for(
            recycled,
            TASK_SECONDS + 20,
            interval=0.5,
            message=lambda: f"no recycling; output:\n{runner.output()[-3000:]}",
        )
        result = run_client(
            runner_env,
            f"from app.celery import app; print(app.AsyncResult('{task_id}').get(timeout=60))",
            90,
        )
        child_pid = ast.literal_eval(result)["pid"]  # the dict the task returned
        wait_for(
            lambda: not psutil.pid_exists(child_pid),
            30,
            message=f"child {child_pid} was not retired after its task",
        )
        traffic.done.set()
        traffic.join(timeout=30)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.sent > 20
    assert peak[0] < BUDGET_MB
