"""runner.worker.hooks in a real Celery worker: named processes, one child retired gracefully.

A prefork worker (2 children, embedded beat) runs ``tests.e2e.leaky_tasks`` with the hooks
installed; the test talks to it through the local filesystem broker with its own client.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from celery import Celery

from runner.config.plan import CELERY_BEAT_NAME, CELERY_CHILD_NAME
from runner.config.settings import local_paths
from runner.supervise.memory import MB, sample_tree
from runner.web.django_settings import runner_settings
from runner.worker.hooks import RETIRE_SIGNAL
from tests.support.processes import ProcessHandle, start_process, wait_for
from tests.support.runner import REPO_ROOT, build_runner_env
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

TASK_TIMEOUT = 60
HOLD_MB = 40
# tests.e2e.leaky_tasks.HOLD_TASK, by name: importing that module would import the demo's
# Celery app (and set DJANGO_SETTINGS_MODULE) in the test process.
HOLD_TASK = "leaky.hold"
# What runner.worker.entry will do once integrated: install the hooks, then Celery's CLI.
BOOT = (
    "import sys; from runner.worker import hooks; hooks.install(); "
    "from celery.__main__ import main; sys.argv[0] = 'celery'; main()"
)


def live_children(pid: int) -> dict[int, str]:
    """PID -> kernel name of the live (not zombie) children of ``pid``."""
    found = {}
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found[child.pid] = child.name()
        except psutil.NoSuchProcess:
            continue
    return found


def pool(pid: int) -> set[int]:
    return {p for p, name in live_children(pid).items() if name == CELERY_CHILD_NAME}


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[ProcessHandle, Celery]]:
    """A prefork worker with the hooks, and a client for its broker."""
    data_dir = tmp_path / "data"
    for folder in local_paths(data_dir).values():
        folder.mkdir(parents=True)
    env = build_runner_env(os.environ, tmp_path, 0) | {
        "DJANGO_SETTINGS_MODULE": "app.settings",
        "RUNNER_DATA_DIR": str(data_dir),
    }
    argv = [
        sys.executable, "-c", BOOT,
        "-A", "tests.e2e.leaky_tasks", "worker", "--loglevel=INFO",
        "--concurrency=2", "--without-gossip", "--without-mingle",
        # Beat with the file scheduler: no database needed for this test.
        "--beat", "--scheduler=celery.beat:PersistentScheduler",
        f"--schedule={tmp_path / 'beat-schedule'}",
    ]  # fmt: skip
    client = Celery("leaky-client")
    local = runner_settings(REPO_ROOT, {"RUNNER_DATA_DIR": str(data_dir)})
    client.conf.update({name.removeprefix("CELERY_").lower(): v for name, v in local.items()})
    with start_process(argv, env, REPO_ROOT, tmp_path / "worker.log") as handle:
        handle.wait_for_output("ready.", START_TIMEOUT)
        wait_for(lambda: len(pool(handle.pid)) == 2, START_TIMEOUT, message="two named children")
        yield handle, client
        handle.send_signal(signal.SIGTERM)
        handle.wait(START_TIMEOUT)
    assert "WorkerLostError" not in handle.output()


def test_children_and_beat_carry_names(worker):
    """Pool children are named celery-child and the embedded beat celery-beat."""
    handle, _client = worker
    expected = sorted([CELERY_BEAT_NAME, CELERY_CHILD_NAME, CELERY_CHILD_NAME])
    # Beat is forked after the pool and names itself once it runs: poll, do not race it.
    wait_for(
        lambda: sorted(live_children(handle.pid).values()) == expected,
        START_TIMEOUT,
        message=lambda: f"children named {sorted(live_children(handle.pid).values())}",
    )


def test_retired_child_finishes_its_task_then_is_replaced(worker):
    """The retire signal to a busy child: its task succeeds, then a new child takes its place."""
    handle, client = worker
    before = pool(handle.pid)
    result = client.send_task(HOLD_TASK, (HOLD_MB, 3))

    def busy_child() -> int | None:
        children = sample_tree(handle.pid).children_of(handle.pid)
        return next((p.pid for p in children if p.pid in before and p.uss > HOLD_MB * MB), None)

    child = wait_for(busy_child, TASK_TIMEOUT, message="a child holding the memory")
    os.kill(child, RETIRE_SIGNAL)
    assert result.get(timeout=TASK_TIMEOUT) == {"pid": child, "held_mb": HOLD_MB}
    wait_for(
        lambda: child not in pool(handle.pid) and len(pool(handle.pid)) == 2,
        TASK_TIMEOUT,
        message=lambda: f"child {child} replaced (pool {pool(handle.pid)}, before {before})",
    )
    assert f"Task {HOLD_TASK}[{result.id}] succeeded" in handle.output()


def test_idle_child_retires_at_once(worker):
    """The retire signal to an idle child: it exits within a couple of seconds and is replaced."""
    handle, _client = worker
    child = min(pool(handle.pid))
    # Polled: the embedded beat names itself a moment after it is forked.
    beat = wait_for(
        lambda: next(
            (p for p, name in live_children(handle.pid).items() if name == CELERY_BEAT_NAME), None
        ),
        TASK_TIMEOUT,
        message=lambda: f"no child named {CELERY_BEAT_NAME}: {live_children(handle.pid)}",
    )
    os.kill(child, RETIRE_SIGNAL)
    wait_for(
        lambda: child not in pool(handle.pid) and len(pool(handle.pid)) == 2,
        TASK_TIMEOUT,
        message="idle child replaced",
    )
    assert beat in live_children(handle.pid)
