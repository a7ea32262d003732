"""``python -m runner status``: the status page's data, in a terminal.

Run from another shell in the same directory and environment as the running service: it
finds the service through the pointer file in the data directory (``runner.supervise.runstate``),
asks supervisord over its control socket, and reads the rest the way the page does
(``runner.status.gather``). Exits 0 while the service runs, whatever the state of its parts;
when nothing runs here it says so in one line and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from runner.errors import EXIT_FAILURE, EXIT_OK, RunnerError
from runner.status import gather as status_data
from runner.status import when
from runner.supervise.runstate import POINTER_NAME, read_pointer

LABEL_WIDTH = 10


class NotRunningError(RunnerError):
    """No live service was found from this directory and environment."""


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{moment:%H:%M:%S} ({when.relative(moment, now)})"


def _line(label: str, text: str) -> str:
    return f"{label:<{LABEL_WIDTH}}{text}"


def render_text(status: status_data.Status) -> str:
    """The status as aligned lines for a terminal."""
    now = status.checked_at
    if status.starting:
        verdict = "starting (a component is within its start period)"
    elif status.healthy:
        verdict = "all running"
    else:
        verdict = "ATTENTION: something is not running"
    lines = [
        _line("service", f"{status.project}: {verdict}"),
        _line("checked", f"{now:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    lines += [_line("problem", problem) for problem in status.problems]
    for component in status.components:
        parts = [component.state]
        if component.pid:
            parts.append(f"pid {component.pid}")
        if component.since:
            parts.append(f"since {_when(component.since, now)}")
        if component.restarts is not None:
            parts.append(f"restarts {component.restarts}")
        if component.memory:
            memory = component.memory
            share = f" of {memory.share_mb:.0f} MB" if memory.share_mb else ""
            parts.append(f"memory {memory.pss_mb:.1f} MB{share} ({memory.processes} processes)")
        lines.append(_line(component.name, ", ".join(parts)))
        if component.note:
            lines.append(_line("", component.note))
        sign = component.sign_of_life
        if sign is not None:
            mark = {True: "ok", False: "NOT OK", None: "?"}[sign.ok]
            lines.append(_line("", f"last sign of life [{mark}]: {sign.summary}"))
    for schedule in status.schedules:
        due = schedule.next_due_at
        if schedule.overdue:
            upcoming = f"OVERDUE since {_when(due, now)}"
        elif due is not None and due <= now:
            upcoming = "due now"  # beat is sending it (runner.status.gather.OVERDUE_AFTER_SECONDS)
        else:
            upcoming = _when(due, now)
        lines.append(
            _line(
                "schedule",
                f"{schedule.name} ({schedule.task}, {schedule.every}): last "
                f"{_when(schedule.last_run_at, now)}, next {upcoming}",
            )
        )
    redis = status.redis
    if not redis.configured:
        lines.append(_line("redis", "not used (local default: no REDIS_URL)"))
    else:
        answer = (
            f"reachable ({redis.latency_ms:.1f} ms)"
            if redis.reachable
            else f"NOT reachable: {redis.error}"
        )
        security = (
            ("TLS, certificate verified" if redis.verified else "TLS, certificate NOT verified")
            if redis.tls
            else "no TLS"
        )
        lines.append(_line("redis", f"{answer}; {redis.url}; {security}"))
    return "\n".join(lines)


def _setup_django(settings_module: str) -> None:
    # The same settings the service's programs run with (runner.supervise.launch sets this for
    # them).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    import django

    django.setup()
    # The project's logging may print to stdout (the demo's does): keep this command's
    # output to the status itself, e.g. without kombu's warnings about the local broker.
    logging.disable(logging.WARNING)


def collect(environ: Mapping[str, str], cwd: Path) -> status_data.Status:
    """Find the service started from ``cwd`` and gather its status."""
    runner_settings, plan = status_data.load_plan(environ, cwd)
    pointer = read_pointer(runner_settings.data_dir)
    if pointer is None:
        raise NotRunningError(
            f"no runner is running from {cwd} (no live {POINTER_NAME} in "
            f"{runner_settings.data_dir}); start one with `python -m runner`, or run this "
            "from the directory and environment the service runs in"
        )
    problems = []
    app = None
    try:
        _setup_django(plan.project.settings_module)
        app = status_data.celery_app_of(plan)
    except Exception as error:  # the supervisord part is still worth showing
        problems.append(
            f"Django or Celery could not be loaded: {error.__class__.__name__}: {error}"
        )
    status = status_data.gather(
        plan,
        runner_settings.redis,
        status_data.Sources(
            supervisor_url=pointer.supervisor_url,
            celery_app=app,
            django_ready=app is not None,
            data_dir=runner_settings.data_dir,
        ),
    )
    if problems:
        status = replace(status, problems=(*problems, *status.problems))
    return status


def main(environ: Mapping[str, str], cwd: Path, as_json: bool) -> int:
    """Print the status; raises NotRunningError when nothing runs here. Exit status 1 when
    the service is not healthy (a component down or restarting, beat overdue, a problem), so
    that a script or a health check can act on it."""
    status = collect(environ, cwd)
    if as_json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(render_text(status))
    return EXIT_OK if status.healthy else EXIT_FAILURE
