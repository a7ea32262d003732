"""Nothing outlives the runner: supervisord SIGKILLed (the OOM killer's way) takes every
component with it within seconds, so no web keeps answering, no beat keeps the leader lock,
and PORT is free for the next runner."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import (
    assert_no_survivors,
    become_subreaper,
    stop_being_subreaper,
    wait_for,
)
from tests.support.runner import send_add, start_runner, wait_http_ok
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

# The bound: every component gone this long after supervisord's SIGKILL.
GONE_SECONDS = 5
# Programs and their processes under supervisord: web (master + worker), worker main, and
# with prefork the embedded beat and the pool's children (with threads beat is a thread).
FEWEST_PROCESSES = {"threads": 3, "prefork": 6}


@pytest.fixture(scope="module", autouse=True)
def _orphans_come_to_us() -> Iterator[None]:
    """Orphans are reparented to this test process, which reaps them, as a container's init
    would (the PID 1 of a sandbox may never reap them, leaving zombies that prove nothing)."""
    become_subreaper()
    yield
    stop_being_subreaper()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
@pytest.mark.parametrize("broker", ["local", "redis"])
def test_sigkill_of_supervisord_leaves_no_component(
    pool, broker, request, runner_env, tmp_path: Path
):
    """Every process the runner started is gone within GONE_SECONDS of supervisord's SIGKILL,
    zombies included, and PORT can be bound again."""
    runner_env["CELERY_POOL"] = pool
    if broker == "redis":
        runner_env["REDIS_URL"] = request.getfixturevalue("redis_plain").url()
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        assert send_add(runner_env) == "5"
        components = wait_for(
            lambda: (tree := runner.tree()[1:]) and len(tree) >= FEWEST_PROCESSES[pool] and tree,
            START_TIMEOUT,
            message=lambda: f"not every process is up: {[p.cmdline() for p in runner.tree()]}",
        )
        runner.send_signal(signal.SIGKILL)
        assert_no_survivors(components, timeout=GONE_SECONDS)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("0.0.0.0", int(runner_env["PORT"])))
