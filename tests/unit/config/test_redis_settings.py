"""Tests of the Redis variables (derivation, TLS upgrade, certificate options, masking) and of
the Django and Celery settings ``runner.web.django_settings`` builds from them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from django.core.exceptions import ImproperlyConfigured

from runner.config.connections import (
    BROKER_POOL_LIMIT_VARIABLE,
    CACHE_MAX_CONNECTIONS_VARIABLE,
    RESULT_MAX_CONNECTIONS_VARIABLE,
)
from runner.config.environment import EnvironmentReader
from runner.config.redis import (
    RedisSettings,
    TLSOptions,
    broker_use_ssl,
    mask_url,
    read_redis_settings,
    redis_backend_use_ssl,
)
from runner.errors import Problem
from runner.web.django_settings import (
    BROKER_POLLING_SECONDS,
    CACHE_POOL_WAIT_SECONDS,
    runner_settings,
)

CLOUD = "redis://default:s3cret@redis-12345.c1.cloud.redislabs.com:12345"
CLOUD_TLS = "rediss://default:s3cret@redis-12345.c1.cloud.redislabs.com:12345"


def read(environ: dict[str, str]) -> tuple[RedisSettings, list[Problem]]:
    env = EnvironmentReader(environ)
    return read_redis_settings(env), env.problems


def test_seed_variables_upgrade_every_url_to_tls_without_verification():
    """The seed's REDIS_URL=redis://... with REQUIRE_REDIS_SSL=true gives rediss:// everywhere,
    encrypted and, without a CA, not verified (what the seed did)."""
    settings, problems = read(
        {
            "REDIS_URL": CLOUD,
            "REQUIRE_REDIS_SSL": "true",
            "CELERY_BROKER_URL": "",
            "CELERY_RESULT_BACKEND": "",
        }
    )
    assert problems == []
    assert settings == RedisSettings(
        url=CLOUD_TLS,
        broker_url=CLOUD_TLS,
        result_backend=CLOUD_TLS,
        upgraded_to_tls=True,
        tls=TLSOptions("none"),
        max_connections=30,
    )
    assert settings.uses_tls and not settings.tls.verified


def test_rediss_url_works_without_the_flag():
    """A rediss:// URL is TLS whether or not REQUIRE_REDIS_SSL is set."""
    settings, problems = read({"REDIS_URL": CLOUD_TLS})
    assert problems == [] and settings.broker_url == CLOUD_TLS
    assert not settings.upgraded_to_tls


def test_explicit_broker_and_backend_are_used_as_given():
    """CELERY_BROKER_URL and CELERY_RESULT_BACKEND, when set, win over REDIS_URL."""
    settings, _ = read(
        {
            "REDIS_URL": CLOUD,
            "CELERY_BROKER_URL": "redis://b:1/0",
            "CELERY_RESULT_BACKEND": "redis://r:2/1",
        }
    )
    assert (settings.broker_url, settings.result_backend) == ("redis://b:1/0", "redis://r:2/1")


@pytest.mark.parametrize("backend", ["django-db", "django-cache", "rpc://"])
def test_result_backends_celery_names_without_a_url_are_accepted(backend):
    """CELERY_RESULT_BACKEND=django-db (the admin's task results) is taken as Celery takes it."""
    settings, problems = read({"REDIS_URL": CLOUD, "CELERY_RESULT_BACKEND": backend})
    assert problems == [] and settings.result_backend == backend


def test_ca_given_as_pem_text_means_verified_with_hostname(tmp_path: Path):
    """REDIS_SSL_CA_CERTS holding PEM text defaults to required checks with hostname."""
    pem = trustme.CA().cert_pem.bytes().decode()
    settings, problems = read({"REDIS_URL": CLOUD_TLS, "REDIS_SSL_CA_CERTS": pem})
    assert problems == []
    assert settings.tls == TLSOptions("required", ca_data=pem)
    assert broker_use_ssl(settings.tls) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        "ssl_ca_data": pem,
    }


def test_ca_given_as_path_and_cert_reqs_override(tmp_path: Path):
    """A CA file path is used as ssl_ca_certs; REDIS_SSL_CERT_REQS can still lower the check."""
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    settings, problems = read(
        {
            "REDIS_URL": CLOUD_TLS,
            "REDIS_SSL_CA_CERTS": str(ca_file),
            "REDIS_SSL_CERT_REQS": "optional",
        }
    )
    assert problems == []
    assert redis_backend_use_ssl(settings.tls) == {
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "ssl_check_hostname": False,
        "ssl_ca_certs": str(ca_file),
    }


@pytest.mark.parametrize(
    ("environ", "variable", "words"),
    [
        ({"REDIS_URL": ""}, "REDIS_URL", "empty"),
        ({"REDIS_URL": "http://h:1"}, "REDIS_URL", "unknown scheme 'http://'"),
        ({"REDIS_URL": "redis://default:pa ss@h:1"}, "REDIS_URL", "space"),
        ({"REDIS_URL": "redis://default:100%@h:1"}, "REDIS_URL", "%25"),
        ({"REDIS_URL": "redis://default:x@h"}, "REDIS_URL", "no port"),
        ({"REDIS_URL": "redis://default:x@h:port"}, "REDIS_URL", "port is not a number"),
        (
            {"REDIS_URL": "rediss://default:x@h:1/0?ssl_cert_reqs=none"},
            "REDIS_URL",
            "use REDIS_SSL_CERT_REQS",
        ),
        ({"CELERY_BROKER_URL": "kafka://h:1"}, "CELERY_BROKER_URL", "unknown scheme"),
        ({"REQUIRE_REDIS_SSL": "yes please"}, "REQUIRE_REDIS_SSL", "not a boolean"),
        ({"REQUIRE_REDIS_SSL": "true"}, "REQUIRE_REDIS_SSL", "REDIS_URL is not set"),
        ({"REDIS_SSL_CERT_REQS": "strict"}, "REDIS_SSL_CERT_REQS", "required, optional"),
        ({"REDIS_SSL_CA_CERTS": "/nonexistent/ca.pem"}, "REDIS_SSL_CA_CERTS", "no such file"),
        (
            {"REDIS_SSL_CA_CERTS": "-----BEGIN CERTIFICATE-----\ngarbage\n"},
            "REDIS_SSL_CA_CERTS",
            "not a valid certificate",
        ),
        ({"REDIS_MAX_CONNECTIONS": "0"}, "REDIS_MAX_CONNECTIONS", "out of range"),
    ],
)
def test_bad_redis_values(environ, variable, words):
    """Each malformed Redis variable gives one problem naming it and the fix."""
    _settings, problems = read(environ)
    assert len(problems) == 1, problems
    assert problems[0].variable == variable
    assert words in problems[0].fix


def test_ca_file_with_garbage_is_refused(tmp_path: Path):
    """A CA file that is not PEM is refused before anything connects."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    _settings, problems = read({"REDIS_SSL_CA_CERTS": str(bad)})
    assert [p.variable for p in problems] == ["REDIS_SSL_CA_CERTS"]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (CLOUD_TLS, "rediss://default:***@redis-12345.c1.cloud.redislabs.com:12345"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://h:1/0", "redis://h:1/0"),
        (None, None),
    ],
)
def test_mask_url_hides_passwords(url, masked):
    """Passwords are replaced by *** and nothing else changes."""
    assert mask_url(url) == masked


def test_problems_never_show_the_password():
    """Even a malformed URL is reported with its password masked."""
    _settings, problems = read({"REDIS_URL": "redis://default:s3cret@h:1 "})
    assert problems and all("s3cret" not in str(p) for p in problems)


# --- what runner.web.django_settings hands to Django and Celery -----------------------------------


def test_django_settings_carry_the_tls_choice_to_every_consumer():
    """Broker, result backend and cache get the same TLS options, in each one's own setting."""
    values = runner_settings("/srv", {"REDIS_URL": CLOUD, "REQUIRE_REDIS_SSL": "true"})
    tls = {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_check_hostname": False}
    assert values["CELERY_BROKER_URL"] == values["CELERY_RESULT_BACKEND"] == CLOUD_TLS
    assert values["CELERY_BROKER_USE_SSL"] == values["CELERY_REDIS_BACKEND_USE_SSL"] == tls
    assert values["CACHES"]["default"]["OPTIONS"] == tls
    assert values["CACHES"]["default"]["LOCATION"] == CLOUD_TLS
    # The idle worker asks Redis for work every BROKER_POLLING_SECONDS, not every second.
    assert values["CELERY_BROKER_TRANSPORT_OPTIONS"]["polling_interval"] == BROKER_POLLING_SECONDS


def test_pool_limits_from_the_runner_become_celery_and_cache_settings():
    """RUNNER_REDIS_* variables set the broker pool, the result pool and a blocking cache pool."""
    values = runner_settings(
        "/srv",
        {
            "REDIS_URL": CLOUD,
            BROKER_POOL_LIMIT_VARIABLE: "1",
            RESULT_MAX_CONNECTIONS_VARIABLE: "2",
            CACHE_MAX_CONNECTIONS_VARIABLE: "3",
        },
    )
    assert (values["CELERY_BROKER_POOL_LIMIT"], values["CELERY_REDIS_MAX_CONNECTIONS"]) == (1, 2)
    assert values["CACHES"]["default"]["OPTIONS"] == {
        "pool_class": "redis.BlockingConnectionPool",
        "max_connections": 3,
        "timeout": CACHE_POOL_WAIT_SECONDS,
    }


def test_without_the_runner_the_libraries_keep_their_own_limits():
    """A process the runner did not start (no RUNNER_REDIS_*) gets no pool limit from us."""
    values = runner_settings("/srv", {"REDIS_URL": CLOUD})
    assert "CELERY_BROKER_POOL_LIMIT" not in values
    assert "CELERY_REDIS_MAX_CONNECTIONS" not in values
    assert values["CACHES"]["default"]["OPTIONS"] == {}


def test_a_bad_pool_limit_is_a_settings_error():
    """A malformed RUNNER_REDIS_* variable stops the settings with its name."""
    with pytest.raises(ImproperlyConfigured, match=RESULT_MAX_CONNECTIONS_VARIABLE):
        runner_settings("/srv", {"REDIS_URL": CLOUD, RESULT_MAX_CONNECTIONS_VARIABLE: "0"})
