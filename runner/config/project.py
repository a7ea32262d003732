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

from runner.config.redis import (
    CERT_REQS,
    URL_CERT_REQS,
    RedisSettings,
    SecretURL,
    TLSOptions,
    mask_url,
    url_tls_options,
    without_tls_options,
)
from runner.config.versions import NEWEST, Versions
from runner.errors import ConfigError, Problem

_SETDEFAULT = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]"""
)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


# The certificate check a Redis client does, by the names REDIS_SSL_CERT_REQS uses.
_CERT_CHECKS = {ssl.CERT_NONE: "none", ssl.CERT_OPTIONAL: "optional", ssl.CERT_REQUIRED: "required"}
# kombu gives a rediss:// broker with no TLS options ssl_cert_reqs=CERT_NONE (with a warning:
# kombu.connection); redis-py, and so a dict of options without ssl_cert_reqs, verifies.
KOMBU_DEFAULT_CERT_CHECK = "none"
REDIS_PY_DEFAULT_CERT_CHECK = "required"
_STRICTNESS = ("none", "optional", "required")
LOCAL_BROKER_SCHEME = "filesystem://"  # the runner's local default (runner.web.django_settings)
# Celery's own scheduler (beat_scheduler's default), and django_celery_beat's, which reads
# the periodic tasks people create in the admin.
CELERY_DEFAULT_SCHEDULER = "celery.beat:PersistentScheduler"
DATABASE_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# What Celery uses when the project gives it no broker URL at all.
CELERY_DEFAULT_BROKER = "amqp://guest@localhost//"
# Celery's settings for every task's time limits (per-task limits live on the tasks).
TIME_LIMIT_SETTINGS = ("task_time_limit", "task_soft_time_limit")
# Django cache backends that talk to Redis, and where each keeps redis-py's arguments.
REDIS_CACHE_BACKENDS = {
    "django.core.cache.backends.redis.RedisCache": None,  # OPTIONS themselves
    "runner.cache.PrefixedRedisCache": None,
    "runner.web.cache.PrefixedRedisCache": None,
    "django_redis.cache.RedisCache": "CONNECTION_POOL_KWARGS",
}


@dataclass(frozen=True)
class RedisConsumer:
    """One library that will talk to Redis for the project, configured as the project has it.

    ``tls`` is what that library will do, read the way the library reads it (kombu for the
    broker, Celery's backend for results, redis-py for the cache); None for ``redis://``.
    ``problem`` is a configuration the library will refuse, in words.
    """

    use: str  # broker, results or cache
    setting: str  # the project's setting it comes from, e.g. CELERY_BROKER_URL
    url: SecretURL
    tls: TLSOptions | None
    problem: str | None = None


@dataclass(frozen=True)
class CeleryConfig:
    """What the project's Celery app will use, read from it (URLs masked for people)."""

    app: str  # where the app object is, e.g. config.celery:app
    broker: str
    result_backend: str
    broker_from_environment: bool  # the same broker REDIS_URL & co. give the runner
    results_from_environment: bool
    consumers: tuple[RedisConsumer, ...] = ()  # broker, results, cache: those on Redis
    broker_is_default: bool = False  # no broker URL at all: Celery falls back to amqp
    # Time limits the project sets for every task, e.g. (("task_time_limit", 300.0),): only
    # the prefork pool enforces them (Celery's threads pool ignores them).
    time_limits: tuple[tuple[str, float], ...] = ()
    beat_scheduler: str = CELERY_DEFAULT_SCHEDULER  # the project's beat_scheduler setting
    django_celery_beat: bool = False  # in INSTALLED_APPS: periodic tasks in the database

    @property
    def broker_cert_check(self) -> str | None:
        """rediss:// brokers only: required, optional or none."""
        broker = next((c for c in self.consumers if c.use == "broker"), None)
        return broker.tls.cert_reqs if broker is not None and broker.tls else None


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
    gunicorn_config_file: str | None = None  # a gunicorn.conf.py in the project's directory


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


def _tls_from(options: Mapping[str, object], default_check: str) -> tuple[TLSOptions, str | None]:
    """TLSOptions from redis-py style keyword arguments; (options, problem)."""
    reqs = options.get("ssl_cert_reqs", default_check)
    check = cert_check(reqs) if reqs is not None else "none"
    problem = None
    if check is None:
        problem = f"ssl_cert_reqs={reqs!r} is not one of required, optional, none"
        check = REDIS_PY_DEFAULT_CERT_CHECK

    def text(key: str) -> str | None:
        value = options.get(key)
        return str(value) if value else None

    tls = TLSOptions(
        check,
        ca_file=text("ssl_ca_certs"),
        ca_data=text("ssl_ca_data"),
        certfile=text("ssl_certfile"),
        keyfile=text("ssl_keyfile"),
    )
    return tls, problem


def _broker(url: str, use_ssl: object) -> RedisConsumer:
    """kombu: options in the URL replace broker_use_ssl; neither means CERT_NONE."""
    secret = SecretURL(url)
    if not url.startswith("rediss://"):
        return RedisConsumer("broker", "CELERY_BROKER_URL", secret, None)
    in_url = url_tls_options(url)
    if in_url:
        options: Mapping[str, object] = {
            k: (URL_CERT_REQS.get(v, v) if k == "ssl_cert_reqs" else v) for k, v in in_url.items()
        }
        tls, problem = _tls_from(options, REDIS_PY_DEFAULT_CERT_CHECK)
    elif isinstance(use_ssl, Mapping) and use_ssl:
        tls, problem = _tls_from(use_ssl, REDIS_PY_DEFAULT_CERT_CHECK)
    elif use_ssl:
        tls = TLSOptions(REDIS_PY_DEFAULT_CERT_CHECK)
        problem = (
            "CELERY_BROKER_USE_SSL is True: kombu's Redis transport needs a dict of options "
            "(e.g. {'ssl_cert_reqs': ssl.CERT_REQUIRED}) and connects without TLS otherwise"
        )
    else:
        tls, problem = TLSOptions(KOMBU_DEFAULT_CERT_CHECK), None
    return RedisConsumer("broker", "CELERY_BROKER_URL", secret, tls, problem)


def _results(url: str, use_ssl: object) -> RedisConsumer:
    """Celery's Redis backend: redis_backend_use_ssl, then the URL's options on top; a
    rediss:// URL with ssl_cert_reqs in neither is refused when the worker starts."""
    secret = SecretURL(url)
    options = dict(use_ssl) if isinstance(use_ssl, Mapping) else {}
    in_url = url_tls_options(url)
    if not url.startswith("rediss://"):
        problem = (
            "TLS options with a redis:// URL: Celery's result backend refuses them; write rediss://"
            if options or in_url
            else None
        )
        return RedisConsumer("results", "CELERY_RESULT_BACKEND", secret, None, problem)
    options.update(in_url)
    if "ssl_cert_reqs" not in options:
        return RedisConsumer(
            "results",
            "CELERY_RESULT_BACKEND",
            secret,
            TLSOptions(REDIS_PY_DEFAULT_CERT_CHECK),
            "a rediss:// result backend needs ssl_cert_reqs (Celery refuses it otherwise and "
            "the worker stops): add ?ssl_cert_reqs=required (or none) to the URL, or set "
            "CELERY_REDIS_BACKEND_USE_SSL",
        )
    tls, problem = _tls_from(options, REDIS_PY_DEFAULT_CERT_CHECK)
    return RedisConsumer("results", "CELERY_RESULT_BACKEND", secret, tls, problem)


def _cache(caches: object) -> RedisConsumer | None:
    """The project's default cache, when it is on Redis, as redis-py will connect to it."""
    default = caches.get("default") if isinstance(caches, Mapping) else None
    if not isinstance(default, Mapping) or default.get("BACKEND") not in REDIS_CACHE_BACKENDS:
        return None
    location = default.get("LOCATION")
    url = location[0] if isinstance(location, list | tuple) and location else location
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://")):
        return None
    options = default.get("OPTIONS") or {}
    key = REDIS_CACHE_BACKENDS[default["BACKEND"]]
    if key is not None and isinstance(options, Mapping):
        options = options.get(key) or {}
    secret = SecretURL(url)
    if not url.startswith("rediss://"):
        return RedisConsumer("cache", "CACHES", secret, None)
    merged = dict(options) if isinstance(options, Mapping) else {}
    merged.update(url_tls_options(url))  # redis-py: the URL's query wins over OPTIONS
    tls, problem = _tls_from(merged, REDIS_PY_DEFAULT_CERT_CHECK)
    if isinstance(merged.get("ssl_cert_reqs"), str) and merged["ssl_cert_reqs"] not in CERT_REQS:
        # Celery reads CERT_NONE; redis-py refuses it ("Invalid SSL Certificate Requirements").
        problem = (
            f"ssl_cert_reqs={merged['ssl_cert_reqs']!r} for the cache: redis-py takes only "
            "none, optional or required"
        )
    return RedisConsumer("cache", "CACHES", secret, tls, problem)


def redis_consumers(conf: Mapping[str, object]) -> tuple[RedisConsumer, ...]:
    """Broker, results and cache as the project configured them, those that use Redis."""
    found: list[RedisConsumer] = []
    broker = str(conf.get("broker_url") or "")
    if broker.startswith(("redis://", "rediss://")):
        found.append(_broker(broker, conf.get("broker_use_ssl")))
    results = str(conf.get("result_backend") or "")
    if results.startswith(("redis://", "rediss://")):
        found.append(_results(results, conf.get("redis_backend_use_ssl")))
    if (cache := _cache(conf.get("caches"))) is not None:
        found.append(cache)
    return tuple(found)


def celery_config(app: str, conf: Mapping[str, object], redis: RedisSettings) -> CeleryConfig:
    """Describe the Celery configuration ``conf`` against what the environment gives the runner.

    ``conf`` holds the app's ``broker_url``, ``result_backend``, ``broker_use_ssl`` and
    ``redis_backend_use_ssl`` as Celery resolves them (its ``CELERY_BROKER_URL`` variable
    first, then the settings), and the project's Django ``caches``.
    """
    broker = str(conf.get("broker_url") or "")
    results = str(conf.get("result_backend") or "")
    if redis.broker_url is None:  # the runner's local default
        broker_same = broker.startswith(LOCAL_BROKER_SCHEME)
        results_same = broker_same and results.startswith("file://")
    else:
        # runner_settings hands out the URLs without their TLS options (runner.config.redis).
        broker_same = broker in (redis.broker_url, without_tls_options(redis.broker_url))
        results_same = bool(redis.result_backend) and results in (
            redis.result_backend,
            without_tls_options(redis.result_backend),
        )
    return CeleryConfig(
        app=app,
        broker=mask_url(broker) or f"Celery's default ({CELERY_DEFAULT_BROKER})",
        result_backend=mask_url(results) or "none (results are not stored)",
        broker_from_environment=broker_same,
        results_from_environment=results_same,
        consumers=redis_consumers(conf),
        broker_is_default=not broker,
        beat_scheduler=str(conf.get("beat_scheduler") or CELERY_DEFAULT_SCHEDULER),
        django_celery_beat=bool(conf.get("django_celery_beat")),
        time_limits=tuple(
            (name, float(value))
            for name in TIME_LIMIT_SETTINGS
            if isinstance(value := conf.get(name), int | float) and value > 0
        ),
    )


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def celery_problems(celery: CeleryConfig, redis: RedisSettings) -> list[Problem]:
    """What the project's own Celery and cache settings will do that cannot work, or that
    the runner's variables ask otherwise: one Problem each (exit 2, nothing started)."""
    problems: list[Problem] = []
    if celery.broker_is_default:
        problems.append(
            Problem(
                "CELERY_BROKER_URL",
                None,
                "the project's settings give Celery no broker URL (empty or unset), so Celery "
                f"would use its default {CELERY_DEFAULT_BROKER}, where nothing runs; set "
                "CELERY_BROKER_URL (e.g. to your REDIS_URL) or let the settings use "
                "runner_settings (docs/byo-project.md)",
            )
        )
    for consumer in celery.consumers:
        if consumer.problem:
            problems.append(Problem(consumer.setting, str(consumer.url), consumer.problem))
    # One line per connection, however many of the project's settings share it.
    groups: dict[tuple[SecretURL, TLSOptions | None], list[RedisConsumer]] = {}
    for consumer in celery.consumers:
        groups.setdefault((consumer.url, consumer.tls), []).append(consumer)
    for (url, tls), sharing in groups.items():
        settings = _and([c.setting for c in sharing])
        gives = "give" if len(sharing) > 1 else "gives"
        uses = _and([c.use for c in sharing])
        if redis.require_tls and tls is None:
            problems.append(
                Problem(
                    "REQUIRE_REDIS_SSL",
                    "true",
                    f"the project's {settings} {gives} the {uses} {url}, without TLS: write "
                    "rediss:// there (the project reads it itself, so the runner cannot "
                    "upgrade it), or let the settings use runner_settings",
                )
            )
        wanted = redis.tls.cert_reqs
        given = tls.cert_reqs if tls else None
        if given is not None and _STRICTNESS.index(given) < _STRICTNESS.index(wanted):
            variable = "REDIS_SSL_CERT_REQS" if redis.tls_cert_reqs_given else "REDIS_SSL_CA_CERTS"
            problems.append(
                Problem(
                    variable,
                    wanted if variable == "REDIS_SSL_CERT_REQS" else None,
                    f"asks for certificate check '{wanted}', but the project's {settings} "
                    f"{gives} the {uses} '{given}' ({url}); add ?ssl_cert_reqs={wanted} to "
                    "that URL (and ssl_ca_certs=<path> for your CA), or let the settings use "
                    "runner_settings",
                )
            )
    return problems


def celery_notes(celery: CeleryConfig, redis: RedisSettings) -> tuple[str, ...]:
    """Where the project's Celery settings part from the runner's Redis variables, in words."""
    notes = []
    if not celery.broker_from_environment and not celery.broker_is_default:
        instead = (
            f"not {mask_url(redis.broker_url)} from REDIS_URL/CELERY_BROKER_URL"
            if redis.broker_url
            else "REDIS_URL is not set"
        )
        notes.append(
            f"the project's settings choose Celery's broker themselves: {celery.broker} "
            f"({instead}); the runner checks and reports it as the project has it"
        )
    return tuple(notes)
