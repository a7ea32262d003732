"""Tests of the Redis variables (derivation, TLS upgrade, certificate options, masking) and of
the Django and Celery settings ``runner.web.django_settings`` builds from them."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme
from celery import Celery
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
    client_args,
    mask_url,
    read_redis_settings,
    redis_backend_use_ssl,
)
from runner.errors import Problem
from runner.web.django_settings import CACHE_POOL_WAIT_SECONDS, runner_settings
from runner.worker.idle import BROKER_POLLING_SECONDS, worker_transport_options

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
        require_tls=True,
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
            {"REDIS_URL": "rediss://default:x@h:1/0?ssl_cert_reqs=sometimes"},
            "REDIS_URL",
            "use required, optional or none",
        ),
        (
            {"REDIS_URL": "rediss://default:x@h:1/0?ssl_check_hostname=false"},
            "REDIS_URL",
            "unknown TLS option in the URL (ssl_check_hostname)",
        ),
        (
            {"REDIS_URL": "redis://default:x@h:1/0?ssl_cert_reqs=none"},
            "REDIS_URL",
            "on a redis:// URL: Celery refuses them",
        ),
        (
            {"CELERY_BROKER_URL": "rediss://default:x@h:1/0?ssl_ca_certs=/nonexistent.pem"},
            "CELERY_BROKER_URL",
            "no such file",
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


@pytest.mark.parametrize(
    ("query", "cert_reqs"),
    [
        ("ssl_cert_reqs=none", "none"),
        ("ssl_cert_reqs=CERT_NONE", "none"),
        ("ssl_cert_reqs=optional", "optional"),
        ("ssl_cert_reqs=CERT_REQUIRED", "required"),
    ],
)
def test_tls_options_in_the_url_mean_what_they_mean_to_celery(tmp_path: Path, query, cert_reqs):
    """Celery's documented ?ssl_cert_reqs= (both spellings) is accepted in REDIS_URL, wins over
    REDIS_SSL_* for that URL, and reaches redis-py as arguments, not in the URL."""
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    url = f"{CLOUD_TLS}/0?{query}"
    settings, problems = read({"REDIS_URL": url, "REDIS_SSL_CA_CERTS": str(ca_file)})
    assert problems == []
    assert settings.tls_for(url) == TLSOptions(cert_reqs, ca_file=str(ca_file))
    client_url, kwargs = client_args(settings, url)
    assert client_url == f"{CLOUD_TLS}/0"
    assert (
        kwargs["ssl_cert_reqs"]
        == {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}[
            cert_reqs
        ]
    )
    values = runner_settings("/srv", {"REDIS_URL": url})
    assert values["CELERY_BROKER_URL"] == values["CACHES"]["default"]["LOCATION"] == client_url
    assert values["CELERY_BROKER_USE_SSL"]["ssl_cert_reqs"] == kwargs["ssl_cert_reqs"]
    assert values["CELERY_REDIS_BACKEND_USE_SSL"] == values["CELERY_BROKER_USE_SSL"]


def test_a_ca_in_the_url_is_used_for_that_url_only(tmp_path: Path):
    """?ssl_ca_certs= on the broker's URL verifies the broker; REDIS_URL keeps the variables'."""
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    broker = f"rediss://default:pw@broker.example:1/0?ssl_cert_reqs=required&ssl_ca_certs={ca_file}"
    settings, problems = read({"REDIS_URL": CLOUD_TLS, "CELERY_BROKER_URL": broker})
    assert problems == []
    assert settings.tls_for(broker) == TLSOptions("required", ca_file=str(ca_file))
    assert settings.tls_for(CLOUD_TLS) == TLSOptions("none")
    assert not settings.all_verified


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


@pytest.mark.parametrize("special", ["/", "#", "?", "@", ":", "%"])
def test_a_password_with_any_special_character_is_masked(special):
    """A password holding an unencoded / # ? @ : or % (a URL that may not parse) never shows."""
    password = f"Pa{special}ssw0rdXY"
    url = f"redis://default:{password}@127.0.0.1:6390"
    assert password not in mask_url(url) and "ssw0rdXY" not in mask_url(url)
    _settings, problems = read({"REDIS_URL": url, "CELERY_BROKER_URL": url})
    assert all("ssw0rdXY" not in str(p) for p in problems)
    if special in "/?#":  # the URL does not parse: the line says why, and the fix
        encoded = {"/": "%2F", "?": "%3F", "#": "%23"}[special]
        assert str(problems[0]) == (
            "REDIS_URL='redis://default:***@127.0.0.1:6390': the password holds a "
            f"'{special}' that is not percent-encoded, so the URL does not parse; write it "
            f"as {encoded}"
        )


# --- what runner.web.django_settings hands to Django and Celery -----------------------------------


def test_django_settings_carry_the_tls_choice_to_every_consumer():
    """Broker, result backend and cache get the same TLS options, in each one's own setting."""
    values = runner_settings("/srv", {"REDIS_URL": CLOUD, "REQUIRE_REDIS_SSL": "true"})
    tls = {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_check_hostname": False}
    assert values["CELERY_BROKER_URL"] == values["CELERY_RESULT_BACKEND"] == CLOUD_TLS
    assert values["CELERY_BROKER_USE_SSL"] == values["CELERY_REDIS_BACKEND_USE_SSL"] == tls
    assert values["CACHES"]["default"]["OPTIONS"] == tls
    assert values["CACHES"]["default"]["LOCATION"] == CLOUD_TLS
    # The minute-long BRPOP is the runner's worker's alone (runner.worker.idle): a stock
    # `celery worker` on these settings must take tasks at once.
    assert "polling_interval" not in values["CELERY_BROKER_TRANSPORT_OPTIONS"]


def test_idle_broker_options_are_kombus_own_and_keep_dead_peers_found():
    """Fewer idle commands through kombu's options, and TCP keepalive where PINGs were."""
    import socket

    from kombu.transport.redis import Channel, Transport

    options = runner_settings("/srv", {"REDIS_URL": CLOUD})["CELERY_BROKER_TRANSPORT_OPTIONS"]
    # Every option is one kombu's Redis transport reads (a typo would be ignored silently),
    # except those newer than kombu 5.3, which ignores them: client_name and the throttle of
    # the unacknowledged scan.
    newer = {"unacked_restore_throttle"}
    assert set(options) - newer <= set(Channel.from_transport_options)
    assert options["health_check_interval"] >= BROKER_POLLING_SECONDS
    assert options["socket_keepalive"] is True
    assert options["socket_keepalive_options"][socket.TCP_KEEPIDLE] <= 60
    # The runner's worker adds the minute-long BRPOP and its name, unless the project set them.
    app = Celery(set_as_current=False)
    app.conf.broker_transport_options = dict(options)
    worker_transport_options(app)
    added = app.conf.broker_transport_options
    assert hasattr(Transport, "polling_interval")
    assert added["polling_interval"] == BROKER_POLLING_SECONDS == 60
    assert added["client_name"] == f"runner:{socket.gethostname()}:{os.getpid()}"
    app.conf.broker_transport_options = {"polling_interval": 2}
    worker_transport_options(app)
    assert app.conf.broker_transport_options["polling_interval"] == 2


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
