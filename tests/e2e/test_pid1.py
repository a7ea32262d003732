"""The runner as a container's PID 1 (a PID namespace of its own, as Docker gives it), under
the platforms' stop sequences: a running task is never lost, nothing is left behind.

``docker stop`` sends SIGTERM to PID 1 and SIGKILL 10 s later; Fly.io sends SIGINT; the OOM
killer or ``docker kill`` sends SIGKILL at once. With no platform recognised the runner's
grace is 8 s (runner.config.platform): a task still running then is given back, and the next
start runs it to its result. After a SIGKILL nothing runs in the namespace at all (the kernel
ends it with its init): the next start puts back what the dead worker had taken
(runner.worker.local_store). The local default, so nothing outside the data directory
remembers the task.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.processes import ProcessHandle, start_process, wait_for
from tests.support.runner import REPO_ROOT, run_client, wait_http_ok
from tests.support.timeouts import START_TIMEOUT
from tests.support.traffic import without_access_log

pytestmark = pytest.mark.e2e

DOCKER_STOP_SECONDS = 10  # docker stop's default: SIGKILL this long after SIGTERM
TASK_SECONDS = 20  # longer than the grace: the stop cannot wait for it
RESULT_TIMEOUT = TASK_SECONDS + 60


def require_namespaces() -> None:
    if os.geteuid() == 0 and shutil.which("unshare"):
        return
    # CI runs as root and must exercise this: there a missing root is a failure.
    if os.environ.get("CI"):
        pytest.fail("CI must run as root with unshare(1) to test the runner as PID 1")
    pytest.skip("a PID namespace needs root and unshare(1)")


def start_as_pid1(env: dict[str, str], tmp_path: Path, number: int) -> ProcessHandle:
    """``python -m runner`` as PID 1 of a new PID namespace (its own /proc mounted)."""
    argv = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "runner"]
    return start_process(argv, env=env, cwd=REPO_ROOT, log_path=tmp_path / f"pid1-{number}.log")


def init_of(handle: ProcessHandle) -> psutil.Process:
    """The runner: the namespace's PID 1, seen from outside (unshare's child)."""
    return wait_for(lambda: (psutil.Process(handle.pid).children() or [None])[0], 30)


def stop_like(platform_signal: int, init: psutil.Process, handle: ProcessHandle) -> float:
    """The platform's stop: ``platform_signal`` to PID 1, SIGKILL after docker stop's window
    (at once for SIGKILL); seconds until the namespace ended."""
    started = time.monotonic()
    os.kill(init.pid, platform_signal)
    try:
        handle.wait(timeout=DOCKER_STOP_SECONDS)
    except AssertionError:
        os.kill(init.pid, signal.SIGKILL)
        handle.wait(timeout=10)
    return time.monotonic() - started


@pytest.mark.parametrize(
    "platform_signal", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_a_running_task_survives_the_platforms_stop(runner_env, tmp_path: Path, platform_signal):
    """A 20 s task running when the platform stops the container: the runner ends within
    docker stop's 10 s (no SIGKILL needed, but for SIGKILL itself), nothing of its tree
    survives, and the next start runs the task to its result."""
    require_namespaces()
    runner_env["RUN_BEAT"] = "false"
    first = start_as_pid1(runner_env, tmp_path, 1)
    with first:
        init = init_of(first)
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, first)
        first.wait_for_output("celery@", START_TIMEOUT)
        task_id = run_client(
            runner_env,
            "from app.celery import app; "
            f"print(app.send_task('app.tasks.slow', ({TASK_SECONDS},)).id)",
            60,
        )
        first.wait_for_output(f"Task app.tasks.slow[{task_id}] received", 30)
        tree = [init, *init.children(recursive=True)]
        took = stop_like(platform_signal, init, first)
        if platform_signal != signal.SIGKILL:
            assert took < DOCKER_STOP_SECONDS, (took, without_access_log(first.output()))
            assert first.returncode == 0, without_access_log(first.output())
        wait_for(lambda: not any(p.is_running() for p in tree), 10)
    second = start_as_pid1(runner_env, tmp_path, 2)
    with second:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, second)
        result = run_client(
            runner_env,
            "from app.celery import app; "
            f"print(app.AsyncResult('{task_id}').get(timeout={RESULT_TIMEOUT}))",
            RESULT_TIMEOUT + 30,
        )
        assert float(result) == TASK_SECONDS, without_access_log(second.output())
        init = init_of(second)
        zombies = [p for p in init.children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]
        assert zombies == [], zombies
        took = stop_like(signal.SIGTERM, init, second)
        assert second.returncode == 0 and took < DOCKER_STOP_SECONDS
