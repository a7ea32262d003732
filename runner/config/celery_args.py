"""``CELERY_WORKER_ARGS`` and ``CELERY_BEAT_ARGS``: the flags a project's start commands had.

A project moving from three services (or a Procfile) had flags on its command lines:
``celery -A config.celery_app worker -Q default,emails -c 4 --loglevel=info`` and
``celery ... beat --scheduler django_celery_beat.schedulers:DatabaseScheduler``. The
runner builds those commands itself, so the flags come back through two variables, written
as they were on the command line (shell quoting).

The flags the runner decides itself become what they mean to it, so that the plan (memory,
connections, the beat leader) stays right: ``-c`` is ``CELERY_CONCURRENCY``, ``-P``
``CELERY_POOL``, ``--max-tasks-per-child`` ``CELERY_MAX_TASKS_PER_CHILD``, ``-A``
``CELERY_APP``, ``-S/--scheduler`` the scheduler beat runs (inside the leader lock),
``-l/--loglevel`` that program's log level. Flags that would take the program out of the
runner's hands (``--detach``, ``--logfile``, ``--pidfile``, ``-B``, a schedule file) are
refused with the variable that does it. Everything else (``-Q``, ``-O``, ``-n``,
``--prefetch-multiplier``, ``-E``, ...) is passed to Celery as written, after the runner's
own flags.

Pure: text in, ``CeleryArgs`` and problems out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from runner.errors import Problem

WORKER_ARGS_VARIABLE = "CELERY_WORKER_ARGS"
BEAT_ARGS_VARIABLE = "CELERY_BEAT_ARGS"

# Flags the runner reads, by every spelling Celery accepts: (name in CeleryArgs, takes a value).
_MAPPED = {
    "-A": "app",
    "--app": "app",
    "-c": "concurrency",
    "--concurrency": "concurrency",
    "-P": "pool",
    "--pool": "pool",
    "--max-tasks-per-child": "max_tasks_per_child",
    "-l": "log_level",
    "--loglevel": "log_level",
    "-S": "scheduler",
    "--scheduler": "scheduler",
}
# Flags that would take the program out of the runner's hands, and what does it instead.
_REFUSED = {
    "-B": "beat runs inside the worker by default (BEAT_MODE=embedded); RUN_BEAT turns it off",
    "--beat": "beat runs inside the worker by default (BEAT_MODE=embedded); RUN_BEAT turns it off",
    "-s": "the runner keeps beat's schedule file in RUNNER_DATA_DIR",
    "--schedule": "the runner keeps beat's schedule file in RUNNER_DATA_DIR",
    "--schedule-filename": "the runner keeps beat's schedule file in RUNNER_DATA_DIR",
    "-D": "the runner supervises the program in the foreground",
    "--detach": "the runner supervises the program in the foreground",
    "-f": "every line goes to the runner's one log (stdout)",
    "--logfile": "every line goes to the runner's one log (stdout)",
    "--pidfile": "the runner knows its programs' PIDs (python -m runner status)",
    "--max-memory-per-child": "the runner sets it from the memory budget (MEMORY_BUDGET_MB)",
}
# Only for beat as a program of its own: the worker's embedded beat has no such flag.
SEPARATE_BEAT_ONLY = ("--max-interval",)
# Mapped flags that only the worker has.
_WORKER_ONLY = {"concurrency", "pool", "max_tasks_per_child"}


@dataclass(frozen=True)
class CeleryArgs:
    """One program's flags: those the runner reads, and the rest passed through as written."""

    app: str | None = None
    concurrency: int | None = None
    pool: str | None = None
    max_tasks_per_child: int | None = None
    log_level: str | None = None
    scheduler: str | None = None
    passed: tuple[str, ...] = ()


def _split(variable: str, text: str, problems: list[Problem]) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as error:
        problems.append(Problem(variable, text, f"cannot be split like a command line ({error})"))
        return []


def parse_celery_args(variable: str, text: str | None, problems: list[Problem]) -> CeleryArgs:
    """Read one variable's flags; problems are appended to ``problems``."""
    if not text or not text.strip():
        return CeleryArgs()
    tokens = _split(variable, text, problems)
    found: dict[str, str] = {}
    passed: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        flag, equals, attached = token.partition("=")
        if not equals and len(token) > 2 and token[:2] in _MAPPED and not token.startswith("--"):
            flag, attached, equals = token[:2], token[2:], "="  # -c4, -Qdefault style
        if token in ("worker", "beat"):
            problems.append(
                Problem(variable, text, f"holds the flags only, without '{token}' before them")
            )
        elif flag in _REFUSED:
            problems.append(Problem(variable, text, f"{flag} is not for here: {_REFUSED[flag]}"))
        elif flag in _MAPPED:
            if equals:
                value = attached
            elif index + 1 < len(tokens):
                index += 1
                value = tokens[index]
            else:
                problems.append(Problem(variable, text, f"{flag} needs a value"))
                break
            found[_MAPPED[flag]] = value
        else:
            passed.append(token)
        index += 1
    return _checked(variable, text, found, tuple(passed), problems)


def _checked(
    variable: str,
    text: str,
    found: dict[str, str],
    passed: tuple[str, ...],
    problems: list[Problem],
) -> CeleryArgs:
    only = _WORKER_ONLY if variable == BEAT_ARGS_VARIABLE else set()
    for name in sorted(set(found) & only):
        problems.append(
            Problem(
                variable,
                text,
                f"{name.replace('_', ' ')} is the worker's; use {WORKER_ARGS_VARIABLE}",
            )
        )
    numbers: dict[str, int | None] = {}
    for name in ("concurrency", "max_tasks_per_child"):
        if name in found:
            try:
                numbers[name] = int(found[name])
                if numbers[name] < 1:
                    raise ValueError
            except ValueError:
                problems.append(
                    Problem(
                        variable,
                        text,
                        f"{name.replace('_', ' ')} {found[name]!r} is not a whole number above 0",
                    )
                )
                numbers[name] = None
    return CeleryArgs(
        app=found.get("app"),
        concurrency=numbers.get("concurrency"),
        pool=found.get("pool"),
        max_tasks_per_child=numbers.get("max_tasks_per_child"),
        log_level=found["log_level"].lower() if "log_level" in found else None,
        scheduler=found.get("scheduler"),
        passed=passed,
    )
