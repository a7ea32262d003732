"""Check the target project from the inside before anything starts: the runner's imports.

``runner.config.project`` decides *which* settings module and Celery app to run from names alone;
this module checks that they are there, the way the programs will look for them, so that a
wrong name is one line and exit status 2 instead of a component failing to start:

- the settings module is looked up on the import path without executing it (nor its parent
  packages), like ``importlib.util.find_spec`` would find it;
- when a worker or beat will run, the Celery app is found with Celery's own ``find_app``
  (what ``celery -A`` does), and its configuration is read from it: the broker and result
  backend the worker will use, and the settings' ``WSGI_APPLICATION``. Reading them
  executes the project's settings, which the programs do anyway.

Cost: this runs in the runner's process before it ``exec``s supervisord, so every start pays
it once. Measured here (``python -m bench.discovery``, medians of 10 starts): about 50 ms of
CPU for the seed-style fixture project and for the demo, mostly importing Celery and the
project's Celery module; so about half a second on Render's 0.1 CPU, where ``migrate``
alone costs about 0.5 s of CPU here and each program another 0.4 s or more to set Django up.
A web-only runner (``RUN_WORKER`` and ``RUN_BEAT`` false) only looks up the settings file
(0.2 ms) and imports nothing.

Side effects, kept to this module: the project's directory is put on ``sys.path``, and the
project's modules stay imported. ``os.environ`` is restored afterwards (projects call
``os.environ.setdefault`` when imported) and whatever the project prints while being
imported is kept aside: programs started as new interpreters print it again, under their own
names; in the fork model they do not, and the runner shows it once (``import | ...``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import replace
from importlib.machinery import PathFinder
from pathlib import Path

from runner.config.plan import GUNICORN_CONFIG_FILE
from runner.config.project import TIME_LIMIT_SETTINGS, Project, celery_config, celery_problems
from runner.config.settings import Settings
from runner.config.versions import DISTRIBUTIONS, Versions
from runner.errors import ConfigError, Problem

# Longest exception message quoted in the one-line error; the rest is in the programs' logs.
MAX_MESSAGE_CHARS = 300
CELERY_A_HINT = "give what you pass to celery -A, e.g. config"


def read_manage_py(cwd: Path) -> str | None:
    """The text of the project's manage.py (its settings default), or None without one."""
    try:
        return (cwd / "manage.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def installed_versions() -> Versions:
    """The installed releases of the libraries the runner drives (absent ones are None)."""
    texts: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            texts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            texts[name] = None
    return Versions.parse(texts)


def module_file(name: str) -> str | None:
    """Where module ``name`` is, found without executing it or its parent packages; or None.

    The top package is looked up by every import finder (editable installs included);
    submodules in their parent's folders, as the import system would.
    """
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    for depth in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = PathFinder.find_spec(".".join(parts[: depth + 1]), spec.submodule_search_locations)
    if spec is None:
        return None
    return spec.origin if spec.has_location else name


RUNNER_PACKAGE = Path(__file__).resolve().parents[1]


def _where(error: BaseException, cwd: Path) -> str:
    """`` at config/celery.py:7``: the deepest line of the project's own code in the traceback
    (never the runner's: it sits in the demo's directory, but it is not the user's code)."""
    where = ""
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename)
        if (
            path.is_relative_to(cwd)
            and "site-packages" not in path.parts
            and not path.is_relative_to(RUNNER_PACKAGE)
        ):
            where = f" at {path.relative_to(cwd)}:{frame.lineno}"
    return where


def _describe(error: BaseException, cwd: Path) -> str:
    """``ModuleNotFoundError: No module named 'x'``, on one line, with the project's line."""
    message = " ".join(str(error).split())
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    text = type(error).__name__ + (f": {message}" if message else "")
    return text + _where(error, cwd)


def _shown(path: str, cwd: Path) -> str:
    try:
        return str(Path(path).relative_to(cwd))
    except ValueError:
        return path


def _settings_problem(project: Project, cwd: Path) -> Problem:
    where = project.settings_module.replace(".", "/") + ".py"
    if project.settings_source == "DJANGO_SETTINGS_MODULE":
        return Problem(
            "DJANGO_SETTINGS_MODULE",
            project.settings_module,
            f"no such module from {cwd} (no {where}); run from your project's root or "
            "give the settings you use, e.g. config.settings.production",
        )
    return Problem(
        "DJANGO_SETTINGS_MODULE",
        None,
        f"not set, and manage.py's default {project.settings_module} is no module from "
        f"{cwd} (no {where}); set DJANGO_SETTINGS_MODULE",
    )


def _celery_problem(project: Project, error: BaseException, cwd: Path) -> Problem:
    described = _describe(error, cwd)
    module, _, attribute = project.celery_app.partition(":")
    missing = error.name if isinstance(error, ModuleNotFoundError) else None
    if attribute and missing == project.celery_app:
        # find_app falls back to importing "module:attribute" as a module name.
        described = f"{module} has no attribute {attribute!r}"
    # A missing module that is (part of) the name given is a wrong name; any other error
    # is in the project's code, and the worker would fail the same way.
    wrong_name = isinstance(error, AttributeError) or (
        missing is not None
        and (missing in (module, project.celery_app) or module.startswith(missing + "."))
    )
    fix = CELERY_A_HINT if wrong_name else "fix that error: the worker would fail the same way"
    if project.celery_source == "CELERY_APP":
        return Problem("CELERY_APP", project.celery_app, f"cannot import it ({described}); {fix}")
    return Problem(
        "CELERY_APP",
        None,
        f"not set, and no Celery app found in {project.celery_app} ({project.celery_source}): "
        f"{described}; set CELERY_APP to what you pass to celery -A, e.g. config.celery:app"
        if wrong_name
        else f"not set, and importing {project.celery_app} ({project.celery_source}) failed: "
        f"{described}; {fix}",
    )


def _missing_app(project: Project, installed_apps: list[object]) -> Problem | None:
    """The first INSTALLED_APPS entry that names no installed module, as one Problem.

    Django would fail on it in every program (``ModuleNotFoundError`` in 30 lines of
    traceback, first in migrate); found here without importing any app. An entry may name
    a module or an AppConfig class inside one (``"users.apps.UsersConfig"``).
    """
    for entry in installed_apps:
        if not isinstance(entry, str):
            continue
        if module_file(entry) or ("." in entry and module_file(entry.rsplit(".", 1)[0])):
            continue
        missing = entry.split(".", 1)[0]
        if project.settings_source == "manage.py":
            fix = (
                f"DJANGO_SETTINGS_MODULE is not set, so manage.py's default "
                f"{project.settings_module} was used (often development settings); set "
                "DJANGO_SETTINGS_MODULE to the settings you deploy, e.g. "
                "config.settings.production"
            )
        else:
            fix = f"install {missing} in this environment, or remove it from INSTALLED_APPS"
        given = project.settings_source == "DJANGO_SETTINGS_MODULE"
        return Problem(
            "DJANGO_SETTINGS_MODULE",
            project.settings_module if given else None,
            f"the INSTALLED_APPS of {project.settings_module} name {entry!r}, which is not "
            f"installed (no module {missing!r}); {fix}",
        )
    return None


def _app_name(app: object, celery_app: str) -> str:
    """Where the app object lives, e.g. ``config.celery:app``, for ``runner plan``."""
    if ":" in celery_app:
        return celery_app
    # find_app looks in the module given and in its ``celery`` submodule, where the app is
    # usually defined (the package only re-exports it): name that one first.
    for name in (f"{celery_app}.celery", celery_app):
        module = sys.modules.get(name)
        for attribute, value in vars(module).items() if module else ():
            if value is app and not attribute.startswith("_"):
                return f"{name}:{attribute}"
    return celery_app


# What the project printed while this process imported it (programs forked from this
# process do not print it again: runner.supervise.launch shows it once).
printed_on_import: list[str] = []


@contextlib.contextmanager
def capturing_output() -> Iterator[None]:
    """What is printed inside goes to :data:`printed_on_import`, not to stdout or stderr."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    finally:
        if out.getvalue():
            printed_on_import.append(out.getvalue())


@contextlib.contextmanager
def _importing_from(cwd: Path, settings_module: str) -> Iterator[None]:
    """Import the project as its programs will; then restore the environment; the output is
    kept aside (:func:`capturing_output`)."""
    saved = dict(os.environ)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        with capturing_output():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _read_celery(project: Project, cwd: Path) -> tuple[str, dict[str, object], str | None]:
    """Find the Celery app like ``celery -A``; return where it is, its conf, WSGI_APPLICATION."""
    from celery import Celery
    from celery.app.utils import find_app

    try:
        app = find_app(project.celery_app)
    except Exception as error:  # whatever the project's import raises, the worker would too
        raise ConfigError([_celery_problem(project, error, cwd)]) from error
    if not isinstance(app, Celery):
        fix = f"that is a {type(app).__name__}, not a Celery app; {CELERY_A_HINT}"
        raise ConfigError([Problem("CELERY_APP", project.celery_app, fix)])
    try:
        # As the worker will resolve them: Celery's own variables first, then the settings.
        conf = {
            "broker_url": app.conf.broker_url,
            "result_backend": app.conf.result_backend,
            "broker_use_ssl": app.conf.broker_use_ssl,
            "redis_backend_use_ssl": app.conf.redis_backend_use_ssl,
            **{name: app.conf.get(name) for name in TIME_LIMIT_SETTINGS},
        }
        from django.conf import settings as django_settings

        wsgi = getattr(django_settings, "WSGI_APPLICATION", None)
        conf["caches"] = getattr(django_settings, "CACHES", None)
        installed_apps = list(getattr(django_settings, "INSTALLED_APPS", ()))
        conf["beat_scheduler"] = app.conf.beat_scheduler
        conf["django_celery_beat"] = any(
            isinstance(a, str) and a.split(".")[0] == "django_celery_beat" for a in installed_apps
        )
    except Exception as error:  # the settings' own errors: every program would hit them
        fix = (
            f"importing it failed ({_describe(error, cwd)}); fix the settings: the web, "
            "the worker and the migrations would fail the same way"
        )
        raise ConfigError(
            [Problem("DJANGO_SETTINGS_MODULE", project.settings_module, fix)]
        ) from error
    if problem := _missing_app(project, installed_apps):
        raise ConfigError([problem])
    return _app_name(app, project.celery_app), conf, wsgi


def _scheduler_problem(settings: Settings, cwd: Path) -> Problem | None:
    """The scheduler CELERY_BEAT_ARGS names (``-S``), imported as beat will import it: a
    name that does not import is a start error, not a service that runs without beat."""
    if not settings.beat_scheduler:
        return None
    from celery.utils.imports import load_extension_class_names, symbol_by_name

    aliases = dict(load_extension_class_names("celery.beat_schedulers"))
    try:
        import django

        django.setup()  # as Celery's Django fix-up does in beat: a scheduler may hold models
        symbol_by_name(settings.beat_scheduler, aliases=aliases)
    except Exception as error:  # what beat would raise at its start
        return Problem(
            "CELERY_BEAT_ARGS",
            " ".join(settings.beat_args) or settings.beat_scheduler,
            f"its scheduler {settings.beat_scheduler} cannot be imported "
            f"({_describe(error, cwd)}); name an importable class (module:Class), e.g. "
            "django_celery_beat.schedulers:DatabaseScheduler, or leave --scheduler out",
        )
    return None


def discover(project: Project, settings: Settings, cwd: Path) -> Project:
    """Check ``project`` from ``cwd``, fill in what was found; ConfigError if something is not."""
    if str(cwd) not in sys.path:
        sys.path.insert(0, str(cwd))  # where manage.py, celery -A and Gunicorn look first
    settings_file = module_file(project.settings_module)
    if settings_file is None:
        raise ConfigError([_settings_problem(project, cwd)])
    project = replace(
        project,
        settings_file=_shown(settings_file, cwd),
        versions=installed_versions(),
        gunicorn_config_file=GUNICORN_CONFIG_FILE
        if (cwd / GUNICORN_CONFIG_FILE).is_file()
        else None,
    )
    if not (settings.run_worker or settings.run_beat):
        return project  # the web alone imports nothing here: Gunicorn does, once
    with _importing_from(cwd, project.settings_module):
        app, conf, wsgi = _read_celery(project, cwd)
        if settings.run_beat and (problem := _scheduler_problem(settings, cwd)):
            raise ConfigError([problem])
    celery = celery_config(app, conf, settings.redis)
    if problems := celery_problems(celery, settings.redis):
        raise ConfigError(problems)
    return replace(project, wsgi_application=wsgi, celery=celery)
