"""Head to head: the runner's one service against the seed's three, every figure in one run.

    .venv/bin/python -m bench.compare [--runs 3] [--quick] [--json PATH]

Both layouts run the demo project (``app``) on this machine, one after the other within
each run (their order alternates from run to run), against the same throwaway
redis-servers started here: a plain one and a TLS-only one (certificates made for the run,
reached with the seed's variables, ``redis://`` + ``REQUIRE_REDIS_SSL=true``, not verified).

- runner: ``python -m runner`` with its defaults, whatever they are today;
- seed: the seed guide's three services as three process trees with its flags, its build
  command's ``migrate`` first (``bench.startup.start_seed_layout``); Celery with its own
  default broker polling (BRPOP every second), since the seed's settings do not set the
  runner's (``bench.redis_idle.CELERY_DEFAULTS``).

``MEMORY_BUDGET_MB=512`` for both (the runner's plan depends on the budget it finds).
Per run and layout, from a fresh database, against plain Redis:
- launch to the first 200 of the same Django page for both (``/admin/login/``; the
  runner's ``/healthz`` answers before Django, so it is not the measure) and to the result
  of a task sent at launch, wall and CPU seconds of the whole tree
  (``bench.startup``); also the CPU of what wakes when a request reaches a sleeping free
  instance: the runner's whole tree, migrate included; the seed's web service alone (its
  migrate is part of the build); then the same layout launched again on the database it
  migrated (a wake whose database outlived the sleep), to the same page and to a task;
- with the demo's heartbeat switched off: idle PSS once settled; Redis commands over an
  idle window and the connections the layout's processes hold;
- latency of ``GET /`` (a Django page: the same work in both layouts), one request every
  10 ms, worker idle, then while the worker runs ``app.tasks.burn`` one at a time (the same
  CPU load in both: one busy core), on both cores and with every process of the layout
  pinned to one core (``bench.health_latency``);
- task round trips (``bench.redis_latency``);
- a mixed load (4 HTTP clients on ``/`` and a queue of short tasks) during which PSS and
  Redis connections are sampled for their peak.
Against TLS Redis: the task round trips again. Instance hours are arithmetic.

Prints a markdown table of medians with the ratio runner / seed (``--json PATH`` also
writes every run's figures). Every process started is stopped by PID; files only in a
temporary directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import requests

from bench import health_latency, redis_idle, redis_latency, startup
from bench.process_costs import celery_client, machine
from tests.support.certs import make_tls_material
from tests.support.processes import ProcessHandle, program_main, program_of, stop_all, wait_for
from tests.support.redis_server import RedisServer
from tests.support.runner import REPO_ROOT, run_client

CLIENT_TIMEOUT = 300
STOP_TIMEOUT = 60
START_TIMEOUT = 120
WEB_PATH = "/"  # the demo's home page: one query and a template, in both layouts
TASK_CONCURRENCY = 2  # the seed's --concurrency=2; the runner's default CELERY_CONCURRENCY
BUSY_CORES = 0.7  # the worker counts as busy once it uses this many cores (threads: 1 max)
SETTLE_SECONDS = 5.0  # after the first result: start-up traffic, beat seeing the change
LOAD_HTTP_CLIENTS = 4
LOAD_BURN_SECONDS = 0.25  # the mixed load's CPU task; every other task is an `add`
SAMPLE_SECONDS = 0.5  # PSS and connections sampling period under load
# Untimed GET / before the first timed one: Django builds its URL resolver and loads its
# templates at a page's first request, which the runner's /healthz never made.
WARM_REQUESTS = 20
WORKER_READY = " ready."  # Celery's "celery@host ready." once the worker takes tasks
PINNED_CORES = [0]
FREE_HOURS = 750  # a Render workspace's free instance hours a month
DAYS_PER_MONTH = 31

DISABLE_HEARTBEAT = (
    "import django; django.setup(); "
    "from django_celery_beat.models import PeriodicTask; "
    "task = PeriodicTask.objects.get(name='heartbeat'); task.enabled = False; task.save()"
)  # save(), not update(): beat notices the change through the model's signal


@dataclass(frozen=True)
class Profile:
    """How much of everything one run measures."""

    requests: int  # timed requests per web-latency condition
    interval_ms: float  # between request starts
    idle_seconds: float  # idle window for Redis commands
    load_seconds: float  # mixed load, sampled
    round_trips: int  # timed task round trips per Redis
    warmup: int  # untimed round trips before them


FULL = Profile(
    requests=400, interval_ms=10, idle_seconds=30, load_seconds=10, round_trips=200, warmup=20
)
QUICK = Profile(
    requests=100, interval_ms=10, idle_seconds=10, load_seconds=5, round_trips=50, warmup=10
)


@dataclass(frozen=True)
class Layout:
    key: str
    title: str
    start: Callable[[dict[str, str]], Callable[[Path], list[ProcessHandle]]]
    ready_path: str  # the first page whose 200 counts as "up"
    # The process tree that wakes up when a request reaches a sleeping free instance: None,
    # the whole layout (one instance); else the index of the web service's own tree.
    web_tree: int | None = None


def start_seed(env: dict[str, str]) -> Callable[[Path], list[ProcessHandle]]:
    return startup.start_seed_layout(env, celery=[sys.executable, "-c", redis_idle.CELERY_DEFAULTS])


# "Up" is the same page for both: one Django renders (the runner's /healthz answers before
# Django is even imported, which would credit it with a readiness the seed is not given).
READY_PATH = "/admin/login/"


def start_runner_exec(env: dict[str, str]) -> Callable[[Path], list[ProcessHandle]]:
    """The runner with each program its own interpreter (the model before the fork model)."""
    return startup.start_runner(env | {"RUNNER_FORK": "false"})


LAYOUTS = (
    Layout("runner", "runner (1 service)", startup.start_runner, READY_PATH),
    Layout("runner-exec", "runner, RUNNER_FORK=false", start_runner_exec, READY_PATH),
    Layout("seed", "seed (3 services)", start_seed, READY_PATH, web_tree=0),
)
RUNNER_KEYS = ("runner", "runner-exec")
RATIO_TITLES = {"runner": "runner / seed", "runner-exec": "RUNNER_FORK=false / seed"}
# The runner's plan depends on the memory budget it finds; pinned to Render free's, whatever
# cgroup limit the machine running the benchmark has.
BUDGET_MB = "512"


# ----------------------------------------------------------------------------------------
# The table (pure)
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    digits: int


LATENCY_CONDITIONS = (
    ("cores2_idle", "2 cores, worker idle"),
    ("cores2_busy", "2 cores, one CPU task at a time"),
    ("core1_idle", "1 core (pinned), worker idle"),
    ("core1_busy", "1 core (pinned), one CPU task at a time"),
)

METRICS = (
    Metric("idle_pss_mb", "idle memory, total PSS (MB)", 0),
    Metric("idle_rss_sum_mb", "idle memory, RSS summed per process, sharing ignored (MB)", 0),
    Metric("peak_pss_mb", "peak memory under mixed load, total PSS (MB)", 0),
    Metric("healthz_seconds", "cold start to /admin/login/ 200, wall (s)", 2),
    Metric("healthz_cpu_seconds", "cold start to /admin/login/ 200, CPU of the tree (s)", 2),
    Metric("wake_cpu_seconds", "cold start to /admin/login/ 200, CPU of the web's instance (s)", 2),
    Metric("wake_migrated_seconds", "wake, database migrated: to /admin/login/ 200, wall (s)", 2),
    Metric(
        "wake_migrated_cpu_seconds",
        "wake, database migrated: to /admin/login/ 200, CPU of the web's instance (s)",
        2,
    ),
    Metric(
        "wake_migrated_task_cpu_seconds",
        "wake, database migrated: to the first task result, CPU of the web's instance (s)",
        2,
    ),
    Metric("first_task_seconds", "cold start to first task result, wall (s)", 2),
    Metric("first_task_cpu_seconds", "cold start to first task result, CPU of the tree (s)", 2),
    Metric("worker_restart_cpu_seconds", "worker killed: CPU of its restart to ready (s)", 2),
    Metric("round_trip_plain_p50_ms", "task round trip p50, plain Redis (ms)", 1),
    Metric("round_trip_plain_p95_ms", "task round trip p95, plain Redis (ms)", 1),
    Metric("round_trip_tls_p50_ms", "task round trip p50, TLS Redis (ms)", 1),
    Metric("round_trip_tls_p95_ms", "task round trip p95, TLS Redis (ms)", 1),
    *(
        Metric(f"web_{key}_{q}_ms", f"`GET /` {q}, {title} (ms)", 1)
        for key, title in LATENCY_CONDITIONS
        for q in ("p50", "p99")
    ),
    Metric("worker_cores_cores2_busy", "worker CPU, one CPU task at a time, 2 cores (cores)", 2),
    Metric("worker_cores_core1_busy", "worker CPU, one CPU task at a time, 1 core (cores)", 2),
    Metric("load_requests_per_second", "`GET /` answered per second under mixed load", 0),
    Metric("peak_connections", "Redis connections at peak (mixed load)", 0),
    Metric("idle_connections", "Redis connections at idle", 0),
    Metric(
        "idle_commands_per_minute",
        "Redis commands per minute at idle (heartbeat off, 30 s window; 10 min: bench.redis_idle)",
        0,
    ),
)


def ratio(ours: float | None, seed: float | None) -> float | None:
    """runner / seed; None when either is missing or the seed's figure is 0."""
    if ours is None or seed is None or seed == 0:
        return None
    return ours / seed


def instance_hours(services: int, free_services: int, days: int = DAYS_PER_MONTH) -> dict:
    """Instance hours a month of ``services`` always-on services, and the hours beyond the
    free plan: only ``free_services`` of them may be free (Render has no free background
    worker nor cron job), and a workspace has FREE_HOURS free hours in all."""
    used = services * 24 * days
    free = min(free_services * 24 * days, FREE_HOURS)
    return {"hours": used, "paid_hours": used - free}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median over the runs that have it."""
    keys = dict.fromkeys(key for run in runs for key in run)
    return {key: statistics.median([run[key] for run in runs if key in run]) for key in keys}


def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(figures: dict[str, dict[str, float]]) -> str:
    """The markdown table: one row per metric, then the instance-hours arithmetic.

    ``figures`` maps "runner", "runner-exec" and "seed" to their medians; a layout with no
    figures has no column.
    """
    seed = figures.get("seed", {})
    ours = [key for key in RUNNER_KEYS if figures.get(key)] or ["runner"]
    titles = {layout.key: layout.title for layout in LAYOUTS}
    lines = [
        "| | "
        + " | ".join(titles[key] for key in ours)
        + " | seed (3 services) | "
        + " | ".join(RATIO_TITLES[key] for key in ours)
        + " |",
        "|---" * (2 + 2 * len(ours)) + "|",
    ]
    for metric in METRICS:
        values = [figures.get(key, {}).get(metric.key) for key in ours]
        b = seed.get(metric.key)
        lines.append(
            f"| {metric.label} | "
            + " | ".join(_cell(a, metric.digits) for a in values)
            + f" | {_cell(b, metric.digits)} | "
            + " | ".join(_cell(ratio(a, b), 2) for a in values)
            + " |"
        )
    one, three = instance_hours(1, 1), instance_hours(3, 1)
    for label, key in (
        (f"instance hours per month ({DAYS_PER_MONTH} days, always on)", "hours"),
        (f"of which beyond the {FREE_HOURS} free hours (paid)", "paid_hours"),
    ):
        lines.append(
            f"| {label} | "
            + " | ".join(str(one[key]) for _ in ours)
            + f" | {three[key]} | "
            + " | ".join(_cell(ratio(one[key], three[key]), 2) for _ in ours)
            + " |"
        )
    return "\n".join(lines) + "\n"


def report(
    figures: dict[str, dict[str, float]], runs: int, profile: Profile, about: dict[str, str]
) -> str:
    """The table with a heading that says what was measured, where and when."""
    heading = (
        f"Medians of {runs} run(s), {about.get('date', '')}, {about.get('machine', '')}. "
        f"runner: {about.get('runner', '`python -m runner` defaults')}; seed: Gunicorn "
        "`--workers 2 --timeout 120`, Celery worker `--concurrency=2 "
        "--max-tasks-per-child=100`, Celery beat, three process trees. Web latency: "
        f"{profile.requests} requests per condition, one every {profile.interval_ms:g} ms; "
        f"round trips: {profile.round_trips} after {profile.warmup} untimed; idle window "
        f"{profile.idle_seconds:g} s; mixed load {profile.load_seconds:g} s."
    )
    return heading + "\n\n" + table(figures)


# ----------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------
def worker_processes(handles: list[ProcessHandle]) -> list[psutil.Process]:
    """The Celery worker's processes (main, pool children, embedded beat): what runs tasks.
    The runner's are found in either model (``program_of``), the seed's by command line."""
    found = []
    for process in startup.tree_of(handles):
        try:
            argv = process.cmdline()
        except psutil.Error:
            continue
        seed_worker = "worker" in argv and not any("gunicorn" in arg for arg in argv)
        if seed_worker or program_of(process) in ("worker", "beat"):
            found.append(process)
    return found


def worker_restart_cpu(handle: ProcessHandle) -> float:
    """Kill the runner's worker (SIGKILL: a crash, or the watchdog's last resort) and return
    the CPU seconds its replacement used until Celery said it was ready."""
    runner = psutil.Process(handle.pid)
    old = program_main(runner, "worker")
    if old is None:
        raise RuntimeError("no worker under the runner")
    readies = handle.output().count(WORKER_READY)
    old.kill()

    def replaced() -> psutil.Process | None:
        new = program_main(runner, "worker")
        ready = handle.output().count(WORKER_READY) > readies
        return new if new is not None and new.pid != old.pid and ready else None

    new = wait_for(replaced, START_TIMEOUT, message="the worker was not restarted")
    return startup.cpu_seconds([new, *new.children(recursive=True)])


def redis_connections(handles: list[ProcessHandle], port: int) -> int:
    """Connections to Redis on ``port`` the layout's processes hold (a socket shared by a
    forked child counts once)."""
    local_ports = set()
    for process in startup.tree_of(handles):
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        for connection in connections:
            if (
                connection.raddr
                and connection.raddr.port == port
                and connection.status == psutil.CONN_ESTABLISHED
            ):
                local_ports.add(connection.laddr.port)
    return len(local_ports)


def pin_all(handles: list[ProcessHandle], cores: list[int]) -> None:
    for handle in handles:
        health_latency.pin(handle, cores)


def latency(prefix: str, row: health_latency.Row) -> dict[str, float]:
    values = row.latencies_ms
    return {
        f"web_{prefix}_p50_ms": statistics.median(values),
        f"web_{prefix}_p99_ms": redis_latency.percentile(values, 0.99),
        f"worker_cores_{prefix}": row.pool_cores,
    }


def round_trip_ms(env: Mapping[str, str], profile: Profile) -> list[float]:
    code = redis_latency.ROUND_TRIPS.format(count=profile.warmup + profile.round_trips)
    seconds = json.loads(run_client(env, code, CLIENT_TIMEOUT))
    return [s * 1000 for s in seconds[profile.warmup :]]


def web_latencies(
    condition: str, url: str, profile: Profile, handles: list[ProcessHandle]
) -> dict[str, float]:
    """``GET /`` on both cores, then with the layout pinned to one core."""
    every = profile.interval_ms / 1000
    worker = worker_processes(handles)
    found = latency(
        f"cores2_{condition}",
        health_latency.measure(condition, url, profile.requests, every, worker),
    )
    pin_all(handles, PINNED_CORES)
    try:
        row = health_latency.measure(condition, url, profile.requests, every, worker)
    finally:
        pin_all(handles, [])  # every core again
    return found | latency(f"core1_{condition}", row)


class OneTaskAtATime:
    """While the block runs, ``app.tasks.burn`` is sent again as soon as the last one ends."""

    def __init__(self, client) -> None:
        self.client = client
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            result = self.client.send_task("app.tasks.burn", (health_latency.BURN_SECONDS,))
            result.get(timeout=START_TIMEOUT)

    def __enter__(self) -> OneTaskAtATime:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.thread.join(START_TIMEOUT)


def mixed_load(
    url: str, client, handles: list[ProcessHandle], seconds: float, redis_port: int
) -> dict[str, float]:
    """HTTP clients on ``url`` and a queue of short tasks; peak PSS and Redis connections."""
    count = math.ceil(seconds / LOAD_BURN_SECONDS * TASK_CONCURRENCY * 2)
    for number in range(count):
        if number % 2:
            client.send_task("app.tasks.add", (2, 3))
        else:
            client.send_task("app.tasks.burn", (LOAD_BURN_SECONDS,))
    done = threading.Event()
    answered, failed = [0], [0]

    def browse() -> None:
        with requests.Session() as session:
            while not done.is_set():
                try:
                    ok = session.get(url, timeout=30).status_code == 200
                except requests.RequestException:
                    ok = False
                if ok:
                    answered[0] += 1
                else:
                    failed[0] += 1

    browsers = [threading.Thread(target=browse) for _ in range(LOAD_HTTP_CLIENTS)]
    for browser in browsers:
        browser.start()
    peak_pss = peak_connections = 0.0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peak_pss = max(peak_pss, startup.total_pss_mb(startup.tree_of(handles)))
            peak_connections = max(peak_connections, redis_connections(handles, redis_port))
            time.sleep(SAMPLE_SECONDS)  # the sampling period of the measurement
    finally:
        done.set()
        for browser in browsers:
            browser.join()
        client.control.purge()
    return {
        "peak_pss_mb": peak_pss,
        "peak_connections": peak_connections,
        "load_requests_per_second": answered[0] / seconds,
        "load_failed_requests": failed[0],
    }


def measure_plain(
    layout: Layout, server: RedisServer, profile: Profile, work: Path
) -> dict[str, float]:
    """Everything but the TLS round trips, against plain Redis, from one cold start."""
    env = startup.environment(work, server.url()) | {"MEMORY_BUDGET_MB": BUDGET_MB}
    handles, cold = startup.cold_start(layout.start(env), env, work, layout.ready_path)
    figures: dict[str, float] = asdict(cold)
    per_tree = figures.pop("healthz_cpu_per_tree")
    figures.pop("first_task_cpu_per_tree")
    # The seed's web service wakes alone (its migrate ran in the build); the runner's
    # whole tree, migrate included, is the one instance that wakes.
    figures["wake_cpu_seconds"] = (
        cold.healthz_cpu_seconds if layout.web_tree is None else per_tree[layout.web_tree]
    )
    try:
        run_client(env | {"DJANGO_SETTINGS_MODULE": "app.settings"}, DISABLE_HEARTBEAT, 60)
        settled_at = time.monotonic() + SETTLE_SECONDS
        figures["idle_pss_mb"] = startup.settled_pss_mb(
            lambda: startup.total_pss_mb(startup.tree_of(handles)), startup.SETTLE_DEADLINE
        )
        figures["idle_rss_sum_mb"] = startup.total_rss_mb(startup.tree_of(handles))
        time.sleep(max(0.0, settled_at - time.monotonic()))  # start-up traffic is not idle
        # The idle window: nothing the bench does in it talks to Redis (GET / does not).
        redis_idle.reset_stats(server)
        window_started = time.monotonic()
        url = f"http://127.0.0.1:{env['PORT']}{WEB_PATH}"
        health_latency.time_requests(url, WARM_REQUESTS, 0.0)
        figures |= web_latencies("idle", url, profile, handles)
        time.sleep(max(0.0, window_started + profile.idle_seconds - time.monotonic()))
        calls = redis_idle.command_calls(server)
        figures["idle_commands_per_minute"] = (
            sum(calls.values()) * 60 / (time.monotonic() - window_started)
        )
        figures["idle_connections"] = redis_connections(handles, server.port)

        plain = round_trip_ms(env, profile)
        figures["round_trip_plain_p50_ms"] = statistics.median(plain)
        figures["round_trip_plain_p95_ms"] = redis_latency.percentile(plain, 0.95)

        client = celery_client(env)
        try:
            # The same CPU load for both: one CPU-bound task at a time, one busy core (the
            # runner's threads pool cannot use more for Python code; the seed's prefork
            # could use two, which would make its worker twice as busy, not its web slower
            # for the same work).
            with OneTaskAtATime(client):
                worker = worker_processes(handles)
                wait_for(
                    lambda: health_latency.cores_used(worker, 1.0) >= BUSY_CORES,
                    START_TIMEOUT,
                    message="the worker never got busy",
                )
                figures |= web_latencies("busy", url, profile, handles)
            client.control.purge()
            figures |= mixed_load(url, client, handles, profile.load_seconds, server.port)
        finally:
            client.close()
        if layout.key in RUNNER_KEYS:
            figures["worker_restart_cpu_seconds"] = worker_restart_cpu(handles[0])
    finally:
        stop_all(handles, STOP_TIMEOUT)
    return figures | wake_on_migrated_database(layout, env, work)


def wake_on_migrated_database(layout: Layout, env: dict[str, str], work: Path) -> dict[str, float]:
    """A wake whose database outlived the sleep (PostgreSQL through ``DATABASE_URL``, or the
    seed's SQLite migrated by its build): the layout launched again on the database its
    first start migrated, so that ``migrate`` finds nothing to do. CPU of what wakes: the
    runner's whole tree, the seed's web service alone."""
    handles, cold = startup.cold_start(layout.start(env), env, work, layout.ready_path)
    stop_all(handles, STOP_TIMEOUT)

    def waking(per_tree: tuple[float, ...]) -> float:
        return sum(per_tree) if layout.web_tree is None else per_tree[layout.web_tree]

    return {
        "wake_migrated_seconds": cold.healthz_seconds,
        "wake_migrated_cpu_seconds": waking(cold.healthz_cpu_per_tree),
        "wake_migrated_task_cpu_seconds": waking(cold.first_task_cpu_per_tree),
    }


def measure_tls(
    layout: Layout, server: RedisServer, profile: Profile, work: Path
) -> dict[str, float]:
    """Task round trips through the layout reaching Redis over TLS, the seed's way."""
    env = startup.environment(work, None) | {"MEMORY_BUDGET_MB": BUDGET_MB}
    env |= redis_latency.redis_variables(redis_latency.WAYS[1], server, server.tls)
    handles, cold = startup.cold_start(layout.start(env), env, work, layout.ready_path)
    try:
        tls = round_trip_ms(env, profile)
    finally:
        stop_all(handles, STOP_TIMEOUT)
    return {
        "round_trip_tls_p50_ms": statistics.median(tls),
        "round_trip_tls_p95_ms": redis_latency.percentile(tls, 0.95),
        "tls_first_task_seconds": cold.first_task_seconds,
        "tls_first_task_cpu_seconds": cold.first_task_cpu_seconds,
    }


def runner_layout(env: Mapping[str, str]) -> str:
    """What ``python -m runner`` plans today, in a few words (its defaults change)."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "runner", "plan", "--json"],
            cwd=REPO_ROOT,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
        )
        plan = json.loads(result.stdout)
        memory = plan["memory"]
        web, worker = memory["web"], memory["worker"]
        commands = {p["name"]: p["command"] for p in plan["programs"]}
        beat = "embedded" if "--beat" in commands.get("worker", ()) else "separate"
        return (
            f"`python -m runner` defaults (Gunicorn gthread {web['workers']}x{web['threads']}, "
            f"Celery {worker['pool']} pool {worker['concurrency']}, beat {beat})"
        )
    except (OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError):
        return "`python -m runner` defaults"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--runs", type=int, help="runs per layout (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure here")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)

    began = time.monotonic()
    results: dict[str, list[dict[str, float]]] = {layout.key: [] for layout in LAYOUTS}
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp_name:
        tmp = Path(tmp_name)
        tls = make_tls_material(tmp / "tls")
        with (
            RedisServer(tmp / "redis-plain", password="bench") as plain,
            RedisServer(tmp / "redis-tls", password="bench", tls=tls) as secure,
        ):
            about = {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
                "runner": runner_layout(startup.environment(tmp / "plan", plain.url())),
            }
            for number in range(runs):
                order = LAYOUTS if number % 2 == 0 else LAYOUTS[::-1]  # same drift for both
                for layout in order:
                    figures: dict[str, float] = {}
                    for kind, server, measure in (
                        ("plain", plain, measure_plain),
                        ("tls", secure, measure_tls),
                    ):
                        with server.client() as redis_client:
                            redis_client.flushall()  # nothing left by the previous layout
                        work = tmp / f"{layout.key}-{number}-{kind}"
                        work.mkdir(parents=True)
                        try:
                            figures |= measure(layout, server, profile, work)
                        except Exception as error:  # report, and carry on with the others
                            errors.append(f"run {number + 1} {layout.key} {kind}: {error!r}")
                            print(errors[-1], file=sys.stderr, flush=True)
                    results[layout.key].append(figures)
                    summary = ", ".join(f"{k}={v:.3g}" for k, v in figures.items())
                    print(f"run {number + 1} {layout.key}: {summary}", file=sys.stderr, flush=True)

    figures = {key: medians(runs_of) for key, runs_of in results.items()}
    text = report(figures, runs, profile, about)
    print(text, end="")
    elapsed = time.monotonic() - began
    print(f"\n(wall time of this benchmark: {elapsed / 60:.1f} min)", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "about": about,
                    "profile": asdict(profile),
                    "runs": results,
                    "medians": figures,
                    "errors": errors,
                    "wall_seconds": round(elapsed, 1),
                    "table": text,
                },
                indent=2,
            )
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
