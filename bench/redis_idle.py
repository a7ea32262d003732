"""Redis commands per minute and per month while nothing happens, by part, against the seed's.

    .venv/bin/python -m bench.redis_idle [--seconds 600] [--tasks 20]

Metered Redis plans bill or cap commands: Upstash's free plan allows 500,000 a month, Redis
Cloud's free plan 100 a second. For each layout below, against a throwaway redis-server,
this starts the processes, waits until the worker is ready and beat has started, lets
start-up traffic settle, then watches every command Redis executes over ``--seconds``
(``MONITOR``: each command with the client that sent it, a script's inner commands with the
script's sender, the way ``INFO commandstats`` counts them). Each client connection is
traced to its process (psutil), so each command is billed to a part: the web, the worker's
consumer (BRPOP) and its upkeep (kombu's scans and health checks), beat (its leader lock).
Finally it counts the commands of ``--tasks`` task round trips (sent and awaited by a
client process).

The demo's periodic heartbeat task is switched off in every layout: "idle" is the service's
own traffic, not a schedule's. kombu's unacknowledged scan and binding sweep run every
10 minutes with the runner's settings: ``--seconds 600`` or more counts them.

Layouts, the same demo project and Celery settings, 2 pool processes where Celery has them:
- the seed: ``celery worker`` and ``celery beat`` with Celery's and kombu's defaults (the
  seed's web, Gunicorn, sends nothing at idle);
- the runner (``python -m runner``), one instance: web, worker, embedded beat (leader);
- the runner, two instances on one Redis (a scaled service): one beat leads, one stands by.

Prints markdown tables; every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from tests.support.ports import free_port
from tests.support.processes import ProcessHandle, start_process, stop_all, wait_for
from tests.support.redis_server import RedisServer
from tests.support.runner import REPO_ROOT, build_runner_env, run_client

START_TIMEOUT = 120
STOP_TIMEOUT = 60
CLIENT_TIMEOUT = 300
# After "ready", Celery still declares queues, restores unacked messages and beat takes its
# lock: those commands are start-up, not idle.
SETTLE_SECONDS = 15
DEFAULT_SECONDS = 600
DEFAULT_TASKS = 20
# Commands this benchmark sends itself, not counted (by INFO commandstats in bench.compare).
OWN_COMMANDS = ("config|resetstat", "info", "client|list", "config|set")
MINUTES_A_MONTH = 60 * 24 * 31  # the longest month: what a plan must last
UPSTASH_FREE_COMMANDS_A_MONTH = 500_000

WORKER_READY = "ready."
BEAT_STARTED = "beat: Starting..."

# Celery started in-process with the broker's transport options back to kombu's defaults
# (BRPOP every second, health checks every 25 s): the seed sets none of them.
CELERY_DEFAULTS = """
import sys
from app.celery import app
app.conf.broker_transport_options = {
    "visibility_timeout": (app.conf.broker_transport_options or {}).get("visibility_timeout", 3600)
}
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
    """A named set of commands started together; ``instances`` for the per-instance figure."""

    title: str
    commands: Callable[[Path, dict[str, str]], list[tuple[str, list[str], dict[str, str]]]]
    instances: int = 1


def celery(*args: str) -> list[str]:
    return [sys.executable, "-c", CELERY_DEFAULTS, *args]


def seed_layout(data: Path, env: dict[str, str]):
    return [
        (
            "worker",
            celery("worker", "--loglevel=INFO", "--concurrency=2", "--max-tasks-per-child=100"),
            env,
        ),
        ("beat", celery("beat", "--loglevel=INFO", f"--schedule={data / 'beat-schedule'}"), env),
    ]


def runner_layout(data: Path, env: dict[str, str]):
    return [("runner", [sys.executable, "-m", "runner"], env)]


def two_runners_layout(data: Path, env: dict[str, str]):
    second = env | {"PORT": str(free_port()), "RUNNER_DATA_DIR": str(data / "second")}
    return [
        ("runner", [sys.executable, "-m", "runner"], env),
        ("runner-2", [sys.executable, "-m", "runner"], second),
    ]


LAYOUTS = (
    Layout("the seed (Celery's defaults: worker + beat)", seed_layout),
    Layout("the runner, one instance", runner_layout),
    Layout("the runner, two instances on one Redis", two_runners_layout, instances=2),
)


def part_of(process: psutil.Process) -> str:
    """The part a Redis client belongs to, from its process."""
    try:
        name, cmdline = process.name(), " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if "beat" in name or " beat" in cmdline:
        return "beat"
    if "gunicorn" in cmdline or "gunicorn" in name:
        return "web"
    if "worker" in cmdline or "celery" in name:
        return "worker"
    if "supervisord" in cmdline or "runner" in cmdline:
        return "supervisor"
    return name


def part_of_command(part: str, command: str) -> str:
    if part == "worker":
        return (
            "worker: consumer (BRPOP)"
            if command == "BRPOP"
            else "worker: other (events, scans, checks)"
        )
    if part == "beat":
        return "beat: leader lock"
    return part


class CommandWatch:
    """Every command Redis executes, while it runs, billed to a part (MONITOR)."""

    def __init__(self, server: RedisServer, roots: list[int]) -> None:
        self.server = server
        self.roots = roots
        self.parts: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self._owners: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._client = redis.Redis(**(server.client_kwargs() | {"socket_timeout": None}))

    def _owner(self, port: int) -> str:
        if port not in self._owners:
            for root in self.roots:
                try:
                    tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
                except psutil.Error:
                    continue
                for process in tree:
                    try:
                        for connection in process.net_connections("tcp"):
                            if connection.raddr and connection.raddr.port == self.server.port:
                                self._owners.setdefault(connection.laddr.port, part_of(process))
                    except psutil.Error:
                        continue
        return self._owners.get(port, "unknown")

    def _watch(self) -> None:
        last_sender = "unknown"
        with self._client.monitor() as monitor:
            self._ready.set()
            for entry in monitor.listen():
                if self._stop.is_set():
                    return
                command = (entry.get("command") or "").split(" ", 1)[0].upper()
                if command in ("MONITOR", "") or command.lower() in OWN_COMMANDS:
                    continue
                if entry.get("client_type") == "lua":
                    part = last_sender
                else:
                    part = part_of_command(self._owner(int(entry.get("client_port") or 0)), command)
                    last_sender = part
                self.parts[part] += 1
                self.commands[command] += 1

    def __enter__(self) -> CommandWatch:
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        # One more command wakes the monitor loop so that it sees the stop.
        poke = self.server.client()
        try:
            poke.ping()
        finally:
            poke.close()
        self._thread.join(10)
        self._client.close()


@dataclass(frozen=True)
class Row:
    title: str
    seconds: float
    instances: int
    parts: Counter
    commands: Counter
    connections: int
    per_task: float

    @property
    def per_minute(self) -> float:
        return sum(self.parts.values()) * 60 / self.seconds

    def cells(self) -> list[str]:
        per_month = self.per_minute * MINUTES_A_MONTH
        return [
            self.title,
            f"{self.per_minute:.1f}",
            f"{self.per_minute / self.instances:.1f}",
            f"{per_month:,.0f}",
            f"{100 * per_month / UPSTASH_FREE_COMMANDS_A_MONTH:.0f} %",
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


def measure(layout: Layout, env: dict[str, str], server: RedisServer, work: Path, args) -> Row:
    data = work / layout.commands.__name__
    data.mkdir()
    handles: list[ProcessHandle] = []
    try:
        for name, argv, own_env in layout.commands(data, env):
            handles.append(start_process(argv, own_env, REPO_ROOT, data / f"{name}.log"))
        output = lambda: "".join(handle.output() for handle in handles)  # noqa: E731
        workers = layout.instances  # one worker per instance, each says "ready." once
        wait_for(
            lambda: output().count(WORKER_READY) >= workers and BEAT_STARTED in output(),
            START_TIMEOUT,
            message=lambda: f"{layout.title} did not start:\n{output()[-3000:]}",
        )
        time.sleep(SETTLE_SECONDS)  # part of the measurement protocol, not a synchronisation
        with CommandWatch(server, [handle.pid for handle in handles]) as watch:
            started = time.monotonic()
            time.sleep(args.seconds)  # the idle window being measured
            elapsed = time.monotonic() - started
        connections = connection_count(server)

        reset_stats(server)
        total = run_client(env, SEND_TASKS.format(count=args.tasks), CLIENT_TIMEOUT)
        if total != str(5 * args.tasks):
            raise RuntimeError(f"tasks returned {total!r}")
        per_task = sum(command_calls(server).values()) / args.tasks
        return Row(
            layout.title,
            elapsed,
            layout.instances,
            watch.parts,
            watch.commands,
            connections,
            per_task,
        )
    finally:
        for handle in handles:
            stop_all([handle], STOP_TIMEOUT)


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
                print(f"measured: {layout.title}", file=sys.stderr)
    print(
        f"Redis commands at idle over {args.seconds:g} s (the demo's heartbeat task off; "
        f"scripts' inner commands counted), a month = {MINUTES_A_MONTH:,} minutes, and per "
        f"task round trip ({args.tasks} `add` tasks sent and awaited)\n"
    )
    print(
        "| layout | commands/min | per instance | a month | of Upstash's free 500,000 "
        "| connections | commands per task |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    print("\nBy part, commands a minute:\n")
    print("| layout | part | commands/min | commands |")
    print("|---|---|---|---|")
    for row in rows:
        for part, n in sorted(row.parts.items(), key=lambda item: -item[1]):
            print(f"| {row.title} | {part} | {n * 60 / row.seconds:.2f} | |")
        top = ", ".join(f"{name} {n}" for name, n in row.commands.most_common())
        print(f"| {row.title} | (all, by command over the window) | | {top} |")


if __name__ == "__main__":
    main()
