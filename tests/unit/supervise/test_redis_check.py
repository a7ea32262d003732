"""Tests of the start-up check's pure parts: which URLs it checks and how its lines keep secrets.

The diagnosis of real failures (wrong scheme, certificate, password, refused, max clients)
is tested against real redis-server processes in tests/e2e/test_redis_check.py.
"""

from __future__ import annotations

import pytest

from runner.config.environment import EnvironmentReader
from runner.config.redis import TLSOptions, read_redis_settings
from runner.supervise.redis_check import Target, _scrub, targets

CLOUD = "redis://default:s3cret@redis.example:6380"
TLS = "rediss://default:s3cret@redis.example:6380"
OTHER = "rediss://default:other@results.example:6390/0"
NOT_VERIFIED = TLSOptions("none")


def targets_for(environ: dict[str, str]) -> list[Target]:
    env = EnvironmentReader(environ)
    settings = read_redis_settings(env)
    assert env.problems == []
    return targets(settings)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        (
            {"REDIS_URL": CLOUD, "REQUIRE_REDIS_SSL": "true"},
            [Target(TLS, ("broker", "results", "cache"), "REDIS_URL", True, NOT_VERIFIED)],
        ),
        (
            {"REDIS_URL": TLS, "CELERY_RESULT_BACKEND": OTHER},
            [
                Target(TLS, ("broker", "cache"), "REDIS_URL", tls_options=NOT_VERIFIED),
                Target(OTHER, ("results",), "CELERY_RESULT_BACKEND", tls_options=NOT_VERIFIED),
            ],
        ),
        # A broker that is not Redis is not the Redis check's business.
        (
            {"CELERY_BROKER_URL": "amqp://guest@rabbit:5672", "CELERY_RESULT_BACKEND": OTHER},
            [Target(OTHER, ("results",), "CELERY_RESULT_BACKEND", tls_options=NOT_VERIFIED)],
        ),
        (
            {"REDIS_URL": TLS, "CELERY_RESULT_BACKEND": "django-db"},
            [Target(TLS, ("broker", "cache"), "REDIS_URL", tls_options=NOT_VERIFIED)],
        ),
    ],
)
def test_each_distinct_redis_url_is_checked_once_naming_its_variable(environ, expected):
    """Broker, results and cache sharing one URL make one check; each names where it came from."""
    assert targets_for(environ) == expected


def test_target_reads_host_port_and_scheme_and_masks_the_password():
    """A target knows its host, port and scheme, and shows itself masked."""
    target = Target("rediss://default:s3cret@redis.example:6380/0", ("broker",), "REDIS_URL")
    assert (target.host, target.port, target.tls) == ("redis.example", 6380, True)
    assert target.masked == "rediss://default:***@redis.example:6380/0"


@pytest.mark.parametrize(
    ("url", "text", "expected"),
    [
        (CLOUD, "AUTH s3cret failed", "AUTH *** failed"),
        # Percent-encoded in the URL, decoded in a message: both forms are scrubbed.
        ("redis://default:p%40ss@h:1", "bad p@ss and p%40ss", "bad *** and ***"),
        ("redis://h:1", "no password\n  here", "no password here"),
        (CLOUD, "x" * 500, "x" * 157 + "..."),
    ],
)
def test_quoted_messages_lose_the_password_and_fit_one_line(url, text, expected):
    """Messages quoted in a check line never carry the password and stay on one short line."""
    assert _scrub(text, url) == expected
