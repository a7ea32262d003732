"""The Render Blueprints (render.yaml, render.scale.yaml) checked against the runner itself.

Render is the one thing that cannot run here, so these tests read the two files the way
Render would and hold every value to what the runner and the demo app accept: the
variables they set are known, their values parse (per service, group variables merged in),
the start command exists, the health path is the one the runner serves.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import shlex
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from runner.config.plan import HEALTH_PATH, make_plan
from runner.config.project import find_project
from runner.config.settings import VARIABLES, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SINGLE = REPO_ROOT / "render.yaml"
SCALE = REPO_ROOT / "render.scale.yaml"
START_COMMAND = ["python", "-m", "runner"]

# What the demo app reads besides the runner's variables (app/settings.py), and what
# Render's Python runtime itself reads at build time.
APP_VARIABLES = {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL"}
PLATFORM_VARIABLES = {"PYTHON_VERSION"}
KNOWN_VARIABLES = {v.name for v in VARIABLES} | APP_VARIABLES | PLATFORM_VARIABLES

# What a user types when Render prompts for a `sync: false` variable (a Redis Cloud URL).
PROMPTED_SAMPLES = {"REDIS_URL": "redis://default:s3cret@redis-12345.c1.cloud.example:12345"}
# What `fromDatabase: {property: connectionString}` gives a service.
DATABASE_SAMPLE = "postgresql://app:s3cret@dpg-example-a:5432/app"
# Not available on free web services (Render's docs): a Blueprint using them fails.
PAID_ONLY_FIELDS = ("preDeployCommand", "maxShutdownDelaySeconds")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def value_of(entry: dict) -> str:
    """The value Render would give one ``envVars`` entry."""
    if "value" in entry:
        return str(entry["value"])
    if entry.get("generateValue"):
        return secrets.token_urlsafe(32)  # Render: a base64-encoded 256-bit value
    if entry.get("sync") is False:
        if entry["key"] not in PROMPTED_SAMPLES:
            pytest.fail(f"{entry['key']} is prompted (sync: false) but has no sample here")
        return PROMPTED_SAMPLES[entry["key"]]
    if "fromDatabase" in entry:
        return DATABASE_SAMPLE
    pytest.fail(f"unsupported envVars entry {entry!r}")


def service_environment(blueprint: dict, service: dict) -> dict[str, str]:
    """Every variable a service gets: its groups' first, then its own (which win)."""
    groups = {group["name"]: group for group in blueprint.get("envVarGroups", [])}
    environ: dict[str, str] = {}
    for entry in service.get("envVars", []):
        if "fromGroup" in entry:
            assert entry["fromGroup"] in groups, f"no envVarGroup named {entry['fromGroup']}"
            for grouped in groups[entry["fromGroup"]]["envVars"]:
                environ[grouped["key"]] = value_of(grouped)
        else:
            environ[entry["key"]] = value_of(entry)
    return environ


def all_entries(blueprint: dict) -> list[dict]:
    entries = [e for s in blueprint["services"] for e in s.get("envVars", []) if "key" in e]
    for group in blueprint.get("envVarGroups", []):
        entries += group["envVars"]
    return entries


@pytest.fixture(params=[SINGLE, SCALE], ids=lambda p: p.name)
def blueprint(request) -> dict:
    return load(request.param)


def test_every_variable_set_is_one_the_runner_or_the_app_reads(blueprint):
    """No Blueprint sets a variable nobody reads (a typo would be silently ignored)."""
    unknown = sorted({e["key"] for e in all_entries(blueprint)} - KNOWN_VARIABLES)
    assert unknown == []


def test_every_service_environment_parses_and_plans(blueprint):
    """Each service's merged environment passes the runner's validation and makes a plan."""
    manage_py = (REPO_ROOT / "manage.py").read_text()
    for service in blueprint["services"]:
        environ = service_environment(blueprint, service)
        settings = load_settings(environ, REPO_ROOT)  # raises ConfigError listing problems
        project = find_project(settings.django_settings_module, settings.celery_app, manage_py)
        make_plan(settings, project)


def test_every_service_starts_the_runner_and_builds_from_the_requirements(blueprint):
    """The start command is `python -m runner` (which exists) and the build installs the pins."""
    assert importlib.util.find_spec("runner.__main__") is not None
    assert (REPO_ROOT / "requirements.txt").is_file()
    for service in blueprint["services"]:
        assert service["runtime"] == "python"
        assert shlex.split(service["startCommand"]) == START_COMMAND
        assert "pip install -r requirements.txt" in service["buildCommand"]
        if service["type"] == "web":
            assert "manage.py collectstatic --noinput" in service["buildCommand"]
            assert service["healthCheckPath"] == HEALTH_PATH
        if service.get("plan") == "free":
            # A free instance starts from its build's filesystem at every wake: the demo's
            # SQLite migrated there makes the runner's migrate at boot a no-op check.
            assert service["buildCommand"].endswith("python manage.py migrate --noinput")


def test_python_version_is_a_full_version_the_runner_supports(blueprint):
    """PYTHON_VERSION pins Render's Python to one full version inside requires-python."""
    versions = {e["value"] for e in all_entries(blueprint) if e["key"] == "PYTHON_VERSION"}
    assert len(versions) == 1
    (version,) = versions
    # tomllib is Python 3.11+; the one line is enough here.
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    requires = re.search(r'^requires-python = "([^"]+)"', pyproject, re.M).group(1)
    assert re.fullmatch(r"3\.\d+\.\d+", version)
    assert Version(version) in SpecifierSet(requires)


def test_secrets_are_generated_or_prompted_never_written_down(blueprint):
    """SECRET_KEY and the status token are generated, REDIS_URL is asked for at creation."""
    by_key = {e["key"]: e for e in all_entries(blueprint)}
    assert by_key["SECRET_KEY"] == {"key": "SECRET_KEY", "generateValue": True}
    assert by_key["RUNNER_STATUS_TOKEN"] == {"key": "RUNNER_STATUS_TOKEN", "generateValue": True}
    assert by_key["REDIS_URL"] == {"key": "REDIS_URL", "sync": False}
    assert by_key["REQUIRE_REDIS_SSL"]["value"] == "true"


def test_the_single_service_blueprint_is_one_free_web_service_running_everything():
    """render.yaml: one free web service that runs web, worker and beat, with no paid field."""
    blueprint = load(SINGLE)
    [service] = blueprint["services"]
    assert (service["type"], service["plan"]) == ("web", "free")
    assert not [field for field in PAID_ONLY_FIELDS if field in service]
    settings = load_settings(service_environment(blueprint, service), REPO_ROOT)
    assert settings.components == ("web", "worker", "beat")


def test_the_scale_blueprint_runs_each_component_once_with_the_same_code():
    """render.scale.yaml: web, worker and beat services differing only in the flags, beat once."""
    blueprint = load(SCALE)
    services = blueprint["services"]
    components = {
        service["name"]: load_settings(
            service_environment(blueprint, service), REPO_ROOT
        ).components
        for service in services
    }
    assert sorted(components.values()) == [("beat",), ("web",), ("worker",)]
    for service in services:
        expected_type = "web" if components[service["name"]] == ("web",) else "worker"
        assert service["type"] == expected_type
        if service["type"] == "worker":
            assert service["plan"] != "free"  # background workers have no free plan
        if components[service["name"]] == ("beat",):
            assert service.get("numInstances", 1) == 1
    # Separate services share no disk: one database for all, and Redis (no local default).
    databases = {database["name"] for database in blueprint["databases"]}
    for service in services:
        environ = service_environment(blueprint, service)
        assert environ["DATABASE_URL"] == DATABASE_SAMPLE
        assert load_settings(environ, REPO_ROOT).redis.broker_url is not None
        [source] = [e["fromDatabase"]["name"] for e in service["envVars"] if "fromDatabase" in e]
        assert source in databases
