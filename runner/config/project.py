"""Which Django project to run: its settings module and Celery app, and where each came from.

The runner runs the project in its working directory, like ``manage.py`` and ``celery -A``
would: the settings module from ``DJANGO_SETTINGS_MODULE`` or else the default its
``manage.py`` sets; the Celery app from ``CELERY_APP`` or else the settings' top package
(what ``celery -A <package>`` finds). ``runner.supervise.discover`` then checks that they exist and
reads what the project's Celery app will really use (``CeleryConfig``), so that the runner's
start-up report and checks describe the project, not a guess from the environment.

Pure: the caller reads ``manage.py``; ``runner.supervise.discover`` does the imports.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from runner.config.redis import RedisSettings, mask_url
from runner.config.versions import NEWEST, Versions
from runner.errors import ConfigError, Problem

_SETDEFAULT = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]"""
)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


# The certificate check a Redis client does, by the names REDIS_SSL_CERT_REQS uses.
_CERT_CHECKS = {ssl.CERT_NONE: "none", ssl.CERT_OPTIONAL: "optional", ssl.CERT_REQUIRED: "required"}
# What kombu does with a rediss:// broker given no ssl_cert_reqs (see runner.config.redis).
KOMBU_DEFAULT_CERT_CHECK = "none"
_STRICTNESS = ("none", "optional", "required")
LOCAL_BROKER_SCHEME = "filesystem://"  # the runner's local default (runner.web.django_settings)


@dataclass(frozen=True)
class CeleryConfig:
    """What the project's Celery app will use, read from it (URLs masked for people)."""

    app: str  # where the app object is, e.g. config.celery:app
    broker: str
    result_backend: str
    broker_from_environment: bool  # the same broker REDIS_URL & co. give the runner
    results_from_environment: bool
    broker_cert_check: str | None  # rediss:// brokers only: required, optional or none


@dataclass(frozen=True)
class Project:
    """The target project, with the origin of each choice for ``runner plan``.

    The last three fields are filled in by ``runner.supervise.discover`` (when it imports the
    project);
    ``find_project`` leaves them empty.
    """

    settings_module: str
    settings_source: str
    celery_app: str
    celery_source: str
    settings_file: str | None = None  # where the settings module was found, for people
    wsgi_application: str | None = None  # the settings' WSGI_APPLICATION
    celery: CeleryConfig | None = None
    versions: Versions = NEWEST  # the installed libraries (runner.config.versions)


def find_project(
    settings_module: str | None, celery_app: str | None, manage_py: str | None
) -> Project:
    """Resolve the project from the variables and the text of ``manage.py`` (if any)."""
    problems: list[Problem] = []
    if settings_module:
        settings_source = "DJANGO_SETTINGS_MODULE"
    elif manage_py and (match := _SETDEFAULT.search(manage_py)):
        settings_module, settings_source = match.group(1), "manage.py"
    else:
        problems.append(
            Problem(
                "DJANGO_SETTINGS_MODULE",
                None,
                "not set and no manage.py here to read it from; run from your "
                "project's root or set DJANGO_SETTINGS_MODULE",
            )
        )
        settings_module, settings_source = "", ""
    if settings_module and not _DOTTED.match(settings_module):
        problems.append(
            Problem(
                "DJANGO_SETTINGS_MODULE",
                settings_module,
                "not a dotted module path like config.settings.production",
            )
        )

    if celery_app:
        celery_source = "CELERY_APP"
        if not _DOTTED.match(celery_app):
            problems.append(
                Problem(
                    "CELERY_APP", celery_app, "not a module path like config or config.celery:app"
                )
            )
    else:
        celery_app = settings_module.split(".", 1)[0]
        celery_source = f"top package of {settings_module}"
    if problems:
        raise ConfigError(problems)
    return Project(settings_module, settings_source, celery_app, celery_source)


def cert_check(value: object) -> str | None:
    """``ssl.CERT_NONE``, ``"CERT_NONE"``, ``"none"``... -> ``"none"``; None if not one."""
    if isinstance(value, int):
        return _CERT_CHECKS.get(value)
    if isinstance(value, str):
        word = value.strip().lower().removeprefix("cert_")
        return word if word in _CERT_CHECKS.values() else None
    return None


def _broker_cert_check(broker_url: str, broker_use_ssl: object) -> str | None:
    if not broker_url.startswith("rediss://"):
        return None
    if isinstance(broker_use_ssl, Mapping) and "ssl_cert_reqs" in broker_use_ssl:
        return cert_check(broker_use_ssl["ssl_cert_reqs"])
    in_url = parse_qs(urlsplit(broker_url).query).get("ssl_cert_reqs")
    return cert_check(in_url[0]) if in_url else KOMBU_DEFAULT_CERT_CHECK


def celery_config(app: str, conf: Mapping[str, object], redis: RedisSettings) -> CeleryConfig:
    """Describe the Celery configuration ``conf`` against what the environment gives the runner.

    ``conf`` holds the app's ``broker_url``, ``result_backend`` and ``broker_use_ssl`` as
    Celery resolves them (its ``CELERY_BROKER_URL`` variable first, then the settings).
    """
    broker = str(conf.get("broker_url") or "")
    results = str(conf.get("result_backend") or "")
    if redis.broker_url is None:  # the runner's local default
        broker_same = broker.startswith(LOCAL_BROKER_SCHEME)
        results_same = broker_same and results.startswith("file://")
    else:
        broker_same = broker == redis.broker_url
        results_same = results == redis.result_backend
    return CeleryConfig(
        app=app,
        broker=mask_url(broker) or "Celery's default (amqp://localhost)",
        result_backend=mask_url(results) or "none (results are not stored)",
        broker_from_environment=broker_same,
        results_from_environment=results_same,
        broker_cert_check=_broker_cert_check(broker, conf.get("broker_use_ssl")),
    )


def celery_notes(celery: CeleryConfig, redis: RedisSettings) -> tuple[str, ...]:
    """Where the project's Celery settings part from the runner's Redis variables, in words."""
    notes = []
    if not celery.broker_from_environment:
        instead = (
            f"not {mask_url(redis.broker_url)} from REDIS_URL/CELERY_BROKER_URL"
            if redis.broker_url
            else "REDIS_URL is not set"
        )
        notes.append(
            f"the project's settings choose Celery's broker themselves: {celery.broker} "
            f"({instead}); the runner reports it as the project has it"
        )
    wanted, given = redis.tls.cert_reqs, celery.broker_cert_check
    if given is not None and given != wanted:
        if _STRICTNESS.index(given) < _STRICTNESS.index(wanted):
            fix = (
                "add globals().update(runner_settings(BASE_DIR)) to its settings to use the "
                "runner's (README: Bring your own Django project)"
            )
        else:  # the project verifies more than the runner's own check would
            fix = f"set REDIS_SSL_CERT_REQS={given} and REDIS_SSL_CA_CERTS to match it"
        notes.append(
            f"certificate check: the runner's variables ask for '{wanted}' but the project's "
            f"settings give Celery's broker '{given}'; {fix}"
        )
    return tuple(notes)
