"""The real-project fixture (cookiecutter-django, tests/fixtures/cookiecutter_django) as a
user has it: its own venv with its pinned requirements, the runner installed beside them,
a checkout to run from, and the variables its production settings read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.runner import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "cookiecutter_django"
PRODUCTION = "config.settings.production"
CELERY_APP = "config.celery_app"  # what its Procfile passes to celery -A
# A fresh venv with the project's ~40 pinned packages (psycopg[c] compiles) and the runner.
INSTALL_TIMEOUT = 600.0
COMMAND_TIMEOUT = 120.0


def packages(python: Path) -> dict[str, str]:
    """The packages of a venv as {lower-case name: version} (``pip list``)."""
    done = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=COMMAND_TIMEOUT,
    )
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(done.stdout)}


def install(venv: Path) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A venv with the project's production requirements, then the runner: (its python,
    the packages before the runner, after)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=COMMAND_TIMEOUT)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    requirements = FIXTURE / "requirements" / "production.txt"
    constraints = FIXTURE / "FIXTURE-constraints.txt"  # what its lock file would hold
    subprocess.run(
        [*pip, "-r", str(requirements), "-c", str(constraints)],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    before = packages(python)
    subprocess.run([*pip, str(REPO_ROOT)], check=True, timeout=INSTALL_TIMEOUT)
    return python, before, packages(python)


def checkout(destination: Path) -> Path:
    """A copy of the fixture (collectstatic writes into it), as a user's checkout."""
    shutil.copytree(FIXTURE, destination)
    return destination


def project_env(base: Mapping[str, str], database: str, **variables: str) -> dict[str, str]:
    """What the project's production settings read, over ``base`` (no DATABASE_URL of its)."""
    env = {name: value for name, value in base.items() if name != "DATABASE_URL"}
    env |= {
        "DATABASE_URL": database,
        "DJANGO_SECRET_KEY": "test-not-secret-" + "x" * 40,
        "DJANGO_ADMIN_URL": "admin/",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        # Render terminates TLS in front; tests and benchmarks speak plain HTTP to the port.
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return env | variables


def run(
    python: Path, project: Path, env: Mapping[str, str], *args: str
) -> subprocess.CompletedProcess:
    """``python *args`` in the project's checkout with ``env``; output captured."""
    return subprocess.run(
        [str(python), *args],
        cwd=project,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
