"""Redis commands per minute while nothing happens: Celery's defaults against the runner's.

    .venv/bin/python -m bench.redis_idle [--seconds 120] [--tasks 20]

Metered Redis plans bill or cap commands (Upstash per command, Redis Cloud's free plan at
100 ops/s), and an idle Celery deployment is never silent. For each layout below, against
a throwaway redis-server, this starts the processes, waits until the worker is ready and
start-up traffic has settled, then counts every command Redis executes over ``--seconds``
(``CONFIG RESETSTAT``, then ``INFO commandstats``) and the connections held; finally it
counts the commands of ``--tasks`` task round trips (sent and awaited by a client process).
The demo's periodic heartbeat is switched off, so "idle" is Celery's own traffic.

Layouts, the same demo project and Celery settings, the same 2 pool processes and beat:
- Celery's defaults: the seed's commands, ``celery worker`` and ``celery beat``;
- the runner before issue 3: ``--without-gossip --without-mingle``, beat embedded;
- the runner now (``python -m runner``): also ``--without-heartbeat`` and BRPOP every 5 s
  (``runner.web.django_settings.BROKER_POLLING_SECONDS``).

Prints a markdown table; every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import ProcessHandle, start_process, wait_for
from tests.support.redis_server import RedisServer
from tests.support.runner import REPO_ROOT, build_runner_env, run_client

START_TIMEOUT = 120
STOP_TIMEOUT = 60
CLIENT_TIMEOUT = 300
# After "ready", Celery still declares queues, restores unacked messages and beat loads its
# schedule: those commands are start-up, not idle.
SETTLE_SECONDS = 10
DEFAULT_SECONDS = 120
DEFAULT_TASKS = 20
# Commands this benchmark sends itself, not counted.
OWN_COMMANDS = ("config|resetstat", "info", "client|list", "config|set")

WORKER_READY = "ready."
BEAT_STARTED = "beat: Starting..."

# Celery started in-process with the broker's polling back to kombu's default (BRPOP every
# second): what the layouts before this change ran.
CELERY_DEFAULTS = """
import sys
from app.celery import app
options = dict(app.conf.broker_transport_options or {})
options.pop("polling_interval", None)
app.conf.broker_transport_options = options
app.start(sys.argv[1:])
"""

DISABLE_HEARTBEAT = (
    "from django_celery_beat.models import PeriodicTask; "
    "PeriodicTask.objects.filter(name='heartbeat').update(enabled=False)"
)

SEND_TASKS = """
from app.celery import app
results = [app.send_task("app.tasks.add", (2, 3)) for _ in range({count})]
print(sum(r.get(timeout=60) for r in results))
"""


@dataclass(frozen=True)
class Layout:
    """A named set of commands started together."""

    title: str
    commands: Callable[[Path], list[tuple[str, list[str]]]]  # data dir -> (name, argv)


def celery(*args: str) -> list[str]:
    return [sys.executable, "-c", CELERY_DEFAULTS, *args]


def seed_layout(data: Path) -> list[tuple[str, list[str]]]:
    return [
        (
            "worker",
            celery("worker", "--loglevel=INFO", "--concurrency=2", "--max-tasks-per-child=100"),
        ),
        ("beat", celery("beat", "--loglevel=INFO", f"--schedule={data / 'beat-schedule'}")),
    ]


def runner_before_layout(data: Path) -> list[tuple[str, list[str]]]:
    argv = celery(
        "worker",
        "--loglevel=INFO",
        "--concurrency=2",
        "--max-tasks-per-child=100",
        "--without-gossip",
        "--without-mingle",
        "--beat",
        f"--schedule={data / 'beat-schedule'}",
    )
    return [("worker", argv)]


def runner_layout(data: Path) -> list[tuple[str, list[str]]]:
    return [("runner", [sys.executable, "-m", "runner"])]


LAYOUTS = (
    Layout("Celery's defaults (the seed's worker + beat)", seed_layout),
    Layout("runner before issue 3 (no gossip, no mingle)", runner_before_layout),
    Layout("runner now (+ no heartbeat events, BRPOP every 5 s)", runner_layout),
)


@dataclass(frozen=True)
class Row:
    title: str
    seconds: float
    calls: dict[str, int]  # command -> calls during the idle window
    connections: int
    per_task: float

    def cells(self) -> list[str]:
        per_minute = 60 / self.seconds
        total = sum(self.calls.values())
        brpop = self.calls.get("brpop", 0)
        publish = self.calls.get("publish", 0)
        return [
            self.title,
            f"{total * per_minute:.0f}",
            f"{brpop * per_minute:.0f}",
            f"{publish * per_minute:.0f}",
            f"{(total - brpop - publish) * per_minute:.0f}",
            str(self.connections),
            f"{self.per_task:.1f}",
        ]


def command_calls(server: RedisServer) -> dict[str, int]:
    client = server.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    return {name: n for name, n in calls.items() if name not in OWN_COMMANDS}


def reset_stats(server: RedisServer) -> None:
    client = server.client()
    try:
        client.config_resetstat()
    finally:
        client.close()


def connection_count(server: RedisServer) -> int:
    client = server.client()
    try:
        return len(client.client_list()) - 1  # not this one
    finally:
        client.close()


def stop(handle: ProcessHandle) -> None:
    """SIGTERM, a graceful exit within STOP_TIMEOUT, then SIGKILL for whatever is left."""
    try:
        if handle.poll() is None:
            handle.send_signal(signal.SIGTERM)
            handle.wait(STOP_TIMEOUT)
    except AssertionError:
        pass  # still running: kill_tree() below ends it
    finally:
        handle.kill_tree()


def measure(layout: Layout, env: dict[str, str], server: RedisServer, work: Path, args) -> Row:
    data = work / layout.commands.__name__
    data.mkdir()
    handles: list[ProcessHandle] = []
    try:
        for name, argv in layout.commands(data):
            handles.append(start_process(argv, env, REPO_ROOT, data / f"{name}.log"))
        output = lambda: "".join(handle.output() for handle in handles)  # noqa: E731
        wait_for(
            lambda: WORKER_READY in output() and BEAT_STARTED in output(),
            START_TIMEOUT,
            message=lambda: f"{layout.title} did not start:\n{output()[-3000:]}",
        )
        time.sleep(SETTLE_SECONDS)  # part of the measurement protocol, not a synchronisation
        reset_stats(server)
        started = time.monotonic()
        time.sleep(args.seconds)  # the idle window being measured
        calls = command_calls(server)
        elapsed = time.monotonic() - started
        connections = connection_count(server)

        reset_stats(server)
        total = run_client(env, SEND_TASKS.format(count=args.tasks), CLIENT_TIMEOUT)
        if total != str(5 * args.tasks):
            raise RuntimeError(f"tasks returned {total!r}")
        per_task = sum(command_calls(server).values()) / args.tasks
        return Row(layout.title, elapsed, calls, connections, per_task)
    finally:
        for handle in handles:
            stop(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="idle window")
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="round trips counted")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-idle-") as directory:
        work = Path(directory)
        with RedisServer(work / "redis", password="bench") as server:
            env = build_runner_env(os.environ, work, free_port())
            env |= {
                "REDIS_URL": server.url(),
                "DJANGO_SETTINGS_MODULE": "app.settings",
                "RUN_MIGRATIONS": "false",  # migrated once below, for every layout
            }
            run_client(
                env,
                "import django; django.setup(); from django.core.management import "
                f"call_command; call_command('migrate', verbosity=0); {DISABLE_HEARTBEAT}",
                CLIENT_TIMEOUT,
            )
            for layout in LAYOUTS:
                rows.append(measure(layout, env, server, work, args))
    print(
        f"Redis commands per minute at idle, over {args.seconds:g} s (heartbeat task off), "
        f"and per task round trip ({args.tasks} `add` tasks sent and awaited)\n"
    )
    print(
        "| layout | commands/min | BRPOP/min | PUBLISH/min | other/min | connections "
        "| commands per task |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    print(
        "\nIdle commands of the last layout: "
        + ", ".join(
            f"{name} {n}" for name, n in sorted(rows[-1].calls.items(), key=lambda c: -c[1])
        )
    )


if __name__ == "__main__":
    main()
