"""The runner's side effects: check the ground, migrate, write the config, become supervisord.

Everything before here is pure (settings -> plan -> config text); this module is the one
that touches the file system and turns the runner's process into supervisord: in the fork
model by running supervisord in this process once the programs' modules are imported
(``runner.supervise.preload``), otherwise by ``exec``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn, TextIO

from runner.config.budget import read_container_limit, resolve_budget
from runner.config.disk import (
    data_dir_problem,
    database_failure,
    free_space_problem,
    migrate_failure,
)
from runner.config.plan import Plan, make_plan
from runner.config.project import RedisConsumer, find_project
from runner.config.settings import Settings, load_settings, local_paths
from runner.config.supervisord_conf import LIMITS_NAME, SOCKET_NAME, render_supervisord_conf
from runner.errors import ConfigError, PreflightError, Problem, StartError
from runner.supervise import data_dir, preload
from runner.supervise.discover import discover, printed_on_import, read_manage_py
from runner.supervise.logrelay import prefix
from runner.supervise.migrate_lock import migration_lock
from runner.supervise.migrations import run_migrations
from runner.supervise.port import check_port
from runner.supervise.redis_check import check_now, preflight
from runner.supervise.runstate import write_pointer
from runner.supervise.watchdog import Limits

CONF_NAME = "supervisord.conf"
SUPERVISORD_MODULE = "runner.supervise.supervisord"  # supervisord with the runner's voice
# Lines of migrate's output kept to explain its failure (its traceback ends there).
# How migrate reports each migration it applied.


def say(text: str, out: TextIO = sys.stdout) -> None:
    out.write(prefix("runner") + text + "\n")
    out.flush()


def load(
    environ: Mapping[str, str], cwd: Path, *, port_needed: bool = True
) -> tuple[Settings, Plan]:
    """Settings and plan for this environment and directory; the project is checked by import,
    and (for ``plan`` and ``start``, with the web on) PORT must be free."""
    settings = load_settings(environ, cwd)
    if port_needed and settings.run_web:
        check_port(settings.port)  # first: a second to say it, before any import
    data_dir.check_usable(settings.data_dir)  # what start would refuse, plan says too
    project = find_project(
        settings.django_settings_module, settings.celery_app, read_manage_py(cwd)
    )
    project = discover(project, settings, cwd)
    budget = resolve_budget(settings.memory_budget_mb, read_container_limit())
    return settings, make_plan(settings, project, budget)


def child_environment(environ: Mapping[str, str], settings: Settings, plan: Plan) -> dict:
    """The environment every program inherits from supervisord."""
    env = dict(environ)
    env["DJANGO_SETTINGS_MODULE"] = plan.project.settings_module
    env["RUNNER_DATA_DIR"] = str(settings.data_dir)
    # Line by line through the pipes, so that logs appear when they happen.
    env["PYTHONUNBUFFERED"] = "1"
    return env


ROOT_NOTE = (
    "running as root: every task runs with root's rights; where you can, run the runner as "
    "an unprivileged user (a Dockerfile's USER)"
)


def prepare_data_dir(settings: Settings, plan: Plan) -> None:
    """Create the local default's folders, or explain why they cannot be written.

    Read-only, full, or too full for the local default's queue and results: one line with
    the path and the fix, before anything starts (``runner.config.disk``).
    """
    folders = [settings.data_dir]
    if plan.local_default:
        folders += list(local_paths(settings.data_dir).values())
    probe = settings.data_dir / ".write-test"
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        if plan.local_default:
            # Before the probe: on a nearly full disk the probe's few bytes still fit.
            problem = free_space_problem(settings.data_dir, shutil.disk_usage(folders[0]).free)
            if problem:
                raise PreflightError(problem)
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        # A full disk fails the write after the file was created: leave nothing behind.
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise PreflightError(data_dir_problem(settings.data_dir, error)) from error


def migrate(plan: Plan, env: Mapping[str, str], verbose: bool = False) -> None:
    """Run the project's migrations, in this process (``runner.supervise.migrations``); say
    in one line how many were applied and how long it took. Every line of migrate's own
    output is relayed (``migrate | ...``) with ``verbose`` (LOG_LEVEL=debug) as it comes,
    and otherwise only when migrate fails (its last lines)."""
    if plan.migrate is None:
        return
    out = sys.stdout

    def relay(line: str) -> None:
        out.write(prefix("migrate") + line)
        out.flush()

    started = time.monotonic()
    result = run_migrations(env, relay if verbose else None)
    seconds = time.monotonic() - started
    if result.failed:
        if not verbose:
            for line in result.tail:
                relay(line)
        output = "".join(result.tail)
        raise StartError(
            migrate_failure(output, sqlite_file())
            or database_failure(output, database_address())
            or "migrations failed (see the migrate lines above); fix them, or set "
            "RUN_MIGRATIONS=false to start without migrating"
        )
    say(
        f"migrations: {result.applied} applied in {seconds:.1f} s"
        if result.applied
        else f"migrations: none to apply ({seconds:.1f} s)"
    )
    if result.staff_user:
        say(result.staff_user)


def refuse_unmigrated() -> None:
    """With ``RUN_MIGRATIONS=false``, a database that was never migrated is one line and exit
    status 2, not the worker's and beat's tracebacks (``no such table``).

    Only the ``django_migrations`` table is looked for: one query, no app loading (which
    would cost a Django set-up, seconds on a 0.1 CPU instance). A database migrated once but
    behind its code is not caught here. Checked when the project's settings are loaded
    already (``discover``: a worker or beat runs); a database that does not answer is left
    to the programs to report, as without this check."""
    try:
        from django.conf import settings

        if not settings.configured:
            return
        sqlite = sqlite_file()
        if sqlite and sqlite != ":memory:" and not Path(sqlite).exists():
            tables: list[str] = []  # do not create the file by connecting to it
        else:
            from django.db import connections

            connection = connections["default"]
            try:
                with warnings.catch_warnings():
                    # Django 5's "database accessed during app initialization": on purpose.
                    warnings.simplefilter("ignore", RuntimeWarning)
                    tables = connection.introspection.table_names()
            finally:
                connection.close()
    except Exception:  # only a better message is at stake
        return
    if "django_migrations" in tables:
        return
    where = f"SQLite file {sqlite}" if sqlite else (database_address() or "the default database")
    raise ConfigError(
        [
            Problem(
                "RUN_MIGRATIONS",
                "false",
                f"{where} has never been migrated (no django_migrations table), and the "
                "worker and beat need its tables; unset RUN_MIGRATIONS to migrate at start, "
                "or run `python manage.py migrate` first",
            )
        ]
    )


def database_address() -> str | None:
    """``postgresql at db.example:5432`` for the project's default database (never its user
    or password), if its settings are loaded here already (``discover``)."""
    try:
        from django.conf import settings

        if not settings.configured:
            return None
        database = settings.DATABASES.get("default", {})
    except Exception:  # only a better message is at stake: never fail the error itself
        return None
    engine = str(database.get("ENGINE", "")).rsplit(".", 1)[-1]
    host = database.get("HOST") or "localhost"
    port = database.get("PORT")
    return f"{engine} at {host}" + (f":{port}" if port else "") if engine != "sqlite3" else None


def sqlite_file() -> str | None:
    """The project's SQLite file, if its settings are loaded here already (``discover``)."""
    try:
        from django.conf import settings

        if not settings.configured:
            # a web-only start imports nothing of the project (runner.supervise.discover)
            return None
        database = settings.DATABASES.get("default", {})
    except Exception:  # only a better message is at stake: never fail the error itself
        return None
    if "sqlite3" not in str(database.get("ENGINE", "")):
        return None
    return str(database.get("NAME") or "") or None


def write_config(plan: Plan) -> Path:
    """Write supervisord.conf into a new private directory; return its path."""
    run_dir = Path(tempfile.mkdtemp(prefix="runner-"))  # mode 0700: ours alone
    conf = run_dir / CONF_NAME
    conf.write_text(render_supervisord_conf(plan, run_dir))
    if plan.memory is not None:
        # supervisord's process enforces the budget; it gets the plan's lines, not the plan
        # (making the plan imports the project, which must stay out of supervisord).
        limits = Limits.from_budget(
            plan.memory.budget, plan.shares_mb, plan.memory.graceful_restart
        )
        (run_dir / LIMITS_NAME).write_text(json.dumps(limits.as_dict()))
    return conf


def redis_peak(plan: Plan) -> int | None:
    """The plan's Redis connections at peak, for messages about Redis's connection limit."""
    return plan.redis_connections.total if plan.redis_connections else None


def project_consumers(plan: Plan) -> tuple[RedisConsumer, ...] | None:
    """The project's own Redis consumers when its Celery app was read (``discover``)."""
    return plan.project.celery.consumers if plan.project.celery else None


def check(environ: Mapping[str, str], cwd: Path) -> None:
    """``python -m runner check``: load, then the start-up checks; raise if one fails."""
    settings, plan = load(environ, cwd, port_needed=False)
    check_now(settings.redis, say, redis_peak(plan), project_consumers(plan))


def start(environ: Mapping[str, str], cwd: Path) -> NoReturn:
    """Check, migrate, then become supervisord (in this process: the platform's signals
    reach it)."""
    before = preload.open_descriptors()  # not the project's: the platform's, a shell's
    settings, plan = load(environ, cwd)
    for note in plan.notes:
        say(note)
    if os.geteuid() == 0:
        say(ROOT_NOTE)
    say(
        "starting "
        + ", ".join(f"{p.name} ({p.summary})" if p.summary else p.name for p in plan.programs)
        + f" for {plan.project.settings_module}; broker {plan.broker}"
    )
    # Private from here on: the local queue, results and SQLite database, this user's only.
    os.umask(data_dir.PRIVATE_UMASK)
    prepare_data_dir(settings, plan)
    lock = data_dir.hold(settings.data_dir)
    if plan.memory is not None:
        budget = plan.memory.budget
        shares = ", ".join(f"{name} {mb} MB" for name, mb in plan.shares_mb.items())
        say(
            f"memory: {budget.total_mb} MB budget ({budget.source}); shares {shares} "
            "(python -m runner plan)"
        )
    if plan.redis_connections is not None:
        say(
            f"Redis connections at peak: up to {plan.redis_connections.total} of "
            f"REDIS_MAX_CONNECTIONS {plan.redis_connections.budget} (python -m runner plan)"
        )
    # Before migrations and programs: refuse a Redis configuration that cannot work.
    preflight(
        settings.redis,
        say,
        redis_peak(plan),
        worker="worker" in plan.program_names,
        consumers=project_consumers(plan),
    )
    env = child_environment(environ, settings, plan)
    if plan.migrate:
        # Several instances booting at once (scale-out) migrate one after another.
        with migration_lock(settings.redis, settings.data_dir, say):
            migrate(plan, env, verbose=settings.log_level == "debug")
    else:
        refuse_unmigrated()
    conf = write_config(plan)
    # This PID is supervisord's from here on: `python -m runner status` finds it here.
    write_pointer(settings.data_dir, os.getpid(), f"unix://{conf.parent / SOCKET_NAME}", cwd)
    hazard = fork_or_why(settings, before)
    if hazard is None:
        # Printed once, in this process: the forked programs do not import the project again.
        for text in printed_on_import:
            for line in text.splitlines():
                sys.stdout.write(prefix("import") + line + "\n")
    sys.stdout.flush()
    if hazard is None:
        become_supervisord(conf, env, preload.inherited_files(before, own={lock}))
    if settings.fork:
        say(
            f"each program starts its own interpreter: {hazard}, and a fork would copy it "
            f"half-alive; {preload.FORK_VARIABLE}=false starts them so without this check"
        )
        sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", SUPERVISORD_MODULE, str(conf)], env)


def fork_or_why(settings: Settings, before: frozenset[int]) -> str | None:
    """None when the programs are to be forked from this process, with the web's modules
    imported (``runner.supervise.preload``); otherwise why not."""
    if not settings.fork:
        return f"{preload.FORK_VARIABLE}=false"
    preload.preload_web()
    return preload.fork_hazard(before)


def become_supervisord(conf: Path, env: Mapping[str, str], inherited: frozenset[int]) -> NoReturn:
    """Run supervisord in this process, the programs forked from it (the fork model); the
    ``inherited`` descriptors stay open in every program."""
    from runner.supervise import supervisord

    os.environ.clear()
    os.environ.update(env)
    # What the import made stays where it is: a collection in a forked program would
    # otherwise write to every object's page and un-share it.
    gc.freeze()
    sys.exit(supervisord.main([str(conf)], inherited=inherited))
