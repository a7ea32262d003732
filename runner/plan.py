"""Settings -> Plan: which programs run, with which commands, how many processes, how stopped.

Pure: no I/O, so every combination of flags is covered by table-driven tests. The plan is
what ``python -m runner plan`` prints and what ``runner.supervisor`` renders.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from runner.project import Project
from runner.redis import mask_url
from runner.settings import Settings

# Small defaults that fit a 512 MB instance (the seed's own flags: 2 web workers, 2 tasks).
DEFAULT_WEB_CONCURRENCY = 2
DEFAULT_CELERY_CONCURRENCY = 2

# Gunicorn recycles a worker after this many requests, with jitter so that workers do not
# all restart at once (a slow leak then never reaches the budget).
WEB_MAX_REQUESTS = 1000
WEB_MAX_REQUESTS_JITTER = 100

# A program that dies within this many seconds of starting "did not start"; after
# START_RETRIES such failures supervisord gives up and the runner stops with an error.
START_SECONDS = 10
START_RETRIES = 2

# Seconds between supervisord sending the stop signal and our own escalation: the web and
# the worker get the grace minus this margin to finish what they are doing, so that the
# cold shutdown (requeueing unfinished tasks) still fits inside the grace.
STOP_MARGIN_SECONDS = 5

HEALTH_PATH = "/healthz"
WSGI_ENTRY = "runner.wsgi:application"


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


@dataclass(frozen=True)
class Plan:
    """What the runner will do, derived from Settings and the target project."""

    programs: tuple[Program, ...]
    migrate: tuple[str, ...] | None
    broker: str  # masked, for people
    result_backend: str  # masked
    local_default: bool  # no Redis: filesystem broker and results in the data directory
    project: Project
    notes: tuple[str, ...] = field(default=())

    @property
    def program_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.programs)

    def program(self, name: str) -> Program:
        return next(p for p in self.programs if p.name == name)


def _python(*args: str) -> tuple[str, ...]:
    return (sys.executable, *args)


def _web(settings: Settings, concurrency: int, grace: int) -> Program:
    command = _python(
        "-m",
        "gunicorn",
        WSGI_ENTRY,
        "--bind",
        f"0.0.0.0:{settings.port}",
        "--workers",
        str(concurrency),
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
        "--error-logfile",
        "-",
        "--log-level",
        settings.log_level,
        # Gunicorn 27's control socket would be a file in $HOME and a second way in.
        "--no-control-socket",
    )
    return Program(
        "web", command, processes=1 + concurrency, stop_wait_seconds=settings.shutdown_grace
    )


def _worker(
    settings: Settings, project: Project, concurrency: int, embed_beat: bool, grace: int
) -> Program:
    command = _python(
        "-m",
        "runner.celery_entry",
        "-A",
        project.celery_app,
        "worker",
        f"--loglevel={settings.log_level.upper()}",
        f"--concurrency={concurrency}",
        f"--max-tasks-per-child={settings.max_tasks_per_child}",
        # One instance has no peers: gossip and mingle only cost Redis commands at idle.
        "--without-gossip",
        "--without-mingle",
    )
    if embed_beat:
        command += ("--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}")
    environment = (("RUNNER_WARM_SHUTDOWN_SECONDS", str(grace)),)
    return Program(
        "worker",
        command,
        processes=1 + concurrency + (1 if embed_beat else 0),
        environment=environment,
        stop_wait_seconds=settings.shutdown_grace,
    )


def _beat(settings: Settings, project: Project) -> Program:
    command = _python(
        "-m",
        "runner.celery_entry",
        "-A",
        project.celery_app,
        "beat",
        f"--loglevel={settings.log_level.upper()}",
        f"--schedule={settings.data_dir / 'celerybeat-schedule'}",
    )
    return Program("beat", command, processes=1, stop_wait_seconds=settings.shutdown_grace)


def make_plan(settings: Settings, project: Project) -> Plan:
    """Decide the programs and their commands from the settings."""
    grace = max(1, settings.shutdown_grace - STOP_MARGIN_SECONDS)
    notes: list[str] = []
    programs: list[Program] = []
    embed_beat = settings.run_beat and settings.run_worker and settings.beat_mode == "embedded"
    if settings.run_beat and not settings.run_worker and settings.beat_mode == "embedded":
        notes.append("beat runs as its own program because RUN_WORKER is false")

    if settings.run_web:
        programs.append(_web(settings, settings.web_concurrency or DEFAULT_WEB_CONCURRENCY, grace))
    if settings.run_worker:
        concurrency = settings.celery_concurrency or DEFAULT_CELERY_CONCURRENCY
        programs.append(_worker(settings, project, concurrency, embed_beat, grace))
    if settings.run_beat and not embed_beat:
        programs.append(_beat(settings, project))

    redis = settings.redis
    local = redis.broker_url is None
    if local:
        notes.append(
            f"local default: no REDIS_URL, so tasks and results are kept in "
            f"{settings.data_dir}; set REDIS_URL to use Redis"
        )
    if redis.upgraded_to_tls:
        notes.append("REQUIRE_REDIS_SSL is true: redis:// URLs were upgraded to rediss://")
    if redis.uses_tls and not redis.tls.verified:
        notes.append(
            "Redis connection is encrypted but the server is NOT verified; set "
            "REDIS_SSL_CA_CERTS to your provider's CA (e.g. redis_ca.pem) to verify it"
        )
    return Plan(
        programs=tuple(programs),
        migrate=_python("-m", "django", "migrate", "--noinput")
        if settings.run_migrations
        else None,
        broker=mask_url(redis.broker_url) or f"filesystem://{settings.data_dir / 'broker'}",
        result_backend=mask_url(redis.result_backend) or f"file://{settings.data_dir / 'results'}",
        local_default=local,
        project=project,
        notes=tuple(notes),
    )
