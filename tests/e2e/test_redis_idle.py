"""An idle service fits a metered Redis plan: at most 5 commands a minute, counted by Redis.

One runner (web, worker, embedded beat with its leader lock) on a real redis-server, the
demo's own periodic task switched off so that "idle" is the runner's and Celery's traffic.
Redis counts every command it executes (``INFO commandstats``, scripts' inner commands
included) over ``IDLE_WINDOW_SECONDS``. Then what the cuts must not cost: a task sent to the
idle worker is delivered at once (BRPOP returns when the task is queued, however long its
timeout), and a SIGTERM right after a task -- when the worker's next BRPOP has just started
its minute -- stops the runner without waiting for it (``runner.worker.idle``).

The parts that run every 10 minutes (kombu's unacknowledged scan and binding sweep, about
0.6 a minute together) fall outside a two-minute window: ``python -m bench.redis_idle
--seconds 600`` counts them.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from runner.worker import idle
from runner.worker.idle import BROKER_POLLING_SECONDS
from tests.support.ports import free_port
from tests.support.processes import assert_no_survivors, wait_for
from tests.support.redis_server import RedisServer
from tests.support.runner import build_runner_env, run_client, start_runner
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

CLIENT_TIMEOUT = 120
IDLE_WINDOW_SECONDS = 120  # the issue asks for at least two minutes
MAX_COMMANDS_PER_MINUTE = 5
# After "ready", Celery still declares queues, scans unacknowledged messages and beat takes
# its lock: start-up traffic, not idle. Part of the measurement protocol.
SETTLE_SECONDS = 10
# A task sent to the idle worker: its result back within this long (measured: ~0.05 s; a
# worker that polled instead of blocking would take up to BROKER_POLLING_SECONDS).
IDLE_TASK_BOUND_SECONDS = 5
# SIGTERM just after a task: the runner is gone long before the warm shutdown's bound (20 s
# by default), which a worker waiting for its pending BRPOP's minute would reach. Measured
# here: 1.9 s; 21.0 s without runner.worker.idle's unblock.
STOP_BOUND_SECONDS = 10
OWN_COMMANDS = {"config|resetstat", "info", "client|list", "client|setname", "hello", "ping"}

DISABLE_HEARTBEAT = (
    "import django; django.setup(); "
    "from django.core.management import call_command; call_command('migrate', verbosity=0); "
    "from django_celery_beat.models import PeriodicTask; "
    "PeriodicTask.objects.filter(name='heartbeat').update(enabled=False)"
)
ROUND_TRIP = """
import time
from app.celery import app
started = time.monotonic()
assert app.send_task("app.tasks.add", (2, 3)).get(timeout=60) == 5
print(f"{time.monotonic() - started:.3f}")
"""


def command_calls(server: RedisServer, connection) -> dict[str, int]:
    stats = connection.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    return {name: n for name, n in calls.items() if name not in OWN_COMMANDS}


def test_idle_service_sends_at_most_five_commands_a_minute(tmp_path):
    with RedisServer(tmp_path / "redis", password="idle-test") as server:
        env = build_runner_env(os.environ, tmp_path, free_port())
        env |= {
            "REDIS_URL": server.url(),
            "DJANGO_SETTINGS_MODULE": "app.settings",
            "RUN_MIGRATIONS": "false",
        }
        run_client(env, DISABLE_HEARTBEAT, CLIENT_TIMEOUT)
        runner = start_runner(env, tmp_path)
        try:
            runner.wait_for_output("ready.", START_TIMEOUT)
            runner.wait_for_output("leader: this instance sends", START_TIMEOUT)
            time.sleep(SETTLE_SECONDS)  # measurement protocol, see SETTLE_SECONDS
            counter = server.client()
            try:
                counter.config_resetstat()
                started = time.monotonic()
                time.sleep(IDLE_WINDOW_SECONDS)  # the window being measured
                calls = command_calls(server, counter)
                minutes = (time.monotonic() - started) / 60
            finally:
                counter.close()
            per_minute = sum(calls.values()) / minutes
            print(f"idle: {per_minute:.1f} commands a minute: {calls}")
            assert per_minute <= MAX_COMMANDS_PER_MINUTE, calls

            took = float(run_client(env, ROUND_TRIP, CLIENT_TIMEOUT))
            print(f"a task sent while idle: result in {took:.3f} s")
            assert took < IDLE_TASK_BOUND_SECONDS

            tree = runner.tree()
            stop_started = time.monotonic()
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(timeout=BROKER_POLLING_SECONDS * 2) == 0, runner.output()[-3000:]
            stopped_in = time.monotonic() - stop_started
            print(f"SIGTERM right after a task: exited in {stopped_in:.1f} s")
            assert stopped_in < STOP_BOUND_SECONDS, runner.output()[-3000:]
            assert_no_survivors(tree, timeout=10)
        finally:
            runner.kill_tree()


def test_a_stock_celery_worker_on_the_runners_settings_takes_a_task_at_once(tmp_path):
    """`celery -A app worker` as a developer runs it (gossip, mingle and heartbeat on) on the
    settings runner_settings() gives: an idle worker takes a task at once. The minute-long
    BRPOP is the runner's worker's own; in the settings, it made this worker take up to a
    minute (measured 49 s)."""
    import sys

    from tests.support.processes import start_process
    from tests.support.runner import REPO_ROOT

    with RedisServer(tmp_path / "redis", password="stock-test") as server:
        env = build_runner_env(os.environ, tmp_path, free_port())
        env |= {"REDIS_URL": server.url(), "DJANGO_SETTINGS_MODULE": "app.settings"}
        stock = start_process(
            [sys.executable, "-m", "celery", "-A", "app", "worker", "-l", "info"],
            env=env,
            cwd=REPO_ROOT,
            log_path=tmp_path / "stock-worker.log",
        )
        with stock:
            stock.wait_for_output("ready.", START_TIMEOUT)
            time.sleep(SETTLE_SECONDS)  # idle, its BRPOP pending (the case that was slow)
            took = float(run_client(env, ROUND_TRIP, CLIENT_TIMEOUT))
            print(f"stock celery worker, a task sent while idle: result in {took:.3f} s")
            assert took < IDLE_TASK_BOUND_SECONDS, stock.output()[-3000:]
            stock.send_signal(signal.SIGTERM)
            stock.wait(timeout=30)


class ChannelStandIn:
    """What ``idle.unblock`` reads of a kombu channel: its client name and connection."""

    def __init__(self, server: RedisServer, name: str) -> None:
        self.client_name = name
        self._server = server

    def _connparams(self, asynchronous: bool = False) -> dict:
        return self._server.client_kwargs() | {"connection_class": redis.Connection}


def test_unblock_ends_only_this_processs_pending_brpop_at_once(tmp_path):
    name = idle.client_name()
    with RedisServer(tmp_path / "redis", password="unblock-test") as server:
        ours = server.client(socket_timeout=None, client_name=name)
        theirs = server.client(socket_timeout=None, client_name=idle.client_name(pid=1))
        answers: dict[str, object] = {}
        threads = [
            threading.Thread(target=lambda c=c, k=k: answers.update({k: c.brpop(["q"], 60)}))
            for k, c in (("ours", ours), ("theirs", theirs))
        ]
        try:
            for thread in threads:
                thread.start()
            watcher = server.client()
            blocked = lambda: [c for c in watcher.client_list() if "b" in c["flags"]]  # noqa: E731
            wait_for(lambda: len(blocked()) == 2, 10, message="the BRPOPs did not start")

            assert idle.unblock(ChannelStandIn(server, name)) == 1
            threads[0].join(5)
            assert not threads[0].is_alive() and answers["ours"] is None  # as if timed out
            assert [c["name"] for c in blocked()] == [idle.client_name(pid=1)]
            assert idle.unblock(ChannelStandIn(server, "runner:elsewhere:1")) == 0
        finally:
            watcher.lpush("q", "wake")  # ends the other BRPOP
            for thread in threads:
                thread.join(10)
            for client in (ours, theirs, watcher):
                client.close()
        assert answers["theirs"] == (b"q", b"wake")
