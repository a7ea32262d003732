"""``python -m bench.real_project``: the real-project fixture, one service against its own three.

The cookiecutter-django fixture (tests/fixtures/cookiecutter_django, its own pins in its own
venv, PostgreSQL, plain Redis) is run twice per round, in alternating order:

- **its own layout**, the three processes of its Procfile: ``gunicorn config.wsgi:application``,
  ``celery -A config.celery_app worker --loglevel=info``, ``celery -A config.celery_app beat``
  (as three Render services would run them: Gunicorn's and Celery's defaults);
- **the runner**: ``python -m runner`` with the same variables (its plan: gthread web, the
  prefork pool the project's time limits ask for, beat embedded).

For each, from a database migrated before (as the project's build or release step would):
launch to the first 200 of ``/`` (the project's home page, a Django page), wall, and the CPU
of what a request wakes on Render (the runner's whole tree, its migrate check included; the
project's web service alone, its worker and beat being other services); launch to the
worker's "ready"; then, once the worker is ready, the settled idle PSS of the whole tree
(shared pages counted once), and for the runner each program's PSS against what the plan
reckoned for it (``python -m runner plan --json``). Medians over ``--runs``; the ratios
are the runner's over the project's own, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.startup import SETTLE_DEADLINE, cpu_seconds
from tests.support.ports import free_port
from tests.support.postgres import temporary_database
from tests.support.processes import ProcessHandle, program_of, start_process, wait_for
from tests.support.pss import settled_pss_mb, total_pss_mb
from tests.support.real_project import CELERY_APP, PRODUCTION, checkout, install, project_env, run
from tests.support.redis_server import RedisServer
from tests.support.runner import build_runner_env, wait_http_ok

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
WORKER_READY = "ready."  # celery@host ready.


def own_layout(python: Path, project: Path, env: dict, tmp: Path) -> list[ProcessHandle]:
    """The Procfile's three processes, each with the log it would have as a service."""
    bin_dir = python.parent
    commands = {
        "web": [str(bin_dir / "gunicorn"), "config.wsgi:application",
                "--bind", f"127.0.0.1:{env['PORT']}"],
        "worker": [str(bin_dir / "celery"), "-A", CELERY_APP, "worker", "--loglevel=info"],
        "beat": [str(bin_dir / "celery"), "-A", CELERY_APP, "beat", "--loglevel=info",
                 "--schedule", str(tmp / "celerybeat-schedule")],
    }  # fmt: skip
    return [
        start_process(argv, env=env, cwd=project, log_path=tmp / f"own-{name}.log")
        for name, argv in commands.items()
    ]


def runner_layout(python: Path, project: Path, env: dict, tmp: Path) -> list[ProcessHandle]:
    # Its migrate at boot, as on Render: a check, the database being migrated already.
    env = {name: value for name, value in env.items() if name != "RUN_MIGRATIONS"}
    return [
        start_process(
            [str(python), "-m", "runner"], env=env, cwd=project, log_path=tmp / "runner.log"
        )
    ]


@dataclass(frozen=True)
class Wake:
    """From launch: the first page (wall, and CPU of what wakes) and the worker's ready."""

    page_seconds: float
    page_cpu_seconds: float  # the first tree started: the runner's all, the project's web
    worker_ready_seconds: float


def wait_ready(handles: list[ProcessHandle], env: dict, launched: float) -> Wake:
    wait_http_ok(f"http://127.0.0.1:{env['PORT']}/", READY_TIMEOUT)
    page = time.monotonic() - launched
    page_cpu = cpu_seconds(handles[0].tree())
    wait_for(
        lambda: any(WORKER_READY in h.output() for h in handles),
        READY_TIMEOUT,
        message="the worker did not say it is ready",
    )
    return Wake(page, page_cpu, time.monotonic() - launched)


def stop(handles: list[ProcessHandle]) -> None:
    for handle in handles:
        handle.kill_tree()


def per_program_mb(runner: ProcessHandle) -> dict[str, float]:
    """PSS of each program's tree under supervisord (the runner's PID after its exec)."""
    found: dict[str, float] = {}
    for child in psutil.Process(runner.pid).children():
        name = program_of(child) or "beat"
        found[name] = total_pss_mb([child, *child.children(recursive=True)])
    found["supervisord"] = total_pss_mb([psutil.Process(runner.pid)])
    return found


def measure(
    start: Callable[[Path, Path, dict, Path], list[ProcessHandle]],
    python: Path,
    project: Path,
    env: dict,
    tmp: Path,
) -> tuple[Wake, float, dict[str, float]]:
    launched = time.monotonic()
    handles = start(python, project, env, tmp)
    try:
        wake = wait_ready(handles, env, launched)
        pss = settled_pss_mb(
            lambda: total_pss_mb(p for h in handles for p in h.tree()), SETTLE_DEADLINE
        )
        programs = per_program_mb(handles[0]) if len(handles) == 1 else {}
    finally:
        stop(handles)
    return wake, pss, programs


def planned_mb(python: Path, project: Path, env: dict) -> list[str]:
    done = run(python, project, env, "-m", "runner", "plan", "--json")
    done.check_returncode()
    return list(json.loads(done.stdout)["memory"]["lines"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_project", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-real-") as work_dir:
        work = Path(work_dir)
        python, _, _ = install(work / "venv")
        project = checkout(work / "cookie_shop")
        with RedisServer(work / "redis") as redis, temporary_database("bench") as database:
            base = build_runner_env({"PATH": "/usr/bin:/bin"}, work, free_port())
            env = project_env(
                base,
                database,
                DJANGO_SETTINGS_MODULE=PRODUCTION,
                REDIS_URL=redis.url(),
                CELERY_BROKER_URL=redis.url(),
                RUN_MIGRATIONS="false",
            )
            for step in (
                ("manage.py", "migrate", "--noinput"),
                ("manage.py", "collectstatic", "--noinput"),
            ):
                run(python, project, env, *step).check_returncode()
            plan_lines = planned_mb(python, project, env)
            programs = []
            pss_mb: dict[str, list[float]] = {"own": [], "runner": []}
            wakes: dict[str, list[Wake]] = {"own": [], "runner": []}
            for round_ in range(args.runs):
                order = [("own", own_layout), ("runner", runner_layout)]
                for name, start in order if round_ % 2 == 0 else reversed(order):
                    round_dir = work / f"{name}-{round_}"
                    round_dir.mkdir()
                    wake, pss, per_program = measure(start, python, project, env, round_dir)
                    pss_mb[name].append(pss)
                    wakes[name].append(wake)
                    if per_program:
                        programs.append(per_program)
                    print(f"round {round_ + 1} {name}: {pss:.0f} MB, {wake}", flush=True)
    own_mb, ours_mb = statistics.median(pss_mb["own"]), statistics.median(pss_mb["runner"])
    print("\n| cookiecutter-django 2024.04.03 (Django 4.2, Celery 5.3), idle | total PSS (MB) |")
    print("|---|---|")
    print(f"| its own three processes (its Procfile's web, worker, beat) | {own_mb:.0f} |")
    print(f"| the runner (one service) | {ours_mb:.0f} |")
    print(f"| runner / own | {ours_mb / own_mb:.2f} |")
    print("\n| from a migrated database, median | its own three | the runner | runner / own |")
    print("|---|---|---|---|")
    for field, label in (
        ("page_seconds", "launch to the first 200 of `/`, wall (s)"),
        ("page_cpu_seconds", "the same, CPU of what wakes: its web alone, the runner all (s)"),
        ("worker_ready_seconds", "launch to the worker's ready, wall (s)"),
    ):
        theirs = statistics.median(getattr(w, field) for w in wakes["own"])
        mine = statistics.median(getattr(w, field) for w in wakes["runner"])
        print(f"| {label} | {theirs:.2f} | {mine:.2f} | {mine / theirs:.2f} |")
    print("\nThe runner's programs, measured (median) against the plan:")
    for name in ("supervisord", "web", "worker"):
        values = [p[name] for p in programs if name in p]
        if values:
            print(f"- {name}: {statistics.median(values):.0f} MB measured")
    for line in plan_lines:
        print(f"- plan: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
