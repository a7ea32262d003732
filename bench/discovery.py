"""CPU the runner's start-up check of the project costs (``runner.supervise.discover``), per start.

    .venv/bin/python -m bench.discovery [--runs 10]

Each run is a fresh interpreter, as at a real start: it imports the runner, resolves the
project from its names, then times ``discover()`` alone with ``time.process_time`` (CPU,
not wall: Render's free CPU is 0.1 core, so a start waits about ten times the CPU seconds).
Measured for the seed-style fixture project and the demo, and for a web-only runner
(``RUN_WORKER=false RUN_BEAT=false``), which imports nothing. Prints medians in ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from tests.support.runner import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "seed_project"
RUN_TIMEOUT = 60

# Runs in the project's directory; prints the CPU seconds discover() took.
SNIPPET = """
import os, time
from pathlib import Path
from runner.supervise.discover import discover
from runner.supervise.discover import read_manage_py
from runner.config.project import find_project
from runner.config.settings import load_settings
cwd = Path.cwd()
settings = load_settings(os.environ, cwd)
project = find_project(settings.django_settings_module, settings.celery_app, read_manage_py(cwd))
began = time.process_time()
discover(project, settings, cwd)
print(time.process_time() - began)
"""

CASES = (
    ("seed-style fixture", FIXTURE, {"DJANGO_SETTINGS_MODULE": "config.settings.production"}),
    ("demo app", REPO_ROOT, {}),
    ("fixture, web only", FIXTURE, {"RUN_WORKER": "false", "RUN_BEAT": "false"}),
)


def measure(cwd, variables: dict[str, str], runs: int) -> float:
    """Median CPU milliseconds of discover() over ``runs`` fresh interpreters."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_APP")}
    env |= {"PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1", **variables}
    seconds = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", SNIPPET],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=RUN_TIMEOUT,
        )
        seconds.append(float(result.stdout.strip().splitlines()[-1]))
    return statistics.median(seconds) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for name, cwd, variables in CASES:
        print(f"{name:<20} {measure(cwd, variables, args.runs):7.1f} ms CPU (median)")


if __name__ == "__main__":
    main()
