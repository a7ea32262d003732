"""Latency of the health path while the Celery worker is busy with CPU-heavy tasks.

    .venv/bin/python -m bench.health_latency [--requests 400] [--interval-ms 10] [--redis]
                                             [--one-core]

Starts the runner from a fresh database (the local default, or a throwaway redis-server
with ``--redis``) and times ``GET /healthz``, one request every ``--interval-ms`` like a
health checker: first while everything is idle, then while every pool process of the
worker runs ``app.tasks.burn`` (pure CPU). ``--one-core`` pins the whole service to one
CPU, closer to Render's free instance (0.1 CPU, which cannot be reproduced here). Prints a
markdown table: p50, p99 and max in milliseconds, and how many cores the worker's pool
used meanwhile (proof that it was busy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from tests.support.ports import free_port
from tests.support.processes import ProcessHandle, program_main, start_process, stop_all, wait_for
from tests.support.redis_server import RedisServer
from tests.support.runner import REPO_ROOT, build_runner_env

START_TIMEOUT = 120
STOP_TIMEOUT = 60
REQUEST_TIMEOUT = 10
BURN_SECONDS = 2.0  # one task keeps one pool process busy this long
# Tasks queued per pool process: enough to stay busy for the whole busy measurement.
QUEUED_PER_PROCESS = 40
# The pool counts as busy once its processes use this many cores together (of 1 each).
BUSY_CORES_PER_PROCESS = 0.8
CPU_SAMPLE_SECONDS = 1.0


@dataclass(frozen=True)
class Row:
    condition: str
    latencies_ms: list[float]
    pool_cores: float

    def cells(self) -> list[str]:
        ordered = sorted(self.latencies_ms)
        p99 = statistics.quantiles(ordered, n=100)[98]
        return [
            self.condition,
            str(len(ordered)),
            f"{statistics.median(ordered):.1f}",
            f"{p99:.1f}",
            f"{ordered[-1]:.1f}",
            f"{self.pool_cores:.2f}",
        ]


def worker_pool(runner: ProcessHandle) -> list[psutil.Process]:
    """The processes that run tasks: the prefork pool's children, or, with the threads pool
    (no children: beat is off here), the worker's main process itself."""
    main = program_main(runner.pid, "worker")
    return (main.children() or [main]) if main is not None else []


def cores_used(processes: list[psutil.Process], seconds: float) -> float:
    """CPU cores ``processes`` used together over the next ``seconds`` (a measurement)."""

    def total() -> float:
        used = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            used += times.user + times.system
        return used

    before, started = total(), time.monotonic()
    time.sleep(seconds)  # the sampling window of the measurement itself
    return (total() - before) / (time.monotonic() - started)


def time_requests(url: str, count: int, every_seconds: float) -> list[float]:
    """Latency of ``count`` requests, one every ``every_seconds`` (like a health checker)."""
    latencies = []
    with requests.Session() as session:
        next_at = time.monotonic()
        for _ in range(count):
            started = time.perf_counter()
            response = session.get(url, timeout=REQUEST_TIMEOUT)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            next_at += every_seconds
            time.sleep(max(0.0, next_at - time.monotonic()))  # the request schedule
    return latencies


def measure(
    condition: str, url: str, count: int, every_seconds: float, pool: list[psutil.Process]
) -> Row:
    before = {p.pid: p.cpu_times() for p in pool if p.is_running()}
    started = time.monotonic()
    latencies = time_requests(url, count, every_seconds)
    elapsed = time.monotonic() - started
    used = 0.0
    for process in pool:
        try:
            now = process.cpu_times()
        except psutil.Error:
            continue
        if process.pid in before:
            used += (now.user + now.system) - (
                before[process.pid].user + before[process.pid].system
            )
    return Row(condition, latencies, used / elapsed)


def pin_to_one_core(runner: ProcessHandle) -> None:
    pin(runner, [0])


def pin(handle: ProcessHandle, cores: list[int]) -> None:
    """Let every process of the tree run only on ``cores`` (``[]``: on every core again);
    children forked later inherit it."""
    for process in handle.tree():
        try:
            process.cpu_affinity(cores)
        except psutil.Error:
            continue


def run(count: int, every_seconds: float, use_redis: bool, one_core: bool, work: Path) -> list[Row]:
    env = build_runner_env(os.environ, work, free_port())
    env["RUN_BEAT"] = "false"  # only the web and the worker's tasks
    redis_server = None
    if use_redis:
        redis_server = RedisServer(work / "redis").start()
        env["REDIS_URL"] = redis_server.url()
    runner = start_process([sys.executable, "-m", "runner"], env, REPO_ROOT, work / "runner.log")
    try:
        url = f"http://127.0.0.1:{env['PORT']}/healthz"
        wait_for(lambda: requests.get(url, timeout=REQUEST_TIMEOUT).ok, START_TIMEOUT)
        runner.wait_for_output("ready.", START_TIMEOUT)
        if one_core:
            pin_to_one_core(runner)
        pool = wait_for(lambda: worker_pool(runner), START_TIMEOUT)
        rows = [measure("idle", url, count, every_seconds, pool)]

        # The bench process sends the tasks itself, with the service's own settings.
        os.environ.update(env | {"DJANGO_SETTINGS_MODULE": "app.settings"})
        sys.path.insert(0, str(REPO_ROOT))
        from app.celery import app

        for _ in range(QUEUED_PER_PROCESS * len(pool)):
            app.send_task("app.tasks.burn", (BURN_SECONDS,))
        busy_at = BUSY_CORES_PER_PROCESS * len(pool) / (2 if one_core else 1)
        wait_for(
            lambda: cores_used(pool, CPU_SAMPLE_SECONDS) >= busy_at,
            START_TIMEOUT,
            message="the worker's pool never got busy",
        )
        rows.append(measure("worker busy (CPU-bound tasks)", url, count, every_seconds, pool))
        app.control.purge()
        return rows
    finally:
        try:
            stop_all([runner], STOP_TIMEOUT)
        finally:
            if redis_server is not None:
                redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per condition")
    parser.add_argument(
        "--interval-ms", type=float, default=10.0, help="time between request starts"
    )
    parser.add_argument("--redis", action="store_true", help="use a throwaway redis-server")
    parser.add_argument("--one-core", action="store_true", help="pin the service to CPU 0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-health-") as work:
        rows = run(args.requests, args.interval_ms / 1000, args.redis, args.one_core, Path(work))
    cpus = "1 core (pinned)" if args.one_core else f"{psutil.cpu_count()} cores"
    broker = "Redis" if args.redis else "local default"
    print(f"`/healthz`, a request every {args.interval_ms:g} ms; {cpus}; broker: {broker}\n")
    print("| condition | requests | p50 ms | p99 ms | max ms | worker pool CPU (cores) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


if __name__ == "__main__":
    main()
