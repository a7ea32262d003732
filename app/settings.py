"""Django settings for the demo: web, Celery worker and Celery beat read this one module.

Every value that can change between a laptop and Render comes from the environment, with
its default and the reason for it next to it. The rules, the same as the runner's:

- an unset variable takes its default, so ``python -m runner`` works with nothing set;
- a variable that is set but empty or malformed is an error (``DEBUG=ture`` does not mean
  false), and every such error is reported at once, at the end of this module.

Redis (broker, results, cache, TLS) is not read here: the runner owns those variables and
hands over finished settings in the "Celery and Redis" section.
"""

import os
import re
import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured

from runner.config.environment import EnvironmentReader
from runner.config.settings import LOG_LEVELS
from runner.django import runner_settings

# ------------------------------------------------------------------------------
# Paths
# ------------------------------------------------------------------------------
# The repository root (the parent of app/): manage.py, db.sqlite3 and staticfiles/ live here.
BASE_DIR = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------
# Reading the environment
# ------------------------------------------------------------------------------
# Names with lower-case letters are not Django settings, so neither the environment nor the
# problem list shows up in `diffsettings` or on a DEBUG error page.
_env = EnvironmentReader(os.environ)


def _host_list(name: str, default: str) -> list[str]:
    """A comma-separated list of host names, blanks dropped."""
    hosts = [host.strip() for host in (_env.text(name) or default).split(",") if host.strip()]
    if not hosts:
        _env.problem(name, "no host names; give a comma-separated list")
    return hosts


# ------------------------------------------------------------------------------
# Security
# ------------------------------------------------------------------------------
# Unset: a fixed development key, so the one-command local start needs nothing set; its
# "django-insecure-" prefix makes `manage.py check --deploy` warn about it. On Render the
# blueprint generates a real key, so production never uses this one. Nothing is printed.
SECRET_KEY = _env.text(
    "SECRET_KEY",
    "django-insecure-local-development-only-set-SECRET_KEY-in-production",
)

# Default false: a forgotten variable must not expose tracebacks and settings to the world.
DEBUG = _env.bool("DEBUG", False)

# The names this site answers to. The default covers a local start (IPv4, IPv6, localhost).
ALLOWED_HOSTS = _host_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# Render sets RENDER_EXTERNAL_HOSTNAME (e.g. "myapp.onrender.com") on every web service, so
# the first deploy works without the user copying the host name into ALLOWED_HOSTS.
RENDER_EXTERNAL_HOSTNAME = os.environ.get("RENDER_EXTERNAL_HOSTNAME", "").strip()
if RENDER_EXTERNAL_HOSTNAME and RENDER_EXTERNAL_HOSTNAME not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(RENDER_EXTERNAL_HOSTNAME)

# Django checks the Origin header of every form post. Render's public URL is HTTPS, so that
# origin is trusted explicitly: admin forms keep working even if a proxy drops the
# X-Forwarded-Proto header that SECURE_PROXY_SSL_HEADER relies on.
CSRF_TRUSTED_ORIGINS = [f"https://{RENDER_EXTERNAL_HOSTNAME}"] if RENDER_EXTERNAL_HOSTNAME else []

# Render's proxy ends TLS and passes the original scheme in X-Forwarded-Proto; without this
# Django thinks every request is plain HTTP (wrong redirects, CSRF origin failures).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Behind Render's HTTPS, cookies are sent over HTTPS only. Locally (plain http://localhost)
# they must not be, or the admin login could not keep its session.
SESSION_COOKIE_SECURE = bool(RENDER_EXTERNAL_HOSTNAME)
CSRF_COOKIE_SECURE = bool(RENDER_EXTERNAL_HOSTNAME)

# ------------------------------------------------------------------------------
# Applications and middleware
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Periodic tasks stored in the database and editable in the admin.
    "django_celery_beat",
    # Task results browsable in the admin when CELERY_RESULT_BACKEND is "django-db".
    "django_celery_results",
    "app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise right after SecurityMiddleware (its documented place): static files are
    # answered before sessions or CSRF do any work, and still get the security headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "app.urls"
WSGI_APPLICATION = "app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        # Finds app/templates/ and the admin's templates without listing directories.
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ------------------------------------------------------------------------------
# Database
# ------------------------------------------------------------------------------
# Keep a connection for ten minutes instead of opening one per request (cheap for SQLite,
# a real saving for Postgres); health checks replace a connection the server closed.
DATABASE_CONN_MAX_AGE_SECONDS = 600
# How long a SQLite writer waits for another process's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 20

# Unset: a SQLite file in the repository root, so a local start needs no database server.
# On Render, point DATABASE_URL at a Postgres database: a service's disk is ephemeral,
# so a SQLite file would be lost at every deploy or restart.
_database_url = _env.text("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
try:
    _database = dj_database_url.parse(
        _database_url,
        conn_max_age=DATABASE_CONN_MAX_AGE_SECONDS,
        conn_health_checks=True,
    )
except ValueError:
    # Only the scheme is shown: the rest of the URL may hold a password.
    _scheme = urlsplit(_database_url).scheme
    _env.problem(
        "DATABASE_URL",
        # Not dj-database-url's own text: it lists every scheme it knows (500 characters).
        f"not a database URL (scheme {_scheme + '://' if _scheme else 'missing'}); use e.g. "
        "postgres://user:pass@host:5432/db or sqlite:////absolute/path.sqlite3",
    )
    _database = dj_database_url.parse(f"sqlite:///{BASE_DIR / 'db.sqlite3'}")

# Django 5.1 added SQLite's transaction_mode and init_command options.
SQLITE_OPTIONS_SINCE = (5, 1)
SQLITE_PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"

if _database["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write the same file at once, from separate processes:
    # - WAL lets readers carry on while one process writes; synchronous=NORMAL is safe
    #   with WAL and avoids an fsync on every commit;
    # - IMMEDIATE takes the write lock when a transaction starts, so a waiting writer is
    #   covered by the busy timeout instead of failing at once on a lock upgrade.
    # Options given in the URL's query string win over these.
    _sqlite_options: dict[str, object] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    if django.VERSION >= SQLITE_OPTIONS_SINCE:
        _sqlite_options["transaction_mode"] = "IMMEDIATE"
        _sqlite_options["init_command"] = SQLITE_PRAGMAS
    # Older Django passes OPTIONS straight to sqlite3.connect(): the pragmas are then set on
    # each new connection by app.apps (no IMMEDIATE there: a rare lock upgrade may fail).
    _database["OPTIONS"] = {**_sqlite_options, **_database.get("OPTIONS", {})}

DATABASES = {"default": _database}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ------------------------------------------------------------------------------
# Passwords
# ------------------------------------------------------------------------------
# Django's standard validators: the admin is on the public internet once deployed.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# ------------------------------------------------------------------------------
# Time and language
# ------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
# UTC everywhere: servers, logs and Celery beat agree, and there are no DST surprises.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ------------------------------------------------------------------------------
# Static files
# ------------------------------------------------------------------------------
STATIC_URL = "static/"
# Where `collectstatic` copies the files in a production build.
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed but not "Manifest": the manifest variant raises on any page that uses
    # {% static %} until collectstatic has run, and the local start does not run it.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# WhiteNoise also serves straight from the apps' static/ folders, so `python -m runner`
# shows the admin's CSS without a collectstatic step.
WHITENOISE_USE_FINDERS = True
# ...which makes WhiteNoise's "No directory at: <STATIC_ROOT>" warning at every start of a
# local run noise: the finders serve the same files. Only that one message is silenced.
warnings.filterwarnings(
    "ignore",
    message=f"No directory at: {re.escape(str(STATIC_ROOT))}",
    category=UserWarning,
)

# ------------------------------------------------------------------------------
# Logging
# ------------------------------------------------------------------------------
# INFO by default: requests, task runs and beat's "Sending due task" lines, no SQL.
# The same variable and choices as the runner's, so every component logs at one level.
LOG_LEVEL = _env.choice("LOG_LEVEL", "info", LOG_LEVELS).upper()

LOGGING = {
    "version": 1,
    # Keep the loggers libraries created before this ran (Celery's, gunicorn's).
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        # stdout, not stderr: Render and supervisord collect both, and one stream keeps
        # the lines of a process in order.
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Replace Django's own handlers (stderr when DEBUG, mail_admins otherwise): the
        # records reach the root handler, once.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
    },
}

# ------------------------------------------------------------------------------
# Celery and Redis
# ------------------------------------------------------------------------------
# Celery reads every CELERY_* name below through config_from_object(namespace="CELERY").
# Beat reads these settings too, so schedules use the same clock as the web app.
CELERY_TIMEZONE = TIME_ZONE
# Schedules live in the database (seeded by app/migrations/0002), editable in the admin,
# and survive restarts; a file-based schedule would be lost with Render's disk.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Acknowledge a task after it ran, not when it was received: a worker killed mid-task
# (out of memory, deploy) leaves the message in Redis to be delivered again.
CELERY_TASK_ACKS_LATE = True
# With late acks, a task whose worker process died is put back in the queue instead of
# being recorded as failed. A task that always kills its process would loop, which the
# time limits below and the runner's memory budget bound.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# If the Redis connection drops, stop the running late-ack tasks: Redis redelivers them
# anyway, and letting both copies run would do the work twice. Also silences Celery's
# pending-deprecation warning (this becomes the default in Celery 6).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Each worker process reserves one message at a time: a long task does not hold others
# hostage, and a crash puts back at most one message per process.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Report STARTED, so a long task can be told apart from one still waiting in the queue.
CELERY_TASK_TRACK_STARTED = True
# Results are deleted after a day, so a small Redis plan does not fill up with them.
CELERY_RESULT_EXPIRES = timedelta(days=1)
# From the seed guide: a stuck task is killed after 5 minutes (freeing its memory on a
# 512 MB instance); one minute before, it gets SoftTimeLimitExceeded to clean up. Only
# prefork can kill a task: the threads pool, the runner's choice under 1 GB, runs tasks in
# threads that cannot be stopped, so there the limits would be promises not kept (the runner
# says so at start when a project sets them).
if os.environ.get("CELERY_POOL") == "prefork":
    CELERY_TASK_TIME_LIMIT = 5 * 60
    CELERY_TASK_SOFT_TIME_LIMIT = 4 * 60
# Keep retrying when Redis is not reachable yet at boot, instead of exiting; stating it
# also silences Celery 5's deprecation warning about the default.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Broker URL, result backend, transport options, Django's cache and their TLS options:
# built by the runner from REDIS_URL and friends, the one place those are read.
globals().update(runner_settings(BASE_DIR))

# ------------------------------------------------------------------------------
# Environment problems
# ------------------------------------------------------------------------------
# Every bad variable above, at once, so one deploy fixes them all.
if _env.problems:
    raise ImproperlyConfigured(
        "Invalid environment for app.settings:\n"
        + "\n".join(f"  - {problem}" for problem in _env.problems)
    )
