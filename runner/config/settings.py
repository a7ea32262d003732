"""Environment -> frozen Settings: every variable the runner reads, its default and why.

``load_settings`` is the only reader of the environment; it validates everything and raises
one ``ConfigError`` listing every problem, so a user fixes all of them in one deploy.
``VARIABLES`` is the table mirrored in the README (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from runner.config.budget import MAX_BUDGET_MB, MIN_BUDGET_MB
from runner.config.celery_args import (
    BEAT_ARGS_VARIABLE,
    WORKER_ARGS_VARIABLE,
    parse_celery_args,
)
from runner.config.environment import EnvironmentReader
from runner.config.platform import UNKNOWN_PLATFORM, StopWindow, stop_window
from runner.config.redis import RedisSettings, read_redis_settings
from runner.errors import ConfigError

BEAT_MODES = ("embedded", "separate")
POOLS = ("auto", "prefork", "threads")
LOG_LEVELS = ("debug", "info", "warning", "error")

DEFAULT_PORT = 8000
# The stop grace's default follows the platform (runner.config.platform): Render 25 s, docker
# stop and unknown platforms 8 s, Fly.io 4 s.
MIN_SHUTDOWN_GRACE_SECONDS = 5
# The seed's Gunicorn timeout and Celery child recycling.
DEFAULT_WEB_TIMEOUT_SECONDS = 120
DEFAULT_MAX_TASKS_PER_CHILD = 100
DEFAULT_DATA_DIR = ".runner-data"
MAX_CONCURRENCY = 64
# A status token anyone could guess would make the status page public.
MIN_STATUS_TOKEN_LENGTH = 16
# Render's free instance sleeps after 15 minutes without inbound requests; a request every
# 10 minutes keeps it awake even if one is lost.
KEEP_AWAKE_MINUTES = 10
# The beat leader lock (runner.worker.beat_leader): a crashed leader is replaced once it expires.
# 60 s: a periodic task at most 80 s late after a crash (rare), for 3 renewals a minute
# (one EVALSHA each) in every instance with Redis, scaled or not. Below 5 s a renewal
# (every third of it) would race Redis's own latency.
BEAT_LEADER_LOCK_VARIABLE = "BEAT_LEADER_LOCK_SECONDS"
# Renewed every third of it: one Redis command a minute (runner.worker.beat_leader).
DEFAULT_BEAT_LEADER_LOCK_SECONDS = 180
MIN_BEAT_LEADER_LOCK_SECONDS = 5
MAX_BEAT_LEADER_LOCK_SECONDS = 600
# The beat scheduler the runner passes in Redis mode; a constant here so that the plan
# does not import the scheduler (and redis-py with it).
BEAT_LEADER_SCHEDULER = "runner.worker.beat_leader:LeaderScheduler"


@dataclass(frozen=True)
class Variable:
    """One environment variable as documented for users."""

    name: str
    default: str
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable("PORT", str(DEFAULT_PORT), "Port Gunicorn binds on 0.0.0.0 (Render sets it)."),
    Variable("RUN_WEB", "true", "Run Gunicorn (the Django site)."),
    Variable("RUN_WORKER", "true", "Run the Celery worker."),
    Variable("RUN_BEAT", "true", "Run Celery beat (periodic tasks)."),
    Variable(
        "BEAT_MODE",
        "embedded",
        "`embedded`: beat runs inside the worker (`celery worker -B`), one Python "
        "process less; `separate`: its own program. Without a worker, beat is separate.",
    ),
    Variable(
        "RUN_MIGRATIONS",
        "true",
        "Run `migrate --noinput` before starting: Render's free plan has no pre-deploy step. "
        "With `false`, a database that was never migrated is refused (one line, exit 2).",
    ),
    Variable(
        "WEB_CONCURRENCY",
        "2",
        "Concurrent web requests: Gunicorn threads, in as few worker processes as the "
        "memory plan allows (2: 1 worker x 2 threads).",
    ),
    Variable("CELERY_CONCURRENCY", "2", "Concurrent tasks (Celery pool size)."),
    Variable(
        "CELERY_MAX_TASKS_PER_CHILD",
        str(DEFAULT_MAX_TASKS_PER_CHILD),
        "The seed's leak guard: prefork replaces a pool child after this many tasks; the "
        "threads pool (one process) restarts the whole worker gracefully after this many.",
    ),
    Variable(
        "WEB_TIMEOUT",
        str(DEFAULT_WEB_TIMEOUT_SECONDS),
        "Seconds before Gunicorn kills a stuck request (the seed's `--timeout`).",
    ),
    Variable(
        "SHUTDOWN_GRACE_SECONDS",
        "(by platform)",
        "After SIGTERM, time for in-flight requests and tasks to finish before "
        "children are killed. Default: the platform's stop window minus a margin (Render, "
        "Heroku, Kubernetes 25; Cloud Run, Docker and unrecognised 8; Fly.io 4).",
    ),
    Variable("LOG_LEVEL", "info", "Log level of every component: debug, info, warning, error."),
    Variable(
        "RUNNER_DATA_DIR",
        DEFAULT_DATA_DIR,
        "Where the local default keeps its broker and results (no Redis needed).",
    ),
    Variable(
        "DJANGO_SETTINGS_MODULE",
        "from manage.py",
        "Settings of the project to run; by default what its `manage.py` sets.",
    ),
    Variable("CELERY_APP", "the settings' top package", "What you would pass to `celery -A`."),
    Variable(
        "MEMORY_BUDGET_MB",
        "the container's limit, else 512",
        "Memory for the whole service (Render free: 512). The plan shares it out and the "
        "watchdog keeps the tree inside it; `python -m runner plan` shows the arithmetic.",
    ),
    Variable(
        "CELERY_POOL",
        "auto",
        "`auto`: `threads` below 1024 MB of budget (one process, ~25 MB less; tasks still "
        "running when the grace ends are handed back to the queue), `prefork` from 1024 MB "
        "(a child per task slot, recycled by task count and memory, hard time limits, a "
        "crashing task takes only its child down).",
    ),
    Variable(
        "CELERY_WORKER_ARGS",
        "(none)",
        "Flags your worker's command line had (Procfile, start command), e.g. "
        "`-Q default,emails -O fair --loglevel=info`. `-c`, `-P`, `--max-tasks-per-child`, "
        "`-A` and `-l` mean CELERY_CONCURRENCY, CELERY_POOL, CELERY_MAX_TASKS_PER_CHILD, "
        "CELERY_APP and the worker's log level; the rest goes to Celery as written.",
    ),
    Variable(
        "CELERY_BEAT_ARGS",
        "(none)",
        "Flags your beat command line had, e.g. `--scheduler "
        "django_celery_beat.schedulers:DatabaseScheduler`: the scheduler beat runs (inside "
        "the leader lock with Redis). Other flags need `BEAT_MODE=separate`.",
    ),
    Variable(
        BEAT_LEADER_LOCK_VARIABLE,
        str(DEFAULT_BEAT_LEADER_LOCK_SECONDS),
        "With Redis, beat sends periodic tasks from one instance only (the holder of a lock "
        "in Redis, renewed every third of this: one Redis command a minute by default); a "
        "leader that stops frees it at once, one that dies is replaced once its lock "
        "expires, after this many seconds plus a third of it.",
    ),
    Variable(
        "REDIS_URL",
        "(unset: local default)",
        "Redis for broker, results and cache, e.g. `rediss://default:PASSWORD@host:port`.",
    ),
    Variable("REQUIRE_REDIS_SSL", "false", "Upgrade `redis://` URLs to `rediss://` (TLS)."),
    Variable("CELERY_BROKER_URL", "REDIS_URL", "Broker; empty or unset: derived from REDIS_URL."),
    Variable(
        "CELERY_RESULT_BACKEND",
        "REDIS_URL",
        "Result backend; empty or unset: derived from REDIS_URL.",
    ),
    Variable(
        "REDIS_SSL_CERT_REQS",
        "`required` with a CA, else `none`",
        "Certificate check: `required` (CA and host name), `optional` (CA only) or `none` "
        "(encrypted, not verified: the seed's choice).",
    ),
    Variable(
        "REDIS_SSL_CA_CERTS",
        "(unset)",
        "CA bundle to verify Redis: a file path or the PEM text itself.",
    ),
    Variable(
        "REDIS_MAX_CONNECTIONS",
        "30",
        "Redis connections the whole service may hold at peak (Redis Cloud's free plan caps "
        "at 30): the runner sizes every process's pools within it and refuses to start when "
        "they cannot fit; `python -m runner plan` shows the sum.",
    ),
    Variable(
        "RUNNER_FORK",
        "true",
        "Import the project once and fork web, worker and beat from it (a wake and a restart "
        "start no new interpreter); falls back by itself, saying why, when the project's "
        "import starts a thread or opens a connection. `false`: each program is its own "
        "interpreter.",
    ),
    Variable(
        "RUNNER_STATUS_TOKEN",
        "(unset: staff login only)",
        "Token that opens `/status/` and `/status.json` without a login "
        f"(`Authorization: Bearer ...` or `?token=`); at least {MIN_STATUS_TOKEN_LENGTH} "
        "characters.",
    ),
    Variable(
        "KEEP_AWAKE_URL",
        "(unset: off)",
        "Your service's public health URL (`https://NAME.onrender.com/healthz`), requested "
        f"every {KEEP_AWAKE_MINUTES} minutes so a free instance never sleeps: uses ~744 of "
        "the workspace's 750 free hours a month.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Everything the runner was asked to do, validated."""

    port: int
    run_web: bool
    run_worker: bool
    run_beat: bool
    beat_mode: str
    run_migrations: bool
    web_concurrency: int | None
    celery_concurrency: int | None
    max_tasks_per_child: int
    web_timeout: int
    shutdown_grace: int
    log_level: str
    data_dir: Path
    django_settings_module: str | None
    celery_app: str | None
    redis: RedisSettings
    memory_budget_mb: int | None = None
    celery_pool: str = "auto"
    status_token: str | None = None
    keep_awake_url: str | None = None
    beat_leader_lock_seconds: int = DEFAULT_BEAT_LEADER_LOCK_SECONDS
    # The rest of CELERY_WORKER_ARGS / CELERY_BEAT_ARGS, passed to Celery as written.
    worker_args: tuple[str, ...] = ()
    beat_args: tuple[str, ...] = ()
    worker_log_level: str | None = None  # -l in CELERY_WORKER_ARGS; else LOG_LEVEL
    beat_log_level: str | None = None
    beat_scheduler: str | None = None  # -S in CELERY_BEAT_ARGS (or the worker's)
    # The platform's stop window, which gives shutdown_grace its default.
    stop_window: StopWindow = UNKNOWN_PLATFORM
    shutdown_grace_given: bool = False  # SHUTDOWN_GRACE_SECONDS was set
    fork: bool = True  # RUNNER_FORK: programs forked from the preloaded runner

    @property
    def components(self) -> tuple[str, ...]:
        names = (("web", self.run_web), ("worker", self.run_worker), ("beat", self.run_beat))
        return tuple(name for name, on in names if on)


def read_beat_leader_lock_seconds(env: EnvironmentReader) -> int:
    """``BEAT_LEADER_LOCK_SECONDS``: read here at start, and again by beat's scheduler
    (``runner.worker.beat_leader``) in its own process."""
    return env.int(
        BEAT_LEADER_LOCK_VARIABLE,
        DEFAULT_BEAT_LEADER_LOCK_SECONDS,
        minimum=MIN_BEAT_LEADER_LOCK_SECONDS,
        maximum=MAX_BEAT_LEADER_LOCK_SECONDS,
    )


def _agree(
    env: EnvironmentReader, variable: str, own: object, flag: str, given: object, source: str
) -> object:
    """A value given both as the runner's ``variable`` and as ``flag`` in ``source``: the
    flag's when only it is given; a problem when both are and they differ."""
    if given is None:
        return own
    if own is not None and own != given:
        env.problem(
            source,
            f"{flag} {given} differs from {variable}={own}; keep one of them",
            env.environ.get(source),
        )
    return given


def _with_celery_args(env: EnvironmentReader, settings: Settings) -> Settings:
    """Fold CELERY_WORKER_ARGS and CELERY_BEAT_ARGS into the settings they mean."""
    environ, problems = env.environ, env.problems
    worker = parse_celery_args(WORKER_ARGS_VARIABLE, environ.get(WORKER_ARGS_VARIABLE), problems)
    beat = parse_celery_args(BEAT_ARGS_VARIABLE, environ.get(BEAT_ARGS_VARIABLE), problems)
    levels: dict[str, str | None] = {}
    for source, args in ((WORKER_ARGS_VARIABLE, worker), (BEAT_ARGS_VARIABLE, beat)):
        levels[source] = args.log_level
        if args.log_level is not None and args.log_level not in LOG_LEVELS:
            env.problem(source, f"--loglevel {args.log_level}: use one of {', '.join(LOG_LEVELS)}")
            levels[source] = None
    pool = worker.pool.lower() if worker.pool else None
    if pool is not None and pool not in POOLS[1:]:
        env.problem(
            WORKER_ARGS_VARIABLE,
            f"--pool {worker.pool}: the runner runs prefork or threads (CELERY_POOL)",
            environ.get(WORKER_ARGS_VARIABLE),
        )
        pool = None
    if worker.app and beat.app and worker.app != beat.app:
        env.problem(BEAT_ARGS_VARIABLE, f"-A {beat.app} differs from the worker's -A {worker.app}")
    if settings.beat_mode == "embedded" and settings.run_worker:
        for token in beat.passed:
            if token.startswith("-"):
                env.problem(
                    BEAT_ARGS_VARIABLE,
                    f"{token.split('=', 1)[0]} needs beat as a program of its own: set "
                    "BEAT_MODE=separate (the worker's embedded beat takes only --scheduler "
                    "and --loglevel)",
                    environ.get(BEAT_ARGS_VARIABLE),
                )
                break
    given_pool = settings.celery_pool if "CELERY_POOL" in environ else None
    return replace(
        settings,
        celery_app=_agree(
            env, "CELERY_APP", settings.celery_app, "-A", worker.app or beat.app,
            WORKER_ARGS_VARIABLE if worker.app else BEAT_ARGS_VARIABLE,
        ),
        celery_concurrency=_agree(
            env, "CELERY_CONCURRENCY", settings.celery_concurrency, "--concurrency",
            worker.concurrency, WORKER_ARGS_VARIABLE,
        ),
        celery_pool=_agree(env, "CELERY_POOL", given_pool, "--pool", pool, WORKER_ARGS_VARIABLE)
        or settings.celery_pool,
        max_tasks_per_child=_agree(
            env, "CELERY_MAX_TASKS_PER_CHILD",
            settings.max_tasks_per_child if "CELERY_MAX_TASKS_PER_CHILD" in environ else None,
            "--max-tasks-per-child", worker.max_tasks_per_child, WORKER_ARGS_VARIABLE,
        ) or settings.max_tasks_per_child,
        worker_args=worker.passed,
        beat_args=beat.passed,
        worker_log_level=levels[WORKER_ARGS_VARIABLE],
        beat_log_level=levels[BEAT_ARGS_VARIABLE],
        beat_scheduler=beat.scheduler or worker.scheduler,
    )  # fmt: skip


def load_settings(environ: Mapping[str, str], cwd: Path) -> Settings:
    """Build Settings from ``environ``; raise ConfigError listing every bad variable."""
    env = EnvironmentReader(environ)
    window = stop_window(environ)
    settings = Settings(
        port=env.int("PORT", DEFAULT_PORT, minimum=1, maximum=65535),
        run_web=env.bool("RUN_WEB", True),
        run_worker=env.bool("RUN_WORKER", True),
        run_beat=env.bool("RUN_BEAT", True),
        beat_mode=env.choice("BEAT_MODE", "embedded", BEAT_MODES),
        run_migrations=env.bool("RUN_MIGRATIONS", True),
        web_concurrency=env.int("WEB_CONCURRENCY", None, minimum=1, maximum=MAX_CONCURRENCY),
        celery_concurrency=env.int("CELERY_CONCURRENCY", None, minimum=1, maximum=MAX_CONCURRENCY),
        max_tasks_per_child=env.int(
            "CELERY_MAX_TASKS_PER_CHILD", DEFAULT_MAX_TASKS_PER_CHILD, minimum=1, maximum=1_000_000
        ),
        web_timeout=env.int("WEB_TIMEOUT", DEFAULT_WEB_TIMEOUT_SECONDS, minimum=1, maximum=3600),
        shutdown_grace=env.int(
            "SHUTDOWN_GRACE_SECONDS",
            window.grace_seconds,
            minimum=MIN_SHUTDOWN_GRACE_SECONDS,
            maximum=3600,
        ),
        stop_window=window,
        shutdown_grace_given=bool(environ.get("SHUTDOWN_GRACE_SECONDS")),
        log_level=env.choice("LOG_LEVEL", "info", LOG_LEVELS),
        data_dir=cwd / (env.text("RUNNER_DATA_DIR") or DEFAULT_DATA_DIR),
        django_settings_module=env.text("DJANGO_SETTINGS_MODULE"),
        celery_app=env.text("CELERY_APP"),
        redis=read_redis_settings(env),
        memory_budget_mb=env.int(
            "MEMORY_BUDGET_MB", None, minimum=MIN_BUDGET_MB, maximum=MAX_BUDGET_MB
        ),
        celery_pool=env.choice("CELERY_POOL", "auto", POOLS),
        status_token=env.text("RUNNER_STATUS_TOKEN"),
        keep_awake_url=env.text("KEEP_AWAKE_URL"),
        beat_leader_lock_seconds=read_beat_leader_lock_seconds(env),
        fork=env.bool("RUNNER_FORK", True),
    )
    settings = _with_celery_args(env, settings)
    if settings.status_token and len(settings.status_token) < MIN_STATUS_TOKEN_LENGTH:
        env.problem(
            "RUNNER_STATUS_TOKEN",
            f"too short to keep the status page private; use at least "
            f"{MIN_STATUS_TOKEN_LENGTH} random characters",
            "***",
        )
    raw_data_dir = environ.get("RUNNER_DATA_DIR") or ""
    if any(ord(c) < 32 or ord(c) == 127 for c in raw_data_dir):
        env.problem(
            "RUNNER_DATA_DIR",
            "holds a control character (a newline?): give a plain path",
            raw_data_dir,
        )
    if settings.keep_awake_url and not settings.keep_awake_url.startswith(("http://", "https://")):
        env.problem(
            "KEEP_AWAKE_URL",
            "not an http(s) URL; use your service's public health URL, e.g. "
            "https://NAME.onrender.com/healthz",
            settings.keep_awake_url,
        )
    if not settings.components:
        env.problem(
            "RUN_WEB",
            "RUN_WEB, RUN_WORKER and RUN_BEAT are all false: nothing to run; turn at least one on",
            environ.get("RUN_WEB"),
        )
    if env.problems:
        raise ConfigError(env.problems)
    return settings


BEAT_RECORD_NAME = "beat.json"


def beat_record_path(data_dir: Path) -> Path:
    """Where this instance's beat says when it started and what it sent last
    (``runner.worker.beat_record`` writes it, ``runner.status.gather`` reads it)."""
    return data_dir / BEAT_RECORD_NAME


def local_paths(data_dir: Path) -> dict[str, Path]:
    """Folders of the local default: broker queue, broker control, message staging, results."""
    return {
        "queue": data_dir / "broker" / "queue",
        "control": data_dir / "broker" / "control",
        # Where a worker moves a message it takes (runner.worker.local_store): beside the
        # queue, so that the move is one atomic rename, never a copy through /tmp.
        "staging": data_dir / "broker" / "staging",
        "results": data_dir / "results",
    }
