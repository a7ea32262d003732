"""Idle memory (PSS) of every process layout the plan can choose, and of the seed's layout.

    .venv/bin/python -m bench.process_costs [--runs 3] [--only KEY ...] [--redis]

Each scenario starts real processes with the demo project (``app``), waits until they are
ready (``/healthz`` answers, the worker logged "ready.", beat logged "Starting..."), then
samples the PSS of every process (``runner.supervise.memory.sample_tree``) every half second until
the total is stable (4 samples within 0.5 MB), and stops them by PID. Each figure is the
median of ``--runs`` runs. Results: a markdown table on stdout and in
``bench/results/process_costs.md``, every sample in ``bench/results/process_costs.json``.

Scenarios:
- ``python -m runner`` itself: its defaults (``runner-default``), the same without beat
  (``runner-nobeat``: the beat thread's cost is the worker's difference), the prefork pool
  it uses from 1024 MB (``runner-prefork``), and series over ``WEB_CONCURRENCY`` /
  ``CELERY_CONCURRENCY`` 1-3 with ``CELERY_POOL=prefork`` and beat embedded or separate,
  from which the per-child and per-thread costs are derived;
- plain commands for one program alone: Gunicorn ``gthread`` with ``--preload``, Celery's
  ``threads`` pool with and without beat;
- the seed's three services (Gunicorn, Celery worker, Celery beat), each measured alone,
  as each would run on its own Render instance, summed.

From these it derives the per-process costs that ``runner.config.budget`` records, and the ratio
of the runner's trees to the seed's layout (the issue's target is at most 0.60).

Without ``--redis`` every program uses the runner's local default broker (a folder in a
temporary directory); with it, a throwaway redis-server on a free port serves both.
Nothing is written outside temporary directories except ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from celery import Celery

from runner.config.settings import local_paths
from runner.supervise.memory import MB, ProcessTreeMemory, sample_tree
from runner.web.django_settings import runner_settings
from tests.support.ports import free_port
from tests.support.processes import ProcessHandle, start_process, stop_all, tail, wait_for
from tests.support.processes import program_of as supervised_program
from tests.support.redis_server import RedisServer
from tests.support.runner import build_runner_env

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"

DEFAULT_RUNS = 3
READY_TIMEOUT = 120.0  # seconds for a tree to answer and log "ready" (2 busy cores)
SETTLE_INTERVAL = 0.5  # seconds between two PSS samples while settling
SETTLE_WINDOW = 4  # consecutive samples that must agree
SETTLE_TOLERANCE_MB = 0.5  # ... within this spread
SETTLE_TIMEOUT = 30.0  # after this, take the last window anyway and flag it
STOP_TIMEOUT = 40.0  # SIGTERM, then this long for a graceful exit, then SIGKILL
HTTP_TIMEOUT = 5.0
TARGET_RATIO = 0.60  # issue 4: default plan vs the seed's three services
# After the idle sample, some work, then a second sample ("after work"): pool children and
# workers grow when they first run code (imports, caches, and copy-on-write pages that
# reference counting writes to), which an idle figure does not show.
WARM_PATH = "/"  # the demo's home page: a database query and a template
WARM_REQUESTS = 8  # sent 4 at a time, so that every web worker/thread serves some
WARM_PARALLEL = 4
WARM_TASK = "app.tasks.record_heartbeat"  # an ORM write
WARM_TASKS = 6  # sent at once, so that every pool child/thread runs some
WARM_TIMEOUT = 60.0

WORKER_READY = re.compile(r"celery@\S+ ready\.")
BEAT_STARTED = "beat: Starting..."


# ----------------------------------------------------------------------------------------
# What to start
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunContext:
    """Where one run lives: its temporary directory, environment and port."""

    tmp: Path
    env: Mapping[str, str]  # runner-style environment: DATABASE_URL, RUNNER_DATA_DIR, PORT
    port: int


@dataclass(frozen=True)
class Service:
    """One process tree to start, and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    http_path: str | None = None  # must answer 200 (any status when ``any_status``)
    any_status: bool = False
    log_markers: tuple[str | re.Pattern[str], ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A named layout: the services started together for one measured run."""

    key: str
    title: str
    build: Callable[[RunContext], list[Service]]
    tags: tuple[str, ...] = ()


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _markers(worker: bool, beat: bool) -> tuple[str | re.Pattern[str], ...]:
    return ((WORKER_READY,) if worker else ()) + ((BEAT_STARTED,) if beat else ())


def runner_scenario(
    key: str,
    title: str,
    *,
    web: int | None,
    worker: int | None,
    beat: str | None,
    pool: str | None = None,
) -> Scenario:
    """``python -m runner`` with RUN_*/WEB_CONCURRENCY/CELERY_CONCURRENCY/BEAT_MODE/CELERY_POOL."""

    def build(ctx: RunContext) -> list[Service]:
        env = dict(ctx.env) | {
            "RUN_WEB": _flag(web is not None),
            "RUN_WORKER": _flag(worker is not None),
            "RUN_BEAT": _flag(beat is not None),
            "RUN_MIGRATIONS": "false",  # migrated once for the whole benchmark
        }
        if web is not None:
            env["WEB_CONCURRENCY"] = str(web)
        if worker is not None:
            env["CELERY_CONCURRENCY"] = str(worker)
        if beat is not None:
            env["BEAT_MODE"] = beat
        if pool is not None:
            env["CELERY_POOL"] = pool
        return [
            Service(
                "runner",
                (sys.executable, "-m", "runner"),
                env,
                REPO_ROOT,
                http_path="/healthz" if web is not None else None,
                log_markers=_markers(worker is not None, beat is not None),
            )
        ]

    return Scenario(key, title, build, ("runner",))


def _plain_env(ctx: RunContext) -> dict[str, str]:
    """What the runner gives its programs, for a program started by hand in ``ctx.tmp``."""
    env = dict(ctx.env) | {
        "DJANGO_SETTINGS_MODULE": "app.settings",
        "PYTHONPATH": str(REPO_ROOT),  # cwd is the temporary directory, not the repository
        "PYTHONUNBUFFERED": "1",
    }
    return env


def plain_scenario(key: str, title: str, service: Callable[[RunContext], Service]) -> Scenario:
    return Scenario(key, title, lambda ctx: [service(ctx)], ("plain",))


def gthread_web(threads: int, *, workers: int = 1) -> Callable[[RunContext], Service]:
    def make(ctx: RunContext) -> Service:
        argv = (
            sys.executable, "-m", "gunicorn", "runner.web.wsgi:application",
            "--bind", f"127.0.0.1:{ctx.port}", "--preload",
            "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
        )  # fmt: skip
        return Service("web", argv, _plain_env(ctx), ctx.tmp, http_path="/healthz")

    return make


def celery_worker(pool: str, concurrency: int, *, beat: bool) -> Callable[[RunContext], Service]:
    def make(ctx: RunContext) -> Service:
        argv = (
            sys.executable, "-m", "celery", "-A", "app", "worker", "--loglevel=INFO",
            f"--pool={pool}", f"--concurrency={concurrency}",
            "--without-gossip", "--without-mingle",
        )  # fmt: skip
        if beat:
            argv += ("--beat", f"--schedule={ctx.tmp / 'celerybeat-schedule'}")
        return Service("worker", argv, _plain_env(ctx), ctx.tmp, log_markers=_markers(True, beat))

    return make


# The seed's three Render services, verbatim apart from the port and the log level (INFO,
# so that "ready" can be seen; it costs nothing measurable).
def seed_web(ctx: RunContext) -> Service:
    argv = (
        sys.executable, "-m", "gunicorn", "app.wsgi:application",
        "--bind", f"127.0.0.1:{ctx.port}", "--workers", "2", "--timeout", "120",
    )  # fmt: skip
    # app.wsgi has no /healthz (the runner adds it): any HTTP answer means a worker is up.
    return Service("web", argv, _plain_env(ctx), ctx.tmp, http_path="/", any_status=True)


def seed_worker(ctx: RunContext) -> Service:
    argv = (
        sys.executable, "-m", "celery", "-A", "app", "worker", "--loglevel=INFO",
        "--concurrency=2", "--max-tasks-per-child=100",
    )  # fmt: skip
    return Service("worker", argv, _plain_env(ctx), ctx.tmp, log_markers=_markers(True, False))


def seed_beat(ctx: RunContext) -> Service:
    argv = (sys.executable, "-m", "celery", "-A", "app", "beat", "--loglevel=INFO")
    return Service("beat", argv, _plain_env(ctx), ctx.tmp, log_markers=_markers(False, True))


def scenarios() -> list[Scenario]:
    """Every layout, in the order they run within one round."""
    found = [
        runner_scenario(
            "runner-default",
            "runner defaults (2 requests, 2 tasks, beat; the plan's pool below 1024 MB)",
            web=2,
            worker=2,
            beat="embedded",
        ),
        runner_scenario(
            "runner-nobeat",
            "runner defaults without beat (RUN_BEAT=false): the beat thread's cost by difference",
            web=2,
            worker=2,
            beat=None,
        ),
        runner_scenario(
            "runner-prefork",
            "runner, CELERY_POOL=prefork (the plan's pool from 1024 MB)",
            web=2,
            worker=2,
            beat="embedded",
            pool="prefork",
        ),
    ]
    for n in (1, 3):
        title = f"runner: web {n}, prefork {n}, beat embedded"
        found.append(
            runner_scenario(
                f"runner-emb-{n}", title, web=n, worker=n, beat="embedded", pool="prefork"
            )
        )
    for n in (1, 2, 3):
        title = f"runner: web {n}, prefork {n}, beat separate"
        found.append(
            runner_scenario(
                f"runner-sep-{n}", title, web=n, worker=n, beat="separate", pool="prefork"
            )
        )
    for t in (1, 2, 3):
        title = f"gunicorn gthread 1 worker x {t} threads, preload"
        found.append(plain_scenario(f"gthread-1x{t}", title, gthread_web(t)))
    for c in (1, 2, 3):
        for beat in (False, True):
            suffix = "-B" if beat else ""
            title = f"celery threads pool -c {c} {suffix}".strip()
            worker = celery_worker("threads", c, beat=beat)
            found.append(plain_scenario(f"threads-{c}{suffix}", title, worker))
    found += [
        plain_scenario("seed-web", "seed: gunicorn app.wsgi --workers 2 --timeout 120", seed_web),
        plain_scenario(
            "seed-worker",
            "seed: celery worker --concurrency=2 --max-tasks-per-child=100",
            seed_worker,
        ),
        plain_scenario("seed-beat", "seed: celery beat", seed_beat),
    ]
    return found


SEED_PARTS = ("seed-web", "seed-worker", "seed-beat")
COMPARED = ("runner-default", "runner-prefork")


# ----------------------------------------------------------------------------------------
# Running and measuring
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessRecord:
    """One process in the last sample of a run."""

    program: str  # supervisord, web, worker, beat
    root: bool  # the program's first process (master, main) rather than a forked child
    pid: int
    name: str
    pss_mb: float
    uss_mb: float
    rss_mb: float


@dataclass
class RunResult:
    """One measured run of one scenario."""

    scenario: str
    round: int
    total_mb: float
    programs: dict[str, float]
    processes: list[ProcessRecord]
    settled: bool
    settle_seconds: float
    sample_ms: float  # median time of one sample_tree() pass over every tree
    error: str | None = None
    samples_mb: list[float] = field(default_factory=list)
    warm_total_mb: float | None = None  # after WARM_REQUESTS requests and WARM_TASKS tasks
    warm_programs: dict[str, float] = field(default_factory=dict)
    warm_processes: list[ProcessRecord] = field(default_factory=list)


def _records(service: Service, tree: ProcessTreeMemory) -> list[ProcessRecord]:
    """Name each process's program: below supervisord by command line, else the service's."""
    program_of: dict[int, str] = {}
    roots: set[int] = set()
    supervised = service.name == "runner"
    for process in tree.processes:  # root first, then parents before children
        if process.pid == tree.root_pid:
            program_of[process.pid] = "supervisord" if supervised else service.name
            roots.add(process.pid)
        elif supervised and process.ppid == tree.root_pid:
            try:
                program = supervised_program(psutil.Process(process.pid))
            except psutil.Error:
                program = None
            program_of[process.pid] = program or "unknown"
            roots.add(process.pid)
        else:
            program_of[process.pid] = program_of.get(process.ppid, "unknown")
    return [
        ProcessRecord(
            program_of[p.pid],
            p.pid in roots,
            p.pid,
            p.name,
            round(p.pss / MB, 2),
            round(p.uss / MB, 2),
            round(p.rss / MB, 2),
        )
        for p in tree.processes
    ]


def _wait_ready(handle: ProcessHandle, service: Service, port: int) -> None:
    if service.http_path:
        url = f"http://127.0.0.1:{port}{service.http_path}"

        def answers() -> bool:
            if handle.poll() is not None:
                raise AssertionError(f"{service.name} exited: {tail(handle.output())}")
            response = requests.get(url, timeout=HTTP_TIMEOUT)
            return service.any_status or response.status_code == 200

        wait_for(answers, READY_TIMEOUT, message=lambda: f"{url}: {tail(handle.output())}")
    for marker in service.log_markers:
        handle.wait_for_output(marker, READY_TIMEOUT)


def _settle(handles: list[tuple[Service, ProcessHandle]]) -> tuple[list, bool, float, list]:
    """Sample every tree until the total PSS is stable; return the last sample and timings."""
    started = time.monotonic()
    totals: list[float] = []
    timings: list[float] = []
    while True:
        before = time.perf_counter()
        trees = [(service, sample_tree(handle.pid)) for service, handle in handles]
        timings.append(time.perf_counter() - before)
        totals.append(sum(tree.pss for _, tree in trees) / MB)
        window = totals[-SETTLE_WINDOW:]
        settled = len(window) == SETTLE_WINDOW and max(window) - min(window) <= SETTLE_TOLERANCE_MB
        if settled or time.monotonic() - started > SETTLE_TIMEOUT:
            return trees, settled, time.monotonic() - started, [totals, timings]
        time.sleep(SETTLE_INTERVAL)  # the sampling period, not a wait for something


def celery_client(env: Mapping[str, str]) -> Celery:
    """A Celery client for the run's broker and results, without Django."""
    client = Celery("bench-client")
    found = runner_settings(REPO_ROOT, env)
    client.conf.update(
        {k.removeprefix("CELERY_").lower(): v for k, v in found.items() if k.startswith("CELERY_")}
    )
    return client


def _warm(ctx: RunContext, services: list[Service]) -> None:
    """Serve some pages and run some tasks, waiting for every answer and result."""
    if any(service.http_path for service in services):
        url = f"http://127.0.0.1:{ctx.port}{WARM_PATH}"

        def fetch(_: int) -> None:
            requests.get(url, timeout=WARM_TIMEOUT).raise_for_status()

        with ThreadPoolExecutor(WARM_PARALLEL) as pool:
            list(pool.map(fetch, range(WARM_REQUESTS)))
    if any(WORKER_READY in service.log_markers for service in services):
        client = celery_client(ctx.env)
        try:
            results = [client.send_task(WARM_TASK) for _ in range(WARM_TASKS)]
            for result in results:
                result.get(timeout=WARM_TIMEOUT)
        finally:
            client.close()


def _programs(records: list[ProcessRecord]) -> dict[str, float]:
    programs: dict[str, float] = {}
    for record in records:
        programs[record.program] = round(programs.get(record.program, 0.0) + record.pss_mb, 2)
    return programs


def run_once(scenario: Scenario, round_: int, base_env: Mapping[str, str], tmp: Path) -> RunResult:
    """Start the scenario's services, wait until idle, sample, work, sample, stop them all."""
    run_tmp = tmp / f"{scenario.key}-{round_}"
    data_dir = run_tmp / "data"
    for folder in local_paths(data_dir).values():
        folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ctx = RunContext(
        run_tmp, dict(base_env) | {"RUNNER_DATA_DIR": str(data_dir), "PORT": str(port)}, port
    )
    with ExitStack() as stack:
        handles: list[tuple[Service, ProcessHandle]] = []
        services = scenario.build(ctx)
        try:
            for number, service in enumerate(services):
                handle = start_process(
                    service.argv, service.env, service.cwd, run_tmp / f"{number}-{service.name}.log"
                )
                stack.callback(stop_all, [handle], STOP_TIMEOUT)
                handles.append((service, handle))
            for service, handle in handles:
                _wait_ready(handle, service, port)
            trees, settled, seconds, (totals, timings) = _settle(handles)
            # While the processes still run: programs are told apart by command line.
            records = [record for service, tree in trees for record in _records(service, tree)]
            _warm(ctx, services)
            warm_trees, *_ = _settle(handles)
            warm = [record for service, tree in warm_trees for record in _records(service, tree)]
        except (AssertionError, OSError, requests.RequestException) as error:
            return RunResult(scenario.key, round_, 0.0, {}, [], False, 0.0, 0.0, repr(error))
    return RunResult(
        scenario.key,
        round_,
        round(sum(r.pss_mb for r in records), 2),
        _programs(records),
        records,
        settled,
        round(seconds, 1),
        round(statistics.median(timings) * 1000, 2),
        samples_mb=[round(t, 2) for t in totals],
        warm_total_mb=round(sum(r.pss_mb for r in warm), 2),
        warm_programs=_programs(warm),
        warm_processes=warm,
    )


@contextmanager
def broker_environment(
    tmp: Path, use_redis: bool
) -> Iterator[tuple[dict[str, str], Callable[[], None]]]:
    """The environment every run starts from (a database in ``tmp``, maybe a Redis), and
    a function that empties the broker: no run may find tasks a previous run left."""
    env = build_runner_env(os.environ, tmp, free_port())
    if not use_redis:
        yield env, lambda: None  # every run has its own data directory
        return
    with RedisServer(tmp / "redis", password=f"bench-{os.getpid()}") as server:

        def reset() -> None:
            with server.client() as client:
                client.flushall()

        yield env | {"REDIS_URL": server.url()}, reset


def migrate(env: Mapping[str, str], tmp: Path) -> None:
    """Create the database once; every run then starts with RUN_MIGRATIONS=false."""
    log = tmp / "migrate.log"
    with log.open("wb") as out:
        status = subprocess.call(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=REPO_ROOT,
            env=dict(env) | {"DJANGO_SETTINGS_MODULE": "app.settings"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if status != 0:
        raise SystemExit(f"migrate failed:\n{tail(log.read_text())}")


# ----------------------------------------------------------------------------------------
# From runs to figures
# ----------------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _figures(result: RunResult, warm: bool) -> tuple[float | None, dict[str, float]]:
    if warm:
        return result.warm_total_mb, result.warm_programs
    return result.total_mb, result.programs


def summarise(results: list[RunResult]) -> dict[str, dict]:
    """Per scenario: median totals (idle, after work), per-program medians, spread."""
    summary: dict[str, dict] = {}
    for key in dict.fromkeys(r.scenario for r in results):
        good = [r for r in results if r.scenario == key and r.error is None]
        names = dict.fromkeys(name for r in good for name in r.programs)
        warm = [r.warm_total_mb for r in good if r.warm_total_mb is not None]
        summary[key] = {
            "total_mb": _median([r.total_mb for r in good]),
            "min_mb": min((r.total_mb for r in good), default=None),
            "max_mb": max((r.total_mb for r in good), default=None),
            "programs_mb": {n: _median([r.programs.get(n, 0.0) for r in good]) for n in names},
            "warm_total_mb": _median(warm),
            "warm_programs_mb": {
                n: _median([r.warm_programs.get(n, 0.0) for r in good]) for n in names
            },
            "runs": len(good),
            "settled": sum(r.settled for r in good),
            "errors": [r.error for r in results if r.scenario == key and r.error],
        }
    return summary


def derive_costs(results: list[RunResult], warm: bool = False) -> dict[str, float]:
    """Per-process costs (MB): a program's first process and each extra forked child/thread.

    A program's total for 1, 2, 3 workers is close to a line (PSS splits the pages a
    master shares with its children evenly, so the master "gets cheaper" as children are
    added; only the tree total is meaningful). The slope is the cost of one more
    worker/child/thread; the total for 1 minus the slope is the first process.
    ``warm``: from the samples after work instead of the idle ones.
    """

    def program(keys: list[str], name: str) -> float | None:
        return _median(
            [
                _figures(r, warm)[1][name]
                for r in results
                if r.scenario in keys and r.error is None and name in _figures(r, warm)[1]
            ]
        )

    def line(points: dict[int, float | None]) -> tuple[float | None, float | None]:
        if points.get(1) is None or points.get(3) is None:
            return None, None
        slope = (points[3] - points[1]) / 2
        return points[1] - slope, slope

    def same_n(prefix: str, n: int) -> list[str]:
        # runner-prefork is the "2" of the embedded series
        extra = ["runner-prefork"] if n == 2 and prefix == "runner-emb" else []
        return [f"{prefix}-{n}", *extra]

    def beat_delta(with_beat: dict, without: dict) -> float | None:
        return _median(
            [
                with_beat[n] - without[n]
                for n in (1, 2, 3)
                if with_beat[n] is not None and without[n] is not None
            ]
        )

    # The runner's web: one preloaded gthread worker with WEB_CONCURRENCY threads (up to 4).
    web = {n: program(same_n("runner-emb", n) + same_n("runner-sep", n), "web") for n in (1, 2, 3)}
    web_first, web_thread = line(web)
    gthread = {t: program([f"gthread-1x{t}"], "web") for t in (1, 2, 3)}
    _, gthread_thread = line(gthread)
    prefork = {n: program(same_n("runner-sep", n), "worker") for n in (1, 2, 3)}
    prefork_main, prefork_child = line(prefork)
    prefork_beat = {n: program(same_n("runner-emb", n), "worker") for n in (1, 2, 3)}
    threads = {c: program([f"threads-{c}"], "worker") for c in (1, 2, 3)}
    threads_main, threads_thread = line(threads)
    threads_beat = {c: program([f"threads-{c}-B"], "worker") for c in (1, 2, 3)}
    runner_keys = [r.scenario for r in results if "supervisord" in r.programs]
    costs = {
        "supervisord": program(runner_keys, "supervisord"),
        "web_master_and_gthread_worker": web_first,
        "web_gthread_extra_thread": web_thread,
        "web_gthread_extra_thread_alone": gthread_thread,
        "celery_prefork_main": prefork_main,
        "celery_prefork_child": prefork_child,
        "celery_threads_main": threads_main,
        "celery_threads_thread": threads_thread,
        "beat_embedded_prefork": beat_delta(prefork_beat, prefork),
        "beat_embedded_threads": beat_delta(threads_beat, threads),
        # The runner's beat with the threads pool: a thread of the worker's main process
        # (runner.worker.beat_thread), so the worker's difference with and without it.
        "beat_thread": _difference(
            program(["runner-default"], "worker"), program(["runner-nobeat"], "worker")
        ),
        "beat_separate": program([f"runner-sep-{n}" for n in (1, 2, 3)], "beat"),
    }
    return {name: round(value, 1) for name, value in costs.items() if value is not None}


def _difference(with_it: float | None, without: float | None) -> float | None:
    return None if with_it is None or without is None else with_it - without


def ratios(summary: dict[str, dict], field_name: str = "total_mb") -> dict[str, dict]:
    """Each compared layout's total against the seed's three services summed."""
    parts = [summary.get(key, {}).get(field_name) for key in SEED_PARTS]
    if any(part is None for part in parts):
        return {}
    seed = sum(parts)
    found: dict[str, dict] = {"seed": {"total_mb": round(seed, 1)}}
    for key in COMPARED:
        total = summary.get(key, {}).get(field_name)
        if total is not None:
            found[key] = {"total_mb": total, "ratio": round(total / seed, 3)}
    return found


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def markdown(
    summary: dict, costs: dict[str, dict], compared: dict[str, dict], titles: dict, runs: int
) -> str:
    lines = [
        f"PSS in MB, median of {runs} runs: idle, and after work ({WARM_REQUESTS} requests "
        f"to `{WARM_PATH}`, {WARM_TASKS} `{WARM_TASK}` tasks). Programs: supervisord "
        "(`runner.supervise.supervisord`), web (Gunicorn), worker (Celery worker with its pool and "
        "embedded beat), beat.",
        "",
        "| Scenario | Layout | Idle | supervisord | web | worker | beat | idle min-max "
        "| After work | settled |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in summary.items():
        programs = row["programs_mb"]
        total = "error" if row["total_mb"] is None else f"{row['total_mb']:.1f}"
        spread = "" if row["min_mb"] is None else f"{row['min_mb']:.1f}-{row['max_mb']:.1f}"
        cells = " | ".join(_cell(programs.get(n)) for n in ("supervisord", "web", "worker", "beat"))
        lines.append(
            f"| `{key}` | {titles[key]} | {total} | {cells} | {spread} | "
            f"{_cell(row['warm_total_mb'])} | {row['settled']}/{row['runs']} |"
        )
    lines += ["", "Per-process costs derived from the runs above (MB):", ""]
    lines += ["| Cost | Idle | After work |", "|---|---:|---:|"]
    lines += [
        f"| {name} | {_cell(value)} | {_cell(costs['warm'].get(name))} |"
        for name, value in costs["idle"].items()
    ]
    idle, warm = compared["idle"], compared["warm"]
    if idle:
        lines += [
            "",
            f"Against the seed's three services (web + worker + beat, each measured alone): "
            f"{idle['seed']['total_mb']:.1f} MB idle, "
            f"{_cell(warm.get('seed', {}).get('total_mb'))} MB after work. "
            f"Target ratio <= {TARGET_RATIO:.2f}.",
            "",
            "| Layout | Idle | Ratio | Meets target | After work | Ratio |",
            "|---|---:|---:|---|---:|---:|",
        ]
        for key in COMPARED:
            if key in idle:
                item, after = idle[key], warm.get(key, {})
                meets = "yes" if item["ratio"] <= TARGET_RATIO else "no"
                ratio_after = after.get("ratio")
                lines.append(
                    f"| `{key}` ({titles[key]}) | {item['total_mb']:.1f} | {item['ratio']:.3f} | "
                    f"{meets} | {_cell(after.get('total_mb'))} | "
                    f"{'' if ratio_after is None else f'{ratio_after:.3f}'} |"
                )
    return "\n".join(lines) + "\n"


def machine() -> dict[str, object]:
    memory = psutil.virtual_memory()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_total_mb": round(memory.total / MB),
        "psutil": psutil.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.process_costs", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per scenario (median)")
    parser.add_argument("--only", nargs="*", metavar="KEY", help="scenario keys (default: all)")
    parser.add_argument("--redis", action="store_true", help="use a throwaway redis-server")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)

    chosen = [s for s in scenarios() if not args.only or s.key in args.only]
    titles = {s.key: s.title for s in chosen}
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as tmp_name:
        tmp = Path(tmp_name)
        with broker_environment(tmp, args.redis) as (env, reset):
            migrate(env, tmp)
            # Rounds rather than one scenario at a time: a slow drift of the machine's
            # load then touches every scenario alike.
            for round_ in range(1, args.runs + 1):
                for scenario in chosen:
                    reset()
                    result = run_once(scenario, round_, env, tmp)
                    results.append(result)
                    state = result.error or (
                        f"{result.total_mb:.1f} MB "
                        + " ".join(f"{k}={v:.1f}" for k, v in result.programs.items())
                        + ("" if result.settled else " (not settled)")
                        + f"; after work {result.warm_total_mb:.1f} MB "
                        + " ".join(f"{k}={v:.1f}" for k, v in result.warm_programs.items())
                    )
                    print(f"round {round_} {scenario.key}: {state}", file=sys.stderr, flush=True)

    summary = summarise(results)
    costs = {"idle": derive_costs(results), "warm": derive_costs(results, warm=True)}
    compared = {"idle": ratios(summary), "warm": ratios(summary, "warm_total_mb")}
    table = markdown(summary, costs, compared, titles, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "process_costs.md").write_text(table)
    (args.out / "process_costs.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "broker": "redis" if args.redis else "local filesystem",
                "settle": {
                    "interval_s": SETTLE_INTERVAL,
                    "window": SETTLE_WINDOW,
                    "tolerance_mb": SETTLE_TOLERANCE_MB,
                },
                "summary": summary,
                "costs_mb": costs,
                "ratios": compared,
                "runs": [dataclasses.asdict(r) for r in results],
            },
            indent=2,
        )
    )
    print(table)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
