"""``python -m runner [start|plan|check|status|variables]``: the command line, and the only
place that turns the runner's errors into messages and exit statuses."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from runner.errors import EXIT_OK, RunnerError
from runner.supervise.logrelay import prefix


def _project_lines(plan) -> list[str]:
    """What was found and from where: settings, WSGI app, Celery app, broker, results."""
    from runner.config.plan import HEALTH_PATH

    project, celery = plan.project, plan.project.celery
    found_in = f": {project.settings_file}" if project.settings_file else ""
    wsgi = (
        f"{project.wsgi_application} (WSGI_APPLICATION)"
        if project.wsgi_application
        else f"WSGI_APPLICATION of {project.settings_module}"
    )
    own = " (the project's own setting)"
    return [
        f"project   {project.settings_module} (from {project.settings_source}{found_in})",
        f"web app   {wsgi}; {HEALTH_PATH} answered by the runner",
        f"celery    -A {project.celery_app} (from {project.celery_source})"
        + (f": {celery.app}" if celery else ""),
        f"broker    {plan.broker}" + (own if celery and not celery.broker_from_environment else ""),
        f"results   {plan.result_backend}"
        + (own if celery and not celery.results_from_environment else ""),
    ]


def _plan_text(plan) -> str:
    lines = [
        *_project_lines(plan),
        f"migrate   {'yes' if plan.migrate else 'no'}",
    ]
    for program in plan.programs:
        lines.append(
            f"{program.name:<9} {program.processes} process(es): " + " ".join(program.command[1:])
        )
    if plan.memory is not None:
        lines += [f"memory    {line}" for line in plan.memory.lines]
    if plan.redis_connections is not None:
        lines += [f"redis     {line}" for line in plan.redis_connections.lines()]
    lines.append(f"stop      {plan.stop}")
    lines += [f"note      {note}" for note in (*plan.notes, *plan.details)]
    return "\n".join(lines)


def _plan_json(plan) -> str:
    data = asdict(plan)
    data["programs"] = [dict(asdict(p), command=list(p.command)) for p in plan.programs]
    if plan.redis_connections is not None:
        data["redis_connections"]["total"] = plan.redis_connections.total
        data["redis_connections"]["lines"] = list(plan.redis_connections.lines())
    return json.dumps(data, indent=2, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="Run Django web, Celery worker and beat as one supervised service.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("start", help="start everything (the default)")
    plan_parser = commands.add_parser("plan", help="print what would run, start nothing")
    plan_parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("variables", help="print the environment variables as a table")
    commands.add_parser(
        "check", help="check that Redis answers as configured (exit 1 if not), start nothing"
    )
    status_parser = commands.add_parser(
        "status",
        help="show the running service's components, memory and Redis (exit 1 if none runs, "
        "or if it is not healthy)",
    )
    status_parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)

    from runner.config.settings import VARIABLES
    from runner.supervise import launch

    if args.command == "variables":
        print("| Variable | Default | Meaning |\n|---|---|---|")
        for variable in VARIABLES:
            print(f"| `{variable.name}` | {variable.default} | {variable.meaning} |")
        return EXIT_OK

    cwd = Path.cwd()
    try:
        if args.command == "plan":
            _settings, plan = launch.load(os.environ, cwd)
            if plan.migrate is None:
                launch.refuse_unmigrated()  # what start would refuse, plan says too
            print(_plan_json(plan) if args.json else _plan_text(plan))
            return EXIT_OK
        if args.command == "check":
            launch.check(os.environ, cwd)
            return EXIT_OK
        if args.command == "status":
            from runner.status import text as status_text

            return status_text.main(os.environ, cwd, as_json=args.json)
        launch.start(os.environ, cwd)
    except RunnerError as error:
        for line in error.lines():
            sys.stderr.write(prefix("runner") + "error: " + line + "\n")
        return error.exit_status
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
