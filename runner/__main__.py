"""``python -m runner [start|plan|variables]``: the command line, and the only place that turns
the runner's errors into messages and exit statuses."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from runner.errors import EXIT_OK, RunnerError
from runner.logrelay import prefix


def _plan_text(plan) -> str:
    lines = [
        f"project   {plan.project.settings_module} (from {plan.project.settings_source})",
        f"celery    -A {plan.project.celery_app} (from {plan.project.celery_source})",
        f"broker    {plan.broker}",
        f"results   {plan.result_backend}",
        f"migrate   {'yes' if plan.migrate else 'no'}",
    ]
    for program in plan.programs:
        lines.append(
            f"{program.name:<9} {program.processes} process(es): " + " ".join(program.command[1:])
        )
    lines += [f"note      {note}" for note in plan.notes]
    return "\n".join(lines)


def _plan_json(plan) -> str:
    data = asdict(plan)
    data["programs"] = [dict(asdict(p), command=list(p.command)) for p in plan.programs]
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
    args = parser.parse_args(argv)

    from runner import launch
    from runner.settings import VARIABLES

    if args.command == "variables":
        print("| Variable | Default | Meaning |\n|---|---|---|")
        for variable in VARIABLES:
            print(f"| `{variable.name}` | {variable.default} | {variable.meaning} |")
        return EXIT_OK

    cwd = Path.cwd()
    try:
        if args.command == "plan":
            _settings, plan = launch.load(os.environ, cwd)
            print(_plan_json(plan) if args.json else _plan_text(plan))
            return EXIT_OK
        launch.start(os.environ, cwd)
    except RunnerError as error:
        for line in error.lines():
            sys.stderr.write(prefix("runner") + "error: " + line + "\n")
        return error.exit_status
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
