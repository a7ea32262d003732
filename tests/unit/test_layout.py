"""The layout of ``runner/``: each package imports only what its docstring allows, the pure
configuration path loads no framework, and the public import paths keep working."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "runner"
PACKAGES = ("config", "supervise", "worker", "web", "status")
# Which of the runner's packages each package may import (at any depth: the data path runs
# one way, config -> supervise -> status -> web, and the worker sees only config).
MAY_IMPORT = {
    "config": {"config"},
    "supervise": {"config", "supervise"},
    "worker": {"config", "worker"},
    "status": {"config", "supervise", "status"},
    "web": {"config", "status", "web", "worker"},
}
FRAMEWORKS = ("django", "celery", "kombu", "billiard", "supervisor", "gunicorn", "redis")


def runner_imports(path: Path) -> set[str]:
    """The ``runner.<package>`` names a module imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "runner" and len(parts) > 1 and parts[1] in PACKAGES:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_it_may(package):
    """No module of a package imports a runner package its place in the data path forbids."""
    wrong = {
        str(path.relative_to(RUNNER)): sorted(runner_imports(path) - MAY_IMPORT[package])
        for path in sorted((RUNNER / package).glob("*.py"))
    }
    assert {name: bad for name, bad in wrong.items() if bad} == {}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_lives_there_and_what_it_may_import(package):
    """Every package's docstring names its modules' job and its allowed imports."""
    doc = ast.get_docstring(ast.parse((RUNNER / package / "__init__.py").read_text()))
    assert doc and "May import:" in doc


def test_every_module_has_a_docstring():
    """Every module of runner/ starts with a docstring saying its job."""
    missing = [
        str(path.relative_to(RUNNER))
        for path in sorted(RUNNER.rglob("*.py"))
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert missing == []


def test_the_pure_configuration_path_loads_no_framework():
    """Importing every module of runner.config loads nothing of Django, Celery, kombu,
    supervisor, Gunicorn or redis-py (checked in a fresh interpreter)."""
    modules = [f"runner.config.{path.stem}" for path in sorted((RUNNER / "config").glob("*.py"))]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=RUNNER.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == []


def test_public_import_paths_name_the_same_objects(tmp_path):
    """The paths projects write (settings, CACHES, urls.py, a Procfile's WSGI entry) are the
    objects of the new layout, in a process with the demo's Django settings loaded."""
    pairs = [
        ("runner.django", "runner_settings", "runner.web.django_settings"),
        ("runner.cache", "PrefixedRedisCache", "runner.web.cache"),
        ("runner.status_view", "urlpatterns", "runner.web.status_view"),
        ("runner.wsgi", "application", "runner.web.wsgi"),
    ]
    script = (
        "import django, importlib, json\n"
        "django.setup()\n"
        f"print(json.dumps([getattr(importlib.import_module(a), n) is "
        f"getattr(importlib.import_module(b), n) for a, n, b in {pairs!r}]))"
    )
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "app.settings"}
    env["RUNNER_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=RUNNER.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True] * len(pairs)
