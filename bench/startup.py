"""Start-up, idle memory and shutdown of the combined runner, against the seed's layout.

    .venv/bin/python -m bench.startup [--runs 3] [--redis]

For each run, from a fresh database: wall seconds from launch to ``/healthz`` 200 and to the
result of a task sent at launch; CPU seconds summed over the whole process tree at that
point (Render's free CPU is 0.1 core, so a user waits roughly ten times that); total PSS of
the idle tree; seconds from SIGTERM to exit. The seed's layout (Gunicorn, a Celery worker
and Celery beat as three separate process trees, with the seed's flags) is measured in the
same run, and figures are reported as medians and as ratios against it.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from runner.config.settings import local_paths
from tests.support.ports import free_port
from tests.support.processes import ProcessHandle, start_process, wait_for
from tests.support.pss import settled_pss_mb, total_pss_mb
from tests.support.redis_server import RedisServer
from tests.support.runner import REPO_ROOT, build_runner_env

START_TIMEOUT = 120
SETTLE_DEADLINE = 60.0  # a tree still moving after this long is measured as it is


@dataclass(frozen=True)
class Run:
    healthz_seconds: float
    first_task_seconds: float
    cpu_seconds: float
    idle_pss_mb: float
    stop_seconds: float


def tree_of(handles: list[ProcessHandle]) -> list[psutil.Process]:
    return [p for handle in handles for p in handle.tree()]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU of the live processes plus everything they already reaped (e.g. migrate)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def total_rss_mb(processes: list[psutil.Process]) -> float:
    """RSS summed per process: what the tree would use if no page were shared (every
    process counting the pages it shares as its own). Minus the PSS total, it is what
    sharing saves (preloaded imports, forking after imports)."""
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # gone meanwhile
            continue
    return total / 2**20


def send_task_at_launch(env: dict[str, str]) -> subprocess.Popen:
    code = (
        "from app.celery import app; print(app.send_task('app.tasks.add', (2, 3)).get(timeout=120))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@dataclass(frozen=True)
class ColdStart:
    """Wall and CPU seconds (whole process tree) from launch to the first 200 and first result."""

    healthz_seconds: float
    healthz_cpu_seconds: float
    first_task_seconds: float
    first_task_cpu_seconds: float
    # At /healthz and at the first result, per process tree in the order started, without
    # the bench's own migrate.
    healthz_cpu_per_tree: tuple[float, ...] = ()
    first_task_cpu_per_tree: tuple[float, ...] = ()


def cold_start(
    start: Callable[[Path], list[ProcessHandle]], env: dict[str, str], work: Path, path: str
) -> tuple[list[ProcessHandle], ColdStart]:
    """Launch a layout and time it to ``path`` answering 200 and to a task sent at launch.

    The layout is left running for the caller to measure further and stop; only if this
    fails are its processes killed here.
    """
    launched = time.monotonic()
    handles = start(work)
    client = send_task_at_launch(env)
    try:
        url = f"http://127.0.0.1:{env['PORT']}{path}"

        def healthy() -> bool:
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, START_TIMEOUT, message="no /healthz")
        healthz = time.monotonic() - launched
        extra, EXTRA_CPU[0] = EXTRA_CPU[0], 0.0
        per_tree = tuple(cpu_seconds(handle.tree()) for handle in handles)
        cpu = sum(per_tree) + extra
        wait_for(lambda: client.poll() is not None, START_TIMEOUT, message="no task result")
        first_task = time.monotonic() - launched
        task_per_tree = tuple(cpu_seconds(handle.tree()) for handle in handles)
        task_cpu = sum(task_per_tree) + extra
        if client.stdout.read().strip() != "5":
            raise RuntimeError("the task did not return 5")
    except BaseException:
        for handle in handles:
            handle.kill_tree()
        raise
    finally:
        client.kill()
        client.wait()
        client.stdout.close()
    return handles, ColdStart(healthz, cpu, first_task, task_cpu, per_tree, task_per_tree)


def measure(
    start: Callable[[Path], list[ProcessHandle]], env: dict[str, str], work: Path, path: str
) -> Run:
    handles, cold = cold_start(start, env, work, path)
    try:
        pss = settled_pss_mb(lambda: total_pss_mb(tree_of(handles)), SETTLE_DEADLINE)
        stopping = time.monotonic()
        for handle in handles:
            handle.send_signal(signal.SIGTERM)
        for handle in handles:
            handle.wait(timeout=60)
        stop = time.monotonic() - stopping
        return Run(
            cold.healthz_seconds, cold.first_task_seconds, cold.healthz_cpu_seconds, pss, stop
        )
    finally:
        for handle in handles:
            handle.kill_tree()


EXTRA_CPU = [0.0]  # CPU seconds of a start step the bench itself ran and reaped


def start_runner(env: dict[str, str]) -> Callable[[Path], list[ProcessHandle]]:
    def start(work: Path) -> list[ProcessHandle]:
        return [
            start_process([sys.executable, "-m", "runner"], env, REPO_ROOT, work / "runner.log")
        ]

    return start


def migrate(env: dict[str, str], timeout: float = START_TIMEOUT) -> None:
    """The demo's ``manage.py migrate --noinput``, as the seed's build command runs it."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        env=env,
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=timeout,
    )


def start_seed_layout(
    env: dict[str, str], celery: list[str] | None = None
) -> Callable[[Path], list[ProcessHandle]]:
    """The seed's three services, with its flags, as three process trees.

    ``celery`` replaces ``python -m celery -A app`` in the worker's and beat's commands.
    """
    python = sys.executable
    celery = celery or [python, "-m", "celery", "-A", "app"]

    def start(work: Path) -> list[ProcessHandle]:
        # The seed's build command migrates; counted in its start like our RUN_MIGRATIONS
        # (our runner reaps its migrate process, so its CPU shows in the runner's tree).
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        migrate(env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        EXTRA_CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        commands = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "app.wsgi:application",
                "--bind",
                f"0.0.0.0:{env['PORT']}",
                "--workers",
                "2",
                "--timeout",
                "120",
            ],
            "worker": [
                *celery,
                "worker",
                "--loglevel=info",
                "--concurrency=2",
                "--max-tasks-per-child=100",
            ],
            "beat": [
                *celery,
                "beat",
                "--loglevel=info",
                f"--schedule={work / 'celerybeat-schedule'}",
            ],
        }
        return [
            start_process(argv, env, REPO_ROOT, work / f"{name}.log")
            for name, argv in commands.items()
        ]

    return start


def environment(work: Path, redis_url: str | None) -> dict[str, str]:
    env = build_runner_env(os.environ, work, free_port())
    # The seed's layout has no runner to make the local default's folders (staging too).
    for folder in local_paths(work / "data").values():
        folder.mkdir(parents=True, exist_ok=True)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(run, field) for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis", action="store_true", help="use a redis-server, not files")
    args = parser.parse_args()
    # The seed's project has no /healthz: its first page that answers 200 stands in.
    layouts = {
        "runner": (start_runner, "/healthz"),
        "seed (3 services)": (start_seed_layout, "/admin/login/"),
    }
    results: dict[str, list[Run]] = {name: [] for name in layouts}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        server = RedisServer(Path(tmp) / "redis", password="bench").start() if args.redis else None
        try:
            for number in range(args.runs):
                for name, (layout, path) in layouts.items():  # interleaved: same noise
                    work = Path(tmp) / f"{name.split()[0]}-{number}"
                    work.mkdir()
                    env = environment(work, server.url() if server else None)
                    results[name].append(measure(layout(env), env, work, path))
                    print(f"run {number + 1} {name}: {results[name][-1]}", file=sys.stderr)
        finally:
            if server:
                server.stop()
    fields = [
        ("healthz_seconds", "launch to /healthz 200 (s)"),
        ("first_task_seconds", "launch to first task result (s)"),
        ("cpu_seconds", "CPU at /healthz, whole tree (s)"),
        ("idle_pss_mb", "idle memory, total PSS (MB)"),
        ("stop_seconds", "SIGTERM to exit (s)"),
    ]
    broker = "Redis" if args.redis else "local files"
    print(f"\nMedians of {args.runs} runs, broker: {broker}\n")
    print("| | runner | seed (3 services) | ratio |\n|---|---|---|---|")
    for field, label in fields:
        ours, seed = median(results["runner"], field), median(results["seed (3 services)"], field)
        print(f"| {label} | {ours:.2f} | {seed:.2f} | {ours / seed:.2f} |")


if __name__ == "__main__":
    main()
