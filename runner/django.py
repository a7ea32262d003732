"""The one line a Django project adds to get the runner's broker, results, cache and TLS.

    from runner.django import runner_settings
    globals().update(runner_settings(BASE_DIR))

It reads the same variables as the runner (through ``runner.redis``), so the settings of
every process agree with what the runner checked and printed at start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.environment import EnvironmentReader
from runner.redis import (
    RedisSettings,
    broker_use_ssl,
    client_kwargs,
    read_redis_settings,
    redis_backend_use_ssl,
)
from runner.settings import DEFAULT_DATA_DIR

# The filesystem broker polls its folder; half a second keeps a local round trip short at
# a negligible cost (one directory listing).
LOCAL_POLLING_INTERVAL_SECONDS = 0.5
# Celery's Redis transport re-delivers an unacknowledged task after this long. It must
# exceed the longest task (the demo's hard limit is 5 minutes), or a task still running
# would be delivered twice.
VISIBILITY_TIMEOUT_SECONDS = 60 * 60


def local_paths(data_dir: Path) -> dict[str, Path]:
    """Folders of the local default: broker queue, broker control, results."""
    return {
        "queue": data_dir / "broker" / "queue",
        "control": data_dir / "broker" / "control",
        "results": data_dir / "results",
    }


def _local(data_dir: Path) -> dict[str, object]:
    paths = local_paths(data_dir)
    return {
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "data_folder_in": str(paths["queue"]),
            "data_folder_out": str(paths["queue"]),
            "control_folder": str(paths["control"]),
            "polling_interval": LOCAL_POLLING_INTERVAL_SECONDS,
        },
        "CELERY_RESULT_BACKEND": f"file://{paths['results']}",
    }


def _redis(redis: RedisSettings) -> dict[str, object]:
    values: dict[str, object] = {
        "CELERY_BROKER_URL": redis.broker_url,
        "CELERY_RESULT_BACKEND": redis.result_backend,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
    }
    if redis.broker_url and redis.broker_url.startswith("rediss://"):
        values["CELERY_BROKER_USE_SSL"] = broker_use_ssl(redis.tls)
    if redis.result_backend and redis.result_backend.startswith("rediss://"):
        values["CELERY_REDIS_BACKEND_USE_SSL"] = redis_backend_use_ssl(redis.tls)
    if redis.url:
        values["CACHES"] = {
            "default": {
                "BACKEND": "runner.cache.PrefixedRedisCache",
                "LOCATION": redis.url,
                "OPTIONS": client_kwargs(redis, redis.url),
            }
        }
    return values


def runner_settings(base_dir: Path | str, environ: Mapping[str, str] | None = None) -> dict:
    """Celery broker/results and the Django cache, as Django settings (``CELERY_*``)."""
    from django.core.exceptions import ImproperlyConfigured

    environ = os.environ if environ is None else environ
    env = EnvironmentReader(environ)
    redis = read_redis_settings(env)
    if env.problems:
        raise ImproperlyConfigured("; ".join(str(p) for p in env.problems))
    if redis.broker_url is None:
        data_dir = Path(base_dir) / (environ.get("RUNNER_DATA_DIR") or DEFAULT_DATA_DIR)
        return _local(data_dir)
    return _redis(redis)
