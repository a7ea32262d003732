"""Settings -> Plan: which programs run, with which commands, how many processes, how stopped.

Pure: no I/O, so every combination of flags is covered by table-driven tests. The plan is
what ``python -m runner plan`` prints and what ``runner.config.supervisord_conf`` renders.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from runner.config.budget import Budget, resolve_budget
from runner.config.connections import RedisConnections, budget_for
from runner.config.memory_plan import MemoryPlan, WebShape, WorkerShape, plan_memory
from runner.config.project import (
    CELERY_DEFAULT_SCHEDULER,
    DATABASE_SCHEDULER,
    Project,
    celery_notes,
)
from runner.config.redis import broker_redis_url, mask_url
from runner.config.settings import BEAT_LEADER_SCHEDULER, KEEP_AWAKE_MINUTES, Settings
from runner.config.versions import Versions

# Small defaults that fit a 512 MB instance (the seed's own flags: 2 web workers, 2 tasks).
DEFAULT_WEB_CONCURRENCY = 2
DEFAULT_CELERY_CONCURRENCY = 2

# Gunicorn recycles a worker after this many requests, with jitter so that workers do not
# all restart at once (a slow leak then never reaches the budget).
WEB_MAX_REQUESTS = 1000
WEB_MAX_REQUESTS_JITTER = 100
# gthread, with each request read in the event loop before a thread takes it: slow clients
# cannot hold the threads (runner.web.read_ahead).
WEB_WORKER_CLASS = "runner.web.read_ahead.ReadAheadThreadWorker"
# Open connections a web worker keeps (Gunicorn's default is 1000). Each may hold up to
# ~96 KB of a request being read ahead: 100 bound that to ~10 MB of the memory budget.
WEB_WORKER_CONNECTIONS = 100

# A program that dies within this many seconds of starting "did not start"; after
# START_RETRIES such failures supervisord gives up and the runner stops with an error.
START_SECONDS = 10
START_RETRIES = 2

# Seconds between supervisord sending the stop signal and our own escalation: the web and
# the worker get the grace minus this margin to finish what they are doing, so that the
# cold shutdown (requeueing unfinished tasks) still fits inside the grace.
STOP_MARGIN_SECONDS = 5

# With the web in the same instance, the worker and beat run at this niceness: on a small
# CPU share (Render free: 0.1 CPU) a CPU-heavy task then slows pages down far less, and the
# tasks get the CPU whenever the web is idle (bench/compare.py measures it).
BACKGROUND_NICENESS = 10
NICENESS_VARIABLE = "RUNNER_NICENESS"
# The scheduler beat runs inside the leader lock, read by runner.worker.beat_leader.
BEAT_SCHEDULER_VARIABLE = "RUNNER_BEAT_SCHEDULER"
# Celery's names for its default scheduler (beat_scheduler's default and its alias).
DEFAULT_SCHEDULER_NAMES = (
    CELERY_DEFAULT_SCHEDULER,
    "persistent",
    "celery.beat.PersistentScheduler",
)
# The signal each program gets from the kernel when supervisord dies (SIGKILL, the OOM
# killer), so that nothing outlives it: Gunicorn's quick shutdown for the web; for the
# worker a signal Celery leaves alone, on which runner.worker.entry gives its unfinished
# tasks back and exits at once (its default action, before the handler is set, is to exit);
# beat's usual stop (it saves its schedule). Read by runner.supervise.supervisord as it
# starts each program.
PARENT_DEATH_SIGNAL_VARIABLE = "RUNNER_PARENT_DEATH_SIGNAL"
WEB_PARENT_DEATH_SIGNAL = "QUIT"
WORKER_PARENT_DEATH_SIGNAL = "USR2"
BEAT_PARENT_DEATH_SIGNAL = "TERM"
# The warm shutdown's bound, read by runner.worker.entry in the worker.
WARM_SHUTDOWN_VARIABLE = "RUNNER_WARM_SHUTDOWN_SECONDS"
# CELERY_MAX_TASKS_PER_CHILD for a pool without children (threads, solo): after this many
# tasks the worker restarts itself gracefully (runner.worker.entry), which is what
# --max-tasks-per-child gives prefork -- memory a task kept is given back.
RESTART_AFTER_TASKS_VARIABLE = "RUNNER_RESTART_AFTER_TASKS"
# The worker's memory share (MB) for a pool without children: after each task the worker
# checks its own memory against it (runner.worker.memory_check), what Celery's
# --max-memory-per-child does for a prefork child.
WORKER_SHARE_VARIABLE = "RUNNER_WORKER_SHARE_MB"

# The kernel names (comm) runner.worker.hooks gives pool children and the embedded beat, by
# which the watchdog (runner.supervise.watchdog) tells them apart from the worker's main.
CELERY_CHILD_NAME = "celery-child"
CELERY_BEAT_NAME = "celery-beat"

HEALTH_PATH = "/healthz"
WSGI_ENTRY = "runner.web.wsgi:application"
GUNICORN_CONFIG = "python:runner.web.gunicorn_config"
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'
GUNICORN_CONFIG_FILE = "gunicorn.conf.py"  # what Gunicorn would read from the directory


@dataclass(frozen=True)
class Program:
    """One supervised program and how supervisord starts and stops it."""

    name: str
    command: tuple[str, ...]
    processes: int  # OS processes it runs when idle (master + workers, main + children)
    environment: tuple[tuple[str, str], ...] = ()
    stop_signal: str = "TERM"
    stop_wait_seconds: int = 25
    # The worker's pool children must not get SIGTERM directly: Celery's main process
    # decides when they stop (warm shutdown); SIGKILL for the group stays the last resort.
    stop_as_group: bool = False
    kill_as_group: bool = True
    start_seconds: int = START_SECONDS
    start_retries: int = START_RETRIES
    summary: str = ""  # what it runs, in the runner's start line: "gunicorn 1 worker x 2 threads"


@dataclass(frozen=True)
class Plan:
    """What the runner will do, derived from Settings and the target project."""

    programs: tuple[Program, ...]
    migrate: tuple[str, ...] | None
    broker: str  # masked, for people
    result_backend: str  # masked
    local_default: bool  # no Redis: filesystem broker and results in the data directory
    project: Project
    # Said at every start (what needs the user's attention), and by `plan`.
    notes: tuple[str, ...] = field(default=())
    # Said by `plan` only: how the runner reads the settings, which is no news at each start.
    details: tuple[str, ...] = field(default=())
    # Redis pool limits per program and their sum (runner.config.connections); None without Redis.
    redis_connections: RedisConnections | None = None
    memory: MemoryPlan | None = None
    stop: str = ""  # the stop grace and why, for `python -m runner plan`

    @property
    def shares_mb(self) -> dict[str, int]:
        """Each program's memory share (MB), for the watchdog and the status page."""
        return self.memory.shares_mb if self.memory else {}

    @property
    def program_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.programs)

    def program(self, name: str) -> Program:
        return next(p for p in self.programs if p.name == name)


def _python(*args: str) -> tuple[str, ...]:
    return (sys.executable, *args)


def _celery_options(settings: Settings) -> tuple[str, ...]:
    # Celery's 25-line banner: the runner's start line says what matters (each program's
    # summary, the broker masked); LOG_LEVEL=debug shows the banner too.
    return () if settings.log_level == "debug" else ("--quiet",)


def _web(settings: Settings, shape: WebShape, grace: int, versions: Versions) -> Program:
    command = _python(
        "-m",
        "gunicorn",
        WSGI_ENTRY,
        "--bind",
        f"0.0.0.0:{settings.port}",
        # Threads, not processes, for concurrency: a forked worker un-shares ~23 MB of the
        # master once it serves pages, a thread ~1 MB (runner.config.memory_plan).
        "--worker-class",
        WEB_WORKER_CLASS,
        "--worker-connections",
        str(WEB_WORKER_CONNECTIONS),
        "--workers",
        str(shape.workers),
        "--threads",
        str(shape.threads),
        # Import the project once in the master; workers are forked with it loaded, which
        # shares memory and makes a worker restart cheap.
        "--preload",
        "--timeout",
        str(settings.web_timeout),
        "--graceful-timeout",
        str(grace),
        "--max-requests",
        str(WEB_MAX_REQUESTS),
        "--max-requests-jitter",
        str(WEB_MAX_REQUESTS_JITTER),
        "--access-logfile",
        "-",
        # Gunicorn's default line without the query string and the referer, which carry
        # tokens (the status page's ?token=): they never reach the platform's logs.
        "--access-logformat",
        ACCESS_LOG_FORMAT,
        "--error-logfile",
        "-",
        "--log-level",
        settings.log_level,
        # Not ./gunicorn.conf.py on top of these flags (runner.web.gunicorn_config).
        "--config",
        GUNICORN_CONFIG,
    )
    if versions.gunicorn_control_socket:
        # gunicorn 25.1+'s control socket would be a file in $HOME and a second way in.
        command += ("--no-control-socket",)
    return Program(
        "web",
        command,
        summary=f"gunicorn {shape.workers} worker{'s' * (shape.workers > 1)} x "
        f"{shape.threads} thread{'s' * (shape.threads > 1)}",
        processes=1 + shape.workers,
        environment=((PARENT_DEATH_SIGNAL_VARIABLE, WEB_PARENT_DEATH_SIGNAL),),
        stop_wait_seconds=settings.shutdown_grace,
    )


def _worker(
    settings: Settings,
    project: Project,
    shape: WorkerShape,
    embed_beat: bool,
    grace: int,
    share_mb: int | None = None,
) -> Program:
    command = _python(
        "-m",
        "runner.worker.entry",
        "-A",
        project.celery_app,
        *_celery_options(settings),
        "worker",
        f"--loglevel={(settings.worker_log_level or settings.log_level).upper()}",
        f"--pool={shape.pool}",
        f"--concurrency={shape.concurrency}",
        # One instance has no peers: gossip and mingle only cost Redis commands at idle.
        "--without-gossip",
        "--without-mingle",
        # Heartbeat events (a PUBLISH every 2 s, and a channel of two connections) feed
        # monitors such as Flower; `celery inspect` uses remote control, which stays on.
        "--without-heartbeat",
    )
    if shape.pool == "prefork":
        # Only the prefork pool has children to recycle.
        command += (
            f"--max-tasks-per-child={settings.max_tasks_per_child}",
            f"--max-memory-per-child={shape.max_memory_per_child_kib}",
        )
    if embed_beat:
        command += ("--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}")
        command += _beat_scheduler(settings, project)
    # The flags of the project's own start command (CELERY_WORKER_ARGS) come last.
    command += settings.worker_args
    environment = (
        (WARM_SHUTDOWN_VARIABLE, str(grace)),
        (PARENT_DEATH_SIGNAL_VARIABLE, WORKER_PARENT_DEATH_SIGNAL),
        *_background(settings),
        *(_scheduler_environment(settings, project) if embed_beat else ()),
        *(
            ((RESTART_AFTER_TASKS_VARIABLE, str(settings.max_tasks_per_child)),)
            if shape.pool != "prefork"
            else ()
        ),
        *(
            ((WORKER_SHARE_VARIABLE, str(share_mb)),)
            if shape.pool != "prefork" and share_mb
            else ()
        ),
    )
    return Program(
        "worker",
        command,
        summary=f"celery {shape.pool} pool x {shape.concurrency}"
        + (", beat embedded" if embed_beat else ""),
        processes=1 + (shape.concurrency if shape.pool == "prefork" else 0) + embed_beat,
        environment=environment,
        stop_wait_seconds=settings.shutdown_grace,
    )


def _beat(settings: Settings, project: Project) -> Program:
    command = _python(
        "-m",
        "runner.worker.entry",
        "-A",
        project.celery_app,
        *_celery_options(settings),
        "beat",
        f"--loglevel={(settings.beat_log_level or settings.log_level).upper()}",
        f"--schedule={settings.data_dir / 'celerybeat-schedule'}",
        *_beat_scheduler(settings, project),
        *settings.beat_args,
    )
    return Program(
        "beat",
        command,
        summary="celery beat",
        processes=1,
        environment=(
            (PARENT_DEATH_SIGNAL_VARIABLE, BEAT_PARENT_DEATH_SIGNAL),
            *_background(settings),
            *_scheduler_environment(settings, project),
        ),
        stop_wait_seconds=settings.shutdown_grace,
    )


def beat_scheduler(settings: Settings, project: Project) -> tuple[str | None, str | None]:
    """(the scheduler beat runs if not the project's own, why) -- or (None, None).

    ``-S`` in CELERY_BEAT_ARGS (a Procfile's ``beat --scheduler ...``) wins. Otherwise, a
    project with django_celery_beat installed that names no scheduler gets its
    DatabaseScheduler: Celery's default file scheduler never reads the periodic tasks people
    create in the admin (they would silently never run), while the DatabaseScheduler also
    loads CELERY_BEAT_SCHEDULE from the settings.
    """
    if settings.beat_scheduler:
        return settings.beat_scheduler, "CELERY_BEAT_ARGS"
    celery = project.celery
    if celery and celery.django_celery_beat and celery.beat_scheduler in DEFAULT_SCHEDULER_NAMES:
        return DATABASE_SCHEDULER, (
            "django_celery_beat is installed and the project names no scheduler, so beat "
            "runs its DatabaseScheduler (the admin's periodic tasks and CELERY_BEAT_SCHEDULE); "
            "CELERY_BEAT_ARGS='--scheduler celery.beat:PersistentScheduler' keeps Celery's "
            "file scheduler"
        )
    return None, None


def _beat_scheduler(settings: Settings, project: Project) -> tuple[str, ...]:
    """With Redis, beat sends from one instance only (runner.worker.beat_leader, which runs
    the scheduler of ``beat_scheduler`` inside it); without Redis the service is one
    instance by definition and runs that scheduler directly."""
    if broker_redis_url(settings.redis) is not None:
        return (f"--scheduler={BEAT_LEADER_SCHEDULER}",)
    inner, _why = beat_scheduler(settings, project)
    return (f"--scheduler={inner}",) if inner else ()


def _scheduler_environment(settings: Settings, project: Project) -> tuple[tuple[str, str], ...]:
    """The scheduler the leader lock wraps, when it is not the project's beat_scheduler."""
    inner, _why = beat_scheduler(settings, project)
    if inner is None or broker_redis_url(settings.redis) is None:
        return ()
    return ((BEAT_SCHEDULER_VARIABLE, inner),)


def _background(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The lower CPU priority of the worker and beat, when they share the instance with web."""
    return ((NICENESS_VARIABLE, str(BACKGROUND_NICENESS)),) if settings.run_web else ()


def _time_limit_note(settings: Settings, project: Project, pool: str) -> str | None:
    """One line when the project sets task time limits and the worker runs the threads
    pool, which Celery does not enforce them in: nothing configured is dropped silently.

    The pool stays the budget's choice (threads below 1024 MB: one process, ~25 MB less);
    CELERY_POOL=prefork is the way to have the limits enforced, and the line says so."""
    limits = project.celery.time_limits if project.celery else ()
    if not limits or not settings.run_worker or pool != "threads":
        return None
    shown = ", ".join(f"{name}={value:g} s" for name, value in limits)
    return (
        f"the project sets {shown}, which the threads pool does NOT enforce (a task may run "
        "past them); CELERY_POOL=prefork enforces them, for a process per task slot"
    )


def make_plan(settings: Settings, project: Project, budget: Budget | None = None) -> Plan:
    """Decide the programs and their commands from the settings and the memory budget.

    ``budget`` is the one found on the machine (runner.supervise.launch reads the cgroup); without
    it,
    MEMORY_BUDGET_MB or the 512 MB default.
    """
    if budget is None:
        budget = resolve_budget(settings.memory_budget_mb, None)
    grace = max(1, settings.shutdown_grace - STOP_MARGIN_SECONDS)
    notes: list[str] = []
    details: list[str] = []
    programs: list[Program] = []
    embed_beat = settings.run_beat and settings.run_worker and settings.beat_mode == "embedded"
    if settings.run_beat and not settings.run_worker and settings.beat_mode == "embedded":
        notes.append("beat runs as its own program because RUN_WORKER is false")

    memory = plan_memory(
        budget,
        web_capacity=(settings.web_concurrency or DEFAULT_WEB_CONCURRENCY)
        if settings.run_web
        else None,
        worker_capacity=(settings.celery_concurrency or DEFAULT_CELERY_CONCURRENCY)
        if settings.run_worker
        else None,
        beat=("embedded" if embed_beat else "separate") if settings.run_beat else None,
        pool=settings.celery_pool,
        preloaded=settings.fork,
    )
    if memory.worker is not None and (
        note := _time_limit_note(settings, project, memory.worker.pool)
    ):
        notes.append(note)
    if memory.worker is not None and memory.worker.pool != "prefork":
        details.append(
            f"the {memory.worker.pool} pool has no children to replace: "
            f"CELERY_MAX_TASKS_PER_CHILD={settings.max_tasks_per_child} restarts the whole "
            f"worker gracefully after that many tasks (running tasks finish first)"
        )
    notes.extend(budget.notes)
    if memory.web is not None:
        programs.append(_web(settings, memory.web, grace, project.versions))
    if memory.worker is not None:
        share = memory.shares_mb.get("worker")
        programs.append(_worker(settings, project, memory.worker, embed_beat, grace, share))
    if settings.run_beat and not embed_beat:
        programs.append(_beat(settings, project))

    redis = settings.redis
    # What the project's Celery app really uses (runner.supervise.discover), where it was read.
    celery = project.celery
    own_broker = celery is not None and not celery.broker_from_environment
    own_results = celery is not None and not celery.results_from_environment
    local = redis.broker_url is None and not own_broker
    if local:
        notes.append(
            f"local default: no REDIS_URL, so tasks and results are kept in "
            f"{settings.data_dir}; set REDIS_URL to use Redis"
        )
    if settings.run_beat and (why := beat_scheduler(settings, project)[1]):
        if why != "CELERY_BEAT_ARGS":
            notes.append(why)
    if settings.run_web and project.gunicorn_config_file:
        notes.append(
            f"{project.gunicorn_config_file} is not read: the runner gives Gunicorn its "
            "options (WEB_CONCURRENCY, WEB_TIMEOUT, PORT, LOG_LEVEL; python -m runner plan "
            "shows them); move what you need from it into those variables"
        )
    window = settings.stop_window
    if settings.shutdown_grace_given and settings.shutdown_grace >= window.stop_seconds:
        if window.platform is not None:
            notes.append(
                f"SHUTDOWN_GRACE_SECONDS={settings.shutdown_grace} is not shorter than "
                f"{window.platform}'s {window.stop_seconds} s stop window: the platform's "
                "SIGKILL may come first, with tasks neither finished nor given back"
            )
    if settings.keep_awake_url:
        notes.append(
            f"keep-awake: requesting {settings.keep_awake_url} every {KEEP_AWAKE_MINUTES} "
            "minutes, so this instance never sleeps (~744 of the 750 free hours a month)"
        )
    if redis.upgraded_to_tls:
        notes.append("REQUIRE_REDIS_SSL is true: redis:// URLs were upgraded to rediss://")
    if redis.tls_variables_given and redis.urls and not redis.uses_tls:
        notes.append(
            f"{' and '.join(redis.tls_variables_given)} "
            f"{'is' if len(redis.tls_variables_given) == 1 else 'are'} set, but every Redis "
            "URL is redis:// (no TLS): not used, the connection is plain text; use rediss:// "
            "or set REQUIRE_REDIS_SSL=true"
        )
    if redis.uses_tls and not redis.all_verified:
        notes.append(
            "Redis connection is encrypted but the server is NOT verified; set "
            "REDIS_SSL_CA_CERTS to your provider's CA (e.g. redis_ca.pem) to verify it"
        )
    if celery is not None:
        notes.extend(celery_notes(celery, redis))
    # Pool limits for each program within REDIS_MAX_CONNECTIONS (raises when they cannot fit).
    connections = budget_for(redis, programs, project_broker=own_broker)
    if connections is not None:
        programs = [connections.with_environment(program) for program in programs]
    return Plan(
        programs=tuple(programs),
        migrate=_python("-m", "django", "migrate", "--noinput")
        if settings.run_migrations
        else None,
        broker=celery.broker
        if own_broker
        else mask_url(redis.broker_url) or f"filesystem://{settings.data_dir / 'broker'}",
        result_backend=celery.result_backend
        if own_results
        else mask_url(redis.result_backend) or f"file://{settings.data_dir / 'results'}",
        local_default=local,
        project=project,
        notes=tuple(notes),
        details=tuple(details),
        redis_connections=connections,
        memory=memory,
        stop=_stop_line(settings, grace),
    )


def _stop_line(settings: Settings, grace: int) -> str:
    """The stop grace, what it leaves the tasks, and where it comes from."""
    source = (
        "SHUTDOWN_GRACE_SECONDS"
        if settings.shutdown_grace_given
        else f"{settings.stop_window.why()}; SHUTDOWN_GRACE_SECONDS changes it"
    )
    return (
        f"grace {settings.shutdown_grace} s after SIGTERM or SIGINT: running tasks get "
        f"{grace} s, then go back to the queue ({source})"
    )
