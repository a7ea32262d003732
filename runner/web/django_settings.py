"""The one line a Django project adds to get the runner's broker, results, cache and TLS.

    from runner.web.django_settings import runner_settings
    globals().update(runner_settings(BASE_DIR))

It reads the same variables as the runner (through ``runner.config.redis``), so the settings of
every process agree with what the runner checked and printed at start, plus the pool limits
the runner gives each program within ``REDIS_MAX_CONNECTIONS`` (``RUNNER_REDIS_*``, see
``runner.config.connections``). A process the runner did not start (``celery -A app worker`` by
hand, ``manage.py shell``) has no such limits and keeps the libraries' own: it is not part
of the runner's budget.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.config.connections import (
    BROKER_POOL_LIMIT_VARIABLE,
    CACHE_MAX_CONNECTIONS_VARIABLE,
    RESULT_MAX_CONNECTIONS_VARIABLE,
)
from runner.config.environment import EnvironmentReader
from runner.config.redis import (
    RedisSettings,
    broker_use_ssl,
    client_args,
    read_redis_settings,
    redis_backend_use_ssl,
    without_tls_options,
)
from runner.config.settings import DEFAULT_DATA_DIR, local_paths

# The filesystem broker polls its folder; half a second keeps a local round trip short at
# a negligible cost (one directory listing).
LOCAL_POLLING_INTERVAL_SECONDS = 0.5
LOCAL_BROKER_URL = "filesystem://localhost//"
# Celery's Redis transport re-delivers an unacknowledged task after this long. It must
# exceed the longest task (the demo's hard limit is 5 minutes), or a task still running
# would be delivered twice.
VISIBILITY_TIMEOUT_SECONDS = 60 * 60
# What an idle worker costs on a metered Redis (Upstash's free plan counts commands), each
# cut with kombu's own transport options; measured by ``python -m bench.redis_idle``. The
# minute-long BRPOP is not among them: it is set in the runner's own worker only
# (``runner.worker.idle.worker_transport_options``), since a stock ``celery worker`` on
# these settings (gossip, mingle and heartbeat on) then took up to a minute to take a task.
# redis-py's health check PINGs a connection idle this long before using it, and kombu
# PINGs its pub/sub connection (remote control) this often: once every 5 minutes instead of
# every 25 s. A dead peer is found by TCP keepalive instead, which costs no command.
BROKER_HEALTH_CHECK_SECONDS = 300
# Keepalive probes after this long idle, then every interval, dropped after the count:
# a half-open connection (Redis gone without a FIN) is noticed within about 2 minutes.
TCP_KEEPALIVE_IDLE_SECONDS = 60
TCP_KEEPALIVE_INTERVAL_SECONDS = 15
TCP_KEEPALIVE_PROBES = 4
# kombu looks for unacknowledged tasks past their visibility timeout every 10 s times this
# (kombu >= 5.7; before, every 100 s): every 10 minutes, for a timeout of an hour.
UNACKED_RESTORE_THROTTLE = 60
# A thread that finds its process's cache pool at its limit waits this long for a free
# connection (redis-py's BlockingConnectionPool) before the cache call fails.
CACHE_POOL_WAIT_SECONDS = 10
ERROR_REPORT_FILTER = "runner.web.error_reports.CredentialSafeExceptionReporterFilter"
# The largest pool limit the runner hands out; anything above is a mistake, not a plan.
MAX_POOL_LIMIT = 10_000


def _local(data_dir: Path) -> dict[str, object]:
    from runner.worker.local_store import install

    # The same URLs, written atomically: a full disk is a clear error, not a stuck worker.
    install()
    paths = local_paths(data_dir)
    return {
        # kombu's own default host, spelled out: without it kombu warns "No hostname was
        # supplied" in every process that connects (the host means nothing to this transport).
        "CELERY_BROKER_URL": LOCAL_BROKER_URL,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "data_folder_in": str(paths["queue"]),
            "data_folder_out": str(paths["queue"]),
            "control_folder": str(paths["control"]),
            "processed_folder": str(paths["staging"]),
            "polling_interval": LOCAL_POLLING_INTERVAL_SECONDS,
        },
        "CELERY_RESULT_BACKEND": f"file://{paths['results']}",
    }


def pool_limits(env: EnvironmentReader) -> dict[str, int | None]:
    """The runner's pool limits for this process; None where the runner gave none."""
    return {
        name: env.int(name, None, minimum=1, maximum=MAX_POOL_LIMIT)
        for name in (
            BROKER_POOL_LIMIT_VARIABLE,
            RESULT_MAX_CONNECTIONS_VARIABLE,
            CACHE_MAX_CONNECTIONS_VARIABLE,
        )
    }


def tcp_keepalive_options() -> dict[int, int]:
    """``socket_keepalive_options`` for redis-py: the TCP options this platform has."""
    import socket

    wanted = {
        "TCP_KEEPIDLE": TCP_KEEPALIVE_IDLE_SECONDS,
        "TCP_KEEPINTVL": TCP_KEEPALIVE_INTERVAL_SECONDS,
        "TCP_KEEPCNT": TCP_KEEPALIVE_PROBES,
    }
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def _plain(url: str | None) -> str | None:
    """A Redis URL without the TLS options of its query string; other URLs as they are."""
    return without_tls_options(url) if url and url.startswith("rediss://") else url


def _redis(redis: RedisSettings, limits: dict[str, int | None]) -> dict[str, object]:
    # TLS options written in a URL go to each consumer as arguments, never in the URL: the
    # same meaning for kombu, Celery's backend and redis-py (runner.config.redis).
    values: dict[str, object] = {
        "CELERY_BROKER_URL": _plain(redis.broker_url),
        "CELERY_RESULT_BACKEND": _plain(redis.result_backend),
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            "health_check_interval": BROKER_HEALTH_CHECK_SECONDS,
            "socket_keepalive": True,
            "socket_keepalive_options": tcp_keepalive_options(),
            "unacked_restore_throttle": UNACKED_RESTORE_THROTTLE,
        },
    }
    if redis.broker_url and redis.broker_url.startswith("rediss://"):
        values["CELERY_BROKER_USE_SSL"] = broker_use_ssl(redis.tls_for(redis.broker_url))
    if redis.result_backend and redis.result_backend.startswith("rediss://"):
        values["CELERY_REDIS_BACKEND_USE_SSL"] = redis_backend_use_ssl(
            redis.tls_for(redis.result_backend)
        )
    if (limit := limits[BROKER_POOL_LIMIT_VARIABLE]) is not None:
        # Kombu connections kept for sending tasks; a thread waits when all are in use.
        values["CELERY_BROKER_POOL_LIMIT"] = limit
    if (limit := limits[RESULT_MAX_CONNECTIONS_VARIABLE]) is not None:
        values["CELERY_REDIS_MAX_CONNECTIONS"] = limit
    if redis.url:
        location, options = client_args(redis, redis.url)
        if (limit := limits[CACHE_MAX_CONNECTIONS_VARIABLE]) is not None:
            # Blocking: at the limit a cache call waits for a connection instead of failing.
            options |= {
                "pool_class": "redis.BlockingConnectionPool",
                "max_connections": limit,
                "timeout": CACHE_POOL_WAIT_SECONDS,
            }
        values["CACHES"] = {
            "default": {
                "BACKEND": "runner.web.cache.PrefixedRedisCache",
                "LOCATION": location,
                "OPTIONS": options,
            }
        }
    return values


def runner_settings(base_dir: Path | str, environ: Mapping[str, str] | None = None) -> dict:
    """Celery broker/results and the Django cache, as Django settings (``CELERY_*``)."""
    from django.core.exceptions import ImproperlyConfigured

    environ = os.environ if environ is None else environ
    env = EnvironmentReader(environ)
    redis = read_redis_settings(env)
    limits = pool_limits(env)
    if env.problems:
        raise ImproperlyConfigured("; ".join(str(p) for p in env.problems))
    if redis.broker_url is None:
        data_dir = Path(base_dir) / (environ.get("RUNNER_DATA_DIR") or DEFAULT_DATA_DIR)
        values = _local(data_dir)
    else:
        values = _redis(redis, limits)
    # Error pages and e-mails show settings: not the URLs' passwords (runner.web.error_reports).
    values["DEFAULT_EXCEPTION_REPORTER_FILTER"] = ERROR_REPORT_FILTER
    return values
